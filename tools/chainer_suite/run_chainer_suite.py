"""Run Chainer 7.8.1's own test suite against the installed Chainer, with chainer_nets.compat.

Usage (from anywhere; needs git, network access for the clone, and a Python environment with
chainer==7.8.1, numpy, pytest, mock; scipy and h5py are optional and enable more tests)::

    python tools/chainer_suite/run_chainer_suite.py --clone --src chainer-v7.8.1 --out suite-logs
    python tools/chainer_suite/run_chainer_suite.py --src chainer-v7.8.1 --areas core links

``--clone`` runs ``git clone --depth 1 --branch v7.8.1 https://github.com/chainer/chainer``
into ``--src`` when that directory does not exist yet. The checkout's ``chainer`` package is
never imported: each area runs in a fresh interpreter started in the checkout's ``tests``
folder, which imports ``chainer_nets`` (installing the compat layer) and then calls
``pytest.main``. pytest 9 imports the classes named in Chainer's ``filterwarnings`` setting
(``chainer.warnings.PerformanceWarning``) before it loads ``-p`` plugins, so the compat layer
has to be in place before pytest starts, hence the bootstrap instead of a plugin.

Chainer's pytest configuration (``setup.cfg``: ``filterwarnings = error`` and its ignores,
markers) is used unchanged, with the marker filter of Chainer's CPU CI.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
CHAINER_URL = "https://github.com/chainer/chainer"
CHAINER_TAG = "v7.8.1"
MARKERS = "not gpu and not cudnn and not ideep and not slow"
T = "chainer_tests"

#: area name -> paths relative to the checkout's tests/ folder.
AREAS: dict[str, list[str]] = {
    "core": [f"{T}/test_*.py"],
    "functions/activation": [f"{T}/functions_tests/activation_tests"],
    "functions/array": [f"{T}/functions_tests/array_tests"],
    "functions/connection": [f"{T}/functions_tests/connection_tests"],
    "functions/evaluation": [f"{T}/functions_tests/evaluation_tests"],
    "functions/loss": [f"{T}/functions_tests/loss_tests"],
    "functions/noise": [f"{T}/functions_tests/noise_tests"],
    "functions/normalization": [f"{T}/functions_tests/normalization_tests"],
    "functions/pooling": [f"{T}/functions_tests/pooling_tests"],
    "links": [f"{T}/links_tests"],
    "optimizers": [f"{T}/optimizers_tests"],
    "serializers": [f"{T}/serializers_tests"],
    "training": [f"{T}/training_tests"],
    "iterators": [f"{T}/iterators_tests"],
    "dataset": [f"{T}/dataset_tests"],
    "datasets": [f"{T}/datasets_tests"],
}

BOOTSTRAP = (
    "import sys\n"
    "import chainer_nets  # installs chainer_nets.compat before Chainer is imported\n"
    "import pytest\n"
    "sys.exit(pytest.main(sys.argv[1:]))\n"
)

_COUNT = re.compile(r"(\d+) (passed|failed|skipped|deselected|errors?|xfailed|xpassed)")


def parse_summary(text: str) -> dict[str, int]:
    """Counts from pytest's final summary line (``3 failed, 10 passed, ... in 1.2s``)."""
    lines = [line for line in text.splitlines() if re.search(r" in [\d.]+s", line)]
    counts: dict[str, int] = {}
    if lines:
        for number, kind in _COUNT.findall(lines[-1]):
            counts["errors" if kind.startswith("error") else kind] = int(number)
    return counts


def run_area(
    name: str, src: Path, out: Path, extra: list[str]
) -> tuple[str, dict[str, int], float]:
    """Run one area in a fresh interpreter; write its log and return its counts."""
    tests = src / "tests"
    paths = [
        str(p.relative_to(tests)) for pattern in AREAS[name] for p in sorted(tests.glob(pattern))
    ]
    log = out / (name.replace("/", "_") + ".log")
    args = ["-q", "-rfE", "--tb=short", "-p", "no:cacheprovider", "--continue-on-collection-errors"]
    args += ["-m", MARKERS, *extra, *paths]
    env = dict(
        os.environ, PYTHONPATH=os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")])
    )
    start = time.monotonic()
    with log.open("w") as f:
        # -c ... with the checkout's root as rootdir, so that Chainer's setup.cfg is the config.
        subprocess.run(
            [
                sys.executable,
                "-c",
                BOOTSTRAP,
                "--rootdir",
                str(src),
                "-c",
                str(src / "setup.cfg"),
                *args,
            ],
            cwd=tests,
            env=env,
            stdout=f,
            stderr=subprocess.STDOUT,
            check=False,
        )
    return name, parse_summary(log.read_text()), time.monotonic() - start


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--src", type=Path, required=True, help="Chainer v7.8.1 checkout")
    parser.add_argument("--clone", action="store_true", help="git clone the checkout if missing")
    parser.add_argument("--out", type=Path, default=Path("chainer-suite-logs"), help="log folder")
    parser.add_argument("--areas", nargs="*", default=list(AREAS), choices=list(AREAS))
    parser.add_argument("--jobs", type=int, default=1, help="areas run in parallel")
    parser.add_argument("pytest_args", nargs="*", help="extra pytest arguments (after --)")
    args = parser.parse_args(argv)

    if not args.src.exists():
        if not args.clone:
            parser.error(f"{args.src} does not exist (pass --clone to fetch it)")
        subprocess.run(
            ["git", "clone", "--depth", "1", "--branch", CHAINER_TAG, CHAINER_URL, str(args.src)],
            check=True,
        )
    src = args.src.resolve()
    args.out.mkdir(parents=True, exist_ok=True)

    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        results = list(pool.map(lambda a: run_area(a, src, args.out, args.pytest_args), args.areas))

    print("| area | passed | failed | errors | skipped | deselected | time |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    total: dict[str, int] = {}
    for name, counts, seconds in results:
        for key, value in counts.items():
            total[key] = total.get(key, 0) + value
        cells = [
            str(counts.get(k, 0)) for k in ("passed", "failed", "errors", "skipped", "deselected")
        ]
        print(f"| {name} | {' | '.join(cells)} | {seconds:.0f} s |")
    cells = [str(total.get(k, 0)) for k in ("passed", "failed", "errors", "skipped", "deselected")]
    print(f"| **total** | {' | '.join(cells)} | |")
    print(f"logs: {args.out}")
    return 1 if total.get("failed") or total.get("errors") else 0


if __name__ == "__main__":
    sys.exit(main())
