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
# # 07 · Highway Networks
#
# Srivastava, Greff, Schmidhuber — *Training Very Deep Networks*, arXiv
# [1507.06228](https://arxiv.org/abs/1507.06228), July 2015.
#
# ## The question
#
# Plain networks get *harder* to train as they get deeper: past a few tens of layers,
# gradient descent from a standard initialisation barely moves the training loss. Could
# every layer be allowed to pass its input through unchanged, and learn *when* to do so?
#
# ## The idea
#
# Put a learned gate in every layer. A highway layer mixes a plain layer $H$ with its own
# input, weighted per unit by a transform gate $T$ (and a carry gate $1 - T$). If the gate
# starts mostly closed, a freshly initialised deep network is close to a shallow one, and
# the signal and its gradient travel through many layers along the carry path. Training
# then opens the gates where transforming helps.

# %% tags=["parameters"]
# "quick": the experiment below on the CPU (what CI runs, with the lighter CI settings);
# "full": the paper's network and recipe (on a GPU: DEVICE = "@cupy:0").
MODE = "quick"
DEVICE = "@numpy"
FULL_MODEL = "highway_fitnet19"
QUICK = dict(depths=(1, 5, 15), train_subset=1024, test_subset=500, epochs=4, batch_size=32)
CI = dict(depths=(1, 15), epochs=3)  # the tests skip the middle depth and train less

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

from chainer_nets import data as cdata
from chainer_nets import notebook as nb
from chainer_nets.models.highway import HighwayConv, HighwayFitNet

assert MODE in ("quick", "full"), MODE
QUICK = nb.quick_settings(QUICK, CI)

# %% [markdown]
# ## The equations, next to the code
#
# $$\mathbf{y} = H(\mathbf{x})\odot T(\mathbf{x}) + \mathbf{x}\odot\big(1 - T(\mathbf{x})\big),
# \qquad H(\mathbf{x}) = \mathrm{ReLU}(W_H * \mathbf{x} + \mathbf{b}_H),
# \qquad T(\mathbf{x}) = \sigma(W_T * \mathbf{x} + \mathbf{b}_T).$$
#
# $T \to 0$ makes the layer the identity (an *information highway*), $T \to 1$ makes it
# the plain layer. The gate bias $\mathbf{b}_T$ starts **negative**, so a fresh layer
# mostly carries its input: the authors' CIFAR-10 files use $-2$, i.e.
# $T \approx \sigma(-2) \approx 0.12$. In `HighwayConv` $H$ and $T$ are 3×3 convolutions
# and the last three lines of `forward` are the equation:

# %%
nb.show_source(HighwayConv)

# %% [markdown]
# A check against the equation written with Chainer's plain functions, and the two limits:
# with the gate forced shut the layer returns its input, forced open it returns $H$.

# %%
layer = HighwayConv(4)
rng = np.random.default_rng(0)
x = rng.standard_normal((2, 4, 8, 8)).astype(np.float32)
h = np.maximum(F.convolution_2d(x, layer.h.W, layer.h.b, pad=1).array, 0)
t = 1 / (1 + np.exp(-F.convolution_2d(x, layer.t.W, layer.t.b, pad=1).array))
print("gate bias:", layer.t.b.array, " mean T(x) at initialisation:", round(float(t.mean()), 3))
assert np.allclose(layer(x).array, h * t + x * (1 - t), atol=1e-5)
layer.t.W.array[...] = 0
layer.t.b.array[...] = -50  # T -> 0: carry
print("T -> 0: max |y - x| =", float(abs(layer(x).array - x).max()))
layer.t.b.array[...] = 50  # T -> 1: transform
print("T -> 1: max |y - H(x)| =", float(abs(layer(x).array - h).max()))

# %% [markdown]
# Chainer ships the *fully connected* highway layer, `L.Highway(n)`, with the same gate on
# dense layers (its default gate bias is $-1$). A convolutional highway layer replaces the
# matrix products by convolutions, so each pixel gets its own gate; with 1×1 kernels on
# 1×1 maps the two coincide exactly:

# %%
fc = L.Highway(3)
conv = HighwayConv(3, ksize=1)
conv.h.W.array[...] = fc.plain.W.array[:, :, None, None]
conv.h.b.array[...] = fc.plain.b.array
conv.t.W.array[...] = fc.transform.W.array[:, :, None, None]
conv.t.b.array[...] = fc.transform.b.array
v = rng.standard_normal((5, 3)).astype(np.float32)
gap = float(abs(fc(v).array - conv(v[:, :, None, None]).array[:, :, 0, 0]).max())
print("max |L.Highway(x) - HighwayConv(x)| =", gap)
assert gap < 1e-5

# %% [markdown]
# ## The block
#
# One convolutional highway layer; a stage of the network is a plain convolution that sets
# the width followed by several of these.

# %%
nb.draw_block(
    "x -> conv 3×3, W_H -> ReLU -> ×#h -> + -> y; x -> conv 3×3, W_T -> σ (gate T) -> ×#h;"
    "σ (gate T) -> 1 − T -> ×#c -> +; x -[carry]-> ×#c",
    title="highway layer: y = H(x)·T(x) + x·(1 − T(x))",
)

# %% [markdown]
# ## The network and its parameter count
#
# The paper's Table 1 reuses FitNet architectures (Romero et al.). The layer list of the
# 19-layer CIFAR-10 network comes from the authors' public Caffe files: dropout 0.2 on the
# input; three stages, each a plain 3×3 conv (32, 80, 128 filters) followed by 4, 5 and 5
# highway layers, with 2×2 max pooling and dropout 0.2 between stages; a 1×1 conv to 100
# channels with ReLU, 8×8 average pooling, dropout 0.2 and a linear classifier:
# 3 + 14 + 2 = 19 layers, biases everywhere, **no batch normalization**.

# %%
rows = nb.shape_table(HighwayFitNet())
assert rows[-1]["out"] == (1, 10)

# %% [markdown]
# Counting every weight and bias; the authors' file gives the last layer 100 outputs even
# for CIFAR-10, ours has 10, which changes nothing at the paper's precision.

# %%
checks = nb.param_check("highway_fitnet19", source="paper", where="Table 1, Highway B")
assert all(c["agrees"] for c in checks), checks

# %% [markdown]
# ## Recipe and departures
#
# From the authors' Caffe solver: Nesterov momentum 0.9, lr 0.025 divided by 10 at 100k,
# 150k and 175k iterations, 200k iterations at batch 100, weight decay $10^{-3}$.

# %%
_ = nb.show_recipe("highway")

# %% [markdown]
# ## The experiment
#
# **Trainability against depth, plain against highway.** The paper's Figure 1 trains plain
# and highway networks of growing depth and finds that plain ones stop training while
# highway ones do not. We repeat it in miniature with the network above at 16 channels
# everywhere and $d$ = 1, 5 and 15 layers per stage (8, 20 and 50 layers in all), each as a
# highway net and as a *plain* net, the same layers with the gate held fully open
# ($\mathbf{y} = H(\mathbf{x})$, no carry), same initialisation, no dropout. Each trains on
# the same 1024 CIFAR-10 images for 4 epochs at batch 32 with the recipe's optimiser and
# lr, squeezed into that length. About two minutes on two cores; the tests leave out the
# middle depth and train 3 epochs.
#
# Look at the training loss of the deepest pair: a plain net that cannot be trained stays
# at $\ln 10 \approx 2.303$, the loss of a uniform guess.


# %%
class PlainConv(HighwayConv):
    """The highway layer with its gate held open: y = H(x) (same parameters, no carry)."""

    def forward(self, x):
        """The plain layer only."""
        return F.relu(self.h(x))


def fitnet_small(d: int, highway: bool = True):
    """16 channels everywhere, ``d`` highway (or plain) layers per stage, no dropout."""
    net = HighwayFitNet(widths=(16, 16, 16), depths=(d, d, d), head_ch=16, dropout=0.0)
    if not highway:
        for stage in net.stages:
            for lay in stage.layers:
                lay.__class__ = PlainConv
    return net


runs, trained = {}, {}
settings = {k: v for k, v in QUICK.items() if k != "depths"}
if MODE == "quick":
    for d in QUICK["depths"]:
        for kind in ("plain", "highway"):
            name = f"{kind}{3 * d + 5}_small"
            nb.register_sibling(
                name,
                like=FULL_MODEL,
                factory=fitnet_small,
                description=f"{kind} {3 * d + 5} layers",
                d=d,
                highway=kind == "highway",
            )
            res = nb.quick_train(
                name, plot=False, device=DEVICE, keep_model=kind == "highway", **settings
            )
            runs[f"{kind}, {3 * d + 5} layers"] = res
            if kind == "highway":
                trained[3 * d + 5] = res["net"]
    nb.plot_runs(runs, title=f"plain vs highway ({settings['train_subset']} training images)")
else:
    full = nb.full_train(FULL_MODEL, DEVICE)

# %%
if runs:
    nb.show_md(
        nb.md_table(
            [
                "network",
                "training loss, first epoch",
                "training loss, last epoch",
                "test accuracy (%)",
            ],
            [
                [
                    k,
                    f"{r['log'][0]['main/loss']:.3f}",
                    f"{r['log'][-1]['main/loss']:.3f}",
                    f"{r['test_accuracy']:.1f}",
                ]
                for k, r in runs.items()
            ],
        )
    )
    n_test = next(iter(runs.values()))["test_images"]
    nb.noise_level(float(np.mean([r["test_accuracy"] for r in runs.values()])), n_test)
    deepest = 3 * max(QUICK["depths"]) + 5
    lp = runs[f"plain, {deepest} layers"]["log"][-1]["main/loss"]
    lh = runs[f"highway, {deepest} layers"]["log"][-1]["main/loss"]
    print(
        f"At {deepest} layers the plain net ends at training loss {lp:.3f} (a uniform guess "
        f"is {np.log(10):.3f}) and the highway net at {lh:.3f}."
    )

# %% [markdown]
# **Which gates open?** The paper's Figure 2 looks inside trained highway nets: the
# transform gates of many layers stay mostly closed, so those layers mostly copy their
# input. Here is the mean of $T(\mathbf{x})$ over 500 test images, layer by layer, for the
# trained highway nets, next to its starting value $\sigma(-2) \approx 0.12$.

# %%
if trained:
    data = cdata.load_cifar10()
    mean, std = cdata.channel_stats(data.train_x)
    tx, _ = cdata.take_subset(data.test_x, data.test_y, 500)
    tx = ((tx.astype(np.float32) - mean[:, None, None]) / std[:, None, None]).astype(np.float32)

    def gate_means(net):
        """Mean transform gate of every highway layer, in order, on the test images."""
        out, h = [], tx
        with chainer.using_config("train", False), chainer.no_backprop_mode():
            for i, stage in enumerate(net.stages):
                if i > 0:
                    h = F.max_pooling_2d(h, 2, 2)
                h = F.relu(stage.plain(h))
                for lay in stage.layers:
                    out.append(float(lay.transform_gate(h).array.mean()))
                    h = lay(h)
        return out

    fig, ax = plt.subplots(figsize=(6, 3), dpi=80)
    for depth, net in trained.items():
        g = gate_means(net)
        ax.plot(range(1, len(g) + 1), g, marker="o", ms=3, label=f"highway, {depth} layers")
        print(
            f"{depth} layers: mean T per highway layer, first to last:",
            " ".join(f"{v:.2f}" for v in g),
        )
    ax.axhline(1 / (1 + np.exp(2)), color="grey", ls=":", label="at initialisation, σ(−2)")
    ax.set(xlabel="highway layer (input to output)", ylabel="mean transform gate T", ylim=(0, 1))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    plt.show()

# %% [markdown]
# ## The full reproduction
#
# The paper reports 92.46% for Highway B (the best of several runs; their mean is
# 92.28 ± 0.16). The 2016 Chainer implementation reached 93.35% with a different highway
# layer (BN–ReLU–conv everywhere, a three-convolution gate on a zero-padded input, gate
# bias 0, 2.8M parameters). Ours follows the authors' files; its last-epoch accuracy of one
# run is generated from `results/`:

# %%
run = nb.reproduction(FULL_MODEL)

# %% [markdown]
# ## Why it works, and when it fails
#
# With the gate nearly shut, a layer's Jacobian is close to the identity, so a deep highway
# net at initialisation behaves like a shallow one and gradient descent has a path through
# every layer. Training then decides, unit by unit and input by input, how much each layer
# transforms. A plain net of the same depth multiplies many Jacobians whose scale depends on
# the initialisation; without normalisation, a few tens of layers are enough for the signal
# to fade.
#
# The gates cost a second convolution per layer, doubling the parameters and computation of
# every highway layer, and a carry gate that closes completely blocks the path it was meant
# to keep open. Residual networks (notebook 08) keep the carry path without any gate, and
# batch normalization, which this network does not use, makes plain nets trainable to
# depths where highway gates were first needed.

# %% [markdown]
# ## What to take away
#
# * A highway layer is a learned, per-unit choice between transforming and copying; the
#   equation is three lines of `forward`.
# * The negative gate bias is the key initialisation: the network starts close to copying.
# * The experiment shows the depth at which a plain net without BN stops training and the
#   gated one does not; the gate plot shows which layers training chose to use.

# %% [markdown]
# ## Appendix: sources
#
# * The layer equation and the idea of a negative gate bias: the paper
#   ([arXiv 1507.06228](https://arxiv.org/abs/1507.06228)).
# * Layer list, widths, pooling, dropout 0.2, gate bias $-2$, $H$ = ReLU, the solver, and the
#   data preprocessing (contrast normalisation, 8-pixel padding): the authors' public Caffe
#   files ([flukeskywalker/highway-networks](https://github.com/flukeskywalker/highway-networks),
#   `examples/highways/cifar10-19layers`) and that repository's README.
# * 19 layers, about 2.3M parameters and 92.46%: the paper's Table 1; the count is
#   recomputed above.
# * Highway A (11 layers) and C (32 layers) are not registered: their layer lists were not
#   found.
# * The 2016 Chainer implementation's layer and accuracy: its results table (`IMPL_2016` in
#   `chainer_nets/results.py`).
