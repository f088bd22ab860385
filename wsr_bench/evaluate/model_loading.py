"""Resolve ``wsr-bench eval --model`` specs to a model taking [0,1] images: an exported model folder, a RobustBench
zoo name (``robustbench:<Name>``, local checkpoint only) or a timm name (our ``wsrnet_*`` and friends included, and
their published pretrained tags ``<architecture>.<tag>``, loaded with their weights at their native size).
"""

from __future__ import annotations

import difflib
import json
import logging
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from wsr_bench.evaluate.robustbench_bridge import (
    PREFIX,
    expected_checkpoints,
    is_robustbench_spec,
    load_robustbench_model,
)

logger = logging.getLogger(__name__)


@dataclass
class LoadedModel:
    """A model ready for evaluation plus what the leaderboard records about it."""

    model: nn.Module
    name: str
    architecture: str
    source: str  # "exported", "robustbench" or "timm"
    params: int


@dataclass(frozen=True)
class InputShape:
    """What a timm model is built for: the dataset's classes, channels and normalisation (None: timm's own)."""

    num_classes: int = 10
    in_chans: int = 3
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None


class _Normalized(nn.Module):
    """Wraps a plain timm model (which expects normalised inputs) so it takes [0,1] images like ours do."""

    def __init__(self, model: nn.Module, mean: tuple[float, ...], std: tuple[float, ...]) -> None:
        super().__init__()
        self.model = model
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model((x - self.mean) / self.std)


def load_eval_model(
    spec: str,
    *,
    checkpoint: str | Path | None = None,
    model_dir: str | Path = "models",
    dataset: str = "digits",
    threat_model: str = "Linf",
    shape: InputShape | None = None,
    device: str | torch.device = "cpu",
    **fields: Any,
) -> LoadedModel:
    """Load the model named by ``spec`` in eval mode on ``device``.

    Args:
        spec: ``path/to/exported_folder``, ``robustbench:<Name>``, a timm model name or a published pretrained tag
            (``wsrnet_basic.fmnist_pgd``: its weights, built with its own mean/std; ``num_classes``/``in_chans``
            must match it).
        checkpoint: optional weights (.safetensors, or a torch file read with ``weights_only=True``) loaded on top.
        model_dir: RobustBench checkpoint root (``<model_dir>/<dataset>/<threat_model>/<Name>.pt``).
        dataset, threat_model: select the RobustBench zoo.
        shape: what a timm model is built for (:class:`InputShape`: ``num_classes``, ``in_chans``, ``mean``,
            ``std``, the dataset's); keyword ``fields`` replace its fields (``num_classes=100``).
        device: target device.

    Raises:
        ValueError: unknown model name (with close matches), weights that do not fit, or an unreadable weights
            file (:class:`~wsr_bench.models.export.WeightsFileError`: empty, truncated, a directory, not
            safetensors/torch, or a pickle that ``weights_only`` refuses).
        FileNotFoundError: missing folder files, checkpoint or RobustBench checkpoint.
    """
    shape = replace(shape, **fields) if shape is not None else InputShape(**fields)
    spec = check_model_spec(spec, model_dir=model_dir, dataset=dataset, threat_model=threat_model)
    if is_robustbench_spec(spec):
        name = spec.removeprefix(PREFIX)
        model = load_robustbench_model(name, model_dir, dataset, threat_model)
        loaded = LoadedModel(model, spec, _robustbench_arch(name, dataset, threat_model), "robustbench", 0)
    elif Path(spec).is_dir():
        loaded = _load_folder(Path(spec))
    else:
        loaded = _load_timm(spec, shape.num_classes, shape.in_chans, shape.mean, shape.std)
    if checkpoint is not None:
        _load_weights(loaded.model, checkpoint)
    loaded.model = loaded.model.to(device).eval()
    loaded.params = sum(p.numel() for p in loaded.model.parameters())
    return loaded


def check_model_spec(spec: str, *, model_dir: str | Path = "models", dataset: str = "digits",
                     threat_model: str = "Linf") -> str:
    """Validate a model spec without building anything (cheap; run it before loading data or evaluating).

    Raises:
        ValueError: unknown timm or RobustBench name (with close matches), or an unknown pretrained tag of one of
            our architectures (listing its published tags).
        FileNotFoundError: missing exported folder files or RobustBench checkpoint (naming the expected file).
    """
    spec = str(spec).strip()
    if is_robustbench_spec(spec):
        name = spec.removeprefix(PREFIX)
        missing = [f for f in expected_checkpoints(name, model_dir, dataset, threat_model) if not f.is_file()]
        if missing:
            raise FileNotFoundError(f"RobustBench checkpoint for {name} not found: expected {missing[0]} "
                                    "(download it once with robustbench or pass --model-dir)")
    elif Path(spec).is_dir():
        for needed in ("config.json", "model.safetensors"):
            if not (Path(spec) / needed).is_file():
                raise FileNotFoundError(f"{spec} is not an exported model folder: {needed} is missing")
    elif "/" in spec or spec.startswith(".") or spec.endswith((".json", ".safetensors", ".pt")):
        raise FileNotFoundError(f"model folder {spec} does not exist (expected model.safetensors + config.json)")
    else:
        _check_timm_name(spec)
    return spec


def exported_image_size(spec: str | Path) -> int | None:
    """The image side an exported model folder was trained at (``config.json`` -> ``wsr_bench.image_size``, written
    by ``wsr-bench train``/``run``), or a published pretrained tag's (its cfg's ``input_size``); None for other specs
    or exports that do not record it."""
    if not Path(str(spec).strip()).is_dir():
        return published_image_size(spec)
    path = Path(str(spec).strip()) / "config.json"
    try:
        size = json.loads(path.read_text()).get("wsr_bench", {}).get("image_size")
    except (OSError, ValueError, AttributeError):
        return None
    return int(size) if isinstance(size, int) and not isinstance(size, bool) and size > 0 else None


def published_image_size(spec: str | Path) -> int | None:
    """The image side of a published pretrained tag (``wsrnet_basic.fmnist_pgd`` -> 28, from its timm cfg's
    ``input_size``); None for any other spec."""
    name = str(spec).strip()
    if "." not in name or "/" in name:
        return None
    import timm

    from wsr_bench.models import pretrained

    if not pretrained.is_published(name):
        return None
    cfg = timm.models.get_pretrained_cfg(name)
    return int(cfg.input_size[-1]) if cfg is not None else pretrained.published_image_size(name)


def _ours(arch: str) -> bool:
    import wsr_bench.models as wsr_models

    return arch in wsr_models.REGISTERED_MODELS or arch == "wsrnet"


def _check_timm_name(name: str) -> None:
    import timm

    import wsr_bench.models as wsr_models
    from wsr_bench.models import pretrained

    arch, tag = pretrained.split_name(name)
    if tag is not None and _ours(arch):
        pretrained.check_name(name)  # unknown tag: one line listing the architecture's published tags
    if not timm.is_model(name):
        known = list(wsr_models.REGISTERED_MODELS) + timm.list_models()
        close = difflib.get_close_matches(name, known, n=3, cutoff=0.6)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise ValueError(f"unknown model {name!r}: expected a timm name (e.g. wsrnet_basic), robustbench:<Name> or "
                         f"an exported model folder{hint}")


def _load_folder(folder: Path) -> LoadedModel:
    from wsr_bench.models import load_exported

    model = load_exported(folder)
    cfg: dict[str, Any] = {}
    try:
        cfg = json.loads((folder / "config.json").read_text())
    except (OSError, json.JSONDecodeError):
        pass
    return LoadedModel(model, folder.name, str(cfg.get("architecture", folder.name)), "exported", 0)


def _load_timm(name: str, num_classes: int, in_chans: int, mean, std) -> LoadedModel:
    import timm

    from wsr_bench.models import pretrained

    arch, _ = pretrained.split_name(name)
    ours = _ours(arch)
    if ours and pretrained.is_published(name):  # its weights, its own mean/std, at its own size
        record = pretrained.published_tags()[name]
        if (record["num_classes"], record["input_size"][0]) != (num_classes, in_chans):
            raise ValueError(f"{name} was trained on {record.get('dataset')} ({record['input_size'][0]} channel(s), "
                             f"{record['num_classes']} classes); this dataset has {in_chans} channel(s) and "
                             f"{num_classes} classes")
        model = timm.create_model(name, pretrained=True, num_classes=num_classes, in_chans=in_chans)
        return LoadedModel(model, name, arch, "timm", 0)
    kwargs: dict[str, Any] = {"num_classes": num_classes, "in_chans": in_chans}
    if ours and mean is not None and std is not None:
        kwargs.update(mean=tuple(mean), std=tuple(std))
    model = timm.create_model(name, pretrained=False, **kwargs)
    if not ours:  # plain timm models expect normalised inputs; ours normalise inside
        cfg = getattr(model, "pretrained_cfg", {}) or {}
        model = _Normalized(model, tuple(mean or cfg.get("mean", (0.5,) * in_chans)),
                            tuple(std or cfg.get("std", (0.5,) * in_chans)))
    return LoadedModel(model, name, arch if ours else name, "timm", 0)


def _load_weights(model: nn.Module, checkpoint: str | Path) -> None:
    from wsr_bench.models import load_state_dict_file

    state = load_state_dict_file(checkpoint)
    target = model.model if isinstance(model, _Normalized) and not any(k.startswith("model.") for k in state) else model
    try:
        target.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()
        raise ValueError(f"checkpoint {checkpoint} does not fit the model: {' '.join(first[:2])[:300]}") from None
    logger.info("loaded weights from %s", checkpoint)


def _robustbench_arch(name: str, dataset: str, threat_model: str) -> str:
    from wsr_bench.leaderboard.reference import find_reference

    ref = find_reference(name, dataset, threat_model)
    return ref.architecture if ref is not None and ref.architecture else name
