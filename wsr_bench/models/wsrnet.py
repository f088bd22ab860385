"""WsrNets and the paper's DARTS-space baselines as timm models.

Registered timm's way (``_cfg``, ``generate_default_cfgs``, ``_create_*`` through ``build_model_with_cfg``,
``register_model``), one entry point per published architecture of ``data_files/genotypes.json`` (its ``models``
list, beside the genotypes: adding an architecture is adding it there, nowhere else). Each entry defaults to the
official width/depth of its genotype (``init_channels``/``layers`` from the official retraining scripts) and accepts
overrides::

    timm.create_model("wsrnet_basic", init_channels=8, layers=5, num_classes=10)
    timm.create_model("wsrnet_basic", pretrained=True, pretrained_cfg_overlay=dict(file="model.safetensors"))
    timm.create_model("wsrnet", genotype="runs/demo/genotype.json", init_channels=8, layers=5)

The pretrained cfg's ``mean``/``std`` are (0,0,0)/(1,1,1): inputs are images in [0,1] and the model normalises
inside with the dataset mean/std (``mean``/``std`` model arguments, stored as buffers), as RobustBench and
torchattacks expect. Local weights are loaded by ``DartsNetwork.load_pretrained`` (``custom_load``): safetensors,
or ``torch.load(weights_only=True)``.

Published weights (:mod:`wsr_bench.models.pretrained`) are pretrained tags beside each architecture's default
``untrained`` one: ``timm.create_model("wsrnet_basic.fmnist_pgd", pretrained=True)`` builds with the tag's manifest
arguments (C, cells, mean/std; the genotype too for ``wsrnet.<tag>``) and loads its checked file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from timm.models import build_model_with_cfg, register_model

from wsr_bench.models import pretrained as _pretrained
from wsr_bench.models.network import DartsNetwork
from wsr_bench.rules import (  # the names, torch-free so that configs can check them
    GENOTYPE_OF,
    IMAGENET_MODELS,
    published_architectures,
)
from wsr_bench.search_space.genotype import Genotype, known_genotypes, load_genotype
from wsr_bench.search_space.supernet import CIFAR_MEAN, CIFAR_STD

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _cfg(imagenet: bool = False, **kwargs: Any) -> dict[str, Any]:
    size = 224 if imagenet else 32
    return {
        "url": "", "num_classes": 1000 if imagenet else 10, "input_size": (3, size, size),
        "pool_size": (7, 7) if imagenet else (8, 8), "crop_pct": 0.875 if imagenet else 1.0,
        "interpolation": "bilinear", "mean": (0.0, 0.0, 0.0), "std": (1.0, 1.0, 1.0),
        "first_conv": "stem.0", "classifier": "classifier", "custom_load": True, "license": "mit",
        "description": "inputs in [0,1]; the model normalises inside with the dataset mean/std "
                       f"{IMAGENET_MEAN if imagenet else CIFAR_MEAN}/{IMAGENET_STD if imagenet else CIFAR_STD}",
        **kwargs,
    }


def _source(name: str) -> str:
    return known_genotypes()[GENOTYPE_OF.get(name, name)].source


#: ``<name>.untrained`` (the default of each architecture) plus every published ``<name>.<tag>`` of the manifest.
default_cfgs = _pretrained.generate_cfgs({
    **{f"{name}.untrained": _cfg(notes=(_source(name),)) for name in GENOTYPE_OF},
    **{f"{name}_imagenet.untrained": _cfg(imagenet=True, notes=(_source(name),)) for name in IMAGENET_MODELS},
    "wsrnet.untrained": _cfg(notes=("any genotype (genotype=... argument)",)),
})


def _create_darts_network(variant: str, genotype: Genotype | str | Path | dict, pretrained: bool = False,
                          **kwargs: Any) -> DartsNetwork:
    """Build a ``DartsNetwork`` through timm's builder (cfg resolution, local pretrained loading); ``kwargs`` went
    through :func:`wsr_bench.models.pretrained.resolve_create` (tag arguments, weights source checked)."""
    geno = load_genotype(genotype)
    imagenet = variant.endswith("_imagenet")
    kwargs.setdefault("stem", "imagenet" if imagenet else "cifar")
    kwargs.setdefault("mean", IMAGENET_MEAN if imagenet else CIFAR_MEAN)
    kwargs.setdefault("std", IMAGENET_STD if imagenet else CIFAR_STD)
    return build_model_with_cfg(DartsNetwork, variant, pretrained, genotype=geno, **kwargs)


def _official(name: str, imagenet: bool = False) -> dict[str, Any]:
    known = known_genotypes()[GENOTYPE_OF[name]]
    if imagenet:
        return {"init_channels": known.imagenet["init_channels"], "layers": known.imagenet["layers"]}
    return {"init_channels": known.init_channels, "layers": known.layers}


def _create_known(variant: str, pretrained: bool, imagenet: bool = False, **kwargs: Any) -> DartsNetwork:
    name = variant.removesuffix("_imagenet")
    kwargs = _pretrained.resolve_create(variant, pretrained, kwargs)
    return _create_darts_network(variant, GENOTYPE_OF[name], pretrained, **{**_official(name, imagenet), **kwargs})


def _register(variant: str, description: str, imagenet: bool = False) -> None:
    """Register ``variant`` (a published architecture of ``data_files/genotypes.json``) as a timm model: a
    ``(pretrained=False, **kwargs)`` entry point named ``variant`` in this module, as ``@register_model`` would."""

    def entry(pretrained: bool = False, **kwargs: Any) -> DartsNetwork:
        return _create_known(variant, pretrained, imagenet=imagenet, **kwargs)

    entry.__name__ = entry.__qualname__ = variant
    entry.__doc__ = description
    globals()[variant] = register_model(entry)


# every published architecture of the DARTS space, from its one place (rules.published_architectures)
for _arch in published_architectures():
    _register(_arch["name"], _arch["description"])
    if "imagenet_description" in _arch:
        _register(f"{_arch['name']}_imagenet", _arch["imagenet_description"], imagenet=True)


@register_model
def wsrnet(pretrained: bool = False, genotype: Genotype | str | Path | dict | None = None,
           **kwargs: Any) -> DartsNetwork:
    """A network from any genotype (a Genotype, a dict, a known name or a ``genotype.json`` path); a published
    ``wsrnet.<tag>`` brings its own."""
    kwargs = _pretrained.resolve_create("wsrnet", pretrained, kwargs)
    published = kwargs.pop("genotype", None)  # a published tag's (explicit arguments win)
    genotype = published if genotype is None else genotype
    if genotype is None:
        raise ValueError("model 'wsrnet' needs genotype=<Genotype | known name | path to genotype.json>")
    kwargs.setdefault("init_channels", 36)
    kwargs.setdefault("layers", 20)
    return _create_darts_network("wsrnet", genotype, pretrained, **kwargs)
