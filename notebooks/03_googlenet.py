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
# # 03 · Going Deeper with Convolutions (GoogLeNet)
#
# Szegedy, Liu, Jia, Sermanet, Reed, Anguelov, Erhan, Vanhoucke, Rabinovich — *Going Deeper
# with Convolutions*, arXiv [1409.4842](https://arxiv.org/abs/1409.4842), September 2014.
#
# ## The question
#
# A network gets better when it grows deeper and wider, but every doubling of a convolution's
# channels on both sides quadruples its cost. Can a network be made much deeper and wider
# without the computation growing with it, under a fixed budget of multiply-adds at inference?
#
# ## The idea
#
# Approximate a wide, sparse layer by a module of dense pieces: convolutions of several sizes
# (1×1, 3×3, 5×5) and a max-pooling side by side on the same input, their outputs
# concatenated. What keeps it affordable is the 1×1 convolution placed *before* each 3×3 and
# 5×5 (and after the pooling): it shrinks the number of channels those expensive kernels see.

# %% tags=["parameters"]
# "quick": the arithmetic and timing below on the CPU (what CI runs, lighter);
# "full": the CIFAR-10 adaptation with the recipe (on a GPU: DEVICE = "@cupy:0").
MODE = "quick"
DEVICE = "@numpy"
FULL_MODEL = "googlenet"
QUICK = dict(batch=8, repeats=5)
CI = dict(batch=4, repeats=3)  # the tests time a smaller batch fewer times

# %%
import sys

try:
    import chainer_nets  # noqa: F401
except ImportError:  # running from notebooks/ without installing the package
    sys.path.insert(0, "..")

import time

import chainer
import chainer.functions as F
import matplotlib.pyplot as plt
import numpy as np

from chainer_nets import notebook as nb
from chainer_nets.models import googlenet
from chainer_nets.registry import count_params

assert MODE in ("quick", "full"), MODE
QUICK = nb.quick_settings(QUICK, CI)

# %% [markdown]
# ## The equations, next to the code
#
# With $\sigma$ the ReLU, $R_3, R_5$ the 1×1 reductions, $W_1, W_3, W_5$ the 1×1, 3×3 and 5×5
# convolutions and $P$ the 1×1 projection after a 3×3 stride-1 max-pooling, the module is
#
# $$\mathbf{y} = \Big[\sigma(W_1 * \mathbf{x})\ \Big|\ \sigma\big(W_3 * \sigma(R_3 * \mathbf{x})\big)\ \Big|\ \sigma\big(W_5 * \sigma(R_5 * \mathbf{x})\big)\ \Big|\ \sigma\big(P * \mathrm{maxpool}_{3\times3}(\mathbf{x})\big)\Big],$$
#
# the bars meaning concatenation along the channels. In `Inception.forward` each line is one
# branch:

# %%
nb.show_source(googlenet.Inception)

# %% [markdown]
# A check that does not trust `forward`: rebuild module 3a's four branches from its weights
# with plain convolutions, concatenate them with NumPy, and compare.

# %%
m3a = googlenet.Inception(192, googlenet.TABLE1["3a"])
x = np.random.default_rng(0).standard_normal((2, 192, 8, 8)).astype(np.float32)


def conv(h, link, pad):
    """A convolution with the link's weights and bias, then ReLU, written out."""
    return np.maximum(F.convolution_2d(h, link.W, link.b, pad=pad).array, 0)


pooled = F.max_pooling_2d(x, 3, 1, 1).array
by_hand = np.concatenate(
    [
        conv(x, m3a.b1, 0),
        conv(conv(x, m3a.r3, 0), m3a.b3, 1),
        conv(conv(x, m3a.r5, 0), m3a.b5, 2),
        conv(pooled, m3a.proj, 0),
    ],
    axis=1,
)
with chainer.using_config("train", False):
    y = m3a(x).array
print("3a:", x.shape, "->", y.shape, "; max |module - by hand| =", float(abs(y - by_hand).max()))
assert y.shape[1] == 256 and np.allclose(y, by_hand, atol=1e-4)

# %% [markdown]
# ## The block
#
# The module as the paper draws it (its Figure 2b), with 3a's widths.

# %%
nb.draw_block(
    "x -> 1×1, 64#a -> concat;"
    "x -> 1×1, 96 (reduce)#b -> 3×3, 128 -> concat;"
    "x -> 1×1, 16 (reduce)#c -> 5×5, 32 -> concat;"
    "x -> max-pool 3×3/1 -> 1×1, 32 (proj)#d -> concat;"
    "concat -> y",
    title="Inception module (3a): four branches, concatenated (256 channels)",
    note="every convolution is followed by ReLU",
)

# %% [markdown]
# ## The network and its parameter count
#
# Table 1: a stem (7×7/2 convolution, max-pool, LRN, 1×1 and 3×3 convolutions, LRN,
# max-pool), modules 3a–3b, max-pool, 4a–4e, max-pool, 5a–5b, 7×7 average pooling, dropout
# 0.4, a linear layer; two auxiliary classifiers on 4a and 4d during training. The widths
# are `TABLE1`; the CIFAR-10 adaptation changes the stem only (`CIFAR_STEM`: no
# down-sampling before 3a, so 3a sees 32×32 maps where ImageNet's sees 28×28).

# %%
rows = nb.shape_table(googlenet.GoogLeNet(10, googlenet.CIFAR_STEM))
assert rows[-1]["out"] == (1, 10)

# %% [markdown]
# The paper prints parameters per layer in Table 1 but no total, so there is no paper figure
# to compare with. The checkable figure is the BVLC reference definition of GoogLeNet in
# Caffe's model zoo: 6,998,552 parameters without the auxiliary heads (they are training-only
# and absent from its deploy definition). Ours is computed below; the two heads add the rest.

# %%
checks = nb.param_check(["googlenet_imagenet", "googlenet"], source="paper", where="Table 1")
imagenet = chainer_nets.get_model("googlenet_imagenet")
aux = sum(p.size for p in imagenet.aux.params())
print(
    f"ImageNet GoogLeNet: {count_params(imagenet):,} parameters, of which the two auxiliary "
    f"heads hold {aux:,}; without them {count_params(imagenet) - aux:,} "
    "(BVLC reference: 6,998,552)."
)
assert count_params(imagenet) - aux == 6_998_552

# %% [markdown]
# ## Recipe and departures
#
# Section 6: asynchronous SGD with momentum 0.9, the learning rate decreased by 4% every 8
# epochs; Polyak averaging for the final model; no initial rate, weight decay or batch given.
# The auxiliary losses count with weight 0.3 (`GoogLeNet.loss`, which the trainer uses).

# %%
_ = nb.show_recipe("googlenet")

# %% [markdown]
# ## The experiment
#
# **What the 1×1 reductions buy.** The claim: without the reductions, stacking modules makes
# the computation blow up; with them the module is several times cheaper. We build each
# module of Table 1 twice from the same code: as the paper has it, and "naive", the 3×3 and
# 5×5 applied to the full input and no projection after the pooling (Figure 2a), so its
# output grows by the input's width. We count multiply-adds at the paper's grid sizes
# exactly, and time module 3a's forward pass both ways on the CPU (a batch of 8 at 28×28,
# repeated 5 times; the tests use 4 images and 3 repeats).


# %%
def macs(w, in_ch, grid, naive=False):
    """Multiply-adds of one module on a grid×grid map (the naive module: no reductions)."""
    if naive:
        per_pixel = in_ch * (w.c1 + 9 * w.c3 + 25 * w.c5)
    else:
        per_pixel = in_ch * (w.c1 + w.r3 + w.r5 + w.proj) + 9 * w.r3 * w.c3 + 25 * w.r5 * w.c5
    return per_pixel * grid * grid


grids = {"3": 28, "4": 14, "5": 7}
in_ch, ratios = 192, []
for name, w in googlenet.TABLE1.items():
    ratios.append(macs(w, in_ch, grids[name[0]], True) / macs(w, in_ch, grids[name[0]]))
    in_ch = w.out
nb.show_md(
    nb.md_table(
        ["module", "multiply-adds, naive / with 1×1 reductions"],
        [[k, f"{r:.1f}×"] for k, r in zip(googlenet.TABLE1, ratios, strict=True)],
    )
)

# the formula against the layers themselves: FLOP count of module 3a, built and run
w3a = googlenet.TABLE1["3a"]
built = sum(link.W.size for link in m3a.children()) * 28 * 28
assert built == macs(w3a, 192, 28), (built, macs(w3a, 192, 28))


class NaiveInception(chainer.Chain):
    """Figure 2a: 1×1, 3×3, 5×5 and max-pooling on the input, concatenated, no reductions."""

    def __init__(self, in_ch, w):
        super().__init__()
        with self.init_scope():
            self.b1 = googlenet.conv(in_ch, w.c1, 1)
            self.b3 = googlenet.conv(in_ch, w.c3, 3)
            self.b5 = googlenet.conv(in_ch, w.c5, 5)

    def forward(self, x):
        """Four branches on the full input."""
        ys = [F.relu(self.b1(x)), F.relu(self.b3(x)), F.relu(self.b5(x))]
        return F.concat(ys + [F.max_pooling_2d(x, 3, 1, 1)], axis=1)


times = {"with reductions": [], "naive": []}
if MODE == "quick":
    xb = np.random.default_rng(1).standard_normal((QUICK["batch"], 192, 28, 28))
    xb = xb.astype(np.float32)
    naive = NaiveInception(192, w3a)
    with chainer.using_config("train", False), chainer.no_backprop_mode():
        for _ in range(QUICK["repeats"]):
            for label, module in (("with reductions", m3a), ("naive", naive)):
                t0 = time.perf_counter()
                module(xb)
                times[label].append(time.perf_counter() - t0)
    fig, ax = plt.subplots(1, 2, figsize=(10, 3.5))
    ax[0].bar(list(googlenet.TABLE1), ratios)
    ax[0].set_xlabel("module")
    ax[0].set_ylabel("multiply-adds, naive / reduced")
    ax[0].set_title("cost of the naive module, Table 1 widths")
    ax[1].boxplot([times["with reductions"], times["naive"]])
    ax[1].set_xticks([1, 2], ["with reductions", "naive"])
    ax[1].set_ylabel(f"seconds per forward pass ({QUICK['batch']} images)")
    ax[1].set_title("module 3a on the CPU")
    plt.tight_layout()
    plt.show()
    med = {k: float(np.median(v)) for k, v in times.items()}
    spread = {k: float(np.max(v) - np.min(v)) for k, v in times.items()}
    print(
        f"Noise level: over {QUICK['repeats']} repeats the forward time of 3a varied by "
        f"{spread['with reductions'] * 1e3:.0f} ms with reductions and "
        f"{spread['naive'] * 1e3:.0f} ms naive (the multiply-add counts are exact)."
    )
    print(
        f"Module 3a: {ratios[0]:.1f}x the multiply-adds without reductions, measured "
        f"{med['naive'] / med['with reductions']:.1f}x the time on this (shared) CPU; across "
        f"Table 1 the factor reaches {max(ratios):.1f}x, and stacking naive modules would raise "
        "it further, since each naive module's output also carries its whole input."
    )
else:
    full = nb.full_train(FULL_MODEL, DEVICE)

# %% [markdown]
# ## The full reproduction
#
# The paper reports no CIFAR-10 result (its numbers are ImageNet top-5 errors, 6.67% for the
# ensemble). The 2016 Chainer code trained GoogLeNet without LRN or auxiliary heads on
# CIFAR-10 up-sampled to 224×224 crops and reported its best epoch's test accuracy; ours keeps
# 32×32 inputs and reports the last epoch of one run, generated from `results/`:

# %%
run = nb.reproduction(FULL_MODEL)

# %% [markdown]
# ## Why it works, and when it fails
#
# The 1×1 reduction exploits redundancy between channels: a 3×3 convolution over 192
# channels mostly recombines correlated inputs, and a learned 96-channel summary loses little
# of what it needs. The module then spends its budget on spatial extent and on breadth of
# scale. It fails where the reduction is too narrow: a bottleneck of 16 channels before the
# 5×5 throws information away, and the module's many hand-set widths (Table 1) are hard to
# transfer to another budget. The auxiliary heads were meant to push gradient into the middle
# of a 22-layer net without batch normalization; the follow-up paper (notebook 05) found they
# help only late in training and act mostly as a regulariser.

# %% [markdown]
# ## What to take away
#
# * An Inception module is four branches concatenated; its cost is set by the 1×1
#   reductions, which cut module 3a's multiply-adds by the factor computed above.
# * The ImageNet configuration is built by the same code, and without the training-only
#   auxiliary heads has exactly the BVLC reference's 6,998,552 parameters.
# * For CIFAR-10 only the stem changes: no down-sampling before 3a.

# %% [markdown]
# ## Appendix: sources
#
# * Module, Table 1 widths, auxiliary heads (5×5/3 average pooling, 1×1 to 128, FC 1024,
#   dropout 0.7, weight 0.3), recipe: the paper
#   ([arXiv 1409.4842](https://arxiv.org/abs/1409.4842)), Sections 5–6, Table 1, Figure 2.
# * Parameter count, LRN settings, Caffe's rounding of pooled sizes, xavier initialisation
#   with bias 0.2: the BVLC GoogLeNet definition in Caffe's model zoo
#   (`models/bvlc_googlenet`, BVLC/caffe on GitHub).
# * The 2016 Chainer implementation's variant and accuracy: `chainer_nets/results.py`
#   (`IMPL_2016`).
