"""The eight DARTS primitives (Liu et al. 2018) as ``(C, stride, affine) -> nn.Module`` factories.

Every op maps ``C`` channels to ``C`` channels; ``stride=2`` halves the spatial size. The definitions follow DARTS'
``cnn/operations.py`` (ReLU-Conv-BN ordering, separable convs applied twice, dilated convs once).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

PRIMITIVES: tuple[str, ...] = (
    "none",
    "max_pool_3x3",
    "avg_pool_3x3",
    "skip_connect",
    "sep_conv_3x3",
    "sep_conv_5x5",
    "dil_conv_3x3",
    "dil_conv_5x5",
)


class ReLUConvBN(nn.Sequential):
    """ReLU -> Conv -> BN, the building block of DARTS' stems and preprocessing."""

    def __init__(self, c_in: int, c_out: int, kernel_size: int, stride: int, padding: int, affine: bool = True):
        super().__init__(
            nn.ReLU(inplace=False),
            nn.Conv2d(c_in, c_out, kernel_size, stride=stride, padding=padding, bias=False),
            nn.BatchNorm2d(c_out, affine=affine),
        )


class DepthwiseConv2d(nn.Conv2d):
    """A depthwise ``nn.Conv2d`` (same parameters, same state dict) whose stride-2, dilation-2 case runs as an
    undilated stride-1 convolution of the even pixels, with half the padding.

    The two are the same sum: output pixel ``i`` reads input pixels ``2i + 2j - p`` for kernel taps ``j``, all even
    when the padding ``p`` is (as in every DARTS ``dil_conv``), i.e. pixels ``i + j - p/2`` of ``x[..., ::2, ::2]``.
    oneDNN has no fast kernel for strided dilated depthwise convolutions: forward + backward of a (64, 16, 28, 28)
    batch through the 5x5 one took 15 ms contiguous and 30 ms channels-last, the subsampled form a few ms.
    """

    def _conv_forward(self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        p = self.padding
        if (self.stride == (2, 2) and self.dilation == (2, 2) and self.padding_mode == "zeros"
                and isinstance(p, tuple) and p[0] == p[1] and p[0] % 2 == 0):
            return F.conv2d(x[:, :, ::2, ::2], weight, bias, 1, p[0] // 2, 1, self.groups)
        return super()._conv_forward(x, weight, bias)


class DilConv(nn.Sequential):
    """ReLU -> dilated depthwise conv -> pointwise conv -> BN."""

    def __init__(self, c_in: int, c_out: int, kernel_size: int, stride: int, padding: int, dilation: int,
                 affine: bool = True):
        super().__init__(
            nn.ReLU(inplace=False),
            DepthwiseConv2d(c_in, c_in, kernel_size, stride, padding, dilation=dilation, groups=c_in, bias=False),
            nn.Conv2d(c_in, c_out, 1, bias=False),
            nn.BatchNorm2d(c_out, affine=affine),
        )


class SepConv(nn.Sequential):
    """Two stacked dilation-1 ``DilConv`` blocks, the first carrying the stride (DARTS' separable conv)."""

    def __init__(self, c_in: int, c_out: int, kernel_size: int, stride: int, padding: int, affine: bool = True):
        super().__init__(
            DilConv(c_in, c_in, kernel_size, stride, padding, 1, affine),
            DilConv(c_in, c_out, kernel_size, 1, padding, 1, affine),
        )


class AvgPool3x3(nn.Module):
    """DARTS' ``avg_pool_3x3``: the mean over each 3x3 window of the pixels inside the image (zero padding left out
    of the count), i.e. ``nn.AvgPool2d(3, stride, padding=1, count_include_pad=False)``.

    Computed as a depthwise convolution with a ones kernel divided by each window's pixel count: the same values up
    to float rounding (|difference| <= 1 ulp), but PyTorch's CPU ``avg_pool2d`` with ``count_include_pad=False`` is
    slow in channels-last layout (forward + backward of a (64, 8, 28, 28) batch: 11.4 ms, against 2.7 ms for the
    convolution; ``benchmarks/results/throughput.md`` times whole networks). No parameters.
    """

    def __init__(self, stride: int = 1):
        super().__init__()
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c, (h, w) = x.shape[1], x.shape[-2:]
        sums = F.conv2d(x, x.new_ones(c, 1, 3, 3), stride=self.stride, padding=1, groups=c)
        counts = F.conv2d(x.new_ones(1, 1, h, w), x.new_ones(1, 1, 3, 3), stride=self.stride, padding=1)
        return sums / counts

    def extra_repr(self) -> str:
        return f"stride={self.stride}"


class Zero(nn.Module):
    """The ``none`` op: an all-zero output of the right shape (strided when reducing)."""

    def __init__(self, stride: int):
        super().__init__()
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride == 1:
            return x.mul(0.0)
        return x[:, :, :: self.stride, :: self.stride].mul(0.0)


class FactorizedReduce(nn.Module):
    """Halve the spatial size with two offset stride-2 1x1 convs, concatenated (skip_connect when reducing)."""

    def __init__(self, c_in: int, c_out: int, affine: bool = True):
        super().__init__()
        if c_out % 2:
            raise ValueError(f"FactorizedReduce needs an even number of output channels, got {c_out}")
        self.relu = nn.ReLU(inplace=False)
        self.conv_1 = nn.Conv2d(c_in, c_out // 2, 1, stride=2, bias=False)
        self.conv_2 = nn.Conv2d(c_in, c_out // 2, 1, stride=2, bias=False)
        self.bn = nn.BatchNorm2d(c_out, affine=affine)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(x)
        y = x[:, :, 1:, 1:] if x.shape[-1] > 1 else x
        y = torch.nn.functional.pad(y, (0, x.shape[-1] - y.shape[-1], 0, x.shape[-2] - y.shape[-2]))
        return self.bn(torch.cat([self.conv_1(x), self.conv_2(y)], dim=1))


OpFactory = Callable[[int, int, bool], nn.Module]

OPS: dict[str, OpFactory] = {
    "none": lambda C, stride, affine: Zero(stride),
    "avg_pool_3x3": lambda C, stride, affine: AvgPool3x3(stride),
    "max_pool_3x3": lambda C, stride, affine: nn.MaxPool2d(3, stride=stride, padding=1),
    "skip_connect": lambda C, stride, affine: nn.Identity() if stride == 1 else FactorizedReduce(C, C, affine),
    "sep_conv_3x3": lambda C, stride, affine: SepConv(C, C, 3, stride, 1, affine),
    "sep_conv_5x5": lambda C, stride, affine: SepConv(C, C, 5, stride, 2, affine),
    "dil_conv_3x3": lambda C, stride, affine: DilConv(C, C, 3, stride, 2, 2, affine),
    "dil_conv_5x5": lambda C, stride, affine: DilConv(C, C, 5, stride, 4, 2, affine),
}


def make_op(name: str, channels: int, stride: int, affine: bool = True) -> nn.Module:
    """Build primitive ``name``; an unknown name raises ``ValueError`` listing the known ones."""
    if name not in OPS:
        raise ValueError(f"unknown primitive {name!r}; known primitives: {', '.join(PRIMITIVES)}")
    return OPS[name](channels, stride, affine)


class Normalize(nn.Module):
    """Per-channel ``(x - mean) / std`` held as buffers, so models take images in [0,1] (RobustBench convention)."""

    def __init__(self, mean: tuple[float, ...], std: tuple[float, ...]):
        super().__init__()
        if len(mean) != len(std) or any(s <= 0 for s in std):
            raise ValueError(f"mean/std must have equal length and positive std, got mean={mean}, std={std}")
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std
