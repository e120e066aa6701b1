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
# # 18 · Residual Networks of Residual Networks (RoR)
#
# Zhang, Sun, Han, Yuan, Guo, Liu — *Residual Networks of Residual Networks: Multilevel
# Residual Networks*, arXiv [1608.02908](https://arxiv.org/abs/1608.02908), August 2016.
#
# ## The question
#
# A ResNet makes each *block* learn a residual with respect to an identity. The blocks are
# then simply stacked: a signal from the first stage reaches the classifier only through
# every later block, and the classifier's error reaches the first stage only back through
# them. If residual learning is easier than learning a mapping outright, why apply it at one
# scale only?
#
# ## The idea
#
# Add shortcuts at coarser levels on top of an existing residual network: one over each
# *stage* (the group of blocks at one resolution) and one over the *whole body*. Each stage
# then learns a residual of a residual, and the whole network a residual of those. The three
# levels (root, middle, final) give "RoR-3". Applied to a wide ResNet with stochastic depth on
# its blocks, RoR-3-WRN58-4+SD reports 3.77% CIFAR-10 error.

# %% tags=["parameters"]
# "quick": the experiment below on the CPU (what CI runs, with the lighter CI settings);
# "full": the paper's network and recipe (on a GPU: DEVICE = "@cupy:0").
MODE = "quick"
DEVICE = "@numpy"
FULL_MODEL = "ror3_wrn58_4_sd"  # the paper's best CIFAR-10 network
# The experiment: where the gradient reaching the stem comes from, for RoR-3-WRN-d-1 at these
# depths, on `repeats` batches of `batch` CIFAR-10 images, at initialisation.
QUICK = dict(depths=(16, 58, 112), batch=32, repeats=3)
CI = dict(depths=(16, 58), repeats=2)  # the tests skip the 112-layer net

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
from chainer_nets.models.ror import Projection, RoRBlock, RoRWideResNet
from chainer_nets.models.wide_resnet import WideResNet
from chainer_nets.registry import count_params, get_model_info

assert MODE in ("quick", "full"), MODE
QUICK = nb.quick_settings(QUICK, CI)

# %% [markdown]
# ## The equations, next to the code
#
# Let $\mathbf{x}_0$ be the stem's output and $G_s$ the chain of blocks of stage $s$. The
# **final** level is the blocks' own shortcuts: a pre-activation wide block computes
# $h(\mathbf{x}) + b_\ell\,\mathcal{F}_\ell(\mathbf{x})$, with $h$ the identity (or a 1×1
# projection in a stage's first block) and $b_\ell$ the stochastic-depth gate of "+SD". The
# **middle** level adds a shortcut $M_s$ over each stage, the **root** level one shortcut $R$
# over the whole body:
#
# $$\mathbf{x}_s = G_s(\mathbf{x}_{s-1}) + M_s(\mathbf{x}_{s-1}), \quad s = 1, 2, \qquad
#   \mathbf{x}_3 = G_3(\mathbf{x}_2) + M_3(\mathbf{x}_2) + R(\mathbf{x}_0),$$
#
# and the classifier (BN–ReLU, global average pooling, linear) reads $\mathbf{x}_3$. Every
# stage changes the width (16 → 64 in the first stage of WRN-58-4, then 128, 256) and two of
# them halve the resolution, so $M_s$ and $R$ cannot be identities: each is a 1×1 convolution
# with the stage's stride (4 for the root) followed by BN.
#
# The final level, a WRN block with a stochastic-depth gate on its branch (the gate is
# `chainer_nets.blocks.stochastic_depth`, explained in notebook 13):

# %%
nb.show_source(RoRBlock)

# %% [markdown]
# The middle- and root-level shortcut, and the forward pass, where the two equations above
# are the lines marked "middle level" and "root level":

# %%
nb.show_source(Projection)
nb.show_source(RoRWideResNet, "forward")

# %% [markdown]
# A check on a 16-layer, width-1 sibling (two blocks per stage, 16/32/64 filters) in test
# mode: rebuild the output from its pieces with the equations, measure how large each level's
# term is at the end of every stage (root-mean-square over the batch, random input, untrained
# weights), and count the additions in the computational graph: one per block (final level,
# 6), one per stage (middle, 3) and one root, 10 in all.

# %%
np.random.seed(0)
tiny = RoRWideResNet(depth=16, widen=1)
x = np.random.default_rng(0).standard_normal((2, 3, 32, 32)).astype(np.float32)


def rms(v) -> float:
    """Root-mean-square of an activation."""
    return float(np.sqrt(np.mean(chainer.as_array(v) ** 2)))


rows = []
with chainer.using_config("train", False), chainer.no_backprop_mode():
    x0 = h = tiny.conv1(x)
    for s in range(3):
        g = h
        for block in tiny.stages[s]:
            g = block(g)
        m = tiny.middle[s](h)
        r = tiny.root(x0) if s == 2 else None
        rows.append(
            [s + 1, "×".join(map(str, g.shape)), f"{rms(g):.3f}", f"{rms(m):.3f}"]
            + [f"{rms(r):.3f}" if r is not None else "—"]
        )
        h = g + m + (r if r is not None else 0)
    by_hand = tiny.head(h).array
    y = tiny(x).array
print("network output == head(G3 + M3 + R) rebuilt by hand:", np.allclose(y, by_hand, atol=1e-5))
assert np.allclose(y, by_hand, rtol=1e-5, atol=1e-5)
nb.show_md(
    nb.md_table(["stage s", "shape", "rms G_s (blocks)", "rms M_s (middle)", "rms R (root)"], rows)
)
with chainer.using_config("train", False):
    out = tiny(x)
seen, stack, adds = set(), [out.creator_node], 0
while stack:
    node = stack.pop()
    if node is None or id(node) in seen:
        continue
    seen.add(id(node))
    adds += node.label == "_ + _"
    stack.extend(v.creator_node for v in node.inputs)
print("additions in the graph:", adds, "= 6 final + 3 middle + 1 root")
assert adds == 3 * 2 + 3 + 1

# %% [markdown]
# ### "+SD": stochastic depth on the final level only
#
# Block $\ell$ of the $L = 3n$ blocks keeps its branch with probability
# $p_\ell = 1 - \frac{\ell}{L}(1 - p_L)$, $p_L = 0.5$; at test time the branch is scaled by
# $p_\ell$. The middle and root shortcuts are never dropped. Count how often each piece runs
# over 1,000 training passes of the tiny net (the tolerance is four standard errors of a
# frequency):

# %%
np.random.seed(1)
counts: dict[str, int] = {}


def counting(name: str, fn):
    """Wrap ``fn`` so that each call is counted under ``name``."""

    def wrapped(*args):
        counts[name] = counts.get(name, 0) + 1
        return fn(*args)

    return wrapped


survival: dict[str, float] = {}  # name -> p (1.0: never dropped)
for s, stage in enumerate(tiny.stages):
    for i, block in enumerate(stage):
        name = f"block {s + 1}.{i + 1}"
        survival[name] = block.survival
        block.residual = counting(name, block.residual)
    survival[f"middle {s + 1}"] = 1.0
    tiny.middle[s].forward = counting(f"middle {s + 1}", tiny.middle[s].forward)
survival["root"] = 1.0
tiny.root.forward = counting("root", tiny.root.forward)
trials = 1000
xs = np.random.rand(1, 3, 8, 8).astype(np.float32)
with chainer.using_config("train", True), chainer.no_backprop_mode():
    for _ in range(trials):
        tiny(xs)
assert [v for k, v in survival.items() if k.startswith("block")] == tiny.survival
table = []
for name, q in survival.items():
    c = counts.get(name, 0)
    sd = np.sqrt(q * (1 - q) / trials)
    assert abs(c / trials - q) <= 4 * sd + 1e-9, (name, c, q)
    table.append([name, f"{q:.3f}", f"{c / trials:.3f}"])
nb.show_md(nb.md_table(["piece", "p (1 = never dropped)", "ran in fraction of passes"], table))

# %% [markdown]
# ## The block
#
# RoR is not a new block but shortcuts *around* groups of blocks. The drawing shows one
# stage ($G_s$, its blocks drawn as one box each) with its middle-level shortcut; the last
# stage's sum also receives the root shortcut from the stem's output.

# %%
nb.draw_block(
    "x_{s-1} -> wide block + SD gate (projection shortcut)#1 -> wide block + SD gate#2"
    " -> … (n blocks) -> +#1 -> x_s;"
    "x_{s-1} -[middle level]-> 1×1 conv, stride#1 -> BN#1 -> +#1;"
    "x₀ (stem, last stage only) -[root level]-> 1×1 conv, stride 4#2 -> BN#2 -> +#1",
    title="RoR-3: one stage with its middle shortcut (and the root, in stage 3)",
)

# %% [markdown]
# ## The network and its parameter count
#
# The body is the pre-activation WRN-58-4 (notebook 15): a 3×3 stem with 16 filters, three
# stages of $n = (58 - 4)/6 = 9$ wide blocks with 64/128/256 filters, final BN–ReLU, global
# average pooling, linear. RoR adds the three middle projections and the root projection.

# %%
net = get_model_info(FULL_MODEL).build()
_ = nb.shape_table(net)

# %% [markdown]
# We could not read the paper's parameter table, so the registry holds no paper figure; the
# reference is the 2016 table's 13.6M. Independently, the count must be WRN-58-4's plus the
# four projections' weights and BN scales and shifts:

# %%
n_ror = count_params(net)
n_wrn = count_params(WideResNet(58, 4))
extra_w = 16 * 64 + 64 * 128 + 128 * 256 + 16 * 256
extra_bn = 2 * (64 + 128 + 256 + 256)
print(
    f"RoR-3-WRN58-4: {n_ror:,} = WRN-58-4 {n_wrn:,} + projections {extra_w:,} "
    f"+ their BN {extra_bn:,}; rounded {n_ror / 1e6:.1f}M (2016 table: 13.6M)"
)
assert n_ror - n_wrn == extra_w + extra_bn
assert round(n_ror / 1e6, 1) == 13.6  # the 2016 table's figure, compared by hand

# %% [markdown]
# The registry keeps no reference figure for this network (the paper's could not be read, and
# the 2016 table's is compared by hand above), so the standard check has nothing to compare:

# %%
checks = nb.param_check(FULL_MODEL, source="2016 table")

# %% [markdown]
# ## Recipe and departures

# %%
_ = nb.show_recipe("ror")

# %% [markdown]
# ## The experiment
#
# **Where does the gradient that reaches the first stage come from?** The motivation of the
# extra levels is a shorter route between the classifier and the early layers. The root
# shortcut is such a route: from the last sum straight to the stem's output, through one
# 1×1 convolution. We measure what it carries. For RoR-3-WRN-$d$-1 ($k = 1$ to keep it cheap,
# stochastic depth off so that every run is the same network) at three depths, at
# initialisation, on a batch of CIFAR-10 images, we split the gradient of the loss at the
# stem's output $\mathbf{x}_0$ into its three routes,
#
# $$\frac{\partial L}{\partial \mathbf{x}_0} =
#   \underbrace{J_{G_1}^\top \mathbf{g}_1}_{\text{stage-1 blocks}} +
#   \underbrace{J_{M_1}^\top \mathbf{g}_1}_{\text{middle shortcut}} +
#   \underbrace{J_{R}^\top \mathbf{g}_3}_{\text{root shortcut}},
#   \qquad \mathbf{g}_s = \partial L / \partial \mathbf{x}_s ,$$
#
# by giving each route its own copy of $\mathbf{x}_0$, and compare the total with the same
# weights when the root shortcut, or both extra levels, are left out of the forward pass.
# The tests skip the 112-layer network and use two batches instead of three.

# %%
data = cdata.load_cifar10()
mean, std = cdata.channel_stats(data.train_x)
B = QUICK["batch"]
# a fixed random subset (the stored training set is ordered by class)
raw_x, labels = cdata.take_subset(data.train_x, data.train_y, B * QUICK["repeats"])
images = ((raw_x - mean[:, None, None]) / std[:, None, None]).astype(np.float32)


def routes(net, x, middle: bool = True, root: bool = True):
    """RoR forward with one copy of the stem output per route; returns (loss, copies)."""
    x0 = net.conv1(x)
    via_blocks, via_middle, via_root = (F.identity(x0) for _ in range(3))
    h = via_blocks
    for s, (blocks, mid) in enumerate(zip(net.stages, net.middle, strict=True)):
        g = h
        for block in blocks:
            g = block(g)
        if middle:
            g = g + mid(via_middle if s == 0 else h)
        if root and s == len(net.stages) - 1:
            g = g + net.root(via_root)
        h = g
    return net.head(h), (via_blocks, via_middle, via_root)


def norm(a) -> float:
    """L2 norm (0 for a missing gradient)."""
    return 0.0 if a is None else float(np.sqrt((a.astype(np.float64) ** 2).sum()))


results = {}
if MODE == "quick":
    for depth in QUICK["depths"]:
        np.random.seed(0)
        net = RoRWideResNet(depth, 1, p_last=1.0)
        for r in range(QUICK["repeats"]):
            xb, yb = images[r * B : (r + 1) * B], labels[r * B : (r + 1) * B]
            row = {}
            for variant, m, rt in (
                ("RoR-3", True, True),
                ("no root", True, False),
                ("WRN", False, False),
            ):
                with chainer.using_config("train", True):
                    logits, copies = routes(net, xb, m, rt)
                    loss = F.softmax_cross_entropy(logits, yb)
                net.cleargrads()
                loss.backward(retain_grad=True)
                parts = [c.grad for c in copies]
                total = sum(p for p in parts if p is not None)
                row[variant] = norm(total)
                if variant == "RoR-3":
                    row["blocks"], row["middle"], row["root"] = (norm(p) for p in parts)
                    stem_grad = net.conv1.W.grad.copy()
                    with chainer.using_config("train", True):  # the model's own forward pass
                        own = F.softmax_cross_entropy(net(xb), yb)
                    net.cleargrads()
                    own.backward()
                    assert np.allclose(float(own.array), float(loss.array), rtol=1e-5)
                    assert np.allclose(net.conv1.W.grad, stem_grad, rtol=1e-4, atol=1e-7)
            results.setdefault(depth, []).append(row)
    keys = ["RoR-3", "blocks", "middle", "root", "no root", "WRN"]
    mean_rows = {d: {k: np.mean([r[k] for r in rs]) for k in keys} for d, rs in results.items()}
    nb.show_md(
        nb.md_table(
            [
                "depth",
                "‖∂L/∂x₀‖, RoR-3",
                "via stage-1 blocks",
                "via middle shortcut",
                "via root shortcut",
                "root share of the total",
                "‖∂L/∂x₀‖ without root",
                "without root and middle (WRN)",
            ],
            [
                [d]
                + [f"{v[k]:.3g}" for k in keys[:4]]
                + [f"{100 * v['root'] / v['RoR-3']:.1f}%"]
                + [f"{v[k]:.3g}" for k in keys[4:]]
                for d, v in mean_rows.items()
            ],
        )
    )
    fig, ax = plt.subplots(figsize=(6.5, 3.3), dpi=80)
    depths = list(mean_rows)
    for k, marker in (("blocks", "o"), ("middle", "s"), ("root", "^")):
        ax.semilogy(depths, [mean_rows[d][k] for d in depths], marker=marker, label=f"via {k}")
    ax.semilogy(
        depths,
        [mean_rows[d]["WRN"] for d in depths],
        "k--",
        label="total, plain WRN (no extra levels)",
    )
    ax.set(xlabel="depth of RoR-3-WRN-d-1", ylabel="‖∂L/∂x₀‖ (log scale)")
    ax.set_title("gradient at the stem's output, by route, at initialisation", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    plt.show()
    spread = max(
        np.std([r["RoR-3"] for r in rs], ddof=1) / np.mean([r["RoR-3"] for r in rs])
        for rs in results.values()
    )
    print(
        f"Noise level: over {QUICK['repeats']} batches of {B} images the total gradient norm "
        f"varies by up to {100 * spread:.0f}% of its mean, less than the gaps between routes "
        "in the table."
    )
    deep = mean_rows[depths[-1]]
    print(
        f"Look at the root share: at {depths[-1]} layers the root route carries "
        f"{100 * deep['root'] / deep['RoR-3']:.1f}% of the gradient at the stem, and removing "
        f"the extra levels changes the total from {deep['RoR-3']:.3g} to {deep['WRN']:.3g}: in a "
        "pre-activation WRN the identity shortcuts already carry the gradient to stage 1."
    )
else:
    full = nb.full_train(FULL_MODEL, DEVICE)

# %% [markdown]
# ## The full reproduction
#
# The paper's abstract reports 3.77% CIFAR-10 error for RoR-3-WRN58-4+SD (96.23% accuracy).
# The 2016 Chainer implementation never published a number for it (its README says "soon";
# its default network is RoR-3-WRN40-2+SD). Ours is the test accuracy after the last epoch of
# one run, generated from `results/`:

# %%
_ = nb.reproduction(FULL_MODEL)

# %% [markdown]
# ## Why it works, and when it fails
#
# The experiment tempers the simplest story. In a pre-activation wide ResNet every block's
# identity shortcut already passes the gradient to the first stage undiminished (it even
# grows toward the input), so at initialisation the root route adds a small share and the
# total barely moves. What the extra levels change is the function the network can express
# cheaply: the classifier's input now holds a direct linear projection of each stage's input
# (the root one of the stem's features), so each stage only has to learn what its projection
# misses. The paper argues that this residual-of-residual problem is easier to optimise; the
# experiment shows that whatever it gains, it is not a larger gradient at the start. The cost
# is small: 1×1 convolutions that add 0.3% parameters.
#
# Where the blocks' own shortcuts do not carry the signal cleanly (the original ResNet with a
# ReLU after each sum), a shortcut over a whole stage is worth more. With stochastic depth
# the three levels keep every dropped-block network connected end to end. And the levels
# cannot be identities here, since every stage changes width: a projection shortcut is a
# learned layer, not a free path.

# %% [markdown]
# ## What to take away
#
# * RoR adds two levels of shortcuts around an existing residual network: one per stage
#   (middle) and one over the body (root); the blocks keep their own (final).
# * With width changes at every stage the extra shortcuts are 1×1 projections with BN, a
#   0.3% increase in parameters for WRN-58-4.
# * Stochastic depth drops only final-level branches; the middle and root paths always run.
# * At initialisation the root route carries little of the gradient in a pre-activation
#   network (the experiment above): the extra levels matter for what the network learns, not
#   for rescuing a vanishing gradient.

# %% [markdown]
# ## Appendix: sources
#
# * The three levels, RoR on ResNets, pre-activation ResNets and WRN, and 3.77% for
#   RoR-3-WRN58-4+SD on CIFAR-10: the paper's abstract,
#   [arXiv 1608.02908](https://arxiv.org/abs/1608.02908).
# * The 2016 Chainer implementation (pre-activation BN–ReLU–1×1 conv projections, a wider
#   stem and a 1×1-conv classifier after pooling, which we do not follow; no published
#   result): [nutszebra/residual_networks_of_residual_networks](https://github.com/nutszebra/residual_networks_of_residual_networks).
# * 1×1 convolution + BN projections ("type B"), as fb.resnet.torch builds them
#   ([models/resnet.lua](https://github.com/facebook/fb.resnet.torch/blob/master/models/resnet.lua)).
# * Parameter figure 13.6M: the 2016 table; recomputed above.
# * Not checked against the paper's text: the projection type, the root stride 4 from the
#   stem, that stochastic depth leaves the middle and root shortcuts alone, the paper's
#   parameter count, and the training recipe (listed as departures of the recipe).
