"""Export a trained model as a folder (``model.safetensors`` + ``config.json``) and load it back in one call.

The layout is the one timm uses for the Hugging Face Hub: ``config.json`` holds ``architecture``, ``num_classes``,
``model_args`` (everything needed to rebuild, including the genotype) and ``pretrained_cfg``.
"""

from __future__ import annotations

import json
import pickle
import warnings
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from wsr_bench.io import atomic_write_json, atomic_write_with

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"


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


def model_config(model: nn.Module) -> dict[str, Any]:
    """The ``config.json`` content of a timm-created wsr-bench model."""
    cfg = dict(getattr(model, "pretrained_cfg", None) or {})
    arch = cfg.get("architecture")
    args = getattr(model, "model_args", None)
    if not arch or args is None:
        raise ValueError("export needs a model created with timm.create_model from wsr-bench's registry")
    model_args = {k: v for k, v in args.items() if k != "num_classes"}
    model_args["genotype"] = model.genotype.to_dict()
    cfg.pop("file", None)
    return {"architecture": arch, "num_classes": args["num_classes"], "model_args": model_args,
            "pretrained_cfg": json.loads(json.dumps(cfg, default=list))}


def export_model(model: nn.Module, folder: str | Path, extra: dict[str, Any] | None = None) -> Path:
    """Write ``folder/model.safetensors`` and ``folder/config.json`` atomically; returns the folder."""
    folder = Path(folder)
    config = model_config(model)
    if extra:
        config["wsr_bench"] = extra
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    atomic_write_with(folder / WEIGHTS_NAME, lambda tmp: save_file(state, str(tmp)))
    atomic_write_json(folder / CONFIG_NAME, config)
    return folder


def load_exported(folder: str | Path, device: str | torch.device = "cpu") -> nn.Module:
    """Rebuild an exported model with ``timm.create_model`` and its local safetensors weights, in eval mode.

    Raises:
        FileNotFoundError: a file of the folder is missing.
        ValueError: malformed ``config.json``; :class:`WeightsFileError` for unreadable or misfitting weights.
    """
    import timm

    import wsr_bench.models  # noqa: F401  (registers the architectures)

    folder = Path(folder)
    cfg_path, weights = folder / CONFIG_NAME, folder / WEIGHTS_NAME
    if not cfg_path.is_file() or not weights.is_file():
        raise FileNotFoundError(f"{folder} is not an exported model folder (needs {CONFIG_NAME} and {WEIGHTS_NAME})")
    try:
        config = json.loads(cfg_path.read_text())
        arch, args = config["architecture"], dict(config.get("model_args", {}))
    except (json.JSONDecodeError, KeyError) as exc:
        raise ValueError(f"{cfg_path} is malformed: {exc}") from None
    if arch not in ("wsrnet",) and not arch.endswith("_imagenet") and "genotype" in args:
        args.pop("genotype")
    elif arch.endswith("_imagenet"):
        args.pop("genotype", None)
    for key in ("mean", "std"):
        if key in args:
            args[key] = tuple(args[key])
    if weights.stat().st_size == 0:
        raise WeightsFileError(f"weights file {weights} is empty")
    try:
        model = timm.create_model(arch, pretrained=True, num_classes=config.get("num_classes", 10),
                                  pretrained_cfg_overlay={"file": str(weights)}, **args)
    except SafetensorError as exc:
        raise WeightsFileError(f"weights file {weights} is not a readable safetensors file "
                               f"({load_error_reason(exc, 'deserializing')}); truncated or not safetensors?") from None
    except RuntimeError as exc:
        if "loading state_dict" not in str(exc):
            raise
        raise WeightsFileError(f"weights file {weights} does not fit the model of {cfg_path}: "
                               f"{load_error_reason(exc, 'size mismatch')}") from None
    return model.to(device).eval()
