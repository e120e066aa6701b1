# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 15 · Wide Residual Networks (WRN)
#
# Zagoruyko, Komodakis — *Wide Residual Networks*, arXiv
# [1605.07146](https://arxiv.org/abs/1605.07146), May 2016 (BMVC 2016).
#
# ## The question
#
# After ResNet, progress on CIFAR came from ever deeper and thinner networks (110, 164,
# 1001 layers). Each extra fraction of a point cost a near doubling of depth, very deep
# networks are slow because their layers run one after another, and many of their blocks end
# up contributing little. Is depth really what matters, or would *wider* residual blocks do
# as well with far fewer layers?
#
# ## The idea
#
# Take the pre-activation basic block of notebook 11 and multiply its number of filters by a
# widening factor $k$. A 28-layer network with $k = 10$ (WRN-28-10) beats the 1001-layer
# pre-activation ResNet on CIFAR-10 and trains several times faster on a GPU, because a few
# wide convolutions keep the hardware busier than many thin ones. Dropout between the two
# convolutions of a block helps a little more.

# %% tags=["parameters"]
# "quick": the experiment below on the CPU (what CI runs, with the lighter CI settings);
# "full": the paper's network and recipe (on a GPU: DEVICE = "@cupy:0").
MODE = "quick"
DEVICE = "@numpy"
FULL_MODEL = "wrn28_10"  # the network of the authors' headline result and of the 2016 code
# The experiment: WRN-10-2 (wide, shallow) against WRN-22-1 (thin, deep), same data and recipe.
QUICK = dict(train_subset=1024, test_subset=500, epochs=2, batch_size=64)
CI = dict(train_subset=512, test_subset=300)  # the tests train on half the images

# %%
import sys
import time

try:
    import chainer_nets  # noqa: F401
except ImportError:  # running from notebooks/ without installing the package
    sys.path.insert(0, "..")

import chainer
import chainer.functions as F
import numpy as np

from chainer_nets import notebook as nb
from chainer_nets.models import wide_resnet
from chainer_nets.registry import count_params, get_model_info

assert MODE in ("quick", "full"), MODE
QUICK = nb.quick_settings(QUICK, CI)

# %% [markdown]
# ## The equations, next to the code
#
# A block has two 3×3 convolutions, each preceded by BN and ReLU (the pre-activation order of
# notebook 11), with optional dropout in between:
#
# $$\mathbf{x}_{l+1} = s(\mathbf{x}_l) + W_2 * \mathrm{drop}\Big(\mathrm{ReLU}\big(\mathrm{BN}_2(W_1 * \mathbf{a}_l)\big)\Big),
#   \qquad \mathbf{a}_l = \mathrm{ReLU}(\mathrm{BN}_1(\mathbf{x}_l)).$$
#
# The shortcut $s$ is the identity when the shape is kept. Where the width or the resolution
# changes (the first block of each stage), $s(\mathbf{x}_l) = W_s * \mathbf{a}_l$ is a 1×1
# convolution of the same pre-activated input. "Wide" is only in the numbers: the
# convolutions of stage $j$ have $16\cdot 2^{j-1}\cdot k$ filters instead of
# $16\cdot 2^{j-1}$. In `WideBasic`, `forward` computes $\mathbf{a}_l$ and adds the two
# terms; `residual` is the second term and `skip` is $s$. Swapout (notebook 14) and RoR
# (notebook 18) reuse this block.

# %%
nb.show_source(wide_resnet.WideBasic)

# %% [markdown]
# A check that does not trust `forward`: rebuild the block's output with Chainer's plain
# functions from its weights, with non-trivial BN statistics, at test time (where dropout is
# off), for a block that keeps its shape and for one with a projection shortcut. In training
# mode dropout makes two passes differ.

# %%
rng = np.random.default_rng(0)


def bn_test(h, link):
    """Batch normalization with the running statistics, written out."""
    s = (1, -1, 1, 1)
    scale = link.gamma.array.reshape(s) / np.sqrt(link.avg_var.reshape(s) + link.eps)
    return (h - link.avg_mean.reshape(s)) * scale + link.beta.array.reshape(s)


for in_ch, out_ch, stride in ((32, 32, 1), (16, 32, 2)):
    blk = wide_resnet.WideBasic(in_ch, out_ch, stride=stride, dropout=0.3)
    for b in (blk.bn1, blk.bn2):
        b.avg_mean[...] = rng.standard_normal(b.avg_mean.shape).astype(np.float32)
        b.avg_var[...] = rng.uniform(0.5, 2.0, b.avg_var.shape).astype(np.float32)
    x = rng.standard_normal((2, in_ch, 8, 8)).astype(np.float32)
    a = np.maximum(bn_test(x, blk.bn1), 0)
    h = np.maximum(
        bn_test(F.convolution_2d(a, blk.conv1.W, stride=stride, pad=1).array, blk.bn2), 0
    )
    res = F.convolution_2d(h, blk.conv2.W, pad=1).array
    skip = (
        x
        if stride == 1 and in_ch == out_ch
        else F.convolution_2d(a, blk.shortcut.W, stride=stride).array
    )
    with chainer.using_config("train", False):
        y = blk(x).array
    with chainer.using_config("train", True):
        differ = not np.allclose(blk(x).array, blk(x).array)
    print(
        f"{in_ch}->{out_ch}, stride {stride}: max |block - equation| = "
        f"{float(abs(y - (skip + res)).max()):.2e}; training passes differ (dropout): {differ}"
    )
    assert np.allclose(y, skip + res, atol=1e-4) and differ

# %% [markdown]
# ## The block
#
# The wide basic block; $k$ does not appear in the drawing, only in the number of filters.

# %%
nb.draw_block(
    "x -> BN#1 -> ReLU#1 -> conv 3×3, 16·2ʲ⁻¹·k filters#1 -> BN#2 -> ReLU#2 -> dropout (optional)"
    " -> conv 3×3, 16·2ʲ⁻¹·k filters#2 -> + -> y;"
    "x -[identity (1×1 conv of ReLU(BN(x)) where the shape changes)]-> +",
    title="wide basic block (pre-activation), stage j",
)

# %% [markdown]
# ## The network and its parameter count
#
# WRN-$d$-$k$: a 3×3 convolution with 16 filters, three stages of $n$ wide blocks with
# $16k$, $32k$ and $64k$ filters on 32×32, 16×16 and 8×8 maps, then BN–ReLU, global average
# pooling and a linear layer. Counting the two convolutions per block, the stem and the three
# 1×1 shortcut convolutions, $d = 6n + 4$: WRN-28-10 has $n = 4$.

# %%
nb.show_source(wide_resnet.WideResNet)
net = get_model_info(FULL_MODEL).build()
rows = nb.shape_table(net)
assert rows[-1]["out"] == (1, 10)

# %% [markdown]
# Width is expensive in parameters: a 3×3 convolution with $C$ inputs and $C$ outputs has
# $9C^2$ weights, so multiplying every width by $k$ multiplies a block's weights by $k^2$.
# Against the figures quoted for the paper's results table (we could not re-read the table
# itself):

# %%
checks = nb.param_check(
    ["wrn40_4", "wrn16_8", "wrn28_10", "wrn28_10_dropout"],
    source="paper",
    where="results table, as quoted",
)
assert all(c["agrees"] for c in checks), checks

# %% [markdown]
# A second, independent check against the 2016 table, which lists 36.2M for the 2016 Chainer
# WRN-28-10. That code replaces the three 1×1 projection shortcuts by zero-padding; taking
# their weights out of our count must give its figure:

# %%
projections = sum(count_params(b.shortcut) for b in net.blocks if getattr(b, "project", False))
without = count_params(net) - projections
print(
    f"WRN-28-10: {count_params(net):,} parameters, of which {projections:,} in the 1×1 "
    f"projections; without them {without:,} = {without / 1e6:.1f}M (2016 table: 36.2M)"
)
assert round(without / 1e6, 1) == 36.2

# %% [markdown]
# ## Recipe and departures

# %%
_ = nb.show_recipe("wrn")

# %% [markdown]
# ## The experiment
#
# **Wide and shallow against thin and deep, at the same size.** The paper's claim: for a
# given number of parameters a wide, shallow residual network is at least as accurate as a
# thin, deep one, and much faster to run. Two networks from the same class with almost the
# same parameters and the same arithmetic per image:
#
# * **WRN-10-2**: one block per stage, twice the base width (7 convolutions in sequence);
# * **WRN-22-1**: three blocks per stage, the base width (19 convolutions in sequence).
#
# We count their parameters and multiply-adds, measure the CPU time of a forward pass per
# image in batches of 100 (summed over this process's threads, which a busy machine inflates
# far less than wall time), then train both with the WRN recipe squeezed
# into a few epochs on the same CIFAR-10 subset, same seed. On a CPU the time of a
# convolution is close to proportional to its arithmetic, so any speed gap comes from doing
# the same work in more, smaller steps; on a GPU the gap is larger, because a thin layer
# cannot fill the device. The tests train on fewer images for fewer epochs.

# %%
pair = {"WRN-10-2 (wide, shallow)": (10, 2), "WRN-22-1 (thin, deep)": (22, 1)}
for d, k in pair.values():
    nb.register_sibling(
        f"wrn{d}_{k}",
        like=FULL_MODEL,
        factory=wide_resnet.WideResNet,
        description=f"WRN-{d}-{k} (notebook experiment)",
        depth=d,
        widen=k,
    )


def seconds_per_image(model, x, repeats: int = 3) -> float:
    """Median CPU time (all threads of this process) of a test-mode forward pass of the batch
    ``x``, per image. CPU time, unlike wall time, is barely inflated when other programs share
    the cores."""
    times = []
    with chainer.using_config("train", False), chainer.no_backprop_mode():
        model(x)  # warm-up: buffers, caches
        for _ in range(repeats):
            t0 = time.process_time()
            model(x)
            times.append(time.process_time() - t0)
    return float(np.median(times)) / len(x)


runs, table = {}, []
if MODE == "quick":
    nb.setup_cpu_fast()
    xs = np.random.default_rng(1).standard_normal((100, 3, 32, 32)).astype(np.float32)
    for label, (d, k) in pair.items():
        name = f"wrn{d}_{k}"
        model = get_model_info(name).build()
        t100 = seconds_per_image(model, xs)
        cpu0 = time.process_time()
        runs[label] = nb.quick_train(name, plot=False, device=DEVICE, **QUICK)
        train_cpu = time.process_time() - cpu0
        table.append(
            [
                label,
                f"{count_params(model):,}",
                f"{nb.forward_flops(name) / 2e6:.0f}",
                f"{1e3 * t100:.2f}",
                f"{train_cpu:.0f}",
                f"{runs[label]['test_accuracy']:.1f}",
            ]
        )
    nb.plot_runs(
        runs,
        title=f"wide vs deep at ~0.3M parameters ({QUICK['train_subset']} training images, "
        f"batch {QUICK['batch_size']})",
    )
    nb.show_md(
        nb.md_table(
            [
                "network",
                "parameters",
                "M multiply-adds / image",
                "CPU ms / image, batch 100",
                "training CPU time (s)",
                "test accuracy (%)",
            ],
            table,
        )
    )
    accs = [r["test_accuracy"] for r in runs.values()]
    nb.noise_level(float(np.mean(accs)), runs[next(iter(runs))]["test_images"])
    t_wide, t_deep = (float(r[3]) for r in table)
    print(
        f"Look at the time columns: with about the same parameters and arithmetic the thin, "
        f"deep net needs {t_deep / t_wide:.1f}x the CPU time per image in batches here, and its "
        f"accuracy gap to the wide one ({accs[1] - accs[0]:+.1f} points) is to be read "
        "against the noise level above."
    )
else:
    full = nb.full_train(FULL_MODEL, DEVICE)

# %% [markdown]
# ## The full reproduction
#
# The authors' README reports 4.00% test error for WRN-28-10 (median of five runs, per-channel
# mean/std normalisation, i.e. 96.00% accuracy) and 3.89% with dropout. The 2016 Chainer
# implementation reached 95.76% with zero-padded shortcuts instead of 1×1 projections and
# plain momentum instead of Nesterov's. Ours is the test accuracy after the last epoch of one
# run, generated from `results/`:

# %%
run = nb.reproduction(FULL_MODEL)

# %% [markdown]
# ## Why it works, and when it fails
#
# A residual network's depth is partly an illusion: with identity shortcuts the signal can
# bypass most blocks, and in very deep thin networks many blocks learn little (the paper
# calls it diminishing feature reuse). Width puts the capacity where every example uses it,
# in a few blocks that all contribute. It also suits the hardware: a convolution with many
# channels is one large matrix product, while a deep thin network is a long chain of small
# ones that cannot run in parallel; the time columns of the experiment measure that cost on
# a CPU, where it is smaller than on a GPU.
#
# The price is parameters and memory: the parameters grow with $k^2$, WRN-28-10 has 36.5M,
# more than twenty times a 164-layer pre-activation ResNet, and its activations are ten
# times as wide. So many parameters over-fit more easily, which is what the dropout between
# the convolutions is for. And width does not replace depth entirely: the headline network
# still has 28 layers, not 10.

# %% [markdown]
# ## What to take away
#
# * The block is notebook 11's pre-activation basic block; the new idea is the factor $k$ on
#   the widths (and optional dropout between the convolutions).
# * 28 wide layers beat 1001 thin ones on CIFAR-10, and train several times faster on a GPU.
# * At equal parameters and arithmetic, fewer wider layers cost less time per image, and
#   in a short run they learn at least as fast (the experiment: compare the accuracy gap with
#   the noise level printed under it).
# * Parameters grow with $k^2$: 36.5M for WRN-28-10.

# %% [markdown]
# ## Appendix: sources
#
# * Architecture (pre-activation basic-wide blocks, widths $16k/32k/64k$, 1×1 projection
#   shortcuts, dropout 0.3 between the convolutions), recipe (Nesterov momentum 0.9, weight
#   decay $5\cdot10^{-4}$, lr 0.1 × 0.2 at epochs 60, 120, 160 of 200, batch 128, reflection
#   padding), initialisation, and the 4.00% / 3.89% errors: the authors' code and README,
#   [szagoruyko/wide-residual-networks](https://github.com/szagoruyko/wide-residual-networks).
# * The question and the claims (diminishing feature reuse, a 16-layer wide network beating
#   thousand-layer ones, several times faster training): the paper's abstract,
#   [arXiv 1605.07146](https://arxiv.org/abs/1605.07146).
# * Parameter figures 36.5M, 11.0M and 8.9M: as quoted for the paper's table, not re-read;
#   36.2M for the 2016 Chainer code: the 2016 table. Both recomputed above.
# * The 2016 Chainer implementation and its 95.76%:
#   [nutszebra/wide_residual_net](https://github.com/nutszebra/wide_residual_net).
