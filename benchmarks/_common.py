"""What the benchmarks share: the record of the machine a result was measured on."""

from __future__ import annotations

import os
import platform
import sys


def machine_record(load_start: float) -> dict:
    """CPU count, platform, Python and torch versions, and the load average at the start and now (the end)."""
    import torch

    return {"cpu_count": os.cpu_count(), "platform": platform.platform(), "python": sys.version.split()[0],
            "torch": torch.__version__, "load_start": load_start, "load_end": round(os.getloadavg()[0], 2)}
