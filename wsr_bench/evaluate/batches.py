"""The batch runner under every spectrum sweep: one (attack, eps) step at a time, in fixed batches, with its resume
state and its torchrun sharding.

Both the upward sweep of :mod:`wsr_bench.evaluate.spectrum` and the chain sweeps ("downward", "bisect") of
:mod:`wsr_bench.evaluate.sweeps` are sequences of such steps. Keeping the runner here, below both, lets
``spectrum`` import ``sweeps`` and ``sweeps`` import the runner without either importing the other: this module
owns the evaluation's shared state (:class:`EvalContext`), what an attack did per sample (:class:`Trace`), the runner
(:func:`run_batches`), one attack's upward sweep (:func:`sweep_eps`), the attack of one batch
(:func:`make_attack`, :func:`attack_batch`, the warm-started PGD) and the check every adversarial example passes
before it counts (:func:`verify_adversarial`).

Work is done in *batches* fixed by the settings alone: at each (attack, eps) step the samples to attack, in index
order, cut into chunks of ``batch_size``. Every per-sample result is a function of its batch (PGD's random start is
drawn per sample; the other attacks reseed with ``seed`` at every batch), so neither a resume nor the number of
processes changes anything. With ``state_dir`` each finished batch is saved (:mod:`wsr_bench.evaluate.resume`) and
``resume=True`` continues a killed evaluation from its finished batches. Under ``torchrun`` (an initialised process
group) the batches of each step are split over the ranks, each rank saves its own, and the records are exchanged
after every step, so every rank ends with the same, complete result.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
import torch.nn as nn

from wsr_bench.attacks.factory import build_attack, build_pgd, perturbation_norm
from wsr_bench.epsilon import eps_label
from wsr_bench.evaluate.counting import CountingModel, PassCount
from wsr_bench.evaluate.options import SpectrumOptions
from wsr_bench.evaluate.resume import SweepState
from wsr_bench.infra.distributed import all_gather_object

logger = logging.getLogger(__name__)

#: Slack of the eps-ball check on adversarial examples (float32 rounding of x + delta).
VERIFY_TOL = 1e-6


class AdversarialExampleError(RuntimeError):
    """An attack returned an invalid adversarial example (outside the eps ball or [0,1], or not finite)."""


@dataclass
class EvalContext:
    """Shared state of one evaluation (inputs, counting model, options, resume state, this process's rank).

    ``passes``/``n_verified`` are totals over every batch of every rank (summed from the batch records), while
    ``model.count``/``verified_here`` count only what this process ran.
    """

    x: torch.Tensor
    y: torch.Tensor
    model: CountingModel
    device: torch.device
    options: SpectrumOptions
    surrogate: nn.Module | None = None
    correct: torch.Tensor | None = None
    n_classes: int = 0
    bar: Any = None
    state: SweepState | None = None
    rank: int = 0
    world: int = 1
    passes: dict[str, PassCount] = field(default_factory=dict)
    n_verified: int = 0
    verified_here: int = 0

    @property
    def eps(self) -> list[float]:
        """The strengths, ascending (``options.eps`` as a list)."""
        return list(self.options.eps)


@dataclass
class Trace:
    """What one attack (or one chain) did to each sample: its own first breaking eps and where it ran.

    Attributes:
        first: per sample, the smallest eps at which this attack's own adversarial example fooled the model (inf:
            never; 0: misclassified clean).
        ran: (n, K) bool, the whole attack (chain) ran on the sample at that eps.
        hit: (n, K) bool, an adversarial example found at that eps fooled the model.
        label: per sample, what produced the example at ``first`` (None where nothing did).
        stage_groups: ``{reported name: stages}``, how its pass counts are reported (``passes_per_attack``).
        strategy: the sweep it got ("upward", "attack-all", "downward", "bisect", "minnorm").
    """

    first: torch.Tensor
    ran: torch.Tensor
    hit: torch.Tensor
    label: list[str | None]
    stage_groups: dict[str, list[str]]
    strategy: str

    @classmethod
    def empty(cls, ctx: EvalContext, stage_groups: dict[str, list[str]], strategy: str) -> Trace:
        n, k = len(ctx.x), len(ctx.eps)
        return cls(torch.where(ctx.correct, math.inf, 0.0), torch.zeros(n, k, dtype=torch.bool),
                   torch.zeros(n, k, dtype=torch.bool), [None] * n, stage_groups, strategy)

    def record_hits(self, ids: torch.Tensor, k: int, eps: float, label: str) -> None:
        """Samples ``ids`` were fooled at eps number ``k`` by ``label``'s examples."""
        self.hit[ids, k] = True
        for i in ids[self.first[ids] > eps].tolist():
            self.label[i] = label
        self.first[ids] = torch.clamp(self.first[ids], max=eps)


def run_batches(ctx: EvalContext, stage: str, eps_index: int, idx: torch.Tensor,
                work: Callable[[torch.Tensor], dict[str, Any]]) -> list[dict[str, Any]]:
    """Every batch record of one step (``stage`` at eps number ``eps_index``), in batch order, on every rank.

    The batches are the chunks of ``idx`` of ``batch_size`` samples. A batch finished before this run is read from
    the state; the others are dealt out to the ranks (rank r runs every W-th), run by ``work(ids) -> record``,
    given their sample ids, pass count, number of verified examples and rank, saved, and exchanged between the
    ranks. The step's passes and verified examples are added to the totals from the records, whoever ran them.
    """
    chunks = list(idx.split(ctx.options.batch_size)) if len(idx) else []
    records = _finished_records(ctx, stage, eps_index, chunks)
    mine: dict[int, dict[str, Any]] = {}
    failure: Exception | None = None
    for j in [j for j in range(len(chunks)) if j not in records][ctx.rank::ctx.world]:
        before, verified = ctx.model.count.copy(), ctx.verified_here
        try:
            rec = work(chunks[j])
        except Exception as exc:
            if ctx.world == 1:
                raise
            failure = exc  # tell the other ranks first, so that none waits forever in the exchange below
            break
        rec.update(ids=chunks[j].clone(), passes=asdict(ctx.model.count - before),
                   n_verified=ctx.verified_here - verified, rank=ctx.rank)
        if ctx.state is not None:
            ctx.state.save(stage, eps_index, j, rec)
        mine[j] = rec
    error = None if failure is None else (f"{type(failure).__name__}: {failure}", isinstance(failure, ValueError))
    for rank, (part, err) in enumerate(all_gather_object((mine, error)) if ctx.world > 1 else [(mine, None)]):
        if failure is not None:
            raise failure
        if err is not None:
            raise (ValueError if err[1] else RuntimeError)(f"rank {rank} failed: {err[0]}")
        records.update(part)
    ordered = [records[j] for j in range(len(chunks))]
    for rec in ordered:
        ctx.passes[stage] = ctx.passes.get(stage, PassCount()) + PassCount(**rec["passes"])
        ctx.n_verified += int(rec["n_verified"])
    return ordered


def _finished_records(ctx: EvalContext, stage: str, eps_index: int, chunks: list[torch.Tensor]
                      ) -> dict[int, dict[str, Any]]:
    """The records of this step's batches that the resume state holds (checked to cover the same samples)."""
    records: dict[int, dict[str, Any]] = {}
    for j, ids in enumerate(chunks if ctx.state is not None else ()):
        rec = ctx.state.load(stage, eps_index, j)
        if rec is not None:
            if not torch.equal(rec["ids"], ids):
                raise ValueError(f"the resume state {ctx.state.path(stage, eps_index, j)} holds other samples than "
                                 "this run would attack there; delete the state folder to start over")
            records[j] = rec
    return records


def sweep_eps(ctx: EvalContext, name: str, skip: torch.Tensor, *, stage: str | None = None, steps: int | None = None,
              label: str | None = None, build: Callable[[float], Any] | None = None
              ) -> tuple[Trace, dict[float, float] | None]:
    """Sweep one eps-bounded attack upward; returns its trace (per-sample first breaking eps, where it ran) and,
    for attack-all sweeps, the raw curve. ``stage``/``steps``/``label``/``build`` serve a chain's screen (its own
    state folder and pass count, its name in ``break_attack``, and ``build(eps)`` making the attack at each eps,
    e.g. AutoAttack's own APGD-CE as its version configures it)."""
    o = ctx.options
    stage = stage or name
    trace = Trace.empty(ctx, {stage: [stage]}, "attack-all" if o.attack_all else "upward")
    first = trace.first
    raw: dict[float, float] = {}
    warm = o.warm_start_steps if name == "pgd" else None
    last = torch.full_like(ctx.x, math.nan) if warm else None  # each sample's worst PGD iterate so far
    margins = torch.full((len(ctx.x),), math.inf) if warm else None  # and its logit margin there
    for k, e in enumerate(ctx.eps):
        atk = make_attack(ctx, name, e, steps) if build is None else build(e)
        standing = ctx.correct & (skip > e)
        targets = standing if o.attack_all else standing & (first > e)
        idx = targets.nonzero().flatten()
        if warm:
            records = run_batches(ctx, stage, k, idx,
                                  lambda ids, a=atk: _attack_warm(ctx, a, ids, last, warm, margins))
            for rec in records:  # every rank applies every batch's new iterates, so the next eps can start there
                last[rec["ids"]], margins[rec["ids"]] = rec["last"], rec["margins"]
        else:
            records = run_batches(ctx, stage, k, idx, lambda ids, a=atk: attack_batch(ctx, a, ids))
        fooled = torch.cat([torch.zeros(0, dtype=torch.bool)] + [rec["fooled"] for rec in records])
        raw[e] = float((standing.sum() - fooled.sum()).item() / len(ctx.x))
        trace.ran[idx, k] = True
        trace.record_hits(idx[fooled], k, e, label or name)
        ctx.bar.update(1)
        ctx.bar.set_postfix_str(f"{stage} eps={eps_label(e)} acc={(first > e).float().mean():.3f}")
        logger.debug("%s eps=%s attacked=%d fooled=%d", stage, eps_label(e), len(idx), int(fooled.sum()))
    return trace, (raw if o.attack_all else None)


def make_attack(ctx: EvalContext, name: str, eps: float, steps: int | None = None):
    """``name`` at ``eps`` with the evaluation's options (``steps`` overrides the iteration count)."""
    o = ctx.options
    return build_attack(name, ctx.model, eps, threat_model=o.threat_model, steps=o.steps if steps is None else steps,
                        seed=o.seed, n_queries=o.n_queries, n_target_classes=o.n_target_classes,
                        n_classes=ctx.n_classes, surrogate=ctx.surrogate, early_stop=o.early_stop,
                        aa_version=o.aa_version)


def attack_batch(ctx: EvalContext, atk, ids: torch.Tensor) -> dict[str, Any]:
    """Attack one batch of samples; the record says which of them the verified adversarial examples fool."""
    xb, yb = ctx.x[ids].to(ctx.device), ctx.y[ids].to(ctx.device)
    adv = atk(xb, yb, ids)
    ctx.model.eval()  # whatever the attack library did to the mode, verify with running BN statistics
    verify_adversarial(adv, xb, atk.eps, ctx.options.threat_model, atk.name)
    ctx.verified_here += len(ids)
    with torch.no_grad():
        return {"fooled": (ctx.model(adv).argmax(1) != yb).cpu()}


def _attack_warm(ctx: EvalContext, atk, ids: torch.Tensor, last: torch.Tensor, warm_steps: int,
                 margins: torch.Tensor) -> dict[str, Any]:
    """Warm-started PGD on one batch; the record says which samples are fooled and holds their new worst iterates.

    Samples without a stored iterate (the first eps) get the cold attack ``atk``. The others continue from their
    stored iterate for ``warm_steps`` steps; a survivor whose logit margin fell below ``warm_restart_ratio`` times
    its margin at the previous eps is near the boundary, where a continuation can sit in a poor local optimum, so
    it gets the cold attack as well (fooled by either counts). ``last``/``margins`` (every sample's worst iterate
    and its margin) are read, not changed: the caller applies the records, on every rank.
    """
    o = ctx.options
    best, best_margin = last[ids], margins[ids]  # copies (advanced indexing)
    has_start = ~torch.isnan(best.flatten(1)[:, 0])
    cont = build_pgd(ctx.model, atk.eps, warm_steps, random_start=False, seed=o.seed,
                     early_stop=o.early_stop)
    fooled = torch.zeros(len(ids), dtype=torch.bool)

    def run(group: torch.Tensor, attack) -> None:
        sel = group.nonzero().flatten()
        if not len(sel):
            return
        xb, yb = ctx.x[ids[sel]].to(ctx.device), ctx.y[ids[sel]].to(ctx.device)
        adv = attack(xb, yb, sel)
        ctx.model.eval()
        verify_adversarial(adv, xb, atk.eps, ctx.options.threat_model, f"{atk.name} (warm-started sweep)")
        ctx.verified_here += len(sel)
        with torch.no_grad():
            m = _margin(ctx.model(adv), yb).cpu()
        fooled[sel] |= m < 0
        worse = m < best_margin[sel]
        best[sel[worse]] = adv.cpu()[worse]
        best_margin[sel[worse]] = m[worse]

    run(~has_start, lambda xb, yb, sel: atk(xb, yb, ids[sel]))
    previous = best_margin.clone()
    with torch.enable_grad():
        run(has_start, lambda xb, yb, sel: cont(xb, yb, ids[sel], start=best[sel].to(xb)))
    near = has_start & ~fooled & (best_margin < o.warm_restart_ratio * previous)
    run(near, lambda xb, yb, sel: atk(xb, yb, ids[sel]))
    return {"fooled": fooled, "last": best, "margins": best_margin}


def _margin(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Logit of the true class minus the largest other logit (negative: misclassified)."""
    true = logits.gather(1, y[:, None]).squeeze(1)
    return true - logits.scatter(1, y[:, None], float("-inf")).amax(1)


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
