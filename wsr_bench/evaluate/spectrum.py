"""The epsilon-spectrum evaluator: robust accuracy as a curve over perturbation strength.

For each attack, strengths are swept upward. The Linf (or L2, or L1) balls are nested, so an adversarial example found
at eps_j is also one at every eps_k > eps_j: a sample's *breaking eps* is the smallest strength at which some
attack fooled the model, and the robust accuracy at eps is the fraction of samples whose breaking eps is larger.
By default the sweep attacks only the samples still standing (``attack_all=False``); ``attack_all=True``
attacks every clean-correct sample at every eps (the naive sweep) and also reports each eps on its own
(``raw_accuracy``). With our per-sample seeded PGD both give the same curve. ``warm_start_steps`` makes the
survivors' PGD a continuation: after the first eps each survivor restarts from its own worst iterate (inside the
smaller ball) with a few steps instead of a cold PGD-k. It is a different attack, so its curve is measured, not
guaranteed, to stay at or below the naive sweep's; ``benchmarks/results/spectrum_cost.md`` compares both. Several
attacks give the worst case per sample. Every adversarial example is verified (finite, inside [0,1], inside the
eps ball) before it counts, and every forward/backward pass is counted. A chain attack (AutoAttack, or a chained
list) is by default swept ``downward`` instead, about one whole chain per sample (:mod:`wsr_bench.evaluate.sweeps`);
each sample's result records which attack broke it and which strengths were attacked or inferred (``evidence``).

Work is done in fixed *batches*, resumable (``state_dir``, ``resume``) and sharded under ``torchrun``, by the batch
runner of :mod:`wsr_bench.evaluate.batches`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
from tqdm.auto import tqdm

from wsr_bench.attacks.factory import build_min_norm_attack, validate_images
from wsr_bench.epsilon import eps_label
from wsr_bench.evaluate.batches import (
    AdversarialExampleError,  # noqa: F401  (re-exported: the error evaluate_spectrum raises)
    EvalContext,
    Trace,
    run_batches,
    sweep_eps,
    verify_adversarial,
)
from wsr_bench.evaluate.counting import CountingModel, PassCount
from wsr_bench.evaluate.options import EvalRuntime, SpectrumOptions, resolve_options, resolve_runtime, split_fields
from wsr_bench.evaluate.resume import SweepState, model_sha256, open_state, tensor_sha256
from wsr_bench.evaluate.sweeps import sweep_chain
from wsr_bench.infra.distributed import broadcast_object, get_rank, get_world_size
from wsr_bench.infra.runtime import memory_format_of, resolve_device, set_memory_format
from wsr_bench.infra.threads import apply_default_threads


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
        passes: forward/backward sample passes of the whole evaluation; ``passes_per_attack`` split by attack
            (a chain swept downward or by bisection has its screen apart, as ``"<attack>.screen"``).
        n_verified: adversarial examples checked against the eps ball, [0,1] and finiteness.
        sweep: the strategy the chain attacks got ("downward" or "bisect"; "upward" where no attack was swept
            otherwise, e.g. PGD alone or an attack-all sweep); ``sweep_per_attack`` what each attack (or chain) got.
        break_attack: per sample, the attack whose adversarial example set ``break_eps`` (None: never broken or
            misclassified clean); a chain's screen is named ``"<chain>/<screen attack>"``.
        evidence: per sample, one letter per eps: ``a`` attacked there (every attack ran, or one fooled the model
            there), ``b`` counted broken from an adversarial example at a smaller eps (exact: nested balls), ``r``
            counted robust because the whole chain failed at a larger eps and only its screen ran here.
        nesting_violations: images whose verdicts are not nested across strengths: every attack ran on the image
            at some eps and none fooled it there, although an adversarial example at a smaller eps exists
            (:func:`nesting_violations`). 0 by construction for survivors-only and chain sweeps, which never attack
            an image at or above its break; attack-all sweeps can have some, and each says an attack failed.
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
    threat_model: str
    steps: int
    attack_all: bool
    chain_attacks: bool
    seed: int
    n_verified: int = 0
    wall_time_s: float = 0.0
    n_classes: int = 0
    sweep: str = "upward"
    sweep_per_attack: dict[str, str] = field(default_factory=dict)
    break_attack: list[str | None] = field(default_factory=list)
    evidence: list[str] = field(default_factory=list)
    nesting_violations: int = 0
    sanity: Any = None
    settings: dict[str, Any] = field(default_factory=dict)

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
            "attacks": self.attacks, "threat_model": self.threat_model, "steps": self.steps,
            "attack_all": self.attack_all, "chain_attacks": self.chain_attacks, "seed": self.seed,
            "n_verified": self.n_verified,
            "wall_time_s": self.wall_time_s, "settings": self.settings, "sweep": self.sweep,
            "sweep_per_attack": self.sweep_per_attack, "break_attack": self.break_attack, "evidence": self.evidence,
            "sanity": self.sanity.to_dict() if self.sanity is not None else None,
        }


def evaluate_spectrum(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    options: SpectrumOptions | None = None,
    *,
    runtime: EvalRuntime | None = None,
    **fields: Any,
) -> SpectrumResult:
    """Robust accuracy of ``model`` on ``(x, y)`` at every strength in ``eps``.

    What is computed is a :class:`~wsr_bench.evaluate.options.SpectrumOptions` and how it runs an
    :class:`~wsr_bench.evaluate.options.EvalRuntime`: ``options`` and ``runtime`` (default: the defaults) with the
    keyword ``fields`` replacing the fields of either, e.g.
    ``evaluate_spectrum(model, x, y, eps=[0.03, 0.1], attack="pgd", steps=5, device="cpu")``; a misspelt field is a
    ``TypeError``.

    The caller's model is left as it was found, except for its device: it is moved to ``device`` (as torchattacks and
    AutoAttack expect the model to sit where the attack runs), and put back in its training mode and its memory
    layout after the evaluation (the evaluation runs in ``memory_format``).

    Args:
        model: classifier on [0,1] images (normalization inside) returning logits.
        x: images, float (B,C,H,W) in [0,1]; y: int64 labels (B,).
        options: the evaluation's settings (its fields are listed below).
        runtime: how it runs (its fields are listed below).

    Run-time fields (of ``runtime``, or as keywords):
        device: where to run (default CUDA when available); the model is moved there.
        memory_format: ``channels_last`` (default, faster) or ``contiguous``: the layout the model (and the
            surrogate) run in during the evaluation (:func:`~wsr_bench.infra.runtime.set_memory_format`); each is
            given back in the layout it had. It changes only the order of float operations, so it is not part of the
            result's settings or the resume state.
        surrogate: model the transfer attack crafts on.
        sanity: also run :func:`wsr_bench.evaluate.sanity.run_sanity_checks` and attach the report (rank 0 only
            under torchrun).
        progress: show a tqdm bar.
        state_dir: keep per-batch progress in this folder (see :mod:`wsr_bench.evaluate.resume`); the caller
            removes it once the result is safe.
        state_info: extra identity recorded in (and compared with) the state, e.g. ``{"model": spec}``.

    Fields (of ``options``, or as keywords):
        eps: strengths (floats or "8/255" strings, or one "0.03,8/255" string); sorted and de-duplicated.
        attack: a name ("pgd", "fgsm", "apgd-ce", "apgd-t", "fab-t", "square", "autoattack", "minnorm",
            "transfer") or a list of names (worst case per sample).
        steps: iterations of PGD/APGD/FAB-T (PGD step size eps*2.5/steps).
        batch_size: attack batch size.
        norm: "Linf" (default), "L2" or "L1" (L1 eps sum |delta| over every value: on a different scale; only the
            attacks of ``wsr_bench.rules.L1_ATTACKS`` have an L1 version).
        aa_version: AutoAttack's version, as pyautoattack spells it: "standard" (default), "plus" (more restarts,
            APGD-DLR and untargeted FAB too) or "rand" (APGD-CE and APGD-DLR with EOT over 20 forward passes, for
            randomised models); needs "autoattack" among the attacks. Swept like standard: the screen is the
            version's own APGD-CE.
        attack_all: attack every clean-correct sample at every eps (naive sweep) instead of only survivors.
        chain_attacks: with several attacks, later attacks skip samples an earlier one already broke at that eps
            (AutoAttack-style; cheaper; ``["minnorm", "pgd"]`` is the hybrid sweep). Default: each attack sweeps
            on its own, so per-attack curves are exact.
        sweep: how a chain attack walks the strengths (:mod:`wsr_bench.evaluate.sweeps`): "upward" attacks each
            survivor at every eps; "downward" (default) screens every eps with the chain's first attack (for
            AutoAttack its APGD-CE) and runs the whole chain at each sample's largest eps the screen could not
            break, descending only while the chain breaks it; "bisect" places that boundary by bisection. The
            chains are "autoattack" and, with ``chain_attacks``, the whole attack list; any other attack is swept
            upward whatever this says. Ignored by ``attack_all`` (asking for "downward"/"bisect" with it is an
            error).
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
        resume: continue from ``state_dir``'s finished batches (its settings must match: model weights, images,
            every argument that changes a result). Without it an existing ``state_dir`` is refused.

    Returns:
        A :class:`SpectrumResult` (on every rank under torchrun).

    Raises:
        ValueError: bad images/labels, eps, attack, norm or options, a model returning non-finite logits, or a
            resume state made with other settings.
        FileExistsError: ``state_dir`` exists and ``resume`` is false.
        AdversarialExampleError: an attack produced an invalid adversarial example.
    """
    start = time.perf_counter()
    apply_default_threads()  # once per process: the package's CPU thread default (wsr_bench.infra.threads)
    option_fields, runtime_fields = split_fields(fields, SpectrumOptions, EvalRuntime)
    options = resolve_options(options, option_fields)
    runtime = resolve_runtime(runtime, runtime_fields)
    validate_images(x, y)
    device = torch.device(resolve_device(runtime.device or "auto"))
    surrogate = runtime.surrogate
    layouts = [(m, memory_format_of(m), m.training) for m in (model, surrogate) if m is not None]
    set_memory_format(model.to(device), runtime.memory_format).eval()
    if surrogate is not None:
        set_memory_format(surrogate.to(device), runtime.memory_format).eval()
    try:
        ctx = EvalContext(x.cpu(), y.cpu(), CountingModel(model), device, options, surrogate, rank=get_rank(),
                          world=get_world_size())
        if runtime.state_dir is not None:
            ctx.state = _open_shared_state(ctx, runtime.state_dir, runtime.state_info)
        _prepare(ctx, runtime.progress)
        result = _run_attacks(ctx)
        result.wall_time_s = time.perf_counter() - start
        if runtime.sanity and ctx.rank == 0:
            from wsr_bench.evaluate.sanity import run_sanity_checks

            result.sanity = run_sanity_checks(model, x, y, options, result=result, device=device)
    finally:
        for m, layout, training in layouts:  # the caller's models as they were found (but on ``device``)
            set_memory_format(m, layout).train(training)
    return result


def _open_shared_state(ctx: EvalContext, folder: str | Path, info: dict[str, Any] | None) -> SweepState:
    """Rank 0 creates or checks the state folder; every rank gets the same snapshot of its finished batches.

    The state's identity: exact hashes of the weights and images, and every argument that changes a result (not
    the device or the number of processes).
    """
    opened: SweepState | str | None = None
    if ctx.rank == 0:
        o = ctx.options
        settings = {"n": len(ctx.x), "data_sha256": tensor_sha256(ctx.x, ctx.y),
                    "weights_sha256": model_sha256(ctx.model.model), "eps": ctx.eps, "attacks": list(o.attack),
                    "norm": o.threat_model, "batch_size": o.batch_size, "chain_attacks": o.chain_attacks,
                    **o.result_settings(),
                    "surrogate_sha256": None if ctx.surrogate is None else model_sha256(ctx.surrogate),
                    **(info or {})}
        try:
            opened = open_state(folder, settings, o.resume)
        except (ValueError, FileExistsError) as exc:
            opened = f"{type(exc).__name__}:{exc}"
    opened = broadcast_object(opened)
    if isinstance(opened, str):
        kind, message = opened.split(":", 1)
        raise (FileExistsError if kind == "FileExistsError" else ValueError)(message)
    return SweepState(folder, opened.done)


def _prepare(ctx: EvalContext, progress: bool) -> None:
    """Check the surrogate, run the clean pass (in batches, like the attacks), refuse non-finite logits."""
    if "transfer" in ctx.options.attack and ctx.surrogate is None:
        raise ValueError("the transfer attack needs a surrogate model (surrogate=...)")

    def clean(ids: torch.Tensor) -> dict[str, Any]:
        with torch.no_grad():
            logits = ctx.model(ctx.x[ids].to(ctx.device))
        if logits.dim() != 2:
            raise ValueError(f"model must return (B, num_classes) logits, got shape {tuple(logits.shape)}")
        bad = (~torch.isfinite(logits)).any(1).sum().item()
        if bad:
            raise ValueError(f"model returned non-finite outputs (NaN/inf) for {bad} of {len(ids)} clean images; "
                             "check the model and its checkpoint")
        return {"pred": logits.argmax(1).cpu(), "n_classes": int(logits.shape[1])}

    records = run_batches(ctx, "clean", 0, torch.arange(len(ctx.x)), clean)
    ctx.correct = torch.cat([r["pred"] for r in records]) == ctx.y
    ctx.n_classes = int(records[0]["n_classes"])
    total = len(ctx.options.attack) * len(ctx.eps)
    ctx.bar = tqdm(total=total, desc="spectrum", unit="eps", disable=not progress or ctx.rank != 0, leave=False)


def _run_attacks(ctx: EvalContext) -> SpectrumResult:
    o = ctx.options
    attacks, chain, strategy = list(o.attack), o.chain_attacks, o.sweep_strategy
    n = len(ctx.x)
    blocked = torch.where(ctx.correct, math.inf, 0.0)  # worst case so far (used to skip in chained mode)
    per_attack_break: dict[str, torch.Tensor] = {}
    raw: dict[str, dict[float, float]] = {}
    traces: dict[str, Trace] = {}
    min_norm = None
    for label, members in _units(attacks, chain, strategy):
        skip = blocked if chain else torch.where(ctx.correct, math.inf, 0.0)
        if members == ["minnorm"]:
            trace, min_norm = _sweep_min_norm(ctx, skip)
        elif strategy != "upward" and (len(members) > 1 or members == ["autoattack"]):
            trace = sweep_chain(ctx, label, members, skip)
        else:
            trace, raw_curve = sweep_eps(ctx, label, skip)
            if raw_curve is not None:
                raw[label] = raw_curve
        traces[label] = trace
        per_attack_break[label] = torch.minimum(trace.first, skip) if chain else trace.first
        blocked = torch.minimum(blocked, trace.first)
    ctx.bar.close()
    passes = {key: sum((ctx.passes.get(s, PassCount()) for s in stages), PassCount())
              for t in traces.values() for key, stages in t.stage_groups.items()}
    return SpectrumResult(
        eps=ctx.eps, clean_accuracy=float(ctx.correct.float().mean()),
        robust_accuracy=_curve(blocked, ctx.eps, n),
        per_attack={a: _curve(b, ctx.eps, n) for a, b in per_attack_break.items()}, raw_accuracy=raw,
        break_eps=blocked, break_eps_per_attack=per_attack_break, min_norm=min_norm,
        passes=sum(ctx.passes.values(), PassCount()), passes_per_attack={"clean": ctx.passes["clean"], **passes},
        n_examples=n,
        attacks=attacks, threat_model=o.threat_model, steps=o.steps, attack_all=bool(o.attack_all), chain_attacks=chain,
        seed=o.seed, n_verified=ctx.n_verified, n_classes=ctx.n_classes,
        sweep=strategy if any(t.strategy in ("downward", "bisect") for t in traces.values()) else "upward",
        sweep_per_attack={a: t.strategy for a, t in traces.items()},
        break_attack=_break_attack(blocked, traces), evidence=_evidence(blocked, traces, ctx.eps),
        nesting_violations=nesting_violations(blocked, list(traces.values()), ctx.eps),
        settings=o.result_settings() | {"batch_size": o.batch_size},
    )


def _units(attacks: list[str], chain: bool, strategy: str) -> list[tuple[str, list[str]]]:
    """``(label, members)`` swept together: the whole list as one chain ("a+b+c") when chained attacks are swept
    downward or by bisection, else one unit per attack."""
    if strategy != "upward" and chain and len(attacks) > 1:
        return [("+".join(attacks), attacks)]
    return [(a, [a]) for a in attacks]


def _break_attack(break_eps: torch.Tensor, traces: dict[str, Trace]) -> list[str | None]:
    """Per sample, the label of the first attack (in order) whose own example sets the worst-case breaking eps."""
    out: list[str | None] = [None] * len(break_eps)
    for i, b in enumerate(break_eps.tolist()):
        if 0 < b < math.inf:
            out[i] = next(t.label[i] for t in traces.values() if float(t.first[i]) == b)
    return out


def _evidence(break_eps: torch.Tensor, traces: dict[str, Trace], eps: list[float]) -> list[str]:
    """Per sample, one letter per eps: ``a`` attacked there, ``b`` broken by inference from a smaller eps, ``r``
    robust by inference from the whole chain failing at a larger eps (see :class:`SpectrumResult`)."""
    broken = break_eps[:, None] <= torch.tensor(eps, dtype=break_eps.dtype)[None, :]
    hit = torch.stack([t.hit for t in traces.values()]).any(0)
    ran = torch.stack([t.ran for t in traces.values()]).all(0)
    attacked = torch.where(broken, hit, ran)
    code = torch.where(attacked, ord("a"), torch.where(broken, ord("b"), ord("r")))
    return ["".join(map(chr, row)) for row in code.tolist()]


def nesting_violations(break_eps: torch.Tensor, traces: Sequence[Trace], eps: Sequence[float]) -> int:
    """The number of images robust at a larger eps and broken at a smaller one: at some eps every trace ran on the
    image and none fooled it, while its worst-case breaking eps (``break_eps``) is at or below that eps. A break
    exactly at that eps would be a hit there, so such an image was broken at a strictly smaller eps, whose
    adversarial example lies inside the larger ball: the attacks failed there."""
    if not traces:
        return 0
    broken = break_eps[:, None] <= torch.tensor(list(eps), dtype=break_eps.dtype)[None, :]
    ran = torch.stack([t.ran for t in traces]).all(0)
    hit = torch.stack([t.hit for t in traces]).any(0)
    return int((ran & ~hit & broken).any(1).sum().item())


def _curve(break_eps: torch.Tensor, eps: list[float], n: int) -> dict[float, float]:
    return {e: float((break_eps > e).sum().item() / n) for e in eps}


def _sweep_min_norm(ctx: EvalContext, skip: torch.Tensor) -> tuple[Trace, torch.Tensor]:
    """One FAB min-norm run gives every sample's breaking radius, hence its first breaking eps on the grid (the
    trace counts it as run at every eps on the samples it attacked); returns the trace and the radii."""
    o = ctx.options
    attack = build_min_norm_attack(ctx.model, norm=ctx.options.threat_model, steps=o.minnorm_steps,
                                   n_target_classes=o.minnorm_targets, seed=o.seed)

    def radii(ids: torch.Tensor) -> dict[str, Any]:
        xb, yb = ctx.x[ids].to(ctx.device), ctx.y[ids].to(ctx.device)
        r, adv = attack.radii(xb, yb)
        found = torch.isfinite(r)
        if found.any():
            verify_adversarial(adv[found], xb[found], float(r[found].max()), ctx.options.threat_model, "minnorm")
            ctx.verified_here += int(found.sum())
        return {"radius": r.cpu()}

    radius = torch.where(ctx.correct, math.inf, 0.0)
    idx = (ctx.correct & (skip > ctx.eps[0])).nonzero().flatten()
    for rec in run_batches(ctx, "minnorm", 0, idx, radii):
        radius[rec["ids"]] = rec["radius"]
    trace = Trace.empty(ctx, {"minnorm": ["minnorm"]}, "minnorm")
    trace.ran[idx] = True
    for k, e in reversed(list(enumerate(ctx.eps))):
        trace.record_hits(idx[radius[idx] <= e], k, e, "minnorm")
    trace.hit &= trace.first[:, None] == torch.tensor(ctx.eps, dtype=trace.first.dtype)  # only the first eps
    ctx.bar.update(len(ctx.eps))
    return trace, radius


