"""The files every run folder has, one convention for ``wsr-bench search`` and ``wsr-bench train``.

A run folder holds ``config.yaml`` (the resolved config), a human-readable log (``search.log`` / ``train.log``),
``metrics.jsonl`` (one JSON record per step of the run) and ``checkpoint.pt`` (everything needed to resume,
rewritten atomically). :class:`wsr_bench.search.state.SearchFolder` and :class:`wsr_bench.train.driver.TrainFolder`
add what their stage writes at the end (a genotype; an exported model). No torch here: the metrics can be read
without it.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from wsr_bench.infra.atomic import append_jsonl, atomic_write_text

__all__ = ["RunFolder"]


class RunFolder:
    """Paths and writers of one run folder; ``log_name`` names its human-readable log."""

    log_name = "run.log"

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.config = self.root / "config.yaml"
        self.log = self.root / self.log_name
        self.metrics = self.root / "metrics.jsonl"
        self.checkpoint = self.root / "checkpoint.pt"

    def append_metrics(self, record: dict[str, Any]) -> None:
        """Add one JSON line to ``metrics.jsonl``."""
        append_jsonl(self.metrics, record)

    def read_metrics(self) -> list[dict[str, Any]]:
        """All metric records (empty when none were written)."""
        if not self.metrics.exists():
            return []
        return [json.loads(line) for line in self.metrics.read_text().splitlines() if line.strip()]

    def write_metrics(self, records: list[dict[str, Any]]) -> None:
        """Replace ``metrics.jsonl`` by ``records`` atomically (a resumed run keeps only what its checkpoint covers)."""
        atomic_write_text(self.metrics, "".join(json.dumps(r) + "\n" for r in records))

    def write_log_line(self, text: str) -> None:
        """Append one human-readable line to the run's log file."""
        with self.log.open("a") as f:
            f.write(text + "\n")

    @contextmanager
    def logging_to_file(self, name: str = "wsr_bench") -> Iterator[None]:
        """Copy the package's log records (INFO and above) into the run's log file while the block runs."""
        self.root.mkdir(parents=True, exist_ok=True)
        handler = logging.FileHandler(self.log, mode="a")
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%Y-%m-%d %H:%M:%S"))
        pkg = logging.getLogger(name)
        old_level = pkg.level
        if pkg.getEffectiveLevel() > logging.INFO:
            pkg.setLevel(logging.INFO)
        pkg.addHandler(handler)
        try:
            yield
        finally:
            pkg.removeHandler(handler)
            pkg.setLevel(old_level)
            handler.close()
