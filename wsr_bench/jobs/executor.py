"""Running a job's stages as a graph: every stage starts as soon as the stages it needs have finished, so independent
stages (the baselines' trainings, the evaluations) run side by side.

:func:`run_graph` is the scheduler; it hands each ready stage to a backend and keeps the job's bookkeeping in the
parent process:

- ``workers == 1``: the stages run one after another in this process, with the job's own :class:`JobContext` (the
  behaviour before this module; also what runs under ``torchrun``);
- ``local`` with ``workers > 1``: a :class:`concurrent.futures.ProcessPoolExecutor` of ``workers`` spawned processes,
  each with its own torch thread count and its own :class:`JobContext` (built once per process from a picklable
  :class:`ContextSpec`); the workers' per-batch progress bars are off;
- ``slurm``: one submitit job per stage (:mod:`wsr_bench.jobs.slurm`), resources from the config's ``executor``
  section.

Order: a ready stage is started in the order of the recipe's list; two stages that write the same output (the zoo's
searches of several ``wsrnet`` members into one ``genotype.json``, its leaderboard rebuilds) run one after the other.
Every stage is checked in the parent first: one whose outputs exist and check out is skipped without a process. The
parent alone appends each record (run or skipped) to ``OUT/stages.jsonl``, in the order the stages finish.

Failures: a stage that raises stops the stages that need it (directly or not); the others still run, and the job
then raises :class:`StageFailure`, one line naming the failed stage(s) and the ones left out. Stages write their
outputs atomically, so a failed or killed stage leaves nothing half-written; a rerun skips what is done and resumes a
half-done search, training or evaluation from its own checkpoint.

The display: one tqdm bar over the stages (on stderr) whose text lists the running stages, and one log line per
stage started, skipped, finished or failed.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import logging
import multiprocessing
import os
import sys
import traceback
from collections.abc import Sequence
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from wsr_bench.infra.threads import available_cores, resolve_threads
from wsr_bench.jobs.stage import JobContext, Stage, StageRecord, check_order
from wsr_bench.jobs.worker import (
    ContextSpec,
    ExecutorOptions,
    Outcome,
    init_worker,
    one_line,
    run_captured,
    run_in_worker,
)

if TYPE_CHECKING:
    from wsr_bench.config import ExecutorConfig

logger = logging.getLogger(__name__)

__all__ = ["ContextSpec", "ExecutorOptions", "StageFailure", "default_workers", "resolve_executor", "run_graph",
           "stage_threads"]


class StageFailure(RuntimeError):
    """One or more stages failed: ``failed`` maps each to its one-line error, ``blocked`` lists the stages left out
    because they need one of them (directly or not)."""

    def __init__(self, failed: dict[str, str], blocked: Sequence[str] = ()):
        self.failed, self.blocked = dict(failed), list(blocked)
        text = "; ".join(f"{name} ({error})" for name, error in self.failed.items())
        more = f"; not run, as they need a failed stage: {', '.join(self.blocked)}" if self.blocked else ""
        super().__init__(f"stage(s) failed: {text}{more} (a rerun continues from what the others left)")


# ------------------------------------------------------------------------------------------------ options
def stage_threads(flag: int | None = None) -> int:
    """Torch threads one stage uses: ``--threads`` / ``WSR_BENCH_THREADS`` / the default of
    :mod:`wsr_bench.infra.threads`, else ``OMP_NUM_THREADS`` when set, else every available core (torch's own)."""
    count, _ = resolve_threads(flag)
    if count is not None:
        return count
    raw = os.environ.get("OMP_NUM_THREADS", "").strip()
    return int(raw) if raw.isdigit() and int(raw) >= 1 else available_cores()


def default_workers(threads: int, cores: int | None = None) -> int:
    """Stages at once on this machine by default: the available cores // threads per stage (at least 1)."""
    return max(1, (available_cores() if cores is None else cores) // max(1, threads))


def resolve_executor(section: ExecutorConfig, *, kind: str | None = None, workers: int | None = None,
                     threads: int | None = None) -> tuple[ExecutorOptions, str | None]:
    """The options of a job from the config's ``executor`` section and the flags (``--executor``, ``--workers``,
    ``--threads``; a flag wins). Returns the options and a one-line warning (more workers than cores) or None.

    Raises:
        ValueError: ``--workers`` below 1, an unknown executor, or ``slurm`` without submitit (naming the extra).
    """
    from wsr_bench.config import EXECUTOR_KINDS

    kind = kind or section.kind
    if kind not in EXECUTOR_KINDS:
        raise ValueError(f"--executor must be one of {', '.join(EXECUTOR_KINDS)}, got {kind!r}")
    if workers is not None and workers < 1:
        raise ValueError(f"--workers must be >= 1, got {workers}")
    workers = workers if workers is not None else section.workers
    if kind == "slurm":
        from wsr_bench.jobs.slurm import require_submitit

        require_submitit()
        return ExecutorOptions("slurm", workers, section.cpus_per_stage, section), None
    per_stage = stage_threads(threads)
    cores = available_cores()
    workers = workers if workers is not None else default_workers(per_stage, cores)
    warning = None
    if workers * per_stage > cores:
        warning = (f"warning: {workers} workers x {per_stage} thread(s) on {cores} available CPU core(s): the stages "
                   f"will wait for each other (default --workers: cores // threads = {default_workers(per_stage)})")
    return ExecutorOptions("local", workers, per_stage, section), warning


# ------------------------------------------------------------------------------------------------ backends
class Backend(Protocol):
    """Where :func:`run_graph` sends a ready stage; a handle is whatever ``submit`` returns."""

    capacity: int

    def submit(self, stage: Stage) -> Any: ...

    def wait(self, handles: list[Any]) -> list[Any]: ...

    def outcome(self, handle: Any) -> Outcome: ...

    def close(self) -> None: ...


class _Ran:
    """An inline stage's handle: it has run by the time ``submit`` returns."""

    def __init__(self, outcome: Outcome):
        self.outcome = outcome


class InlineBackend:
    """One stage at a time, in this process, with the job's own context."""

    capacity = 1

    def __init__(self, ctx: JobContext):
        self.ctx = ctx

    def submit(self, stage: Stage) -> _Ran:
        return _Ran(run_captured(stage, self.ctx))

    def wait(self, handles: list[Any]) -> list[Any]:
        return list(handles)

    def outcome(self, handle: _Ran) -> Outcome:
        return handle.outcome

    def close(self) -> None:
        pass


class PoolBackend:
    """``workers`` spawned processes (:class:`concurrent.futures.ProcessPoolExecutor`), each with ``threads`` torch
    threads and its own context; a process that dies fails its stage and the pool is started again."""

    def __init__(self, workers: int, threads: int, spec: ContextSpec, log_level: int):
        self.capacity, self.threads, self.spec, self.level = workers, threads, spec, log_level
        self.pool = self._start()

    def _start(self) -> cf.ProcessPoolExecutor:
        return cf.ProcessPoolExecutor(self.capacity, mp_context=multiprocessing.get_context("spawn"),
                                      initializer=init_worker, initargs=(self.threads, self.level))

    def submit(self, stage: Stage) -> cf.Future:
        try:
            return self.pool.submit(run_in_worker, stage, self.spec)
        except BrokenProcessPool:
            self.pool.shutdown(wait=False, cancel_futures=True)
            self.pool = self._start()
            return self.pool.submit(run_in_worker, stage, self.spec)

    def wait(self, handles: list[cf.Future]) -> list[cf.Future]:
        done, _ = cf.wait(handles, return_when=cf.FIRST_COMPLETED)
        return list(done)

    def outcome(self, handle: cf.Future) -> Outcome:
        try:
            return handle.result()
        except BrokenProcessPool as exc:
            return Outcome(None, f"its worker process died ({exc})")
        except Exception as exc:  # e.g. a stage that does not pickle
            return Outcome(None, one_line(exc), traceback.format_exc())

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)


def make_backend(options: ExecutorOptions, ctx: JobContext, bar: bool = False) -> Backend:
    """The backend ``options`` ask for (one worker locally: this process). Workers log at the parent's level, or
    only warnings while the parent shows its bar over the stages (its own lines say when each starts and ends)."""
    level = logging.getLogger("wsr_bench").getEffectiveLevel()
    level = max(level, logging.WARNING) if bar else level
    if options.kind == "slurm":
        from wsr_bench.jobs.slurm import SlurmBackend

        return SlurmBackend(options, ContextSpec.of(ctx, progress=False))
    if (options.workers or 1) == 1:
        return InlineBackend(ctx)
    return PoolBackend(options.workers, options.threads, ContextSpec.of(ctx, progress=False), level)


# ------------------------------------------------------------------------------------------------ the scheduler
def ordering(stages: Sequence[Stage]) -> dict[str, set[str]]:
    """For each stage, the earlier stages that write one of its outputs: it runs after them (without needing them)."""
    after: dict[str, set[str]] = {}
    for i, stage in enumerate(stages):
        mine = {Path(p) for p in stage.outputs()}
        after[stage.name] = {s.name for s in stages[:i] if mine & {Path(p) for p in s.outputs()}}
    return after


class Display:
    """The job's one progress display: a bar over the stages naming the running ones, and a log line per event."""

    def __init__(self, total: int, enabled: bool):
        from tqdm.auto import tqdm

        self.bar = tqdm(total=total, unit="stage", desc="stages", disable=not enabled, file=sys.stderr,
                        dynamic_ncols=True)
        self.running: list[str] = []

    def event(self, name: str, what: str, finished: bool) -> None:
        logger.info("stage %s: %s", name, what)
        if name in self.running:
            self.running.remove(name)
        if finished:
            self.bar.update(1)
        else:
            self.running.append(name)
        self.bar.set_postfix_str(f"running: {', '.join(self.running) or '-'}", refresh=True)

    def close(self) -> None:
        self.bar.close()


def run_graph(stages: Sequence[Stage], ctx: JobContext, options: ExecutorOptions | None = None, *,
              progress: bool | None = None) -> list[StageRecord]:
    """Run ``stages`` as a graph with ``options`` (default: one at a time in this process); see the module docstring.
    Returns the records in the stages' order; raises :class:`StageFailure` when a stage failed (after the stages
    that do not need it have run)."""
    check_order(stages)
    options = options or ExecutorOptions()
    show = ctx.progress if progress is None else progress
    g = GraphState(list(stages), ordering(stages))
    pending, running, records, failed, blocked = g.pending, g.running, g.records, g.failed, g.blocked
    from tqdm.contrib.logging import logging_redirect_tqdm

    bar = show and (options.workers or 2) > 1  # one worker: the stage's own bars, as before
    display = Display(len(stages), bar)
    backend = make_backend(options, ctx, bar)
    redirect = logging_redirect_tqdm() if bar else contextlib.nullcontext()  # log lines above the bar
    try:
        redirect.__enter__()
        while pending or running:
            progressed = _start_ready(g, backend, ctx, display)
            if not running:
                if not progressed and pending:  # cannot happen after check_order; never spin
                    raise RuntimeError(f"stages that can never start: {', '.join(s.name for s in pending)}")
                continue
            for handle in backend.wait(list(running)):
                stage = running.pop(handle)
                outcome = backend.outcome(handle)
                if outcome.record is None:
                    failed[stage.name] = outcome.error or "failed"
                    logger.error("stage %s failed: %s\n%s", stage.name, failed[stage.name], outcome.detail.rstrip())
                    display.event(stage.name, f"FAILED ({failed[stage.name]})", True)
                    continue
                records[stage.name] = outcome.record
                ctx.log.append(outcome.record)
                what = "already done, skipped" if outcome.record.skipped else f"done in {outcome.record.seconds:.1f}s"
                display.event(stage.name, what, True)
    finally:
        backend.close()
        display.close()
        redirect.__exit__(None, None, None)
    if failed:
        raise StageFailure(failed, blocked)
    return [records[s.name] for s in stages]


@dataclass
class GraphState:
    """Where a graph run stands: the stages not started (``pending``, in list order), the running ones by backend
    handle, the finished ones' records, the failed ones' errors, the stages left out because a need failed, and
    ``after`` (each stage's must-finish-first set, from :func:`ordering`)."""

    pending: list[Stage]
    after: dict[str, set[str]]
    running: dict[Any, Stage] = field(default_factory=dict)
    records: dict[str, StageRecord] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)
    blocked: list[str] = field(default_factory=list)


def _start_ready(g: GraphState, backend: Backend, ctx: JobContext, display: Display) -> bool:
    """Skip the done stages, leave out those whose needs failed, and start ready stages (list order) while the
    backend has room. Returns whether anything changed."""
    pending, running, records, failed, blocked, after = g.pending, g.running, g.records, g.failed, g.blocked, g.after
    changed, again = False, True
    while again:
        again = False
        for stage in list(pending):
            if any(n in failed or n in blocked for n in stage.needs):
                pending.remove(stage)
                blocked.append(stage.name)
                display.event(stage.name, "not run (a stage it needs failed)", True)
                changed = again = True
                continue
            finished = set(records) | set(failed) | set(blocked)
            if not all(n in records for n in stage.needs) or not after[stage.name] <= finished:
                continue
            if stage.is_done():
                pending.remove(stage)
                records[stage.name] = StageRecord(stage.name, True)
                ctx.log.append(records[stage.name])
                display.event(stage.name, "already done, skipped", True)
                changed = again = True
                continue
            if len(running) >= backend.capacity:
                continue
            pending.remove(stage)
            display.event(stage.name, "running", False)
            handle = backend.submit(stage)
            running[handle] = stage
            changed = True
            if isinstance(backend, InlineBackend):  # it ran already: let the caller collect it first
                return changed
    return changed
