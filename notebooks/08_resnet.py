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
# # 08 · Deep Residual Learning (ResNet)
#
# He, Zhang, Ren, Sun — *Deep Residual Learning for Image Recognition*, arXiv
# [1512.03385](https://arxiv.org/abs/1512.03385), December 2015.
#
# **The question.** Stack more 3×3 convolutions onto a plain CIFAR network and the
# *training* error goes up: a plain 56-layer net fits CIFAR-10 worse than a 20-layer
# one. That is not over-fitting (the training set itself is fitted worse); the
# optimiser fails to find what a deeper network could represent. A deeper net could
# copy a shallower one by making its extra layers identities, so why does SGD not find
# at least that?
#
# **The idea.** Make the identity the default. Each block computes a correction
# $\mathcal{F}$ and *adds* it to its input, so a block that has nothing useful to add
# only needs to push its weights towards zero, which is easy, rather than learn an
# identity map through two convolutions and non-linearities, which is hard.
#
# This notebook: the block and its equation next to the code, the CIFAR network and
# its parameter count against the paper's table, a short CPU training run, and the full
# reproduction.

# %% tags=["parameters"]
# Parameters: "quick" trains a small sibling on a CIFAR-10 subset on the CPU (what CI runs);
# "full" trains the paper's network with the paper's recipe (use a GPU: DEVICE = "@cupy:0").
MODE = "quick"
DEVICE = "@numpy"
FULL_MODEL = "resnet110"  # the network the 2016 Chainer code trained
QUICK_MODEL = "resnet20"  # the shallowest member of the same family
QUICK = dict(train_subset=512, test_subset=300, epochs=2, batch_size=32, lr=0.025)

# %%
import sys

try:
    import chainer_nets  # noqa: F401
except ImportError:  # running from notebooks/ without installing the package
    sys.path.insert(0, "..")

import chainer
import chainer.functions as F
import numpy as np

from chainer_nets import notebook as nbh
from chainer_nets.blocks import ZeroPadShortcut, ZeroPadShortcutGrad
from chainer_nets.models import resnet
from chainer_nets.registry import get_model_info

assert MODE in ("quick", "full"), MODE
chainer.print_runtime_info()

# %% [markdown]
# ## 1. The residual block
#
# Let $\mathbf{x}$ be a block's input (a stack of feature maps). The block's two
# convolutions, each followed by batch normalization, compute the residual
#
# $$\mathcal{F}(\mathbf{x}) = \mathrm{BN}_2\big(W_2 * \mathrm{ReLU}(\mathrm{BN}_1(W_1 * \mathbf{x}))\big),$$
#
# where $*$ is a 3×3 convolution with padding 1. The block's output adds the input back
# and applies the non-linearity after the sum:
#
# $$\mathbf{y} = \mathrm{ReLU}\big(\mathcal{F}(\mathbf{x}) + \mathbf{x}\big).$$
#
# In `BasicBlock` the first equation is `residual` (two lines: conv–BN–ReLU, then
# conv–BN) and the second is the single line of `forward`:

# %%
nbh.show_source(resnet.BasicBlock)

# %% [markdown]
# A tiny check that the code does what the equation says: build a block, run it on a
# random input in test mode, and recompute $\mathrm{ReLU}(\mathcal{F}(\mathbf{x}) + \mathbf{x})$
# by hand from its own `residual`.

# %%
block = resnet.BasicBlock(16, 16)
x = np.random.default_rng(0).standard_normal((2, 16, 8, 8)).astype(np.float32)
with chainer.using_config("train", False):
    y = block(x).array
    by_hand = F.relu(block.residual(x) + x).array
print("input", x.shape, "-> output", y.shape)
assert np.allclose(y, by_hand)
print("y == ReLU(F(x) + x):", np.allclose(y, by_hand))

# %% [markdown]
# ### When the shape changes: the option-A shortcut
#
# At the start of stages 2 and 3 the first convolution has stride 2 and the width
# doubles (16→32→64), so $\mathbf{x}$ no longer has $\mathcal{F}(\mathbf{x})$'s shape. The
# paper's CIFAR networks keep the shortcut free of parameters ("option A"): take every
# second pixel of $\mathbf{x}$ and append zero channels,
#
# $$\mathbf{y} = \mathrm{ReLU}\big(\mathcal{F}(\mathbf{x}) + [\,\mathbf{x}_{::2,::2};\ \mathbf{0}\,]\big).$$
#
# It is written as one Chainer node. Its backward pass is the adjoint of the forward
# map: the first $C$ channels of the incoming gradient go back to every second pixel,
# and every other entry of $\partial L/\partial\mathbf{x}$ is zero (those pixels and
# the appended zero channels did not influence the output).

# %%
nbh.show_source(resnet.zero_pad_shortcut)
nbh.show_source(ZeroPadShortcut, "forward")
nbh.show_source(ZeroPadShortcutGrad, "forward")

# %%
down = resnet.BasicBlock(16, 32, stride=2)
with chainer.using_config("train", False):
    s = resnet.zero_pad_shortcut(chainer.Variable(x), 32, 2).array
    print("x", x.shape, "-> shortcut", s.shape, "-> block output", down(x).shape)
assert np.array_equal(s[:, :16], x[:, :, ::2, ::2]) and not s[:, 16:].any()
print("first 16 channels are x sub-sampled, the other 16 are zeros")

# %% [markdown]
# ## 2. The CIFAR-10 network: 6n+2 layers
#
# One 3×3 convolution with 16 filters (plus BN and ReLU), then three stages of $n$
# blocks on 32×32, 16×16 and 8×8 maps with 16, 32 and 64 filters, then global average
# pooling and a 10-way linear layer. Each block holds two weighted layers, so the depth
# is $2\cdot 3n + 2 = 6n+2$: $n=3$ gives ResNet-20, $n=18$ ResNet-110.

# %%
nbh.show_source(resnet.ResNetCifar)

# %% [markdown]
# The table lists every stage's output shape and parameters after one forward pass of
# a single image through ResNet-110 (identical consecutive blocks are folded into one
# row). The count includes BN's scale and shift, as the paper's does.

# %%
info = get_model_info(FULL_MODEL)
net = info.build()
rows = nbh.shape_table(net)
assert rows[-1]["out"] == (1, 10)

# %% [markdown]
# The paper's Table 6 prints the parameter count of each depth to two significant
# figures. Computed with the same convention, ours must agree at that precision:

# %%
checks = nbh.param_check(
    ["resnet20", "resnet32", "resnet44", "resnet56", "resnet110", "resnet1202"]
)
assert all(c["agrees"] for c in checks), checks

# %% [markdown]
# ## 3. A quick training run (CPU)
#
# ResNet-110 needs hours on a GPU for the paper's 64 000 iterations; on a laptop CPU it
# would take weeks. To see the training loop work end to end, the quick mode
# trains the shallowest member of the family, ResNet-20 (same blocks, $n=3$), on 512
# CIFAR-10 images for two epochs, with the paper's recipe squeezed into that length (SGD
# with momentum 0.9, weight decay $10^{-4}$, pad-4 crops and flips, lr divided by 10 at
# 50% and 75% of the run). One change: the batch is 32 instead of 128, so that the run
# makes 32 updates rather than 8 (with only 8, batch normalization's running averages,
# used at test time, would still be near their initial values), and the learning rate
# shrinks with the batch, 0.1 × 32/128 = 0.025. Expect an accuracy far below the
# paper's, roughly 15-30%: this shows the machinery working, not the result.

# %%
if MODE == "quick":
    quick = nbh.quick_train(QUICK_MODEL, device=DEVICE, **QUICK)
    assert quick["test_accuracy"] > 0
else:
    full = nbh.full_train(FULL_MODEL, DEVICE)

# %% [markdown]
# ## 4. The full reproduction
#
# The paper reports 6.43% test error for ResNet-110 (best of five runs; the mean is
# 6.61%), i.e. 93.57% accuracy; the 2016 Chainer implementation reached 93.34% with a
# slightly different network (stride on the second convolution, BN–ReLU on the logits).
# Our number is the test accuracy after the last iteration of one run, never the best
# epoch. It is read from `results/` by `chainer_nets.results`:

# %%
run = nbh.reproduction(FULL_MODEL)

# %% [markdown]
# ## What to take away
#
# * The whole idea is one addition: `self.residual(x) + shortcut(x)`. Everything else is
#   a VGG-like stack of 3×3 convolutions with batch normalization.
# * The shortcut has no parameters in these CIFAR networks; where the shape changes it
#   sub-samples and pads with zeros.
# * Depth buys accuracy up to ResNet-110 here; ResNet-1202 trains but tests worse,
#   which the paper attributes to over-fitting a small data set.
# * The ReLU *after* the addition means the signal on the shortcut path is still
#   altered at every block. Notebook 11 (identity mappings) removes it.
