"""WsrNet-Naive-N: the baseline search without AN-Estimator and EWSS.

Same data, population, task list and training budget as Wsr-NAS (warm-up, one iteration per population
architecture, then ``T`` steps), but every strength is attacked by PGD on D_v and the architecture gradient comes
from back-propagating the same robust objective (Eq. 10) through the super-network on the clean and adversarial
validation sets, first-order DARTS style (gradient at the current weights, no unrolling). Each D_v batch draws
``H = GumbelSoftmax(A, xi, tau)`` -- with ``naive_gradient: hard`` a straight-through one-hot sample (only the sampled
ops run, the cost profile of the paper's Table 6), with ``soft`` the full DARTS mixture (every op runs) -- and the
PGD noise of that batch is crafted on that same ``H``, in the same (training) BatchNorm mode as the loss whose
gradient reaches ``A``: the robust losses are white-box losses of the architecture being differentiated, not
transfer losses of another sample's noise. The accumulated gradient of the whole pass over D_v makes one Adam step
on ``A``.
"""

from __future__ import annotations

import logging
from typing import Any

import torch
import torch.nn.functional as F

from wsr_bench.estimators.noise import pgd_noise
from wsr_bench.search.engine import SearchEngine, Task
from wsr_bench.search_space.supernet import FixedArchitecture, gumbel_softmax

logger = logging.getLogger(__name__)

__all__ = ["NaiveSearch"]


class NaiveSearch(SearchEngine):
    """The naive multi-strength search (see module docstring)."""

    method = "naive"

    def tasks(self) -> list[Task]:
        n, t = self.scfg.population, self.scfg.search_steps
        return ([Task("warmup", i) for i in range(n)] + [Task("population", i) for i in range(n)]
                + [Task("search", i) for i in range(t)])

    def run_task(self, task: Task) -> dict[str, Any]:
        if task.phase == "warmup":
            return self.warmup(task.index)
        H = self.population[task.index].hard if task.phase == "population" else self.sample_arch().hard
        return self.iteration(H)

    def iteration(self, H: torch.Tensor) -> dict[str, Any]:
        """Train ``H`` one epoch, then one pass over D_v: per batch a fresh draw, PGD on it at every strength and
        the gradient of the objective through it; one Adam step on ``A``."""
        times = {"noise_gen": 0.0, "arch_update": 0.0}
        t0 = self.now()
        train = self.train_arch(H, self.pgd_recipe(), desc="adv. train")
        times["adv_train"] = self.now() - t0
        arch_weights = self.supernet.arch_weights
        grad = torch.zeros_like(arch_weights)
        sums, n_total = torch.zeros(len(self.strengths) + 1, dtype=torch.float64), len(self.y_v)
        for x, y in self.val_batches("PGD + arch. gradient"):
            batch_grad, losses = self.arch_gradient(x, y, weight=len(y) / n_total, times=times)
            grad += batch_grad
            sums += losses * len(y)
        t0 = self.now()
        self.a_opt.zero_grad(set_to_none=True)
        arch_weights.grad = grad
        self.a_opt.step()
        self.sync_arch_weights()
        times["arch_update"] += self.now() - t0
        losses = (sums / n_total).float()
        return {"train": train, "losses": self.loss_dict(losses), "objective": float(self.objective(losses)),
                "seconds": times}

    def draw(self) -> torch.Tensor:
        """``H`` for one D_v batch, differentiable in ``A``: straight-through one-hot (``hard``) or soft."""
        hard = self.scfg.naive_gradient == "hard"
        H = gumbel_softmax(self.supernet.arch_weights, self.scfg.tau, hard=hard, generator=self.generator)
        if hard:
            self.count_ops(H.detach())
        return H

    def arch_gradient(self, x: torch.Tensor, y: torch.Tensor, weight: float,
                      times: dict[str, float]) -> tuple[torch.Tensor, torch.Tensor]:
        """Gradient of ``weight * objective`` w.r.t. ``A`` on one D_v batch (clean + every strength) through a
        fresh draw ``H``, with the PGD noise crafted on that same ``H`` (training mode, as the loss); returns it
        with the batch's mean losses ``(N+1,)`` (float64, CPU)."""
        arch_weights = self.supernet.arch_weights
        H = self.draw()
        H_in = H.detach().requires_grad_(True)  # gradients are gathered on H, then taken back to A once
        t0 = self.now()
        self.supernet.train()
        noise = pgd_noise(FixedArchitecture(self.supernet, H_in.detach()), x, y, self.strengths,
                          steps=self.scfg.attack_steps, random_start=self.scfg.attack_random_start, train_mode=True)
        t1 = self.now()
        times["noise_gen"] += t1 - t0
        grad_H, losses = torch.zeros_like(H), []
        for i, w in enumerate(self.objective.loss_weights()):
            inputs = x if i == 0 else (x + noise[:, i - 1]).clamp(0, 1)
            loss = F.cross_entropy(self.supernet(inputs, H_in), y)
            value = loss.square() if self.objective.form == "squared" else loss
            grad_H += torch.autograd.grad(weight * w * value, [H_in])[0]
            losses.append(float(loss.detach()))
        (grad,) = torch.autograd.grad(H, [arch_weights], grad_outputs=grad_H)
        times["arch_update"] += self.now() - t1
        return grad, torch.tensor(losses, dtype=torch.float64)
