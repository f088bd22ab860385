"""The robust search objective (paper Eq. 10) and the EWSS update of the architecture weights.

    min_A  alpha * L_nat + beta * sum_i beta_i * L_eps_i,   H = GumbelSoftmax(A, xi, tau),
    sum_i beta_i = 1,  alpha + beta = 1,  alpha, beta, beta_i > 0.

Wsr-NAS evaluates it on the VLE's estimates ``psi(H)`` (:func:`ewss_step`): the gradient reaches ``A`` through the
VLE and the Gumbel-softmax, so updating ``A`` costs a few LSTM passes and no pass over validation images. The naive
search evaluates the same objective on losses measured through the super-network.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from wsr_bench.search_space.supernet import gumbel_softmax

__all__ = ["ObjectiveError", "RobustObjective", "ewss_step"]


class ObjectiveError(ValueError):
    """Weights that violate Eq. 10's constraints."""


@dataclass(frozen=True)
class RobustObjective:
    """Eq. 10 with validated weights; ``weights`` (beta_i) are normalised to sum to 1 on construction.

    Attributes:
        alpha: weight of the natural loss (> 0).
        beta: weight of the robust losses (> 0, ``alpha + beta = 1``).
        weights: one positive beta_i per strength, in the order of the loss vector.
    """

    alpha: float = 0.8
    beta: float = 0.2
    weights: tuple[float, ...] = (1, 2, 3, 5, 7, 10)

    def __post_init__(self) -> None:
        w = [float(v) for v in self.weights]
        if not w:
            raise ObjectiveError("the objective needs at least one strength weight beta_i")
        if not all(math.isfinite(v) and v > 0 for v in w):
            raise ObjectiveError(f"strength weights beta_i must all be > 0, got {w}")
        if not (self.alpha > 0 and self.beta > 0):
            raise ObjectiveError(f"alpha and beta must be > 0, got alpha={self.alpha}, beta={self.beta}")
        if abs(self.alpha + self.beta - 1.0) > 1e-6:
            raise ObjectiveError(f"alpha + beta must equal 1, got {self.alpha} + {self.beta} = "
                                 f"{self.alpha + self.beta:g}")
        total = sum(w)
        object.__setattr__(self, "weights", tuple(v / total for v in w))

    @classmethod
    def from_config(cls, alpha: float, beta: float, weights: Sequence[float]) -> RobustObjective:
        """Build from the search config's ``alpha``, ``beta`` and ``objective_weights``."""
        return cls(float(alpha), float(beta), tuple(float(w) for w in weights))

    @property
    def num_losses(self) -> int:
        """Length of the loss vector it expects: natural + one per strength."""
        return len(self.weights) + 1

    def __call__(self, losses: Tensor) -> Tensor:
        """Objective of a loss vector ``(..., N+1)`` = (natural, eps_1, ..., eps_N) -> ``(...)``."""
        if losses.shape[-1] != self.num_losses:
            raise ObjectiveError(f"expected {self.num_losses} losses (natural + {len(self.weights)} strengths), "
                                 f"got {losses.shape[-1]}")
        w = torch.tensor(self.weights, dtype=losses.dtype, device=losses.device)
        return self.alpha * losses[..., 0] + self.beta * (losses[..., 1:] * w).sum(-1)


def ewss_step(alpha_param: nn.Parameter, vle: nn.Module, objective: RobustObjective,
              optimizer: torch.optim.Optimizer, tau: float = 1.0, samples: int = 1,
              generator: torch.Generator | None = None) -> float:
    """One EWSS update of the architecture weights ``A`` (the search phase of Algorithm 1, line 24).

    Draws ``samples`` soft ``H = GumbelSoftmax(A, xi, tau)``, averages ``objective(psi(H))`` over them, takes its
    gradient with respect to ``A`` only (the VLE's own gradients are left untouched) and steps ``optimizer``.

    Returns:
        The mean estimated objective before the step.
    """
    if samples < 1:
        raise ValueError(f"samples must be >= 1, got {samples}")
    # the VLE has no dropout/BN, so its mode does not matter; cuDNN's LSTM backward needs training mode anyway
    H = torch.stack([gumbel_softmax(alpha_param, tau, hard=False, generator=generator) for _ in range(samples)])
    value = objective(vle(H)).mean()
    (grad,) = torch.autograd.grad(value, [alpha_param])
    optimizer.zero_grad(set_to_none=True)
    alpha_param.grad = grad
    optimizer.step()
    return float(value.detach())
