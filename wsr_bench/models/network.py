"""Networks built from a DARTS genotype: the CIFAR shape (``NetworkCIFAR``) and the ImageNet shape.

Follows DARTS' ``cnn/model.py``: a 3C stem (CIFAR) or a two-stage strided stem (ImageNet), ``layers`` cells with
reductions at 1/3 and 2/3 depth, optional auxiliary head and drop-path. Inputs are images in [0,1]; the dataset's
mean/std normalisation lives inside the model as buffers (RobustBench / torchattacks convention). The class also
speaks timm's classifier API (``num_classes``, ``forward_features``, ``forward_head``, ``reset_classifier``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from timm.layers import drop_path
from torch import nn

from wsr_bench.search_space.genotype import Genotype
from wsr_bench.search_space.ops import FactorizedReduce, Normalize, ReLUConvBN, make_op
from wsr_bench.search_space.supernet import CIFAR_MEAN, CIFAR_STD


class Cell(nn.Module):
    """A discrete cell: each node adds the outputs of its two chosen ops; the output concatenates ``concat``."""

    def __init__(self, genotype: Genotype, c_pp: int, c_p: int, c: int, reduction: bool, reduction_prev: bool):
        super().__init__()
        self.preprocess0 = FactorizedReduce(c_pp, c) if reduction_prev else ReLUConvBN(c_pp, c, 1, 1, 0)
        self.preprocess1 = ReLUConvBN(c_p, c, 1, 1, 0)
        edges = genotype.reduce if reduction else genotype.normal
        self.concat = genotype.reduce_concat if reduction else genotype.normal_concat
        self.multiplier = len(self.concat)
        self.indices = tuple(src for _, src in edges)
        self.ops = nn.ModuleList(make_op(op, c, 2 if reduction and src < 2 else 1) for op, src in edges)

    def forward(self, s0: torch.Tensor, s1: torch.Tensor, drop_prob: float = 0.0) -> torch.Tensor:
        states = [self.preprocess0(s0), self.preprocess1(s1)]
        for i in range(len(self.ops) // 2):
            hs = []
            for k in (2 * i, 2 * i + 1):
                h = self.ops[k](states[self.indices[k]])
                if self.training and drop_prob > 0 and not isinstance(self.ops[k], nn.Identity):
                    h = drop_path(h, drop_prob, self.training)
                hs.append(h)
            states.append(hs[0] + hs[1])
        return torch.cat([states[i] for i in self.concat], dim=1)


def _auxiliary_head(channels: int, num_classes: int, imagenet: bool) -> nn.Module:
    """DARTS' auxiliary classifier (expects 8x8 maps for CIFAR, 14x14 for ImageNet)."""
    return nn.Sequential(
        nn.ReLU(inplace=False),
        nn.AvgPool2d(5, stride=2 if imagenet else 3, padding=0, count_include_pad=False),
        nn.Conv2d(channels, 128, 1, bias=False), nn.BatchNorm2d(128), nn.ReLU(inplace=False),
        nn.Conv2d(128, 768, 2, bias=False), nn.BatchNorm2d(768), nn.ReLU(inplace=False),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(768, num_classes))


#: :class:`DartsNetwork`'s keyword options beside its shape, and their defaults (timm passes them as keywords).
NETWORK_OPTIONS: dict[str, Any] = {"auxiliary": False, "drop_path_rate": 0.0, "stem": "cifar", "mean": CIFAR_MEAN,
                                   "std": CIFAR_STD, "global_pool": "avg"}


class DartsNetwork(nn.Module):
    """A classification network from a genotype, inputs in [0,1].

    Args:
        genotype: the cell description.
        init_channels: C of DARTS (channels of the first cells).
        layers: number of cells.
        num_classes: classifier outputs.
        in_chans: input channels.
        auxiliary: add DARTS' auxiliary head (used by ``forward_with_aux`` in training only).
        drop_path_rate: drop-path probability inside cells (DARTS ramps it up over training).
        stem: ``"cifar"`` (3C conv stem) or ``"imagenet"`` (two strided stems, 224x224 inputs).
        mean, std: input normalisation applied inside the model.
        global_pool: only ``"avg"`` is supported (timm passes it).
    """

    def __init__(self, genotype: Genotype, init_channels: int = 36, layers: int = 20, num_classes: int = 10,
                 in_chans: int = 3, **options: Any):
        super().__init__()
        unused = set(options) - set(NETWORK_OPTIONS)
        if unused:
            raise TypeError(f"unexpected model arguments: {', '.join(sorted(unused))}")
        o = {**NETWORK_OPTIONS, **options}
        auxiliary, drop_path_rate, stem = o["auxiliary"], o["drop_path_rate"], o["stem"]
        mean, std, global_pool = o["mean"], o["std"], o["global_pool"]
        if stem not in ("cifar", "imagenet") or global_pool != "avg":
            raise ValueError(f"stem must be 'cifar' or 'imagenet' and global_pool 'avg', got {stem!r}, "
                             f"{global_pool!r}")
        if init_channels < 2 or layers < 3:
            raise ValueError(f"init_channels must be >= 2 and layers >= 3, got {init_channels}, {layers}")
        if len(mean) != in_chans:
            mean, std = (sum(mean) / len(mean),) * in_chans, (sum(std) / len(std),) * in_chans
        self.genotype, self.num_classes, self.drop_path_prob = genotype, num_classes, drop_path_rate
        self.model_args = {"init_channels": init_channels, "layers": layers, "num_classes": num_classes,
                           "in_chans": in_chans, "auxiliary": auxiliary, "drop_path_rate": drop_path_rate,
                           "stem": stem, "mean": list(mean), "std": list(std)}
        self.normalize = Normalize(tuple(mean), tuple(std))
        c = init_channels
        if stem == "cifar":
            self.stem = nn.Sequential(nn.Conv2d(in_chans, 3 * c, 3, padding=1, bias=False), nn.BatchNorm2d(3 * c))
            self.stem1 = None
            c_pp = c_p = 3 * c
            reduction_prev = False
        else:  # DARTS' NetworkImageNet: stem0 (stride 4) feeds cell input 0, stem1 (stride 8) cell input 1
            self.stem = nn.Sequential(
                nn.Conv2d(in_chans, c // 2, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(c // 2),
                nn.ReLU(inplace=False), nn.Conv2d(c // 2, c, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(c))
            self.stem1 = nn.Sequential(
                nn.ReLU(inplace=False), nn.Conv2d(c, c, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(c))
            c_pp = c_p = c
            reduction_prev = True
        self.cells, c_curr, c_aux = nn.ModuleList(), c, c_p
        for i in range(layers):
            reduction = i in (layers // 3, 2 * layers // 3)
            c_curr = c_curr * 2 if reduction else c_curr
            cell = Cell(genotype, c_pp, c_p, c_curr, reduction, reduction_prev)
            self.cells.append(cell)
            reduction_prev = reduction
            c_pp, c_p = c_p, cell.multiplier * c_curr
            if i == 2 * layers // 3:
                c_aux = c_p
        self.aux_index = 2 * layers // 3
        self.auxiliary_head = _auxiliary_head(c_aux, num_classes, stem == "imagenet") if auxiliary else None
        self.num_features = c_p
        self.global_pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(c_p, num_classes) if num_classes > 0 else nn.Identity()

    def _features(self, x: torch.Tensor, want_aux: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
        s0 = self.stem(self.normalize(x))
        s1 = s0 if self.stem1 is None else self.stem1(s0)
        aux = None
        for i, cell in enumerate(self.cells):
            s0, s1 = s1, cell(s0, s1, self.drop_path_prob)
            if want_aux and i == self.aux_index and self.auxiliary_head is not None:
                aux = self.auxiliary_head(s1)
        return s1, aux

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Feature maps after the last cell."""
        return self._features(x, want_aux=False)[0]

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.global_pool(x).flatten(1)
        return x if pre_logits else self.classifier(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits for images in [0,1]."""
        return self.forward_head(self.forward_features(x))

    def forward_with_aux(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``(logits, auxiliary logits or None)`` for training with DARTS' auxiliary loss."""
        feats, aux = self._features(x, want_aux=self.training)
        return self.forward_head(feats), aux

    def get_classifier(self) -> nn.Module:
        return self.classifier

    def reset_classifier(self, num_classes: int, global_pool: str = "avg") -> None:
        self.num_classes = num_classes
        self.classifier = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()

    def load_pretrained(self, path: str | Path) -> None:
        """Load local weights safely (timm calls this for ``custom_load`` cfgs): safetensors, or a
        ``torch.load(..., weights_only=True)`` state dict."""
        from wsr_bench.models.weights import load_state_dict_file

        self.load_state_dict(load_state_dict_file(path))
