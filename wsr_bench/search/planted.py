"""A planted landscape: the real search loop on validation losses that are a known function of the architecture.

Wsr-NAS learns from measured validation losses of sampled sub-networks. Whether a recipe (estimator, query point,
learning rate, budget) can follow a signal at all is a separate question from whether the measured losses carry one,
and only the first can be answered exactly: here the losses of a draw ``H`` are ``base + <costs, H> + noise``, an
additive cost per (cell, edge, op) plus Gaussian noise of a chosen SD, and the search's own code does everything
else (population, M_v, the VLE and its fit, the EWSS query, the objective, Adam on ``A``, the genotype rule; for
the naive baseline its straight-through gradient through the drawn ``H``). Nothing is trained or attacked, so a run
takes seconds. The score is the share of edges whose planted best op is the op ``A`` ranks first
(:meth:`PlantedLandscape.recovered`); a uniformly random ``A`` recovers 1/7 of them.

    landscape = PlantedLandscape.draw(seed=0, noise_sd=1.0)
    result = run_planted(cfg, landscape, "runs/planted")   # {"recovered": ..., "genotype": ...}

``benchmarks/search_signal.py --planted`` sweeps noise and budget for the official recipe and
``configs/search_signal.yaml``; ``tests/test_search_signal.py`` fails if the machinery stops responding to signal.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from wsr_bench.config import ExperimentConfig
from wsr_bench.search.engine import SearchEngine
from wsr_bench.search.naive import NaiveSearch
from wsr_bench.search.wsr_nas import WsrSearch
from wsr_bench.search_space.ops import PRIMITIVES
from wsr_bench.search_space.supernet import num_edges

__all__ = ["PlantedLandscape", "run_planted"]

_NONE = PRIMITIVES.index("none")


@dataclass(frozen=True)
class PlantedLandscape:
    """Losses ``base + <costs, H> + N(0, noise_sd^2)`` for every output (natural and each strength).

    Attributes:
        costs: ``(cells, E, K)`` cost of each op on each edge, in units of their own SD (drawn N(0, 1)).
        noise_sd: SD of the measurement noise added to each draw's losses, in the same units (the noise of one
            measured loss; an edge's best op is on average about 1.4 units ahead of the median one).
        base: a common offset that keeps the losses positive (the official objective squares them).
        seed: the seed of the measurement noise.
    """

    costs: Tensor
    noise_sd: float
    base: float = 30.0
    seed: int = 0

    @classmethod
    def draw(cls, seed: int = 0, noise_sd: float = 1.0, shared: float = 0.0, nodes: int = 4,
             cells: int = 2) -> PlantedLandscape:
        """Costs drawn with ``seed``: ``sqrt(shared)`` times a per-cell op cost common to every edge plus
        ``sqrt(1 - shared)`` times an edge's own, each N(0, 1), so every cost has SD 1 and ``shared`` is the share
        of its variance that all edges of a cell have in common (0: unrelated edges; in real searches some ops,
        such as the parametric ones, tend to help everywhere). ``none`` costs as much as the worst op of its edge
        (a draw that drops an edge is never better than one that keeps it)."""
        if noise_sd < 0 or not 0 <= shared <= 1:
            raise ValueError(f"noise_sd must be >= 0 and shared in [0, 1], got {noise_sd}, {shared}")
        g = torch.Generator().manual_seed(seed)
        own = torch.randn(cells, num_edges(nodes), len(PRIMITIVES), generator=g)
        common = torch.randn(cells, 1, len(PRIMITIVES), generator=g)
        costs = shared ** 0.5 * common + (1 - shared) ** 0.5 * own
        rest = [k for k in range(len(PRIMITIVES)) if k != _NONE]
        costs[..., _NONE] = costs[..., rest].max(-1).values
        return cls(costs, float(noise_sd), seed=seed)

    def mean_losses(self, H: Tensor, outputs: int) -> Tensor:
        """The noiseless losses ``(..., outputs)`` of ``H`` ``(..., cells, E, K)``, differentiable in ``H``."""
        value = self.base + (H * self.costs.to(H.device, H.dtype)).sum((-3, -2, -1))
        return value.unsqueeze(-1).expand(*value.shape, outputs)

    def best_ops(self) -> Tensor:
        """``(cells, E)``: the planted best non-``none`` op of every edge."""
        costs = self.costs.clone()
        costs[..., _NONE] = float("inf")
        return costs.argmin(-1)

    def recovered(self, arch_weights: Tensor) -> float:
        """Share of edges on which ``A`` ranks the planted best op first among the non-``none`` ops (the op the
        genotype takes on that edge when it takes the edge)."""
        scores = arch_weights.detach().float().cpu().clone()
        scores[..., _NONE] = -float("inf")
        return float((scores.argmax(-1) == self.best_ops()).float().mean())


class _Planted:
    """Mixin: no training, no AN-Estimator, and planted instead of measured losses (the rest is the real search)."""

    landscape: PlantedLandscape
    planted_rng: torch.Generator

    def setup_landscape(self, landscape: PlantedLandscape) -> None:
        self.landscape = landscape
        self.planted_rng = torch.Generator().manual_seed(landscape.seed + 7919)

    def train_arch(self, H: Tensor, recipe: Any, desc: str) -> dict[str, Any]:
        self.epoch += 1
        return {"loss": 0.0, "acc": 0.0, "n": 0, "lr": 0.0, "seconds": 0.0}

    def recalibrate_bn(self, H: Tensor) -> None:
        return None

    def noisy(self, H: Tensor, outputs: int) -> Tensor:
        clean = self.landscape.mean_losses(H, outputs)
        return clean + self.landscape.noise_sd * torch.randn(clean.shape, generator=self.planted_rng).to(clean)


class PlantedWsrSearch(_Planted, WsrSearch):
    """Wsr-NAS on a planted landscape."""

    def update_ane(self, H: Tensor, times: dict[str, float]) -> float | None:
        return None

    def measure(self, H: Tensor, times: dict[str, float]) -> Tensor:
        times.setdefault("ane_inference", 0.0)
        return self.noisy(H.cpu().float(), len(self.strengths) + 1).float()


class PlantedNaiveSearch(_Planted, NaiveSearch):
    """The naive baseline on a planted landscape: per D_v batch a straight-through draw, its planted losses and
    their gradient through the draw (as the naive search's gradient through the super-network)."""

    def arch_gradient(self, x: Tensor, y: Tensor, weight: float,
                      times: dict[str, float]) -> tuple[Tensor, Tensor]:
        H = self.draw()
        losses = self.noisy(H, len(self.strengths) + 1)
        (grad,) = torch.autograd.grad(weight * self.objective(losses), [self.supernet.arch_weights])
        return grad, losses.detach().double().cpu()


def run_planted(cfg: ExperimentConfig, landscape: PlantedLandscape, out_dir: str | Path) -> dict[str, Any]:
    """Run the search ``cfg.search`` describes on ``landscape`` into ``out_dir`` (a fresh folder, or one to
    resume); returns the share of edges recovered, at the end and after every task, and the genotype."""
    engines: dict[str, type[SearchEngine]] = {"wsr": PlantedWsrSearch, "naive": PlantedNaiveSearch}
    engine = engines[cfg.search.method](cfg, out_dir, "cpu")
    engine.setup_landscape(landscape)
    genotype = engine.run()
    curve = [landscape.recovered(a) for a in engine.history]
    return {"recovered": curve[-1], "recovered_by_task": curve, "genotype": genotype.to_dict(),
            "max_abs_delta": float((engine.history[-1] - engine.history[0]).abs().max())}
