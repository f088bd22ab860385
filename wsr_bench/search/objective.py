"""The robust search objective (paper Eq. 10) and the EWSS update of the architecture weights.

    min_A  alpha * L_nat + beta * sum_i beta_i * L_eps_i,   H = GumbelSoftmax(A, xi, tau),
    sum_i beta_i = 1,  alpha + beta = 1,  alpha, beta, beta_i > 0.

In code alpha is ``nat_weight`` and beta ``robust_weight`` (``alpha`` names the architecture weights A elsewhere).

Wsr-NAS evaluates it on the VLE's estimates ``psi(H)`` (:func:`ewss_step`): the gradient reaches ``A`` through the
VLE and the Gumbel-softmax, so updating ``A`` costs a few LSTM passes and no pass over validation images. The naive
search evaluates the same objective on losses measured through the super-network.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from wsr_bench.rules import check_objective
from wsr_bench.search_space.supernet import gumbel_softmax

__all__ = ["ObjectiveError", "RobustObjective", "arch_step", "ewss_query_points", "ewss_step"]


class ObjectiveError(ValueError):
    """Weights that violate Eq. 10's constraints."""


@dataclass(frozen=True)
class RobustObjective:
    """Eq. 10 with validated weights; ``weights`` (beta_i) are normalised to sum to 1 on construction.

    Attributes:
        nat_weight: alpha of Eq. 10, the weight of the natural loss (> 0).
        robust_weight: beta of Eq. 10, the weight of the robust losses (> 0, ``nat_weight + robust_weight = 1``).
        weights: one positive beta_i per strength, in the order of the loss vector.
        form: ``linear`` is Eq. 10 as printed; ``squared`` weighs the squared losses, as the official code's
            architecture step does (``sum_i w_i * pred_i^2``, an MSE of the predicted losses against 0).
    """

    nat_weight: float = 0.8
    robust_weight: float = 0.2
    weights: tuple[float, ...] = (1, 2, 3, 5, 7, 10)
    form: str = "linear"

    def __post_init__(self) -> None:
        check_objective(self.nat_weight, self.robust_weight, self.weights, self.form, error=ObjectiveError)
        w = [float(v) for v in self.weights]
        total = sum(w)
        object.__setattr__(self, "weights", tuple(v / total for v in w))

    @classmethod
    def from_search_config(cls, scfg) -> RobustObjective:
        """Build from a :class:`~wsr_bench.config.SearchConfig` (nat/robust weights, beta_i, form)."""
        return cls(float(scfg.nat_weight), float(scfg.robust_weight),
                   tuple(float(w) for w in scfg.objective_weights), scfg.objective_form)

    @property
    def num_losses(self) -> int:
        """Length of the loss vector it expects: natural + one per strength."""
        return len(self.weights) + 1

    def loss_weights(self) -> tuple[float, ...]:
        """The weight of each entry of the loss vector: ``(nat_weight, robust_weight * beta_1, ...)``."""
        return (self.nat_weight, *(self.robust_weight * b for b in self.weights))

    def __call__(self, losses: Tensor) -> Tensor:
        """Objective of a loss vector ``(..., N+1)`` = (natural, eps_1, ..., eps_N) -> ``(...)``."""
        if losses.shape[-1] != self.num_losses:
            raise ObjectiveError(f"expected {self.num_losses} losses (natural + {len(self.weights)} strengths), "
                                 f"got {losses.shape[-1]}")
        w = torch.tensor(self.loss_weights(), dtype=losses.dtype, device=losses.device)
        values = losses.square() if self.form == "squared" else losses
        return (values * w).sum(-1)


def ewss_step(arch_weights: nn.Parameter, vle: nn.Module, objective: RobustObjective,
              optimizer: torch.optim.Optimizer, tau: float = 1.0, samples: int = 1,
              generator: torch.Generator | None = None, noise: Tensor | None = None) -> float:
    """One EWSS update of the architecture weights ``A`` (the search phase of Algorithm 1, line 24).

    With ``noise`` (a Gumbel draw ``xi`` of ``A``'s shape), the VLE is queried at ``H = softmax((A + xi) / tau)``:
    the very soft weights of the architecture just trained and stored in M_v, as the official code does. Without
    it, ``samples`` fresh soft draws are averaged. The gradient of ``objective(psi(H))`` is taken with respect to
    ``A`` only (the VLE's own gradients are left untouched) and ``optimizer`` steps.

    Returns:
        The (mean) estimated objective before the step.
    """
    query = "stored" if noise is not None else "fresh"
    H = ewss_query_points(arch_weights, query, tau, samples, generator, noise)
    return arch_step(arch_weights, H, vle, objective, optimizer)


def ewss_query_points(arch_weights: Tensor, query: str, tau: float = 1.0, samples: int = 1,
                      generator: torch.Generator | None = None, noise: Tensor | None = None) -> Tensor:
    """Where the EWSS queries the VLE (``search.ewss_query``), as a batch ``(B, cells, E, K)`` differentiable in A:

    - ``stored``: ``softmax((A + xi) / tau)`` at the Gumbel draw ``noise`` of the architecture just measured
      (official);
    - ``fresh``: ``samples`` new soft draws at ``tau``;
    - ``expected``: ``softmax(A)``, the probability with which Gumbel sampling (``argmax(A + xi)``, whatever the
      temperature) picks each op on each edge. For an additive VLE and the linear objective the estimate there is
      exactly the expected estimate over the architectures the search draws, and its gradient in ``A``,
      ``p * (w - <p, w>)`` per edge, carries no Gumbel noise; at one draw with ``tau = 0.1`` the soft weights are
      saturated and the gradient is small and set by the draw (benchmarks/results/search_signal.md).
    """
    if query == "expected":
        return torch.softmax(arch_weights, dim=-1).unsqueeze(0)
    if query == "stored":
        if noise is None:
            raise ValueError("ewss_query stored needs the Gumbel draw of the stored architecture")
        return gumbel_softmax(arch_weights, tau, hard=False, noise=noise.to(arch_weights.device)).unsqueeze(0)
    if query != "fresh":
        raise ValueError(f"unknown EWSS query {query!r}; expected stored, fresh or expected")
    if samples < 1:
        raise ValueError(f"samples must be >= 1, got {samples}")
    return torch.stack([gumbel_softmax(arch_weights, tau, hard=False, generator=generator) for _ in range(samples)])


def arch_step(arch_weights: nn.Parameter, H: Tensor, vle: nn.Module, objective: RobustObjective,
              optimizer: torch.optim.Optimizer, maximize: bool = False) -> float:
    """One optimizer step on ``A`` along the gradient of the mean ``objective(vle(H))`` (``H`` a batch of soft
    architecture weights computed from ``A``); ``maximize`` ascends instead (the anti-search control). The VLE's own
    gradients are left untouched. Returns the (mean) estimated objective before the step."""
    # the VLE has no dropout/BN, so its mode does not matter; cuDNN's LSTM backward needs training mode anyway
    value = objective(vle(H)).mean()
    (grad,) = torch.autograd.grad(-value if maximize else value, [arch_weights])
    optimizer.zero_grad(set_to_none=True)
    arch_weights.grad = grad
    optimizer.step()
    return float(value.detach())
