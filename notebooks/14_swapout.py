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
# # 14 · Swapout: Learning an ensemble of deep architectures
#
# Singh, Hoiem, Forsyth — *Swapout: Learning an ensemble of deep architectures*, arXiv
# [1605.06465](https://arxiv.org/abs/1605.06465), May 2016 (NeurIPS 2016).
#
# ## The question
#
# Dropout trains a random sub-network by silencing *units*; stochastic depth (notebook 13)
# trains one by skipping whole *layers*. Both average, implicitly, over an ensemble of
# architectures. Is there a larger family to sample from, does sampling it make a network
# better (in particular a wide, shallow one), and how should such a network predict at test
# time?
#
# ## The idea
#
# Decide for every unit of a residual block separately, with two independent coins, whether
# it passes on the block's input $\mathbf{x}$ and whether it passes on the residual
# $F(\mathbf{x})$. Each unit then reports one of four things: $0$ (dropped, as in dropout),
# $\mathbf{x}$ (skipped, as in stochastic depth), $F(\mathbf{x})$ (a plain feed-forward unit)
# or $\mathbf{x} + F(\mathbf{x})$ (a ResNet unit). At test time the paper does not replace the
# coins by their means, as dropout does, but keeps sampling and averages the predictions of
# many sampled networks. A 32-layer network four times as wide as usual, trained this way, is
# reported to match a 1001-layer ResNet on CIFAR-10.

# %% tags=["parameters"]
# "quick": the experiment below on the CPU (what CI runs, with the lighter CI settings);
# "full": the paper's network and recipe (on a GPU: DEVICE = "@cupy:0").
MODE = "quick"
DEVICE = "@numpy"
FULL_MODEL = "swapout_v2_32_w4"  # the paper's best CIFAR-10 network, also the 2016 code's
# The experiment: train v2(14) W×1 on train_subset images, then compare the two ways to predict
# on test_subset images with up to `samples` sampled passes.
QUICK = dict(train_subset=2048, test_subset=1000, epochs=5, batch_size=64, samples=16)
CI = dict(train_subset=512, test_subset=300, epochs=2, samples=4)  # the tests run less

# %%
import sys
import tempfile
from pathlib import Path

try:
    import chainer_nets  # noqa: F401
except ImportError:  # running from notebooks/ without installing the package
    sys.path.insert(0, "..")

import json

import chainer
import chainer.functions as F
import matplotlib.pyplot as plt
import numpy as np

from chainer_nets import data as cdata
from chainer_nets import notebook as nb
from chainer_nets.models.swapout import (
    SwapoutResNet,
    SwapoutUnit,
    linear_schedule,
    swapout,
)
from chainer_nets.registry import count_params, get_model_info

assert MODE in ("quick", "full"), MODE
QUICK = nb.quick_settings(QUICK, CI)

# %% [markdown]
# ## The equations, next to the code
#
# ### The swapout unit (Eq. 4)
#
# With $\Theta_1$, $\Theta_2$ two independent tensors of Bernoulli variables of the shape of
# $\mathbf{x}$ (one per sample, channel, row and column), $\Pr(\Theta_i = 1) = \theta_i$,
#
# $$\mathbf{y} = \Theta_1 \odot \mathbf{x} + \Theta_2 \odot F(\mathbf{x}).$$
#
# Unlike Chainer's dropout, the kept values are **not** rescaled by $1/\theta$ during
# training. When the masks are not sampled, each is replaced by its expectation
# (*deterministic inference*): $\mathbf{y} = \theta_1 \mathbf{x} + \theta_2 F(\mathbf{x})$.

# %%
nb.show_source(swapout)

# %% [markdown]
# **The four outcomes.** Put $\mathbf{x} = 1$ and $F(\mathbf{x}) = 10$ everywhere, so that a
# unit's output tells which outcome it drew: $0$, $1 = \mathbf{x}$, $10 = F$ or
# $11 = \mathbf{x} + F$. With independent masks the four probabilities are products, e.g.
# $\Pr(\mathbf{y} = \mathbf{x}) = \theta_1 (1 - \theta_2)$. Over 65,536 units (the tolerance,
# 0.01, is more than four standard errors of a frequency):

# %%
np.random.seed(0)  # on the CPU the masks come from numpy.random
theta1, theta2 = 0.7, 0.6
ones = np.ones((4, 16, 32, 32), np.float32)
with chainer.using_config("train", True):
    y = swapout(ones, 10 * ones, theta1, theta2).array
expected = {
    "0 (dropped)": (1 - theta1) * (1 - theta2),
    "x (skipped)": theta1 * (1 - theta2),
    "F(x) (feed-forward)": (1 - theta1) * theta2,
    "x + F(x) (residual)": theta1 * theta2,
}
observed = [float(np.mean(y == v)) for v in (0, 1, 10, 11)]
nb.show_md(
    nb.md_table(
        ["outcome", "probability", "observed frequency"],
        [[k, f"{e:.3f}", f"{o:.3f}"] for (k, e), o in zip(expected.items(), observed, strict=True)],
    )
)
assert np.isclose(sum(observed), 1.0)  # nothing else occurs: the masks are not rescaled
assert all(abs(o - e) < 0.01 for e, o in zip(expected.values(), observed, strict=True))
with chainer.using_config("train", False):
    y_det = swapout(ones, 10 * ones, theta1, theta2).array
print("not sampling (test mode): every unit =", float(y_det.flat[0]), "= 0.7 * 1 + 0.6 * 10")
assert np.allclose(y_det, 6.7)

# %% [markdown]
# The special cases, with the same function: $\theta_1 = 0$ is dropout on a plain layer (only
# $0$ and $F$ occur), $\theta_1 = \theta_2 = 1$ is a ResNet unit (always $\mathbf{x} + F$).
# Stochastic depth would need one coin shared by *all* units of a layer, which this per-unit
# function deliberately does not do.

# %%
with chainer.using_config("train", True):
    only_f = sorted({float(v) for v in swapout(ones, 10 * ones, 0.0, 0.5).array.flat})
    resnet = sorted({float(v) for v in swapout(ones, 10 * ones, 1.0, 1.0).array.flat})
print("theta = (0, 0.5): values", only_f, "  theta = (1, 1): values", resnet)
assert only_f == [0.0, 10.0] and resnet == [11.0]

# %% [markdown]
# ### Inside a pre-activation unit
#
# The network is the pre-activation ResNet (notebook 11) with basic units. The residual is
# $F(\mathbf{x}) = W_2 * \mathrm{ReLU}(\mathrm{BN}(W_1 * \mathrm{ReLU}(\mathrm{BN}(\mathbf{x}))))$;
# where a stage starts (width or resolution changes) the input is replaced by a 1×1 projection
# of the same pre-activation, and swapout mixes that projection with $F$:

# %%
nb.show_source(SwapoutUnit)

# %% [markdown]
# ### The schedule "Linear(1, 0.5)"
#
# The paper's best CIFAR-10 models use $\theta_1 = \theta_2 = \theta_u$ falling linearly from 1
# at the first unit to 0.5 at the last, $\theta_u = 1 - \tfrac{1}{2}\,\frac{u - 1}{U - 1}$ for
# units $u = 1..U$ (for v2(32), $U = 15$): the first unit is never perturbed, the last one
# keeps each of its two inputs with probability one half.

# %%
nb.show_source(linear_schedule)
net32 = get_model_info(FULL_MODEL).build()
thetas = [b.theta1 for b in net32.blocks]
assert len(thetas) == 15 and thetas[0] == 1.0 and thetas[-1] == 0.5
assert all(b.theta1 == b.theta2 for b in net32.blocks)
assert np.allclose(np.diff(thetas), -0.5 / 14)
print("v2(32) W×4, theta per unit:", " ".join(f"{t:.3f}" for t in thetas))

# %% [markdown]
# ### Two ways to predict
#
# *Deterministic inference* replaces the masks by their expectations, as dropout does. But
# the expectation does not commute with the ReLUs and batch normalizations that follow, so
# the network's output with averaged masks is not the average of the sampled networks'
# outputs. *Stochastic inference* keeps sampling the masks (BN uses its running averages) and
# averages the predicted class distributions of $S$ passes ($S = 30$ in the paper):
#
# $$\hat{p}(c \mid \mathbf{x}) = \frac{1}{S}\sum_{s=1}^{S} \mathrm{softmax}\big(z^{(s)}(\mathbf{x})\big)_c .$$
#
# The paper reports its numbers with stochastic inference, so it is the model's default; the
# forward pass returns $\log \hat{p}$, so the usual accuracy and cross-entropy read it directly.

# %%
nb.show_source(SwapoutResNet, "forward")

# %% [markdown]
# A check on an 8-layer sibling: deterministic inference is repeatable, and stochastic
# inference equals the log of the mean of 30 sampled softmaxes recomputed by hand from the
# same random stream.

# %%
tiny = SwapoutResNet(depth=8, widen=1)
xs = np.random.default_rng(0).standard_normal((4, 3, 32, 32)).astype(np.float32)
with chainer.using_config("train", False), chainer.no_backprop_mode():
    with chainer.using_config("swapout_inference", "deterministic"):
        det1, det2 = tiny(xs).array, tiny(xs).array
    np.random.seed(3)
    sto = tiny(xs).array
    np.random.seed(3)
    with chainer.using_config("swapout_sample", True):
        probs = [F.softmax(tiny.logits(xs)).array for _ in range(30)]
by_hand = np.log(np.mean(probs, axis=0))
print("deterministic twice, identical:", np.array_equal(det1, det2))
print("stochastic == log(mean of 30 softmaxes):", np.allclose(sto, by_hand, atol=1e-5))
assert np.array_equal(det1, det2) and np.allclose(sto, by_hand, atol=1e-5)

# %% [markdown]
# ## The block
#
# One swapout unit. The two masks are drawn independently for every entry of the block's
# output; where a stage starts, the left path is a 1×1 projection of the first BN–ReLU.

# %%
nb.draw_block(
    "x -> BN#1 -> ReLU#1 -> conv 3×3, W₁#1 -> BN#2 -> ReLU#2 -> conv 3×3, W₂#2"
    " -> Bernoulli mask Θ₂ (per unit)#2 -> + -> y;"
    "x -[identity]-> Bernoulli mask Θ₁ (per unit)#1 -> +",
    title="swapout unit: y = Θ₁ ⊙ x + Θ₂ ⊙ F(x), masks not rescaled",
)

# %% [markdown]
# ## The network and its parameter count
#
# "v2($d$) W×$k$": a 3×3 stem convolution with $16k$ filters, three stages of
# $n = (d-2)/6$ basic pre-activation units with $16k$/$32k$/$64k$ filters (stride 2 at the
# start of stages 2 and 3), a final BN–ReLU, global average pooling and a linear layer.
# $d = 32$, $k = 4$: five units per stage with 64/128/256 filters. (The table is traced with
# deterministic inference, so that each unit is called once.)

# %%
with chainer.using_config("swapout_inference", "deterministic"):
    _ = nb.shape_table(net32)

# %% [markdown]
# The registered figure for v2(32) W×4, 7.43M, is the one quoted for the paper; we could not
# open the paper's table to re-read it (see the appendix). v2(20) W×4 has no figure to compare.
# The units must be *basic* to reach it: 32 is $6n+2$ with $n = 5$, but not of the bottleneck
# form $9n+2$. The 2016 Chainer implementation used bottleneck units with 7.1M weights.

# %%
checks = nb.param_check(FULL_MODEL, source="paper")
assert checks[0]["agrees"], checks
n20 = count_params(get_model_info("swapout_v2_20_w4").build())
print(f"swapout_v2_20_w4: {n20:,} parameters (no reference figure)")

# %% [markdown]
# ## Recipe and departures

# %%
_ = nb.show_recipe("swapout")

# %% [markdown]
# ## The experiment
#
# **Stochastic versus deterministic inference on a trained swapout network.** The paper's
# claim: averaging the predictions of sampled networks is more accurate than one pass with
# the masks replaced by their means, and a few tens of samples suffice. The mechanism it
# names is the mismatch with batch normalization: in training, every BN after a swapout
# unit learned running statistics of *sampled* activations, whose variance includes the
# masks' noise; the mean-mask pass feeds it activations with the right mean but too little
# spread, and the error grows with every sampled unit it crosses.
#
# So the miniature needs several sampled units in a row. We train **v2(14) W×1** (two units
# per stage, 16/32/64 filters, Linear(1, 0.5): θ = 1, 0.9, 0.8, 0.7, 0.6, 0.5, so five units
# are sampled) with the swapout recipe squeezed into five epochs on 2,048 CIFAR-10 images
# (the trainer's per-epoch evaluation uses deterministic inference, to stay cheap). An
# earlier version of this notebook trained v2(8) W×1, with only two sampled units, and
# measured no gap beyond its noise. Then, on
# the same 1,000 test images, we predict once deterministically and draw $S = 16$ sampled
# passes, scoring the average of the first 1, 2, 4, 8 and 16 of them.
#
# **The honest measure is paired.** Both predictions are scored on the *same* images, so we
# take the difference image by image (+1 where only the stochastic prediction is right, −1
# where only the deterministic one is) and print its mean and standard error; this is far
# less noisy than two separate accuracies. We also compare the test cross-entropy (the
# negative log-probability of the true class), image by image: it also credits a prediction
# that became more confident in the right class without changing the argmax, so it is the
# more sensitive of the two. About two minutes on two quiet cores; the tests run a smaller
# version (fewer images, epochs and samples).

# %%
nb.register_sibling(
    "swapout_v2_14_w1_quick",
    like=FULL_MODEL,
    factory=SwapoutResNet,
    description="Swapout v2(14) Wx1, Linear(1, 0.5), deterministic evaluation while training",
    depth=14,
    widen=1,
    inference="deterministic",
)

result, curve = None, []
if MODE == "quick":
    settings = {k: v for k, v in QUICK.items() if k != "samples"}
    with tempfile.TemporaryDirectory() as tmp:
        result = nb.quick_train(
            "swapout_v2_14_w1_quick", device=DEVICE, out=tmp, keep_model=True, **settings
        )
        config = json.loads((Path(tmp) / "config.json").read_text())
    net = result["net"]
    print("theta per unit:", " ".join(f"{b.theta1:.2f}" for b in net.blocks))
    data = cdata.load_cifar10()
    ex, ey = cdata.take_subset(data.test_x, data.test_y, QUICK["test_subset"])
    to_input = cdata.AugmentConverter(
        config["normalize_mean"], config["normalize_std"], augment=False
    )
    xs, ts = to_input(list(zip(ex, ey, strict=True)))

    def predict(sample: bool) -> np.ndarray:
        """Class probabilities of one pass, masks sampled or replaced by their means."""
        with chainer.using_config("swapout_sample", sample):
            return np.concatenate(
                [F.softmax(net.logits(xs[i : i + 500])).array for i in range(0, len(xs), 500)]
            )

    np.random.seed(1)
    with chainer.using_config("train", False), chainer.no_backprop_mode():
        p_det = predict(False)
        sampled = np.stack([predict(True) for _ in range(QUICK["samples"])])
    rows = np.arange(len(ts))
    det_ok = p_det.argmax(axis=1) == ts
    det_nll = -np.log(np.maximum(p_det[rows, ts], 1e-12))
    counts = sorted({1, 2, 4, 8, 16, QUICK["samples"]} & set(range(1, QUICK["samples"] + 1)))
    for s in counts:
        p_sto = sampled[:s].mean(axis=0)
        d = (p_sto.argmax(axis=1) == ts).astype(float) - det_ok
        dn = -np.log(np.maximum(p_sto[rows, ts], 1e-12)) - det_nll
        se, se_n = d.std(ddof=1) / np.sqrt(len(d)), dn.std(ddof=1) / np.sqrt(len(d))
        curve.append(
            (s, 100 * (det_ok.mean() + d.mean()), 100 * d.mean(), 100 * se, dn.mean(), se_n)
        )
    single = [100 * float((p.argmax(axis=1) == ts).mean()) for p in sampled]
else:
    full = nb.full_train(FULL_MODEL, DEVICE)

# %%
if curve:
    n = len(ts)
    acc_det = 100 * det_ok.mean()
    se = nb.accuracy_se(acc_det, n)
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(10, 3.4), dpi=80)
    ax.plot(
        [c[0] for c in curve],
        [c[1] for c in curve],
        marker="o",
        label="stochastic: mean of S sampled passes",
    )
    ax.axhline(acc_det, color="C3", label="deterministic: masks replaced by θ")
    ax.axhspan(acc_det - se, acc_det + se, color="C3", alpha=0.15, label="± 1 s.e. of one accuracy")
    ax.scatter(
        [1] * len(single), single, s=10, color="grey", alpha=0.6, label="single sampled passes"
    )
    ax.set_xscale("log", base=2)
    ax.set(xlabel="sampled passes averaged, S", ylabel="test accuracy (%)")
    ax.set_title(f"trained swapout v2(14) W×1, {n} CIFAR-10 test images", fontsize=10)
    ax.legend(fontsize=8)
    ax2.errorbar(
        [c[0] for c in curve],
        [c[4] for c in curve],
        yerr=[2 * c[5] for c in curve],
        marker="o",
        capsize=3,
        label="stochastic − deterministic, ± 2 s.e.",
    )
    ax2.axhline(0, color="grey", lw=0.8)
    ax2.set_xscale("log", base=2)
    ax2.set(
        xlabel="sampled passes averaged, S",
        ylabel="Δ test cross-entropy (nats/image)",
    )
    ax2.set_title("paired change in cross-entropy (below 0: stochastic better)", fontsize=10)
    ax2.legend(fontsize=8)
    for a_ in (ax, ax2):
        a_.grid(alpha=0.3)
    plt.show()
    nb.show_md(
        nb.md_table(
            [
                "S",
                "stochastic (%)",
                "stochastic − deterministic (points)",
                "± s.e. (paired)",
                "Δ cross-entropy (nats)",
                "± s.e. (paired)",
            ],
            [
                [s, f"{a:.1f}", f"{g:+.2f}", f"{e:.2f}", f"{gn:+.4f}", f"{en:.4f}"]
                for s, a, g, e, gn, en in curve
            ],
        )
    )
    print(f"deterministic inference: {acc_det:.1f}%")
    nb.noise_level(acc_det, n)
    s, a, g, e, gn, en = curve[-1]
    shows = g > 2 * e or gn < -2 * en
    reverse = g < -2 * e or gn > 2 * en
    print(
        f"Look at the last row: with S = {s} the sampled average is {g:+.2f} ± {e:.2f} points "
        f"from the deterministic pass ({g / e:+.1f} standard errors of the paired gap) and "
        f"changes the cross-entropy by {gn:+.4f} ± {en:.4f} nats ({gn / en:+.1f} s.e.). "
        f"The paper's claim is a positive accuracy gap and a lower cross-entropy. "
        + (
            "At this scale the claim shows: more than two standard errors in its favour."
            if shows and not reverse
            else "At this scale the opposite shows: the deterministic pass is better by more "
            "than two standard errors."
            if reverse and not shows
            else "At this scale the claim does not show: neither gap is two standard errors "
            "in its favour, so stochastic and deterministic inference are indistinguishable "
            "here."
            if not shows
            else "The two measures disagree by more than two standard errors each: no verdict."
        )
        + f" Single sampled passes (grey dots) average {np.mean(single):.1f}%: what the "
        "stochastic curve adds to them is the averaging."
    )

# %% [markdown]
# ## The full reproduction
#
# The paper reports 4.76% test error for v2(32) W×4 and 5.09% for v2(20) W×4 on CIFAR-10,
# with stochastic inference. The 2016 Chainer implementation (bottleneck units) reached
# 95.34%. Ours is the test accuracy after the last epoch of one run, with 30-sample
# stochastic inference, generated from `results/`:

# %%
run = nb.reproduction(FULL_MODEL)

# %% [markdown]
# ## Why it works, and when it fails
#
# Training with swapout samples a different network per unit and per image, so no unit can
# rely on a particular partner being present, in its own layer or in the layers before it;
# the network learns features that work in many of the sampled architectures. Its prediction
# is then an ensemble average, and the honest estimate of that average is to sample it.
# Replacing each mask by its mean is exact for a linear network but not through a ReLU or a
# batch normalization: the deterministic pass sees activations whose scale and spread differ
# from those the layers saw in training, and the error compounds from unit to unit.
#
# The cost is at test time: $S$ forward passes per image instead of one (30 in the paper).
# The gap shrinks when $\theta$ is close to 1 (little is sampled) or when few units are
# sampled: the global average pooling before the classifier averages the masks' noise over
# every position of the last feature map, so a network with only one or two sampled units
# predicts almost the same way with or without sampling. It can also vanish for a short
# training run, where the network has not yet become robust to its own sampling; the
# experiment above measures it at the scale a CPU allows.

# %% [markdown]
# ## What to take away
#
# * Swapout is two independent per-unit masks on the two inputs of a residual sum; dropout,
#   stochastic depth and ResNets are special cases.
# * The masks are not rescaled in training; Linear(1, 0.5) keeps the first unit intact and
#   samples the last one most.
# * The paper predicts by averaging sampled passes rather than by one pass with mean masks,
#   because mean masks do not match the statistics batch normalization learned in training.
#   Whether that shows after a short CPU run is measured, not assumed: the experiment prints
#   the paired gap in accuracy and in cross-entropy with their standard errors and says
#   whether either is two standard errors in the paper's favour.
# * The price is $S$ forward passes per test image.

# %% [markdown]
# ## Appendix: sources
#
# * The idea, the special cases (dropout, stochastic depth, ResNet) and the claim that a wider
#   32-layer model performs like a 1001-layer ResNet: the paper's abstract and introduction
#   ([arXiv 1605.06465](https://arxiv.org/abs/1605.06465),
#   [HTML rendering](https://ar5iv.labs.arxiv.org/html/1605.06465)).
# * The four per-unit outcomes (the paper's Figure 1 caption) and "stochastic inference beats
#   deterministic inference": as quoted by public summaries of the paper; Eq. 4 is implemented
#   as written there and checked numerically above.
# * Training recipe (SGD, batch 128, momentum 0.9, weight decay $10^{-4}$, 256 epochs, lr 0.1
#   divided by 10 after 192 and 224 epochs; flips and translations of up to 4 pixels with one
#   crop per mini-batch): a page quoting the NeurIPS version's training paragraph
#   ([ri.k117.org](https://ri.k117.org/papers/swapout_learning_an_ensemble_of_deep_architectures__4787290f)).
# * 94.91% and 95.24% as the paper's figures and 95.34% for the 2016 Chainer code (bottleneck
#   units, 7.1M): the 2016 implementation's README,
#   [nutszebra/swapout](https://github.com/nutszebra/swapout).
# * Not re-checked in the paper's text: that "v2" means *basic* pre-activation units, the
#   exact form of Linear(1, 0.5), $S = 30$, the 7.43M parameter figure (recomputed above from
#   the described layout), and whether the stem is widened.
