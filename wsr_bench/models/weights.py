"""Read a state dict from a weights file safely (safetensors, or torch with ``weights_only=True``), with one-line
errors naming the file: the one reader behind model export/import, ``DartsNetwork.load_pretrained`` (timm's
``custom_load``), ``wsr-bench eval --checkpoint`` and the RobustBench bridge.
"""

from __future__ import annotations

import pickle
import warnings
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

__all__ = ["WeightsFileError", "load_error_reason", "load_state_dict_file"]


class WeightsFileError(ValueError):
    """A weights file that cannot be read as a state dict (the message names the file and the reason)."""


def load_state_dict_file(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a state dict from ``.safetensors`` or, for other files, ``torch.load(weights_only=True)``.

    Accepts checkpoints that wrap the weights under ``state_dict``/``model`` (common training-script layout).

    Raises:
        FileNotFoundError: ``path`` does not exist.
        WeightsFileError: ``path`` is a directory, empty, truncated, not a safetensors/torch file, holds pickled
            objects that ``weights_only`` loading refuses, or holds something other than a dict of tensors.
    """
    path = Path(path)
    if path.is_dir():
        raise WeightsFileError(f"weights file {path} is a directory; expected a .safetensors or torch file")
    if not path.is_file():
        raise FileNotFoundError(f"weights file not found: {path}")
    if path.stat().st_size == 0:
        raise WeightsFileError(f"weights file {path} is empty")
    obj = _read_safetensors(path) if path.suffix == ".safetensors" else _read_torch(path)
    for key in ("state_dict", "model"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
    if not isinstance(obj, dict):
        raise WeightsFileError(f"weights file {path} holds a {type(obj).__name__}, not a state dict")
    bad = next((k for k, v in obj.items() if not isinstance(v, torch.Tensor)), None)
    if bad is not None:
        raise WeightsFileError(f"weights file {path} is not a state dict: {bad!r} holds a "
                               f"{type(obj[bad]).__name__}, not a tensor")
    return {str(k).removeprefix("module."): v for k, v in obj.items()}


def _read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise WeightsFileError(f"weights file {path} is not a readable safetensors file "
                               f"({load_error_reason(exc, 'deserializing')}); truncated or not safetensors?") from None


def _read_torch(path: Path) -> Any:
    try:
        with warnings.catch_warnings():  # torch's hint before it refuses a foreign pickle; our error says more
            warnings.filterwarnings("ignore", message="Detected pickle protocol", category=UserWarning)
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if "Unsupported global" in str(exc):
            raise WeightsFileError(f"weights file {path} holds Python objects that weights_only loading refuses "
                                   f"({load_error_reason(exc, 'Unsupported global')}); save a plain state dict or "
                                   ".safetensors instead") from None
        raise WeightsFileError(f"weights file {path} is not a torch checkpoint or safetensors file "
                               f"({load_error_reason(exc, 'Unsupported')})") from None
    except (RuntimeError, EOFError, OSError, ValueError, TypeError) as exc:
        raise WeightsFileError(f"weights file {path} is unreadable: truncated or not a torch checkpoint "
                               f"({load_error_reason(exc, 'failed')})") from None


def load_error_reason(exc: BaseException, marker: str) -> str:
    """The informative line of a long multi-line load error (the one holding ``marker``), shortened."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()] or [type(exc).__name__]
    line = next((ln for ln in lines if marker in ln), lines[0])
    return line.removeprefix("WeightsUnpickler error: ").split(". ")[0][:160]
