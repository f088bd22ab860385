"""Adversarial training recipes: what batch a training step learns from, and the loss it minimises.

* ``pgd`` -- Madry et al. 2018: cross-entropy on PGD-k examples (random start, step eps*2.5/k).
* ``trades`` -- Zhang et al. 2019: CE(f(x), y) + beta * KL(f(x) || f(x')) with x' from the KL-PGD attack
  (torchattacks' ``TPGD``, the official TRADES inner maximisation: 0.001*N(0,1) start, 10 steps, beta 6).
* ``fgsm_rs`` -- Wong et al. 2020 ("Fast is better than free"): one FGSM step of 1.25*eps from a uniform random
  start (torchattacks' ``FFGSM``).
* ``multi`` -- the paper's multi-strength baseline: the batch is attacked with PGD at every eps in ``multi_eps``
  and the adversarial copies are concatenated.
* ``clean`` -- plain training (the lower bound of every cost comparison).

Attacks run on the bare network (never through a DDP wrapper) in eval mode, torchattacks' default, so attack
generation neither updates BatchNorm running statistics nor depends on the batch composition; the network's
previous train/eval mode is restored afterwards.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import torch
import torch.nn.functional as F
import torchattacks
from torch import nn

from wsr_bench.attacks.factory import build_pgd, pgd_step_size
from wsr_bench.config import TrainConfig
from wsr_bench.epsilon import check_eps
from wsr_bench.rules import RECIPES, check_recipe  # noqa: F401  (RECIPES re-exported with the recipes)

#: FGSM-RS step in units of eps (Wong et al. 2020, "Fast is better than free"); the other recipes take PGD's.
FGSM_RS_STEP = 1.25


@dataclass(frozen=True)
class TrainRecipe:
    """One adversarial training recipe (validated on construction; bad values raise ``ValueError``).

    Attributes:
        name: ``pgd`` | ``trades`` | ``fgsm_rs`` | ``multi`` | ``clean``.
        eps: Linf strength on the [0,1] scale (0.031 = 8/255); ignored by ``clean`` and ``multi``.
        steps: attack steps (PGD-k, TRADES' KL-PGD, and each strength of ``multi``); FGSM-RS takes one.
        step_size: attack step; ``None`` = :func:`~wsr_bench.attacks.factory.pgd_step_size` (eps*2.5/steps), or
            ``FGSM_RS_STEP * eps`` for ``fgsm_rs``.
        trades_beta: TRADES trade-off beta.
        multi_eps: strengths of the ``multi`` recipe.
        random_start: random initialisation of PGD/``multi`` (off only for exactness tests).
    """

    name: str = "pgd"
    eps: float = 0.031
    steps: int = 7
    step_size: float | None = None
    trades_beta: float = 6.0
    multi_eps: tuple[float, ...] = field(default=(0.03, 0.045, 0.06, 0.075, 0.09, 0.105))
    random_start: bool = True

    def __post_init__(self) -> None:
        check_recipe(self.name, self.eps, self.steps, self.step_size, self.trades_beta, self.multi_eps)
        object.__setattr__(self, "multi_eps", tuple(float(e) for e in self.multi_eps))

    @classmethod
    def from_config(cls, cfg: TrainConfig) -> TrainRecipe:
        """The recipe a ``TrainConfig`` describes."""
        return cls(name=cfg.recipe, eps=cfg.eps, steps=cfg.steps, step_size=cfg.step_size,
                   trades_beta=cfg.trades_beta, multi_eps=tuple(cfg.multi_eps))

    def attack_step_size(self, eps: float | None = None) -> float:
        """Attack step size for strength ``eps`` (default: the recipe's): ``step_size`` if set, else the recipe's
        rule (``FGSM_RS_STEP * eps`` for ``fgsm_rs``, PGD's :func:`~wsr_bench.attacks.factory.pgd_step_size`
        otherwise)."""
        eps = self.eps if eps is None else eps
        if self.step_size is not None:
            return self.step_size
        return FGSM_RS_STEP * eps if self.name == "fgsm_rs" else pgd_step_size(eps, self.steps)

    @property
    def label(self) -> str:
        """Short human label, e.g. ``PGD-7 (eps 0.031)``, ``TRADES-10 (beta 6, eps 0.031)``."""
        if self.name == "clean":
            return "clean"
        if self.name == "multi":
            return f"multi-strength PGD-{self.steps} (eps {', '.join(f'{e:g}' for e in self.multi_eps)})"
        if self.name == "trades":
            return f"TRADES-{self.steps} (beta {self.trades_beta:g}, eps {self.eps:g})"
        return f"{'FGSM-RS' if self.name == 'fgsm_rs' else f'PGD-{self.steps}'} (eps {self.eps:g})"

    def with_(self, **changes: Any) -> TrainRecipe:
        """A copy with some fields changed (validated again)."""
        return replace(self, **changes)


def adversarial_examples(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, steps: int,
                         step_size: float | None = None, random_start: bool = True) -> torch.Tensor:
    """Linf PGD examples (the package's :func:`~wsr_bench.attacks.factory.build_pgd`, i.e. torchattacks ``PGD``; CE
    loss).

    The attack runs with the model in eval mode (torchattacks' default) and puts it back into its previous
    train/eval mode. ``eps == 0`` returns a copy of ``x``.

    Args:
        model: any ``nn.Module`` mapping [0,1] images to logits (e.g. a ``FixedArchitecture`` view).
        x: images in [0,1], shape (B,C,H,W); y: int64 labels (B,).
        eps: Linf radius on the [0,1] scale; steps: PGD iterations (>= 1).
        step_size: PGD step; ``None`` = :func:`~wsr_bench.attacks.factory.pgd_step_size` (eps*2.5/steps).
        random_start: uniform start in the eps ball (Madry et al.).
    """
    check_eps(eps, "PGD eps", allow_zero=True)
    if steps < 1:
        raise ValueError(f"PGD steps must be >= 1, got {steps}")
    if eps == 0:
        return x.detach().clone()
    return _run_attack(build_pgd(model, eps, steps, step_size=step_size, random_start=random_start), x, y)


def _run_attack(attack: torchattacks.attack.Attack, x: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
    """Call a torchattacks attack with ``x``'s device and return detached examples."""
    attack.set_device(x.device)
    return (attack(x, y) if y is not None else attack(x)).detach()


def attack_batch(recipe: TrainRecipe, model: nn.Module, x: torch.Tensor, y: torch.Tensor
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """The inputs and labels a training step learns from under ``recipe`` (``model`` is the bare network).

    ``trades`` returns the KL-PGD examples (the clean batch is used as well, by ``recipe_loss``); ``multi``
    returns ``len(multi_eps)`` attacked copies of the batch, concatenated, with the labels repeated.
    """
    if recipe.name == "clean":
        return x, y
    if recipe.name == "pgd":
        return adversarial_examples(model, x, y, recipe.eps, recipe.steps, recipe.step_size, recipe.random_start), y
    if recipe.name == "fgsm_rs":
        return _run_attack(torchattacks.FFGSM(model, eps=recipe.eps, alpha=recipe.attack_step_size()), x, y), y
    if recipe.name == "trades":
        kl_pgd = torchattacks.TPGD(model, eps=recipe.eps, alpha=recipe.attack_step_size(), steps=recipe.steps)
        return _run_attack(kl_pgd, x, None), y
    xs = [adversarial_examples(model, x, y, e, recipe.steps, recipe.step_size, recipe.random_start)
          for e in recipe.multi_eps]
    return torch.cat(xs), y.repeat(len(xs))


def recipe_loss(recipe: TrainRecipe, forward, x: torch.Tensor, y: torch.Tensor, x_train: torch.Tensor,
                y_train: torch.Tensor, aux_weight: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """The training loss of one step and the logits accuracy is measured on.

    Args:
        recipe: the recipe.
        forward: ``forward(inputs, aux) -> (logits, aux_logits or None)`` of the model in training mode.
        x, y: the clean batch (TRADES' natural term); x_train, y_train: what ``attack_batch`` returned.
        aux_weight: weight of the auxiliary-head CE loss (0 disables the auxiliary forward).

    Returns:
        ``(loss, logits)``; for TRADES the logits are those of the adversarial examples.
    """
    want_aux = aux_weight > 0
    if recipe.name != "trades":
        logits, aux = forward(x_train, want_aux)
        loss = F.cross_entropy(logits, y_train)
        if aux is not None:
            loss = loss + aux_weight * F.cross_entropy(aux, y_train)
        return loss, logits
    logits_nat, aux = forward(x, want_aux)
    logits_adv, _ = forward(x_train, False)
    robust = F.kl_div(F.log_softmax(logits_adv, dim=1), F.softmax(logits_nat, dim=1), reduction="batchmean")
    loss = F.cross_entropy(logits_nat, y) + recipe.trades_beta * robust
    if aux is not None:
        loss = loss + aux_weight * F.cross_entropy(aux, y)
    return loss, logits_adv
