"""Sanity checks reported with every spectrum result: signs that the evaluation, not the model, is weak.

In the spirit of AutoAttack's ``checks.py`` and Carlini et al., "On Evaluating Adversarial Robustness" (2019):
a robustness curve must not rise with eps; at eps 0.5 every image can be moved to the same grey image, so
accuracy must fall to about the majority-class rate; a one-step attack (FGSM) or a gradient-free one (Square)
beating PGD means the gradients mislead; zero input gradients, probability outputs instead of logits and a
randomised forward pass all make gradient attacks unreliable. The checks run on a small probe subset
(``n_examples``) with their own independent (non-cumulative) PGD sweep, so a check can actually fail.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from itertools import pairwise
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from wsr_bench.attacks.factory import build_attack, model_device, validate_images
from wsr_bench.epsilon import eps_label
from wsr_bench.evaluate.options import SpectrumOptions, resolve_options, split_fields

logger = logging.getLogger(__name__)

#: Names of all checks, in report order.
CHECK_NAMES: tuple[str, ...] = (
    "logits_not_probabilities", "deterministic_forward", "nonzero_gradients", "monotone_curve",
    "chance_at_large_eps", "fgsm_not_stronger_than_pgd", "square_not_stronger_than_white_box",
)


@dataclass
class SanityCheck:
    """One check: ``passed`` False means the evaluation of this model is suspicious (see ``message``)."""

    name: str
    passed: bool
    message: str
    value: float | None = None


@dataclass
class SanityReport:
    """All checks of one model; ``flags`` lists the failed ones."""

    checks: list[SanityCheck] = field(default_factory=list)
    probe: dict[str, Any] = field(default_factory=dict)

    @property
    def flags(self) -> list[str]:
        """Names of failed checks."""
        return [c.name for c in self.checks if not c.passed]

    @property
    def passed(self) -> bool:
        """True when no check failed."""
        return not self.flags

    def as_flags(self) -> dict[str, bool]:
        """``{check name: passed}``, the form stored in leaderboard entries."""
        return {c.name: c.passed for c in self.checks}

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready report."""
        return {"passed": self.passed, "flags": self.flags, "checks": [asdict(c) for c in self.checks],
                "probe": self.probe}


@dataclass(frozen=True)
class SanityProbe:
    """How hard the sanity checks probe: their own small, independent attack run and the slack of each check."""

    n_examples: int = 64         # the probe uses the first n_examples images (those the model gets right)
    steps: int = 10              # PGD steps of the probe
    square_queries: int = 150    # Square's query budget
    chance_eps: float = 0.5      # the "unbounded-looking" strength (Linf; scaled by sqrt(d) for L2, d for L1)
    tolerance: float = 0.03      # slack (fraction of samples) of the monotone, chance and FGSM checks
    square_margin: float = 0.002  # Square may beat the white-box attacks by at most this (0.2 points, as AutoAttack)


def run_sanity_checks(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    options: SpectrumOptions | None = None,
    *,
    result: Any = None,
    device: str | torch.device | None = None,
    probe: SanityProbe | None = None,
    **fields: Any,
) -> SanityReport:
    """Run every check on the first ``probe.n_examples`` samples (the attack probes on those the model gets right).

    Args:
        model: the evaluated classifier ([0,1] inputs, logits out).
        x, y: evaluation data; only the first ``n_examples`` are used.
        options: what the evaluation computes (:class:`~wsr_bench.evaluate.options.SpectrumOptions`): the probe
            attacks each of its strengths ``eps`` independently (plus ``chance_eps``) under its ``threat_model``
            with its ``seed`` (under L1, which torchattacks' PGD and FGSM lack, the probe's white-box attack is
            APGD-CE and the FGSM check is not run); its ``attack`` and ``aa_version`` say what the evaluation ran:
            a randomised forward pass is expected (and passes) under AutoAttack ``rand``, and is otherwise reported
            in one line that names ``--aa-version rand``.
        result: an optional :class:`~wsr_bench.evaluate.spectrum.SpectrumResult` whose raw (attack-all) curves
            are also checked for monotonicity.
        device: where the probe runs (default: the model's device).
        probe: the probe's size and the checks' slack (:class:`SanityProbe`).
        fields: fields of ``probe`` or ``options`` as keywords (``eps=[0.03], n_examples=32``); ``steps``, a field
            of both, is the probe's.

    Returns:
        A :class:`SanityReport`.
    """
    probe_fields, option_fields = split_fields(fields, SanityProbe, SpectrumOptions)  # steps: the probe's
    options = resolve_options(options, option_fields)
    probe = dataclasses.replace(probe or SanityProbe(), **probe_fields)
    validate_images(x, y)
    device = torch.device(device) if device is not None else model_device(model)
    was_training = model.training
    model.to(device).eval()
    xs, ys = x[:probe.n_examples].to(device), y[:probe.n_examples].to(device)
    try:
        report = SanityReport()
        attacks = options.attack
        rand = "autoattack" in attacks and options.aa_version == "rand"
        report.checks += [_check_probabilities(model, xs), _check_deterministic(model, xs, rand, attacks),
                          _check_gradients(model, xs, ys)]
        with torch.no_grad():
            keep = model(xs).argmax(1) == ys
        xp, yp = (xs[keep], ys[keep]) if keep.any() else (xs, ys)
        measured = _probe(model, xp, yp, list(options.eps), probe, options)
        report.probe = _probe_json(measured)
        report.checks += [_check_monotone(measured, result, probe.tolerance),
                          _check_chance(measured, yp, probe.tolerance), _check_fgsm(measured, probe.tolerance),
                          _check_square(measured, probe.square_margin)]
    finally:
        model.train(was_training)
    for c in report.checks:
        if not c.passed:
            logger.warning("sanity check %s failed: %s", c.name, c.message)
    return report


def _check_probabilities(model, x) -> SanityCheck:
    with torch.no_grad():
        out = model(x)
    looks_prob = bool(out.min() > -1e-5 and out.max() < 1 + 1e-5 and ((out.sum(1) - 1).abs() < 1e-4).all())
    msg = ("outputs are a probability distribution (softmax applied inside the model?): attacks need logits"
           if looks_prob else "outputs look like logits")
    return SanityCheck("logits_not_probabilities", not looks_prob, msg)


def _check_deterministic(model, x, rand: bool = False, attacks: Sequence[str] = (), repeats: int = 3
                         ) -> SanityCheck:
    """Three forward passes of the same input must agree: a randomised model (noise injection, dropout left on,
    random input transforms) fools single-sample gradient attacks, so it needs AutoAttack's ``rand`` version (EOT:
    gradients averaged over 20 passes). Under ``rand`` (``rand`` True) randomness is what the evaluation expects."""
    with torch.no_grad():
        outs = [model(x) for _ in range(repeats)]
    diff = max(float((o - outs[0]).abs().max()) for o in outs[1:])
    scale = float(outs[0].abs().max()) + 1e-12
    same_pred = all(bool((o.argmax(1) == outs[0].argmax(1)).all()) for o in outs[1:])
    deterministic = same_pred and diff <= 1e-5 * max(1.0, scale)
    if deterministic:
        return SanityCheck("deterministic_forward", True, "forward pass is deterministic", diff)
    if rand:
        return SanityCheck("deterministic_forward", True, f"forward pass is randomised (max |diff| {diff:.3g}), as "
                           "AutoAttack rand expects: its APGD averages gradients over 20 passes (EOT)", diff)
    flag = "--aa-version rand" if "autoattack" in attacks else "--attack autoattack --aa-version rand"
    return SanityCheck("deterministic_forward", False, f"the model is randomised (forward passes on the same input "
                       f"differ, max |diff| {diff:.3g}): single-sample attacks overestimate its robustness; evaluate "
                       f"it with {flag} (EOT over 20 passes)", diff)


def _check_gradients(model, x, y) -> SanityCheck:
    xg = x.clone().requires_grad_(True)
    with torch.enable_grad():
        loss = F.cross_entropy(model(xg), y, reduction="sum")
        grad = torch.autograd.grad(loss, xg, allow_unused=True)[0]
    if grad is None:
        grad = torch.zeros_like(x)
    zero = (grad.reshape(len(x), -1).abs().sum(1) == 0).float()
    frac = float(zero.mean())
    msg = (f"{int(zero.sum())} of {len(x)} inputs have an all-zero loss gradient (gradient masking): "
           "gradient attacks cannot move them" if frac > 0 else "input gradients are non-zero")
    return SanityCheck("nonzero_gradients", frac == 0, msg, frac)


def _probe(model, x, y, eps: list[float], probe: SanityProbe, options: SpectrumOptions) -> dict[str, Any]:
    """Independent per-eps PGD and FGSM accuracies, PGD at ``chance_eps``, and Square at the largest eps where the
    white-box attacks still leave samples standing (where a masked gradient shows most)."""
    norm, seed, steps, chance_eps = options.threat_model, options.seed, probe.steps, probe.chance_eps
    def acc(name: str, e: float, **kw) -> tuple[float, torch.Tensor]:
        atk = build_attack(name, model, e, threat_model=norm, steps=steps, seed=seed, **kw)
        adv = atk(x, y, torch.arange(len(x)))
        with torch.no_grad():
            ok = model(adv).argmax(1) == y
        return float(ok.float().mean()), ok

    white = "pgd" if norm != "L1" else "apgd-ce"  # torchattacks has no L1 PGD or FGSM
    pgd = {e: acc(white, e) for e in eps}
    fgsm = {e: acc("fgsm", e) for e in eps} if norm != "L1" else None
    big = max(chance_eps * x[0].numel() ** {"Linf": 0.0, "L2": 0.5, "L1": 1.0}[norm], eps[-1])
    pgd_big = acc(white, big)[0]
    with torch.no_grad():
        clean = float((model(x).argmax(1) == y).float().mean())
    standing = [e for e in eps if pgd[e][0] > 0 and (fgsm is None or fgsm[e][0] > 0)]
    mid = standing[-1] if standing else eps[0]  # largest eps where the white box leaves something to break
    square_ok = acc("square", mid, n_queries=probe.square_queries)[1]
    white_ok = pgd[mid][1] & fgsm[mid][1] if fgsm is not None else pgd[mid][1]
    return {"eps": eps, "clean": clean, "white_box": white, "pgd": {e: v[0] for e, v in pgd.items()},
            "fgsm": None if fgsm is None else {e: v[0] for e, v in fgsm.items()},
            "chance_eps": big, "pgd_chance": pgd_big, "square_eps": mid,
            "square": float(square_ok.float().mean()), "white_box_at_square_eps": float(white_ok.float().mean()),
            "square_only": float((~square_ok & white_ok).float().mean()), "n": len(x)}


def _probe_json(p: dict[str, Any]) -> dict[str, Any]:
    out = dict(p)
    out["eps_label"] = [eps_label(e) for e in p["eps"]]
    out["pgd"] = [p["pgd"][e] for e in p["eps"]]
    out["fgsm"] = None if p["fgsm"] is None else [p["fgsm"][e] for e in p["eps"]]
    return out


def _check_monotone(p, result, tol) -> SanityCheck:
    curves = {"probe pgd": [p["clean"]] + [p["pgd"][e] for e in p["eps"]]}
    for name, curve in (getattr(result, "raw_accuracy", None) or {}).items():
        curves[f"{name} (attack-all)"] = [getattr(result, "clean_accuracy", 1.0)] + list(curve.values())
    rises = {k: max((b - a for a, b in pairwise(c)), default=0.0) for k, c in curves.items()}
    worst = max(rises, key=rises.get)
    ok = rises[worst] <= tol
    msg = (f"robust accuracy rises with eps ({worst}: +{rises[worst]:.3f}): the attack is not converging"
           if not ok else "robust accuracy does not rise with eps")
    return SanityCheck("monotone_curve", ok, msg, rises[worst])


def _check_chance(p, y, tol) -> SanityCheck:
    majority = float(torch.bincount(y.cpu()).max()) / len(y)
    ok = p["pgd_chance"] <= majority + tol
    msg = (f"accuracy {p['pgd_chance']:.3f} at eps {eps_label(p['chance_eps'])} is above chance ({majority:.3f}): "
           "an unbounded-looking attack should win" if not ok else
           f"accuracy at eps {eps_label(p['chance_eps'])} is near chance")
    return SanityCheck("chance_at_large_eps", ok, msg, p["pgd_chance"])


def _check_fgsm(p, tol) -> SanityCheck:
    if p["fgsm"] is None:
        return SanityCheck("fgsm_not_stronger_than_pgd", True, "not checked: no L1 FGSM (torchattacks has none)")
    gaps = {e: p["pgd"][e] - p["fgsm"][e] for e in p["eps"]}
    e = max(gaps, key=gaps.get)
    ok = gaps[e] <= tol
    msg = (f"FGSM beats PGD at eps {eps_label(e)} by {gaps[e]:.3f}: PGD is being misled (gradient masking)"
           if not ok else "FGSM is not stronger than PGD")
    return SanityCheck("fgsm_not_stronger_than_pgd", ok, msg, gaps[e])


def _check_square(p, margin) -> SanityCheck:
    gap = p["white_box_at_square_eps"] - p["square"]
    ok = gap <= margin
    msg = (f"black-box Square beats PGD at eps {eps_label(p['square_eps'])} by {gap:.3f}: gradients are masked"
           if not ok else "Square is not stronger than the white-box attack")
    return SanityCheck("square_not_stronger_than_white_box", ok, msg, gap)
