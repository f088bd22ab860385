"""WsrNets and the paper's DARTS-space baselines as timm models.

Registered timm's way (``_cfg``, ``generate_default_cfgs``, ``_create_*`` through ``build_model_with_cfg``,
three-line ``@register_model`` functions). Each entry defaults to the official width/depth of its genotype
(``init_channels``/``layers`` from the official retraining scripts) and accepts overrides::

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
from wsr_bench.rules import GENOTYPE_OF, IMAGENET_MODELS  # the names, torch-free so that configs can check them
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


@register_model
def wsrnet_basic(pretrained: bool = False, **kwargs: Any) -> DartsNetwork:
    """WsrNet-Basic (Wsr-NAS, N1=3, N2=3; official name ``cna_r``), C=45, 20 cells, 4.5M params on CIFAR-10."""
    return _create_known("wsrnet_basic", pretrained, **kwargs)


@register_model
def wsrnet_robust(pretrained: bool = False, **kwargs: Any) -> DartsNetwork:
    """WsrNet-Robust: the WsrNet-Basic genotype, retrained with other hyper-parameters in the paper."""
    return _create_known("wsrnet_robust", pretrained, **kwargs)


@register_model
def wsrnet_plus(pretrained: bool = False, **kwargs: Any) -> DartsNetwork:
    """WsrNet-Plus (Wsr-NAS, N1=3, N2=8), C=46, 20 cells, 4.7M params on CIFAR-10."""
    return _create_known("wsrnet_plus", pretrained, **kwargs)


@register_model
def wsrnet_m(pretrained: bool = False, **kwargs: Any) -> DartsNetwork:
    """WsrNet-M (official name ``cna_m``), C=45, 20 cells."""
    return _create_known("wsrnet_m", pretrained, **kwargs)


@register_model
def wsrnet_n(pretrained: bool = False, **kwargs: Any) -> DartsNetwork:
    """WsrNet-N (official name ``cna_n``), C=50, 20 cells."""
    return _create_known("wsrnet_n", pretrained, **kwargs)


@register_model
def racl(pretrained: bool = False, **kwargs: Any) -> DartsNetwork:
    """RACL (Dong et al. 2020), C=36, 20 cells, 3.6M params on CIFAR-10."""
    return _create_known("racl", pretrained, **kwargs)


@register_model
def advrush(pretrained: bool = False, **kwargs: Any) -> DartsNetwork:
    """AdvRush (Mok et al. 2021), C=36, 20 cells, 4.2M params on CIFAR-10."""
    return _create_known("advrush", pretrained, **kwargs)


@register_model
def darts_v2(pretrained: bool = False, **kwargs: Any) -> DartsNetwork:
    """DARTS-V2 (Liu et al. 2018), C=36, 20 cells, 3.3M params on CIFAR-10."""
    return _create_known("darts_v2", pretrained, **kwargs)


@register_model
def pc_darts(pretrained: bool = False, **kwargs: Any) -> DartsNetwork:
    """PC-DARTS (Xu et al. 2020), C=36, 20 cells, 3.6M params on CIFAR-10."""
    return _create_known("pc_darts", pretrained, **kwargs)


@register_model
def wsrnet_basic_imagenet(pretrained: bool = False, **kwargs: Any) -> DartsNetwork:
    """WsrNet-Basic in DARTS' ImageNet shape (paper Table 4), C=74, 20 cells, 1000 classes."""
    return _create_known("wsrnet_basic_imagenet", pretrained, imagenet=True, **kwargs)


@register_model
def racl_imagenet(pretrained: bool = False, **kwargs: Any) -> DartsNetwork:
    """RACL in DARTS' ImageNet shape (paper Table 4), C=64, 20 cells, 1000 classes."""
    return _create_known("racl_imagenet", pretrained, imagenet=True, **kwargs)


@register_model
def advrush_imagenet(pretrained: bool = False, **kwargs: Any) -> DartsNetwork:
    """AdvRush in DARTS' ImageNet shape (paper Table 4), C=60, 20 cells, 1000 classes."""
    return _create_known("advrush_imagenet", pretrained, imagenet=True, **kwargs)


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
