"""Cheap stages for the executor tests (a module of its own, so that worker processes and submitit jobs can import
them): a stage that writes a file, and one that fails."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from wsr_bench.jobs.stage import JobContext, Stage


@dataclass(frozen=True, kw_only=True)
class WriteStage(Stage):
    """Writes ``text`` and the process id to ``path`` (done when the file starts with ``text``)."""

    path: Path
    text: str

    def outputs(self) -> tuple[Path, ...]:
        return (self.path,)

    def is_done(self) -> bool:
        return self.path.is_file() and self.path.read_text().split("\n")[0] == self.text

    def run(self, ctx: JobContext) -> None:
        self.path.write_text(f"{self.text}\n{os.getpid()}\n")


@dataclass(frozen=True, kw_only=True)
class FailStage(Stage):
    """Raises; its output never appears."""

    path: Path

    def outputs(self) -> tuple[Path, ...]:
        return (self.path,)

    def run(self, ctx: JobContext) -> None:
        raise RuntimeError(f"{self.name} broke\nsecond line of the message")
