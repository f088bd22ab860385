"""Chain attacks over a spectrum at about one whole chain per sample: the "downward" and "bisect" sweeps.

A chain (AutoAttack's APGD-CE, APGD-T, FAB-T and Square; or a list of attacks with ``chain_attacks``) spends
almost all of its cost on the samples it cannot break: every attack runs to its full budget on them. Swept upward,
a sample that stands up to eps_k gets the whole chain at every eps up to eps_k, so a spectrum costs about as much
as running the chain separately at each eps. These sweeps give the whole chain to each sample about once.

Both first *screen* every strength, upward over the survivors, with the chain's first attack alone (AutoAttack's own
APGD-CE as its version and norm configure it, with the chain's seed: for standard Linf/L2 100 iterations and one
restart, about 1/50 of the chain's passes on a sample that resists; 5 restarts for ``plus`` and standard L1; EOT
over 20 passes for ``rand``, where it is half of the chain). The screen is a part of the chain, so a sample it
breaks at eps_j is broken there, and at every larger eps too: its adversarial example lies inside the larger, nested
balls. That inference is exact. Each sample's *anchor* is the largest eps below the screen's break (below an earlier
attack's break, in a chained list).

* ``downward`` runs the whole chain at the anchor; where it breaks the sample it steps one eps down and runs it
  again, until the chain holds or no smaller eps is left. A sample the screen breaks early costs a few cheap
  screen runs; one that resists costs one chain run (plus the rare extra step down).
* ``bisect`` places the chain's break between eps_0 and the anchor by bisection: about log2(anchor) chain runs,
  of which the ones the sample resists cost the whole chain.

Either way the chain ran at the eps just below each sample's reported break. Below that eps the sample is counted
robust because the whole chain failed at a larger eps and the screen failed here: that is *not* exact (a chain that
fails at eps_k may succeed at a smaller eps on a non-convex loss), and the screen run at every such eps is what
keeps it honest. ``SpectrumResult.evidence`` marks those strengths ``r``; ``benchmarks/results/autoattack_sweep*.md``
measures how often a sample differs from AutoAttack run at each eps.

AutoAttack's random starts are keyed by the image (:mod:`wsr_bench.attacks.starts`), so the chain run here on a few
survivors does to each of them exactly what AutoAttack run at that eps on all images does, and the screen is the
chain's own APGD-CE: a chain step therefore leaves APGD-CE out (it would repeat the screen, start and all).

Every step (the screen at eps k, the chain at eps k, a bisection round at eps k) attacks samples fixed by the
records of the earlier steps, cut into fixed batches by the evaluator's batch runner
(:mod:`wsr_bench.evaluate.batches`), so a killed evaluation resumes from its finished batches and ``torchrun``
shards each step, as for the upward sweep.
"""

from __future__ import annotations

import dataclasses
import logging

import torch

from wsr_bench.attacks.factory import autoattack_run, autoattack_screen_run
from wsr_bench.epsilon import eps_label
from wsr_bench.evaluate.batches import EvalContext, Trace, attack_batch, make_attack, run_batches, sweep_eps

logger = logging.getLogger(__name__)


def sweep_chain(ctx: EvalContext, label: str, members: list[str], skip: torch.Tensor) -> Trace:
    """Sweep the chain ``members`` (``["autoattack"]`` or an attack list) with ``ctx.options.sweep_strategy``.

    Args:
        ctx: the evaluation's shared state (inputs, options, batch runner state).
        label: the chain's name in curves and pass counts (``"autoattack"``, ``"apgd-ce+square"``).
        members: ``["autoattack"]``, or the chained attacks in order (the first one screens).
        skip: per sample, the eps from which an earlier attack already broke it (inf: none).

    Returns:
        The chain's trace: its own first breaking eps per sample, where the whole chain ran, where it hit.
    """
    strategy = ctx.options.sweep_strategy
    autoattack = members == ["autoattack"]
    screen_name = "apgd-ce" if autoattack else members[0]
    screen_stage = f"{label}.screen"
    screen, _ = sweep_eps(ctx, screen_name, skip, stage=screen_stage,
                          label=f"{label}/{screen_name}" if autoattack else screen_name,
                          build=(lambda e: _screen_attack(ctx, e)) if autoattack else None)
    trace = Trace(screen.first.clone(), torch.zeros_like(screen.ran), screen.hit.clone(), list(screen.label),
                  {screen_stage: [screen_stage], label: []}, strategy)
    chain = members if autoattack else members[1:]  # the screen already ran at every eps a chain step visits
    eps = torch.tensor(ctx.eps, dtype=trace.first.dtype)
    hi = (torch.minimum(screen.first, skip)[:, None] > eps[None, :]).sum(1)  # first eps broken by screen or skip
    if strategy == "downward":
        probe = hi - 1
        for k in reversed(range(len(ctx.eps))):
            idx = (probe == k).nonzero().flatten()
            fooled = _chain_step(ctx, trace, label, chain, "", k, idx)
            probe[idx] = torch.where(fooled, k - 1, -1)
    elif strategy == "bisect":
        lo, rnd = torch.zeros_like(hi), 0
        while bool((lo < hi).any()):
            active, mid = lo < hi, (lo + hi) // 2
            for k in sorted(set(mid[active].tolist())):
                idx = (active & (mid == k)).nonzero().flatten()
                fooled = _chain_step(ctx, trace, label, chain, f".b{rnd}", k, idx)
                hi[idx[fooled]], lo[idx[~fooled]] = k, k + 1
            rnd += 1
    else:
        raise ValueError(f"sweep_chain needs sweep 'downward' or 'bisect', got {strategy!r}")
    return trace


def _screen_attack(ctx: EvalContext, eps: float):
    """AutoAttack's own APGD-CE at ``eps``, as the evaluation's AutoAttack version and norm configure it (restarts,
    L1's large-eps schedule, ``rand``'s EOT), under the name "apgd-ce"."""
    o = ctx.options
    atk = make_attack(ctx, "apgd-ce", eps)
    return dataclasses.replace(atk, run=autoattack_screen_run(ctx.model, eps, norm=o.threat_model, seed=o.seed,
                                                              version=o.aa_version))


def _chain_attack(ctx: EvalContext, name: str, eps: float):
    """``name`` at ``eps`` for a chain step. AutoAttack leaves out its APGD-CE: every chain step attacks samples the
    screen (AutoAttack's own APGD-CE, same iterations, same image-keyed start) has already failed on at this eps,
    so running it again would repeat the screen's computation and its verdict."""
    atk = make_attack(ctx, name, eps)
    if name != "autoattack":
        return atk
    o = ctx.options
    return dataclasses.replace(atk, run=autoattack_run(ctx.model, eps, norm=o.threat_model, seed=o.seed,
                                                       version=o.aa_version, skip=("apgd-ce",)))


def _chain_step(ctx: EvalContext, trace: Trace, label: str, chain: list[str], suffix: str, k: int,
                idx: torch.Tensor) -> torch.Tensor:
    """Run the chain at eps number ``k`` on samples ``idx`` (each attack on those the earlier ones left standing);
    record it in ``trace`` and return which of ``idx`` it fooled."""
    e = ctx.eps[k]
    fooled = torch.zeros(len(idx), dtype=torch.bool)
    if not len(idx):
        return fooled
    for name in chain:
        left = (~fooled).nonzero().flatten()
        if not len(left):
            break
        stage = name + suffix
        if stage not in trace.stage_groups[label]:
            trace.stage_groups[label].append(stage)
        atk = _chain_attack(ctx, name, e)
        records = run_batches(ctx, stage, k, idx[left], lambda ids, a=atk: attack_batch(ctx, a, ids))
        got = torch.cat([torch.zeros(0, dtype=torch.bool)] + [rec["fooled"] for rec in records])
        trace.record_hits(idx[left[got]], k, e, name)
        fooled[left[got]] = True
    trace.ran[idx, k] = True
    logger.debug("%s%s eps=%s attacked=%d fooled=%d", label, suffix, eps_label(e), len(idx), int(fooled.sum()))
    return fooled
