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
# [1605.07146](https://arxiv.org/abs/1605.07146), May 2016.
#
# **The question.** After ResNet, progress on CIFAR came from ever deeper and thinner
# networks (110, 164, 1001 layers). Each extra percent cost a near doubling of depth,
# and very deep networks are slow: their layers run one after another, and many blocks
# end up contributing little. Is depth really what matters, or would *wider* residual
# blocks do as well with far fewer layers?
#
# **The idea.** Take the pre-activation basic block of notebook 11 and multiply its
# number of filters by a widening factor $k$. A 28-layer network with $k=10$ (WRN-28-10)
# beats the 1001-layer pre-activation ResNet on CIFAR-10 and trains faster on a GPU,
# because a few wide convolutions keep the hardware busier than many thin ones. Dropout between the
# two convolutions of a block helps a little more.

# %% tags=["parameters"]
# Parameters: "quick" trains a small sibling on a CIFAR-10 subset on the CPU (what CI runs);
# "full" trains the paper's network with the paper's recipe (use a GPU: DEVICE = "@cupy:0").
MODE = "quick"
DEVICE = "@numpy"
FULL_MODEL = "wrn28_10"  # the network the 2016 Chainer code trained
QUICK_DEPTH, QUICK_WIDEN = 10, 2  # WRN-10-2: one block per stage, twice the base width
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
from chainer_nets.models import wide_resnet
from chainer_nets.registry import count_params, get_model_info

assert MODE in ("quick", "full"), MODE

# %% [markdown]
# ## 1. The wide basic block
#
# A block has two 3×3 convolutions, each preceded by BN and ReLU (the pre-activation
# order of notebook 11), with optional dropout in between:
#
# $$\mathbf{x}_{l+1} = s(\mathbf{x}_l) + W_2 * \mathrm{drop}\Big(\mathrm{ReLU}\big(\mathrm{BN}_2(W_1 * \mathbf{a}_l)\big)\Big),
#   \qquad \mathbf{a}_l = \mathrm{ReLU}(\mathrm{BN}_1(\mathbf{x}_l)).$$
#
# The shortcut $s$ is the identity when the shape is kept. Where the width or the
# resolution changes (the first block of each stage), $s(\mathbf{x}_l) = W_s * \mathbf{a}_l$
# is a 1×1 convolution of the same pre-activated input. "Wide" is only in the numbers:
# the convolutions of stage $j$ have $16\cdot 2^{j-1}\cdot k$ filters instead of
# $16\cdot 2^{j-1}$.
#
# In `WideBasic`: `forward` computes `a` $= \mathbf{a}_l$ and adds the two terms;
# `residual` is the second term ($W_1$, BN–ReLU, dropout, $W_2$) and `skip` is
# $s(\mathbf{x}_l)$. Swapout (notebook 14) and RoR (notebook 18) reuse this block and
# change only how the two terms are combined.

# %%
nbh.show_source(wide_resnet.WideBasic)

# %% [markdown]
# Dropout is active only while training (`chainer.config.train`); at test time the
# block is deterministic. We check both, and that the block computes the equation:

# %%
rng = np.random.default_rng(0)
blk = wide_resnet.WideBasic(32, 32, stride=1, dropout=0.3)
x = rng.standard_normal((2, 32, 8, 8)).astype(np.float32)
with chainer.using_config("train", False):
    y1, y2 = blk(x).array, blk(x).array
    a = F.relu(blk.bn1(x))
    by_hand = x + blk.conv2(F.relu(blk.bn2(blk.conv1(a)))).array
print(
    "test mode: deterministic",
    np.array_equal(y1, y2),
    "| equals the equation",
    np.allclose(y1, by_hand, atol=1e-5),
)
assert np.array_equal(y1, y2) and np.allclose(y1, by_hand, atol=1e-5)
with chainer.using_config("train", True):
    t1, t2 = blk(x).array, blk(x).array
print("train mode: two passes differ (dropout):", not np.allclose(t1, t2))

# %% [markdown]
# ## 2. WRN-$d$-$k$
#
# A 3×3 convolution with 16 filters, then three stages of $n$ wide blocks with $16k$,
# $32k$ and $64k$ filters on 32×32, 16×16 and 8×8 maps, then BN–ReLU, global average
# pooling and a linear layer. Counting the two convolutions per block, the stem, and the
# three 1×1 shortcut convolutions, the depth is $d = 6n + 4$: WRN-28-10 has $n=4$.

# %%
nbh.show_source(wide_resnet.WideResNet)

# %%
info = get_model_info(FULL_MODEL)
net = info.build()
rows = nbh.shape_table(net)
assert rows[-1]["out"] == (1, 10)

# %% [markdown]
# Width is expensive in parameters: a 3×3 convolution with $C$ inputs and $C$ outputs
# has $9C^2$ weights, so multiplying every width by $k$ multiplies the block's weights by
# $k^2$. WRN-28-10 has about 21 times the parameters of pre-activation ResNet-164 with
# a sixth of its depth. Against the paper's table (three significant figures):

# %%
checks = nbh.param_check(["wrn40_4", "wrn16_8", "wrn28_10", "wrn28_10_dropout"])
assert all(c["agrees"] for c in checks), checks
ratio = count_params(net) / count_params(get_model_info("preresnet164").build())
print(f"WRN-28-10 / pre-act ResNet-164 parameters: {ratio:.1f}x")

# %% [markdown]
# ## 3. A quick training run (CPU)
#
# WRN-28-10 takes about 5 billion multiply-adds per image, far too many for a CPU. The
# quick mode trains WRN-10-2, the same class with one block per stage and $k=2$
# (registered here as `wrn10_2` for this session only), on 512 CIFAR-10 images for two
# epochs with the WRN recipe compressed to that length (Nesterov momentum 0.9, weight
# decay $5\cdot10^{-4}$, reflection-padded crops and flips, lr multiplied by 0.2 at 30%,
# 60% and 80% of the run), with batch 32 and lr 0.025 as in notebook 08. Expect roughly
# 15-30%.

# %%
nbh.register_sibling(
    f"wrn{QUICK_DEPTH}_{QUICK_WIDEN}",
    like=FULL_MODEL,
    factory=wide_resnet.WideResNet,
    description=f"WRN-{QUICK_DEPTH}-{QUICK_WIDEN} (notebook quick run)",
    depth=QUICK_DEPTH,
    widen=QUICK_WIDEN,
)
if MODE == "quick":
    quick = nbh.quick_train(f"wrn{QUICK_DEPTH}_{QUICK_WIDEN}", device=DEVICE, **QUICK)
    assert quick["test_accuracy"] > 0
else:
    full = nbh.full_train(FULL_MODEL, DEVICE)

# %% [markdown]
# ## 4. The full reproduction
#
# The paper reports 4.00% test error for WRN-28-10 (median of five runs, 96.00%
# accuracy) and 3.89% with dropout. The 2016 Chainer implementation reached 95.76%
# with zero-padded shortcuts instead of 1×1 projections and plain momentum instead of
# Nesterov's. Our number is the test accuracy after the last iteration of one run:

# %%
run = nbh.reproduction(FULL_MODEL)

# %% [markdown]
# ## What to take away
#
# * The block is notebook 11's pre-activation basic block; the only new idea is the
#   factor $k$ on the widths (and optional dropout between the convolutions).
# * 28 wide layers beat 1001 thin ones on CIFAR-10, and train faster on a GPU.
# * The price is parameters and memory: 36.5M parameters for WRN-28-10.
