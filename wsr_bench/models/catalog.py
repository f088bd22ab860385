"""The model catalogue behind ``wsr-bench models``/``export``: names, sizes, sources, published tags, one ``create``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import timm
from torch import nn

from wsr_bench.models import NON_DARTS_MODELS, REGISTERED_MODELS, pretrained
from wsr_bench.models.wsrnet import GENOTYPE_OF
from wsr_bench.search_space.genotype import known_genotypes

#: keyword arguments that size a DARTS network only; ``create`` drops them for the other architectures, so one
#: generic call (``wsr_bench.train.driver.build_model``) builds any registered model.
DARTS_ONLY_KWARGS = ("init_channels", "layers", "auxiliary", "drop_path_rate")
#: sources of the models outside the DARTS space.
_SOURCES = {"preact_resnet18": "He et al. 2016 (identity mappings); CIFAR PreActResNet-18 as in Rice et al. 2020 / "
                               "RobustBench"}


def create(name: str, **kwargs: Any) -> nn.Module:
    """Create a registered model, a published tag (``<architecture>.<tag>``) or a ``wsrnet`` from a
    ``genotype.json`` path; ``None`` kwargs are dropped.

    For architectures outside the DARTS space (``preact_resnet18``) the DARTS-only sizing arguments
    (:data:`DARTS_ONLY_KWARGS`) are dropped; ``width`` sizes them and is refused for DARTS networks. Unknown names
    (and unknown tags) raise a one-line ``ValueError`` listing the known ones.
    """
    kwargs = {k: v for k, v in kwargs.items() if v is not None}
    if name not in REGISTERED_MODELS and Path(name).suffix == ".json":
        if not Path(name).is_file():
            raise FileNotFoundError(f"genotype file {name} not found")
        return timm.create_model("wsrnet", genotype=name, **_fit_kwargs("wsrnet", kwargs))
    arch, tag = pretrained.split_name(name)
    if arch not in REGISTERED_MODELS and arch != "wsrnet":
        raise ValueError(f"unknown model {name!r}; wsr-bench models: {', '.join(REGISTERED_MODELS)} "
                         f"(or a path to a genotype.json, or a published tag: {_tag_list()})")
    if tag is not None:
        pretrained.check_name(name)
    return timm.create_model(name, **_fit_kwargs(arch, kwargs))


def _fit_kwargs(arch: str, kwargs: dict[str, Any]) -> dict[str, Any]:
    if arch in NON_DARTS_MODELS:
        return {k: v for k, v in kwargs.items() if k not in DARTS_ONLY_KWARGS}
    if "width" in kwargs:
        raise ValueError(f"width sizes {', '.join(NON_DARTS_MODELS)}; {arch} is sized by init_channels and layers")
    return kwargs


def _tag_list() -> str:
    return ", ".join(pretrained.published_tags()) or "none"


def model_table(num_classes: int = 10) -> list[dict[str, Any]]:
    """One row per registered model at its official size: name, size (text), C and layers (DARTS) or width,
    params (M), paper params, source."""
    known = known_genotypes()
    rows = []
    for name in REGISTERED_MODELS:
        imagenet = name.endswith("_imagenet")
        model = create(name, num_classes=1000 if imagenet else num_classes)
        params_m = sum(p.numel() for p in model.parameters()) / 1e6
        if name in NON_DARTS_MODELS:
            width = model.model_args["width"]
            rows.append({"name": name, "size": f"width={width}", "init_channels": None, "layers": None,
                         "width": width, "params_m": params_m, "paper_params_m": None, "source": _SOURCES[name]})
            continue
        k = known[GENOTYPE_OF[name.removesuffix("_imagenet")]]
        info = k.imagenet if imagenet else {"init_channels": k.init_channels, "layers": k.layers,
                                            "paper_params_m": k.paper_params_m}
        rows.append({"name": name, "size": f"C={info['init_channels']} L={info['layers']}",
                     "init_channels": info["init_channels"], "layers": info["layers"], "width": None,
                     "params_m": params_m, "paper_params_m": info.get("paper_params_m"), "source": k.source})
    return rows


def published_table() -> tuple[list[dict[str, Any]], int]:
    """The published pretrained tags (one row each, from the manifest) and the total bytes of their weights files."""
    rows = []
    for name, r in pretrained.published_tags().items():
        rows.append({"name": name, "architecture": r["architecture"], "tag": r["tag"], "params": r.get("params"),
                     "dataset": r.get("dataset"), "input_size": r.get("input_size"), "recipe": r.get("recipe") or "",
                     "clean_accuracy": r.get("clean_accuracy"), "avg_robust_accuracy": r.get("avg_robust_accuracy"),
                     "evaluation": r.get("evaluation") or "", "entry": r.get("entry")})
    return rows, pretrained.weights_size()
