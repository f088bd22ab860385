"""Collapse diagnostics of a search: is the derived cell made of parameter-free ops, how sure is A, what was sampled.

DARTS-style searches are known to collapse onto parameter-free operations (skip connections, pooling), which train
fastest in a one-shot super-network but make weak stand-alone networks. Every search writes this report as
``search_report.json`` beside ``genotype.json`` (and one line of it in ``search.log``) so a collapsed cell is seen,
not discovered after retraining:

- per cell, the number of parameter-free ops among the derived edges (``skip_connect``, pooling; ``none`` is never
  derived) and each op's count;
- per edge, the entropy of softmax(A) (``log K`` = uniform; near 0 = A has decided);
- per cell, how often each op was sampled over the search (population and search draws).
"""

from __future__ import annotations

import math
from typing import Any

import torch

from wsr_bench.search_space.genotype import Genotype
from wsr_bench.search_space.ops import PRIMITIVES
from wsr_bench.search_space.supernet import PARAMETER_FREE_OPS as PARAMETER_FREE
from wsr_bench.search_space.supernet import derive_genotype

__all__ = ["PARAMETER_FREE", "cell_counts", "collapse_warning", "describe_report", "search_report"]

def cell_counts(edges: tuple[tuple[str, int], ...]) -> dict[str, Any]:
    """Parameter-free edges and per-op counts of one derived cell."""
    ops = [op for op, _ in edges]
    return {"edges": len(ops), "parameter_free": sum(op in PARAMETER_FREE for op in ops),
            "ops": {name: ops.count(name) for name in PRIMITIVES if name in ops}}


def search_report(genotype: Genotype, arch_weights: torch.Tensor, op_counts: torch.Tensor, scfg: Any = None
                  ) -> dict[str, Any]:
    """The report of a finished (or interrupted) search.

    Args:
        genotype: the derived genotype.
        arch_weights: architecture weights ``(2, E, K)``.
        op_counts: how often each op was sampled, ``(2, K)`` (normal, reduction).
        scfg: the search config, for the derivation rule and cap (optional).
    """
    probs = torch.softmax(arch_weights.detach().float().cpu(), -1)
    entropy = -(probs * probs.clamp_min(1e-12).log()).sum(-1)  # (2, E)
    cells = {}
    for c, (kind, edges) in enumerate((("normal", genotype.normal), ("reduce", genotype.reduce))):
        counts = cell_counts(edges)
        sampled = op_counts[c].tolist()
        cells[kind] = {**counts, "collapsed": counts["parameter_free"] * 2 >= counts["edges"],
                       "edge_entropy": [round(float(v), 4) for v in entropy[c]],
                       "mean_entropy": round(float(entropy[c].mean()), 4),
                       "sampled": dict(zip(PRIMITIVES, (int(v) for v in sampled), strict=True)),
                       "sampled_parameter_free_share": round(
                           sum(v for k, v in zip(PRIMITIVES, sampled, strict=True) if k in PARAMETER_FREE)
                           / max(sum(sampled), 1), 4)}
    report = {"max_entropy": round(math.log(len(PRIMITIVES)), 4), "cells": cells}
    if scfg is not None:
        uncapped = derive_genotype(arch_weights, len(genotype.normal) // 2, scfg.genotype_rule)
        report.update(genotype_rule=scfg.genotype_rule, max_skip_normal=scfg.max_skip_normal,
                      max_parameter_free_normal=scfg.max_parameter_free_normal,
                      uncapped_normal=cell_counts(uncapped.normal),
                      cap_changed_normal=uncapped.normal != genotype.normal)
    return report


def describe_report(report: dict[str, Any]) -> str:
    """One line for ``search.log``."""
    parts = []
    if report.get("cap_changed_normal"):
        parts.append(f"caps changed the normal cell (uncapped {report['uncapped_normal']['parameter_free']}/8 "
                     f"parameter-free)")
    for kind, cell in report["cells"].items():
        parts.append(f"{kind} cell {cell['parameter_free']}/{cell['edges']} parameter-free "
                     f"(skip {cell['ops'].get('skip_connect', 0)}), mean edge entropy {cell['mean_entropy']:.3f}"
                     f"/{report['max_entropy']:.3f}, sampled parameter-free {cell['sampled_parameter_free_share']:.0%}")
    return "collapse check: " + "; ".join(parts)


def collapse_warning(report: dict[str, Any]) -> str | None:
    """A one-line warning when a derived cell is at least half parameter-free, else ``None``."""
    bad = [f"{kind} cell {c['parameter_free']}/{c['edges']}" for kind, c in report["cells"].items() if c["collapsed"]]
    if not bad:
        return None
    return (f"warning: derived cell(s) at least half parameter-free (skip/pooling): {', '.join(bad)}; see "
            f"search_report.json (search.max_skip_normal / max_parameter_free_normal cap them in the normal cell)")
