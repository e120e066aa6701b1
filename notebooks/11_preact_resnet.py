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
# # 11 · Identity Mappings in Deep Residual Networks (pre-activation ResNet)
#
# He, Zhang, Ren, Sun — *Identity Mappings in Deep Residual Networks*, arXiv
# [1603.05027](https://arxiv.org/abs/1603.05027), March 2016.
#
# ## The question
#
# In the original ResNet (notebook 08) a ReLU follows every addition, so the shortcut is
# not a clean identity: the signal, and the gradient coming back, pass a non-linearity at
# every block. Does that matter, and what should sit on the shortcut and after the sum so
# that information travels unchanged between any two blocks, forwards and backwards?
#
# ## The idea
#
# Keep both the shortcut and the step after the addition as identities, and move batch
# normalization and ReLU in front of each convolution ("pre-activation"). A deep block's
# input is then a shallow block's input plus a sum of residuals, and the gradient has a
# path from the loss to every block that crosses no layer at all. With this change a
# 1001-layer network trains well on CIFAR-10 and beats the shallower ones.

# %% tags=["parameters"]
# "quick": the experiment below on the CPU (what CI runs, with the lighter CI settings);
# "full": the paper's network and recipe (on a GPU: DEVICE = "@cupy:0").
MODE = "quick"
DEVICE = "@numpy"
FULL_MODEL = "preresnet164"  # the network the 2016 Chainer code trained
QUICK = dict(depths=(20, 56, 110, 218), batch=32)
CI = dict(depths=(20, 56, 110))  # the tests leave out the deepest pair

# %%
import contextlib
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
from chainer_nets.models import preact_resnet, resnet

assert MODE in ("quick", "full"), MODE
QUICK = nb.quick_settings(QUICK, CI)

# %% [markdown]
# ## The equations, next to the code
#
# Write block $l$ as $\mathbf{x}_{l+1} = \mathbf{x}_l + \mathcal{F}(\mathbf{x}_l, W_l)$: no
# function on the shortcut, none after the addition. From block $l$ to a deeper block $L$
# this unrolls to
#
# $$\mathbf{x}_L = \mathbf{x}_l + \sum_{i=l}^{L-1} \mathcal{F}(\mathbf{x}_i, W_i),$$
#
# and by the chain rule the gradient of the loss $\mathcal{E}$ with respect to the shallow
# features is
#
# $$\frac{\partial \mathcal{E}}{\partial \mathbf{x}_l}
#   = \frac{\partial \mathcal{E}}{\partial \mathbf{x}_L}
#     \Big(1 + \frac{\partial}{\partial \mathbf{x}_l} \sum_{i=l}^{L-1} \mathcal{F}(\mathbf{x}_i, W_i)\Big).$$
#
# The "1" carries $\partial\mathcal{E}/\partial\mathbf{x}_L$ to block $l$ untouched: it is
# not a product of many layers' Jacobians, so it cannot vanish however deep the network.
# With a ReLU after each sum (notebook 08) that term becomes a product of ReLU masks, one
# per block; the experiment below measures what is left of it.
#
# With BN and ReLU moved before each weight layer, a basic unit's residual is
#
# $$\mathcal{F}(\mathbf{x}) = W_2 * \mathrm{ReLU}\big(\mathrm{BN}_2(W_1 * \mathrm{ReLU}(\mathrm{BN}_1(\mathbf{x})))\big),
#   \qquad \mathbf{x}_{l+1} = \mathbf{x}_l + \mathcal{F}(\mathbf{x}_l).$$
#
# In `PreActBasic.forward` the first line pre-activates the input, the second computes the
# two convolutions, and the return line is the addition, with nothing after it. In the first
# unit of every stage the shortcut reads the pre-activated input instead of $\mathbf{x}$
# (`both_preact`, as in the authors' Torch code), so the clean path runs from a stage's
# second unit on:

# %%
nb.show_source(preact_resnet.PreActBasic)

# %% [markdown]
# A check against the equation written out with Chainer's plain functions (test-mode BN
# with non-trivial running statistics, so that BN is not an identity):

# %%
rng = np.random.default_rng(0)
unit = preact_resnet.PreActBasic(16, 16)
for b in (unit.bn1, unit.bn2):
    b.avg_mean[...] = rng.standard_normal(16).astype(np.float32)
    b.avg_var[...] = rng.uniform(0.5, 2.0, 16).astype(np.float32)


def bn_test(h, link):
    """Batch normalization in test mode, written out."""
    s = (1, -1, 1, 1)
    scale = link.gamma.array.reshape(s) / np.sqrt(link.avg_var.reshape(s) + link.eps)
    return (h - link.avg_mean.reshape(s)) * scale + link.beta.array.reshape(s)


x = rng.standard_normal((2, 16, 8, 8)).astype(np.float32)
with chainer.using_config("train", False):
    y = unit(x).array
a1 = np.maximum(bn_test(x, unit.bn1), 0)
h1 = F.convolution_2d(a1, unit.conv1.W, pad=1).array
f = F.convolution_2d(np.maximum(bn_test(h1, unit.bn2), 0), unit.conv2.W, pad=1).array
print("max |unit(x) - (x + F(x))| =", float(abs(y - (x + f)).max()))
assert np.allclose(y, x + f, atol=1e-5)

# %% [markdown]
# The 164- and 1001-layer networks use the *bottleneck* form: a 1×1 convolution reduces
# the width to $c$, a 3×3 convolution works at width $c$, and a 1×1 convolution restores
# $4c$, each preceded by BN–ReLU:
#
# $$\mathcal{F}(\mathbf{x}) = W_3 * \sigma\big(W_2 * \sigma(W_1 * \sigma(\mathbf{x}))\big),
#   \qquad \sigma = \mathrm{ReLU}\circ\mathrm{BN}.$$
#
# In the first unit of each stage the width (and, in stages 2 and 3, the resolution)
# changes. There the shortcut is a 1×1 projection $W_s$ of the *same* pre-activated input
# $\mathbf{a} = \sigma(\mathbf{x})$ the residual path reads:
# $\mathbf{x}_{l+1} = W_s * \mathbf{a} + \mathcal{F}(\mathbf{x})$.

# %%
nb.show_source(preact_resnet.PreActBottleneck)

# %% [markdown]
# ## The block
#
# The pre-activation bottleneck unit; compare with notebook 08's drawing, where ReLU came
# after the sum.

# %%
nb.draw_block(
    "x -> BN#1 -> ReLU#1 -> conv 1×1, c#1 -> BN#2 -> ReLU#2 -> conv 3×3, c#2 -> BN#3 -> ReLU#3"
    " -> conv 1×1, 4c#3 -> + -> y;"
    "x -[identity (1×1 projection of σ(x) in a stage's first unit)]-> +",
    title="pre-activation bottleneck unit: y = x + F(x)",
)

# %% [markdown]
# ## The network and its parameter count
#
# A 3×3 convolution with 16 filters, three stages of $n$ units (bottleneck widths
# 16/32/64, outputs 64/128/256, on 32×32, 16×16 and 8×8 maps), then a final BN–ReLU (the
# last unit's output has not been normalised), global average pooling and a linear layer.
# A bottleneck unit has three weighted layers, so the depth is $9n+2$: $n=18$ gives
# ResNet-164, $n=111$ ResNet-1001.

# %%
nb.show_source(preact_resnet.PreActResNetCifar)

# %%
rows = nb.shape_table(preact_resnet.PreActResNetCifar(164, bottleneck=True))
assert rows[-1]["out"] == (1, 10)

# %% [markdown]
# The paper gives 1.7M parameters for ResNet-110 and ResNet-164 and 10.2M for
# ResNet-1001. Those figures count convolution and linear weights only: with BN's scale
# and shift ResNet-1001 has 10.33M, which would print as 10.3M. We count as the paper does
# (the last column has the full count):

# %%
checks = nb.param_check(
    ["preresnet110", "preresnet164", "preresnet1001"], source="paper", where="Tables 3 and 4"
)
assert all(c["agrees"] for c in checks), checks

# %% [markdown]
# ## Recipe and departures
#
# The ResNet recipe of notebook 08 (SGD 0.9, weight decay $10^{-4}$, batch 128, lr 0.1
# divided by 10 at 32k and 48k of 64k iterations), starting every network with 400
# iterations at lr 0.01.

# %%
_ = nb.show_recipe("preresnet")

# %% [markdown]
# ## The experiment
#
# **How much of the gradient reaches the first block along the shortcuts alone.** We take
# untrained networks of the two kinds with basic units at depths 20, 56, 110 and 218 (3,
# 9, 18 and 36 blocks per stage): the post-activation ResNet of notebook 08 and the
# pre-activation ResNet of this paper. One batch of 32 CIFAR-10 training images goes
# forward in training mode, and Chainer's backward pass gives
# $\partial\mathcal{E}/\partial\mathbf{x}_l$ at the input of every block of the first stage.
#
# We measure it twice, from the input of the stage's second unit, $\mathbf{x}_1$ (the
# first unit pre-activates its shortcut too), to the end of the stage, $\mathbf{x}_n$. Once
# as it is, through every path. Once with each residual branch's
# *input* cut from the graph (its first layer reads a constant copy of $\mathbf{x}_l$), so
# that the gradient can reach $\mathbf{x}_1$ only through whatever the blocks' own code does
# on the shortcut and after the sum. The ratio
# $\lVert\partial\mathcal{E}/\partial\mathbf{x}_1\rVert / \lVert\partial\mathcal{E}/\partial\mathbf{x}_n\rVert$
# across the first stage is then the "1" term of the equation above. Nothing is derived
# from the forward values: any ReLU, scaling or gate that the code puts on that path shows
# up in the number. This takes under a minute on two cores; the tests leave out depth 218.

# %%
train_set = chainer.datasets.get_cifar10()[0]


def batch(start):
    """``QUICK["batch"]`` training images from ``start`` on, normalised per channel."""
    part = train_set[start : start + QUICK["batch"]]
    x = np.stack([im for im, _ in part])
    x = (x - x.mean(axis=(0, 2, 3), keepdims=True)) / x.std(axis=(0, 2, 3), keepdims=True)
    return x, np.array([lab for _, lab in part], np.int32)


xb, tb = batch(0)


@contextlib.contextmanager
def branches_cut(net, entry):
    """Make each block's first branch layer ``entry`` read a constant copy of its input."""
    links = [getattr(b, entry) for b in net.blocks]
    for link in links:
        original = link.forward

        def detached(h, *args, _f=original, **kwargs):
            return _f(h.array if isinstance(h, chainer.Variable) else h, *args, **kwargs)

        link.forward = detached
    try:
        yield
    finally:
        for link in links:
            del link.forward


def first_stage_grads(net, n):
    """Gradient norms at the inputs x_0..x_n of the first stage's blocks (one batch)."""
    xs = [chainer.Variable(net.stem(xb).array)]
    h = xs[0]
    for i, block in enumerate(net.blocks):
        h = block(h)
        if i < n:
            xs.append(h)
    loss = F.softmax_cross_entropy(net.head(h), tb)
    loss.backward(retain_grad=True)
    return np.array([float(np.linalg.norm(v.grad)) for v in xs])


nb.setup_cpu_fast()
kinds = {
    "post-activation (ReLU after the sum)": (lambda d: resnet.ResNetCifar((d - 2) // 6), "conv1"),
    "pre-activation (identity after the sum)": (
        lambda d: preact_resnet.PreActResNetCifar(d, bottleneck=False),
        "bn1",
    ),
}
table, direct, through_all = [], {k: [] for k in kinds}, {k: [] for k in kinds}
if MODE == "quick":
    for depth in QUICK["depths"]:
        n = (depth - 2) // 6
        for kind, (build, entry) in kinds.items():
            np.random.seed(0)
            net = build(depth)
            everything = first_stage_grads(net, n)
            with branches_cut(net, entry):
                shortcut_only = first_stage_grads(net, n)
            direct[kind].append(shortcut_only[1] / shortcut_only[-1])
            through_all[kind].append(everything[1] / everything[-1])
            table.append([depth, kind, f"{direct[kind][-1]:.3f}", f"{through_all[kind][-1]:.1f}"])
    nb.show_md(
        nb.md_table(
            ["depth", "network", "shortcut paths only: ‖g₁‖/‖gₙ‖", "all paths: ‖g₁‖/‖gₙ‖"],
            table,
        )
    )
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3.2), dpi=80)
    for kind in kinds:
        ax1.plot(QUICK["depths"], direct[kind], marker="o", label=kind)
        ax2.plot(QUICK["depths"], through_all[kind], marker="o", label=kind)
    ax1.set(
        xlabel="network depth (layers)",
        ylabel="‖∂E/∂x₁‖ / ‖∂E/∂xₙ‖",
        ylim=(0, 1.1),
        title="along the shortcuts only",
    )
    ax2.set(
        xlabel="network depth (layers)",
        ylabel="‖∂E/∂x₁‖ / ‖∂E/∂xₙ‖",
        yscale="log",
        title="through every path",
    )
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(
        "gradient reaching the second block of stage 1, untrained nets, one batch of "
        f"{QUICK['batch']}",
        fontsize=10,
    )
    fig.tight_layout()
    plt.show()
else:
    full = nb.full_train(FULL_MODEL, DEVICE)

# %%
if table:
    pre, post = list(kinds)[1], list(kinds)[0]
    assert np.allclose(direct[pre], 1.0, atol=1e-4), direct[pre]  # the "1" arrives whole
    print(
        f"Along the shortcuts alone, the pre-activation nets deliver {min(direct[pre]):.3f} of "
        "the gradient at the end of stage 1 to its second block at every depth; the "
        f"post-activation nets deliver {direct[post][0]:.2f} at depth {QUICK['depths'][0]} and "
        f"{direct[post][-1]:.2f} at depth {QUICK['depths'][-1]}: each ReLU after a sum removes "
        "the entries where that sum was negative."
    )
    # The noise level of these ratios: the same measurement on four other batches and
    # initialisations, for the post-activation net at depth 56.
    spread = []
    for seed in range(1, 5):
        xb, tb = batch(1000 * seed)
        np.random.seed(seed)
        net = resnet.ResNetCifar(9)
        with branches_cut(net, "conv1"):
            g = first_stage_grads(net, 9)
        spread.append(g[1] / g[-1])
    xb, tb = batch(0)
    print(
        f"Noise level: over four other batches and initialisations the post-activation ratio "
        f"at depth 56 is {np.mean(spread):.3f} ± {np.std(spread, ddof=1):.3f} (mean ± standard "
        "deviation); differences between depths larger than that are not chance."
    )
# %% [markdown]
# What to look at: the left panel. With pre-activation the shortcut term is exactly the
# gradient at the end of the stage, whatever the depth; with a ReLU after every sum it
# shrinks as blocks are added. The right panel shows that at initialisation neither kind
# *vanishes* through all paths (with batch normalization in training mode the gradient
# even grows towards the input); the difference is in the clean path, which is what keeps
# a 1001-layer pre-activation net easy to optimise, as the paper's training curves show.
# These ratios are measured on one batch of 32 images and one initialisation, not
# averaged over many.

# %% [markdown]
# ## The full reproduction
#
# The paper reports 5.46% test error for pre-activation ResNet-164 (94.54% accuracy; the
# post-activation ResNet-164 had 5.93%), and 4.92% for ResNet-1001. The 2016 Chainer
# implementation reached 94.39% with zero-padded shortcuts instead of projections. Ours is
# the test accuracy after the last iteration of one run, generated from `results/`:

# %%
run = nb.reproduction(FULL_MODEL)

# %% [markdown]
# ## Why it works, and when it fails
#
# The identity after the sum gives every block a gradient term that does not depend on
# the layers in between, and a forward signal that is the stem's output plus a sum of
# corrections. Pre-activation also normalises the input of every weight layer, including
# the sum that the post-activation design fed straight into the next block; the paper
# credits part of the gain to this regularising BN.
#
# The benefit grows with depth: at 110 layers the two designs are close, at 1001 the
# post-activation net trains slowly at first and ends worse. It does not help a shallow
# net much, and anything placed on the shortcut (a scaling, a gate, a 1×1 convolution,
# dropout) brings back a product of factors and, in the paper's ablations, trains worse.
# The stage transitions are an exception the design accepts: there the shortcut is a
# projection, so the clean path runs only within a stage.

# %% [markdown]
# ## What to take away
#
# * Moving BN–ReLU in front of the convolutions makes both the shortcut and the step after
#   the addition identities, so $\mathbf{x}_L = \mathbf{x}_l + \sum \mathcal{F}$.
# * Measured on the network's own backward pass: along the shortcuts all of the gradient
#   reaches the first block with pre-activation; a ReLU after each sum takes a share per
#   block.
# * The code change from notebook 08 is the order of three calls and no ReLU on the sum; a
#   final BN–ReLU before pooling takes over the last activation.
# * Wide ResNets (notebook 15) reuse this unit and trade depth for width.

# %% [markdown]
# ## Appendix: sources
#
# * Unit design, the unrolled equations, the CIFAR networks and the recipe: the paper,
#   Sections 3–5 ([arXiv 1603.05027](https://arxiv.org/abs/1603.05027)).
# * Parameter counts (1.7M, 1.7M, 10.2M, weights only) and test errors: the paper's
#   Tables 3 and 4; the counts are recomputed above.
# * The 2016 Chainer implementation's variant and accuracy: its results table, as kept in
#   `chainer_nets/results.py` (`IMPL_2016`).
