"""What the benchmarks share: the record of the machine a result was measured on, and where a ``--smoke`` run
writes."""

from __future__ import annotations

import os
import platform
import sys
import tempfile
from pathlib import Path
from typing import Any


def load_average() -> float:
    """The one-minute load average, rounded: what ``machine_record`` takes at the start and records at the end."""
    return round(os.getloadavg()[0], 2)


def machine_record(load_start: float, **extra: Any) -> dict:
    """CPU count, platform, processor, Python and torch versions, and the load average at the start and now (the
    end); ``extra`` adds what a benchmark also records (e.g. ``device=resolve_device()``)."""
    import torch

    return {"cpu_count": os.cpu_count(), "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(), "python": sys.version.split()[0],
            "torch": torch.__version__, "load_start": load_start, "load_end": load_average(), **extra}


def smoke_out(name: str) -> Path:
    """Where a ``--smoke`` run writes when no ``--out`` is given: ``name.json`` (and ``name.md``) in a fresh temporary
    folder, so that a smoke run never overwrites a committed result under ``benchmarks/results/``."""
    return Path(tempfile.mkdtemp(prefix=f"{name}_smoke_")) / f"{name}.json"


def publish(report: dict, markdown: str, out: str | Path | None, name: str) -> Path:
    """Write ``report`` (JSON) and ``markdown`` beside it atomically to ``out`` (a smoke run's temporary folder
    when ``None``: :func:`smoke_out`), then print the report's conclusion and where it went."""
    from wsr_bench.infra.atomic import atomic_write_report

    path = Path(out) if out else smoke_out(name)
    atomic_write_report(path, report, markdown)
    print(report["conclusion"])
    print(f"wrote {path} and {path.with_suffix('.md')}")
    return path
