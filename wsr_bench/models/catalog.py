"""The model catalogue behind ``wsr-bench models``/``export``: names, sizes, sources, and one ``create``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import timm
from torch import nn

from wsr_bench.models import REGISTERED_MODELS
from wsr_bench.models.wsrnet import GENOTYPE_OF
from wsr_bench.search_space.genotype import known_genotypes


def create(name: str, **kwargs: Any) -> nn.Module:
    """Create a registered model, or a ``wsrnet`` from a ``genotype.json`` path; ``None`` kwargs are dropped.

    Unknown names raise a one-line ``ValueError`` listing the known ones.
    """
    kwargs = {k: v for k, v in kwargs.items() if v is not None}
    if name not in REGISTERED_MODELS and Path(name).suffix == ".json":
        if not Path(name).is_file():
            raise FileNotFoundError(f"genotype file {name} not found")
        return timm.create_model("wsrnet", genotype=name, **kwargs)
    if name not in REGISTERED_MODELS and name != "wsrnet":
        raise ValueError(f"unknown model {name!r}; wsr-bench models: {', '.join(REGISTERED_MODELS)} "
                         f"(or a path to a genotype.json)")
    return timm.create_model(name, **kwargs)


def model_table(num_classes: int = 10) -> list[dict[str, Any]]:
    """One row per registered model at its official size: name, C, layers, params (M), paper params, source."""
    known = known_genotypes()
    rows = []
    for name in REGISTERED_MODELS:
        imagenet = name.endswith("_imagenet")
        k = known[GENOTYPE_OF[name.removesuffix("_imagenet")]]
        info = k.imagenet if imagenet else {"init_channels": k.init_channels, "layers": k.layers,
                                            "paper_params_m": k.paper_params_m}
        model = create(name, num_classes=1000 if imagenet else num_classes)
        rows.append({"name": name, "init_channels": info["init_channels"], "layers": info["layers"],
                     "params_m": sum(p.numel() for p in model.parameters()) / 1e6,
                     "paper_params_m": info.get("paper_params_m"), "source": k.source})
    return rows
