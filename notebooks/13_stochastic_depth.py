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
# # 13 · Deep Networks with Stochastic Depth
#
# Huang, Sun, Liu, Sedra, Weinberger — *Deep Networks with Stochastic Depth*, arXiv
# [1603.09382](https://arxiv.org/abs/1603.09382), March 2016.
#
# ## The question
#
# A 110-layer ResNet is accurate but slow to train, and its gradient has to pass through
# every one of its 54 residual blocks. Depth helps when the network is *used*; does it have
# to be paid for on every training step as well?
#
# ## The idea
#
# Train a *random shallower* network on each mini-batch and test the full deep one. Every
# residual block flips a biased coin per mini-batch: heads, it runs as usual; tails, its
# whole residual branch is skipped and the block is just its shortcut. Early blocks, which
# build the features every later block uses, are kept almost always, late ones only half
# the time. At test time all blocks run, each branch scaled by how often it was present in
# training. It is dropout applied to whole layers, and it fits a ResNet naturally because
# the shortcut already is a sensible "layer removed" network.

# %% tags=["parameters"]
# "quick": the experiment below on the CPU (what CI runs, with the lighter CI settings);
# "full": the paper's network and recipe (on a GPU: DEVICE = "@cupy:0").
MODE = "quick"
DEVICE = "@numpy"
FULL_MODEL = "sd_resnet110"  # the network of the paper's main CIFAR-10 result and the 2016 code
QUICK = dict(n=9, batch=32, steps=14)  # ResNet-56 (27 blocks), timed training steps per net
CI = dict(steps=8)  # the tests time fewer steps

# %%
import sys
import time

try:
    import chainer_nets  # noqa: F401
except ImportError:  # running from notebooks/ without installing the package
    sys.path.insert(0, "..")

import chainer
import chainer.functions as F
import matplotlib.pyplot as plt
import numpy as np

from chainer_nets import blocks
from chainer_nets import notebook as nb
from chainer_nets.models.stochastic_depth import (
    StochasticDepthBlock,
    StochasticDepthResNet,
    avg_pool_pad_shortcut,
)

assert MODE in ("quick", "full"), MODE
QUICK = nb.quick_settings(QUICK, CI)

# %% [markdown]
# ## The equations, next to the code
#
# ### The gated block: training (Eq. 2) and test (Eq. 5)
#
# Block $\ell$ of the post-activation ResNet computes a residual branch
# $f_\ell = \mathrm{BN}(W_2 * \mathrm{ReLU}(\mathrm{BN}(W_1 * H_{\ell-1})))$. A Bernoulli
# variable $b_\ell \in \{0, 1\}$ with $\Pr(b_\ell = 1) = p_\ell$, drawn once per mini-batch,
# gates it during training:
#
# $$H_\ell = \mathrm{ReLU}\big(b_\ell\, f_\ell(H_{\ell-1}) + \mathrm{id}(H_{\ell-1})\big).$$
#
# With $b_\ell = 0$ this is $\mathrm{ReLU}(H_{\ell-1}) = H_{\ell-1}$, because the previous
# block ended in a ReLU: the block vanishes. At test time every block is present and its
# branch is re-calibrated by its survival probability:
#
# $$H_\ell^{\text{test}} = \mathrm{ReLU}\big(p_\ell\, f_\ell(H_{\ell-1}^{\text{test}})
#   + \mathrm{id}(H_{\ell-1}^{\text{test}})\big).$$
#
# The gate is one function in `chainer_nets.blocks`, shared with RoR (notebook 18). In
# training it either returns `None` (the branch is *not computed at all*, which is where the
# training speed-up comes from) or the branch; at test it returns $p_\ell f_\ell$:

# %%
nb.show_source(blocks.stochastic_depth)

# %% [markdown]
# The block adds the gated branch to its shortcut and applies the ReLU; a dropped block
# returns its shortcut alone:

# %%
nb.show_source(StochasticDepthBlock.forward)

# %% [markdown]
# A tiny check of both equations on one block with $p_\ell = 0.5$: in training mode we draw
# until we have seen both outcomes (the output is either exactly the input or
# $\mathrm{ReLU}(f + \mathbf{x})$); in test mode the output is $\mathrm{ReLU}(0.5 f + \mathbf{x})$
# every time.

# %%
np.random.seed(0)
block = StochasticDepthBlock(4, 4, stride=1, survival=0.5)
x = np.abs(np.random.default_rng(0).standard_normal((2, 4, 6, 6))).astype(np.float32)  # post-ReLU
with chainer.using_config("train", False):
    f = block.residual(x).array  # batch statistics are irrelevant here: test-mode BN throughout
    y_test = block(x).array
assert np.allclose(y_test, F.relu(0.5 * f + x).array)
print("test:  y == ReLU(0.5 f(x) + x):", np.allclose(y_test, F.relu(0.5 * f + x).array))
outcomes = []
with chainer.using_config("train", True):
    for _ in range(20):
        y = block(x).array
        outcomes.append("dropped" if np.array_equal(y, x) else "kept")
print("train: 20 mini-batches ->", " ".join(o[0] for o in outcomes), "(d = dropped, k = kept)")
assert {"dropped", "kept"} == set(outcomes)

# %% [markdown]
# ### The down-sampling shortcut
#
# The official Torch code does not sub-sample where the resolution halves (the ResNet
# paper's option A takes every second pixel); it averages each 2×2 patch and then appends
# zero channels: $\mathrm{id}(\mathbf{x}) = [\,\mathrm{AvgPool}_{2\times2}(\mathbf{x});\ \mathbf{0}\,]$.

# %%
nb.show_source(avg_pool_pad_shortcut)

# %%
s = avg_pool_pad_shortcut(chainer.Variable(x), 8, 2).array
by_hand = x.reshape(2, 4, 3, 2, 3, 2).mean(axis=(3, 5))
assert np.allclose(s[:, :4], by_hand) and not s[:, 4:].any()
print("x", x.shape, "-> shortcut", s.shape, ": 2x2 means, then 4 zero channels")

# %% [markdown]
# ### Linear decay of the survival probabilities (Eq. 4)
#
# With $L$ blocks, the input counted as $p_0 = 1$ and the last block at $p_L$ (0.5 in all
# of the paper's CIFAR experiments), the survival probability falls linearly with depth:
#
# $$p_\ell = 1 - \frac{\ell}{L}\,(1 - p_L), \qquad \ell = 1, \dots, L.$$
#
# The expected number of blocks that run in a training step is
# $\sum_\ell p_\ell = L - \frac{L+1}{2}(1 - p_L)$, about 40 of ResNet-110's 54 (so roughly
# a quarter of the residual computation is skipped).

# %%
nb.show_source(blocks.linear_decay_survival)

# %%
net110 = StochasticDepthResNet(n=18)
p = np.array(net110.survival)
L = len(p)
assert L == 54 and np.allclose(p, [1 - i / L * 0.5 for i in range(1, L + 1)])
print(
    f"ResNet-110: L = {L} blocks, p_1 = {p[0]:.4f}, p_L = {p[-1]:.2f}, "
    f"expected depth in training = {p.sum():.2f} blocks (formula: {L - (L + 1) / 2 * 0.5:.2f})"
)

# %% [markdown]
# Does the network really drop block $\ell$ in a fraction $1 - p_\ell$ of the mini-batches?
# Count how often each block's branch is computed over 1,000 training passes of a narrow
# ResNet-20 with stochastic depth (9 blocks, same schedule; widths 2/4/8 and 8×8 inputs to
# keep it fast). Each count is binomial, so it should lie within a few standard deviations
# $\sqrt{N p_\ell (1 - p_\ell)}$ of $N p_\ell$.

# %%
np.random.seed(1)
small = StochasticDepthResNet(n=3, widths=(2, 4, 8))
calls = [0] * len(small.blocks)
for k, blk in enumerate(small.blocks):
    original = blk.residual

    def counting(h, k=k, original=original):
        calls[k] += 1
        return original(h)

    blk.residual = counting
trials = 1000
xs = np.random.rand(1, 3, 8, 8).astype(np.float32)
with chainer.using_config("train", True), chainer.no_backprop_mode():
    for _ in range(trials):
        small(xs)
ps = np.array(small.survival)
rate = np.array(calls) / trials
sd = np.sqrt(ps * (1 - ps) / trials)
assert np.all(np.abs(rate - ps) <= 4 * sd + 1e-9), (rate, ps)
nb.show_md(
    nb.md_table(
        ["block ℓ", "p_ℓ", "kept (empirical)", "(kept − p_ℓ) / σ"],
        [
            [k + 1, f"{q:.3f}", f"{r:.3f}", f"{(r - q) / s:+.1f}" if s else "—"]
            for k, (q, r, s) in enumerate(zip(ps, rate, sd, strict=True))
        ],
    )
)
fig, ax = plt.subplots(figsize=(5, 3), dpi=80)
ax.plot(range(1, len(ps) + 1), ps, "o-", label=r"$p_\ell$ (Eq. 4)")
ax.errorbar(range(1, len(ps) + 1), rate, yerr=2 * sd, fmt="s", label="kept, 1,000 passes (±2σ)")
ax.set(xlabel=r"block $\ell$", ylabel="fraction of mini-batches", ylim=(0.4, 1.05))
ax.grid(alpha=0.3)
ax.legend()
plt.show()

# %% [markdown]
# ## The block
#
# One block in training: the coin $b_\ell$ decides whether the branch runs at all.

# %%
nb.draw_block(
    "x -> conv 3×3#1 -> BN#1 -> ReLU#1 -> conv 3×3#2 -> BN#2 -> gate b ∈ {0,1}, P(1) = p -> + -> ReLU#2 -> y;"
    "x -[identity (2×2 average + zero channels where the shape changes)]-> +",
    title="stochastic-depth block (training); at test time the gate is the factor p",
)

# %% [markdown]
# ## The network and its parameter count
#
# The CIFAR ResNet of the ResNet paper with $6n+2$ layers (a 3×3 conv with 16 filters, three
# stages of $n$ blocks at 16/32/64 filters on 32², 16², 8² maps, global average pooling,
# linear), with the survival probabilities attached to its blocks. Stochastic depth adds no
# parameters: ResNet-110 with it has the count of ResNet-110.

# %%
nb.show_source(StochasticDepthResNet)

# %%
rows = nb.shape_table(net110)
assert rows[-1]["out"] == (1, 10)

# %% [markdown]
# The paper prints 1.7M parameters for the 110-layer and 19.4M for the 1202-layer network
# (the ResNet paper's figures, BN's scale and shift included). The official Torch code also
# puts a bias on every convolution, which the next BN cancels; we leave it out, which
# changes ResNet-110's count by 4,048, invisible at 0.1M.

# %%
checks = nb.param_check(["sd_resnet110", "sd_resnet1202"], source="paper", where="Table 1")
assert all(c["agrees"] for c in checks), checks

# %% [markdown]
# ## Recipe and departures
#
# Nesterov momentum 0.9, weight decay $10^{-4}$, batch 128, lr 0.1 divided by 10 at 50% and
# 75% of 500 epochs (the official code's defaults; the paper trains 500 epochs on CIFAR-10).

# %%
_ = nb.show_recipe("stochastic_depth")

# %% [markdown]
# ## The experiment
#
# **Is a training step really cheaper?** The paper's practical claim is a shorter training
# time: about a quarter of the residual blocks are skipped per step, and skipped blocks
# cost nothing, forward or backward. We time full training steps (forward, loss, backward,
# Nesterov update) of ResNet-56 at batch 32 on the CPU, twice: with the paper's schedule
# ($p_L = 0.5$) and with every block kept ($p_L = 1$, the same network without stochastic
# depth). The two are timed alternately, step by step, so that a busy machine slows both
# alike, and both see the same fresh batch of random training images at each step; the
# first two steps of each are warm-up and not counted. We also count how many
# blocks ran in each step. About a minute on two cores; the tests time fewer steps.
#
# Look at the ratio of step times next to the ratio of blocks run, and at the right panel:
# if skipping is free, step time grows in a straight line with the number of blocks that
# ran. On a busy machine other programs add time to random steps; the fastest steps of each
# network are the least disturbed, so the summary compares those.


# %%
def counted(net):
    """Wrap every block's branch so that ``net.ran`` counts the branches computed."""
    net.ran = 0
    for blk in net.blocks:
        original = blk.residual

        def residual(h, _f=original):
            net.ran += 1
            return _f(h)

        blk.residual = residual
    return net


def timed_step(model, opt, x, t):
    """One training step; its wall time in ms and the number of blocks that ran."""
    model.predictor.ran = 0
    t0 = time.perf_counter()
    model.cleargrads()
    loss = model(x, t)
    loss.backward()
    opt.update()
    return 1000 * (time.perf_counter() - t0), model.predictor.ran


timings = {}
if MODE == "quick":
    nb.setup_cpu_fast()
    # a fresh batch of random training images every step, the same for both networks: one
    # batch repeated would be memorised within a few steps, after which the gradients shrink
    # into denormal floats, which the CPU processes many times slower (steps of seconds)
    train_set = chainer.datasets.get_cifar10()[0]
    n_steps, bs = QUICK["steps"] + 2, QUICK["batch"]
    pick = np.random.RandomState(0).permutation(len(train_set))[: n_steps * bs]
    xs = np.stack([train_set[i][0] for i in pick])
    ts = np.array([train_set[i][1] for i in pick], np.int32)
    setups = {}
    for label, p_last in (("stochastic depth, p_L = 0.5", 0.5), ("every block kept", 1.0)):
        np.random.seed(0)
        model = chainer.links.Classifier(
            counted(StochasticDepthResNet(n=QUICK["n"], p_last=p_last))
        )
        opt = chainer.optimizers.NesterovAG(lr=0.1, momentum=0.9)
        opt.setup(model)
        setups[label] = (model, opt)
        timings[label] = []
    with chainer.using_config("train", True):
        for step in range(n_steps):
            xb, tb = xs[step * bs : (step + 1) * bs], ts[step * bs : (step + 1) * bs]
            for label, (model, opt) in setups.items():
                ms, ran = timed_step(model, opt, xb, tb)
                if step >= 2:
                    timings[label].append((ms, ran))
else:
    full = nb.full_train(FULL_MODEL, DEVICE)

# %%
if timings:
    timings = {k: np.array(v) for k, v in timings.items()}
    L_blocks = 3 * QUICK["n"]
    sd, kept = timings.values()
    med_sd, med_kept = np.median(sd[:, 0]), np.median(kept[:, 0])
    expected = float(np.sum(StochasticDepthResNet(n=QUICK["n"]).survival))
    nb.show_md(
        nb.md_table(
            ["network", "median step (ms)", "quartiles (ms)", "blocks run per step (mean)"],
            [
                [
                    k,
                    f"{np.median(v[:, 0]):.0f}",
                    f"{np.percentile(v[:, 0], 25):.0f}–{np.percentile(v[:, 0], 75):.0f}",
                    f"{v[:, 1].mean():.1f} of {L_blocks}",
                ]
                for k, v in zip(timings, (sd, kept), strict=True)
            ],
        )
    )
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3.2), dpi=80)
    for (label, v), colour in zip(timings.items(), ("C0", "C1"), strict=True):
        ax1.plot(v[:, 0], marker="o", ms=3, color=colour, label=label)
        ax2.scatter(v[:, 1], v[:, 0], s=12, color=colour, label=label)
    ax1.set(xlabel="timed step", ylabel="step time (ms)", title="training steps, interleaved")
    ax2.set(
        xlabel="residual blocks run in the step",
        ylabel="step time (ms)",
        title=f"ResNet-{6 * QUICK['n'] + 2}, batch {QUICK['batch']}",
    )
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    plt.show()

    # A busy machine only ever adds time to a step, so the fastest steps are the best estimate
    # of each network's own cost: compare the fastest quarter of each.
    def fastest(v):
        """The steps at or below the 25th percentile of step time."""
        return v[v[:, 0] <= np.percentile(v[:, 0], 25)]

    fast_sd, fast_kept = fastest(sd), fastest(kept)
    t_ratio = fast_sd[:, 0].mean() / fast_kept[:, 0].mean()
    b_ratio = fast_sd[:, 1].mean() / L_blocks
    spread = (np.percentile(kept[:, 0], 75) - np.percentile(kept[:, 0], 25)) / med_kept
    print(
        f"Noise level: the step time of the same network varies between its quartiles by "
        f"{100 * spread:.0f}% of its median on this machine while it ran; a time ratio is "
        "trustworthy only when that spread is small (a quiet machine gives a few percent)."
    )
    print(
        f"Fastest quarter of the steps: with stochastic depth a step took {t_ratio:.2f} of "
        f"the time of the full network, while {b_ratio:.2f} of its blocks ran in those steps "
        f"(over all steps {sd[:, 1].mean() / L_blocks:.2f}; expected Σp_ℓ / L = "
        f"{expected / L_blocks:.2f}). If skipping is free the time ratio is a little above "
        "the block ratio, since the stem, the classifier and the update are paid in both."
    )

# %% [markdown]
# ## The full reproduction
#
# The "paper" column of the generated table is the authors' 5.25% test error for ResNet-110
# with stochastic depth, which their README describes as selected by the best validation
# error: they train on 45k images, validate on 5k and report the test error of the epoch
# that validated best. Ours is the last iteration's test accuracy after training on all 50k
# images, with no selection; a like-for-like comparison needs `--val-split 5000` and the
# test accuracy at the best-validation epoch. The 2016 Chainer code differs from the paper in
# ways that matter little for accuracy: stride on the second convolution, option-A
# sub-sampling shortcut, a survival schedule off by one block ($p = 1 - 0.5\,i/L$ for
# $i = 0..L-1$), plain momentum instead of Nesterov; ours follows the official Torch code
# in all four. Ours, read from `results/`:

# %%
run = nb.reproduction(FULL_MODEL)

# %% [markdown]
# The 1202-layer network (the abstract gives 4.91% error) is registered as `sd_resnet1202`
# with the same recipe.
#
# ## Why it works, and when it fails
#
# Each step trains an expected $\sum_\ell p_\ell$ of the $L$ blocks, about three quarters,
# so steps are cheaper and the gradient crosses fewer blocks on its way to the early
# layers. Like dropout, training many thinner networks that share weights acts as a
# regulariser, and the test network averages them by scaling each branch with $p_\ell$.
# The paper's Table 1 shows lower test error for both 110 and 1202 layers than the same
# network trained at constant depth.
#
# The saving needs a shortcut that makes "block removed" a sensible network, so it does not
# carry over to plain nets. On a GPU the saved time is smaller than the share of skipped
# blocks when steps are dominated by fixed costs (data loading, small kernels). And the
# regularisation is the wrong tool for small networks that under-fit: with few blocks,
# dropping any of them removes capacity the model needs.

# %% [markdown]
# ## What to take away
#
# * One coin per block per mini-batch; a dropped block is its shortcut, and its branch is
#   not computed at all (`blocks.stochastic_depth` returns `None`).
# * Survival falls linearly from 1 to $p_L = 0.5$; at test time each branch is scaled by
#   its $p_\ell$.
# * The time saving is real and measured above; it is a little smaller than the share of
#   skipped blocks because the rest of the step is unchanged.
# * No parameters are added: ResNet-110 with stochastic depth has ResNet-110's 1.7M.

# %% [markdown]
# ## Appendix: sources
#
# * Gate, linear decay with $p_L = 0.5$, test-time scaling, the average-pool shortcut and
#   the recipe (Nesterov momentum 0.9, weight decay $10^{-4}$, 500 epochs, lr drops at 250
#   and 375, 45k/5k split): the paper
#   ([arXiv 1603.09382](https://arxiv.org/abs/1603.09382)) and the authors' Torch code
#   ([yueatsprograms/Stochastic_Depth](https://github.com/yueatsprograms/Stochastic_Depth)).
# * 4.91% for 1202 layers: the paper's abstract.
# * 5.25% for ResNet-110 and how it was selected (best validation error, 45k/5k split): the
#   authors' README and `main.lua`; the 2016 Chainer results table (`IMPL_2016` in
#   `chainer_nets/results.py`) lists the same accuracy.
# * Initialisation: He-normal over the input fan and BN scales drawn uniformly from (0, 1),
#   as the authors' Torch code does (`ResidualDrop.lua`, cudnn.torch's BN reset).
# * Checked in this notebook: both gate equations, the keep rates against $p_\ell$, the
#   shortcut, the parameter counts and the step times.
# * Departures (also in the recipe): all 50k training images by default (`--val-split 5000`
#   gives the paper's split), per-channel normalisation, no convolution biases, and a
#   dropped block's parameters get no weight-decay or momentum step in that iteration.
