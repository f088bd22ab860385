"""The stage protocol every job is written in: a stage's output file is its hand-off, and a stage whose output exists
and checks out skips itself.

A :class:`Stage` declares its ``name``, the names of the stages it ``needs`` (whose outputs it reads) and its
``outputs`` (the files or folders it leaves); ``is_done()`` says whether those outputs exist and check out, and
``run(ctx)`` makes them. Stages are plain frozen dataclasses (configs, paths, strings), so they pickle and could run
in another process: everything a process holds in memory (the device, the loaded data, the timing log) lives in the
:class:`JobContext` each process builds for itself, never in a stage. The needs form a graph; :func:`run_stages`
walks it in the order given (each stage after those it needs); :mod:`wsr_bench.jobs.executor` runs independent
stages side by side (worker processes, or SLURM jobs) over the same stages.

Every stage, run or skipped, appends one record to the job's JSONL log (``OUT/stages.jsonl``, :class:`StageLog`):
``{"stage", "skipped", "seconds", "cpu_seconds", "time"}``.
"""

from __future__ import annotations

import functools
import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from wsr_bench.infra.atomic import append_jsonl

if TYPE_CHECKING:
    from wsr_bench.config import DataConfig
    from wsr_bench.data.datasets import DataSplits

logger = logging.getLogger(__name__)

#: the timing log of a job folder: one JSON line per stage run or skipped.
LOG_NAME = "stages.jsonl"


@dataclass(frozen=True)
class StageRecord:
    """What one stage did: skipped (its output checked out) or ran, for how many wall and CPU seconds."""

    stage: str
    skipped: bool
    seconds: float = 0.0
    cpu_seconds: float = 0.0


@dataclass(frozen=True)
class StageLog:
    """The job's JSONL timing log (``folder/stages.jsonl``); ``write`` is off on the ranks that must not write."""

    folder: Path
    write: bool = True

    @property
    def path(self) -> Path:
        return self.folder / LOG_NAME

    def append(self, record: StageRecord) -> None:
        if self.write:
            append_jsonl(self.path, {"stage": record.stage, "skipped": record.skipped, "seconds": record.seconds,
                                     "cpu_seconds": record.cpu_seconds, "time": time.strftime("%Y-%m-%d %H:%M:%S")})

    def records(self) -> list[dict[str, Any]]:
        """Every record logged so far (none when the log does not exist)."""
        if not self.path.is_file():
            return []
        return [json.loads(line) for line in self.path.read_text().splitlines() if line.strip()]


class JobContext:
    """What one process of a job holds while it runs stages: the device, whether to show progress bars, the timing
    log and the job's data splits (loaded once, on first use, from ``data``/``seed``; or given)."""

    def __init__(self, log: StageLog, device: str, progress: bool = True, *, data: DataConfig | None = None,
                 seed: int = 0, splits: DataSplits | None = None):
        self.log, self.device, self.progress = log, device, progress
        self._data, self._seed = data, seed
        if splits is not None:
            self.__dict__["splits"] = splits

    @functools.cached_property
    def splits(self) -> DataSplits:
        """The job's train/val/test splits."""
        from wsr_bench.data.datasets import load_splits

        if self._data is None:
            raise ValueError("this job context has no data config to load splits from")
        return load_splits(self._data, self._seed)

    def test_images(self, n: int | None):
        """The first ``n`` (None: all) test images and labels, as tensors."""
        from wsr_bench.data.datasets import as_tensors

        return as_tensors(self.splits.test, n)


@dataclass(frozen=True, kw_only=True)
class Stage:
    """One step of a job. Subclasses set ``name`` and ``needs`` and implement :meth:`outputs`, :meth:`is_done` and
    :meth:`run`; a subclass adds only plain fields (configs, paths, strings, numbers), so that it pickles."""

    name: str
    needs: tuple[str, ...] = ()

    def outputs(self) -> tuple[Path, ...]:
        """The files or folders this stage hands off."""
        raise NotImplementedError

    def is_done(self) -> bool:
        """Whether every output exists and checks out (then the stage skips itself)."""
        return all(p.exists() for p in self.outputs())

    def run(self, ctx: JobContext) -> Any:
        """Make the outputs; may return an in-memory result for the caller's convenience."""
        raise NotImplementedError


def run_stage(stage: Stage, ctx: JobContext) -> StageRecord:
    """Run ``stage`` unless it is done, timing it into ``ctx.log``; returns its record."""
    record = time_stage(stage, ctx)
    ctx.log.append(record)
    return record


def time_stage(stage: Stage, ctx: JobContext, quiet: bool = False) -> StageRecord:
    """Run ``stage`` unless it is done and return its record, without writing it to the log (an executor's: the
    job's parent process writes the log and, ``quiet``, says what each stage does)."""
    if stage.is_done():
        if not quiet:
            logger.info("stage %s: already done, skipped", stage.name)
        record = StageRecord(stage.name, True)
    else:
        if not quiet:
            logger.info("stage %s: running", stage.name)
        t0, c0 = time.perf_counter(), time.process_time()
        stage.run(ctx)
        record = StageRecord(stage.name, False, round(time.perf_counter() - t0, 1),
                             round(time.process_time() - c0, 1))
    return record


def check_order(stages: Sequence[Stage]) -> None:
    """Refuse a stage list with a duplicate name, or a stage placed before one it needs (or needing an unknown one).

    Raises:
        ValueError: one line naming the stage.
    """
    seen: set[str] = set()
    for stage in stages:
        if stage.name in seen:
            raise ValueError(f"stage {stage.name!r} appears twice")
        missing = [n for n in stage.needs if n not in seen]
        if missing:
            raise ValueError(f"stage {stage.name!r} needs {', '.join(missing)}, which do not come before it")
        seen.add(stage.name)


def run_stages(stages: Sequence[Stage], ctx: JobContext) -> list[StageRecord]:
    """Run ``stages`` one after another (each after the stages it needs), skipping the done ones."""
    check_order(stages)
    return [run_stage(stage, ctx) for stage in stages]
