"""One MPI rank of a test run: records its pid as ``rank<R>.pid`` in ``$MPI_TEST_PIDS`` (when
set, so a test can kill one rank), then runs the training CLI with the tiny test model."""

from __future__ import annotations

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import tiny_run  # noqa: E402

if __name__ == "__main__":
    if pids := os.environ.get("MPI_TEST_PIDS"):
        rank = os.environ.get("PMI_RANK") or os.environ.get("OMPI_COMM_WORLD_RANK") or "x"
        (Path(pids) / f"rank{rank}.pid").write_text(str(os.getpid()))
    tiny_run.install()
    from chainer_nets.train import main

    sys.exit(main(sys.argv[1:]))
