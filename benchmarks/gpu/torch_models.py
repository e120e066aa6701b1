"""PyTorch references, architecture-identical to chainer_nets models, for the GPU benchmark.

* ``resnetN`` (option-A zero-pad shortcuts, post-activation) and ``wrnD_K`` come from the CPU
  benchmark's :mod:`benchmarks/cpu/torch_models.py`, loaded by file path and reused unchanged.
* ``fractalnet20`` is defined here: :class:`FractalNet` mirrors
  ``chainer_nets.models.fractalnet`` (B=5 blocks of C=3 columns, widths 64-512, mean joins,
  conv -> dropout -> BN -> ReLU units, the 2x2 max-pool applied to each input of a block's last
  join, global average pool, linear layer). For timing it always runs **all columns with no
  drop-path** (deterministic joins), in train and eval mode alike; dropout stays active in
  train mode. The Chainer side is timed in the same configuration (``global_ratio = 0``,
  ``local_drop = 0``), so both frameworks do the same arithmetic per step.

:func:`compare_with_chainer` copies a chainer_nets model's weights into the twin (matching
convolutions, batch normalizations and linear layers in the order a forward pass calls them)
and compares outputs and gradients: the strongest check that the two are the same network.

Used only by the benchmarks (their own environment); the chainer_nets package never imports
torch. ``python benchmarks/gpu/torch_models.py`` checks parameter counts (and, with
``--compare``, outputs and gradients on CPU) for the three benchmark models.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
from types import ModuleType
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))

#: Models the GPU benchmark times by default (the concat/multi-branch case is FractalNet:
#: chainer_nets has no DenseNet).
BENCH_MODELS = ("wrn28_10", "resnet110", "fractalnet20")


def _load_cpu_models() -> ModuleType:
    """The CPU benchmark's reference module, loaded from its file (it is not a package)."""
    path = os.path.join(ROOT, "benchmarks", "cpu", "torch_models.py")
    spec = importlib.util.spec_from_file_location("_cpu_torch_models", path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


cpu_models = _load_cpu_models()


def _bn(c: int) -> nn.BatchNorm2d:
    """Batch normalization as chainer_nets.blocks.bn: eps 1e-5, decay 0.9 (momentum 0.1)."""
    return nn.BatchNorm2d(c, eps=1e-5, momentum=0.1)


class ConvUnit(nn.Module):
    """FractalNet's conv(z): 3x3 convolution (no bias), dropout, BN, ReLU."""

    def __init__(self, cin: int, cout: int, dropout: float) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 3, 1, 1, bias=False)
        self.drop = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.bn = _bn(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """conv -> dropout -> BN -> ReLU."""
        return F.relu(self.bn(self.drop(self.conv(x))))


class FractalBlock(nn.Module):
    """One fractal block with C columns and merged mean joins, all columns active."""

    def __init__(self, cin: int, cout: int, n_columns: int, dropout: float) -> None:
        super().__init__()
        self.n_columns = n_columns
        self.depth = 2 ** (n_columns - 1)
        self.columns = nn.ModuleList(
            nn.ModuleList(ConvUnit(cin if i == 0 else cout, cout, dropout) for i in range(2**c))
            for c in range(n_columns)
        )
        # Columns whose unit ends at depth d (1-based): the inputs of the join at depth d.
        self.joins = [
            [c for c in range(n_columns) if d % 2 ** (n_columns - 1 - c) == 0]
            for d in range(1, self.depth + 1)
        ]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Every column, joined by element-wise means; pool each input of the last join."""
        state = [x] * self.n_columns
        step = [0] * self.n_columns
        h = x
        for d, ending in enumerate(self.joins, start=1):
            outs = []
            for c in ending:
                outs.append(self.columns[c][step[c]](state[c]))
                step[c] += 1
            if d == self.depth:
                outs = [F.max_pool2d(o, 2, 2) for o in outs]
            h = outs[0]
            for o in outs[1:]:
                h = h + o
            if len(outs) > 1:
                h = h / len(outs)
            for c in ending:
                state[c] = h
        return h


class FractalNet(nn.Module):
    """FractalNet for CIFAR (B blocks of C columns), deterministic all-columns forward."""

    def __init__(
        self,
        n_columns: int = 3,
        widths: tuple[int, ...] = (64, 128, 256, 512, 512),
        dropouts: tuple[float, ...] = (0.0, 0.1, 0.2, 0.3, 0.4),
        n_classes: int = 10,
    ) -> None:
        super().__init__()
        blocks, cin = [], 3
        for width, rate in zip(widths, dropouts, strict=True):
            blocks.append(FractalBlock(cin, width, n_columns, rate))
            cin = width
        self.blocks = nn.Sequential(*blocks)
        self.fc = nn.Linear(cin, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class scores."""
        return self.fc(self.blocks(x).mean(dim=(2, 3)))


def get_torch_model(name: str) -> nn.Module:
    """The PyTorch twin of ``chainer_nets.get_model(name)`` (resnetN, wrnD_K, fractalnet20)."""
    if name == "fractalnet20":
        return FractalNet(n_columns=3)
    return cpu_models.get_torch_model(name)


def count_params(model: nn.Module) -> int:
    """Number of trainable scalars (weights, biases, BN scale and shift)."""
    return sum(p.numel() for p in model.parameters())


def forward_flops(model: nn.Module, batch: int = 1) -> int:
    """Multiply-add FLOPs (2 per MAC) of one forward pass per image, convolutions and linear
    layers only, counted from the shapes a batch of 3x32x32 inputs produces on CPU."""
    total = [0]

    def hook(mod: nn.Module, inputs: tuple, out: torch.Tensor) -> None:
        w = mod.weight
        per_out = w.shape[1] * (w.shape[2] * w.shape[3] if w.dim() == 4 else 1)
        total[0] += 2 * out.numel() * per_out

    handles = [
        m.register_forward_hook(hook)
        for m in model.modules()
        if isinstance(m, nn.Conv2d | nn.Linear)
    ]
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(torch.zeros(batch, 3, 32, 32, device=next(model.parameters()).device))
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    return total[0] // batch


def _import_chainer() -> ModuleType:
    """Import chainer_nets (which installs its NumPy-2 compat layer) and then chainer."""
    if ROOT not in sys.path:
        sys.path.insert(0, ROOT)
    import chainer_nets  # noqa: F401, I001  (must come before chainer)
    import chainer

    return chainer


def _torch_call_order(model: nn.Module, x: torch.Tensor) -> list[nn.Module]:
    """Conv2d / BatchNorm2d / Linear modules in the order one forward pass calls them."""
    order: list[nn.Module] = []
    handles = [
        m.register_forward_hook(lambda mod, i, o: order.append(mod))
        for m in model.modules()
        if isinstance(m, nn.Conv2d | nn.BatchNorm2d | nn.Linear)
    ]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in handles:
            h.remove()
    return order


def _chainer_call_order(cmodel: Any, x: Any) -> list[Any]:
    """Convolution2D / BatchNormalization / Linear links in the order a forward calls them."""
    chainer = _import_chainer()
    L = chainer.links

    order: list[Any] = []

    class Recorder(chainer.LinkHook):
        name = "call_order"

        def forward_postprocess(self, args: Any) -> None:
            if isinstance(args.link, L.Convolution2D | L.BatchNormalization | L.Linear):
                order.append(args.link)

    with Recorder(), chainer.no_backprop_mode():
        cmodel(x)
    return order


def copy_chainer_to_torch(cmodel: Any, tmodel: nn.Module, x_np: Any) -> int:
    """Copy weights, BN scale/shift and running statistics from a chainer_nets model into its
    twin, pairing layers by call order on ``x_np``; returns the number of layers copied.

    Both models must be in the mode that runs every layer (test mode for FractalNet)."""
    chainer = _import_chainer()
    with chainer.using_config("train", False):
        clinks = _chainer_call_order(cmodel, x_np)
    tmodel.eval()
    tmods = _torch_call_order(tmodel, torch.from_numpy(x_np))
    if len(clinks) != len(tmods):
        raise AssertionError(f"{len(clinks)} Chainer layers vs {len(tmods)} PyTorch layers")
    with torch.no_grad():
        for cl, tm in zip(clinks, tmods, strict=True):
            pairs = []
            if isinstance(tm, nn.BatchNorm2d):
                pairs = [
                    (cl.gamma.array, tm.weight),
                    (cl.beta.array, tm.bias),
                    (cl.avg_mean, tm.running_mean),
                    (cl.avg_var, tm.running_var),
                ]
            else:
                pairs = [(cl.W.array, tm.weight)]
                if tm.bias is not None:
                    pairs.append((cl.b.array, tm.bias))
            for src, dst in pairs:
                if tuple(src.shape) != tuple(dst.shape):
                    raise AssertionError(f"shape {src.shape} vs {tuple(dst.shape)} at {tm}")
                dst.copy_(torch.from_numpy(src))
    return len(clinks)


def compare_with_chainer(
    name: str, batch: int = 2, seed: int = 0, dtype: str = "float32"
) -> dict[str, float]:
    """Build ``name`` in both frameworks on CPU, copy weights, compare logits and gradients.

    Train mode (batch statistics) for networks without stochastic layers; eval mode for
    FractalNet (dropout). Returns the normalised max errors ``max|a - b| / max|b|`` of the
    logits and of every conv/linear weight gradient (max and median), and the layer count.

    With ``dtype="float64"`` both models compute in double precision: the comparison that
    can be tight. In float32 two correct implementations can disagree on single
    weight-gradient entries by a few percent of the layer's largest one (seen for FractalNet
    when only the order of a convolution's sums changed; in float64 the same pair agrees to
    1e-10), presumably where rounding flips a max-pooling or ReLU decision."""
    import numpy as np

    chainer = _import_chainer()
    import chainer_nets

    CF = chainer.functions
    np.random.seed(seed)
    torch.manual_seed(seed)
    cmodel = chainer_nets.get_model(name)
    tmodel = get_torch_model(name)
    rng = np.random.RandomState(seed)
    x = rng.standard_normal((batch, 3, 32, 32)).astype(np.float32)
    t = rng.randint(0, 10, batch).astype(np.int32)
    layers = copy_chainer_to_torch(cmodel, tmodel, x)
    if dtype == "float64":
        x = x.astype(np.float64)
        tmodel.double()
        for p in cmodel.params():
            p.array = p.array.astype(np.float64)
        for link in cmodel.links():
            for key in ("avg_mean", "avg_var"):
                if getattr(link, key, None) is not None:
                    setattr(link, key, getattr(link, key).astype(np.float64))
    train = name != "fractalnet20"
    with chainer.using_config("train", train):
        yc = cmodel(x)
        loss = CF.softmax_cross_entropy(yc, t)
    cmodel.cleargrads()
    loss.backward()
    tmodel.train(train)
    yt = tmodel(torch.from_numpy(x))
    F.cross_entropy(yt, torch.from_numpy(t.astype(np.int64))).backward()

    with chainer.using_config("train", False):
        clinks = _chainer_call_order(cmodel, x)
    tmods = _torch_call_order(tmodel, torch.from_numpy(x))

    def err(a: Any, b: Any) -> float:
        return float(np.abs(a - b).max() / max(float(np.abs(b).max()), 1e-30))

    grad_errs = [
        err(tm.weight.grad.numpy(), cl.W.grad)
        for cl, tm in zip(clinks, tmods, strict=True)
        if isinstance(tm, nn.Conv2d | nn.Linear)
    ]
    return {
        "layers": float(layers),
        "logits": err(yt.detach().numpy(), yc.array),
        "grad_max": max(grad_errs),
        "grad_median": float(np.median(grad_errs)),
    }


def main(argv: list[str] | None = None) -> int:
    """Print Chainer vs PyTorch parameter counts (and errors with ``--compare``)."""
    _import_chainer()
    import chainer_nets
    from chainer_nets.registry import count_params as chainer_count

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=list(BENCH_MODELS))
    ap.add_argument("--compare", action="store_true", help="also compare outputs and gradients")
    ap.add_argument(
        "--dtype",
        choices=["float32", "float64"],
        default="float32",
        help="precision of the --compare computation in both frameworks",
    )
    args = ap.parse_args(argv)
    ok = True
    for name in args.models:
        pc = chainer_count(chainer_nets.get_model(name))
        tm = get_torch_model(name)
        pt = count_params(tm)
        line = f"{name:14s} chainer {pc:>11,d}  torch {pt:>11,d}  {'OK' if pc == pt else 'DIFF'}"
        line += f"  fwd {forward_flops(tm) / 1e9:.3f} GFLOP/img"
        ok &= pc == pt
        if args.compare:
            r = compare_with_chainer(name, dtype=args.dtype)
            line += f"  layers {int(r['layers'])} logits {r['logits']:.1e}"
            line += f" weight grads max {r['grad_max']:.1e} median {r['grad_median']:.1e}"
        print(line, flush=True)
    return 0 if ok else 1


# ----------------------------------------------------------------------------
# DenseNet-BC (paper 19) and ResNeXt-29 (paper 23): a concatenation-heavy and a
# grouped-convolution workload. Their layers are called in the same order as in
# chainer_nets.models.densenet / resnext, so copy_chainer_to_torch pairs them.
# ----------------------------------------------------------------------------


class DenseLayerTwin(nn.Module):
    """BN-ReLU-conv3x3 to k maps, or (bottleneck) BN-ReLU-conv1x1 to 4k then BN-ReLU-conv3x3."""

    def __init__(self, cin: int, growth: int, bottleneck: bool) -> None:
        super().__init__()
        self.bn1 = _bn(cin)
        self.bottleneck = bottleneck
        if bottleneck:
            self.conv1 = nn.Conv2d(cin, 4 * growth, 1, bias=False)
            self.bn2 = _bn(4 * growth)
            self.conv2 = nn.Conv2d(4 * growth, growth, 3, 1, 1, bias=False)
        else:
            self.conv1 = nn.Conv2d(cin, growth, 3, 1, 1, bias=False)

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        """The k new maps from the concatenation of all earlier ones."""
        h = self.conv1(F.relu(self.bn1(torch.cat(features, 1))))
        if self.bottleneck:
            h = self.conv2(F.relu(self.bn2(h)))
        return h


class DenseNetTwin(nn.Module):
    """DenseNet(-BC) for CIFAR: stem, three dense blocks, two compressing transitions, head."""

    def __init__(self, depth: int, growth: int, bottleneck: bool, compression: float) -> None:
        super().__init__()
        n = (depth - 4) // (6 if bottleneck else 3)
        ch = 2 * growth if bottleneck else 16
        self.conv1 = nn.Conv2d(3, ch, 3, 1, 1, bias=False)
        self.blocks = nn.ModuleList()
        self.transitions = nn.ModuleList()
        for i in range(3):
            self.blocks.append(
                nn.ModuleList(DenseLayerTwin(ch + j * growth, growth, bottleneck) for j in range(n))
            )
            ch += n * growth
            if i < 2:
                out = int(compression * ch)
                self.transitions.append(
                    nn.Sequential(
                        _bn(ch), nn.ReLU(), nn.Conv2d(ch, out, 1, bias=False), nn.AvgPool2d(2)
                    )
                )
                ch = out
        self.bn = _bn(ch)
        self.fc = nn.Linear(ch, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class scores."""
        h = self.conv1(x)
        for i, block in enumerate(self.blocks):
            features = [h]
            for layer in block:
                features.append(layer(features))
            h = torch.cat(features, 1)
            if i < 2:
                h = self.transitions[i](h)
        return self.fc(F.relu(self.bn(h)).mean(dim=(2, 3)))


class ResNeXtBlockTwin(nn.Module):
    """Post-activation bottleneck whose 3x3 convolution has C groups; projection shortcut
    (1x1 conv + BN) where the width changes, called before the transform as in Chainer."""

    def __init__(self, cin: int, width: int, cout: int, groups: int, stride: int) -> None:
        super().__init__()
        self.shortcut = (
            nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), _bn(cout))
            if cin != cout
            else None
        )
        self.conv1 = nn.Conv2d(cin, width, 1, bias=False)
        self.bn1 = _bn(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride, 1, groups=groups, bias=False)
        self.bn2 = _bn(width)
        self.conv3 = nn.Conv2d(width, cout, 1, bias=False)
        self.bn3 = _bn(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """ReLU(shortcut + BN(conv3(ReLU(BN(gconv(ReLU(BN(conv1 x))))))))."""
        s = self.shortcut(x) if self.shortcut is not None else x
        h = F.relu(self.bn1(self.conv1(x)))
        h = F.relu(self.bn2(self.conv2(h)))
        return F.relu(s + self.bn3(self.conv3(h)))


class ResNeXtTwin(nn.Module):
    """ResNeXt-(9n+2) C x d for CIFAR."""

    def __init__(self, depth: int, cardinality: int, base_width: int) -> None:
        super().__init__()
        n = (depth - 2) // 9
        self.conv1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False)
        self.bn1 = _bn(64)
        blocks, cin = [], 64
        for stage, planes in enumerate((64, 128, 256)):
            d = planes * base_width // 64
            for i in range(n):
                stride = 2 if stage > 0 and i == 0 else 1
                blocks.append(
                    ResNeXtBlockTwin(cin, cardinality * d, 4 * planes, cardinality, stride)
                )
                cin = 4 * planes
        self.blocks = nn.Sequential(*blocks)
        self.fc = nn.Linear(cin, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class scores."""
        h = self.blocks(F.relu(self.bn1(self.conv1(x))))
        return self.fc(h.mean(dim=(2, 3)))


def dense_or_grouped_twin(name: str) -> nn.Module | None:
    """The twin of a registered DenseNet or ResNeXt variant (None for other names)."""
    import re

    m = re.fullmatch(r"densenet(_bc)?(\d+)_k(\d+)", name)
    if m:
        bc = m.group(1) is not None
        return DenseNetTwin(int(m.group(2)), int(m.group(3)), bc, 0.5 if bc else 1.0)
    m = re.fullmatch(r"resnext(\d+)_(\d+)x(\d+)d", name)
    if m:
        return ResNeXtTwin(int(m.group(1)), int(m.group(2)), int(m.group(3)))
    return None


_get_torch_model_before_dense = get_torch_model


def get_torch_model(name: str) -> nn.Module:  # noqa: F811  (extends the dispatcher above)
    """The PyTorch twin of ``chainer_nets.get_model(name)``, DenseNet and ResNeXt included."""
    twin = dense_or_grouped_twin(name)
    return twin if twin is not None else _get_torch_model_before_dense(name)


if __name__ == "__main__":
    raise SystemExit(main())
