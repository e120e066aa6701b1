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
QUICK = dict(depths=(1, 5, 15), train_depth=5, steps=60, batch=32, lr=0.1)
CI = dict(steps=30)  # the tests train half as many steps

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
# Counting every weight and bias, as the paper does. The weights start as in the authors'
# Caffe fork: its "xavier" filler draws from a normal distribution with variance
# $2/\text{fan-in}$, the first convolution from a normal with standard deviation 1 and the
# classifier with 0.05.

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
# highway ones do not. We look at it in miniature with the network above at 16 channels
# everywhere and $d$ = 1, 5 and 15 layers per stage (8, 20 and 50 layers in all), each as a
# highway net and as a *plain* net: the same layers with the gate held fully open
# ($\mathbf{y} = H(\mathbf{x})$, no carry), same initialisation, no dropout.
#
# First, at initialisation, one batch of 32 CIFAR-10 images: how large is the gradient that
# reaches the first convolution, compared with the one at the classifier? Then the 20-layer
# pair trains for 60 steps (batch 32, Nesterov momentum 0.9, lr 0.1, no augmentation) on
# the same 512 images, and we look inside the trained highway net's gates. Under a minute
# of CPU time on two cores; the tests train 30 steps.


# %%
class PlainConv(HighwayConv):
    """The highway layer with its gate held open: y = H(x) (same parameters, no carry)."""

    def forward(self, x):
        """The plain layer only."""
        return F.relu(self.h(x))


def fitnet_small(d: int, highway: bool = True):
    """16 channels everywhere, ``d`` highway (or plain) layers per stage, no dropout."""
    np.random.seed(0)
    net = HighwayFitNet(widths=(16, 16, 16), depths=(d, d, d), head_ch=16, dropout=0.0)
    if not highway:
        for stage in net.stages:
            for lay in stage.layers:
                lay.__class__ = PlainConv
    return net


data = cdata.load_cifar10()
mean, std = cdata.channel_stats(data.train_x)


def normalised(x):
    """Per-channel normalisation with the training set's statistics, as in training."""
    return ((x.astype(np.float32) - mean[:, None, None]) / std[:, None, None]).astype(np.float32)


tx, ty = cdata.take_subset(data.train_x, data.train_y, 512)
tx, ty = normalised(tx), ty.astype(np.int32)
nb.setup_cpu_fast()
grad_ratio = {"plain": [], "highway": []}
if MODE == "quick":
    for d in QUICK["depths"]:
        for kind in grad_ratio:
            net = fitnet_small(d, kind == "highway")
            loss = F.softmax_cross_entropy(net(tx[: QUICK["batch"]]), ty[: QUICK["batch"]])
            loss.backward()
            first = np.linalg.norm(net.stages[0].plain.W.grad)
            grad_ratio[kind].append(first / np.linalg.norm(net.fc.W.grad))
    layers = [3 * d + 5 for d in QUICK["depths"]]
    nb.show_md(
        nb.md_table(
            ["layers", "plain: ‖∂E/∂W_first‖ / ‖∂E/∂W_fc‖", "highway: same ratio"],
            [
                [n, f"{p:.2e}", f"{h:.2e}"]
                for n, p, h in zip(layers, grad_ratio["plain"], grad_ratio["highway"], strict=True)
            ],
        )
    )


def train_steps(net, steps, batch, lr):
    """Nesterov SGD on the 512 images; the training loss of every step."""
    opt = chainer.optimizers.NesterovAG(lr=lr, momentum=0.9)
    opt.setup(net)
    rng, losses = np.random.default_rng(0), []
    for _ in range(steps):
        idx = rng.choice(len(tx), batch, replace=False)
        loss = F.softmax_cross_entropy(net(tx[idx]), ty[idx])
        net.cleargrads()
        loss.backward()
        opt.update()
        losses.append(float(loss.array))
    return np.array(losses)


curves, trained = {}, None
if MODE == "quick":
    d = QUICK["train_depth"]
    for kind in ("plain", "highway"):
        net = fitnet_small(d, kind == "highway")
        curves[f"{kind}, {3 * d + 5} layers"] = train_steps(
            net, QUICK["steps"], QUICK["batch"], QUICK["lr"]
        )
        if kind == "highway":
            trained = net
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3.2), dpi=80)
    for kind, colour in (("plain", "C0"), ("highway", "C1")):
        ax1.plot(layers, grad_ratio[kind], marker="o", color=colour, label=kind)
    ax1.set(
        xlabel="layers",
        ylabel="‖∂E/∂W_first‖ / ‖∂E/∂W_fc‖",
        yscale="log",
        title="gradient reaching the first layer, at init",
    )
    for (label, c), colour in zip(curves.items(), ("C0", "C1"), strict=True):
        ax2.plot(np.arange(1, len(c) + 1), c, color=colour, label=label)
    ax2.axhline(np.log(10), color="grey", ls=":", label="uniform guess, ln 10")
    ax2.set(
        xlabel="training step",
        ylabel="training loss (cross-entropy)",
        title=f"training, batch {QUICK['batch']}, lr {QUICK['lr']}",
    )
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    plt.show()
else:
    full = nb.full_train(FULL_MODEL, DEVICE)

# %%
if curves:
    tail = {k: c[-10:] for k, c in curves.items()}
    noise = max(float(np.std(c)) for c in tail.values())
    print(
        f"Noise level: the loss of a single step on {QUICK['batch']} images fluctuates by about "
        f"{noise:.2f} (standard deviation over the last 10 steps), so compare averages of "
        "several steps, not single points."
    )
    for k, c in tail.items():
        print(
            f"{k}: mean training loss over the last 10 steps {c.mean():.3f} "
            f"(a uniform guess is {np.log(10):.3f})"
        )
    print(
        f"At initialisation the plain nets pass {grad_ratio['plain'][-1]:.1e} of the "
        f"classifier's gradient scale to their first layer at {layers[-1]} layers, the "
        f"highway nets {grad_ratio['highway'][-1]:.1e}: look at how fast the plain ratio falls "
        "with depth."
    )

# %% [markdown]
# **Which gates open?** The paper's Figure 2 looks inside trained highway nets: many
# transform gates stay mostly closed, so those layers mostly copy their input. Here is the
# mean of $T(\mathbf{x})$ over 500 test images, layer by layer, for the highway net trained
# above, next to its starting value $\sigma(-2) \approx 0.12$. After so few steps the gates
# have moved only a little; the pattern, not the size, is what to look at.

# %%
if trained is not None:
    ex, _ = cdata.take_subset(data.test_x, data.test_y, 500)
    ex = normalised(ex)

    def gate_means(net):
        """Mean transform gate of every highway layer, in order, on the test images."""
        out, h = [], ex
        with chainer.using_config("train", False), chainer.no_backprop_mode():
            for i, stage in enumerate(net.stages):
                if i > 0:
                    h = F.max_pooling_2d(h, 2, 2)
                h = F.relu(stage.plain(h))
                for lay in stage.layers:
                    out.append(float(lay.transform_gate(h).array.mean()))
                    h = lay(h)
        return out

    after, before = gate_means(trained), gate_means(fitnet_small(QUICK["train_depth"]))
    fig, ax = plt.subplots(figsize=(6, 3), dpi=80)
    ax.plot(range(1, len(before) + 1), before, marker="o", ms=3, label="at initialisation")
    ax.plot(
        range(1, len(after) + 1), after, marker="o", ms=3, label=f"after {QUICK['steps']} steps"
    )
    ax.set(xlabel="highway layer (input to output)", ylabel="mean transform gate T", ylim=(0, 0.5))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    plt.show()
    print("mean T per highway layer after training:", " ".join(f"{v:.3f}" for v in after))

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
# to fade or blow up, depending on how the weights were drawn.
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
# * The experiment measures why: without normalisation, the gradient reaching a plain net's
#   first layer shrinks quickly with depth, and the carry path keeps it; the gate plot shows
#   which layers training starts to use.

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
