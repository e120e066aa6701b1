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
# # 09 · Inception-v4, Inception-ResNet
#
# Szegedy, Ioffe, Vanhoucke, Alemi — *Inception-v4, Inception-ResNet and the Impact of
# Residual Connections on Learning*, arXiv [1602.07261](https://arxiv.org/abs/1602.07261),
# February 2016.
#
# ## The question
#
# Residual connections had just won ImageNet 2015, and their authors argued that very deep
# networks need them. Do Inception networks gain from them too — in accuracy, or only in
# training speed? And with the old constraints of distributed training gone, can a pure
# Inception network be made more uniform and as good?
#
# ## The idea
#
# Three networks on one plan (a stem down to 35×35, modules on 35×35, 17×17 and 8×8 grids
# with two grid reductions between them): **Inception-v4**, a uniform pure Inception network,
# and **Inception-ResNet-v1/v2**, whose Inception blocks are residual: the branches are
# concatenated, projected back to the input's width by a linear 1×1 convolution, and added
# to the input. The paper finds that the residual versions train markedly faster and end
# slightly better than pure Inception networks of the same cost — and that once the blocks
# have more than about 1000 filters the residual versions become unstable, which **scaling the
# residual down by 0.1–0.3 before the addition** cures.

# %% tags=["parameters"]
# "quick": the arithmetic and a miniature residual-scaling experiment on the CPU (CI: lighter);
# "full": the CIFAR-10 adaptation with the recipe (on a GPU: DEVICE = "@cupy:0").
MODE = "quick"
DEVICE = "@numpy"
FULL_MODEL = "inception_resnet_v2"
QUICK = dict(train_subset=1024, test_subset=500, iterations=60, depth=20, lr=0.4, probe_depth=40)
CI = dict(iterations=15, test_subset=300)  # the tests train less

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
from chainer_nets.models import inception_v4 as v4
from chainer_nets.registry import get_model

assert MODE in ("quick", "full"), MODE
QUICK = nb.quick_settings(QUICK, CI)
nb.setup_cpu_fast()

# %% [markdown]
# ## The equations, next to the code
#
# **Residual Inception block with scaling** (Section 3.3, Figure 20). With branches
# $\mathcal{B}_1, \dots, \mathcal{B}_j$ (each convolution followed by batch normalization and
# ReLU), a linear 1×1 convolution $W$ back to the input's width and a scale $s$,
#
# $$\mathbf{y} = \mathrm{ReLU}\big(\mathbf{x} + s\, W\,[\,\mathcal{B}_1(\mathbf{x}) \mid \dots
#   \mid \mathcal{B}_j(\mathbf{x})\,]\big), \qquad s \in [0.1, 0.3].$$
#
# No batch normalization sits on the sum (Section 3.2: it saved memory for more blocks), so
# $W$ has a bias. Every residual block shares this code; `mixed` is the concatenation:

# %%
nb.show_source(v4.ResidualInception)
nb.show_source(v4.InceptionResNetA, "mixed")

# %% [markdown]
# A check that can fail: for an Inception-ResNet-A block with random weights, $s = 0$ must
# give exactly $\mathrm{ReLU}(\mathbf{x})$, and $s = 0.2$ must give $\mathrm{ReLU}(\mathbf{x} +
# 0.2\,\mathbf{r})$ with $\mathbf{r}$ the unscaled residual computed by hand from the same
# weights.

# %%
rng = np.random.default_rng(0)
x = rng.standard_normal((2, 64, 9, 9)).astype(np.float32)
blk = v4.InceptionResNetA(64, 8, (8, 8), (8, 12, 16), scale=0.2)
with chainer.using_config("train", False), chainer.no_backprop_mode():
    r = blk.up(blk.mixed(x)).array
    y = blk(x).array
    blk.scale = 0.0
    y0 = blk(x).array
d_scaled = float(np.abs(y - np.maximum(x + 0.2 * r, 0)).max())
d_zero = float(np.abs(y0 - np.maximum(x, 0)).max())
print(f"|r| up to {np.abs(r).max():.2f}; s = 0.2: max error {d_scaled:.1e}; s = 0: {d_zero:.1e}")
assert d_scaled < 1e-5 and d_zero == 0.0

# %% [markdown]
# **Grid reduction** (Figure 7): a stride-2 max-pool beside a stride-2 3×3 convolution with
# $n$ filters and a 1×1 ($k$) → 3×3 ($l$) → stride-2 3×3 ($m$) tower, concatenated, so the
# width grows from $c$ to $c + n + m$. Table 1 gives $(k, l, m, n)$ per network:

# %%
nb.show_source(v4.ReductionA)
for name, (c, klmn) in {
    "Inception-v4": (384, (192, 224, 256, 384)),
    "Inception-ResNet-v1": (256, (192, 192, 256, 384)),
    "Inception-ResNet-v2": (384, (256, 256, 384, 384)),
}.items():
    red = v4.ReductionA(c, *klmn)
    with chainer.using_config("train", False), chainer.no_backprop_mode():
        shape = red(np.zeros((1, c, 35, 35), np.float32)).shape
    print(f"{name}: (k, l, m, n) = {klmn}: 35×35×{c} -> {shape[2]}×{shape[3]}×{shape[1]}")
    assert shape[1] == c + klmn[2] + klmn[3] and shape[2:] == (17, 17)

# %% [markdown]
# ## The block
#
# The 35×35 residual block of Inception-ResNet-v2 (Figure 16) with the scaling of Figure 20:

# %%
nb.draw_block(
    "x -> 1×1, 32#a -> concat;"
    "x -> 1×1, 32#b -> 3×3, 32#c -> concat;"
    "x -> 1×1, 32#d -> 3×3, 48#e -> 3×3, 64#f -> concat;"
    "concat -> 1×1, 384 linear -> × s -> + -> ReLU -> y;"
    "x -[identity]-> +",
    title="Inception-ResNet-v2, 35×35 block (s in 0.1–0.3)",
    note="every convolution but the linear 1×1 is followed by BN and ReLU",
)

# %% [markdown]
# ## The network and its parameter count
#
# Inception-ResNet-v2 on CIFAR-10: the stem of Figure 3 keeps every layer and width but none
# of its down-sampling (`CIFAR_STEM`, the one change), so the 35×35 blocks see 32×32 maps,
# then 15×15×1152 and 7×7×2144 after the reductions.

# %%
rows = nb.shape_table(get_model(FULL_MODEL))
assert rows[-1]["out"] == (1, 10)

# %% [markdown]
# The paper prints no parameter counts, so the table below has no figure to compare. The
# checkable figures are the public PyTorch ports of the authors' released checkpoints
# (Cadene's `pretrainedmodels`, `timm`, `imgclsmob`, 1000 classes): 42,679,816 for
# Inception-v4 — our network built from the paper's Figures 3–9 has exactly that count — and
# 55,843,464 for the released Inception-ResNet-v2, which is **not** the network of the
# paper's figures (another stem, twice the blocks, widths 320/1088/2080). Both are registered.
# (Keras's 55,873,736 for the released v2 counts three numbers per batch-normalization channel
# where we count two; the tests check that relation too.)

# %%
names = [
    "inception_v4_imagenet",
    "inception_resnet_v2_imagenet",
    "inception_resnet_v2_tfslim_imagenet",
]
checks = nb.param_check(names, source="paper", where="it gives no counts")
public = {"inception_v4_imagenet": 42_679_816, "inception_resnet_v2_tfslim_imagenet": 55_843_464}
for name, ref in public.items():
    n = next(c["computed"] for c in checks if c["model"] == name)
    print(f"{name}: ours {n:,}, public port of the released checkpoint {ref:,}")
    assert n == ref

# %% [markdown]
# ## Recipe and departures
#
# Section 4: RMSProp (decay 0.9, $\epsilon = 1.0$), learning rate 0.045 decayed by 0.94 every
# two epochs, 20 replicas, Polyak-averaged weights for evaluation.

# %%
_ = nb.show_recipe("inception_v4")

# %% [markdown]
# ## The experiment
#
# **The claim** (Section 3.3): without scaling, residual Inception networks with many filters
# became unstable — the last layer before the pooling "died", producing only zeros — and
# scaling the residuals by 0.1–0.3 before adding them stabilised training. A miniature: a
# stride-2 stem to an 8×8×64 grid, then a deep stack of the package's Inception-ResNet-A block
# (branches 8 | 8→8 | 8→12→16, linear 1×1 back to 64), global average pooling and a linear
# layer, with $s = 1$ (no scaling) and $s = 0.2$.
#
# First, with no training at all, how the residual stream grows with depth (training mode,
# so each branch's batch normalization sees the batch): the sum carries no normalization,
# so every block adds its residual's variance to the stream.


# %%
class Stack(chainer.Chain):
    """Stem to 8×8×64, ``depth`` Inception-ResNet-A blocks with scale ``s``, pooling, linear."""

    def __init__(self, depth: int, s: float) -> None:
        super().__init__()
        with self.init_scope():
            self.stem = v4.cbn(3, 64, 3, 2)
            self.blocks = chainer.ChainList(
                *[v4.InceptionResNetA(64, 8, (8, 8), (8, 12, 16), s) for _ in range(depth)]
            )
            self.fc = L.Linear(64, 10)

    def forward(self, x, trace=None):
        """Class scores; the stream's standard deviation after each block goes to ``trace``."""
        h = self.stem(F.average_pooling_2d(x, 2))
        for block in self.blocks:
            h = block(h)
            if trace is not None:
                trace.append(float(h.array.std()))
        self.last = h.array
        return self.fc(F.mean(h, axis=(2, 3)))


cifar = cdata.load_cifar10()
xs, ts = cdata.take_subset(cifar.train_x, cifar.train_y, QUICK["train_subset"])
xt, tt = cdata.take_subset(cifar.test_x, cifar.test_y, QUICK["test_subset"])
mean = xs.mean(axis=(0, 2, 3), keepdims=True)
std = xs.std(axis=(0, 2, 3), keepdims=True)
xs, xt = [((a - mean) / std).astype(np.float32) for a in (xs, xt)]
ts, tt = ts.astype(np.int32), tt.astype(np.int32)

scales = (1.0, 0.3, 0.1)
growth = {}
for s in scales:
    np.random.seed(0)
    growth[s] = []
    with chainer.using_config("train", True), chainer.no_backprop_mode():
        Stack(QUICK["probe_depth"], s)(xs[:32], growth[s])
fig, ax = plt.subplots(figsize=(6, 3.2))
for s in scales:
    ax.plot(range(1, len(growth[s]) + 1), growth[s], label=f"s = {s:g}")
ax.set(xlabel="block", ylabel="std of the residual stream", title="at initialisation")
ax.legend()
plt.tight_layout()
plt.show()
for s in scales:
    print(
        f"s = {s:g}: stream std after block 1 {growth[s][0]:.2f}, after block "
        f"{len(growth[s])} {growth[s][-1]:.2f}"
    )

# %% [markdown]
# Then training: the same stack, `depth` blocks deep, trained from the same initial weights
# with $s = 1$ and $s = 0.2$ by momentum SGD (0.9) at a deliberately high learning rate
# (`lr`), batch 32, on a CIFAR-10 subset for `iterations` steps. We record the training loss
# of every step, the largest activation of the last block, and the share of its outputs that
# are zero (the paper's symptom), and test the two networks on held-out images. CI runs fewer
# steps.


# %%
def train_stack(s: float) -> dict:
    """Train one stack with residual scale ``s``; losses, last-block statistics, test accuracy."""
    np.random.seed(0)
    model = Stack(QUICK["depth"], s)
    opt = chainer.optimizers.MomentumSGD(lr=QUICK["lr"], momentum=0.9)
    opt.setup(model)
    order = np.random.default_rng(1)
    out = {"loss": [], "max_act": [], "zero": []}
    with chainer.using_config("train", True):
        for _ in range(QUICK["iterations"]):
            idx = order.choice(len(xs), 32, replace=False)
            loss = F.softmax_cross_entropy(model(xs[idx]), ts[idx])
            model.cleargrads()
            loss.backward()
            opt.update()
            out["loss"].append(float(loss.array))
            out["max_act"].append(float(np.abs(model.last).max()))
            out["zero"].append(float((model.last == 0).mean()))
    correct = 0
    with chainer.using_config("train", False), chainer.no_backprop_mode():
        for i in range(0, len(xt), 100):
            correct += int((model(xt[i : i + 100]).array.argmax(1) == tt[i : i + 100]).sum())
    out["test_accuracy"] = 100.0 * correct / len(xt)
    return out


runs = {}
if MODE == "quick":
    for s in (1.0, 0.2):
        runs[s] = train_stack(s)
    fig, ax = plt.subplots(1, 3, figsize=(12, 3.2))
    for s, r in runs.items():
        label = f"s = {s:g}" + (" (no scaling)" if s == 1 else "")
        ax[0].plot(r["loss"], label=label)
        ax[1].semilogy(r["max_act"], label=label)
        ax[2].plot(r["zero"], label=label)
    ax[0].set(xlabel="step", ylabel="training loss")
    ax[1].set(xlabel="step", ylabel="max |activation|, last block")
    ax[2].set(xlabel="step", ylabel="share of zeros, last block")
    for a in ax:
        a.legend()
    fig.suptitle(f"{QUICK['depth']} residual Inception blocks, lr {QUICK['lr']:g}", fontsize=10)
    plt.tight_layout()
    plt.show()
    tail = max(1, QUICK["iterations"] // 5)
    for s, r in runs.items():
        finite = np.isfinite(r["loss"]).all()
        print(
            f"s = {s:g}: mean training loss over the last {tail} steps "
            f"{np.mean(r['loss'][-tail:]):.3f} (largest {np.max(r['loss']):.3g}"
            f"{'' if finite else ', non-finite'}), last-block zeros "
            f"{r['zero'][-1]:.0%}, test accuracy {r['test_accuracy']:.1f}%"
        )
    nb.noise_level(runs[0.2]["test_accuracy"], len(xt))
    print(
        "Look at the loss curves and the activations: the claim is borne out here only if the "
        "unscaled stack's loss or activations run away while the scaled one's do not; test "
        "accuracies closer than the gap above say nothing at this scale."
    )
else:
    full = nb.full_train(FULL_MODEL, DEVICE)

# %% [markdown]
# ## The full reproduction
#
# The paper reports **no CIFAR-10 number** (only ImageNet: Inception-v4 and
# Inception-ResNet-v2 each 80.0–80.1% top-1 single-crop, Table 3), and the 2016 Chainer code
# did not implement these networks, so both reference columns below are empty ("—"). Ours,
# when a run is recorded, is the last epoch of one run from `results/`:

# %%
run = nb.reproduction(FULL_MODEL)

# %% [markdown]
# ## Why it works, and when it fails
#
# The residual sum has no normalization after it, so each block adds its residual's variance
# to the stream: the scale of the stream grows with depth (first figure), and with a large
# step a few blocks can push the activations before the final pooling so far that the ReLUs
# stay off. Multiplying the residual by $s < 1$ makes every block a small correction of an
# identity map at the start, the same idea as the warm-up phase He et al. used for their
# 1202-layer CIFAR ResNet, but without a schedule. Scaling never hurt accuracy in the paper;
# it is not sufficient on its own for any width, and its effect in this miniature — 64
# channels, not thousands — is smaller than what the paper describes.
#
# ## What to take away
#
# * Inception-v4 uniformises the modules (one width per grid, Reduction-A with
#   $(k, l, m, n)$ from Table 1); built from the paper's figures it has exactly the public
#   checkpoint's 42,679,816 parameters.
# * Inception-ResNet block: branches → concatenation → linear 1×1 → × $s$ → + $\mathbf{x}$ →
#   ReLU, with $s$ between 0.1 and 0.3 (0.17, 0.10, 0.20 in the released code).
# * The released Inception-ResNet-v2 is a different network from the paper's figures (55.8M
#   against 32.4M parameters); two printed widths of the figures (1154, 2048) cannot be summed
#   with their inputs and must be 1152 and 2144.
# * The paper has no CIFAR-10 result: the CIFAR-10 networks here are an adaptation (stem
#   without down-sampling).
#
# ## Appendix: sources
#
# * Modules, stems, widths, repeats, $(k, l, m, n)$, residual scaling and its 0.1–0.3 range,
#   dropout keep 0.8, the recipe (Section 4): the paper
#   ([arXiv 1602.07261](https://arxiv.org/abs/1602.07261)), Figures 3–20 and Table 1.
# * Checked against the authors' TF-slim definitions (tensorflow/models,
#   `research/slim/nets/inception_v4.py` and `inception_resnet_v2.py`): every Inception-v4
#   width; the residual scales 0.17/0.10/0.20; the linear 1×1 with a bias and no BN; the
#   released Inception-ResNet-v2 layout. Inception-ResNet-v1's widths: the TF-slim-style
#   definition in davidsandberg/facenet (`src/models/inception_resnet_v1.py`).
# * Parameter counts of the released checkpoints: Cadene/pretrained-models.pytorch as listed by
#   osmr/imgclsmob (42,679,816 and 55,843,464 at 1000 classes; the TF-slim checkpoints have
#   1001 classes, 1,537 more), Keras's `InceptionResNetV2` (55,873,736).
