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
# # 21 · Deep Pyramidal Residual Networks (PyramidNet)
#
# Han, Kim, Kim — *Deep Pyramidal Residual Networks*, arXiv
# [1610.02915](https://arxiv.org/abs/1610.02915), October 2016.
#
# ## The question
#
# A CIFAR ResNet keeps 16 channels for a third of its units, then jumps to 32, then to 64,
# each jump where the resolution halves. Deleting one residual unit from a trained ResNet
# barely matters, *except* at those jumps: there the removed unit was the only one that
# could fill the new channels. Is concentrating all the widening in two units a good use
# of the width budget?
#
# ## The idea
#
# Spread it out. Every unit adds the same small number of channels, $\alpha/N$, so the
# width grows linearly from 16 to $16 + \alpha$ over the $N$ units, and no unit is special.
# The shortcut that has to match the growing width stays free of parameters: zero channels
# are appended to the input. Two small changes to the pre-activation unit go with it: no
# ReLU at the unit's start and a batch normalization at its end.

# %% tags=["parameters"]
# "quick": the experiment below on the CPU (what CI runs, with the lighter CI settings);
# "full": the paper's network and recipe (on a GPU: DEVICE = "@cupy:0").
MODE = "quick"
DEVICE = "@numpy"
FULL_MODEL = "pyramidnet110_a270"  # the paper's best basic-unit network (and the 2016 code's)
# The experiment: two 20-layer nets trained on train_subset images, then every unit deleted in
# turn and the nets scored on lesion_images test images.
QUICK = dict(
    train_subset=3072, test_subset=500, epochs=4, batch_size=64, lr=0.1, lesion_images=2000
)
CI = dict(train_subset=512, epochs=2, lesion_images=500)  # the tests run a lighter version

# %%
import sys

try:
    import chainer_nets  # noqa: F401
except ImportError:  # running from notebooks/ without installing the package
    sys.path.insert(0, "..")

import chainer
import chainer.functions as F
import matplotlib.pyplot as plt
import numpy as np

from chainer_nets import notebook as nb
from chainer_nets.data import channel_stats, load_cifar10, take_subset
from chainer_nets.models import pyramidnet

assert MODE in ("quick", "full"), MODE
QUICK = nb.quick_settings(QUICK, CI)

# %% [markdown]
# ## The equations, next to the code
#
# **Additive widening.** With $N$ units in the whole network (three stages of $N/3$), unit
# $k$ has
#
# $$D_k = \operatorname{round}\Big(16 + k\,\frac{\alpha}{N}\Big), \qquad k = 1, \dots, N,$$
#
# channels (a bottleneck unit outputs $4 D_k$). The authors' code keeps the width as a
# running float, adds $\alpha/N$ per unit and rounds half up only when it builds a layer:

# %%
nb.show_source(pyramidnet.pyramid_widths)

# %% [markdown]
# A check against the formula in exact rational arithmetic, for the paper's $\alpha = 48$
# over $N = 54$ units (8/9 of a channel per unit, so some units add none):

# %%
from fractions import Fraction

N, alpha = 54, 48
exact = [int(Fraction(16) + Fraction(k * alpha, N) + Fraction(1, 2)) for k in range(1, N + 1)]
widths = pyramidnet.pyramid_widths(alpha, N)
assert widths == exact and widths[-1] == 16 + alpha
print("D_1..D_12 =", widths[:12], "... D_54 =", widths[-1])
print("channels added per unit:", sorted(set(np.diff([16] + widths).tolist())))

# %% [markdown]
# **The unit.** The shortcut averages 2×2 windows where the resolution halves and appends
# $D_k - D_{k-1}$ zero channels; the residual is batch-normalised at both ends and has its
# only ReLU in the middle:
#
# $$\mathbf{x}_k = \mathcal{F}_k(\mathbf{x}_{k-1}) + \big[\,\mathrm{pool}(\mathbf{x}_{k-1});\ \mathbf{0}\,\big],
# \qquad \mathcal{F}_k(\mathbf{x}) = \mathrm{BN}\big(W_2 * \mathrm{ReLU}(\mathrm{BN}(W_1 * \mathrm{BN}(\mathbf{x})))\big).$$

# %%
nb.show_source(pyramidnet.pyramid_shortcut)
nb.show_source(pyramidnet.PyramidUnit, "residual")
nb.show_source(pyramidnet.PyramidBasic)

# %% [markdown]
# A check that does not trust `forward`: rebuild the unit from its own weights with plain
# functions (batch normalization in test mode with non-trivial running statistics), for a
# down-sampling unit 5 → 7 channels. A ReLU at the start, a missing BN or a ReLU after the
# sum would show here.

# %%
rng = np.random.default_rng(0)
unit = pyramidnet.PyramidBasic(5, 7, stride=2)
for b in (unit.bn1, unit.bn2, unit.bn_last):
    b.avg_mean[...] = rng.standard_normal(b.avg_mean.shape).astype(np.float32)
    b.avg_var[...] = rng.uniform(0.5, 2.0, b.avg_var.shape).astype(np.float32)
x = rng.standard_normal((2, 5, 8, 8)).astype(np.float32)


def bn_test(h, link):
    """Batch normalization in test mode, written out."""
    shape = (1, -1, 1, 1)
    scale = link.gamma.array.reshape(shape) / np.sqrt(link.avg_var.reshape(shape) + link.eps)
    return (h - link.avg_mean.reshape(shape)) * scale + link.beta.array.reshape(shape)


with chainer.using_config("train", False):
    y = unit(x).array
h = bn_test(x, unit.bn1)  # no ReLU: negative values go into the first convolution
h = np.maximum(bn_test(F.convolution_2d(h, unit.conv1.W, stride=2, pad=1).array, unit.bn2), 0)
r = bn_test(F.convolution_2d(h, unit.conv2.W, pad=1).array, unit.bn_last)
pooled = x.reshape(2, 5, 4, 2, 4, 2).mean(axis=(3, 5))
by_hand = r + np.concatenate([pooled, np.zeros((2, 2, 4, 4), np.float32)], axis=1)
print(
    "max |unit(x) - by hand| =", float(abs(y - by_hand).max()), "; negative outputs:", (y < 0).any()
)
assert np.allclose(y, by_hand, atol=1e-5)

# %% [markdown]
# ## The block
#
# The pyramidal basic unit (the paper's Figure 6(d)). The bottleneck unit replaces the two
# 3×3 convolutions by 1×1 → 3×3 → 1×1 (to $4 D_k$), with BN-ReLU between them.

# %%
nb.draw_block(
    "x -> BN#1 -> conv 3×3 → D_k#1 -> BN#2 -> ReLU -> conv 3×3#2 -> BN#3 -> + -> y;"
    "x -[2×2 avg pool (stride 2 only), zero channels]-> +",
    title="pyramidal residual unit (no ReLU at the start or after the sum)",
)

# %% [markdown]
# ## The network and its parameter count
#
# conv 3×3 with 16 filters and BN (no ReLU), three stages of $N/3$ units on 32², 16² and 8²
# maps with the stride on the first unit of stages 2 and 3, then BN-ReLU, global average
# pooling and a linear layer. Depth $d$ gives $N/3 = (d-2)/6$ basic or $(d-2)/9$ bottleneck
# units per stage. The width schedule of PyramidNet-110 ($\alpha = 48$) against ResNet-110's,
# which has the same final width of 64:

# %%
net48 = pyramidnet.PyramidNet(110, 48)
resnet_widths = [16] * 18 + [32] * 18 + [64] * 18
fig, ax = plt.subplots(figsize=(6, 3), dpi=80)
ax.step(range(1, 55), resnet_widths, where="post", label="ResNet-110 (width doubles twice)")
ax.plot(range(1, 55), net48.channels, ".-", label=r"PyramidNet-110, $\alpha$ = 48")
for k in (19, 37):
    ax.axvline(k, color="gray", lw=0.5, ls=":")
ax.set(xlabel="residual unit k (dotted: resolution halves)", ylabel="channels $D_k$")
ax.grid(alpha=0.3)
ax.legend()
plt.show()

# %%
rows = nb.shape_table(net48)

# %% [markdown]
# The paper prints every network's parameter count to 0.1M (Table 4 of its final version,
# and the official README). Counting convolution and linear weights, as the printed
# bottleneck figures suggest (PyramidNet-272 has 25,999,968 = 26.0M), four of the five do
# not agree: they come out 0.05–0.14M larger than printed, although every unit's width is
# the authors' code's and the final widths 64, 100, 286 and 1144 are the
# paper's "output feature dimension". The mismatches are recorded in the registry and the
# tests pin our exact counts.

# %%
checks = nb.param_check(
    [
        "pyramidnet110_a48",
        "pyramidnet110_a84",
        "pyramidnet110_a270",
        "pyramidnet164_a270_bottleneck",
        "pyramidnet272_a200_bottleneck",
    ],
    source="paper",
    where="Table 4 / README",
)
assert [c["agrees"] for c in checks] == [False, False, False, False, True], checks

# %% [markdown]
# ## Recipe and departures
#
# The official code trains on top of fb.resnet.torch: Nesterov momentum 0.9, weight decay
# $10^{-4}$, batch 128, 300 epochs with the learning rate 0.1 (CIFAR-10) divided by 10 at
# epochs 150 and 225; mean/std normalisation, 4-pixel padding with random crops, flips.

# %%
_ = nb.show_recipe("pyramidnet")

# %% [markdown]
# ## The experiment
#
# **Which unit matters: the lesion test in miniature.** The paper's motivation (its
# Figure 8): delete one unit from a trained ResNet, i.e. keep only its shortcut, and the
# test error jumps where the width doubled; in a PyramidNet every deletion costs less, and
# about the same everywhere. We train two 20-layer networks built from *the same pyramidal
# units*, differing only in the width schedule: step widening 16/32/64 (ResNet's) and
# additive widening with $\alpha = 48$ (also ending at 64 channels; 0.27M and 0.31M weights).
# Both train on the same 3,072 CIFAR-10 images for four epochs with the recipe squeezed into
# them, seed 0 (the nets must have learned something for a deletion to cost anything: after
# three epochs on 1,024 images they were barely trained, and every deletion cost about the
# same few points, within the noise). Then each of the 9 units is deleted in turn and the
# test accuracy measured again on the same 2,000 test images.
#
# Each deletion is scored on the same images as the intact net, so the accuracy it costs is
# a paired difference, and we print its standard error. Look at **units 4 and 7** (the first
# units of stages 2 and 3, where the step net doubles its width: deleting one leaves half of
# the next stage's channels at zero) against the others, and at the **average cost of a
# deletion** in each net. About four minutes on two quiet cores; the tests train on 512
# images for two epochs and score 500.

# %%
nb.register_sibling(
    "step20_quick",
    like="pyramidnet110_a48",
    factory=pyramidnet.PyramidNet,
    description="20 layers, pyramidal units, ResNet's step widths 16/32/64",
    depth=20,
    alpha=48,
    widths=[16] * 3 + [32] * 3 + [64] * 3,
)
nb.register_sibling(
    "pyramid20_a48_quick",
    like="pyramidnet110_a48",
    factory=pyramidnet.PyramidNet,
    description="PyramidNet-20, alpha = 48",
    depth=20,
    alpha=48,
)


def test_images(n):
    """The quick run's test subset, normalised with the training set's channel statistics."""
    data = load_cifar10()
    mean, std = channel_stats(data.train_x)
    tx, ty = take_subset(data.test_x, data.test_y, n)
    tx = (tx.astype(np.float32) - mean[None, :, None, None]) / std[None, :, None, None]
    return tx, ty


def hits(net, tx, ty):
    """Test-mode per-image correctness of ``net`` on the given images."""
    with chainer.using_config("train", False), chainer.no_backprop_mode():
        pred = np.concatenate(
            [net(tx[i : i + 250]).array.argmax(1) for i in range(0, len(tx), 250)]
        )
    return pred == ty


def lesion(net, tx, ty):
    """Intact accuracy (%) and, per unit deleted (its shortcut alone), per-image correctness lost."""
    base, lost = hits(net, tx, ty), []
    for u in net.units:
        u.forward = lambda h, u=u: pyramidnet.pyramid_shortcut(h, u.out_ch, u.stride)
        lost.append(base.astype(float) - hits(net, tx, ty))
        del u.forward  # back to the class's forward
    return 100 * base.mean(), np.stack(lost)


runs, lost = {}, {}
TRAIN = {k: v for k, v in QUICK.items() if k != "lesion_images"}
LABELS = {"step 16/32/64": "step20_quick", "additive, α = 48": "pyramid20_a48_quick"}

# %% [markdown]
# Train the two networks (one cell each, same data and seed):

# %%
if MODE == "quick":
    label = "step 16/32/64"
    runs[label] = nb.quick_train(LABELS[label], plot=False, keep_model=True, device=DEVICE, **TRAIN)

# %%
if MODE == "quick":
    label = "additive, α = 48"
    runs[label] = nb.quick_train(LABELS[label], plot=False, keep_model=True, device=DEVICE, **TRAIN)

# %% [markdown]
# Their training curves, then the lesion test: the accuracy lost when each unit in turn
# keeps only its shortcut, with ± 1 standard error of each paired difference.

# %%
if MODE == "quick":
    nb.plot_runs(runs, title=f"20-layer nets, {QUICK['train_subset']} training images")
    tx, ty = test_images(QUICK["lesion_images"])
    base = {}
    for label, run in runs.items():
        base[label], lost[label] = lesion(run["net"], tx, ty)
    n = len(ty)
    fig, ax = plt.subplots(figsize=(7, 3.2), dpi=80)
    k = np.arange(1, 10)
    for off, (label, d) in zip((-0.2, 0.2), lost.items(), strict=True):
        ax.bar(
            k + off,
            100 * d.mean(axis=1),
            0.4,
            yerr=100 * d.std(axis=1, ddof=1) / np.sqrt(n),
            capsize=2,
            label=f"{label} (intact: {base[label]:.1f}%)",
        )
    ax.set(
        xlabel="deleted unit k (4 and 7: resolution halves)",
        ylabel="test accuracy lost (points)",
    )
    ax.set_title(f"lesion test on {n} CIFAR-10 test images, ± 1 s.e. (paired)", fontsize=10)
    ax.set_xticks(k)
    ax.grid(alpha=0.3, axis="y")
    ax.legend(fontsize=8)
    plt.show()
    nb.show_md(
        nb.md_table(
            ["deleted unit"] + [f"{lab}: points lost ± s.e." for lab in lost],
            [
                [u + 1]
                + [
                    f"{100 * d[u].mean():.1f} ± {100 * d[u].std(ddof=1) / np.sqrt(n):.1f}"
                    for d in lost.values()
                ]
                for u in range(9)
            ],
        )
    )
    nb.noise_level(float(np.mean(list(base.values()))), n)
    summary = {}
    for label, d in lost.items():
        down, others = d[[3, 6]].mean(axis=0), np.delete(d, [3, 6], axis=0).mean(axis=0)
        gap = down - others  # per image: downsampling deletions minus the others
        summary[label] = d.mean(axis=0)  # per image: the average over the 9 deletions
        print(
            f"{label}: deleting unit 4 or 7 costs {100 * down.mean():.1f} points on average, "
            f"any other unit {100 * others.mean():.1f}: {100 * gap.mean():+.1f} ± "
            f"{100 * gap.std(ddof=1) / np.sqrt(n):.1f} points more at the downsampling units; "
            f"a deletion anywhere costs {100 * summary[label].mean():.1f} points on average."
        )
    step, pyr = summary.values()
    diff = step - pyr  # the same images, so the difference is paired
    g, e = 100 * diff.mean(), 100 * diff.std(ddof=1) / np.sqrt(n)
    d_step = lost["step 16/32/64"]
    spike = d_step[[3, 6]].mean(axis=0) - np.delete(d_step, [3, 6], axis=0).mean(axis=0)
    gs, es = 100 * spike.mean(), 100 * spike.std(ddof=1) / np.sqrt(n)
    robust, localised = g > 2 * e, gs > 2 * es
    print(
        f"Averaged over all nine deletions, the step-widened net loses {g:+.1f} ± {e:.1f} "
        f"points more than the additive one ({g / e:+.1f} standard errors); its downsampling "
        f"units cost {gs:+.1f} ± {es:.1f} points more than its others ({gs / es:+.1f} s.e.). "
        + (
            "On average the additive net is the more robust one, as the paper says"
            if robust
            else "On average the step-widened net is the more robust one here, the opposite "
            "of the paper's claim"
            if g / e <= -2
            else "On average neither net is measurably more robust"
        )
        + (
            "; the step net's fragile units are where its width doubles (units 4 and 7)."
            if localised
            else "; the step net's extra fragility is not concentrated at units 4 and 7."
        )
    )
else:
    full = nb.full_train(FULL_MODEL, DEVICE)

# %% [markdown]
# ## The full reproduction
#
# The paper reports 3.73% test error for PyramidNet-110 with $\alpha = 270$ (its final
# version and README; the first version printed 3.77%), the 2016 Chainer code reached 95.9%
# with a variant (floored widths, stride on the second convolution, sub-sampling shortcut,
# BN-ReLU on the logits, learning rate 0.5). Ours is the test accuracy after the last epoch
# of one run, generated from `results/`:

# %%
run = nb.reproduction(FULL_MODEL)

# %% [markdown]
# ## Why it works, and when it fails
#
# With the zero-padded shortcut every unit both refines the existing channels and creates
# a few new ones, so the network behaves less like a chain with two critical links and more
# like the ensemble of paths residual networks are known to act as; deleting or perturbing
# one unit costs little anywhere. Removing the first ReLU keeps the negative half of the
# normalised input available to the branch (the padded shortcut channels start at zero, so
# the branch is the only thing that writes them), and the BN at the end scales each unit's
# contribution before it is added without a ReLU.
#
# It is not free: the widths grow in the late, cheap 8×8 stage as well as in the early
# 32×32 one, so compute per unit rises steadily, and the large-$\alpha$ networks that give
# the best errors (28M parameters) are slow to train. The unit changes were chosen on
# CIFAR; without the final BN the sum of many un-normalised branches grows with depth.

# %% [markdown]
# ## What to take away
#
# * Widen a little at every unit: $D_k = \mathrm{round}(16 + k\alpha/N)$, no jumps.
# * Shortcuts stay parameter-free: 2×2 average pooling where the resolution halves, zero
#   channels for the width.
# * The unit is BN-conv-BN-ReLU-conv-BN: no ReLU at its start or after the sum.
# * The lesion test: deleting one unit of a trained net shows which units it cannot do
#   without; the experiment measures where a step-widened net keeps its fragile units, and
#   prints whether an additive one loses less.

# %% [markdown]
# ## Appendix: sources
#
# * Width schedule (running float, rounding half up, $\alpha/(3n)$ per unit), unit order,
#   shortcut (2×2 average pooling, zero padding), stem without ReLU, head, initialisation:
#   the authors' Torch code, `addpyramidnet.lua` and `mulpyramidnet.lua` in
#   [jhkim89/PyramidNet](https://github.com/jhkim89/PyramidNet), and the official PyTorch
#   port [dyhan0920/PyramidNet-PyTorch](https://github.com/dyhan0920/PyramidNet-PyTorch)
#   (bottleneck units per stage $(d-2)/9$, stride on the 3×3 convolution, Python's
#   `round` of the same running float).
# * Errors, parameter counts and output feature dimensions: the README of
#   [jhkim89/PyramidNet](https://github.com/jhkim89/PyramidNet), which repeats the paper's
#   tables; the recipe (300 epochs, lr 0.1 for CIFAR-10, steps at 150 and 225) from the
#   same README on top of fb.resnet.torch's defaults.
# * Parameter counts: recomputed above; the three that disagree with the printed figures
#   are named with our exact counts in `chainer_nets/models/pyramidnet.py`.
