"""What runs in an executor's worker (a process of the pool, or a SLURM job): the stage's own context, built from
a plain :class:`ContextSpec`, its thread count and log level, and its outcome (a record, or a one-line error) sent
back to the parent, which alone writes the job's log. :mod:`wsr_bench.jobs.executor` schedules; this module is what
both of its backends send."""

from __future__ import annotations

import logging
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from wsr_bench.jobs.stage import JobContext, Stage, StageLog, StageRecord, time_stage

if TYPE_CHECKING:
    from wsr_bench.config import ExecutorConfig

#: the line a user without submitit gets
SLURM_EXTRA = "pip install 'wsr-bench[slurm]'"
LOG_FORMAT, LOG_DATEFMT = "%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S"


@dataclass(frozen=True)
class ExecutorOptions:
    """How :func:`run_graph` runs a job: ``kind`` local or slurm, ``workers`` stages at once (None on slurm: every
    ready stage), ``threads`` torch threads per stage, ``resources`` each SLURM job's (the config's section)."""

    kind: str = "local"
    workers: int | None = 1
    threads: int = 1
    resources: ExecutorConfig | None = None


@dataclass(frozen=True)
class ContextSpec:
    """What a worker needs to build its own :class:`JobContext` (plain, picklable): the job folder, device, whether
    to show per-batch bars, and the data config and seed its splits load from."""

    folder: Path
    device: str
    progress: bool
    data: Any = None
    seed: int = 0

    @classmethod
    def of(cls, ctx: JobContext, progress: bool | None = None) -> ContextSpec:
        return cls(ctx.log.folder, ctx.device, ctx.progress if progress is None else progress, ctx._data, ctx._seed)

    def context(self) -> JobContext:
        return JobContext(StageLog(self.folder, write=False), self.device, self.progress, data=self.data,
                          seed=self.seed)


@dataclass(frozen=True)
class Outcome:
    """What a stage's run came back with: its record, or a one-line ``error`` (and the traceback in ``detail``)."""

    record: StageRecord | None
    error: str | None = None
    detail: str = ""


_CONTEXTS: dict[str, JobContext] = {}  # one per job in a worker process (its splits are loaded once)


def init_worker(threads: int, log_level: int) -> None:
    """A worker process's start: the parent's log level and the stage's torch thread count."""
    from wsr_bench.infra.threads import set_threads

    logging.basicConfig(level=log_level, format=LOG_FORMAT, datefmt=LOG_DATEFMT)
    for handler in logging.getLogger().handlers:  # records a module's own logger lets through stop here too
        handler.setLevel(log_level)
    set_threads(threads)


def one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def run_captured(stage: Stage, ctx: JobContext) -> Outcome:
    """Run ``stage`` (unless done) in ``ctx``; an exception comes back as the outcome's error, never raised."""
    try:
        return Outcome(time_stage(stage, ctx, quiet=True))
    except Exception as exc:  # the scheduler decides what a failure stops
        return Outcome(None, one_line(exc), traceback.format_exc())


def run_in_worker(stage: Stage, spec: ContextSpec) -> Outcome:
    """A worker's task: ``stage`` in this process's context for the job ``spec`` describes."""
    key = repr(spec)
    if key not in _CONTEXTS:
        _CONTEXTS[key] = spec.context()
    return run_captured(stage, _CONTEXTS[key])
