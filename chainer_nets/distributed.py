"""Data-parallel training over MPI processes with ChainerMN (Chainer's own distributed layer).

    mpiexec -n 2 python -m chainer_nets.train --model resnet20 --communicator naive
    mpiexec -n 8 python -m chainer_nets.train --model wrn28_10 --device @cupy \\
        --communicator pure_nccl

Every one of the :math:`N` ranks holds the whole model. The recipe's batch
:math:`B` stays the *global* batch: each iteration every rank draws the same
global batch from the same epoch order (a function of the seed and the epoch,
:class:`chainer_nets.data.SeededOrderSampler`) and trains on its own contiguous
part of :math:`B/N` images; ChainerMN's multi-node optimizer averages the
gradients before each identical update,

.. math::  g = \\frac{1}{N} \\sum_{r=1}^{N} \\frac{1}{B/N} \\sum_{i \\in \\mathcal{B}_r}
           \\nabla \\ell_i = \\frac{1}{B} \\sum_{i \\in \\mathcal{B}} \\nabla \\ell_i,

the gradient one process would compute on the whole batch. Batch normalisation
normalises each rank's :math:`B/N` images by their own statistics (as the
papers' multi-GPU runs did) unless ``--sync-bn`` replaces every BN link by
ChainerMN's ``MultiNodeBatchNormalization``, which uses the global batch's.

Evaluation is split the same way and the sums of loss and correct answers are
added over the ranks. Rank 0 alone writes the run folder; snapshots hold every
rank's random state, so ``--resume`` with the same :math:`N` restores each rank.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any

import chainer
import numpy as np

from chainer_nets.runfolder import UsageError

#: ChainerMN's communicators; ``naive`` is the one that runs on the CPU.
COMMUNICATORS = (
    "naive", "flat", "hierarchical", "two_dimensional", "single_node", "non_cuda_aware",
    "pure_nccl",
)  # fmt: skip


@dataclass
class Dist:
    """The communicator of a data-parallel run and this process's place in it."""

    comm: Any
    name: str

    @property
    def rank(self) -> int:
        """This process's rank, 0..size-1."""
        return self.comm.rank

    @property
    def size(self) -> int:
        """The number of processes."""
        return self.comm.size

    @property
    def is_root(self) -> bool:
        """Whether this process writes the run folder (rank 0)."""
        return self.comm.rank == 0


def setup(name: str | None) -> Dist | None:
    """The ChainerMN communicator ``name`` (None without ``--communicator``); UsageError."""
    if name is None:
        return None
    if name not in COMMUNICATORS:
        raise UsageError(f"--communicator must be one of {', '.join(COMMUNICATORS)}, got {name}")
    try:
        import mpi4py  # noqa: F401
    except ImportError as e:
        raise UsageError(
            "--communicator needs mpi4py and an MPI library: pip install 'chainer_nets[mpi]'"
        ) from e
    import chainermn  # imported late: it needs mpi4py, and chainer_nets.compat before it

    try:
        comm = chainermn.create_communicator(name)
    except Exception as e:  # noqa: BLE001 - e.g. NCCL missing for pure_nccl
        raise UsageError(f"--communicator {name} cannot be created: {type(e).__name__}: {e}") from e
    return Dist(comm, name)


def device_spec(spec: str, dist: Dist | None) -> str:
    """``@cupy`` (no index) becomes ``@cupy:R`` with R the rank within its node."""
    if dist is not None and spec in ("@cupy", "cupy"):
        return f"@cupy:{dist.comm.intra_rank}"
    return spec


def check(dist: Dist | None, batch: int, device: chainer.backend.Device) -> None:
    """UsageError when the global batch does not split evenly or the communicator needs a GPU."""
    if dist is None:
        return
    if batch % dist.size:
        raise UsageError(
            f"the global batch size {batch} does not divide by the {dist.size} processes; "
            f"choose --batch-size as a multiple of {dist.size} or another -n"
        )
    if device.xp is np and dist.name != "naive":
        raise UsageError(
            f"--communicator {dist.name} needs GPUs (--device @cupy); on the CPU use naive"
        )


def agree(dist: Dist | None, step: Any) -> Any:
    """Run ``step()`` on every rank; when it fails on any, raise the first failure on all of
    them (so they stop together, before any collective, and rank 0 alone reports it)."""
    if dist is None:
        return step()
    try:
        out, err = step(), None
    except Exception as e:  # noqa: BLE001 - passed on to every rank below
        out, err = None, e
    errors = dist.comm.mpi_comm.allgather(None if err is None else (type(err), str(err)))
    first = next((e for e in errors if e is not None), None)
    if first is not None:
        raise first[0](first[1]) from err
    return out


def seed(seed: int, dist: Dist | None) -> int:
    """This rank's seed of NumPy's generator (dropout masks differ between ranks)."""
    if dist is None or dist.rank == 0:
        return seed
    return int(np.random.SeedSequence([seed, dist.rank]).generate_state(1)[0])


def sync_batch_norm(net: chainer.Chain, dist: Dist) -> chainer.Chain:
    """A copy of ``net`` whose BatchNormalization links are MultiNodeBatchNormalization.

    ChainerMN computes the global statistics in its subclass of Chainer's generic BN
    implementation; :mod:`chainer_nets.cpu_fast` leaves such subclasses on Chainer's code.
    """
    import chainermn

    return chainermn.links.create_mnbn_model(net, dist.comm)


def multi_node_optimizer(optimizer: chainer.Optimizer, dist: Dist) -> chainer.Optimizer:
    """``optimizer`` averaging gradients over the ranks, starting from rank 0's weights.

    ChainerMN's optimizer spends its first update on broadcasting the weights (that
    batch trains nothing); when the weights exist already they are broadcast here,
    so every iteration trains, as in one process.
    """
    import chainermn

    opt = chainermn.create_multi_node_optimizer(optimizer, dist.comm)
    if all(p.array is not None for p in opt.target.params()):
        opt.is_changed(opt.target)  # records the parameters: no broadcast at the first update
        dist.comm.bcast_data(opt.target)
    return opt


def mean_bn_statistics(model: chainer.Link, dist: Dist) -> chainer.training.Extension:
    """Averages the BN running statistics over the ranks at every epoch end, before the
    evaluation and the snapshot (per-rank BN; all ranks then score and save one model)."""
    from chainermn.extensions import AllreducePersistent

    return AllreducePersistent(model, dist.comm)


def part(n: int, dist: Dist | None) -> slice:
    """This rank's contiguous part of ``n`` items."""
    if dist is None:
        return slice(0, n)
    return slice(n * dist.rank // dist.size, n * (dist.rank + 1) // dist.size)


def reduce_scores(res: dict, n: int, dist: Dist | None) -> dict:
    """Per-image loss and accuracy over every rank's part (``res`` scores ``n`` images here)."""
    if dist is None:
        return res
    loss, correct, total = np.sum(
        dist.comm.mpi_comm.allgather((res["loss"] * n, round(res["accuracy"] * n), n)), axis=0
    )
    return {"loss": float(loss / total), "accuracy": float(correct / total)}


class MeanOverRanks(chainer.training.Extension):
    """Replaces this iteration's ``main/loss`` and ``main/accuracy`` by their mean over the
    ranks (equal parts of the batch, so the global batch's mean). ChainerMN's
    ObservationAggregator does this too, but needs ChainerX in Chainer 7.8.1."""

    trigger = (1, "iteration")
    priority = chainer.training.PRIORITY_EDITOR
    keys = ("main/loss", "main/accuracy")

    def __init__(self, dist: Dist) -> None:
        self.dist = dist

    def __call__(self, trainer: chainer.training.Trainer) -> None:
        """Average the observed values (one host read and one small all-reduce)."""
        obs = trainer.observation
        keys = [k for k in self.keys if k in obs]
        local = np.array([float(getattr(obs[k], "array", obs[k])) for k in keys])
        total = self.dist.comm.mpi_comm.allreduce(local)
        for k, v in zip(keys, total / self.dist.size, strict=True):
            obs[k] = float(v)


def abort(dist: Dist | None, message: str, code: int) -> None:
    """Report a failure of this rank and stop every rank (MPI_Abort); nothing without MPI."""
    if dist is None or dist.size == 1:
        return
    print(f"error on rank {dist.rank} of {dist.size}: {message}", file=sys.stderr, flush=True)
    dist.comm.mpi_comm.Abort(code)
