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
# # 20 · Xception: Deep Learning with Depthwise Separable Convolutions
#
# François Chollet — *Xception: Deep Learning with Depthwise Separable Convolutions*, arXiv
# [1610.02357](https://arxiv.org/abs/1610.02357), October 2016.
#
# ## The question
#
# An Inception module splits a convolution in two: 1×1 convolutions look at correlations
# across channels, then 3×3 convolutions, each on a few segments of those channels, look at
# correlations in space. The Inception networks work well, and the paper reads their
# success as evidence that the two kinds of correlation are best mapped separately. How far
# can that separation be pushed? With one segment per channel, every spatial filter sees a
# single channel: is that extreme a better use of a network's parameters than the Inception
# module itself?
#
# ## The idea
#
# The extreme form is the **depthwise separable convolution**: a depthwise 3×3 convolution
# (one filter per channel) followed by a pointwise 1×1 convolution that mixes the channels,
# with no non-linearity in between. Xception ("extreme Inception") is a linear stack of 36
# such layers in 14 modules with residual connections, built to have about the parameters
# of Inception V3 (22.9M against 23.6M). On ImageNet it is slightly better than Inception V3
# (79.0% against 78.2% top-1); on the 350M-image JFT set it is clearly better, so the gain
# comes from using the parameters more efficiently, not from having more. And putting a ReLU
# or ELU between the depthwise and the pointwise part makes it worse (Figure 10).

# %% tags=["parameters"]
# "quick": the checks, the shapes and a miniature of Figure 10 on the CPU (what CI runs,
# lighter); "full": the CIFAR-10 adaptation with the recipe (on a GPU: DEVICE = "@cupy:0").
MODE = "quick"
DEVICE = "@numpy"
FULL_MODEL = "xception"
QUICK = dict(train_subset=1024, test_subset=500, epochs=2, batch_size=32, lr=0.045)
CI = dict(train_subset=128, test_subset=100, epochs=1)  # the tests train less

# %%
import sys

try:
    import chainer_nets  # noqa: F401
except ImportError:  # running from notebooks/ without installing the package
    sys.path.insert(0, "..")

import chainer
import chainer.functions as F
import numpy as np

from chainer_nets import notebook as nb
from chainer_nets.models import xception as xc
from chainer_nets.registry import count_params, get_model_info

assert MODE in ("quick", "full"), MODE
QUICK = nb.quick_settings(QUICK, CI)
nb.setup_cpu_fast()

# %% [markdown]
# ## The equations, next to the code
#
# **Depthwise separable convolution.** For an input $\mathbf{x}$ with $C$ channels, a
# depthwise 3×3 filter $D_c$ per channel and a pointwise (1×1) matrix $P \in
# \mathbb{R}^{O\times C}$,
#
# $$\mathrm{Sep}(\mathbf{x})_o(p) = \sum_{c=1}^{C} P_{o,c} \sum_{k\in\{-1,0,1\}^2}
#   D_{c,k}\,x_c(p+k),$$
#
# with nothing between the two sums: no ReLU, no batch normalization (one BN follows the
# whole operation). The depthwise part is a grouped convolution with one channel per group
# (`groups=C`), so it runs on Chainer's own function on a GPU and on the package's
# depthwise kernel on the CPU.

# %%
nb.show_source(xc.SeparableConv2D)

# %% [markdown]
# A check that can fail: the formula computed by hand (shifted copies of the padded input,
# each weighted by its tap, then a matrix product over channels) against the link. Since
# nothing separates the two sums, $\mathrm{Sep}$ is linear, so $\mathrm{Sep}(-2\mathbf{x}) =
# -2\,\mathrm{Sep}(\mathbf{x})$; the same weights with a ReLU in between (Figure 10's
# variant) break that.

# %%
rng = np.random.default_rng(0)
sep = xc.SeparableConv2D(8, 6)
x = rng.standard_normal((2, 8, 7, 7)).astype(np.float32)
y = sep(x).array
dw, pw = sep.depthwise.W.array[:, 0], sep.pointwise.W.array[:, :, 0, 0]
xpad = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
depthwise = sum(
    dw[None, :, i, j, None, None] * xpad[:, :, i : i + 7, j : j + 7]
    for i in range(3)
    for j in range(3)
)
by_hand = np.einsum("oc,nchw->nohw", pw, depthwise)
print(
    f"max |link - formula| = {np.abs(y - by_hand).max():.2e} (outputs up to {np.abs(y).max():.1f})"
)
assert np.allclose(y, by_hand, atol=1e-4)
lin = np.abs(sep(-2 * x).array + 2 * y).max()
relu_sep = xc.SeparableConv2D(8, 6, inner="relu")
relu_sep.copyparams(sep)
lin_relu = np.abs(relu_sep(-2 * x).array + 2 * relu_sep(x).array).max()
print(f"|Sep(-2x) + 2 Sep(x)|: {lin:.1e} without, {lin_relu:.1f} with a ReLU in between")
assert lin < 1e-4 < lin_relu

# %% [markdown]
# **What it costs.** A regular 3×3 convolution from $C$ to $O$ channels has $9CO$ weights;
# the separable one $9C + CO$. And it *is* a regular convolution, one whose weight is
# constrained to $W_{o,c,k} = P_{o,c}\,D_{c,k}$ (rank one across the channel and spatial
# axes, for each input channel): the Inception module with as many towers as channels.

# %%
middle_sep = get_model_info("xception").build().middle[0].seps[0].sep
C, Co = middle_sep.depthwise.W.shape[0], middle_sep.pointwise.W.shape[0]
n_sep = middle_sep.depthwise.W.size + middle_sep.pointwise.W.size
print(f"middle-flow layer {C} -> {Co}: separable {n_sep:,} weights = 9C + CO = {9 * C + C * Co:,}")
print(f"a regular 3x3 convolution: 9CO = {9 * C * Co:,} ({9 * C * Co / n_sep:.1f}x more)")
assert n_sep == 9 * C + C * Co
W_full = pw[:, :, None, None] * dw[None, :, :, :]  # (O, C, 3, 3) = P[o, c] * D[c, k]
regular = F.convolution_2d(x, W_full, pad=1).array
print(f"regular convolution with W = P D: max |difference| = {np.abs(regular - y).max():.2e}")
assert np.allclose(regular, y, atol=1e-4)

# %% [markdown]
# **Residual modules.** The entry and exit flows' modules add a 1×1 stride-2 convolution of
# their input (with BN) to their pooled branch; the middle flow's add the input itself:
#
# $$\mathbf{y} = \mathrm{pool}_{3\times3/2}\big(\mathrm{BN}\,\mathrm{Sep}\,\mathrm{ReLU}\,
#   \mathrm{BN}\,\mathrm{Sep}\,\rho(\mathbf{x})\big) + \mathrm{BN}(W_{1\times1/2}\,\mathbf{x}),
#   \qquad \mathbf{y} = \mathbf{x} + (\mathrm{BN}\,\mathrm{Sep}\,\mathrm{ReLU})^3(\mathbf{x}),$$
#
# with $\rho$ the identity in the first module (its input has just been through a ReLU) and
# a ReLU elsewhere.

# %%
nb.show_source(xc.EntryModule)
nb.show_source(xc.MiddleModule)

# %% [markdown]
# A check: the difference between a module's output and its pooled branch is BN of the
# 1×1 convolution of every other pixel of the input:

# %%
module = xc.EntryModule(4, 6)
bn = module.shortcut_bn
bn.avg_mean[...] = rng.uniform(-1, 1, 6)
bn.avg_var[...] = rng.uniform(0.5, 2, 6)
x4 = rng.standard_normal((2, 4, 9, 9)).astype(np.float32)
with chainer.using_config("train", False):
    shortcut = module(x4).array - xc.max_pool_same(module.sep2(module.sep1(x4))).array
proj = np.einsum("oc,nchw->nohw", module.shortcut.W.array[:, :, 0, 0], x4[:, :, ::2, ::2])
expected = (proj - bn.avg_mean[:, None, None]) / np.sqrt(bn.avg_var + bn.eps)[:, None, None]
print(
    f"9x9 input -> {shortcut.shape[2]}x{shortcut.shape[3]} output; max |shortcut - BN(W x[::2, ::2])| = {np.abs(shortcut - expected).max():.1e}"
)
assert np.allclose(shortcut, expected, atol=1e-4)

# %% [markdown]
# ## The block
#
# The separable convolution, and the two kinds of residual module (BN follows every
# separable convolution, as the paper says; Figure 5 leaves it out):

# %%
nb.draw_block(
    "x -> depthwise 3×3 (one filter per channel) -> pointwise 1×1 (mixes channels) -> y",
    title="Separable convolution: nothing between the two parts",
)
nb.draw_block(
    "x -> ReLU#1 -> SepConv 3×3#1 -> BN#1 -> ReLU#2 -> SepConv 3×3#2 -> BN#2 -> "
    "max-pool 3×3/2 -> + -> y; x -[1×1 conv, stride 2 + BN]-> +",
    title="Entry / exit flow module (the first has no leading ReLU)",
)
nb.draw_block(
    "x -> ReLU#1 -> SepConv 728#1 -> BN#1 -> ReLU#2 -> SepConv 728#2 -> BN#2 -> ReLU#3 -> "
    "SepConv 728#3 -> BN#3 -> + -> y; x -[identity]-> +",
    title="Middle flow module (×8)",
)

# %% [markdown]
# ## The network and its parameter count
#
# Figure 5 on ImageNet's 299×299 inputs: a stem of two 3×3 convolutions (the first with
# stride 2, both unpadded), three entry modules to 19×19×728, eight middle modules, the
# exit module to 10×10×1024, two separable convolutions to 1536 and 2048 channels, global
# average pooling, dropout and the classifier. The shapes, computed by one forward pass:

# %%
imagenet = get_model_info("xception_imagenet").build()
with chainer.using_config("train", False), chainer.no_backprop_mode():
    h = np.zeros((1, 3, 299, 299), np.float32)
    h = F.relu(imagenet.bn2(imagenet.conv2(F.relu(imagenet.bn1(imagenet.conv1(h))))))
    print(f"{'stem':<14} {h.shape[1:]}")
    for i, m in enumerate(imagenet.entry):
        h = m(h)
        print(f"{f'entry {i + 1}':<14} {h.shape[1:]}")
    h = imagenet.middle_flow(h)
    print(f"{'middle (x8)':<14} {h.shape[1:]}")
    print(f"{'exit module':<14} {imagenet.exit_module(h).shape[1:]}")
    print(f"{'features':<14} {imagenet.exit_flow(h).shape[1:]}")
assert h.shape[1:] == (728, 19, 19)

# %% [markdown]
# The CIFAR-10 adaptation changes one thing, the layout: the stem keeps 32×32 (stride 1,
# padding 1) and the first entry module does not down-sample, so the grids are 32, 16 and
# 8 (middle flow) and the exit flow runs at 4×4. Widths and depth are Figure 5's.

# %%
print(xc.IMAGENET_LAYOUT, xc.CIFAR_LAYOUT, sep="\n")
rows = nb.shape_table(get_model_info("xception").build())
assert rows[-1]["out"] == (1, 10)

# %% [markdown]
# The paper's Table 3 gives 22,855,952 parameters for the ImageNet network: every
# convolution weight, every BN scale and shift and the classifier with its bias (the count
# of the reference Keras definition's trainable parameters too). Ours, counted the same way:

# %%
checks = nb.param_check(["xception_imagenet"], source="paper", where="Table 3")
assert all(c["agrees"] for c in checks), checks
n = checks[0]["computed"]
print(
    f"exactly: {n:,}; the CIFAR-10 network differs only in its 10-way classifier: "
    f"{count_params(get_model_info('xception').build()):,}"
)
assert n == 22_855_952

# %% [markdown]
# ## Recipe and departures
#
# The paper's ImageNet optimisation (Section 4.2–4.3): momentum SGD at 0.045, multiplied
# by 0.94 every two epochs, weight decay $10^{-5}$ (the paper found Inception V3's
# $4\cdot10^{-5}$ ill-suited to Xception), dropout 0.5 before the classifier, no auxiliary
# tower. The paper has no CIFAR-10 experiment; what we had to choose is listed:

# %%
_ = nb.show_recipe("xception")

# %% [markdown]
# ## The experiment
#
# **The claim (Figure 10):** an activation between the depthwise and the pointwise
# convolution hurts: on ImageNet, the network without one trains faster and ends better
# than with an ELU or a ReLU there. The paper's guess at why: a depthwise filter's output is a
# one-channel feature space, and a non-linearity there loses information, where in an
# Inception module's towers (many channels each) it helps.
#
# In miniature: the same network code with the CIFAR-10 layout and Figure 5 scaled down
# (stem 8/16, entry 16/32/64, two middle modules, exit 96/128/192), three times — no
# activation, ReLU, ELU between the two parts of every separable convolution — trained
# identically (same seed, same images, the recipe squeezed into a few epochs) on a
# CIFAR-10 subset. CI runs fewer images.

# %%
MINI = xc.Widths(stem=(8, 16), entry=(16, 32, 64), middle_repeats=2, exit=(96, 128, 192))
variants = {"none (Xception)": None, "ReLU": "relu", "ELU": "elu"}
for label, inner in variants.items():
    nb.register_sibling(
        f"xception_mini_{inner or 'linear'}",
        like="xception",
        factory=xc.Xception,
        description=f"miniature Xception, {label} between depthwise and pointwise (notebook)",
        n_classes=10,
        layout=xc.CIFAR_LAYOUT,
        widths=MINI,
        inner=inner,
    )
print(
    "parameters (the same for all three):",
    f"{count_params(get_model_info('xception_mini_linear').build()):,}",
)
if MODE == "quick":
    runs = {}
    for label, inner in variants.items():
        runs[label] = nb.quick_train(
            f"xception_mini_{inner or 'linear'}", device=DEVICE, plot=False, **QUICK
        )
    nb.plot_runs(runs, title="Figure 10 in miniature: activation between depthwise and pointwise")
    first = next(iter(runs.values()))
    nb.noise_level(first["test_accuracy"], first["test_images"])
    for label, res in runs.items():
        print(
            f"{label:>16}: final training loss {res['log'][-1]['main/loss']:.3f}, "
            f"test accuracy {res['test_accuracy']:.1f}%"
        )
    print(
        "Look at the training-loss curves (the paper's claim is about convergence as well as "
        "the final accuracy) and compare the accuracy gaps with the noise level above: a gap "
        "inside it says nothing at this scale, whichever way it points."
    )
else:
    full = nb.full_train(FULL_MODEL, DEVICE)

# %% [markdown]
# ## The full reproduction
#
# The paper reports **no CIFAR-10 result** (its numbers are ImageNet, 79.0% top-1 and 94.5%
# top-5 single-crop at 299×299, and JFT), and the 2016 Chainer code never implemented
# Xception: both columns of the table below are empty for that reason. Ours is one run of
# the CIFAR-10 adaptation with the recipe above, read from `results/` when recorded:

# %%
run = nb.reproduction(FULL_MODEL)

# %% [markdown]
# ## Why it works, and when it fails
#
# * **Fewer weights per layer, more layers and width.** A separable layer costs about
#   $1/9$ of a regular 3×3 layer of the same width once $O \gg 9$, so at Inception V3's
#   budget Xception affords 36 convolutional layers of 728–2048 channels. The paper's
#   ImageNet gain is small; its JFT gain (a data set large enough that capacity is used)
#   is larger, which is its evidence for a more efficient use of parameters.
# * **Linear in between.** The depthwise output of one channel is a one-dimensional
#   feature space: a ReLU there zeroes half of what the pointwise layer could mix.
#   Figure 10 measures it on ImageNet (no activation best), and the miniature above can be
#   compared with it.
# * **When it fails.** FLOPs are not time: depthwise convolutions do little arithmetic per
#   byte moved, so Xception ran slower than Inception V3 on the paper's GPUs (28 against
#   31 steps per second, Table 3), and on a CPU they need their own kernel (the package's
#   fast path has one). The architecture was not tuned for Xception (the optimiser settings
#   are Inception V3's), and without the residual connections it converges more slowly and
#   ends worse (Figure 9).
#
# ## What to take away
#
# * A depthwise separable convolution is a regular convolution with weight
#   $W_{o,c,k} = P_{o,c}D_{c,k}$: $9C + CO$ weights instead of $9CO$ (shown above).
# * Xception: 36 separable convolutions, residual modules with 1×1 stride-2 projections in
#   the entry and exit flows; 19×19×728 after the entry flow on 299×299; 22,855,952
#   parameters, equal to the paper's Table 3.
# * No non-linearity between the depthwise and pointwise parts (Figure 10).
# * The paper has no CIFAR-10 number; the CIFAR-10 network here is our adaptation (no
#   down-sampling in the stem and first module), nothing else changed.
#
# ## Appendix: sources
#
# * Figure 5 (the flows, widths and residual connections), Figure 10 (intermediate
#   activations), Table 3 (22,855,952 parameters, 28 steps/s), Sections 4.2–4.3 (recipe,
#   weight decay $10^{-5}$, dropout 0.5, no auxiliary tower, Polyak averaging at inference):
#   the paper ([arXiv 1610.02357](https://arxiv.org/abs/1610.02357)).
# * Where the ReLUs sit (none before the first entry module's first separable convolution;
#   shortcuts taken before the ReLU), unpadded stem, "same" padding elsewhere, no biases,
#   no BN between depthwise and pointwise: the reference definition (keras-team/keras
#   `applications/xception.py`), whose trainable-parameter count equals Table 3.
# * The CIFAR-10 layout and the He-normal initialisation: ours (the paper has neither).
