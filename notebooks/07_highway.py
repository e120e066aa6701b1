# %% [markdown]
# # 07 · Highway Networks — *Training Very Deep Networks*
# Srivastava, Greff, Schmidhuber, 2015 · [arXiv 1507.06228](https://arxiv.org/abs/1507.06228) ·
# code: `chainer_nets/models/highway.py` · recipe: `chainer_nets/recipes/highway.toml`
#
# **The question.** Plain networks get *harder* to train as they get deeper. Could every layer
# be allowed to pass its input through unchanged, and learn *when* to do so?
#
# **The idea.** A highway layer gates between a plain layer $H$ and its own input, with a
# learned transform gate $T$ (and carry gate $C = 1 - T$):
#
# $$\mathbf{y} = H(\mathbf{x})\odot T(\mathbf{x}) + \mathbf{x}\odot\big(1 - T(\mathbf{x})\big),
# \qquad T(\mathbf{x}) = \sigma(W_T\mathbf{x} + \mathbf{b}_T).$$
#
# $T \to 0$ makes the layer the identity (an *information highway*), $T \to 1$ makes it the
# plain layer. The gate bias $\mathbf{b}_T$ starts **negative**, so a fresh network mostly
# carries its input: the authors' CIFAR-10 files use $-2$.

# %% tags=["parameters"]
# Parameters: "quick" trains a small sibling on a CIFAR-10 subset on the CPU (what CI runs);
# "full" trains the paper's network with the paper's recipe (use a GPU: DEVICE = "@cupy:0").
MODE = "quick"
DEVICE = "@numpy"

# %%
import sys

try:
    import chainer_nets
except ImportError:  # running from notebooks/ without installing the package
    sys.path.insert(0, "..")
    import chainer_nets  # noqa: F401

import chainer.links as L
import numpy as np

from chainer_nets import notebook as nb
from chainer_nets.models.highway import HighwayConv, HighwayFitNet

assert MODE in ("quick", "full"), MODE

# %% [markdown]
# ## The gate in code
# `HighwayConv` is one convolutional highway layer: $H$ and $T$ are 3x3 convolutions with the
# same kernel, $H$ ends in ReLU, $T$ in a sigmoid. The last three lines are the equation.

# %%
nb.show_source(HighwayConv)

# %% [markdown]
# With the gate bias at $-2$, $T \approx \sigma(-2) \approx 0.12$: each layer starts as
# mostly identity. Forcing the gate shut or open shows the two limits.

# %%
layer = HighwayConv(4)
x = np.random.default_rng(0).standard_normal((1, 4, 8, 8)).astype(np.float32)
print("gate bias:", layer.t.b.array, " mean T(x):", float(layer.transform_gate(x).array.mean()))
layer.t.W.array[...] = 0
layer.t.b.array[...] = -50  # T -> 0: carry
print("T->0, |y - x| max:", float(abs(layer(x).array - x).max()))
layer.t.b.array[...] = 50  # T -> 1: transform
print("T->1, |y - H(x)| max:", float(abs(layer(x).array - np.maximum(layer.h(x).array, 0)).max()))

# %% [markdown]
# ## Chainer's built-in `chainer.links.Highway`
# Chainer ships the *fully connected* highway layer, `L.Highway(n)`: the same gate with
# $H = \mathrm{ReLU}(W_H\mathbf{x}+\mathbf{b}_H)$ and $T = \sigma(W_T\mathbf{x}+\mathbf{b}_T)$
# as dense layers (its default gate bias is $-1$). Input and output must have the same size,
# which is why a highway *network* needs plain layers wherever the width changes.
#
# A convolutional highway layer is the same thing with the matrix products replaced by
# convolutions, so each pixel gets its own gate. With 1x1 kernels on 1x1 maps the two coincide
# exactly; `tests/test_highway.py` checks this, and so does the cell below.

# %%
fc = L.Highway(3)
conv = HighwayConv(3, ksize=1)
conv.h.W.array[...] = fc.plain.W.array[:, :, None, None]
conv.h.b.array[...] = fc.plain.b.array
conv.t.W.array[...] = fc.transform.W.array[:, :, None, None]
conv.t.b.array[...] = fc.transform.b.array
v = np.random.default_rng(1).standard_normal((5, 3)).astype(np.float32)
print("L.Highway gate bias init:", fc.transform.b.array)
print(
    "max |L.Highway(x) - HighwayConv(x)|:",
    float(abs(fc(v).array - conv(v[:, :, None, None]).array[:, :, 0, 0]).max()),
)

# %% [markdown]
# ## The 19-layer CIFAR-10 network (Highway B)
# The paper's Table 1 reuses FitNet architectures (Romero et al.). We took the exact layer list
# from the authors' public Caffe files for the 19-layer CIFAR-10 net: dropout 0.2 on the input;
# three stages, each a plain 3x3 conv (32, 80, 128 filters) followed by 4, 5 and 5 highway
# layers, with 2x2 max pooling and dropout 0.2 between stages; a 1x1 conv to 100 channels with
# ReLU, 8x8 average pooling, dropout 0.2 and a linear classifier. 3 + 14 + 2 = 19 layers,
# biases everywhere, **no batch normalization**.

# %%
model = HighwayFitNet()
_ = nb.shape_table(model)
# %%
_ = nb.param_check("highway_fitnet19")
# %% [markdown]
# **Parameters.** 2,256,838 counting every weight and bias: **2.3M, as the paper states**
# ("~2.3M" for Highway B). The authors' file gives the last layer 100 outputs even for
# CIFAR-10 (90 classes that never occur); ours has 10, which changes nothing at this precision.
#
# **What differs from the 2016 Chainer implementation (93.35%, 2.8M).** It used BN-ReLU-conv
# everywhere, computed $T$ with a three-conv sub-network from a zero-padded $\mathbf{x}$, used
# gate bias 0 and per-image normalisation. We follow the paper's authors instead.

# %% [markdown]
# ## Recipe
# From the authors' Caffe solver: Nesterov momentum 0.9, lr 0.025 divided by 10 at 100k, 150k
# and 175k iterations, 200k iterations at batch 100, weight decay 1e-3. Departures are listed
# in the recipe file:

# %%
_ = nb.show_recipe("highway")

# %% [markdown]
# ## Quick run (CPU)
# The full network is too slow for a laptop-sized check, so the quick run trains a small
# sibling from the same classes (widths 8/16/16, one highway layer per stage) on 512 CIFAR-10
# training images for 2 epochs (about 10 updates at the recipe's batch 100 and lr 0.025). It
# shows that the pipeline runs; a network without batch normalization barely leaves chance
# level in 10 updates, and the accuracy says nothing about the paper's number.

# %%
nb.register_sibling(
    "highway_tiny",
    like="highway_fitnet19",
    factory=HighwayFitNet,
    description="tiny highway net for the notebook",
    widths=(8, 16, 16),
    depths=(1, 1, 1),
    head_ch=16,
)
if MODE == "quick":
    quick = nb.quick_train("highway_tiny", train_subset=512, test_subset=256, epochs=2)
else:
    full = nb.full_train("highway_fitnet19", device=DEVICE)

# %% [markdown]
# ## Reproduction
# Paper (Highway B): **92.46%** (best of several runs; mean 92.28 ± 0.16). 2016 Chainer
# implementation: **93.35%** (a different highway layer with BN). Ours: see below.

# %%
_ = nb.reproduction("highway_fitnet19")

# %% [markdown]
# ## What we checked, and what we could not
# * Checked in the authors' public Caffe files (flukeskywalker/highway-networks,
#   `examples/highways/cifar10-19layers`: network, solver, sample log): layer list, widths,
#   pooling, dropout 0.2, gate bias $-2$, $H$ = ReLU, the solver. The paper's table figures
#   (19 layers, ~2.3M, 92.46%) are as in our spec; the parameter count of this layout agrees.
# * Checked in the same repository's README: its CIFAR-10 data were globally contrast-normalised
#   and padded with 8 pixels on each side, and the network file crops 32×32 windows from them and
#   mirrors them; the recipe now pads by 8 (it padded by 4 before). Our padding is black pixels
#   of the raw image; the fill value of the authors' padding is not stated.
# * Not checked: the paper's own text on preprocessing and training (only its first page is
#   in the stored copies we could search, so the recipe rests on the authors' code, not the
#   paper), and Highway A (11 layers) and C (32 layers), whose layer lists we did not find, so
#   they are not registered.
