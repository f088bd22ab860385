"""Export a trained model as a folder (``model.safetensors`` + ``config.json``) and load it back in one call.

The layout is the one timm uses for the Hugging Face Hub: ``config.json`` holds ``architecture``, ``num_classes``,
``model_args`` (everything needed to rebuild, including the genotype of a DARTS network) and ``pretrained_cfg``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import save_file
from torch import nn

from wsr_bench.infra.atomic import atomic_write_json, atomic_write_with
from wsr_bench.models.weights import WeightsFileError, load_error_reason, load_state_dict_file  # noqa: F401

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"


def model_config(model: nn.Module) -> dict[str, Any]:
    """The ``config.json`` content of a timm-created wsr-bench model."""
    cfg = dict(getattr(model, "pretrained_cfg", None) or {})
    arch = cfg.get("architecture")
    args = getattr(model, "model_args", None)
    if not arch or args is None:
        raise ValueError("export needs a model created with timm.create_model from wsr-bench's registry")
    model_args = {k: v for k, v in args.items() if k != "num_classes"}
    if getattr(model, "genotype", None) is not None:  # DARTS networks; preact_resnet18 has none
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

    import wsr_bench.models.preact_resnet  # noqa: F401  (registers the architectures)
    import wsr_bench.models.wsrnet  # noqa: F401

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
