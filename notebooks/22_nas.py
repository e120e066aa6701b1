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
# # 22 · Neural Architecture Search with Reinforcement Learning (NAS)
#
# Zoph, Le — *Neural Architecture Search with Reinforcement Learning*, arXiv
# [1611.01578](https://arxiv.org/abs/1611.01578), November 2016 (ICLR 2017).
#
# ## The question
#
# Every network in this collection so far was designed by hand: someone chose the filter
# sizes, the widths and the connections, then checked on a validation set whether the choice
# was good. A network's description is only a string of such choices. Can a machine learn to
# write that string — propose architectures, see how well they train, and propose better ones
# — and reach the accuracy of the best hand-designed networks?
#
# ## The idea
#
# A recurrent network, the **controller**, writes the child network one decision at a time:
# for every layer its filter height, filter width and number of filters, and, through an
# attention-like sigmoid over earlier layers, which of them feed it (concatenated, not added).
# Each sampled child is trained and its validation accuracy is the **reward**. The controller
# cannot differentiate through training, so it is trained with **REINFORCE**: raise the
# log-probability of the decisions that led to better-than-usual rewards, where "usual" is an
# exponential moving average of past rewards. On CIFAR-10, 12,800 children later, the search
# found a 15-layer network with rectangular filters and dense skip connections (5.50% error)
# and, in a larger space, networks down to 3.65% error.

# %% tags=["parameters"]
# MODE "full" runs the recipe on the appendix network (with DEVICE = "@cupy:0")
MODE = "quick"
DEVICE = "@numpy"
FULL_MODEL = "nas_appendix_a"  # the 15-layer network of the paper's appendix figure
QUICK = dict(
    n_layers=3,
    train_images=512,
    val_images=500,
    image_size=16,
    child_epochs=1,
    steps=12,
    per_step=3,
    controller_lr=0.01,
)
CI = dict(train_images=96, val_images=100, image_size=8, steps=2, per_step=2)  # when tested

# %%
import copy
import sys
import time

try:
    import chainer_nets  # noqa: F401
except ImportError:  # running from notebooks/ without installing the package
    sys.path.insert(0, "..")

import chainer
import matplotlib.pyplot as plt
import numpy as np

from chainer_nets import notebook as nb
from chainer_nets.models import nas
from chainer_nets.registry import get_model_info

assert MODE in ("quick", "full"), MODE
QUICK = nb.quick_settings(QUICK, CI)
nb.setup_cpu_fast()

# %% [markdown]
# ## The equations, next to the code
#
# **A child layer.** Layer $i$ has a filter height $h_i$, width $w_i$, $n_i$ filters and a set
# $S_i$ of earlier layers feeding it. Its input is their outputs concatenated along the
# channels, each zero-padded to the largest height and width among them; a layer with no input
# reads the image $\mathbf{x}$:
#
# $$\mathbf{y}_i = \mathrm{ReLU}\Big(\mathrm{BN}\Big(W_i * \mathrm{concat}_{j\in S_i}\,
#   \mathrm{pad}(\mathbf{y}_j)\Big)\Big), \qquad \text{input} = \mathbf{x}\ \text{ if }
#   S_i=\emptyset .$$
#
# The outputs no later layer reads are concatenated the same way into the final state, which
# is pooled and classified. `concat_padded` is the concatenation, `NasNet` the whole network:

# %%
nb.show_source(nas.concat_padded)
nb.show_source(nas.NasNet, "forward")

# %% [markdown]
# A check that can fail: a layer with stride 2 gives a 16×16 map; a later layer reading it
# together with a 32×32 map gets it zero-padded at the bottom and right, its values untouched;
# a layer with no input reads the 3-channel image; the unconnected outputs (layers 2 and 3)
# form the classifier's input.

# %%
np.random.seed(0)
layers = [
    nas.NasLayer(3, 3, 8),
    nas.NasLayer(3, 1, 6, (0,), stride=2),
    nas.NasLayer(1, 3, 5, (0, 1)),
    nas.NasLayer(5, 5, 4),  # no input: the image
]
net = nas.NasNet(layers)
x = np.random.default_rng(0).standard_normal((2, 3, 32, 32)).astype(np.float32)
with chainer.using_config("train", False):
    ys = net.features(x)
    joined = nas.concat_padded([ys[0], ys[1]]).array
print("output sizes:", [y.shape[1:] for y in ys])
print(
    "input of layer 2:",
    joined.shape,
    "- padded part of layer 1 all zero:",
    bool((joined[:, 8:, 16:, :] == 0).all() and (joined[:, 8:, :, 16:] == 0).all()),
)
print(
    "layer 3 reads",
    net.convs[3].conv.W.shape[1],
    "channels; classifier reads",
    net.head.fc.W.shape[1],
    "= 5 + 4 channels of layers",
    nas.unconnected(layers),
)
assert np.array_equal(joined[:, 8:, :16, :16], ys[1].array)
assert (joined[:, 8:, 16:, :] == 0).all() and net.head.fc.W.shape[1] == 9

# %% [markdown]
# **The controller.** A two-layer LSTM (35 units per layer) emits the decisions in order,
# each fed back as the next input. At layer $i$'s anchor step its hidden state $\mathbf{h}_i$
# decides, for every earlier layer $j$ independently,
#
# $$P(\text{layer } j \text{ is an input to layer } i) =
#   \sigma\big(\mathbf{v}^\top\tanh(W_{prev}\,\mathbf{h}_j + W_{curr}\,\mathbf{h}_i)\big),$$
#
# then three softmax steps choose $h_i \in \{1,3,5,7\}$, $w_i \in \{1,3,5,7\}$ and
# $n_i \in \{24,36,48,64\}$. An architecture's log-probability is the sum over its decisions,
# $\log P(a_{1:T}) = \sum_t \log P(a_t\mid a_{1:t-1})$:

# %%
nb.show_source(nas.Controller, "skip_logits")
nb.show_source(nas.Controller, "run")

# %% [markdown]
# A check that can fail: in a tiny space (two layers, heights and widths in {1, 3}, 24 or 36
# filters, and the one possible skip connection) there are 8 · 8 · 2 = 128 architectures.
# If the controller's log-probabilities are right, their probabilities add up to one, and a
# sample's log-probability is the sum of its decisions':

# %%
tiny = nas.SearchSpace(n_layers=2, heights=(1, 3), widths=(1, 3), filters=(24, 36))
np.random.seed(1)
controller = nas.Controller(tiny)
total = sum(float(np.exp(controller.log_prob(a).array)) for a in tiny.all_architectures())
s = controller.sample(np.random.default_rng(0))
print(f"sum of P(a) over all {len(list(tiny.all_architectures()))} architectures: {total:.6f}")
print(f"a sample: {nas.describe(s.layers)}")
print(
    f"  log P = {float(s.log_prob.array):.5f}; sum over its {len(s.decisions)} decisions = "
    f"{sum(d[2] for d in s.decisions):.5f}"
)
assert abs(total - 1) < 1e-4

# %% [markdown]
# **REINFORCE with a baseline.** With $m$ children per update, rewards $R_k$ and $b$ an
# exponential moving average of past rewards,
#
# $$\nabla_{\theta_c} J \approx \frac1m \sum_{k=1}^m \sum_{t=1}^T
#   \nabla_{\theta_c} \log P(a_t\mid a_{1:t-1};\theta_c)\,(R_k-b).$$
#
# `Reinforce.update` minimises $-\frac1m\sum_k (R_k-b)\log P(a^k)$, whose gradient is exactly
# that, then moves $b$ towards the new rewards:

# %%
nb.show_source(nas.Reinforce, "update")

# %% [markdown]
# A check that can fail: a toy reward of 1 whenever layer 0's filter height is 3, else 0. At
# initialisation the controller gives height 3 a probability near 1/4; 25 updates of 4
# samples should push it close to 1 (no child is trained here, so it takes seconds):


# %%
def p_height3(ctrl: nas.Controller) -> float:
    """The controller's probability that layer 0 gets filter height 3."""
    a = ctrl.sample(np.random.default_rng(0)).layers
    return float(np.exp(ctrl.run(layers=(a[0]._replace(fh=3),) + a[1:]).decisions[0][2]))


space2 = nas.SearchSpace(n_layers=2)
np.random.seed(2)
toy_ctrl = nas.Controller(space2)
before = p_height3(toy_ctrl)
toy = nas.search(
    space2,
    lambda a: float(a[0].fh == 3),
    steps=25,
    per_step=4,
    lr=0.02,
    seed=2,
    controller=toy_ctrl,
)
after = p_height3(toy_ctrl)
print(
    f"P(layer 0 has height 3): {before:.2f} before, {after:.2f} after 25 updates; mean toy "
    f"reward {np.mean(toy[0].rewards):.2f} in the first update, {np.mean(toy[-1].rewards):.2f} "
    "in the last"
)
assert before < 0.4 and after > 0.8

# %% [markdown]
# ## The block
#
# The last layer of the appendix network (layer 15, counting from 1): six earlier outputs
# concatenated, a 7×5 convolution with 48 filters, BN and ReLU; it is the only output no
# later layer reads, so it alone goes to the classifier. Then one step of the controller's
# sequence for a layer.

# %%
nb.draw_block(
    "y6 -> concat; y7 -> concat; y11 -> concat; y12 -> concat; y13 -> concat; y14 -> concat; "
    "concat -> conv 7×5, 48 -> BN -> ReLU -> y15 -> global avg pool -> linear -> 10 scores",
    title="layer 15 of the appendix network (inputs zero-padded to one size before concat)",
)
nb.draw_block(
    "anchor i -> sigmoid over anchors j<i -> inputs of layer i; "
    "anchor i -> softmax: filter height -> softmax: filter width -> softmax: number of filters "
    "-> anchor i+1",
    title="the controller's steps for layer i (each choice is fed back as the next input)",
)

# %% [markdown]
# ## The network and its parameter count
#
# The paper's appendix figure draws the 15-layer network found without strides or pooling:
# every layer's filter height, width and number of filters, and its incoming skip connections.
# The figure is an image; the module docstring of `chainer_nets.models.nas` records how we
# transcribed it from two public transcriptions that agree on everything but one connection,
# and how the parameter count settles that one. Every layer reads its predecessor, and many
# read much more:

# %%
info = get_model_info(FULL_MODEL)
for i, la in enumerate(info.kwargs["layers"]):
    print(
        f"layer {i + 1:2d}: {la.fh}x{la.fw}, {la.n} filters, reads "
        f"{[j + 1 for j in la.inputs] or 'the image'}"
    )
rows = nb.shape_table(info.build())
assert rows[-1]["out"] == (1, 10)

# %% [markdown]
# The paper's Table 1 gives 4.2M parameters for this network. Ours, counting everything (no
# convolution biases, BN scale and shift, the classifier), is 4.20M. The 2016 Chainer code's
# reading of the figure lacks the connection from layer 6 to layer 15 (80,640 weights) and
# comes to 4.12M, which is the 4.1M the 2016 table quotes:

# %%
checks = nb.param_check(["nas_appendix_a", "nas_appendix_a_2016"], source="paper", where="Table 1")
assert checks[0]["agrees"] and not checks[1]["agrees"]

# %% [markdown]
# The other three networks of Table 1 — 20 layers predicting strides (2.5M), 39 layers with
# two max-pooling layers (7.1M) and the same with 40 more filters per layer (37.4M, 3.65%) —
# are not drawn or listed anywhere in the paper, so they are not registered here: any network
# of that shape would be our invention. `NasNet` builds any such description, strides
# included.
#
# ## Recipe and departures
#
# The paper trains the search's children with Nesterov momentum 0.9, learning rate 0.1 and
# weight decay $10^{-4}$, following DenseNet's settings, and tunes the final networks by a grid
# search it does not report:

# %%
_ = nb.show_recipe("nas")

# %% [markdown]
# ## The experiment
#
# **The claim:** REINFORCE with a moving-average baseline turns noisy child rewards into a
# controller that samples better children. The paper needed 12,800 children trained for 50
# epochs each on 800 GPUs. In miniature: the paper's controller and search space with
# 3-layer children, each trained for one epoch on 512 training images average-pooled to 16×16
# and rewarded with its accuracy on 500 other held-out training images (never the test set);
# 12 updates of 3 children. The controller's learning rate is raised from the paper's 0.0006
# to 0.01 because it gets a dozen updates instead of thousands. CI runs a smaller version.

# %%
data = nas.child_data(QUICK["train_images"], QUICK["val_images"], QUICK["image_size"])
space = nas.SearchSpace(n_layers=QUICK["n_layers"])
np.random.seed(0)
ctrl = nas.Controller(space)
initial = copy.deepcopy(ctrl)
t0 = time.time()


def reward(layers: tuple) -> float:
    """Validation accuracy of the child after its brief training."""
    return nas.train_child(layers, data, epochs=QUICK["child_epochs"], seed=0)


if MODE == "quick":
    history = nas.search(
        space,
        reward,
        steps=QUICK["steps"],
        per_step=QUICK["per_step"],
        lr=QUICK["controller_lr"],
        seed=0,
        controller=ctrl,
    )
else:
    full = nb.full_train(FULL_MODEL, DEVICE)
    history = []
elapsed = time.time() - t0
rewards = np.array([r for h in history for r in h.rewards])
if history:
    n_val = len(data.val_x)
    fig, ax = plt.subplots(figsize=(8, 3.4), dpi=80)
    idx = np.arange(len(rewards))
    ax.scatter(idx, 100 * rewards, s=14, color="tab:blue", label="child reward")
    ends = np.cumsum([len(h.rewards) for h in history]) - 1
    starts = ends - np.array([len(h.rewards) for h in history]) + 1
    ax.plot(
        ends,
        [100 * np.mean(h.rewards) for h in history],
        marker="o",
        color="tab:blue",
        alpha=0.5,
        label="mean of each update",
    )
    ax.step(
        starts,
        [100 * h.baseline for h in history],
        where="post",
        color="tab:orange",
        label="baseline b used in the update",
    )
    ax.axhline(10, color="grey", lw=0.8, ls=":", label="chance (10%)")
    ax.set(
        xlabel="child (in sampling order)",
        ylabel="validation accuracy (%)",
        title=f"miniature search: {len(rewards)} children, {len(history)} REINFORCE updates",
    )
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    plt.show()
    best = int(np.argmax(rewards))
    best_layers = [a for h in history for a in h.layers][best]
    gain = float(ctrl.log_prob(best_layers).array - initial.log_prob(best_layers).array)
    half = len(rewards) // 2
    print(
        f"{len(rewards)} children in {elapsed:.0f} s ({elapsed / len(rewards):.1f} s each) "
        "on this CPU"
    )
    print(
        f"mean reward: {100 * rewards[:half].mean():.1f}% in the first half, "
        f"{100 * rewards[half:].mean():.1f}% in the second half"
    )
    print(f"best child ({100 * rewards[best]:.1f}%): {nas.describe(best_layers)}")
    print(f"the search made that architecture {np.exp(gain):.2f}x as likely as at the start")
    nb.noise_level(100 * rewards.mean(), n_val)
    print(
        "Look at the spread of the dots against that noise level: a child's reward is one "
        "brief training run measured on a few hundred images, so most differences between "
        "children are noise, and a dozen updates cannot separate good choices from lucky "
        "ones. What the figure shows is the mechanism: the baseline tracks the rewards, and "
        "each update pushes up the children above it and pushes down those below."
    )

# %% [markdown]
# ## The full reproduction
#
# The paper's 15-layer network (appendix figure) reaches 5.50% error. The 2016 Chainer code
# trained its own reading of the same figure (one skip connection fewer, unpadded
# convolutions, 4.1M parameters) to 90.35%, about four points short of the paper's 94.50%.
# Ours is one run of the recipe above:

# %%
run = nb.reproduction(FULL_MODEL)

# %% [markdown]
# ## Why it works, and when it fails
#
# * **The search learns from a scalar.** REINFORCE needs only the reward, not its gradient:
#   the sampled decisions of above-baseline children become more likely. The moving-average
#   baseline centres the rewards so that ordinary children barely move the controller; it
#   reduces the variance of the gradient estimate without changing its expectation.
# * **Noise and cost are the limits.** A reward is a single training run, so the signal the
#   controller gets is as noisy as the children's accuracies, and the paper paid with 12,800
#   children of 50 epochs each on 800 GPUs. With a dozen one-epoch children, as here, the
#   rewards differ mostly by noise, and the search is a demonstration of the mechanism, not of
#   its result.
# * **The space is the prior.** The controller can only find what the space allows — filter
#   sizes, widths and skip connections here. The found 15-layer network is unusual by hand
#   design standards (rectangular 7×1, 3×7, 7×5 filters, larger filters near the top, dense
#   concatenating skips) but still a stack of convolutions with BN and ReLU; the paper's
#   later, better networks needed a larger space (pooling, blocks of layers, more filters).
# * **Parts the paper leaves out.** The layer-level description of its best CIFAR networks,
#   the order of BN and ReLU, the side of the zero padding and the final training
#   hyperparameters are not in the paper; any reproduction has to choose them.
#
# ## What to take away
#
# * A network description is a sequence of decisions; an LSTM can sample it, with an
#   attention-like sigmoid over earlier layers for the skip connections.
# * REINFORCE with an exponential-moving-average baseline trains the sampler from validation
#   accuracies alone (the toy reward above shows it moving the policy in 25 updates).
# * The appendix network: 15 layers, rectangular filters up to 7×7, skip connections by
#   concatenation, 4.20M parameters — the paper's 4.2M only with the connection from layer 6
#   to layer 15 that the 2016 code lacks.
# * The search's cost is in the children: the miniature here trains a few dozen for seconds
#   each, the paper 12,800 for 50 epochs each.
#
# ## Appendix: sources
#
# * Search space (filter heights and widths in {1, 3, 5, 7}, 24/36/48/64 filters), the skip
#   connection sigmoid, the three rules for mismatched or missing inputs, REINFORCE with a
#   moving-average baseline, the controller (two-layer LSTM, 35 units, uniform init in
#   ±0.08, Adam at 0.0006), the children's training (Nesterov 0.9, lr 0.1, weight decay
#   $10^{-4}$, 50 epochs, reward the cubed maximum validation accuracy of the last 5 epochs on
#   5,000 held-out images), Table 1 (errors and parameter counts) and the appendix figure —
#   the paper, arXiv [1611.01578](https://arxiv.org/abs/1611.01578).
# * Filter sizes, counts and skip connections of the appendix figure — two public
#   transcriptions: the 2016 Chainer code
#   ([nutszebra/neural_architecture_search_with_reinforcement_learning_appendix_a](https://github.com/nutszebra/neural_architecture_search_with_reinforcement_learning_appendix_a),
#   its 15×15 connection matrix) and a later PyTorch transcription (`NASCNN15`), compared
#   layer by layer; the one disagreement (layer 6 → layer 15) settled by the paper's 4.2M.
# * The 2016 code's choices (no padding, conv → ReLU → BN with biases, 90.35%) — the same
#   repository and the 2016 results table.
