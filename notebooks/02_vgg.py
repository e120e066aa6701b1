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
# # 02 · Very Deep Convolutional Networks (VGG)
#
# Simonyan, Zisserman — *Very Deep Convolutional Networks for Large-Scale Image
# Recognition*, arXiv [1409.1556](https://arxiv.org/abs/1409.1556), September 2014.
#
# ## The question
#
# In 2014 the best ImageNet networks mixed large first-layer filters (11×11, 7×7) with
# strides and a handful of layers. If every other design choice is held fixed, what does
# *depth* alone buy, and how can a network be made deep without its parameter count and
# cost exploding?
#
# ## The idea
#
# Use only 3×3 convolutions. Two of them in a row see a 5×5 window, three see 7×7, with a
# non-linearity between each and fewer weights than one large filter. Then grow the depth
# from 11 to 19 weight layers (configurations A to E) and measure.

# %% tags=["parameters"]
# "quick": the experiment below on the CPU (what CI runs, with the lighter CI settings);
# "full": the paper's network and recipe (on a GPU: DEVICE = "@cupy:0").
MODE = "quick"
DEVICE = "@numpy"
FULL_MODEL = "vgg11"  # configuration A, the one the 2016 Chainer code trained
QUICK = dict(channels=32, size=33, repeats=5)
CI = dict(repeats=3)  # the tests measure the receptive field on fewer random inputs

# %%
import sys

try:
    import chainer_nets  # noqa: F401
except ImportError:  # running from notebooks/ without installing the package
    sys.path.insert(0, "..")

import chainer
import chainer.functions as F
import chainer.links as L
import matplotlib.pyplot as plt
import numpy as np

from chainer_nets import notebook as nb
from chainer_nets.models import vgg

assert MODE in ("quick", "full"), MODE
QUICK = nb.quick_settings(QUICK, CI)

# %% [markdown]
# ## The equations, next to the code
#
# A stack of $n$ stride-1 convolutions with kernel $k$ sees a window of side
#
# $$r(n) = n\,(k-1) + 1 \qquad (k = 3:\ r = 3, 5, 7, \dots),$$
#
# and with $C$ channels in and out it holds $n\,k^2C^2$ weights, against $r^2C^2$ for one
# convolution of the same window: three 3×3 layers cost $27C^2$, one 7×7 layer $49C^2$,
# 55% of it, with three ReLUs instead of one. The configurations (the paper's Table 1) are
# data, one tuple of (kernel, width) per layer and stage:

# %%
nb.show_source(vgg.receptive_field)
for name, stages in vgg.CONFIGS.items():
    print(f"{name:6s}", " | ".join(" ".join(f"{k}x{k}-{w}" for k, w in s) for s in stages))

# %% [markdown]
# A check of the receptive-field formula that does not use it: the gradient of one output
# pixel with respect to the input is non-zero exactly on the window that pixel sees.

# %%
rng = np.random.default_rng(0)


def window_side(layers, size=15):
    """Side of the input region that reaches the centre output pixel of ``layers``."""
    x = chainer.Variable((rng.random((1, 1, size, size)) + 0.1).astype(np.float32))  # positive
    h = x
    for conv in layers:
        h = F.relu(conv(h)) if conv is not layers[-1] else conv(h)
    c = size // 2
    F.sum(h[:, :, c, c]).backward()
    rows = np.nonzero(np.abs(x.grad[0, 0]).sum(axis=1))[0]
    return int(rows.max() - rows.min() + 1)


def ones_conv(k):
    """A 1-channel convolution with positive weights: with positive inputs no ReLU blocks a path."""
    return L.Convolution2D(1, 1, k, pad=k // 2, initialW=1.0, initial_bias=1.0)


for n in (1, 2, 3):
    side = window_side([ones_conv(3) for _ in range(n)])
    assert side == vgg.receptive_field(n), (n, side)
    print(f"{n} stacked 3x3 layers: measured window {side}x{side} = r({n})")
assert window_side([ones_conv(7)]) == 7

# %% [markdown]
# ## The block
#
# A VGG stage: $n$ 3×3 convolutions (stride 1, padding 1), each followed by ReLU, then 2×2
# max pooling with stride 2 that halves the map. Configuration C ends stages 3–5 with a
# 1×1 convolution instead; A-LRN adds local response normalisation after the first layer.

# %%
nb.draw_block(
    "x -> conv 3×3#1 -> ReLU#1 -> conv 3×3#2 -> ReLU#2 -> conv 3×3#3 -> ReLU#3 -> max pool 2×2/2 -> y",
    title="VGG stage (D and E: 3 or 4 convolutions per stage from the third)",
)

# %% [markdown]
# ## The network and its parameter count
#
# Five stages (64, 128, 256, 512, 512 filters), then the classifier. On ImageNet
# (224×224) the last map is 7×7×512 and the head is FC-4096, FC-4096, FC-1000 with dropout
# 0.5 after the first two. At 32×32 the five poolings leave a 1×1×512 map, so the CIFAR-10
# adaptation changes one thing, the first FC layer's inputs (512 instead of 25,088), and
# the last layer's outputs (10). That change lives in one function:

# %%
nb.show_source(vgg.cifar_head)
nb.show_source(vgg.imagenet_head)
rows = nb.shape_table(vgg.VGG("A", head="cifar"))
assert rows[-1]["out"] == (1, 10)

# %% [markdown]
# The ImageNet configurations are registered (never trained here) so that their counts,
# weights and biases, can be checked against the paper's Table 2 (133, 133, 134, 138, 144
# million, printed to the nearest million). Building them allocates about 0.5 GB each.

# %%
checks = nb.param_check(
    [
        "vgg11_imagenet",
        "vgg11_lrn_imagenet",
        "vgg13_imagenet",
        "vgg16c_imagenet",
        "vgg16_imagenet",
        "vgg19_imagenet",
    ],
    source="paper",
    where="Table 2",
)
assert all(c["agrees"] for c in checks), checks

# %% [markdown]
# ## Recipe and departures
#
# Section 3.1: batch 256, momentum 0.9, weight decay $5\cdot10^{-4}$, dropout 0.5 on the
# two FC-4096 layers, learning rate $10^{-2}$ divided by 10 when the validation accuracy
# stopped improving (three times), 74 epochs. The paper has no CIFAR-10 recipe; this is
# the ImageNet one transferred, with the departures listed.

# %%
_ = nb.show_recipe("vgg")

# %% [markdown]
# ## The experiment
#
# **Stacked 3×3 versus one large filter, in numbers.** For $C$ = `channels` channels in and
# out, we count the weights of $n$ stacked 3×3 layers and of one $r(n)\times r(n)$ layer
# that sees the same window, and measure each stack's window from the gradient as above,
# on `repeats` random inputs of side `size` (the measured side must not depend on the
# input). Nothing here trains; the claim is arithmetic, and the receptive field is
# measured, not assumed. CI measures on 3 inputs instead of 5.

# %%
if MODE == "quick":
    c = QUICK["channels"]
    table, measured = [], []
    for n in range(1, 6):
        sides = [
            window_side([ones_conv(3) for _ in range(n)], QUICK["size"])
            for _ in range(QUICK["repeats"])
        ]
        measured.append(sides)
        r = vgg.receptive_field(n)
        stacked, single = n * 9 * c * c, r * r * c * c
        table.append([n, f"{sides[0]}×{sides[0]}", stacked, single, f"{stacked / single:.2f}", n])
    nb.show_md(
        nb.md_table(
            ["3×3 layers", "window", "weights (stack)", "weights (one r×r)", "ratio", "ReLUs"],
            table,
        )
    )
    fig, ax = plt.subplots(figsize=(5, 3.2))
    ns = np.arange(1, 6)
    ax.plot([vgg.receptive_field(n) for n in ns], ns * 9, "o-", label="stack of 3×3")
    ax.plot([vgg.receptive_field(n) for n in ns], [vgg.receptive_field(n) ** 2 for n in ns],
            "s-", label="one r×r filter")  # fmt: skip
    ax.set_xlabel("receptive field side r")
    ax.set_ylabel("weights per channel pair")
    ax.legend()
    plt.show()
    spread = max(max(s) - min(s) for s in measured)
    print(
        f"Noise level: the measured window varied by {spread} pixels over "
        f"{QUICK['repeats']} random inputs per depth (the arithmetic is exact)."
    )
    print(
        f"Look at the ratio column: three 3x3 layers cover a 7x7 window with {table[2][4]} of the "
        f"weights of one 7x7 filter, and five cover 11x11 with {table[4][4]} of them."
    )
else:
    full = nb.full_train(FULL_MODEL, DEVICE)

# %% [markdown]
# ## The full reproduction
#
# The paper has no CIFAR-10 number: its results are ImageNet top-1/top-5 errors (6.8%
# top-5 for the ensemble, 7.0–7.3% for single D/E networks). The 2016 Chainer code trained
# configuration A on CIFAR-10 up-sampled to 224×224 (tested at 384), with the FC head
# turned into convolutions and averaged, and reported 92.1% (best epoch); that costs 49
# times the pixels of a 32×32 image. Ours is configuration A at 32×32 with the head above,
# the test accuracy after the last epoch of one run:

# %%
run = nb.reproduction(FULL_MODEL)

# %% [markdown]
# ## Why it works, and when it fails
#
# Each 3×3 layer adds a ReLU, so a stack is a more non-linear function of its window than
# one large filter, with fewer weights; the paper's Table 3 finds C (with 1×1 layers) worse
# than D (with 3×3) at equal depth: spatial context matters, not just extra
# non-linearities. Without batch normalization the deep configurations were hard to train
# from scratch: the paper started B–E from A's weights, and only later found Glorot's
# initialisation sufficient. The cost sits in the head: 124M of configuration D's 138M
# parameters are the three FC layers, and on CIFAR-10 even our 1×1-input head keeps 19M.

# %% [markdown]
# ## What to take away
#
# * Only 3×3 convolutions, stride 1, padding 1; depth 11–19; pooling halves the map.
# * $n$ stacked 3×3 layers see $(2n+1)^2$ pixels with $9n/(2n+1)^2$ of one large filter's
#   weights.
# * The ImageNet networks' counts equal the paper's Table 2; the CIFAR-10 network differs
#   only in its head's input and output sizes.

# %% [markdown]
# ## Appendix: sources
#
# * Configurations A–E and A-LRN: the paper's Table 1
#   ([arXiv 1409.1556](https://arxiv.org/abs/1409.1556)); parameter counts: its Table 2,
#   recomputed above; recipe and initialisation: its Section 3.1.
# * The 2016 Chainer implementation's setting (up-sampling, convolutional head, lr ×0.94
#   every second epoch) and accuracy: its repository and results table, kept in
#   `chainer_nets/results.py`.
