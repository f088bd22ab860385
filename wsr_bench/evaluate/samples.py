"""Which images an evaluation used, as a leaderboard entry records them (:class:`wsr_bench.leaderboard.Samples`).

Two entries can be compared image by image (McNemar) only when they were computed on the same images. The entry
therefore stores the images' positions in the split and a fingerprint of the data itself, so that a different
subset, order, resize or dataset version is caught even when the indices agree.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence

import torch

from wsr_bench.epsilon import find_eps
from wsr_bench.leaderboard.schema import Samples

#: Prefix of the hashed bytes; bump it if the layout below ever changes.
HASH_DOMAIN = b"wsr-bench samples v1\n"


def data_sha256(x: torch.Tensor, y: torch.Tensor) -> str:
    """Hex SHA-256 of evaluated images ``x`` (N,C,H,W in [0,1]) and labels ``y`` (N,).

    The hashed bytes are :data:`HASH_DOMAIN`, the shape as ASCII (``"N,C,H,W\\n"``), the images quantised to uint8
    (``round(255 x)``, C order) and the labels as little-endian int64. Quantising makes the hash independent of
    the float type and of sub-1/510 loading noise, while any real change of pixels, order or labels changes it.
    """
    if x.ndim < 1 or y.ndim != 1 or len(x) != len(y):
        raise ValueError(f"data_sha256 needs N images and N labels, got shapes {tuple(x.shape)} and {tuple(y.shape)}")
    pixels = (x.detach().to("cpu", torch.float64).clamp(0, 1) * 255).round().to(torch.uint8).contiguous()
    labels = y.detach().to("cpu", torch.int64).contiguous()
    h = hashlib.sha256(HASH_DOMAIN)
    h.update((",".join(map(str, x.shape)) + "\n").encode())
    h.update(pixels.numpy().tobytes())
    h.update(labels.numpy().astype("<i8").tobytes())
    return h.hexdigest()


def snap_break_eps(break_eps: torch.Tensor, eps: Sequence[float]) -> list[float | None]:
    """Per-sample breaking eps as JSON values on the evaluated grid: ``inf`` -> None, 0 stays 0, and float32 copies
    of grid values become the grid's own floats (so ``b > eps`` compares exactly in the entry)."""
    out: list[float | None] = []
    for v in break_eps.detach().cpu().double().tolist():
        if math.isinf(v):
            out.append(None)
        elif v == 0.0:
            out.append(0.0)
        else:
            i = find_eps(v, eps)
            if i is None:
                raise ValueError(f"breaking eps {v} is not on the evaluated grid {list(eps)}")
            out.append(float(eps[i]))
    return out


def sample_record(break_eps: torch.Tensor, eps: Sequence[float], x: torch.Tensor, y: torch.Tensor,
                  indices: Sequence[int] | None = None, split: str = "test", *,
                  break_attack: Sequence[str | None] | None = None, evidence: Sequence[str] | None = None) -> Samples:
    """The entry's :class:`Samples`: ``indices`` (default ``0..N-1``, the first N images of ``split``), the data
    hash of ``x``/``y``, the snapped per-sample worst-case breaking eps and, when given (empty: not recorded), which
    attack broke each image and which strengths were attacked or inferred (``SpectrumResult.break_attack`` and
    ``.evidence``)."""
    idx = list(range(len(x))) if indices is None else [int(i) for i in indices]
    if len(idx) != len(x):
        raise ValueError(f"{len(idx)} sample indices for {len(x)} images")
    return Samples(idx, data_sha256(x, y), snap_break_eps(break_eps, eps), split,
                   list(break_attack) if break_attack else None, list(evidence) if evidence else None)
