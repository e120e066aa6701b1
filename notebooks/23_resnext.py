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
# # 23 · Aggregated Residual Transformations (ResNeXt)
#
# Xie, Girshick, Dollár, Tu, He — *Aggregated Residual Transformations for Deep Neural
# Networks*, arXiv [1611.05431](https://arxiv.org/abs/1611.05431), November 2016.
#
# ## The question
#
# Networks had grown along two axes: depth (ResNet) and width (Wide ResNet, notebook 15).
# Inception modules showed that a third recipe works too — split the input into several
# low-dimensional branches, transform each, merge the results — but every Inception module
# is hand-tuned, with its own filter counts and sizes. Is there a simple, repeatable form
# of split–transform–merge, and is its number of branches a dimension worth scaling?
#
# ## The idea
#
# Replace the bottleneck of a residual block by the **sum of $C$ identical small
# transformations** (each a 1×1 reduction to $d$ channels, a 3×3 convolution, a 1×1
# expansion). $C$, the *cardinality*, is a new hyperparameter next to depth and width. The
# $C$ paths are exactly one bottleneck whose 3×3 convolution is **grouped** ($C$ groups),
# so the block is cheap to implement. At the same number of parameters and FLOPs, raising
# $C$ (and shrinking $d$) lowers the error, and on CIFAR raising $C$ helps more than raising
# the width: ResNeXt-29 (16×64d) reaches 3.58% error on CIFAR-10.

# %% tags=["parameters"]
# MODE "full" runs the paper's recipe (with DEVICE = "@cupy:0")
MODE = "quick"
DEVICE = "@numpy"
FULL_MODEL = "resnext29_16x64d"  # the paper's best CIFAR network
QUICK = dict(train_subset=768, test_subset=500, epochs=2, batch_size=32, lr=0.05)
CI = dict(train_subset=384, test_subset=300)  # lighter when the tests run it

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
from chainer_nets.models import resnext
from chainer_nets.registry import count_params, get_model_info

assert MODE in ("quick", "full"), MODE
QUICK = nb.quick_settings(QUICK, CI)
nb.setup_cpu_fast()

# %% [markdown]
# ## The equations, next to the code
#
# **Aggregated transformation.** With path $i$ made of a 1×1 convolution $W^a_i$ to $d$
# channels, a 3×3 convolution $W^b_i$ on those $d$ channels and a 1×1 convolution $W^c_i$
# back to the block's output width (BN and ReLU after the first two),
#
# $$\mathbf{y} = \mathrm{ReLU}\Big(s(\mathbf{x}) + \mathrm{BN}\Big(\sum_{i=1}^{C}\mathcal{T}_i(\mathbf{x})\Big)\Big),
#   \qquad \mathcal{T}_i(\mathbf{x}) = W^c_i\,\mathrm{ReLU}\big(\mathrm{BN}(W^b_i * \mathrm{ReLU}(\mathrm{BN}(W^a_i\,\mathbf{x})))\big).$$
#
# Stacking the $W^a_i$ gives one 1×1 convolution to $Cd$ channels; the $W^b_i$ side by side
# are one 3×3 convolution with $C$ groups (group $i$ sees only its own $d$ channels); and
# $\sum_i W^c_i \mathbf{h}_i$ is one 1×1 convolution of the concatenated $\mathbf{h}_i$.
# `ResNeXtBlock.transform` computes the sum that way (three convolutions, the middle one
# grouped); `ResNeXtBlock.paths` computes the $C$ terms one by one from slices of the same
# weights, for checking. $s$ is the identity, or a 1×1 convolution with BN where the width
# changes.

# %%
nb.show_source(resnext.ResNeXtBlock)

# %% [markdown]
# A check that can fail: the first block of ResNeXt-29 (8×64d) — 64 input maps, 8 paths of
# width 64, 256 output maps — computed as $C$ separate paths and summed, against the
# grouped-convolution form with the same weights, in test mode (running statistics) and in
# training mode (batch statistics, per channel, so slicing them is exact too):

# %%
np.random.seed(0)
block = get_model_info("resnext29_8x64d").build().blocks[0]
rng = np.random.default_rng(0)
for link in (block.bn1, block.bn2, block.bn3):  # non-trivial running statistics
    link.avg_mean[...] = rng.uniform(-0.5, 0.5, link.avg_mean.shape)
    link.avg_var[...] = rng.uniform(0.5, 1.5, link.avg_var.shape)
x = rng.standard_normal((2, 64, 8, 8)).astype(np.float32)
for train in (False, True):
    with chainer.using_config("train", train):
        grouped = block.transform(x).array
        paths = block.paths(x)
    summed = sum(p.array for p in paths)
    diff = float(np.abs(summed - grouped).max())
    print(
        f"{'train' if train else 'test '} mode: {len(paths)} paths of shape {paths[0].shape}; "
        f"max |sum of paths - grouped form| = {diff:.2e} (values up to "
        f"{float(np.abs(grouped).max()):.1f}); one path alone differs by "
        f"{float(np.abs(paths[0].array - grouped).max()):.1f}"
    )
    assert diff < 1e-4 * float(np.abs(grouped).max())

# %% [markdown]
# Grouping divides the 3×3 convolution's weights by $C$: $C \cdot 9d^2$ instead of
# $9(Cd)^2$. And a grouped convolution is a dense one whose weight is zero between groups:

# %%
C, width = block.cardinality, block.conv2.W.shape[0]
d = width // C
print(f"grouped 3x3: {block.conv2.W.size:,} weights = C*9*d^2 = {C * 9 * d * d:,}")
print(f"dense 3x3 of the same width: 9*(C*d)^2 = {9 * width * width:,} ({C}x more)")
dense = np.zeros((width, width, 3, 3), np.float32)
for g in range(C):
    dense[g * d : (g + 1) * d, g * d : (g + 1) * d] = block.conv2.W.array[g * d : (g + 1) * d]
h = rng.standard_normal((2, width, 8, 8)).astype(np.float32)
diff = float(np.abs(block.conv2(h).array - F.convolution_2d(h, dense, pad=1).array).max())
print(f"grouped conv vs block-diagonal dense conv: max |difference| = {diff:.2e}")
assert diff < 1e-3

# %% [markdown]
# ## The block
#
# The block as implemented (the paper's form (c)), and the same block drawn as $C$
# separate paths (form (a)) for $C=3$:

# %%
nb.draw_block(
    "x -> conv 1×1 to Cd#1 -> BN#1 -> ReLU#1 -> conv 3×3, C groups -> BN#2 -> ReLU#2 -> "
    "conv 1×1 to 4n#3 -> BN#3 -> + -> ReLU#3 -> y; x -[identity, or 1×1 conv + BN]-> +",
    title="ResNeXt block (grouped convolution)",
)
nb.draw_block(
    "x -> conv 1×1 to d#a -> conv 3×3, d#a -> conv 1×1 to 4n#a -> +#paths; x -> conv 1×1 to d#b -> conv 3×3, d#b -> "
    "conv 1×1 to 4n#b -> +#paths; x -> conv 1×1 to d#c -> conv 3×3, d#c -> conv 1×1 to 4n#c -> +#paths; "
    "+#paths -> BN -> +#res -> ReLU -> y; x -[shortcut]-> +#res",
    title="the same block as C = 3 paths (BN-ReLU after each 1×1 to d and each 3×3)",
)

# %% [markdown]
# ## The network and its parameter count
#
# ResNeXt-29 ($C \times d$): a 3×3 convolution with 64 maps, three stages of three blocks
# with outputs of 256, 512 and 1024 maps on 32×32, 16×16 and 8×8 (the first block of stages 2
# and 3 strides in its grouped 3×3 convolution and projects its shortcut), paths of width
# $d$, $2d$, $4d$, global average pooling and a linear layer: $9 \cdot 3 + 2 = 29$ layers.

# %%
nb.show_source(resnext.ResNeXtCifar)
rows = nb.shape_table(get_model_info("resnext29_8x64d").build())
assert rows[-1]["out"] == (1, 10)

# %% [markdown]
# The paper's CIFAR table (Table 7) gives 34.4M and 68.1M parameters. Those are the
# convolution and linear weights: counting batch norm and the classifier's bias as well
# gives 34.43M and 68.16M, and the latter would round to 68.2M.

# %%
checks = nb.param_check(["resnext29_8x64d", "resnext29_16x64d"], source="paper", where="Table 7")
assert all(c["agrees"] for c in checks), checks

# %% [markdown]
# ## Recipe and departures
#
# We follow the authors' released code: their README says the paper's CIFAR numbers were
# obtained with pre-activated blocks and batch 256, and that the released post-activation
# block with batch 128 does better.

# %%
_ = nb.show_recipe("resnext")

# %% [markdown]
# ## The experiment
#
# **The claim:** at a fixed budget of parameters and FLOPs, more paths of smaller width
# beat fewer wide ones (the paper's Table 3 on ImageNet; on CIFAR, its Figure 7: raising
# cardinality lowers the error more than raising width). In miniature: ResNeXt-11 (one
# block per stage) with a 16-map stem and stage outputs of 64, 128 and 256 maps, in three
# settings of about 125k parameters each — $1 \times 16d$ (a plain ResNet bottleneck),
# $2 \times 10d$ and $4 \times 6d$ — trained identically on the same CIFAR-10 subset with the
# ResNeXt recipe squeezed into two epochs. CI runs fewer images. (Settings with more, narrower
# groups, such as $16 \times 2d$, keep the budget but run several times slower on the CPU.)

# %%
settings = {"1x16d": (1, 16), "2x10d": (2, 10), "4x6d": (4, 6)}
for label, (c, dd) in settings.items():
    nb.register_sibling(
        f"resnext11_{label}_s16",
        like="resnext29_8x64d",
        factory=resnext.ResNeXtCifar,
        description=f"ResNeXt-11 ({label}), 16-map stem (notebook experiment)",
        depth=11,
        cardinality=c,
        base_width=dd,
        base_channels=16,
    )
budget = {
    label: count_params(get_model_info(f"resnext11_{label}_s16").build()) for label in settings
}
print("parameters:", {label: f"{n:,}" for label, n in budget.items()})
if MODE == "quick":
    runs = {}
    for label in settings:
        t0 = time.time()
        res = nb.quick_train(f"resnext11_{label}_s16", device=DEVICE, plot=False, **QUICK)
        runs[f"{label} ({budget[label] / 1e3:.0f}k parameters)"] = res
        print(f"  {label}: {time.time() - t0:.0f} s of training and evaluation on this CPU")
    nb.plot_runs(runs, title="Same budget, more paths: ResNeXt-11 on a CIFAR-10 subset (quick)")
    first = next(iter(runs.values()))
    nb.noise_level(first["test_accuracy"], first["test_images"])
    print(
        "Look at the test accuracy against the number of paths at an equal budget: at this tiny "
        "scale a gap within the noise level says nothing. Compare the CPU times printed above "
        "too: equal parameters and FLOPs need not mean equal wall-clock time."
    )
else:
    full = nb.full_train(FULL_MODEL, DEVICE)

# %% [markdown]
# ## The full reproduction
#
# The paper's CIFAR-10 errors are means of 10 runs: 3.65% for 8×64d and 3.58% for 16×64d
# (96.42% accuracy). The 2016 Chainer code trained a 2×64d network, not registered here,
# with zero-padded shortcuts. Ours is one run's accuracy after the last epoch:

# %%
run = nb.reproduction(FULL_MODEL)

# %% [markdown]
# ## Why it works, and when it fails
#
# * **A cheap way to widen.** Grouping cuts the 3×3 convolution's cost by $C$, so at a
#   fixed budget the block can afford a wider bottleneck ($Cd$ channels): 8×64d has a
#   512-wide bottleneck in stage 1 where a plain ResNet of similar cost has far fewer.
# * **Structured sparsity as a prior.** The grouped weight is block-diagonal: each path
#   learns its own low-dimensional embedding, and the 1×1 convolutions around it mix
#   them. The paper finds this better than the dense equivalent at equal complexity.
# * **When it fails.** With $d$ very small (the paper stops at $d=4$ on ImageNet) each path
#   is too narrow to learn much, and the gain saturates. Grouped convolutions also run
#   less efficiently than dense ones on most hardware, so the FLOP parity does not mean
#   wall-clock parity; and CIFAR ResNeXt-29 needs 34–68M parameters and many GPU hours for
#   its 0.3–0.4 points over Wide ResNet.
#
# ## What to take away
#
# * Split–transform–merge with identical paths = a bottleneck block with a grouped 3×3
#   convolution (shown above to float precision).
# * Cardinality $C$ is a third dimension besides depth and width; at equal complexity
#   raising it helped in the paper's experiments.
# * ResNeXt-29 8×64d and 16×64d: 34.4M and 68.1M weights; stage widths 256/512/1024, paths
#   $d$, $2d$, $4d$ wide.
#
# ## Appendix: sources
#
# * Block (form (c): 1×1 to $Cd$, grouped 3×3 with the stride, 1×1 to $4n$, BN after each,
#   ReLU after the addition), projection shortcuts only where the width changes (type B),
#   64-map stem with BN and ReLU, $d = \lfloor n \cdot d_{base}/64 \rfloor$, no convolution
#   biases — the authors' Torch code,
#   [facebookresearch/ResNeXt](https://github.com/facebookresearch/ResNeXt)
#   (`models/resnext.lua`).
# * Recipe (Nesterov momentum 0.9, weight decay $5\cdot10^{-4}$, batch 128, lr 0.1, 300
#   epochs, ÷10 at about 50% and 75%, flips and 4-pixel crops after channel normalisation)
#   and the note on pre-activated blocks and batch 256 — the authors' README, `opts.lua`,
#   `train.lua` and `datasets/cifar10.lua`.
# * Parameter counts and errors (mean of 10 runs) — the paper's Table 7.
