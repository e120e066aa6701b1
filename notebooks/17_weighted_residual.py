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
# # 17 · Weighted Residuals for Very Deep Networks (WResNet)
#
# Shen, Zeng — *Weighted Residuals for Very Deep Networks*, arXiv
# [1605.08831](https://arxiv.org/abs/1605.08831), May 2016.
#
# ## The question
#
# The original residual block ends with a ReLU *after* the addition, and every block adds
# its branch at full strength from the first step. Past a few hundred layers the original
# ResNet stops improving (notebook 08: the 1202-layer net tests worse than the 110-layer
# one). The paper asks whether that is a limit of depth or of these two details, and whether
# a residual network of more than a thousand layers can still gain accuracy.
#
# ## The idea
#
# Move the last ReLU into the branch and leave the sum untouched, so the shortcut carries
# its signal through every block unchanged. Then multiply each branch by a learned scalar
# $\lambda_l$ that starts at **zero** and may turn negative: at the first step every block is
# an identity, however deep the stack, and each block's branch comes in only as fast as its
# $\lambda_l$ is learned. The $\lambda_l$ get a learning rate of their own, a hundred times
# smaller than the network's, and are clipped back into $[-1, 1]$ after each step
# (projected gradient descent).

# %% tags=["parameters"]
# "quick": the experiment below on the CPU (what CI runs, with the lighter CI settings);
# "full": the paper's network and recipe (on a GPU: DEVICE = "@cupy:0").
MODE = "quick"
DEVICE = "@numpy"
FULL_MODEL = "wresnet_d1192"  # the network of the paper's headline CIFAR-10 result
# steps: first training steps watched (recipe's batch); n_deep: blocks per stage of the deep
# nets whose activations are traced (3 * n_deep blocks); batch: images per trace.
QUICK = dict(steps=12, batch=32, n_deep=50, repeats=3)
CI = dict(steps=8, n_deep=18, repeats=2)  # the tests trace a 110-layer stack instead of 302

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
from chainer_nets.models.resnet import ResNetCifar
from chainer_nets.models.weighted_residual import (
    LAMBDA_BOUND,
    LAMBDA_LR,
    WeightedResidualBlock,
    WeightedResNet,
)
from chainer_nets.recipes import get_recipe

assert MODE in ("quick", "full"), MODE
QUICK = nb.quick_settings(QUICK, CI)

# %% [markdown]
# ## The equations, next to the code
#
# ### The weighted residual block
#
# With $\mathcal{F}$ two 3×3 convolutions, each followed by batch normalization and a ReLU,
#
# $$\mathcal{F}(\mathbf{x}) = \mathrm{ReLU}\big(\mathrm{BN}_2(W_2 * \mathrm{ReLU}(\mathrm{BN}_1(W_1 * \mathbf{x})))\big),
#   \qquad \mathbf{x}_{l+1} = \mathbf{x}_l + \lambda_l\,\mathcal{F}(\mathbf{x}_l),
#   \qquad \lambda_l \in [-1, 1],\ \lambda_l = 0 \text{ at the start}.$$
#
# Where a stage begins (stride 2, twice the channels) the shortcut sub-samples and pads with
# zero channels, as in the CIFAR ResNet. `residual` is $\mathcal{F}$, `weighted_residual` is
# $\lambda_l\mathcal{F}$ and `forward` adds the shortcut (with the stochastic-depth gate of the
# "-d" variant, explained in notebook 13):

# %%
nb.show_source(WeightedResidualBlock)

# %% [markdown]
# A check that does not trust `forward`: rebuild $\mathcal{F}$ from the block's weights with
# Chainer's plain functions (batch normalization with non-trivial running statistics, as at
# test time). With $\lambda = 0$ the block must return its input exactly; with
# $\lambda = -0.7$ it must return $\mathbf{x} - 0.7\,\mathcal{F}(\mathbf{x})$, which can fall
# below the input: the sign is learned.

# %%
rng = np.random.default_rng(0)
block = WeightedResidualBlock(8, 8)
for b in (block.bn1, block.bn2):
    b.avg_mean[...] = rng.standard_normal(8).astype(np.float32)
    b.avg_var[...] = rng.uniform(0.5, 2.0, 8).astype(np.float32)
x = rng.standard_normal((2, 8, 6, 6)).astype(np.float32)


def bn_test(h, link):
    """Batch normalization with the running statistics, written out."""
    s = (1, -1, 1, 1)
    scale = link.gamma.array.reshape(s) / np.sqrt(link.avg_var.reshape(s) + link.eps)
    return (h - link.avg_mean.reshape(s)) * scale + link.beta.array.reshape(s)


h = np.maximum(bn_test(F.convolution_2d(x, block.conv1.W, pad=1).array, block.bn1), 0)
f_by_hand = np.maximum(bn_test(F.convolution_2d(h, block.conv2.W, pad=1).array, block.bn2), 0)
with chainer.using_config("train", False):
    y0 = block(x).array
    block.lam.array[...] = -0.7
    y1 = block(x).array
print("lambda = 0:    block(x) == x exactly:", np.array_equal(y0, x))
print(
    "lambda = -0.7: max |block(x) - (x - 0.7 F(x))| =", float(abs(y1 - (x - 0.7 * f_by_hand)).max())
)
print("share of outputs below the input:", float((y1 < x - 1e-6).mean()))
assert np.array_equal(y0, x) and np.allclose(y1, x - 0.7 * f_by_hand, atol=1e-5)

# %% [markdown]
# ### Projected SGD with λ's own learning rate
#
# The trainer calls the model's `configure_optimizer` after `optimizer.setup`. Every
# $\lambda_l$ gets a rate that is `LAMBDA_LR / base` times the network's current rate (base =
# the recipe's starting rate 0.1, so $10^{-3}$ while the network uses 0.1, and divided at the
# same milestones), and a hook after the update projects it back into $[-1, 1]$:
#
# $$\lambda_l \leftarrow \Pi_{[-1,1]}\big(\lambda_l - \eta_\lambda\, \partial L/\partial\lambda_l\big),
#   \qquad \eta_\lambda = \tfrac{1}{100}\,\eta .$$

# %%
nb.show_source(WeightedResNet, "configure_optimizer")

# %% [markdown]
# A check of both on a 10-layer sibling: after one plain-SGD step (momentum 0, so the step is
# the rate times the gradient) the convolution moved by $\eta$ times its gradient and
# $\lambda$ by $\eta_\lambda$ times its gradient; a $\lambda$ pushed beyond 1 is clipped to 1.

# %%
net = WeightedResNet(n=1, widths=(4, 4, 4))
opt = chainer.optimizers.MomentumSGD(lr=0.1, momentum=0.0)
opt.setup(net)
net.configure_optimizer(opt, get_recipe("weighted_residual"))
opt.lr = 0.05  # as the schedule would set it, after the setup
for lam in net.residual_weights():
    lam.array[...] = 0.3
xb = rng.standard_normal((4, 3, 8, 8)).astype(np.float32)
with chainer.using_config("train", True):
    loss = F.softmax_cross_entropy(net(xb), np.arange(4, dtype=np.int32))
net.cleargrads()
loss.backward()
lam, w = net.blocks[1].lam, net.blocks[1].conv1.W
lam0, lam_grad, w0, w_grad = lam.array.copy(), lam.grad.copy(), w.array.copy(), w.grad.copy()
opt.update()
lam_rate = float(-(lam.array - lam0)[0] / lam_grad[0])
w_rate = float(-((w.array - w0) / w_grad).flat[np.argmax(abs(w_grad))])
print(f"network rate {opt.lr}: convolution moved by {w_rate:.4f} x its gradient")
print(f"lambda moved by {lam_rate:.6f} x its gradient = network rate x {lam_rate / opt.lr:.4f}")
assert np.isclose(w_rate, opt.lr, rtol=1e-3)
assert np.isclose(lam_rate / opt.lr, LAMBDA_LR / 0.1, rtol=1e-3)
lam.array[...] = LAMBDA_BOUND + 0.4  # as if a step had overshot
net.cleargrads()
with chainer.using_config("train", True):
    F.sum(net(xb)).backward()
opt.update()
print("a lambda at 1.4 before the step is", float(lam.array[0]), "after it (projected)")
assert abs(float(lam.array[0])) <= LAMBDA_BOUND

# %% [markdown]
# ## The block
#
# Compared with notebook 08's block, the last ReLU sits inside the branch, a scale
# $\lambda_l$ (starting at 0) follows it, and nothing follows the sum.

# %%
nb.draw_block(
    "x -> conv 3×3, W₁#1 -> BN#1 -> ReLU#1 -> conv 3×3, W₂#2 -> BN#2 -> ReLU#2"
    " -> scale by λ (starts at 0)#3 -> + -> y;"
    "x -[identity (sub-sample + zero channels where the shape changes)]-> +",
    title="weighted residual block: y = x + λ·F(x), no ReLU after the sum",
)

# %% [markdown]
# ## The network and its parameter count
#
# The CIFAR ResNet layout: a 3×3 convolution with 16 filters (BN, ReLU), three stages of
# $n$ blocks with 16, 32 and 64 filters on 32×32, 16×16 and 8×8 maps, global average pooling
# and a linear layer. The paper's deepest network has 1192 layers; counted as the 2016
# Chainer code counts depth, $6n + 4$, that is $n = 198$: 594 blocks. "-d" adds stochastic
# depth, block $l$ of $L = 594$ kept in training with probability $1 - \frac{l}{L}\cdot 0.5$.
# The shapes, for a sibling with $n = 3$ (the same classes; 594 rows would fold into the
# same three):

# %%
_ = nb.shape_table(WeightedResNet(n=3, p_last=0.5))

# %% [markdown]
# The only parameter figure we have is the 2016 table's, 19.1M, which counts convolution and
# linear weights only; the 594 $\lambda$s and the BN scales and shifts are not in it.

# %%
checks = nb.param_check(FULL_MODEL, source="2016 table")
assert all(c["agrees"] for c in checks), checks

# %% [markdown]
# ## Recipe and departures

# %%
_ = nb.show_recipe("weighted_residual")

# %% [markdown]
# ## The experiment
#
# Two consequences of $\lambda_l = 0$ at the start that a reader can check in seconds:
#
# 1. **No block learns until its λ moves.** With $\lambda_l = 0$ the loss does not depend on
#    the branch's weights, so their gradient is *exactly* zero (not small), while
#    $\partial L/\partial\lambda_l = \langle \partial L/\partial\mathbf{x}_{l+1},
#    \mathcal{F}(\mathbf{x}_l)\rangle$ is not. After one step $\lambda_l \neq 0$ and the branch's
#    gradient is $\lambda_l$ times what it would be at full strength. We train a 20-layer
#    WResNet (no stochastic depth, so that nothing else zeroes a gradient) for a few steps with
#    the recipe's optimizer, rates and batch size, and record $|\lambda|$ and the branch
#    gradients. (The loss of these first steps, each on a new batch, is only context.)
# 2. **The signal does not grow with depth.** We pass one batch through deep untrained stacks
#    (batch normalization with batch statistics, as in training) and record the variance of
#    every block's output: the weighted network as initialised ($\lambda = 0$), the same
#    network with every $\lambda = 1$ (the branch added at full strength, no ReLU after the
#    sum), and the original post-activation ResNet of notebook 08 at the same depth.
#
# The reader's run traces 302-layer stacks ($n = 50$); the tests trace 110 layers.

# %%
recipe = get_recipe("weighted_residual")
data = cdata.load_cifar10()
mean, std = cdata.channel_stats(data.train_x)
# a fixed random subset (the stored training set is ordered by class)
B = recipe.batch_size  # the recipe's mini-batch (128) for the training steps
raw_x, train_y = cdata.take_subset(data.train_x, data.train_y, B * QUICK["steps"])
train_x = ((raw_x - mean[:, None, None]) / std[:, None, None]).astype(np.float32)


def branch_grad_norm(block) -> float:
    """L2 norm of the gradient of every parameter of a block's branch (lambda excluded)."""
    grads = [p.grad for name, p in block.namedparams() if name != "/lam"]
    return float(np.sqrt(sum(float((g.astype(np.float64) ** 2).sum()) for g in grads)))


np.random.seed(0)
net = WeightedResNet(n=3)  # 20 layers, p_last = 1: no block is ever dropped
opt = chainer.optimizers.MomentumSGD(lr=recipe.lr, momentum=recipe.momentum)
opt.setup(net)
opt.add_hook(chainer.optimizer_hooks.WeightDecay(recipe.weight_decay))
net.configure_optimizer(opt, recipe)
steps = []
if MODE == "quick":
    for step in range(QUICK["steps"]):
        xb, yb = train_x[step * B : (step + 1) * B], train_y[step * B : (step + 1) * B]
        with chainer.using_config("train", True):
            loss = F.softmax_cross_entropy(net(xb), yb)
        net.cleargrads()
        loss.backward()
        lams = np.array([float(b.lam.array[0]) for b in net.blocks])
        grads = np.array([branch_grad_norm(b) for b in net.blocks])
        lam_grads = np.array([float(b.lam.grad[0]) for b in net.blocks])
        steps.append((step, float(loss.array), abs(lams).max(), abs(lam_grads).max(), grads))
        opt.update()
    nb.show_md(
        nb.md_table(
            [
                "step",
                "loss",
                "max |λ|",
                "max |∂L/∂λ|",
                "branch gradients exactly 0",
                "max branch ‖∇‖",
            ],
            [
                [
                    s,
                    f"{lo:.3f}",
                    f"{la:.2e}",
                    f"{lg:.2e}",
                    f"{int((g == 0).sum())} of {len(g)}",
                    f"{g.max():.2e}",
                ]
                for s, lo, la, lg, g in steps
            ],
        )
    )
    first = steps[0][4]
    assert (first == 0).all() and steps[0][3] > 0, "at lambda = 0 only lambda has a gradient"
    assert (steps[1][4] > 0).all(), "once lambda moved, every branch has a gradient"
else:
    full = nb.full_train(FULL_MODEL, DEVICE)

# %%
if steps:
    fig, ax = plt.subplots(figsize=(6.5, 3.2), dpi=80)
    s = [st[0] for st in steps]
    ax.semilogy(s[1:], [st[2] for st in steps[1:]], marker="o", label="max |λ| over the 9 blocks")
    ax.semilogy(
        s[1:], [st[4].max() for st in steps[1:]], marker="s", label="max branch gradient norm"
    )
    ax.semilogy(
        s[1:], [st[4].min() for st in steps[1:]], marker="^", label="min branch gradient norm"
    )
    ax.set(xlabel="training step (step 0: λ = 0, every branch gradient exactly 0, not drawn)")
    ax.set_ylabel("value (log scale)")
    ax.set_title("WResNet-20: branches start learning only as λ moves away from 0", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    plt.show()


# %%
class VarianceHook(chainer.LinkHook):
    """Records the variance of every residual block's output during one forward pass."""

    name = "VarianceHook"

    def __init__(self, blocks) -> None:
        self.ids, self.var = {id(b) for b in blocks}, []

    def forward_postprocess(self, args) -> None:
        """After a block: append the variance of its output."""
        if id(args.link) in self.ids:
            self.var.append(float(args.out.array.astype(np.float64).var()))


def block_variances(net, xb) -> list[float]:
    """Variance of each block's output for one batch, batch statistics in BN (training mode)."""
    hook = VarianceHook(net.blocks)
    with chainer.using_config("train", True), chainer.no_backprop_mode(), hook:
        net(xb)
    return hook.var


curves = {}
if MODE == "quick":
    n = QUICK["n_deep"]
    np.random.seed(1)
    weighted, resnet = WeightedResNet(n=n), ResNetCifar(n=n)
    for r in range(QUICK["repeats"]):
        xb = train_x[r * QUICK["batch"] : (r + 1) * QUICK["batch"]]
        for lam in weighted.residual_weights():
            lam.array[...] = 0.0
        curves.setdefault("weighted, λ = 0 (as initialised)", []).append(
            block_variances(weighted, xb)
        )
        for lam in weighted.residual_weights():
            lam.array[...] = 1.0
        curves.setdefault("weighted, every λ = 1", []).append(block_variances(weighted, xb))
        curves.setdefault("original ResNet (ReLU after the sum)", []).append(
            block_variances(resnet, xb)
        )
    fig, ax = plt.subplots(figsize=(6.5, 3.4), dpi=80)
    for label, runs in curves.items():
        ax.semilogy(np.arange(1, 3 * n + 1), np.mean(runs, axis=0), label=label)
    for k in (n, 2 * n):
        ax.axvline(k + 0.5, color="grey", lw=0.6, ls=":")
    ax.set(
        xlabel=f"block (3 stages of {n}; dotted: stage boundaries)",
        ylabel="variance of the block's output",
    )
    ax.set_title(
        f"untrained {6 * n + 2}-layer stacks, one batch of {QUICK['batch']} CIFAR-10 images",
        fontsize=10,
    )
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    plt.show()
    rows = []
    for label, runs in curves.items():
        last = np.array(runs)[:, -1]
        rows.append(
            [
                label,
                f"{np.mean(runs, axis=0)[0]:.3f}",
                f"{last.mean():.3f} ± {last.std(ddof=1):.3f}",
            ]
        )
    nb.show_md(
        nb.md_table(
            ["network", "variance after block 1", f"after block {3 * n} (± spread over batches)"],
            rows,
        )
    )
    spread = max(
        np.array(r)[:, -1].std(ddof=1) / np.array(r)[:, -1].mean() for r in curves.values()
    )
    print(
        f"Noise level: over {QUICK['repeats']} batches of {QUICK['batch']} images the last "
        f"block's variance varies by at most {100 * spread:.0f}% of its mean, far below the "
        "factors between the curves."
    )
    print(
        "Look at the slopes: the weighted network starts flat (every block an identity, the "
        "variance changes only where a stage's zero channels dilute it), while adding the "
        "branches at full strength makes the variance grow block after block."
    )

# %% [markdown]
# ## The full reproduction
#
# The paper reports 95.3% CIFAR-10 accuracy for the 1192-layer WResNet-d (and, from a
# third-party summary of its text, 94.9% without the drop regularisation). The 2016 Chainer
# implementation never reported a result. Ours is the test accuracy after the last epoch of
# one run, generated from `results/`:

# %%
run = nb.reproduction(FULL_MODEL)

# %% [markdown]
# ## Why it works, and when it fails
#
# With $\lambda_l = 0$ the network starts as its stem and classifier: a shallow model that
# trains at once, while the 594 blocks wait. $\partial L/\partial\lambda_l$ measures how
# well block $l$'s current features agree with the direction the loss wants; blocks whose
# features help get a $\lambda$ quickly, useless ones stay near zero. Depth is thus added
# gradually, and without a ReLU after the sum the shortcut carries $\mathbf{x}$ unchanged
# through all of them, so neither the forward signal nor the gradient is rescaled block
# after block. With $\lambda = 1$ the stack behaves like a plain sum of many non-negative
# branches (each ends in a ReLU), and its variance grows steadily, which is what the curves
# show.
#
# Limits. With all $\lambda_l = 0$ the branch weights cannot learn before the $\lambda$s move,
# and the $\lambda$s move with a rate of $10^{-3}$: early training is slow, and a branch
# whose features are useless at initialisation may never be switched on. The 1192-layer
# network still gains little over much shallower ones on CIFAR-10 (the paper's margin over a
# 110-layer ResNet is about 1.7 points, with 11 times the parameters), and a thousand
# sequential blocks are slow to run.

# %% [markdown]
# ## What to take away
#
# * A weighted residual block is $\mathbf{x} + \lambda_l\,\mathcal{F}(\mathbf{x})$ with the
#   last ReLU inside $\mathcal{F}$ and nothing after the sum.
# * $\lambda_l = 0$ at the start makes any depth an identity at step 0; the branch gradients
#   are exactly zero until $\lambda$ moves (the table above).
# * $\lambda$ is trained with a rate a hundred times smaller than the network's and kept in
#   $[-1, 1]$; its sign is free, so a block may subtract.
# * Without the weights the signal of a deep stack grows block after block; with them it
#   starts flat.

# %% [markdown]
# ## Appendix: sources
#
# * The block, $\lambda$ initialised to 0 and kept in $[-1, 1]$ by projected SGD, the removed
#   ReLU, and 95.3% for the 1192-layer net: the paper's abstract
#   ([arXiv 1605.08831](https://arxiv.org/abs/1605.08831)); one scalar $\lambda$ per block and
#   94.9% without drop regularisation are corroborated only by a third-party summary of the
#   full text.
# * Branch order Conv-BN-ReLU-Conv-BN-ReLU, $\lambda$'s starting rate 0.001, stochastic depth
#   from 1 to 0.5, the 164-epoch schedule, and the depth count $6n+4$: the 2016 Chainer code,
#   [nutszebra/weighted_residual_net](https://github.com/nutszebra/weighted_residual_net).
#   Its optimizer is written to divide $\lambda$'s rate at the network's milestones (as
#   written it fails at the first one); we divide it there. It did not project $\lambda$; we
#   do (the abstract's projected SGD).
# * Parameter figure 19.1M (weights only): the 2016 table; recomputed above.
# * Not checked against the paper's text: $\lambda$'s learning rate, the exact meaning of
#   "-d", the schedule, and whether the paper prints a parameter count.
