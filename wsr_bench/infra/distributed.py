"""Distributed data parallel through ``torchrun``: process-group set-up, sharded loaders, metric reduction.

One ``train_epoch`` serves both worlds: the caller wraps the model with ``wrap_ddp`` (a no-op for one process)
and builds its loader with ``shard_loader``; ``train_epoch``/``eval_epoch`` reduce their metrics with
``all_reduce_stats``; only ``is_main_process()`` writes files.

Why a DDP run equals a single-process run with the same global batch: ``shard_loader`` gives every rank a strided
share of the same seeded permutation (``DistributedSampler``), so the union of the ranks' k-th batches is the
single process's k-th batch; each rank's loss is a per-example mean over an equal share, and DDP averages
gradients, so the averaged gradient is the global-batch mean gradient. Two things break the equality and are
the caller's choice: BatchNorm statistics are per-rank unless the model uses SyncBatchNorm (CUDA only, see
``wrap_ddp(sync_bn=True)``), and random attack starts draw from each rank's own generator.

Launch::

    torchrun --nproc_per_node=8 -m wsr_bench.cli train configs/retrain_pgd7.yaml --out runs/pgd7
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from wsr_bench.infra.runtime import resolve_device
from wsr_bench.infra.threads import apply_default_threads

logger = logging.getLogger(__name__)

__all__ = ["DistInfo", "TrainView", "all_gather_object", "all_reduce_stats", "any_rank", "barrier",
           "broadcast_object", "cleanup", "comm_device", "get_rank", "get_world_size", "is_distributed",
           "is_main_process", "joined_process_group", "set_epoch", "setup_distributed", "shard_loader",
           "unwrap_model", "wrap_ddp"]


@dataclass(frozen=True)
class DistInfo:
    """Where this process stands: global rank, world size, rank on this node, and the device it should use."""

    rank: int
    world_size: int
    local_rank: int
    device: str

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"environment variable {name}={value!r} must be an integer (set by torchrun)") from None


def setup_distributed(device: str | None = None, backend: str | None = None) -> DistInfo:
    """Join the process group described by torchrun's ``RANK``/``WORLD_SIZE``/``LOCAL_RANK`` variables.

    Without those variables (or with ``WORLD_SIZE=1``) nothing is initialised and rank 0 of 1 is returned, so the
    same code runs as a plain script. Backend: NCCL when the device is CUDA, gloo otherwise (CPU).

    Args:
        device: ``"cpu"``, ``"cuda"`` or ``None`` (CUDA when available). Under CUDA each rank takes
            ``cuda:LOCAL_RANK``.
        backend: force a backend (``"gloo"``/``"nccl"``); default picks by device.
    """
    world, rank, local = _env_int("WORLD_SIZE", 1), _env_int("RANK", 0), _env_int("LOCAL_RANK", 0)
    device = resolve_device(device or "auto")
    cuda = device.startswith("cuda")
    if cuda and world > 1:
        device = f"cuda:{local}"
        torch.cuda.set_device(local)
    if world > 1 and not dist.is_initialized():
        backend = backend or ("nccl" if cuda else "gloo")
        _import_dynamo_before_the_group()
        dist.init_process_group(backend=backend, rank=rank, world_size=world)
        logger.info("joined process group: rank %d/%d (local %d), backend %s, device %s", rank, world, local,
                    backend, device)
    return DistInfo(rank=get_rank(), world_size=get_world_size(), local_rank=local, device=device)


def _import_dynamo_before_the_group() -> None:
    """Import ``torch._dynamo`` now, before the process group exists, so that ``cleanup`` can really end the group.

    Why: imported while a group exists (the optimizers import it lazily, at their first ``step``), torch 2.14's
    ``torch._dynamo`` keeps the default group alive (no Python object we could find holds it), so
    ``destroy_process_group`` no longer frees it and gloo's worker threads (``pt_gloo_runloop``) live on into
    interpreter shutdown. A worker thread still releasing a finished collective's Python tensors then needs the GIL
    during ``Py_FinalizeEx`` and the process aborts with ``terminate called without an active exception`` after
    all its work is done (the native stack of such a core: ``ProcessGroupGloo::runLoop`` -> ``~AsyncAllgatherWork``
    -> ``gil_scoped_acquire``). Imported first, it holds no group, and ``destroy_process_group`` frees the group
    and joins its threads, so none is left at shutdown. ``tests/test_distributed.py`` checks that no gloo thread
    survives ``cleanup``.
    """
    import torch._dynamo  # noqa: F401


def is_distributed() -> bool:
    """True inside an initialised process group with more than one rank."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def get_rank() -> int:
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def get_world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def is_main_process() -> bool:
    """Rank 0 (or the only process): the one that writes files and prints."""
    return get_rank() == 0


def comm_device() -> torch.device:
    """Where collective tensors must live: the current CUDA device under NCCL, the CPU otherwise."""
    if is_distributed() and dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def any_rank(flag: bool) -> bool:
    """True on every rank when ``flag`` is true on at least one (so all ranks can stop together)."""
    if not is_distributed():
        return bool(flag)
    t = torch.tensor([1.0 if flag else 0.0], device=comm_device())
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item() > 0)


def barrier() -> None:
    if is_distributed():
        dist.barrier()


def cleanup(wait_for_peers: bool = True) -> None:
    """Leave the process group (no-op outside one).

    With ``wait_for_peers`` every rank first meets the others at a barrier, so that no rank leaves while a peer still
    waits on a collective. Pass ``False`` on an error path, where a peer may never arrive. ``destroy_process_group``
    then frees the group and joins gloo's worker threads, provided nothing else holds the group (see
    ``_import_dynamo_before_the_group``). Without that, a worker thread outlived the group into interpreter
    shutdown and a launch of the two-process sweep test could abort after all its work was done: rarely, and more
    often on a loaded machine (once in ``make test``, once in 41 launches beside other torchrun jobs, 0 in 120
    launches alone or two at a time). The barrier alone made it rarer, not impossible.
    """
    if dist.is_available() and dist.is_initialized():
        if wait_for_peers and dist.get_world_size() > 1:
            dist.barrier()
        dist.destroy_process_group()


@contextmanager
def joined_process_group(device: str | None = None) -> Iterator[DistInfo]:
    """``setup_distributed(device)`` for the ``with`` block, and leave the group at its end if this call joined it.

    A group the caller already set up (a pipeline calling the search, a test's worker) is kept. On a normal exit
    the ranks leave together (``cleanup()``); when the block raises, this rank leaves without waiting, since its
    peers may be stuck or gone, and torchrun stops them.

    Every run of the Python API (search, training, evaluation, pipeline, zoo) enters here first, so this is also
    where the process gets the package's default CPU thread count, once
    (:func:`wsr_bench.infra.threads.apply_default_threads`).
    """
    apply_default_threads()
    owns_group = not (dist.is_available() and dist.is_initialized())
    info = setup_distributed(device)
    try:
        yield info
    except BaseException:
        if owns_group:
            cleanup(wait_for_peers=False)
        raise
    if owns_group:
        cleanup()


def all_gather_object(obj: Any) -> list[Any]:
    """Every rank's ``obj``, in rank order (``[obj]`` outside a process group)."""
    if not is_distributed():
        return [obj]
    out: list[Any] = [None] * get_world_size()
    dist.all_gather_object(out, obj)
    return out


def broadcast_object(obj: Any, src: int = 0) -> Any:
    """Rank ``src``'s ``obj`` on every rank (e.g. an error message or a decision taken by rank 0)."""
    if not is_distributed():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


class TrainView(nn.Module):
    """What ``wrap_ddp`` puts inside DistributedDataParallel: ``forward(x, aux=False)``.

    DDP only synchronises gradients of forwards that go through its own ``forward``, which calls the wrapped
    module's ``forward``; the view routes ``aux=True`` to ``forward_with_aux`` (DARTS' auxiliary head) so that
    training with the auxiliary loss works unchanged under DDP.
    """

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor, aux: bool = False) -> Any:
        return self.model.forward_with_aux(x) if aux else self.model(x)


def wrap_ddp(model: nn.Module, find_unused_parameters: bool = False, sync_bn: bool = False) -> nn.Module:
    """Wrap ``model`` (already on its device) for data-parallel training; returns it unchanged for one process.

    Args:
        model: the network.
        find_unused_parameters: DDP's flag (needed when some parameters get no gradient in a step, e.g. a
            super-network whose sampled sub-network skips operations).
        sync_bn: convert BatchNorm to SyncBatchNorm so statistics are computed over the global batch (CUDA
            only; ignored with a warning on CPU).

    Use ``unwrap_model`` to get the network back (for attacks, evaluation, state dicts).
    """
    if not is_distributed():
        return model
    device = next(model.parameters()).device
    if sync_bn:
        if device.type == "cuda":
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        else:
            logger.warning("SyncBatchNorm needs CUDA; keeping per-rank BatchNorm statistics on %s", device)
    ids = [device.index] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(TrainView(model), device_ids=ids,
                                               find_unused_parameters=find_unused_parameters)


def unwrap_model(model: nn.Module) -> nn.Module:
    """The network inside DDP / ``TrainView`` wrappers (itself when not wrapped)."""
    if isinstance(model, nn.parallel.DistributedDataParallel):
        model = model.module
    return model.model if isinstance(model, TrainView) else model


def shard_loader(dataset: Dataset, batch_size_global: int, seed: int = 0, shuffle: bool = True,
                 drop_last: bool = False, num_workers: int = 0) -> DataLoader:
    """A loader over this rank's shard: ``DistributedSampler`` with per-rank batch = global batch / world size.

    A single process gets the same sampler with one replica, so its k-th batch is exactly the union of the DDP
    ranks' k-th batches (when ``len(dataset)`` is a multiple of the world size; otherwise the sampler pads the
    last batch by repeating examples). Call ``set_epoch(loader, epoch)`` before each epoch for a new order.
    """
    world = get_world_size()
    if batch_size_global < 1 or batch_size_global % world:
        raise ValueError(f"global batch size {batch_size_global} must be a positive multiple of the world size "
                         f"{world} (each rank gets global/world examples)")
    if len(dataset) == 0:
        raise ValueError("cannot build a loader over an empty dataset")
    sampler = DistributedSampler(dataset, num_replicas=world, rank=get_rank(), shuffle=shuffle, seed=seed,
                                 drop_last=drop_last)
    return DataLoader(dataset, batch_size=batch_size_global // world, sampler=sampler, drop_last=drop_last,
                      num_workers=num_workers)


def set_epoch(loader: DataLoader, epoch: int) -> None:
    """Give a ``shard_loader`` its epoch (the shuffle order is a function of seed and epoch only)."""
    sampler = getattr(loader, "sampler", None)
    if hasattr(sampler, "set_epoch"):
        sampler.set_epoch(epoch)


_SUM_KEYS = ("n",)
_MAX_KEYS = ("seconds", "attack_seconds", "steps")


def all_reduce_stats(stats: dict[str, Any]) -> dict[str, Any]:
    """Combine per-rank epoch statistics: ``n`` summed, times and ``steps`` maxed, other numbers averaged
    weighted by ``n``. Non-numeric entries are kept from this rank. Identity outside a process group.
    """
    if not is_distributed():
        return dict(stats)
    keys = sorted(k for k, v in stats.items() if isinstance(v, int | float) and not isinstance(v, bool))
    n = float(stats.get("n", 1))
    dev = comm_device()
    sums = torch.tensor([float(stats[k]) if k in _SUM_KEYS + _MAX_KEYS else float(stats[k]) * n for k in keys]
                        + [n], dtype=torch.float64, device=dev)
    maxes = torch.tensor([float(stats[k]) for k in keys if k in _MAX_KEYS] + [0.0], dtype=torch.float64, device=dev)
    dist.all_reduce(sums)
    dist.all_reduce(maxes, op=dist.ReduceOp.MAX)
    out, total, it_max = dict(stats), float(sums[-1]), iter(maxes.tolist())
    for i, k in enumerate(keys):
        if k in _MAX_KEYS or k in _SUM_KEYS:
            value = next(it_max) if k in _MAX_KEYS else float(sums[i])
            out[k] = int(round(value)) if isinstance(stats[k], int) else value
        else:
            out[k] = float(sums[i]) / total if total > 0 else math.nan
    return out
