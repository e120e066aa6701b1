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
# # 10 · SqueezeNet
#
# Iandola, Han, Moskewicz, Ashraf, Dally, Keutzer — *SqueezeNet: AlexNet-level accuracy with
# 50x fewer parameters and <0.5MB model size*, arXiv
# [1602.07360](https://arxiv.org/abs/1602.07360), February 2016.
#
# ## The question
#
# Every network of this series so far was judged by its accuracy alone. But a model has to be
# shipped: to the servers of a distributed training run, over the air to a car, into the
# on-chip memory of an FPGA. For those, size is the cost. AlexNet needs 240MB of weights.
# How few parameters does a network need to be *as accurate as AlexNet* on ImageNet?
#
# ## The idea
#
# Three strategies. (1) Use 1×1 filters where possible: they have 9× fewer weights than 3×3
# ones. (2) Give the remaining 3×3 filters few input channels. (3) Down-sample late, so the
# convolutions work on large activation maps; this costs no parameters and buys accuracy. The
# first two are built into one block, the **Fire module**: a 1×1 *squeeze* layer shrinks the
# channels, then an *expand* layer of 1×1 and 3×3 filters side by side widens them again.
# Eight Fire modules between one convolution at the bottom and a 1×1 classifier convolution at
# the top (no fully connected layer) give SqueezeNet: AlexNet's top-1 and top-5 accuracy with
# 1.25M parameters, and 4.8MB of 32-bit weights.

# %% tags=["parameters"]
# "quick": the experiment below on the CPU (what CI runs, with the lighter CI settings);
# "full": the 2016 Chainer code's network with its recipe (on a GPU: DEVICE = "@cupy:0").
MODE = "quick"
DEVICE = "@numpy"
FULL_MODEL = "squeezenet_bn"  # the network the 2016 Chainer code trained
QUICK = dict(train_subset=384, test_subset=300, epochs=2, batch_size=32, lr=0.05)
CI = dict(train_subset=128, test_subset=100, epochs=1)  # lighter when the tests run it

# %%
import sys

try:
    import chainer_nets  # noqa: F401
except ImportError:  # running from notebooks/ without installing the package
    sys.path.insert(0, "..")

import chainer
import chainer.functions as F
import chainer.links as L
import numpy as np

from chainer_nets import notebook as nb
from chainer_nets.models import squeezenet as sq
from chainer_nets.registry import count_params, get_model_info

assert MODE in ("quick", "full"), MODE
QUICK = nb.quick_settings(QUICK, CI)
nb.setup_cpu_fast()

# %% [markdown]
# ## The equations, next to the code
#
# **The Fire module.** With input $\mathbf{x}$ of $C$ channels, a squeeze convolution $S$
# (1×1, $s_{1\times1}$ filters) and two expand convolutions $E_1$ (1×1, $e_{1\times1}$ filters)
# and $E_3$ (3×3, padding 1, $e_{3\times3}$ filters), each followed by a ReLU $\sigma$:
#
# $$\mathbf{s} = \sigma(S * \mathbf{x}), \qquad
#   \mathbf{y} = \big[\,\sigma(E_1 * \mathbf{s}) \;\big|\; \sigma(E_3 * \mathbf{s})\,\big],
#   \qquad s_{1\times1} < e_{1\times1} + e_{3\times3}.$$
#
# The output has $e_{1\times1} + e_{3\times3}$ channels; the 3×3 filters see only
# $s_{1\times1}$ of them. `Fire.forward` is the equation:

# %%
nb.show_source(sq.Fire)

# %% [markdown]
# A check that does not trust `forward`: fire2's widths (96 → 16 → 64 + 64), random weights
# and biases, recomputed with Chainer's plain convolution and NumPy's maximum. A missing ReLU,
# the 3×3 branch reading $\mathbf{x}$ instead of $\mathbf{s}$, or the wrong concatenation
# order would show.

# %%
np.random.seed(0)
fire = sq.Fire(96, sq.TABLE1["fire2"])
rng = np.random.default_rng(0)
for link in (fire.squeeze, fire.expand1, fire.expand3):
    link.b.array[...] = rng.standard_normal(link.b.shape).astype(np.float32)
x = rng.standard_normal((2, 96, 8, 8)).astype(np.float32)
s = np.maximum(F.convolution_2d(x, fire.squeeze.W, fire.squeeze.b).array, 0)
e1 = np.maximum(F.convolution_2d(s, fire.expand1.W, fire.expand1.b).array, 0)
e3 = np.maximum(F.convolution_2d(s, fire.expand3.W, fire.expand3.b, pad=1).array, 0)
y = fire(x).array
diff = float(np.abs(y - np.concatenate([e1, e3], axis=1)).max())
print(f"input {x.shape} -> squeeze {s.shape} -> output {y.shape}; max |difference| = {diff:.1e}")
assert y.shape[1] == fire.out_ch == 128 and diff < 1e-4

# %% [markdown]
# **Widths from five numbers** (Section 5). Module $i = 0,\dots,7$ has
# $e_i = base_e + incr_e \lfloor i / freq \rfloor$ expand filters, a fraction
# $pct_{3\times3}$ of them 3×3, and $s_i = SR \cdot e_i$ squeeze filters. SqueezeNet is
# $base_e = incr_e = 128$, $pct_{3\times3} = 0.5$, $freq = 2$ and the *squeeze ratio*
# $SR = 0.125$:

# %%
nb.show_source(sq.fire_widths)
widths = sq.fire_widths()
nb.show_md(
    nb.md_table(
        ["module", "squeeze 1×1", "expand 1×1", "expand 3×3", "output", "SR"],
        [
            [n, w.s1, w.e1, w.e3, w.out, f"{w.s1 / w.out:g}"]
            for n, w in zip(sq.TABLE1, widths, strict=True)
        ],
    )
)
assert widths == list(sq.TABLE1.values())  # Table 1's columns, from the five numbers

# %% [markdown]
# **Bypass** (Section 6). Borrowing ResNet's shortcut, *simple bypass* adds a module's input to
# its output where the widths agree (fire3, 5, 7, 9): $\mathbf{y} = \mathrm{Fire}(\mathbf{x})
# + \mathbf{x}$. *Complex bypass* also bridges the other four with a 1×1 convolution $P$:
# $\mathbf{y} = \mathrm{Fire}(\mathbf{x}) + P * \mathbf{x}$. No ReLU follows the sum.

# %%
nb.show_source(sq.FireBlock, "forward")

# %%
np.random.seed(0)
complex_net = get_model_info("squeezenet_complex_bypass").build()
with chainer.using_config("train", False):
    for name, block in zip(complex_net.names, complex_net.fires, strict=True):
        if name not in ("fire2", "fire3"):
            continue
        xin = rng.standard_normal((1, block.fire.squeeze.W.shape[1], 4, 4)).astype(np.float32)
        out, fire_only = block(xin).array, block.fire(xin).array
        shortcut = xin if block.bypass == "identity" else block.proj(xin).array
        print(f"{name}: bypass {block.bypass!r}, max |y - (Fire(x) + shortcut)| = "
              f"{float(np.abs(out - fire_only - shortcut).max()):.1e}")  # fmt: skip
        assert np.allclose(out, fire_only + shortcut, atol=1e-5)

# %% [markdown]
# ## The block
#
# The Fire module (the paper's Figure 1), and where the bypasses go (its Figure 2):

# %%
nb.draw_block(
    "x -> squeeze 1×1, s filters -> ReLU#s -> expand 1×1, e₁ filters -> ReLU#1 -> concat -> y;"
    "ReLU#s -> expand 3×3, e₃ filters -> ReLU#3 -> concat",
    title="Fire module: s < e₁ + e₃ (SqueezeNet: s = (e₁ + e₃) / 8, e₁ = e₃)",
)
nb.draw_block(
    "x -> Fire module -> + -> y; x -[identity (fire3, 5, 7, 9) or 1×1 conv (fire2, 4, 6, 8: "
    "complex bypass only)]-> +",
    title="Fire module with bypass: y = Fire(x) + x  or  Fire(x) + P * x",
)

# %% [markdown]
# ## The network and its parameter count
#
# conv1 (7×7/2, 96 filters), max-pool 3×3/2, fire2–fire4, max-pool, fire5–fire8, max-pool,
# fire9, dropout 0.5, conv10 (1×1, one filter per class), global average pooling. Table 1
# prints a 224×224 input, but its 111×111 conv1 output needs 227×227 (the crop size of the
# authors' Caffe definition). Every layer's output on one 227×227 image, as Table 1 lists it:

# %%
nb.show_source(sq.SqueezeNet, "stages")
imagenet = get_model_info("squeezenet_imagenet").build()
with chainer.using_config("train", False), chainer.no_backprop_mode():
    stages = list(imagenet.stages(np.zeros((1, 3, 227, 227), np.float32)))
per_layer = {"conv1": imagenet.conv1, "conv10": imagenet.conv10}
per_layer |= dict(zip(imagenet.names, imagenet.fires, strict=True))
nb.show_md(
    nb.md_table(
        ["layer", "output size", "parameters (weights and biases)"],
        [
            [
                n,
                "×".join(map(str, h.shape[1:])),
                f"{count_params(per_layer[n]):,}" if n in per_layer else "",
            ]
            for n, h in stages
        ],
    )
)
assert stages[-2][1].shape == (1, 1000, 13, 13) and stages[2][1].shape == (1, 128, 55, 55)

# %% [markdown]
# On CIFAR-10 the one change is conv1 (3×3, stride 1) with no max-pool after it, so the Fire
# modules run on 32×32, 16×16 and 8×8 maps; conv10 has 10 filters. Its shapes:

# %%
rows = nb.shape_table(get_model_info("squeezenet").build())
assert rows[-1]["out"] == (1, 10)

# %% [markdown]
# Table 1's total is 1,248,424 parameters, biases included; simple bypass adds none (Table 3
# gives both networks the same 4.8MB). The 2016 Chainer table lists 0.7M for its BN variant,
# counting convolution weights only.

# %%
checks = nb.param_check(
    ["squeezenet_imagenet", "squeezenet_bypass_imagenet"], source="paper", where="Tables 1 and 3"
)
assert all(c["agrees"] for c in checks), checks
checks = nb.param_check(["squeezenet_bn"], source="2016 table")
assert all(c["agrees"] for c in checks), checks

# %% [markdown]
# Table 3 gives the complex-bypass network 7.7MB. Its four 1×1 bypass convolutions, with the
# widths the paper describes, add far less than that:

# %%
n_complex = count_params(get_model_info("squeezenet_complex_bypass_imagenet").build())
n_plain = count_params(imagenet)
print(
    f"complex bypass: {n_complex:,} parameters (+{n_complex - n_plain:,}), "
    f"{4 * n_complex / 2**20:.2f} MiB of 32-bit weights against SqueezeNet's "
    f"{4 * n_plain / 2**20:.2f} MiB (Table 3: 7.7MB and 4.8MB); 7.7MB would be "
    f"{7.7 * 2**20 / 4 / 1e6:.2f}M parameters"
)

# %% [markdown]
# ### Where the 50× comes from
#
# AlexNet for comparison, built from Chainer links with its published layer shapes (conv2, 4
# and 5 split into two groups, three fully connected layers):

# %%
alexnet = chainer.Sequential(
    L.Convolution2D(3, 96, 11, 4),
    L.Convolution2D(96, 256, 5, pad=2, groups=2),
    L.Convolution2D(256, 384, 3, pad=1),
    L.Convolution2D(384, 384, 3, pad=1, groups=2),
    L.Convolution2D(384, 256, 3, pad=1, groups=2),
    L.Linear(256 * 6 * 6, 4096),
    L.Linear(4096, 4096),
    L.Linear(4096, 1000),
)
n_alex = count_params(alexnet)
n_alex_fc = sum(count_params(layer) for layer in list(alexnet)[5:])
print(
    f"AlexNet: {n_alex:,} parameters ({4 * n_alex / 1e6:.0f} MB in 32 bits), "
    f"{100 * n_alex_fc / n_alex:.0f}% of them in the three fully connected layers"
)
print(f"SqueezeNet: {n_plain:,} parameters; AlexNet / SqueezeNet = {n_alex / n_plain:.1f}x")

# %% [markdown]
# The same macro-architecture (conv1, eight modules of the same output widths and positions,
# conv10) built three ways shows what each strategy saves. Without strategies 1 and 2, every
# module is a 3×3 convolution from $C$ to $e$ channels, $9Ce$ weights. Strategy 1 makes half
# of those filters 1×1: $C e_{1\times1} + 9 C e_{3\times3}$. Strategy 2 puts the squeeze in
# front: $C s + s e_{1\times1} + 9 s e_{3\times3}$. The widths are read from the network's
# own weight arrays:


# %%
def module_counts(block):
    """Weights of one module as a 3x3 convolution, with strategy 1, and with strategies 1+2."""
    c = block.fire.squeeze.W.shape[1]
    s, e1, e3 = (block.fire.squeeze.W.shape[0], block.fire.expand1.W.shape[0],
                 block.fire.expand3.W.shape[0])  # fmt: skip
    return 9 * c * (e1 + e3), c * e1 + 9 * c * e3, c * s + s * e1 + 9 * s * e3


counts = {n: module_counts(b) for n, b in zip(imagenet.names, imagenet.fires, strict=True)}
ends = imagenet.conv1.W.size + imagenet.conv10.W.size  # the same in all three
totals = [ends + sum(c[k] for c in counts.values()) for k in range(3)]
nb.show_md(
    nb.md_table(
        ["module", "all 3×3 (9Ce)", "strategy 1", "strategies 1+2 (Fire)"],
        [[n, *(f"{v:,}" for v in c)] for n, c in counts.items()]
        + [["network (with conv1, conv10)", *(f"**{t:,}**" for t in totals)]],
    )
)
weights_alex = sum(p.size for name, p in alexnet.namedparams() if name.endswith("/W"))
print(
    f"strategy 1 saves {totals[0] / totals[1]:.2f}x, strategy 2 then {totals[1] / totals[2]:.1f}x "
    f"(together {totals[0] / totals[2]:.1f}x). Even the all-3x3 version has "
    f"{weights_alex / totals[0]:.1f}x fewer weights than AlexNet, because its only classifier "
    f"is the 1x1 conv10 and global pooling instead of {100 * n_alex_fc / n_alex:.0f}% of AlexNet "
    "in fully connected layers. The Fire module turns that into "
    f"{weights_alex / totals[2]:.0f}x (weights only)."
)
assert (
    totals[0]
    > totals[1]
    > totals[2]
    == sum(p.size for n, p in imagenet.namedparams() if n.endswith("/W"))
)

# %% [markdown]
# Strategy 3 moves no parameter: it decides which map sizes the layers see. Counting the
# multiply-adds of each convolution on one 227×227 image, with the pools where SqueezeNet has
# them (after conv1, fire4, fire8) and, for comparison, the same network with its pools after
# conv1, fire2 and fire3 (down-sampling early, as SqueezeNet v1.1 later did to save
# computation):


# %%
def macs(pool_after):
    """Multiply-adds of conv1, the eight modules and conv10 for given pool positions."""
    side = (227 - 7) // 2 + 1
    total = imagenet.conv1.W.size * side * side
    side = -(-(side - 3) // 2) + 1  # the pool after conv1, rounding up like Caffe
    for name, block in zip(imagenet.names, imagenet.fires, strict=True):
        total += sum(p.size for n, p in block.namedparams() if n.endswith("/W")) * side * side
        if name in pool_after:
            side = -(-(side - 3) // 2) + 1
    return total + imagenet.conv10.W.size * side * side


late, early = macs(("fire4", "fire8")), macs(("fire2", "fire3"))
print(
    f"late down-sampling (SqueezeNet): {late / 1e9:.2f} G multiply-adds per image; early: "
    f"{early / 1e9:.2f} G. The same {n_plain:,} parameters; the paper's bet is that the larger "
    "maps buy accuracy."
)

# %% [markdown]
# ## Recipe and departures
#
# Section 3.3 and the authors' Caffe solver: momentum 0.9, weight decay $2\cdot10^{-4}$,
# batch 512, learning rate 0.04 decreased linearly to zero over 170k iterations (68 ImageNet
# epochs). The 2016 Chainer code trained its BN variant with the DenseNet recipe instead.

# %%
_ = nb.show_recipe("squeezenet")
_ = nb.show_recipe("squeezenet_bn")

# %% [markdown]
# ## The experiment
#
# **The claim:** Fire modules reach the accuracy of plain 3×3 convolutions with a fraction of
# the parameters. In miniature: the CIFAR-10 network at a quarter of SqueezeNet's widths
# ($base_e = incr_e = 32$, so 4 to 16 squeeze and 32 to 128 expand filters; conv1 with 24
# filters, its max-pool kept to save time), against the same network with every Fire module
# replaced by one 3×3 convolution of the same output width: same depth, same maps, same head.
# Both use the 2016 Chainer code's pre-activation layers (BN and ReLU before every
# convolution, no bypass): a short run of the paper's BN-free network at this width stays at
# chance (in a trial on 1024 images its loss did not leave 2.30 in four epochs at lr 0.04),
# which would show nothing. Both train on the same 384 CIFAR-10 images for 2 epochs (batch
# 32, lr 0.05 divided by 10 at half and three quarters of the run, the 2016 recipe
# squeezed), seed 0, and are tested on 300 images. About a minute on two quiet cores; the
# tests run fewer images and one epoch. So small a run can show the direction of a gap, not
# its size.


# %%
class Conv3x3Module(chainer.Chain):
    """A Fire module's stand-in: BN, ReLU, one 3x3 convolution to the same output width."""

    def __init__(self, in_ch, spec):
        super().__init__()
        self.out_ch = spec.out
        with self.init_scope():
            self.bn = L.BatchNormalization(in_ch)
            self.conv = sq.he_conv(in_ch, spec.out, 3, pad=1)

    def forward(self, x):
        """W * ReLU(BN(x))."""
        return self.conv(F.relu(self.bn(x)))


def small_squeezenet(modules="fire", base=32):
    """Pre-activation SqueezeNet at base_e = incr_e = base on CIFAR-10, Fire or 3x3 modules."""
    widths = dict(zip(sq.TABLE1, sq.fire_widths(base_e=base, incr_e=base), strict=True))
    variant = sq.Variant("none", preact=True)
    net = sq.SqueezeNet(10, sq.Stem(3, 1, 1, True), variant, widths, base * 3 // 4)
    if modules == "3x3":
        in_ch = net.conv1.W.shape[0]
        for block, spec in zip(net.fires, widths.values(), strict=True):
            del block.fire
            with block.init_scope():
                block.fire = Conv3x3Module(in_ch, spec)
            in_ch = spec.out
    return net


sizes = {}
for modules in ("fire", "3x3"):
    nb.register_sibling(
        f"squeezenet_quarter_{modules}",
        like="squeezenet",
        factory=small_squeezenet,
        description=f"SqueezeNet at a quarter width, {modules} modules (notebook experiment)",
        recipe="squeezenet_bn",
        modules=modules,
    )
    sizes[modules] = count_params(get_model_info(f"squeezenet_quarter_{modules}").build())
print({k: f"{v:,} parameters" for k, v in sizes.items()},
      f"-> the 3x3 network has {sizes['3x3'] / sizes['fire']:.1f}x more")  # fmt: skip

quick_runs = {}
if MODE == "quick":
    for modules, label in (("fire", "Fire modules"), ("3x3", "3×3 convolutions")):
        quick_runs[f"{label} ({sizes[modules] / 1e3:.0f}k)"] = nb.quick_train(
            f"squeezenet_quarter_{modules}", plot=False, device=DEVICE, **QUICK
        )
    nb.plot_runs(
        quick_runs,
        title=f"Fire modules vs plain 3×3 convolutions, same depth ({QUICK['train_subset']} "
        "training images)",
    )
else:
    full = nb.full_train(FULL_MODEL, DEVICE)

# %%
if quick_runs:
    (fire_label, fire_run), (conv_label, conv_run) = quick_runs.items()
    nb.show_md(
        nb.md_table(
            ["network", "parameters", "training loss, last epoch", "test accuracy (%)", "seconds"],
            [
                [k, f"{sizes[m]:,}", f"{r['log'][-1]['main/loss']:.3f}", f"{r['test_accuracy']:.1f}",
                 f"{r['notebook_seconds']:.0f}"]
                for (k, r), m in zip(quick_runs.items(), ("fire", "3x3"), strict=True)
            ],
        )
    )  # fmt: skip
    se = nb.noise_level(float(np.mean([fire_run["test_accuracy"], conv_run["test_accuracy"]])),
                        fire_run["test_images"])  # fmt: skip
    gap = conv_run["test_accuracy"] - fire_run["test_accuracy"]
    print(
        f"The 3x3 network, with {sizes['3x3'] / sizes['fire']:.0f}x the parameters, is "
        f"{gap:+.1f} points from the Fire network "
        f"({'within' if abs(gap) < 2 * np.sqrt(2) * se else 'beyond'} the noise). The paper's "
        "claim, in miniature, is that this gap stays small while the parameter ratio is large; "
        "a short run on a subset says nothing about the last points of accuracy, where the "
        "extra parameters may still count."
    )

# %% [markdown]
# ## The full reproduction
#
# **The paper reports no CIFAR-10 result**: its experiments are on ImageNet (SqueezeNet 57.5%
# top-1 and 80.3% top-5, AlexNet 57.2% and 80.3%; with simple bypass 60.4% top-1), so the
# "paper" column below is empty. The 2016 Chainer code reached 92.63% with its BN variant (the
# best test accuracy over its 300 epochs). Ours, generated from `results/`, is the last
# epoch's accuracy of one run:

# %%
assert get_model_info(FULL_MODEL).paper_accuracy is None  # no CIFAR-10 number in the paper
run = nb.reproduction(FULL_MODEL)

# %% [markdown]
# And the paper's own network (no BN, no bypass) with the paper's recipe:

# %%
run_paper = nb.reproduction("squeezenet")

# %% [markdown]
# ## Why it works, and when it fails
#
# * **Most of AlexNet's weights did little.** Over 90% of them sit in the fully connected
#   layers; replacing those with a 1×1 convolution and global average pooling (as Network In
#   Network did) removes most of the size before any Fire module is built.
# * **A 3×3 filter is paid per input channel.** Squeezing to an eighth of the width before
#   the 3×3 filters divides their cost by about eight, and the 1×1 expand filters are
#   nine times cheaper still. The paper's sweeps (Figure 3) show accuracy saturating: from
#   50% 3×3 filters on, more of them only add size, and a squeeze ratio above 0.125 buys
#   accuracy (up to 86.0% top-5 at 0.75) at 4× the size.
# * **When it fails.** Fewer parameters is not less computation: the late down-sampling keeps
#   the Fire modules on 55×55 and 27×27 maps (the multiply-adds counted above), and many thin
#   layers run less efficiently than a few wide ones. The authors' v1.1 moved the pools
#   earlier and cut the computation by 2.4× at the same accuracy, so strategy 3 was not free.
#   And a small parameter count is not a small training cost: CIFAR-10 up-sampled to 128×128,
#   as the 2016 Chainer code did, multiplies every layer's work by 16.
#
# ## What to take away
#
# * Fire module: squeeze 1×1 to $s$, then expand to $e_{1\times1}$ 1×1 and $e_{3\times3}$ 3×3
#   filters, concatenated; SqueezeNet uses $s = (e_{1\times1} + e_{3\times3})/8$ and
#   $e_{1\times1} = e_{3\times3}$.
# * 1,248,424 parameters (Table 1), about 49× fewer than AlexNet's 61M, computed above; most of
#   the gap is the fully connected layers, the rest strategies 1 and 2.
# * Simple bypass (identity around fire3, 5, 7, 9) is free in parameters and gave the paper
#   2.9 points of top-1; complex bypass costs parameters and gave less.
# * The paper has no CIFAR-10 number; the 2016 Chainer code's 92.63% is a different network
#   (BN, pre-activation Fire modules, simple bypass).
#
# ## Appendix: sources
#
# * Fire module, strategies, metaparameters, bypass variants and ImageNet accuracies: the
#   paper, Sections 3–6, Tables 1–3 ([arXiv 1602.07360](https://arxiv.org/abs/1602.07360)).
# * Layer definitions (227×227 crops, 3×3/2 pools without padding, ReLU after conv10,
#   xavier and $\mathcal{N}(0, 0.01^2)$ initialisation, no mirroring) and the solver (lr 0.04,
#   "poly" power 1, 170k iterations, batch 32 × 16, momentum 0.9, weight decay $2\cdot10^{-4}$):
#   the authors' Caffe files,
#   [DeepScale/SqueezeNet](https://github.com/DeepScale/SqueezeNet) (`SqueezeNet_v1.0/`).
#   Their definition pads conv10 by 1 (a 15×15 output); we follow Table 1's 13×13.
# * Where the simple bypass adds (after each module's concatenation, before the next module,
#   no ReLU after the sum): the authors' residual SqueezeNet,
#   [songhan/SqueezeNet-Residual](https://github.com/songhan/SqueezeNet-Residual).
# * The 2016 Chainer network and recipe: [nutszebra/squeeze_net](https://github.com/nutszebra/squeeze_net)
#   (`squeeze_net.py`, `main.py`, `nutszebra_optimizer.py`); its accuracy: the results table kept
#   in `chainer_nets/results.py` (`IMPL_2016`).
# * AlexNet's layer shapes: Krizhevsky et al., 2012 (two-group convolutions 2, 4 and 5).
