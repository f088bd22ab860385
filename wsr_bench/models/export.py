"""Export a trained model as a folder (``model.safetensors`` + ``config.json``) and load it back in one call.

The layout is the one timm uses for the Hugging Face Hub: ``config.json`` holds ``architecture``, ``num_classes``,
``model_args`` (everything needed to rebuild, including the genotype) and ``pretrained_cfg``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from wsr_bench.io import atomic_write_json, atomic_write_with

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"


def load_state_dict_file(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a state dict from ``.safetensors`` or, for other files, ``torch.load(weights_only=True)``.

    Accepts checkpoints that wrap the weights under ``state_dict``/``model`` (common training-script layout).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weights file not found: {path}")
    if path.suffix == ".safetensors":
        return load_file(str(path))
    obj = torch.load(path, map_location="cpu", weights_only=True)
    for key in ("state_dict", "model"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
    if not isinstance(obj, dict):
        raise ValueError(f"{path} does not hold a state dict")
    return {k.removeprefix("module."): v for k, v in obj.items()}


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
    """Rebuild an exported model with ``timm.create_model`` and its local safetensors weights, in eval mode."""
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
    model = timm.create_model(arch, pretrained=True, num_classes=config.get("num_classes", 10),
                              pretrained_cfg_overlay={"file": str(weights)}, **args)
    return model.to(device).eval()
