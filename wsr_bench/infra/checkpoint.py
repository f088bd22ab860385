"""Generic training checkpoints: atomic ``torch.save`` of a plain dict, safe loading, and RNG states.

A checkpoint is whatever dict the caller builds (model / optimizer / scheduler state dicts, epoch counters,
histories) plus, usually, ``get_rng_state()``. It is written to a temporary sibling and renamed into place, so a
crash mid-write leaves the previous checkpoint intact. Loading uses ``torch.load(weights_only=True)``: only
tensors, numbers, strings, lists/tuples/dicts and ``None`` come back, never arbitrary pickled objects; this is why
the RNG states are stored as tensors and plain Python values rather than NumPy objects.

Used by the adversarial-training driver (``wsr_bench.train``) and by the search's resume.
"""

from __future__ import annotations

import logging
import pickle
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from wsr_bench.infra.atomic import atomic_write_with

logger = logging.getLogger(__name__)

__all__ = ["CheckpointError", "get_rng_state", "load_checkpoint", "save_checkpoint", "set_rng_state"]


class CheckpointError(ValueError):
    """A checkpoint that cannot be used: unreadable, not a dict, unsafe content, or written for something else."""


def get_rng_state() -> dict[str, Any]:
    """Capture the Python, NumPy and torch (CPU and every visible CUDA device) random states.

    Returns:
        A dict that survives ``torch.save`` / ``torch.load(weights_only=True)`` unchanged: NumPy's MT19937 key is
        stored as an int64 tensor, Python's state as nested tuples of ints.
    """
    np_state = np.random.get_state(legacy=False)
    if np_state["bit_generator"] != "MT19937":  # np.random's legacy global generator is always MT19937
        raise CheckpointError(f"unexpected NumPy global bit generator {np_state['bit_generator']}")
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": {"key": torch.from_numpy(np_state["state"]["key"].astype(np.int64)),
                  "pos": int(np_state["state"]["pos"]), "has_gauss": int(np_state["has_gauss"]),
                  "gauss": float(np_state["gauss"])},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore states captured by ``get_rng_state`` (CUDA states only when CUDA is available here)."""
    try:
        version, internal, gauss_next = state["python"]
        random.setstate((int(version), tuple(int(v) for v in internal), gauss_next))
        npst = state["numpy"]
        np.random.set_state({"bit_generator": "MT19937",
                             "state": {"key": npst["key"].numpy().astype(np.uint32), "pos": int(npst["pos"])},
                             "has_gauss": int(npst["has_gauss"]), "gauss": float(npst["gauss"])})
        torch.set_rng_state(state["torch"].cpu())
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise CheckpointError(f"RNG state is malformed ({exc!r}); expected the dict of get_rng_state()") from None
    cuda = state.get("cuda")
    if cuda is not None and torch.cuda.is_available():
        if len(cuda) != torch.cuda.device_count():
            logger.warning("checkpoint holds %d CUDA RNG states but %d devices are visible; restoring what fits",
                           len(cuda), torch.cuda.device_count())
        for i, s in enumerate(cuda[: torch.cuda.device_count()]):
            torch.cuda.set_rng_state(s.cpu(), i)


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> Path:
    """Write ``state`` to ``path`` atomically (temporary sibling + rename); returns the path.

    Args:
        path: destination file (parent folders are created).
        state: a dict of tensors, numbers, strings, lists/tuples/dicts (what ``weights_only`` loading accepts).
    """
    if not isinstance(state, dict):
        raise TypeError(f"a checkpoint must be a dict, got {type(state).__name__}")
    path = Path(path)
    atomic_write_with(path, lambda tmp: torch.save(state, tmp))
    logger.debug("saved checkpoint %s", path)
    return path


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint written by ``save_checkpoint`` with ``torch.load(weights_only=True)``.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        CheckpointError: the file is truncated/corrupt, holds objects that are not plain data, or is not a dict.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} not found")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        raise CheckpointError(f"checkpoint {path} holds objects that are not plain data and is refused "
                              f"(weights_only loading): {_reason(exc, 'Unsupported global')}") from None
    except (RuntimeError, EOFError, OSError, ValueError) as exc:
        raise CheckpointError(f"checkpoint {path} is unreadable or corrupt ({_reason(exc, 'failed')}); delete it "
                              f"to start over") from None
    if not isinstance(state, dict):
        raise CheckpointError(f"checkpoint {path} holds a {type(state).__name__}, expected a dict")
    return state


def _reason(exc: BaseException, marker: str) -> str:
    """The informative line of torch's long multi-line load errors (the one holding ``marker``), shortened."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()] or [type(exc).__name__]
    line = next((ln for ln in lines if marker in ln), lines[0])
    line = line.split(". ")[0]
    return line.removeprefix("WeightsUnpickler error: ")[:200]
