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
# # 19 · Densely Connected Convolutional Networks (DenseNet)
#
# Huang, Liu, van der Maaten, Weinberger — *Densely Connected Convolutional Networks*,
# arXiv [1608.06993](https://arxiv.org/abs/1608.06993), August 2016.
#
# ## The question
#
# A residual network adds each block's output to its input, so the features of early
# layers reach late ones only mixed into a running sum. Stochastic depth (notebook 13)
# showed that many blocks of a ResNet can be dropped at random with little harm: much of
# the network recomputes what is already there. Can a network keep every feature it has
# computed, so that later layers *reuse* them instead of relearning them, and get by with
# far fewer parameters?
#
# ## The idea
#
# Connect every layer to every later layer of the same block, by **concatenation** rather
# than addition. Layer $\ell$ receives the feature maps of all earlier layers and adds only
# $k$ new ones (the growth rate, e.g. $k=12$), so each layer is narrow and cheap while the
# block's collective state grows linearly. Between blocks, transition layers halve the
# resolution and (in DenseNet-C) the number of maps; 1×1 bottlenecks (DenseNet-B) keep the
# 3×3 convolutions small. DenseNet-BC with 0.8M parameters matches a 10M-parameter
# pre-activation ResNet-1001 on CIFAR-10. The price is memory: concatenating naively
# stores a fresh copy of the growing input at every layer.

# %% tags=["parameters"]
# MODE "full" runs the paper's recipe (with DEVICE = "@cupy:0")
MODE = "quick"
DEVICE = "@numpy"
FULL_MODEL = "densenet40_k12"  # the variant the 2016 Chainer code trained
# the experiment: two small networks trained alike, and the memory sweep's largest depth
QUICK = dict(train_subset=1024, test_subset=500, epochs=2, batch_size=32, lr=0.05, mem_n=16)
CI = dict(train_subset=512, test_subset=300, mem_n=8)  # lighter when the tests run it

# %%
import json
import sys
import tracemalloc
from pathlib import Path

try:
    import chainer_nets
except ImportError:  # running from notebooks/ without installing the package
    sys.path.insert(0, "..")
    import chainer_nets

import chainer
import chainer.functions as F
import matplotlib.pyplot as plt
import numpy as np

from chainer_nets import cpu_fast
from chainer_nets import notebook as nb
from chainer_nets.models import densenet
from chainer_nets.models.resnet import ResNetCifar
from chainer_nets.registry import count_params, get_model_info

assert MODE in ("quick", "full"), MODE
QUICK = nb.quick_settings(QUICK, CI)
nb.setup_cpu_fast()

# %% [markdown]
# ## The equations, next to the code
#
# **Dense connectivity.** Inside a block, with $[\cdot]$ the concatenation along channels,
#
# $$\mathbf{x}_\ell = H_\ell\big([\mathbf{x}_0, \mathbf{x}_1, \ldots, \mathbf{x}_{\ell-1}]\big).$$
#
# Each $H_\ell$ outputs $k$ maps, so if the block's input $\mathbf{x}_0$ has $k_0$ maps, layer
# $\ell$ receives $k_0 + (\ell-1)\,k$ of them and the block ends with $k_0 + n k$.
# $H_\ell$ is BN–ReLU–conv 3×3 (to $k$ maps); in DenseNet-B it is
# BN–ReLU–conv 1×1 (to $4k$ maps) followed by BN–ReLU–conv 3×3 (to $k$). In `DenseLayer`,
# `bottom` is the concatenation, BN, ReLU and the first convolution; `forward` adds the
# 3×3 convolution of the bottleneck form. `DenseBlock.forward` keeps the list
# $[\mathbf{x}_0, \ldots]$ and appends each new $\mathbf{x}_\ell$.

# %%
nb.show_source(densenet.DenseLayer)
nb.show_source(densenet.DenseBlock)

# %% [markdown]
# A check that can fail: run a small block and record how many channels really reach each
# layer's first BN, against $k_0 + (\ell-1)k$; and recompute one bottleneck layer by hand.

# %%
k0, k, n = 24, 12, 5
block = densenet.DenseBlock(k0, n, k, bottleneck=True, dropout=0.0, memory_efficient=False)
seen = []


class Inputs(chainer.LinkHook):
    """Records the channels entering each dense layer."""

    def forward_preprocess(self, args) -> None:
        if isinstance(args.link, densenet.DenseLayer):
            seen.append(sum(a.shape[1] for a in args.args))


x0 = np.random.default_rng(0).standard_normal((2, k0, 8, 8)).astype(np.float32)
with Inputs(), chainer.using_config("train", False):
    out = block(x0)
expected = [k0 + (ell - 1) * k for ell in range(1, n + 1)]
print("channels entering layers 1..n:", seen, "| k0 + (l-1)k:", expected)
print("block output:", out.shape[1], "maps = k0 + n k =", k0 + n * k)
assert seen == expected and out.shape[1] == k0 + n * k
layer = block[2]  # the third layer, by hand: BN-ReLU-conv1x1, BN-ReLU-conv3x3
with chainer.using_config("train", False):
    feats = [x0, block[0](x0).array]
    feats.append(block[1](*feats).array)
    h = layer.conv1(F.relu(layer.bn1(np.concatenate(feats, axis=1))))
    by_hand = layer.conv2(F.relu(layer.bn2(h))).array
x3 = out.array[:, k0 + 2 * k : k0 + 3 * k]  # the third layer's k maps in the block output
print("layer 3 recomputed by hand: max |difference| =", float(abs(x3 - by_hand).max()))
np.testing.assert_allclose(x3, by_hand, rtol=1e-5, atol=1e-5)

# %% [markdown]
# **Transitions and compression.** Between blocks, BN–ReLU–conv 1×1 maps the block's $m$
# maps to $\lfloor\theta m\rfloor$, then 2×2 average pooling halves the resolution;
# DenseNet-C uses $\theta = 0.5$. The stem is a 3×3 convolution with 16 maps, or $2k$ for
# DenseNet-BC, and the depth $L$ counts the stem, every convolution and the classifier:
# $L = 3n + 4$ with $n$ layers per block, or $L = 6n + 4$ with bottleneck layers.

# %%
nb.show_source(densenet.Transition)
nb.show_source(densenet.layers_per_block)

# %%
for name in ["densenet40_k12", "densenet100_k24", "densenet_bc100_k12", "densenet_bc190_k40"]:
    net = get_model_info(name).build()
    widths = [t.conv.W.shape[:2][::-1] for t in net.transitions]
    print(
        f"{name:20s} stem {net.stem_ch:3d}, {len(net.blocks[0])} layers per block, "
        f"transitions (in -> out maps): {widths}, classifier input {net.head.bn.gamma.shape[0]}"
    )

# %% [markdown]
# ## The block
#
# A dense block of three layers: every layer's output joins the concatenation that feeds
# all later layers (and the block's output). In DenseNet-BC each box is
# BN–ReLU–conv 1×1 ($4k$ maps)–BN–ReLU–conv 3×3 ($k$ maps).

# %%
nb.draw_block(
    "x₀ -> BN-ReLU-conv 3×3#1 -> x₁; x₀ -> concat#1; x₁ -> concat#1 -> BN-ReLU-conv 3×3#2 -> x₂;"
    " x₀ -> concat#2; x₁ -> concat#2; x₂ -> concat#2 -> BN-ReLU-conv 3×3#3 -> x₃;"
    " x₀ -> concat#3; x₁ -> concat#3; x₂ -> concat#3; x₃ -> concat#3 -> y",
    title="dense block with 3 layers (growth rate k per layer)",
    note="each conv outputs k maps; y has k0 + 3k maps",
)

# %% [markdown]
# ## The network and its parameter count
#
# DenseNet-BC ($L=100$, $k=12$): stem, three blocks of 16 bottleneck layers on 32×32, 16×16
# and 8×8 maps, two compressing transitions, BN–ReLU, global average pooling, linear layer.

# %%
rows = nb.shape_table(get_model_info("densenet_bc100_k12").build())
assert rows[-1]["out"] == (1, 10)

# %% [markdown]
# The paper's parameter counts (its CIFAR table, Table 2, also in the authors' README) are
# all parameters: convolutions, batch-norm scales and shifts, and the classifier with its
# bias. All six variants agree at the paper's precision:

# %%
checks = nb.param_check(
    [
        "densenet40_k12",
        "densenet100_k12",
        "densenet100_k24",
        "densenet_bc100_k12",
        "densenet_bc250_k24",
        "densenet_bc190_k40",
    ],
    source="paper",
    where="Table 2",
)
assert all(c["agrees"] for c in checks), checks

# %% [markdown]
# ## Recipe and departures
#
# The registered variants are the paper's augmented (C10+) runs; its runs without
# augmentation add dropout 0.2 after every convolution but the first
# (`get_model(name, dropout=0.2)`).

# %%
_ = nb.show_recipe("densenet")

# %% [markdown]
# ## The experiment
#
# Two claims, each measured here.
#
# **Memory grows with the square of the depth, unless the cheap parts are recomputed.**
# Each naive layer keeps its own concatenated input (and BN–ReLU of it) for the backward
# pass: $\sum_\ell (k_0 + (\ell-1)k)$ maps, quadratic in $n$. With
# `memory_efficient=True` the concatenation, BN, ReLU and the first convolution of every
# layer run inside `F.forget`, which keeps only the layer's inputs (the $k$-map outputs
# that exist anyway) and recomputes the rest during the backward pass. Chainer's
# convolution keeps its input for the weight gradient, so the convolution that reads the
# concatenation has to be inside the recomputed part too. We measure, with `tracemalloc`,
# the NumPy memory a forward pass leaves held for the backward pass and the peak of a whole
# forward–backward step, for DenseNets ($k=12$, batch 4) of growing depth. This sweep runs
# on Chainer's own NumPy path, whose allocations are exactly the arrays the graph keeps; the
# CPU fast path adds reusable work buffers of its own that would blur the picture.


# %%
def step_memory(n_layers: int, memory_efficient: bool, batch: int = 4) -> tuple[float, float]:
    """(MB held after the forward pass, MB peak during forward + backward) of one step."""
    np.random.seed(0)
    net = densenet.DenseNetCifar(3 * n_layers + 4, 12, memory_efficient=memory_efficient)
    x = np.random.default_rng(0).standard_normal((batch, 3, 32, 32)).astype(np.float32)
    t = np.zeros(batch, np.int32)
    with cpu_fast.enabled(False), chainer.using_config("train", True):
        F.softmax_cross_entropy(net(x), t).backward()  # warm-up: gradients exist
        net.cleargrads()
        tracemalloc.start()
        base = tracemalloc.get_traced_memory()[0]
        loss = F.softmax_cross_entropy(net(x), t)
        held = tracemalloc.get_traced_memory()[0] - base
        loss.backward()
        peak = tracemalloc.get_traced_memory()[1] - base
        tracemalloc.stop()
    return held / 2**20, peak / 2**20


depths = [n for n in (4, 8, 12, 16) if n <= QUICK["mem_n"]]
mem = {
    mode: [step_memory(n, mode == "memory-efficient") for n in depths]
    for mode in ("naive", "memory-efficient")
}
Ls = [3 * n + 4 for n in depths]
fig, axes = plt.subplots(1, 2, figsize=(9, 3.2), dpi=80)
for i, (ax, what) in enumerate(
    zip(axes, ["held after the forward pass", "peak of the step"], strict=True)
):
    for mode, vals in mem.items():
        ax.plot(Ls, [v[i] for v in vals], marker="o", label=mode)
    ax.set(xlabel="depth L (DenseNet, k = 12, batch 4)", ylabel="NumPy memory (MB)", title=what)
    ax.grid(alpha=0.3)
    ax.legend()
fig.tight_layout()
plt.show()
for mode, vals in mem.items():
    held_mb = [v[0] for v in vals]
    growth = [b - a for a, b in zip(held_mb, held_mb[1:], strict=False)]
    print(
        f"{mode:17s} held after forward: {', '.join(f'{v:.1f}' for v in held_mb)} MB; "
        f"added per 4 more layers per block: {', '.join(f'{g:.1f}' for g in growth)} MB"
    )
ratio = mem["naive"][-1][0] / mem["memory-efficient"][-1][0]
print(f"At L = {Ls[-1]} the naive graph holds {ratio:.1f}x the memory of the recomputing one.")
print("Growing increments mean quadratic growth; constant increments mean linear growth.")

# %% [markdown]
# The same comparison for the paper's largest network, DenseNet-BC ($L=190$, $k=40$),
# recorded by `benchmarks/cpu/densenet_memory.py`: one training step (forward, backward,
# Nesterov update) after a warm-up step, each setting in a fresh process, on a 2-core machine
# with 23 GB of memory. Two figures: the step's own peak of NumPy allocations, and the
# process's peak resident memory, which adds the parameters, gradients, optimizer state and,
# with the CPU fast path on, its reusable work buffers. With the fast path on, both settings
# were measured at batch 8 and 32, and at the paper's batch of 64 only the memory-efficient
# one: by the batch-8 and batch-32 figures the naive step needs more memory than the machine
# has (activations grow linearly with the batch). With the fast path off (Chainer's own
# NumPy path, no reusable buffers; warm-up on a batch of 2, see the script) both settings
# were measured at batch 64. The step times were taken while other jobs ran on the same
# cores, so they are indicative only.

# %%
root = Path(chainer_nets.__file__).resolve().parents[1]
record = json.loads((root / "benchmarks" / "cpu" / "densenet_memory.json").read_text())
rows = sorted(record["rows"], key=lambda r: (not r["cpu_fast"], r["batch"], r["memory_efficient"]))
nb.show_md(
    nb.md_table(
        [
            "layers",
            "CPU fast path",
            "batch",
            "step peak, tracemalloc (MB)",
            "max RSS of the process (MB)",
            "s/step",
        ],
        [
            [
                "memory-efficient" if r["memory_efficient"] else "naive",
                "on" if r["cpu_fast"] else "off",
                r["batch"],
                f"{r['step_peak_mb']:,.0f}",
                f"{r['max_rss_mb']:,.0f}",
                r["step_seconds"] or f"{r['step_seconds_traced']} (traced)",
            ]
            for r in rows
        ],
    )
)
by = {(r["cpu_fast"], r["memory_efficient"], r["batch"]): r for r in rows}
print(
    f"Commands: {'; '.join(dict.fromkeys(r['command'] for r in rows))} "
    f"({record['cpu_count']} CPU cores; with the fast path on, its work buffers count too)."
)


def secs(r: dict) -> float:
    """A row's step time: measured without tracemalloc where it was, else the traced step."""
    return r["step_seconds"] or r["step_seconds_traced"]


# per path: the largest batch measured both ways, and what the step's peak saves there
for fast in (True, False):
    pairs = [b for (f, m, b) in by if f == fast and not m and (f, True, b) in by]
    if not pairs:
        continue
    both = max(pairs)
    naive, lean = by[(fast, False, both)], by[(fast, True, both)]
    print(
        f"Fast path {'on' if fast else 'off'}, batch {both}: the step's peak falls from "
        f"{naive['step_peak_mb']:,.0f} MB to {lean['step_peak_mb']:,.0f} MB "
        f"({naive['step_peak_mb'] / lean['step_peak_mb']:.1f}x less), the process's from "
        f"{naive['max_rss_mb'] / 1024:.1f} GB to {lean['max_rss_mb'] / 1024:.1f} GB; the step "
        f"takes {secs(lean) / secs(naive):.2f}x the time (busy machine)."
    )
# with the fast path on, the naive step at batch 64 did not fit: extrapolate it
naive_batches = sorted(b for (f, m, b) in by if f and not m)
if (True, True, 64) in by and (True, False, 64) not in by and len(naive_batches) >= 2:
    b0, b1 = naive_batches[0], naive_batches[-1]
    m0, m1 = by[(True, False, b0)]["step_peak_mb"], by[(True, False, b1)]["step_peak_mb"]
    r0, r1 = by[(True, False, b0)]["max_rss_mb"], by[(True, False, b1)]["max_rss_mb"]
    per_image, rss_per_image = (m1 - m0) / (b1 - b0), (r1 - r0) / (b1 - b0)
    print(
        f"Fast path on, batch 64: memory-efficient measured, "
        f"{by[(True, True, 64)]['step_peak_mb'] / 1024:.1f} GB step peak and "
        f"{by[(True, True, 64)]['max_rss_mb'] / 1024:.1f} GB process peak. Naive, from batch "
        f"{b0} and {b1}: {per_image:,.0f} MB of step peak and {rss_per_image:,.0f} MB of process "
        f"peak per image, so about {(m1 + per_image * (64 - b1)) / 1024:.0f} GB and "
        f"{(r1 + rss_per_image * (64 - b1)) / 1024:.0f} GB at batch 64 (a linear "
        f"extrapolation, not a measurement: more than the machine's memory)."
    )

# %% [markdown]
# **Parameter efficiency.** The paper's Figure 4 shows DenseNet-BC reaching the accuracy of
# a pre-activation ResNet with about a third of its parameters. In miniature: DenseNet-BC
# ($L=28$, $k=12$, four bottleneck layers per block) against ResNet-20 (notebook 08), both
# trained with the DenseNet recipe squeezed into a few epochs on a CIFAR-10 subset, same
# images, same batch and learning rate. CI runs fewer images and epochs.

# %%
nb.register_sibling(
    "densenet_bc28_k12",
    like="densenet_bc100_k12",
    factory=densenet.DenseNetCifar,
    description="DenseNet-BC (L=28, k=12), notebook experiment",
    depth=28,
    growth=12,
    bottleneck=True,
    compression=0.5,
)
nb.register_sibling(
    "resnet20_densenet_recipe",
    like="resnet20",
    factory=ResNetCifar,
    description="ResNet-20 trained with the DenseNet recipe (notebook experiment)",
    recipe="densenet",
    n=3,
)
train_kw = {key: v for key, v in QUICK.items() if key != "mem_n"}
if MODE == "quick":
    runs = {}
    for name in ("densenet_bc28_k12", "resnet20_densenet_recipe"):
        n_params = count_params(get_model_info(name).build())
        runs[f"{name} ({n_params / 1e3:.0f}k parameters)"] = nb.quick_train(
            name, device=DEVICE, plot=False, **train_kw
        )
    nb.plot_runs(runs, title="DenseNet-BC vs ResNet-20, same recipe and images (quick)")
    first = next(iter(runs.values()))
    nb.noise_level(first["test_accuracy"], first["test_images"])
    print(
        "Look at the test accuracy for the parameters spent: DenseNet-BC-28 has about 38% of "
        "ResNet-20's parameters; a gap smaller than the noise level above says only that the "
        "two are comparable at this tiny budget."
    )
else:
    full = nb.full_train(FULL_MODEL, DEVICE)

# %% [markdown]
# ## The full reproduction
#
# The paper reports the test error at the end of training (one run per setting): 5.24%
# for $L=40$, $k=12$ (94.76% accuracy) and 3.46% for DenseNet-BC ($L=190$, $k=40$). The 2016
# Chainer code trained $L=40$, $k=12$ and reported its best epoch's test accuracy, which is
# optimistic. Ours is the accuracy after the last epoch:

# %%
run = nb.reproduction(FULL_MODEL)

# %% [markdown]
# ## Why it works, and when it fails
#
# * **Reuse instead of relearning.** A layer can read any earlier feature map directly,
#   so it only has to add what is missing ($k$ maps); in a ResNet the same information
#   has to survive a chain of additions. Short paths from the loss to every layer (through
#   the concatenations) also act as implicit deep supervision.
# * **Parameters scale gently.** Layer $\ell$'s weights grow with its input width
#   $k_0+(\ell-1)k$, but $k$ is small and bottlenecks cap the 3×3 convolution's input at
#   $4k$ maps; compression halves the width carried into the next block.
# * **Memory and time are the cost.** The concatenated inputs make activation memory grow
#   with the square of the block's depth when implemented naively (the experiment above),
#   and many narrow layers use a GPU (or a CPU) less efficiently than a few wide ones: the
#   FLOP count flatters DenseNet's wall-clock time. Recomputing the cheap parts trades a
#   little time for a large memory saving.
# * **Without augmentation** DenseNet needs dropout (0.2) and still overfits when $k$ grows
#   without bottlenecks (the paper's $L=100$, $k=24$ without augmentation does worse than
#   $k=12$).
#
# ## What to take away
#
# * Concatenate, do not add: layer $\ell$ sees $k_0+(\ell-1)k$ maps and adds $k$.
# * Growth rate, bottleneck (1×1 to $4k$), compression ($\theta=0.5$) and stem width
#   ($16$ or $2k$) define every CIFAR variant; $L=3n+4$ or $6n+4$.
# * Parameter-efficient: DenseNet-BC-100 (0.8M) rivals ResNets ten times its size.
# * Implement the concatenations with recomputation (`memory_efficient=True`) to train
#   deep ones: the naive graph's memory is quadratic in depth.
#
# ## Appendix: sources
#
# * Architecture (stem 16 or $2k$, layers per block $(L-4)/3$ or $(L-4)/6$, BN–ReLU–conv
#   order, bottleneck $4k$, $\lfloor\theta m\rfloor$ compression, ReLU in the transitions,
#   dropout placement, no convolution biases, final BN–ReLU–pool–linear) — the authors'
#   Torch code, [liuzhuang13/DenseNet](https://github.com/liuzhuang13/DenseNet) (`densenet.lua`
#   at its first commit for the 16-map stem, `models/densenet.lua` and
#   `models/DenseConnectLayer.lua`).
# * Parameter counts and errors — the paper's Table 2 and the authors' README.
# * Recipe (SGD with Nesterov momentum 0.9 without dampening, weight decay $10^{-4}$, batch
#   64, 300 epochs, ÷10 at 50% and 75%, dropout only without augmentation, channel
#   normalisation, final-epoch error) — the paper, Section 4.2, and the authors' `train.lua`,
#   `opts.lua` and `datasets/cifar10.lua`.
# * The 2016 Chainer result (95.12% for $L=40$, $k=12$, at epoch 250) —
#   [nutszebra/dense_net](https://github.com/nutszebra/dense_net) README.
