"""WsrNet-Naive-N: the baseline search without AN-Estimator and EWSS.

Same data, population, task list and training budget as Wsr-NAS (warm-up, one iteration per population
architecture, then ``T`` steps), but every strength is attacked by PGD on D_v and the architecture gradient comes
from back-propagating the same robust objective (Eq. 10) through the super-network on the clean and adversarial
validation sets, first-order DARTS style (gradient at the current weights, no unrolling). Each D_v batch draws
``H = GumbelSoftmax(A, xi, tau)``: with ``naive_gradient: hard`` a straight-through one-hot sample (only the sampled
ops run, the cost profile of the paper's Table 6) and with ``soft`` the full DARTS mixture (every op runs).
The accumulated gradient of the whole pass over D_v makes one Adam step on ``A``.
"""

from __future__ import annotations

import logging
from typing import Any

import torch
import torch.nn.functional as F

from wsr_bench.estimators.noise import pgd_noise
from wsr_bench.search.engine import SearchEngine, Task, autocast
from wsr_bench.search_space.supernet import gumbel_softmax

logger = logging.getLogger(__name__)

__all__ = ["NaiveSearch"]


class NaiveSearch(SearchEngine):
    """The naive multi-strength search (see module docstring)."""

    method = "naive"

    def tasks(self) -> list[Task]:
        n, t = self.scfg.population, self.scfg.steps
        return ([Task("warmup", i) for i in range(n)] + [Task("population", i) for i in range(n)]
                + [Task("search", i) for i in range(t)])

    def run_task(self, task: Task) -> dict[str, Any]:
        if task.phase == "warmup":
            return self.warmup(task.index)
        H = self.population[task.index] if task.phase == "population" else self.sample_arch()
        return self.iteration(H)

    def iteration(self, H: torch.Tensor) -> dict[str, Any]:
        """Train ``H`` one epoch, attack D_v at every strength with PGD on ``H``, update ``A`` through the
        super-network."""
        times = {"noise_gen": 0.0, "arch_update": 0.0}
        t0 = self.now()
        train = self.train_arch(H, self.pgd_recipe(), desc="adv. train")
        times["adv_train"] = self.now() - t0
        model = self.view(H)
        alpha = self.supernet.alpha
        grad = torch.zeros_like(alpha)
        sums, n_total = torch.zeros(len(self.strengths) + 1, dtype=torch.float64), len(self.y_v)
        for x, y in self.val_batches("PGD + arch. gradient"):
            t0 = self.now()
            with autocast(self.device):
                noise = pgd_noise(model, x, y, self.strengths, steps=self.scfg.attack_steps)
            t1 = self.now()
            batch_grad, losses = self.arch_gradient(x, y, noise, weight=len(y) / n_total)
            grad += batch_grad
            sums += losses * len(y)
            times["noise_gen"] += t1 - t0
            times["arch_update"] += self.now() - t1
        t0 = self.now()
        self.a_opt.zero_grad(set_to_none=True)
        alpha.grad = grad
        self.a_opt.step()
        self.sync_alpha()
        times["arch_update"] += self.now() - t0
        losses = (sums / n_total).float()
        return {"train": train, "losses": self.loss_dict(losses), "objective": float(self.objective(losses)),
                "seconds": times}

    def arch_gradient(self, x: torch.Tensor, y: torch.Tensor, noise: torch.Tensor,
                      weight: float) -> tuple[torch.Tensor, torch.Tensor]:
        """Gradient of ``weight * objective`` w.r.t. ``A`` on one D_v batch (clean + every strength), through the
        super-network in training mode (batch statistics, as DARTS' architecture step); returns it with the
        batch's mean losses ``(N+1,)`` (float64, CPU)."""
        alpha = self.supernet.alpha
        H = gumbel_softmax(alpha, self.scfg.tau, hard=self.scfg.naive_gradient == "hard", generator=self.generator)
        H_in = H.detach().requires_grad_(True)  # gradients are gathered on H, then taken back to A once
        self.supernet.train()
        w = [self.objective.alpha] + [self.objective.beta * b for b in self.objective.weights]
        grad_H, losses = torch.zeros_like(H), []
        for i in range(len(w)):
            inputs = x if i == 0 else (x + noise[:, i - 1]).clamp(0, 1)
            with autocast(self.device):
                logits = self.supernet(inputs, H_in)
            loss = F.cross_entropy(logits.float(), y)
            grad_H += torch.autograd.grad(weight * w[i] * loss, [H_in])[0]
            losses.append(float(loss.detach()))
        (grad,) = torch.autograd.grad(H, [alpha], grad_outputs=grad_H)
        return grad, torch.tensor(losses, dtype=torch.float64)
