"""Score a trained model on the CIFAR-10 test set.

    python -m chainer_nets.evaluate runs/resnet20            # a run directory
    python -m chainer_nets.evaluate runs/resnet20/snapshot_epoch_2

A run directory holds ``config.json`` (model name and the training set's
normalisation) and ``model.npz`` (the final weights); a trainer snapshot file
inside it can be scored instead of the final weights.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import chainer
import numpy as np

from chainer_nets import data as cdata
from chainer_nets.registry import UnknownModelError, get_model_info
from chainer_nets.runfolder import MODEL_FILE, UsageError, read_config, resolve_device


def evaluate_arrays(
    net: chainer.Chain, x: np.ndarray, y: np.ndarray, conv, device, batch: int = 256
) -> dict:
    """Mean softmax cross-entropy and accuracy of ``net`` on uint8 images ``x``, labels ``y``."""
    import chainer.functions as F

    loss_sum, correct = 0.0, 0
    with chainer.using_config("train", False), chainer.no_backprop_mode():
        for i in range(0, len(x), batch):
            xb, tb = conv(list(zip(x[i : i + batch], y[i : i + batch], strict=True)), device)
            logits = net(xb)
            loss_sum += float(F.softmax_cross_entropy(logits, tb, reduce="no").array.sum())
            correct += int((logits.array.argmax(axis=1) == tb).sum())
    return {"loss": loss_sum / len(x), "accuracy": correct / len(x)}


def load_run_model(path: str | Path) -> tuple[chainer.Chain, dict]:
    """Build the run's model and load its final weights (or a snapshot's); return it and the config."""
    path = Path(path)
    run_dir = path if path.is_dir() else path.parent
    config = read_config(run_dir)
    try:
        info = get_model_info(config["config"]["model"])
    except UnknownModelError as e:
        raise UsageError(f"{run_dir}: {e}") from e
    dtype = chainer.mixed16 if config["config"].get("dtype") == "mixed16" else np.float32
    with chainer.using_config("dtype", dtype):
        net = info.build()
    weights = run_dir / MODEL_FILE if path.is_dir() else path
    if not weights.is_file():
        raise UsageError(f"{weights} not found (the run has not finished; name a snapshot file)")
    try:
        if path.is_dir():
            chainer.serializers.load_npz(str(weights), net)
        else:  # a trainer snapshot: the net sits under the Classifier's "predictor"
            chainer.serializers.load_npz(str(weights), net, path="updater/model:main/predictor/")
    except Exception as e:
        raise UsageError(f"cannot load weights from {weights}: {type(e).__name__}: {e}") from e
    return net, config


def evaluate_run(path: str | Path, device: str = "@numpy", data_dir: str | None = None) -> dict:
    """Test-set loss and accuracy (%) of a run's model."""
    dev = resolve_device(device)
    net, config = load_run_model(path)
    net.to_device(dev)
    ds = cdata.load_cifar10(data_dir)
    in_dtype = np.float16 if config["config"].get("dtype") == "mixed16" else np.float32
    conv = cdata.AugmentConverter(
        config["normalize_mean"], config["normalize_std"], augment=False, dtype=in_dtype
    )
    x, y = cdata.take_subset(ds.test_x, ds.test_y, config["config"].get("test_subset"))
    res = evaluate_arrays(net, x, y, conv, dev)
    return {
        "model": config["config"]["model"],
        "test_images": len(x),
        "test_loss": res["loss"],
        "test_accuracy": round(100 * res["accuracy"], 2),
    }


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m chainer_nets.evaluate``."""
    p = argparse.ArgumentParser(
        prog="python -m chainer_nets.evaluate", description=__doc__.split("\n")[0]
    )
    p.add_argument("run", help="run directory, or a snapshot file inside one")
    p.add_argument("--device", default="@numpy")
    p.add_argument("--data-dir")
    a = p.parse_args(argv)
    try:
        res = evaluate_run(a.run, a.device, a.data_dir)
    except (UsageError, cdata.DataError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(json.dumps(res, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
