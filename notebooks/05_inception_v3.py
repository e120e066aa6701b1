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
# # 05 · Rethinking the Inception Architecture (Inception-v3)
#
# Szegedy, Vanhoucke, Ioffe, Shlens, Wojna — *Rethinking the Inception Architecture for
# Computer Vision*, arXiv [1512.00567](https://arxiv.org/abs/1512.00567), December 2015.
#
# ## The question
#
# GoogLeNet's widths were tuned by hand; scaling it up naively multiplies its cost. Which
# general rules let a convolutional network grow while its computation grows as little as
# possible, and which training tricks pay for the larger model?
#
# ## The idea
#
# Factorise: a 5×5 convolution is two 3×3 (28% cheaper), an $n\times n$ convolution is a
# $1\times n$ followed by an $n\times 1$ ($2/n$ of the cost). Shrink the grid with a stride-2
# convolution and a stride-2 pooling side by side, concatenated, instead of pooling before or
# after a module. Keep one auxiliary classifier, batch-normalised, as a regulariser; and
# smooth the labels, so that the network is never pushed towards infinitely confident logits.

# %% tags=["parameters"]
# "quick": the arithmetic and the label-smoothing experiment on the CPU (what CI runs, lighter);
# "full": the CIFAR-10 adaptation with the recipe (on a GPU: DEVICE = "@cupy:0").
MODE = "quick"
DEVICE = "@numpy"
FULL_MODEL = "inception_v3"
QUICK = dict(train_subset=2000, test_subset=1000, epochs=60, seeds=3)
CI = dict(train_subset=1000, test_subset=500, epochs=30, seeds=2)  # the tests train less

# %%
import sys

try:
    import chainer_nets  # noqa: F401
except ImportError:  # running from notebooks/ without installing the package
    sys.path.insert(0, "..")

import chainer
import chainer.functions as F
import matplotlib.pyplot as plt
import numpy as np

from chainer_nets import data as cdata
from chainer_nets import notebook as nb
from chainer_nets.models import inception_v3 as v3

assert MODE in ("quick", "full"), MODE
QUICK = nb.quick_settings(QUICK, CI)

# %% [markdown]
# ## The equations, next to the code
#
# **Label-smoothing regularisation** (Section 7). For $K$ classes, true label $y$ and
# predicted $p(k)$, the one-hot target is mixed with the uniform distribution $u(k) = 1/K$:
#
# $$q'(k) = (1-\epsilon)\,\delta_{k,y} + \frac{\epsilon}{K},\qquad
# \ell = -\sum_{k} q'(k)\log p(k) = (1-\epsilon)\,H(q,p) + \epsilon\,H(u,p),$$
#
# with $\epsilon = 0.1$. In code, the two cross-entropies are the selected log-probability
# and the mean log-probability:

# %%
nb.show_source(v3.label_smoothing_cross_entropy)

# %% [markdown]
# A check against the definition: build $q'$ explicitly for random logits and sum
# $-q'(k)\log p(k)$ with NumPy.

# %%
rng = np.random.default_rng(0)
logits = rng.standard_normal((5, 10)).astype(np.float32) * 3
labels = rng.integers(0, 10, 5).astype(np.int32)
p = np.exp(logits - logits.max(1, keepdims=True))
p /= p.sum(1, keepdims=True)
q = np.full((5, 10), 0.1 / 10)
q[np.arange(5), labels] += 0.9
by_hand = float((-(q * np.log(p)).sum(1)).mean())
ours = float(v3.label_smoothing_cross_entropy(logits, labels, 0.1).array)
print(f"label-smoothed loss: ours {ours:.6f}, by hand {by_hand:.6f}")
assert abs(ours - by_hand) < 1e-5

# %% [markdown]
# **Factorised convolutions** are plain convolutions with rectangular kernels; the 17×17
# module (`InceptionB`) uses $1\times7$ and $7\times1$ only:

# %%
nb.show_source(v3.InceptionB)

# %% [markdown]
# ## The block
#
# The 17×17 module (the paper's Figure 6, with the reference widths of the first one,
# $c = 128$):

# %%
nb.draw_block(
    "x -> 1×1, 192#a -> concat;"
    "x -> 1×1, 128#b -> 1×7, 128#c -> 7×1, 192#d -> concat;"
    "x -> 1×1, 128#e -> 7×1, 128#f -> 1×7, 128#g -> 7×1, 128#h -> 1×7, 192#i -> concat;"
    "x -> avg-pool 3×3 -> 1×1, 192#j -> concat;"
    "concat -> y",
    title="Inception-v3 17×17 module: n×n factorised into 1×n and n×1 (n = 7)",
    note="every convolution is followed by BN and ReLU",
)

# %% [markdown]
# ## The network and its parameter count
#
# A stem of 3×3 convolutions down to 35×35, three 35×35 modules, a grid reduction to
# 17×17×768, four 17×17 modules, a reduction to 8×8×1280, two 8×8 modules with expanded
# outputs (2048), global average pooling, dropout, linear; the auxiliary head on the last
# 17×17 module. The paper's Table 1 gives the outline, not the widths; the widths are the
# public reference definition's. For CIFAR-10 only the stem changes (`CIFAR_STEM`: stride 1,
# no max-pools, so the 35×35 modules see 32×32), and with it the auxiliary head's last
# kernel (4×4 for the 4×4 pooled grid).

# %%
rows = nb.shape_table(v3.InceptionV3(10, v3.CIFAR_STEM))
assert rows[-1]["out"] == (1, 10)

# %% [markdown]
# The paper states only that the model has fewer than 25 million parameters. The checkable
# figure is the reference definition: Keras's `InceptionV3` (no auxiliary head) reports
# 23,851,784, counting batch normalization's shift, moving mean and moving variance but no
# scale; ours counts scale and shift, so the same layers give 23,851,784 − 17,216 BN channels.

# %%
checks = nb.param_check(
    ["inception_v3_imagenet", "inception_v3"], source="paper", where="Section 10"
)
from chainer_nets.registry import count_params  # noqa: E402

imagenet = chainer_nets.get_model("inception_v3_imagenet")
body = count_params(imagenet) - count_params(imagenet.aux)
print(
    f"ImageNet Inception-v3 without its auxiliary head: {body:,} parameters; with it {count_params(imagenet):,}"
)
assert body == 23_851_784 - 17_216 and body < 25e6

# %% [markdown]
# ## Recipe and departures
#
# Section 8: RMSProp (decay 0.9, $\epsilon = 1.0$), learning rate 0.045 decayed by 0.94 every
# two epochs, gradient clipping at 2.0 (`InceptionV3.configure_optimizer`), 50 replicas with
# batch 32, about 100 epochs; label smoothing 0.1 and the auxiliary loss are in
# `InceptionV3.loss`, which the trainer uses.

# %%
_ = nb.show_recipe("inception_v3")

# %% [markdown]
# ## The experiment
#
# Two parts, both cheap. **Factorisation arithmetic**: weights (and multiply-adds per pixel)
# of each factorisation, from the formula and from the built layers. **Label smoothing and
# confidence**: the paper's argument is that cross-entropy with one-hot targets drives the
# correct logit infinitely above the others, while with $q'$ the optimum is finite:
# $p(y) = 1-\epsilon+\epsilon/K$, a logit gap of $\log\frac{1-\epsilon+\epsilon/K}{\epsilon/K}$.
# We first minimise both losses over a free logit vector, then train a softmax regression on
# raw CIFAR-10 pixels (2000 images, 60 full-batch gradient steps of size 0.003, 3 random subsets) with
# $\epsilon = 0$ and $0.1$ and compare its confidence on training and test images with its
# accuracy. The tests use 1000 images, 30 steps and 2 subsets.

# %%
c = 128
fact = {
    "5×5 → two 3×3": (25 * c * c, 2 * 9 * c * c),
    "7×7 → 1×7 + 7×1": (49 * c * c, 2 * 7 * c * c),
    "3×3 → 1×3 + 3×1": (9 * c * c, 2 * 3 * c * c),
    "3×3 → two 2×2": (9 * c * c, 2 * 4 * c * c),
}
b = v3.InceptionB(768, c)
assert b.s2.conv.W.size + b.d2.conv.W.size == fact["7×7 → 1×7 + 7×1"][1]
nb.show_md(
    nb.md_table(
        ["factorisation (c → c channels)", "weights before", "after", "saving"],
        [[k, f"{a:,}", f"{f:,}", f"{1 - f / a:.0%}"] for k, (a, f) in fact.items()],
    )
)

# %%
K, eps = 10, 0.1
z = chainer.Variable(np.zeros((1, K), np.float32))
t = np.array([0], np.int32)
gaps = {}
for e in (0.0, eps):
    z.array[...] = 0
    trace = []
    for _ in range(2000):
        loss = v3.label_smoothing_cross_entropy(z, t, e)
        z.grad = None
        loss.backward()
        z.array -= 1.0 * z.grad
        trace.append(float(z.array[0, 0] - z.array[0, 1:].max()))
    gaps[e] = trace
bound = float(np.log((1 - eps + eps / K) / (eps / K)))
print(
    f"logit gap after 2000 steps: {gaps[0.0][-1]:.2f} without smoothing (still growing), "
    f"{gaps[eps][-1]:.3f} with ε = 0.1 (the optimum: {bound:.3f})"
)
assert abs(gaps[eps][-1] - bound) < 1e-2 and gaps[0.0][-1] > bound


# %%
def softmax_regression(x, t, xt, tt, e, seed):
    """Full-batch gradient descent on a linear softmax classifier; (train conf., test conf., test acc.)."""
    r = np.random.default_rng(seed)
    w = chainer.Variable((r.standard_normal((x.shape[1], 10)) * 0.01).astype(np.float32))
    for _ in range(QUICK["epochs"]):
        loss = v3.label_smoothing_cross_entropy(F.matmul(x, w), t, e)
        w.grad = None
        loss.backward()
        w.array -= 0.003 * w.grad
    conf = lambda a: float(F.softmax(F.matmul(a, w)).array.max(1).mean())  # noqa: E731
    acc = float((F.matmul(xt, w).array.argmax(1) == tt).mean() * 100)
    return conf(x), conf(xt), acc


ls_runs = {0.0: [], eps: []}
if MODE == "quick":
    cifar = cdata.load_cifar10()
    n, nt = QUICK["train_subset"], QUICK["test_subset"]
    xt, tt = cdata.take_subset(cifar.test_x, cifar.test_y, nt)
    xt = xt.reshape(nt, -1).astype(np.float32)
    for seed in range(QUICK["seeds"]):
        idx = np.random.default_rng(seed).permutation(len(cifar.train_x))[:n]
        x, tl = cifar.train_x[idx].reshape(n, -1).astype(np.float32), cifar.train_y[idx]
        mean, std = x.mean(0), x.std(0) + 1e-3
        xs, xts = (x - mean) / std, (xt - mean) / std
        for e in ls_runs:
            ls_runs[e].append(softmax_regression(xs, tl, xts, tt, e, seed))
    fig, ax = plt.subplots(1, 2, figsize=(10, 3.5))
    ax[0].plot(gaps[0.0], label="ε = 0")
    ax[0].plot(gaps[eps], label="ε = 0.1")
    ax[0].axhline(bound, color="gray", ls="--", label="optimum with ε = 0.1")
    ax[0].set_xlabel("gradient step")
    ax[0].set_ylabel("logit gap, true − best other")
    ax[0].set_title("free logits under each loss")
    ax[0].legend()
    for i, e in enumerate(ls_runs):
        arr = np.array(ls_runs[e])
        ax[1].scatter(arr[:, 0], arr[:, 1], label=f"ε = {e:g}", color=f"C{i}")
    ax[1].set_xlabel("mean max-probability, training images")
    ax[1].set_ylabel("mean max-probability, test images")
    ax[1].set_title("softmax regression on CIFAR-10 pixels")
    ax[1].legend()
    plt.tight_layout()
    plt.show()
    nb.show_md(
        nb.md_table(
            [
                "ε",
                "confidence on training images",
                "confidence on test images",
                "test accuracy (%)",
            ],
            [
                [f"{e:g}"]
                + [
                    ", ".join(f"{r[j]:.3f}" if j < 2 else f"{r[j]:.1f}" for r in ls_runs[e])
                    for j in range(3)
                ]
                for e in ls_runs
            ],
        )
    )
    nb.noise_level(float(np.mean([r[2] for r in ls_runs[eps]])), nt)
    cte = {e: float(np.mean([r[1] for r in ls_runs[e]])) for e in ls_runs}
    acc = {e: float(np.mean([r[2] for r in ls_runs[e]])) for e in ls_runs}
    print(
        f"Mean test confidence {cte[0.0]:.3f} without smoothing and {cte[eps]:.3f} with it, at "
        f"test accuracies {acc[0.0]:.1f}% and {acc[eps]:.1f}%. Smoothing lowers the confidence "
        "whichever side of the accuracy it lies on: a short, under-confident run moves it away "
        "from the accuracy; the cap only helps an over-confident, converged model (left plot)."
    )
else:
    full = nb.full_train(FULL_MODEL, DEVICE)

# %% [markdown]
# ## The full reproduction
#
# The paper reports no CIFAR-10 result (ImageNet: 21.2% top-1, 5.6% top-5 single-crop error
# at 299×299). The 2016 Chainer code trained a variant (two 35×35 modules, no auxiliary head,
# no label smoothing) on CIFAR-10 up-sampled to 224×224, with momentum SGD, and reported its
# best epoch; ours keeps 32×32 inputs and reports the last epoch of one run, from `results/`:

# %%
run = nb.reproduction(FULL_MODEL)

# %% [markdown]
# ## Why it works, and when it fails
#
# Factorisation works because neighbouring activations are strongly correlated, so a large
# kernel's weights are redundant and a product of thin kernels loses little; the paper found
# the $1\times n$ / $n\times 1$ split poor on early layers (large grids) and good on the
# 12–20 pixel grids, where the network uses it. Label smoothing caps the logit gap, which keeps
# the network adaptable and its confidence closer to its accuracy; it also erases information
# that a distillation teacher would need, and with very few classes $\epsilon/K$ is large.

# %% [markdown]
# ## What to take away
#
# * A 5×5 is two 3×3 (28% fewer weights); a 7×7 is a 1×7 and a 7×1 (71% fewer).
# * Grid reductions run a stride-2 convolution and a stride-2 pooling in parallel and
#   concatenate them.
# * Label smoothing is two cross-entropies mixed, $(1-\epsilon)H(q,p) + \epsilon H(u,p)$; its
#   optimum has a finite logit gap ($\log 91 \approx 4.51$ for $K = 10$, $\epsilon = 0.1$).
# * The ImageNet configuration built by the same code has the reference definition's count.

# %% [markdown]
# ## Appendix: sources
#
# * Factorisation, grid reduction, auxiliary head with BN, label smoothing (Section 7),
#   recipe (Section 8), "less than 25 million parameters": the paper
#   ([arXiv 1512.00567](https://arxiv.org/abs/1512.00567)).
# * Branch widths, stem, auxiliary head layers, 23,851,784 parameters, auxiliary loss
#   weight 0.4, weight decay 4e-5: the reference definitions (keras-team/keras
#   `applications/inception_v3.py`, tensorflow/models slim `inception_v3.py` and
#   `train_image_classifier.py`).
# * The 2016 Chainer implementation's variant and accuracy: `chainer_nets/results.py`
#   (`IMPL_2016`).
