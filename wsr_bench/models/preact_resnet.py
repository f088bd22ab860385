"""PreAct-ResNet-18, the CIFAR-shape reference network of robustness papers, as a timm model.

He et al. 2016 ("Identity Mappings in Deep Residual Networks"): a 3x3 stride-1 stem convolution (no max-pool), four
stages of two pre-activation BasicBlocks (BN-ReLU-conv3x3-BN-ReLU-conv3x3 plus the shortcut) with ``width``,
``2 width``, ``4 width``, ``8 width`` channels (stride 2 at the first block of stages 2-4, where a 1x1 convolution of
the pre-activated input is the shortcut), then BN-ReLU, global average pooling and a linear classifier. This is the
PreActResNet-18 of Rice et al. 2020 ("Overfitting in adversarially robust deep learning") and RobustBench's zoo
(``PreActResNet(PreActBlockV2, [2, 2, 2, 2], bn_before_fc=True)``, e.g. ``Rice2020OverfittingNetL2``); the module
names match it (``conv1``, ``layer1..4``, ``bn``, ``linear``), so such state dicts load as they are. ``width=64`` is
the standard network: 11,172,170 parameters on CIFAR-10 (RobustBench's ``PreActResNet18()`` without the final BN,
as Wong et al. 2020 use it, has 11,171,146).

Registered timm's way, like :mod:`wsr_bench.models.wsrnet`::

    timm.create_model("preact_resnet18", width=16, in_chans=1, num_classes=10, mean=(0.286,), std=(0.353,))
    timm.create_model("preact_resnet18.fmnist_pgd", pretrained=True)   # a published tag, if the manifest has one

Inputs are images in [0,1]; the dataset mean/std normalisation lives inside the model as buffers (``mean``/``std``
arguments), so the pretrained cfg's ``mean``/``std`` are zeros and ones.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from timm.models import build_model_with_cfg, register_model
from torch import nn

from wsr_bench.models import pretrained as _pretrained
from wsr_bench.search_space.ops import Normalize
from wsr_bench.search_space.supernet import CIFAR_MEAN, CIFAR_STD

__all__ = ["PreActBlock", "PreActResNet"]

BLOCKS = (2, 2, 2, 2)


class PreActBlock(nn.Module):
    """Pre-activation BasicBlock; a projection shortcut (1x1 conv) takes the pre-activated input, as He et al.'s."""

    expansion = 1

    def __init__(self, in_planes: int, planes: int, stride: int = 1):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.shortcut = (nn.Sequential(nn.Conv2d(in_planes, planes, 1, stride=stride, bias=False))
                         if stride != 1 or in_planes != planes else None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(x))
        shortcut = x if self.shortcut is None else self.shortcut(out)
        out = self.conv1(out)
        out = self.conv2(F.relu(self.bn2(out)))
        return out + shortcut


class PreActResNet(nn.Module):
    """PreAct-ResNet-18 for small images (CIFAR shape), inputs in [0,1].

    Args:
        width: channels of the first stage (64: the standard network); the stages have 1, 2, 4, 8 times as many.
        num_classes: classifier outputs (0: no classifier, ``forward`` returns the pooled features).
        in_chans: input channels.
        mean, std: input normalisation applied inside the model (one value per channel, or any length to average).
        global_pool: only ``"avg"`` is supported (timm passes it).
    """

    def __init__(self, width: int = 64, num_classes: int = 10, in_chans: int = 3,
                 mean: tuple[float, ...] = CIFAR_MEAN, std: tuple[float, ...] = CIFAR_STD, global_pool: str = "avg",
                 **unused: Any):
        super().__init__()
        if unused:
            raise TypeError(f"unexpected model arguments: {', '.join(sorted(unused))}")
        if global_pool != "avg":
            raise ValueError(f"global_pool must be 'avg', got {global_pool!r}")
        if int(width) != width or width < 2:
            raise ValueError(f"width must be an integer >= 2, got {width}")
        width = int(width)
        if len(mean) != in_chans:
            mean, std = (sum(mean) / len(mean),) * in_chans, (sum(std) / len(std),) * in_chans
        self.num_classes = num_classes
        self.model_args = {"width": width, "num_classes": num_classes, "in_chans": in_chans,
                           "mean": list(mean), "std": list(std)}
        self.normalize = Normalize(tuple(mean), tuple(std))
        self.conv1 = nn.Conv2d(in_chans, width, 3, stride=1, padding=1, bias=False)
        in_planes = width
        for i, n in enumerate(BLOCKS):
            planes, stride = width * 2 ** i, 1 if i == 0 else 2
            blocks = []
            for s in [stride] + [1] * (n - 1):
                blocks.append(PreActBlock(in_planes, planes, s))
                in_planes = planes
            self.add_module(f"layer{i + 1}", nn.Sequential(*blocks))
        self.bn = nn.BatchNorm2d(in_planes)
        self.num_features = in_planes
        self.global_pool = nn.AdaptiveAvgPool2d(1)
        self.linear = nn.Linear(in_planes, num_classes) if num_classes > 0 else nn.Identity()

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Feature maps after the last stage's BN-ReLU."""
        x = self.conv1(self.normalize(x))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return F.relu(self.bn(x))

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.global_pool(x).flatten(1)
        return x if pre_logits else self.linear(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits for images in [0,1]."""
        return self.forward_head(self.forward_features(x))

    def get_classifier(self) -> nn.Module:
        return self.linear

    def reset_classifier(self, num_classes: int, global_pool: str = "avg") -> None:
        self.num_classes = num_classes
        self.model_args["num_classes"] = num_classes
        self.linear = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()

    def load_pretrained(self, path: str | Path) -> None:
        """Load local weights safely (timm calls this for ``custom_load`` cfgs): safetensors, or a
        ``torch.load(..., weights_only=True)`` state dict."""
        from wsr_bench.models.weights import load_state_dict_file

        self.load_state_dict(load_state_dict_file(path))


def _cfg(**kwargs: Any) -> dict[str, Any]:
    return {
        "url": "", "num_classes": 10, "input_size": (3, 32, 32), "pool_size": (4, 4), "crop_pct": 1.0,
        "interpolation": "bilinear", "mean": (0.0, 0.0, 0.0), "std": (1.0, 1.0, 1.0), "first_conv": "conv1",
        "classifier": "linear", "custom_load": True, "license": "mit",
        "description": f"inputs in [0,1]; the model normalises inside with the dataset mean/std {CIFAR_MEAN}/"
                       f"{CIFAR_STD}",
        **kwargs,
    }


#: ``preact_resnet18.untrained`` (the default) plus every published ``preact_resnet18.<tag>`` of the manifest.
default_cfgs = _pretrained.generate_cfgs({
    "preact_resnet18.untrained": _cfg(notes=("He et al. 2016 (identity mappings); CIFAR PreActResNet-18 of Rice et "
                                             "al. 2020 and RobustBench",)),
})


@register_model
def preact_resnet18(pretrained: bool = False, **kwargs: Any) -> PreActResNet:
    """PreAct-ResNet-18 (He et al. 2016), CIFAR shape; ``width`` 64 (standard): 11.17M params on CIFAR-10."""
    kwargs = _pretrained.resolve_create("preact_resnet18", pretrained, kwargs)
    kwargs.setdefault("mean", CIFAR_MEAN)
    kwargs.setdefault("std", CIFAR_STD)
    return build_model_with_cfg(PreActResNet, "preact_resnet18", pretrained, **kwargs)
