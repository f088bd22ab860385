"""Batch data augmentation on the training device: random crop (zero padding), horizontal flip, cutout.

Applied to the clean batch before the attack, so the attack sees what the network trains on. The randomness comes
from torch's global generator (saved in checkpoints, so a resumed run draws the same crops).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from wsr_bench.config import TrainConfig
from wsr_bench.rules import check_choice


def random_crop(x: torch.Tensor, padding: int = 4) -> torch.Tensor:
    """Per-image random crop of the zero-padded batch back to its size (torchvision's ``RandomCrop(pad=4)``)."""
    if padding <= 0:
        return x
    b, _, h, w = x.shape
    padded = F.pad(x, (padding, padding, padding, padding))
    oy = torch.randint(0, 2 * padding + 1, (b,), device=x.device)
    ox = torch.randint(0, 2 * padding + 1, (b,), device=x.device)
    rows = (oy[:, None] + torch.arange(h, device=x.device))[:, :, None]   # (B, H, 1)
    cols = (ox[:, None] + torch.arange(w, device=x.device))[:, None, :]   # (B, 1, W)
    idx = torch.arange(b, device=x.device)[:, None, None]
    return padded.permute(0, 2, 3, 1)[idx, rows, cols].permute(0, 3, 1, 2).contiguous()


def random_flip(x: torch.Tensor) -> torch.Tensor:
    """Flip each image horizontally with probability 1/2."""
    flip = torch.rand(x.shape[0], device=x.device) < 0.5
    return torch.where(flip[:, None, None, None], x.flip(-1), x)


def cutout(x: torch.Tensor, size: int) -> torch.Tensor:
    """Zero one ``size`` x ``size`` square per image at a random centre (DeVries & Taylor 2017; may clip)."""
    if size <= 0:
        return x
    b, _, h, w = x.shape
    cy = torch.randint(0, h, (b,), device=x.device)[:, None, None]
    cx = torch.randint(0, w, (b,), device=x.device)[:, None, None]
    ys = torch.arange(h, device=x.device)[None, :, None]
    xs = torch.arange(w, device=x.device)[None, None, :]
    half = size // 2
    hole = (ys >= cy - half) & (ys < cy - half + size) & (xs >= cx - half) & (xs < cx - half + size)
    return x.masked_fill(hole[:, None], 0.0)


def make_augment(cfg: TrainConfig) -> Callable[[torch.Tensor], torch.Tensor] | None:
    """The batch transform ``cfg.augment`` / ``cfg.cutout`` describe, or ``None`` when both are off."""
    check_choice(cfg.augment, TrainConfig.AUGMENTS, "train.augment")
    if cfg.augment == "none" and cfg.cutout <= 0:
        return None

    def augment(x: torch.Tensor) -> torch.Tensor:
        if cfg.augment in ("crop", "crop_flip"):
            x = random_crop(x, 4)
        if cfg.augment == "crop_flip":
            x = random_flip(x)
        return cutout(x, cfg.cutout)
    return augment
