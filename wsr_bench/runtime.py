"""Process-wide run-time choices, one helper each: which device a job runs on, and how its RNGs are seeded.

Every stage (search, training, evaluation, the pipeline, the ``autoattack`` bridge) resolves ``"auto"`` and seeds
the global generators through these two functions, so they agree with each other and with the config's
``device`` / ``seed``.
"""

from __future__ import annotations

import random

import numpy as np
import torch
import torch.distributed as dist

__all__ = ["resolve_device", "seed_everything"]


def resolve_device(name: str = "auto") -> str:
    """The device a job runs on: ``auto`` -> ``cuda`` when available, else ``cpu``; other names pass through.

    Inside an initialised process group of more than one rank, ``cuda`` becomes this rank's ``cuda:N`` (the current
    device torchrun's set-up selected), so each rank keeps to its own GPU.
    """
    device = ("cuda" if torch.cuda.is_available() else "cpu") if name == "auto" else name
    if device == "cuda" and dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        return f"cuda:{torch.cuda.current_device()}"
    return device


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and torch's (CPU and CUDA) global generators with ``seed``."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
