"""Anchor (and target) adversarial noise from the package's PGD (torchattacks') on a given network.

The AN-Estimators never see a network: they turn a few PGD noises of an input (the *anchors*) into noises at other
strengths. This module makes those PGD noises, for the estimators' training data (anchors plus the target noise the
estimate is compared to) and for the search, which needs the anchors anyway.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from wsr_bench.attacks.factory import build_pgd
from wsr_bench.epsilon import check_eps

logger = logging.getLogger(__name__)

__all__ = ["pgd_noise"]


def _check_eps_list(eps_list: Sequence[float] | Tensor) -> list[float]:
    """Return ``eps_list`` as floats, refusing empty lists and strengths outside (0, 1]."""
    values = [float(e) for e in (eps_list.tolist() if isinstance(eps_list, Tensor) else eps_list)]
    if not values:
        raise ValueError("eps_list is empty: give at least one Linf strength in (0, 1]")
    return [check_eps(eps, "PGD strength") for eps in values]


def pgd_noise(model: nn.Module, x: Tensor, y: Tensor, eps_list: Sequence[float] | Tensor, steps: int = 7, *,
              random_start: bool = True, train_mode: bool = False) -> Tensor:
    """Adversarial noise of ``x`` against ``model`` at each Linf strength, with torchattacks' PGD.

    One PGD run per strength (:func:`~wsr_bench.attacks.factory.build_pgd`), step size
    :func:`~wsr_bench.attacks.factory.pgd_step_size` (eps * 2.5 / steps, Madry et al.; the paper's setting), random
    start drawn from torch's global generator (seed it with ``torch.manual_seed`` for repeatable noise). The model
    is attacked in eval mode and its mode is restored afterwards (torchattacks' default).

    Args:
        model: network taking [0,1] images (it normalizes inside) and returning logits.
        x: clean images ``(B, C, H, W)`` in [0, 1].
        y: integer labels ``(B,)``.
        eps_list: Linf strengths in (0, 1], in any order; the output follows this order.
        steps: PGD iterations (7 = PGD-7 as in the paper's search).
        random_start: start from a uniform random point in the eps ball.
        train_mode: attack the model in training mode (BatchNorm on batch statistics), e.g. where the loss that
            uses the noise is also taken in training mode; the running statistics are then updated too.

    Returns:
        Noise ``(B, N, C, H, W)`` on ``x``'s device, ``N = len(eps_list)``, with ``|noise| <= eps`` and
        ``x + noise`` in [0, 1].

    Raises:
        ValueError: bad shapes, images outside [0, 1], strengths outside (0, 1], or ``steps < 1``.
    """
    eps_values = _check_eps_list(eps_list)
    if x.dim() != 4:
        raise ValueError(f"x must be a batch of images (B, C, H, W), got shape {tuple(x.shape)}")
    if y.dim() != 1 or y.shape[0] != x.shape[0]:
        raise ValueError(f"y must be labels of shape ({x.shape[0]},), got shape {tuple(y.shape)}")
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    if x.numel() and (x.min() < 0 or x.max() > 1):
        raise ValueError("x must be images in [0, 1] (models normalize inside)")
    noises = []
    for eps in eps_values:
        adv = build_pgd(model, eps, steps, random_start=random_start, train_mode=train_mode)(x, y).to(x.device)
        # torchattacks clamps delta to the ball before re-clamping the image; re-project to drop rounding residue.
        noises.append(torch.clamp(adv - x, -eps, eps))
    return torch.stack(noises, dim=1)
