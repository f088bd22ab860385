"""The epsilon-spectrum evaluator: robust accuracy as a curve over perturbation strength.

For each attack, strengths are swept upward. The Linf (or L2) balls are nested, so an adversarial example found
at eps_j is also one at every eps_k > eps_j: a sample's *breaking eps* is the smallest strength at which some
attack fooled the model, and the robust accuracy at eps is the fraction of samples whose breaking eps is larger.
By default the sweep attacks only the samples still standing (``attack_all=False``); ``attack_all=True``
attacks every clean-correct sample at every eps (the naive sweep) and also reports each eps on its own
(``raw_accuracy``). With our per-sample seeded PGD both give the same curve. ``warm_start_steps`` makes the
survivors' PGD a continuation: after the first eps each survivor restarts from its own worst iterate (inside the
smaller ball) with a few steps instead of a cold PGD-k. It is a different attack, so its curve is measured, not
guaranteed, to stay at or below the naive sweep's; ``benchmarks/results/spectrum_cost.md`` compares both. Several
attacks give the worst case per sample. Every adversarial example is verified (finite, inside [0,1], inside the
eps ball) before it counts, and every forward/backward pass is counted.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn as nn
from tqdm.auto import tqdm

from wsr_bench.attacks import (
    PGD,
    build_attack,
    build_min_norm_attack,
    normalize_attack_name,
    normalize_norm,
    perturbation_norm,
    validate_images,
)
from wsr_bench.epsilon import PAPER_SPECTRUM, eps_label, parse_eps_list
from wsr_bench.evaluate.counting import CountingModel, PassCount

logger = logging.getLogger(__name__)

#: Slack of the eps-ball check on adversarial examples (float32 rounding of x + delta).
VERIFY_TOL = 1e-6


class AdversarialExampleError(RuntimeError):
    """An attack returned an invalid adversarial example (outside the eps ball or [0,1], or not finite)."""


@dataclass
class SpectrumResult:
    """Outcome of :func:`evaluate_spectrum`; accuracies are fractions in [0,1] over all ``n_examples``.

    Attributes:
        eps: the strengths, ascending.
        clean_accuracy: accuracy on unperturbed inputs.
        robust_accuracy: ``{eps: accuracy}``, worst case over all attacks.
        per_attack: ``{attack: {eps: accuracy}}``; with ``chain_attacks`` each curve includes the earlier attacks.
        raw_accuracy: attack-all sweeps only: ``{attack: {eps: accuracy}}`` of each eps attacked on its own.
        break_eps: per-sample smallest breaking eps (0 = misclassified clean, inf = never broken).
        break_eps_per_attack: the same per attack.
        min_norm: per-sample breaking radius from the min-norm attack (when it ran).
        passes: forward/backward sample passes of the whole evaluation; ``passes_per_attack`` split by attack.
        n_verified: adversarial examples checked against the eps ball, [0,1] and finiteness.
        sanity: the sanity report, when requested.
    """

    eps: list[float]
    clean_accuracy: float
    robust_accuracy: dict[float, float]
    per_attack: dict[str, dict[float, float]]
    raw_accuracy: dict[str, dict[float, float]]
    break_eps: torch.Tensor
    break_eps_per_attack: dict[str, torch.Tensor]
    min_norm: torch.Tensor | None
    passes: PassCount
    passes_per_attack: dict[str, PassCount]
    n_examples: int
    attacks: list[str]
    norm: str
    steps: int
    attack_all: bool
    chain_attacks: bool
    seed: int
    n_verified: int = 0
    wall_time_s: float = 0.0
    n_classes: int = 0
    sanity: Any = None
    settings: dict[str, Any] = field(default_factory=dict)

    def average_robust_accuracy(self, spectrum: Sequence[float] = PAPER_SPECTRUM) -> float | None:
        """Mean worst-case accuracy over ``spectrum`` (None when some strength was not evaluated)."""
        values = [_lookup(self.robust_accuracy, e) for e in spectrum]
        return None if any(v is None for v in values) else float(sum(values) / len(values))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (numbers as numbers, eps as float plus label, inf breaking eps as null)."""
        return {
            "eps": self.eps, "eps_label": [eps_label(e) for e in self.eps], "n_examples": self.n_examples,
            "clean_accuracy": self.clean_accuracy, "robust_accuracy": [self.robust_accuracy[e] for e in self.eps],
            "per_attack": {a: [c[e] for e in self.eps] for a, c in self.per_attack.items()},
            "raw_accuracy": {a: [c[e] for e in self.eps] for a, c in self.raw_accuracy.items()},
            "break_eps": [None if math.isinf(v) else v for v in self.break_eps.tolist()],
            "passes": self.passes.to_dict(),
            "passes_per_attack": {a: p.to_dict() for a, p in self.passes_per_attack.items()},
            "attacks": self.attacks, "norm": self.norm, "steps": self.steps, "attack_all": self.attack_all,
            "chain_attacks": self.chain_attacks, "seed": self.seed, "n_verified": self.n_verified,
            "wall_time_s": self.wall_time_s, "settings": self.settings,
            "sanity": self.sanity.to_dict() if self.sanity is not None else None,
        }


def _lookup(curve: dict[float, float], eps: float, tol: float = 1e-4) -> float | None:
    for e, v in curve.items():
        if abs(e - eps) <= tol:
            return v
    return None


@dataclass
class _Sweep:
    """Shared state of one evaluation (inputs, counting model, options)."""

    x: torch.Tensor
    y: torch.Tensor
    model: CountingModel
    device: torch.device
    eps: list[float]
    norm: str
    batch_size: int
    correct: torch.Tensor
    n_classes: int
    options: dict[str, Any]
    bar: Any = None
    n_verified: int = 0


def default_device() -> str:
    """"cuda" when available, else "cpu"."""
    return "cuda" if torch.cuda.is_available() else "cpu"


def evaluate_spectrum(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    eps: Sequence[float | str] | str = PAPER_SPECTRUM,
    attack: str | Sequence[str] = "pgd",
    steps: int = 20,
    batch_size: int = 128,
    device: str | torch.device | None = None,
    *,
    norm: str = "Linf",
    attack_all: bool = False,
    chain_attacks: bool = False,
    seed: int = 0,
    n_queries: int = 1000,
    n_target_classes: int = 9,
    minnorm_steps: int = 20,
    minnorm_targets: int = 3,
    early_stop: bool = False,
    warm_start_steps: int | None = None,
    warm_restart_ratio: float = 0.3,
    surrogate: nn.Module | None = None,
    sanity: bool = False,
    progress: bool = False,
) -> SpectrumResult:
    """Robust accuracy of ``model`` on ``(x, y)`` at every strength in ``eps``.

    Args:
        model: classifier on [0,1] images (normalization inside) returning logits.
        x: images, float (B,C,H,W) in [0,1]; y: int64 labels (B,).
        eps: strengths (floats or "8/255" strings, or one "0.03,8/255" string); sorted and de-duplicated.
        attack: a name ("pgd", "fgsm", "apgd-ce", "apgd-t", "fab-t", "square", "autoattack", "minnorm",
            "transfer") or a list of names (worst case per sample).
        steps: iterations of PGD/APGD/FAB-T (PGD step size eps*2.5/steps).
        batch_size: attack batch size.
        device: where to run (default CUDA when available); the model is moved there.
        norm: "Linf" (default) or "L2".
        attack_all: attack every clean-correct sample at every eps (naive sweep) instead of only survivors.
        chain_attacks: with several attacks, later attacks skip samples an earlier one already broke at that eps
            (AutoAttack-style; cheaper; ``["minnorm", "pgd"]`` is the hybrid sweep). Default: each attack sweeps
            on its own, so per-attack curves are exact.
        seed: seed of every attack's randomness.
        n_queries: Square's query budget; n_target_classes: targets of APGD-T/FAB-T.
        minnorm_steps, minnorm_targets: FAB iterations and target classes of the min-norm attack.
        early_stop: PGD stops on a sample once it is misclassified.
        warm_start_steps: PGD, Linf, survivors-only sweeps: after the first eps, a surviving sample is attacked
            with this many PGD steps (step eps*2.5/warm_start_steps) started from its own worst iterate at the
            previous eps instead of ``steps`` steps from a random start. That iterate lies in the smaller, nested
            ball, so it is a valid start, and usually close to the worst case; this continuation costs a fraction
            of a cold restart. None (default): every eps starts cold. ``benchmarks/spectrum_cost.py`` measures
            its cost and whether its curve stays at or below the naive sweep's (4 steps: about 3-4.5x fewer
            passes).
        warm_restart_ratio: with ``warm_start_steps``, a survivor of the continuation whose logit margin fell
            below this fraction of its margin at the previous eps also gets the cold attack (0: never).
        surrogate: model the transfer attack crafts on.
        sanity: also run :func:`wsr_bench.evaluate.sanity.run_sanity_checks` and attach the report.
        progress: show a tqdm bar.

    Returns:
        A :class:`SpectrumResult`.

    Raises:
        ValueError: bad images/labels, eps, attack, norm or options, or a model returning non-finite logits.
        AdversarialExampleError: an attack produced an invalid adversarial example.
    """
    start = time.perf_counter()
    norm = normalize_norm(norm)
    eps_list = parse_eps_list(eps, max_eps=1.0 if norm == "Linf" else 1e3)
    attacks = _attack_list(attack)
    validate_images(x, y)
    if int(batch_size) < 1 or int(steps) < 1:
        raise ValueError(f"batch_size and steps must be >= 1, got batch_size={batch_size}, steps={steps}")
    if warm_start_steps is not None:
        _check_warm_start(int(warm_start_steps), float(warm_restart_ratio), norm, attack_all, attacks)
    device = torch.device(device or default_device())
    was_training = model.training
    model.to(device).eval()
    try:
        sweep = _prepare(model, x, y, eps_list, norm, int(batch_size), device, progress, attacks,
                         dict(steps=int(steps), seed=int(seed), n_queries=n_queries, n_target_classes=n_target_classes,
                              minnorm_steps=minnorm_steps, minnorm_targets=minnorm_targets, early_stop=early_stop,
                              warm_start_steps=None if warm_start_steps is None else int(warm_start_steps),
                              warm_restart_ratio=float(warm_restart_ratio),
                              surrogate=surrogate.to(device).eval() if surrogate is not None else None,
                              attack_all=attack_all))
        result = _run_attacks(sweep, attacks, chain_attacks)
    finally:
        model.train(was_training)
    result.wall_time_s = time.perf_counter() - start
    if sanity:
        from wsr_bench.evaluate.sanity import run_sanity_checks

        result.sanity = run_sanity_checks(model, x, y, eps=eps_list, result=result, device=device, seed=seed,
                                          norm=norm)
    return result


def _attack_list(attack: str | Sequence[str]) -> list[str]:
    names = [attack] if isinstance(attack, str) else list(attack)
    names = [n for part in names for n in str(part).split(",") if n.strip()]
    if not names:
        raise ValueError("no attack given: expected a name like 'pgd' or a list like ['fgsm', 'pgd']")
    out: list[str] = []
    for n in names:
        key = normalize_attack_name(n)
        if key not in out:
            out.append(key)
    return out


def _check_warm_start(warm_steps: int, ratio: float, norm: str, attack_all: bool, attacks: list[str]) -> None:
    if warm_steps < 1:
        raise ValueError(f"warm_start_steps must be >= 1 (or None for cold starts), got {warm_steps}")
    if not 0 <= ratio <= 1:
        raise ValueError(f"warm_restart_ratio must be in [0, 1] (0: never restart cold), got {ratio}")
    if norm != "Linf" or attack_all or "pgd" not in attacks:
        raise ValueError("warm_start_steps continues Linf PGD from each survivor's previous iterate: it needs "
                         f"attack 'pgd', norm 'Linf' and attack_all=False (got attacks={attacks}, norm={norm!r}, "
                         f"attack_all={attack_all})")


def _prepare(model, x, y, eps, norm, batch_size, device, progress, attacks, options) -> _Sweep:
    """Wrap the model for counting, run the clean pass, refuse non-finite logits."""
    if "transfer" in attacks and options["surrogate"] is None:
        raise ValueError("the transfer attack needs a surrogate model (surrogate=...)")
    counting = CountingModel(model)
    preds = []
    with torch.no_grad():
        for xb in x.split(batch_size):
            logits = counting(xb.to(device))
            if logits.dim() != 2:
                raise ValueError(f"model must return (B, num_classes) logits, got shape {tuple(logits.shape)}")
            bad = (~torch.isfinite(logits)).any(1).sum().item()
            if bad:
                raise ValueError(f"model returned non-finite outputs (NaN/inf) for {bad} of {len(xb)} clean images; "
                                 "check the model and its checkpoint")
            preds.append(logits.argmax(1).cpu())
    correct = torch.cat(preds) == y.cpu()
    total = len(attacks) * len(eps)
    bar = tqdm(total=total, desc="spectrum", unit="eps", disable=not progress, leave=False)
    return _Sweep(x.cpu(), y.cpu(), counting, device, eps, norm, batch_size, correct, int(logits.shape[1]),
                  options, bar)


def _run_attacks(sweep: _Sweep, attacks: list[str], chain: bool) -> SpectrumResult:
    n = len(sweep.x)
    clean_passes = sweep.model.count.copy()
    blocked = torch.where(sweep.correct, math.inf, 0.0)  # worst case so far (used to skip in chained mode)
    per_attack_break: dict[str, torch.Tensor] = {}
    raw: dict[str, dict[float, float]] = {}
    passes: dict[str, PassCount] = {}
    min_norm = None
    for name in attacks:
        before = sweep.model.count.copy()
        skip = blocked if chain else torch.where(sweep.correct, math.inf, 0.0)
        if name == "minnorm":
            first, min_norm = _sweep_min_norm(sweep, skip)
        else:
            first, raw_curve = _sweep_eps(sweep, name, skip)
            if raw_curve is not None:
                raw[name] = raw_curve
        per_attack_break[name] = torch.minimum(first, skip) if chain else first
        blocked = torch.minimum(blocked, first)
        passes[name] = sweep.model.count - before
    sweep.bar.close()
    o = sweep.options
    return SpectrumResult(
        eps=sweep.eps, clean_accuracy=float(sweep.correct.float().mean()),
        robust_accuracy=_curve(blocked, sweep.eps, n),
        per_attack={a: _curve(b, sweep.eps, n) for a, b in per_attack_break.items()}, raw_accuracy=raw,
        break_eps=blocked, break_eps_per_attack=per_attack_break, min_norm=min_norm,
        passes=sweep.model.count.copy(), passes_per_attack={"clean": clean_passes, **passes}, n_examples=n,
        attacks=attacks, norm=sweep.norm, steps=o["steps"], attack_all=bool(o["attack_all"]), chain_attacks=chain,
        seed=o["seed"], n_verified=sweep.n_verified, n_classes=sweep.n_classes,
        settings={k: v for k, v in o.items() if k not in ("surrogate",)} | {"batch_size": sweep.batch_size},
    )


def _curve(break_eps: torch.Tensor, eps: list[float], n: int) -> dict[float, float]:
    return {e: float((break_eps > e).sum().item() / n) for e in eps}


def _sweep_eps(sweep: _Sweep, name: str, skip: torch.Tensor) -> tuple[torch.Tensor, dict[float, float] | None]:
    """Sweep one eps-bounded attack upward; returns per-sample first breaking eps (and the raw curve)."""
    o = sweep.options
    first = torch.where(sweep.correct, math.inf, 0.0)
    raw: dict[float, float] = {}
    warm = o.get("warm_start_steps") if name == "pgd" else None
    last = torch.full_like(sweep.x, math.nan) if warm else None  # each sample's worst PGD iterate so far
    margins = torch.full((len(sweep.x),), math.inf) if warm else None  # and its logit margin there
    for e in sweep.eps:
        atk = build_attack(name, sweep.model, e, norm=sweep.norm, steps=o["steps"], seed=o["seed"],
                           n_queries=o["n_queries"], n_target_classes=o["n_target_classes"], n_classes=sweep.n_classes,
                           surrogate=o["surrogate"], early_stop=o["early_stop"])
        standing = sweep.correct & (skip > e)
        targets = standing if o["attack_all"] else standing & (first > e)
        idx = targets.nonzero().flatten()
        if warm:
            fooled = _attack_warm(sweep, atk, idx, last, warm, margins)
        else:
            fooled = _attack_indices(sweep, atk, idx)
        raw[e] = float((standing.sum() - fooled.sum()).item() / len(sweep.x))
        hit = idx[fooled]
        first[hit] = torch.minimum(first[hit], torch.full_like(first[hit], e))
        sweep.bar.update(1)
        sweep.bar.set_postfix_str(f"{name} eps={eps_label(e)} acc={(first > e).float().mean():.3f}")
        logger.debug("%s eps=%s attacked=%d fooled=%d", name, eps_label(e), len(idx), int(fooled.sum()))
    return first, (raw if o["attack_all"] else None)


def _attack_indices(sweep: _Sweep, atk, idx: torch.Tensor) -> torch.Tensor:
    """Attack the samples ``idx`` in batches; returns which of them the verified adversarial examples fool."""
    fooled = [torch.zeros(0, dtype=torch.bool)]
    for chunk in idx.split(sweep.batch_size) if len(idx) else ():
        xb, yb = sweep.x[chunk].to(sweep.device), sweep.y[chunk].to(sweep.device)
        adv = atk(xb, yb, chunk)
        sweep.model.eval()  # whatever the attack library did to the mode, verify with running BN statistics
        verify_adversarial(adv, xb, atk.eps, sweep.norm, atk.name)
        sweep.n_verified += len(chunk)
        with torch.no_grad():
            fooled.append((sweep.model(adv).argmax(1) != yb).cpu())
    return torch.cat(fooled)


def _attack_warm(sweep: _Sweep, atk, idx: torch.Tensor, last: torch.Tensor, warm_steps: int,
                 margins: torch.Tensor) -> torch.Tensor:
    """Warm-started PGD on the samples ``idx``; returns which of them are fooled.

    Samples without a stored iterate (the first eps) get the cold attack ``atk``. The others continue from their
    stored iterate for ``warm_steps`` steps; a survivor whose logit margin fell below ``warm_restart_ratio`` times
    its margin at the previous eps is near the boundary, where a continuation can sit in a poor local optimum, so
    it gets the cold attack as well (fooled by either counts). ``last``/``margins`` keep each sample's worst
    iterate and its margin.
    """
    o = sweep.options
    has_start = ~torch.isnan(last.flatten(1)[idx, 0])  # without copying the stored images
    cont = PGD(sweep.model, eps=atk.eps, alpha=atk.eps * 2.5 / warm_steps, steps=warm_steps, random_start=False,
               seed=o["seed"], early_stop=o["early_stop"])
    fooled = torch.zeros(len(idx), dtype=torch.bool)

    def run(group: torch.Tensor, attack) -> None:
        for chunk in group.nonzero().flatten().split(sweep.batch_size) if group.any() else ():
            ids = idx[chunk]
            xb, yb = sweep.x[ids].to(sweep.device), sweep.y[ids].to(sweep.device)
            adv = attack(xb, yb, ids)
            sweep.model.eval()
            verify_adversarial(adv, xb, atk.eps, sweep.norm, f"{atk.name} (warm-started sweep)")
            sweep.n_verified += len(ids)
            with torch.no_grad():
                m = _margin(sweep.model(adv), yb).cpu()
            fooled[chunk] |= m < 0
            worse = m < margins[ids]
            last[ids[worse]] = adv.cpu()[worse]
            margins[ids[worse]] = m[worse]

    run(~has_start, atk)
    previous = margins[idx].clone()
    with torch.enable_grad():
        run(has_start, lambda xb, yb, ids: cont(xb, yb, ids, start=last[ids].to(xb)))
    near = has_start & ~fooled & (margins[idx] < o["warm_restart_ratio"] * previous)
    run(near, atk)
    return fooled


def _margin(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Logit of the true class minus the largest other logit (negative: misclassified)."""
    true = logits.gather(1, y[:, None]).squeeze(1)
    return true - logits.scatter(1, y[:, None], float("-inf")).amax(1)


def _sweep_min_norm(sweep: _Sweep, skip: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """One FAB min-norm run gives every sample's breaking radius, hence its first breaking eps on the grid."""
    o = sweep.options
    attack = build_min_norm_attack(sweep.model, norm=sweep.norm, steps=o["minnorm_steps"],
                                   n_target_classes=o["minnorm_targets"], seed=o["seed"])
    radius = torch.where(sweep.correct, math.inf, 0.0)
    idx = (sweep.correct & (skip > sweep.eps[0])).nonzero().flatten()
    for chunk in idx.split(sweep.batch_size) if len(idx) else ():
        xb, yb = sweep.x[chunk].to(sweep.device), sweep.y[chunk].to(sweep.device)
        r, adv = attack.radii(xb, yb)
        found = torch.isfinite(r)
        if found.any():
            verify_adversarial(adv[found], xb[found], float(r[found].max()), sweep.norm, "minnorm")
            sweep.n_verified += int(found.sum())
        radius[chunk] = r.cpu()
    first = torch.full_like(radius, math.inf)
    for e in reversed(sweep.eps):
        first[radius <= e] = e
    first[~sweep.correct] = 0.0
    sweep.bar.update(len(sweep.eps))
    return first, radius


def verify_adversarial(adv: torch.Tensor, x: torch.Tensor, eps: float, norm: str, attack: str = "attack") -> None:
    """Check adversarial examples: finite, inside [0,1], and ``||adv - x|| <= eps + 1e-6``.

    Raises:
        AdversarialExampleError: naming the attack and what was violated.
    """
    if adv.numel() == 0:
        return
    if adv.shape != x.shape:
        raise AdversarialExampleError(f"{attack} returned shape {tuple(adv.shape)} for inputs {tuple(x.shape)}")
    if not torch.isfinite(adv).all():
        raise AdversarialExampleError(f"{attack} returned non-finite adversarial examples")
    if adv.min() < 0 or adv.max() > 1:
        raise AdversarialExampleError(f"{attack} left the [0,1] image range: [{adv.min():.4g}, {adv.max():.4g}]")
    dist = perturbation_norm(adv - x, norm)
    worst = float(dist.max()) if len(dist) else 0.0
    if worst > eps + VERIFY_TOL:
        raise AdversarialExampleError(f"{attack} exceeded the {norm} budget: ||delta|| = {worst:.6g} > eps = {eps:.6g}")
