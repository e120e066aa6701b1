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
# **The question.** In the original ResNet (notebook 08) a ReLU follows every addition,
# so the shortcut path is not a pure identity: the signal is clipped at each block. Does
# that matter, and what should sit on the shortcut and after the sum so that information
# travels unchanged between any two blocks, forwards and backwards?
#
# **The idea.** Keep the shortcut *and* the step after the addition as identities, and
# move batch normalization and ReLU in front of each convolution ("pre-activation").
# Then a deep block's input is a shallow block's input plus a sum of residuals, and the
# gradient reaches every block through a direct path. With this change a 1001-layer
# network trains well on CIFAR-10 and beats the shallower ones.

# %% tags=["parameters"]
# Parameters: "quick" trains a small sibling on a CIFAR-10 subset on the CPU (what CI runs);
# "full" trains the paper's network with the paper's recipe (use a GPU: DEVICE = "@cupy:0").
MODE = "quick"
DEVICE = "@numpy"
FULL_MODEL = "preresnet164"  # the network the 2016 Chainer code trained
QUICK_DEPTH = 11  # pre-activation bottleneck ResNet with 9n+2 = 11 layers (n = 1)
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
from chainer_nets.models import preact_resnet
from chainer_nets.registry import get_model_info

assert MODE in ("quick", "full"), MODE

# %% [markdown]
# ## 1. Why identity mappings: the unrolled sum
#
# Write block $l$ as $\mathbf{x}_{l+1} = \mathbf{x}_l + \mathcal{F}(\mathbf{x}_l, W_l)$: no
# function on the shortcut, no function after the addition. Applying it from block $l$
# up to a deeper block $L$ gives
#
# $$\mathbf{x}_L = \mathbf{x}_l + \sum_{i=l}^{L-1} \mathcal{F}(\mathbf{x}_i, W_i),$$
#
# and by the chain rule the gradient of the loss $\mathcal{E}$ with respect to the
# shallow features is
#
# $$\frac{\partial \mathcal{E}}{\partial \mathbf{x}_l}
#   = \frac{\partial \mathcal{E}}{\partial \mathbf{x}_L}
#     \Big(1 + \frac{\partial}{\partial \mathbf{x}_l} \sum_{i=l}^{L-1} \mathcal{F}(\mathbf{x}_i, W_i)\Big).$$
#
# The "1" carries $\partial\mathcal{E}/\partial\mathbf{x}_L$ to block $l$ untouched: it
# cannot vanish however deep the network, because it is not a product of many layers'
# Jacobians. The paper shows that a scaling, a gate, a 1×1 convolution or dropout on the
# shortcut all break this term and train worse.
#
# We can check the unrolled sum numerically on a stack of identity-shortcut units (every
# unit keeps the shape, so each shortcut is exactly $\mathbf{x}_i$):

# %%
rng = np.random.default_rng(0)
units = [preact_resnet.PreActBasic(16, 16) for _ in range(4)]
x0 = rng.standard_normal((2, 16, 8, 8)).astype(np.float32)
with chainer.using_config("train", False):
    xs, residuals = [x0], []
    for u in units:
        out = u(xs[-1]).array
        residuals.append(out - xs[-1])  # F(x_i)
        xs.append(out)
unrolled = x0 + sum(residuals)
print("x_L == x_0 + sum_i F(x_i):", np.allclose(xs[-1], unrolled, atol=1e-5))
assert np.allclose(xs[-1], unrolled, atol=1e-5)

# %% [markdown]
# ## 2. The pre-activation unit
#
# With BN and ReLU moved before each weight layer, the residual of a basic unit is
#
# $$\mathcal{F}(\mathbf{x}) = W_2 * \mathrm{ReLU}\big(\mathrm{BN}_2(W_1 * \mathrm{ReLU}(\mathrm{BN}_1(\mathbf{x})))\big),
#   \qquad \mathbf{x}_{l+1} = \mathbf{x}_l + \mathcal{F}(\mathbf{x}_l).$$
#
# Compare with notebook 08: there the order was conv → BN → ReLU and a ReLU followed the
# sum. In `PreActBasic.forward`, the first two lines are the two pre-activated
# convolutions and the return line is the addition, with nothing after it:

# %%
nbh.show_source(preact_resnet.PreActBasic)

# %% [markdown]
# The 164- and 1001-layer networks use the *bottleneck* form: a 1×1 convolution reduces
# the width to $c$, a 3×3 convolution works at width $c$, and a 1×1 convolution restores
# $4c$, each preceded by BN–ReLU:
#
# $$\mathcal{F}(\mathbf{x}) = W_3 * \sigma\big(W_2 * \sigma(W_1 * \sigma(\mathbf{x}))\big),
#   \qquad \sigma = \mathrm{ReLU}\circ\mathrm{BN}.$$
#
# In the first unit of each stage the width (and, in stages 2 and 3, the resolution)
# changes. There the shortcut becomes a 1×1 projection $W_s$ applied to the *same*
# pre-activated input $\mathbf{a} = \sigma(\mathbf{x})$ as the residual path:
# $\mathbf{x}_{l+1} = W_s * \mathbf{a} + \mathcal{F}(\mathbf{x})$. In the code `a` is
# $\sigma(\mathbf{x})$, the next three lines are $W_1, W_2, W_3$, and the return line
# picks the projection or the identity:

# %%
nbh.show_source(preact_resnet.PreActBottleneck)

# %%
first = preact_resnet.PreActBottleneck(16, 16)  # 16 -> 64 channels: projection shortcut
plain = preact_resnet.PreActBottleneck(64, 16)  # 64 -> 64: identity shortcut
x = rng.standard_normal((2, 16, 32, 32)).astype(np.float32)
with chainer.using_config("train", False):
    h = first(x)
    y = plain(h)
    a = F.relu(plain.bn1(h))
    f = plain.conv3(F.relu(plain.bn3(plain.conv2(F.relu(plain.bn2(plain.conv1(a)))))))
print("x", x.shape, "-> first unit", h.shape, "-> plain unit", y.shape)
print("projection in the first unit:", first.project, "| in the plain unit:", plain.project)
assert np.allclose(y.array, h.array + f.array, atol=1e-5)  # x_{l+1} = x_l + F(x_l)

# %% [markdown]
# ## 3. The CIFAR-10 networks
#
# A 3×3 convolution with 16 filters, three stages of $n$ units (bottleneck widths
# 16/32/64, outputs 64/128/256, on 32×32, 16×16 and 8×8 maps), then a final BN–ReLU
# (needed because the last unit's output has not been normalised), global average
# pooling and a linear layer. A bottleneck unit has three weighted layers, so the depth
# is $9n+2$: $n=18$ gives ResNet-164, $n=111$ ResNet-1001.

# %%
nbh.show_source(preact_resnet.PreActResNetCifar)

# %%
info = get_model_info(FULL_MODEL)
net = info.build()
rows = nbh.shape_table(net)
assert rows[-1]["out"] == (1, 10)

# %% [markdown]
# The paper gives 1.7M parameters for both ResNet-110 and ResNet-164 and 10.2M for
# ResNet-1001. Those figures count convolution and linear weights only: with BN's scale
# and shift ResNet-1001 has 10.33M, which would print as 10.3M. We count the way the
# paper does (the last column shows the full count):

# %%
checks = nbh.param_check(["preresnet110", "preresnet164", "preresnet1001"])
assert all(c["agrees"] for c in checks), checks

# %% [markdown]
# ## 4. A quick training run (CPU)
#
# ResNet-164 is far too slow to train on a CPU. The quick mode trains an 11-layer
# pre-activation bottleneck network of the same class ($n=1$: one unit per stage),
# registered here under the name `preresnet11_bottleneck` for this session only, on
# 512 CIFAR-10 images for two epochs. The paper's recipe is the ResNet recipe plus 400
# warm-up iterations at lr 0.01; the quick run has only 32 updates, so we train it with
# the plain ResNet recipe (batch 32 and lr 0.025 as in notebook 08, for the same
# reasons). Expect roughly 15-30%.

# %%
nbh.register_sibling(
    f"preresnet{QUICK_DEPTH}_bottleneck",
    like=FULL_MODEL,
    factory=preact_resnet.PreActResNetCifar,
    description=f"pre-activation bottleneck ResNet-{QUICK_DEPTH} (notebook quick run)",
    recipe="resnet",
    depth=QUICK_DEPTH,
    bottleneck=True,
)
if MODE == "quick":
    quick = nbh.quick_train(f"preresnet{QUICK_DEPTH}_bottleneck", device=DEVICE, **QUICK)
    assert quick["test_accuracy"] > 0
else:
    full = nbh.full_train(FULL_MODEL, DEVICE)

# %% [markdown]
# ## 5. The full reproduction
#
# The paper reports 5.46% test error for pre-activation ResNet-164 (94.54% accuracy;
# the original post-activation ResNet-164 had 5.93%). The 2016 Chainer implementation
# reached 94.39% with zero-padded shortcuts instead of projections. Our number is the
# test accuracy after the last iteration of one run:

# %%
run = nbh.reproduction(FULL_MODEL)

# %% [markdown]
# ## What to take away
#
# * Moving BN–ReLU in front of the convolutions makes both the shortcut and the step
#   after the addition identities, so $\mathbf{x}_L = \mathbf{x}_l + \sum \mathcal{F}$.
# * The code change from notebook 08 is small: the order of three calls, and no ReLU
#   on the sum. A final BN–ReLU before pooling takes over the last activation.
# * The benefit grows with depth: small for 110 layers, large for 1001.
# * Wide ResNets (notebook 15) reuse this pre-activation unit and trade depth for width.
