# %% [markdown]
# # 12 · Resnet in Resnet (RiR)
# Targ, Almeida, Lyman, 2016 · [arXiv 1603.08029](https://arxiv.org/abs/1603.08029) ·
# code: `chainer_nets/models/rir.py` · recipe: `chainer_nets/recipes/rir.toml`
#
# **The question.** An identity shortcut makes it easy to *keep* a feature and hard to *drop*
# one: each block only adds to a growing sum. Can a layer have a stream that accumulates and
# a stream that can forget?
#
# **The idea.** Every dual-stream layer holds a residual stream $\mathbf{r}$ (with an identity
# shortcut) and a transient stream $\mathbf{t}$ (without), and both read both:
#
# $$\mathbf{r}_{l+1} = \sigma\big(\mathrm{BN}(W_{r\to r} * \mathbf{r}_l + W_{t\to r} * \mathbf{t}_l
# %% [markdown]
# # 12 · Resnet in Resnet (RiR)
#
# Targ, Almeida, Lyman — *Resnet in Resnet: Generalizing Residual Architectures*, arXiv
# [1603.08029](https://arxiv.org/abs/1603.08029), March 2016.
#
# ## The question
#
# An identity shortcut makes it easy for a block to *keep* what earlier layers computed,
# but every block only adds to a running sum, so nothing is ever dropped from it. A plain
# layer can forget but has no shortcut. Can one architecture have both, and let training
# decide how much of each to use?
#
# ## The idea
#
# Give every layer two streams: a residual stream $\mathbf{r}$ with an identity shortcut
# and a transient stream $\mathbf{t}$ without one, and let four convolutions mix them.
# Two such layers inside an outer shortcut on the residual stream make an RiR block: a
# residual block whose residual function is itself a small two-stream network. With the
# cross-stream weights at zero the layer falls apart into a ResNet layer and a plain CNN
# layer side by side, so RiR contains both as special cases.

# %% tags=["parameters"]
# "quick": the experiment below on the CPU (what CI runs, with the lighter CI settings);
# "full": the paper's network and recipe (on a GPU: DEVICE = "@cupy:0").
MODE = "quick"
DEVICE = "@numpy"
FULL_MODEL = "rir_wide18"
QUICK = dict(train_subset=1024, test_subset=500, epochs=3, batch_size=64, lr=0.05)
CI = dict(train_subset=512)  # the tests train on half the images

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
from chainer_nets.models.rir import DualStreamLayer, ResNetInResNet, RiRBlock

assert MODE in ("quick", "full"), MODE
QUICK = nb.quick_settings(QUICK, CI)

# %% [markdown]
# ## The equations, next to the code
#
# A dual-stream layer (the paper's "ResNet Init" layer) maps $(\mathbf{r}_l, \mathbf{t}_l)$ to
#
# $$\mathbf{r}_{l+1} = \sigma\big(\mathrm{BN}(W_{r\to r} * \mathbf{r}_l + W_{t\to r} * \mathbf{t}_l
#   + \mathbf{r}_l)\big), \qquad
#   \mathbf{t}_{l+1} = \sigma\big(\mathrm{BN}(W_{r\to t} * \mathbf{r}_l + W_{t\to t} * \mathbf{t}_l)\big),$$
#
# with $\sigma$ = ReLU and 3×3 convolutions. Four convolutions, one per arrow; the shortcut
# goes into the residual stream only, before its BN and ReLU:

# %%
nb.show_source(DualStreamLayer, "forward")

# %% [markdown]
# An RiR block stacks two layers and adds an outer shortcut to the residual stream:
# $(\mathbf{r}, \mathbf{t}) \mapsto (\mathbf{r}'' + \mathbf{r},\ \mathbf{t}'')$.

# %%
nb.show_source(RiRBlock, "forward")

# %% [markdown]
# A check of the layer against the equations written with Chainer's plain functions
# (test-mode BN with non-trivial running statistics):

# %%
rng = np.random.default_rng(0)


def randomise_bn(link):
    """Give every BN non-trivial running statistics, so that test-mode BN is not an identity."""
    for _, child in link.namedlinks():
        if isinstance(child, chainer.links.BatchNormalization):
            child.avg_mean[...] = rng.standard_normal(child.avg_mean.shape).astype(np.float32)
            child.avg_var[...] = rng.uniform(0.5, 2.0, child.avg_var.shape).astype(np.float32)


def bn_test(h, link):
    """Batch normalization in test mode, written out."""
    s = (1, -1, 1, 1)
    scale = link.gamma.array.reshape(s) / np.sqrt(link.avg_var.reshape(s) + link.eps)
    return (h - link.avg_mean.reshape(s)) * scale + link.beta.array.reshape(s)


def conv(h, link):
    """The layer's 3×3 convolution (stride 1, padding 1) with its own weights."""
    return F.convolution_2d(h, link.W, pad=1).array


layer = DualStreamLayer(4, 4)
randomise_bn(layer)
r = rng.standard_normal((2, 4, 8, 8)).astype(np.float32)
t = rng.standard_normal((2, 4, 8, 8)).astype(np.float32)
with chainer.using_config("train", False):
    r1, t1 = (v.array for v in layer(r, t))
r_hand = np.maximum(bn_test(conv(r, layer.w_rr) + conv(t, layer.w_tr) + r, layer.bn_r), 0)
t_hand = np.maximum(bn_test(conv(r, layer.w_rt) + conv(t, layer.w_tt), layer.bn_t), 0)
print(
    "max |r' - equation|:",
    float(abs(r1 - r_hand).max()),
    "  max |t' - equation|:",
    float(abs(t1 - t_hand).max()),
)
assert np.allclose(r1, r_hand, atol=1e-5) and np.allclose(t1, t_hand, atol=1e-5)

# %% [markdown]
# ## The block
#
# One dual-stream layer; an RiR block is two of them with an outer shortcut from
# $\mathbf{r}$ to the second layer's residual output.

# %%
nb.draw_block(
    "r -> W r→r -> +#r; r -> W r→t -> +#t; t -> W t→r -> +#r; t -> W t→t -> +#t;"
    "r -[identity]-> +#r; +#r -> BN-ReLU#r -> r'; +#t -> BN-ReLU#t -> t'",
    title="dual-stream layer: residual stream (left), transient stream (right)",
)

# %% [markdown]
# ## The network and its parameter count
#
# "18-layer + wide RiR": a stem (one Conv-BN-ReLU per stream, 48 filters each), eight RiR
# blocks of two dual-stream layers (96 filters in all for blocks 1-2, 192 for blocks 3-5,
# 384 for blocks 6-8, stride 2 in blocks 3 and 6) and a classifier on the concatenated
# streams: 1 + 16 + 1 = 18 layers. Where the width grows, it grows on the first layer of
# the block and the second layer has the stride; shortcuts there are sub-sampled and
# zero-padded. Every block passes two streams, so the table lists two shapes per row.

# %%
rows = nb.shape_table(ResNetInResNet())
assert rows[-1]["out"] == (1, 10)

# %% [markdown]
# The reference figure here is the 2016 Chainer table's (it counts convolution and linear
# weights only); the paper's own parameter count is not checked against this layout.

# %%
checks = nb.param_check("rir_wide18", source="2016 table")
assert all(c["agrees"] for c in checks), checks

# %% [markdown]
# ## Recipe and departures

# %%
_ = nb.show_recipe("rir")

# %% [markdown]
# ## The experiment
#
# **Zeroing the cross-stream weights leaves a ResNet and a plain CNN.** First exactly: in an
# RiR block with $W_{t\to r} = W_{r\to t} = 0$, the residual stream's output must not depend
# on the transient stream at all (its gradient with respect to $\mathbf{t}$ is zero), and
# must equal the ResNet computation written out by hand; the transient stream must equal a
# plain two-layer CNN.

# %%
block = RiRBlock(4, 4)
randomise_bn(block)
for lay in block.layers:
    lay.w_tr.W.array[...] = 0
    lay.w_rt.W.array[...] = 0
rv, tv = chainer.Variable(r), chainer.Variable(t)
with chainer.using_config("train", False):
    out_r, out_t = block(rv, tv)
F.sum(out_r * rng.standard_normal(out_r.shape).astype(np.float32)).backward()
print("‖∂r_out/∂t‖ =", float(np.abs(tv.grad).max()), "(the residual stream ignores t)")
assert not tv.grad.any() and np.abs(rv.grad).max() > 0
resnet_r, plain_t = r, t
for lay in block.layers:
    resnet_r = np.maximum(bn_test(conv(resnet_r, lay.w_rr) + resnet_r, lay.bn_r), 0)
    plain_t = np.maximum(bn_test(conv(plain_t, lay.w_tt), lay.bn_t), 0)
resnet_r = resnet_r + r  # the outer shortcut
print(
    "max |r_out - ResNet by hand|:",
    float(abs(out_r.array - resnet_r).max()),
    "  max |t_out - plain CNN by hand|:",
    float(abs(out_t.array - plain_t).max()),
)
assert np.allclose(out_r.array, resnet_r, atol=1e-5)
assert np.allclose(out_t.array, plain_t, atol=1e-5)

# %% [markdown]
# **Then in training.** Does the mixing earn its weights? We train a small RiR (8, 16 and
# 32 channels per stream, one RiR block per resolution) twice on the same CIFAR-10 images
# with the same seed: once as it is, and once with the two cross-stream convolutions of
# every layer set to zero and frozen, i.e. a ResNet and a plain CNN of the same widths side
# by side, joined only at the classifier. 1024 training images, 3 epochs, batch 64, lr
# 0.05 (the recipe's batch of 500 would leave a handful of updates); about a minute on two
# cores; the tests train on 512 images. Look at the test accuracies and the noise level: the paper's
# claim is that the mixed version is better; at this scale the gap may be within noise.


# %%
def rir_small(cross: bool = True):
    """A small RiR; without ``cross`` the cross-stream weights are zero and frozen."""
    net = ResNetInResNet(widths=(8, 16, 32), blocks=(1, 1, 1))
    if not cross:
        for _, link in net.namedlinks():
            if isinstance(link, DualStreamLayer):
                for w in (link.w_tr, link.w_rt):
                    w.W.array[...] = 0
                    w.disable_update()
    return net


runs = {}
if MODE == "quick":
    for label, cross in (
        ("RiR (streams mixed)", True),
        ("cross weights zero: ResNet + CNN", False),
    ):
        name = "rir_small" if cross else "rir_small_uncrossed"
        nb.register_sibling(
            name, like=FULL_MODEL, factory=rir_small, description=label, cross=cross
        )
        runs[label] = nb.quick_train(name, plot=False, device=DEVICE, keep_model=not cross, **QUICK)
    nb.plot_runs(
        runs,
        title=f"small RiR with and without cross-stream weights "
        f"({QUICK['train_subset']} training images)",
    )
else:
    full = nb.full_train(FULL_MODEL, DEVICE)

# %%
if runs:
    uncrossed = runs["cross weights zero: ResNet + CNN"]["net"]
    still_zero = all(
        not link.w_tr.W.array.any() and not link.w_rt.W.array.any()
        for _, link in uncrossed.namedlinks()
        if isinstance(link, DualStreamLayer)
    )
    print("cross-stream weights still exactly zero after training:", still_zero)
    assert still_zero
    accs = {k: v["test_accuracy"] for k, v in runs.items()}
    for k, a in accs.items():
        print(f"{k}: {a:.1f}%")
    n_test = next(iter(runs.values()))["test_images"]
    se = nb.noise_level(float(np.mean(list(accs.values()))), n_test)
    gap = accs["RiR (streams mixed)"] - accs["cross weights zero: ResNet + CNN"]
    verdict = "beyond" if abs(gap) > 2 * np.sqrt(2) * se else "within"
    print(
        f"Mixing the streams changed test accuracy by {gap:+.1f} points, {verdict} the noise "
        "of this measurement; the training-loss curves show which version fits faster."
    )

# %% [markdown]
# ## The full reproduction
#
# The 2016 Chainer implementation reached 94.43% (300 epochs, per-image normalisation);
# the paper's figure is in the generated table below, and ours is the test accuracy after
# the last epoch of one run, read from `results/`:

# %%
run = nb.reproduction(FULL_MODEL)

# %% [markdown]
# ## Why it works, and when it fails
#
# The residual stream keeps the ResNet's easy optimisation: its shortcut carries signal and
# gradient past every layer. The transient stream gives each layer a place for features it
# can drop again, and the cross weights let the network move information between the two as
# training sees fit, so a layer can be anything from a ResNet layer to a plain layer. The
# price is four convolutions per layer instead of one or two: at equal width RiR costs about
# twice a ResNet's parameters and computation, and the paper's gains are reported against
# ResNets of the same depth, not always of the same cost.

# %% [markdown]
# ## What to take away
#
# * A dual-stream layer is a ResNet layer and a plain layer that read each other; with the
#   cross weights at zero it is exactly the two side by side (checked above on the block's
#   own code and gradients).
# * The outer shortcut makes a pair of such layers a residual block of its own.
# * Whether the mixing pays at small scale is a question of noise; the experiment prints it.

# %% [markdown]
# ## Appendix: sources
#
# * Layer and block equations: the paper, Section 2
#   ([arXiv 1603.08029](https://arxiv.org/abs/1603.08029)).
# * Network layout (stem, 8 blocks of 2 layers, widths, where the stride sits, zero-padded
#   shortcuts) and recipe defaults: the 2016 Chainer implementation; the recipe's departures
#   above say which parts were not checked in the paper's text.
# * Parameter figure (9.5M, weights only) and the 2016 accuracy: the 2016 Chainer results
#   table (`IMPL_2016` in `chainer_nets/results.py`).
