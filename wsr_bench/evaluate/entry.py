"""Evaluation -> leaderboard entry: :func:`evaluate_to_entry` evaluates a network over the spectrum and returns its
entry, :func:`result_to_entry` turns a finished :class:`SpectrumResult` into one (with the package versions that shaped
it). The jobs' evaluation stage (:mod:`wsr_bench.jobs.evaluating`) writes the entries.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import logging
import platform
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from wsr_bench.attacks.factory import RANDOM_STARTS
from wsr_bench.evaluate.options import (
    EntryLabels,
    EvalRuntime,
    SpectrumOptions,
    resolve_options,
    resolve_runtime,
    split_fields,
)
from wsr_bench.evaluate.samples import sample_record
from wsr_bench.evaluate.spectrum import SpectrumResult, evaluate_spectrum
from wsr_bench.leaderboard.schema import WORST_CASE, Curve, LeaderboardEntry, Samples

logger = logging.getLogger(__name__)

_VERSIONED = ("wsr-bench", "torch", "timm", "torchattacks", "pyautoattack", "robustbench", "numpy")


def package_versions() -> dict[str, str]:
    """Versions of the packages that shape an evaluation (recorded in every entry)."""
    out = {"python": platform.python_version()}
    for name in _VERSIONED:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def result_to_entry(result: SpectrumResult, labels: EntryLabels | None = None, *, params: int | None = None,
                    samples: Samples | None = None, **fields: Any) -> LeaderboardEntry:
    """Turn a :class:`SpectrumResult` into a :class:`LeaderboardEntry` (curves per attack plus worst case; the 95%
    intervals follow from the accuracies and n). ``labels`` (:class:`~wsr_bench.evaluate.options.EntryLabels`, or its
    fields as keywords: ``model_name``, ``architecture``, ``dataset``, ``recipe``, ``date``, ``notes``) say what the
    entry is about. ``samples`` (see :func:`~wsr_bench.evaluate.samples.sample_record`) records the evaluated images
    and per-sample results, for paired comparisons."""
    labels = dataclasses.replace(labels, **fields) if labels is not None else EntryLabels(**fields)
    curves = {name: Curve(name, result.eps, [c[e] for e in result.eps]) for name, c in result.per_attack.items()}
    curves[WORST_CASE] = Curve(WORST_CASE, result.eps, [result.robust_accuracy[e] for e in result.eps])
    evaluation = {
        "attacks": result.attacks, "steps": result.steps, "sweep": "attack-all" if result.attack_all else result.sweep,
        "sweep_per_attack": result.sweep_per_attack, "chain_attacks": result.chain_attacks,
        "passes": result.passes.to_dict(), "n_verified": result.n_verified,
        "wall_time_s": round(result.wall_time_s, 3), "settings": result.settings,
        "inferred": _inferred_counts(result.evidence), "random_starts": RANDOM_STARTS,
        "nesting_violations": result.nesting_violations,
    }
    if "aa_version" in result.settings:  # AutoAttack ran: its version decides the leaderboard section
        evaluation["aa_version"] = result.settings["aa_version"]
    if result.sanity is not None:
        evaluation["sanity_checks"] = result.sanity.to_dict()["checks"]
    sanity = result.sanity.as_flags() if result.sanity is not None else {}
    sanity["nested_verdicts"] = result.nesting_violations == 0  # see wsr_bench.leaderboard.consistency
    return LeaderboardEntry(
        model=labels.model_name, architecture=labels.architecture, dataset=labels.dataset,
        threat_model=result.threat_model, clean_accuracy=result.clean_accuracy, curves=curves,
        n_examples=result.n_examples, seed=result.seed, params=params, training=labels.recipe, sanity=sanity,
        versions=package_versions(), date=labels.date or _dt.date.today().isoformat(), evaluation=evaluation,
        notes=labels.notes, samples=samples)


def _inferred_counts(evidence: Sequence[str]) -> dict[str, int]:
    """How many (sample, eps) results were attacked (``a``) or inferred: broken from a smaller eps (``b``, exact),
    robust from a larger one (``r``, screened); see ``Samples.evidence``."""
    text = "".join(evidence)
    return {"attacked": text.count("a"), "broken_inferred": text.count("b"), "robust_inferred": text.count("r")}


def evaluate_to_entry(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    options: SpectrumOptions | None = None,
    *,
    labels: EntryLabels | None = None,
    runtime: EvalRuntime | None = None,
    sample_indices: Sequence[int] | None = None,
    **fields: Any,
) -> LeaderboardEntry:
    """Evaluate ``model`` over the spectrum (with sanity checks) and return its leaderboard entry.

    ``options`` says what to compute and ``runtime`` how (:class:`~wsr_bench.evaluate.options.EvalRuntime`; sanity
    checks on by default here), exactly as for :func:`~wsr_bench.evaluate.spectrum.evaluate_spectrum`; ``labels``
    (:class:`~wsr_bench.evaluate.options.EntryLabels`: ``model_name``, ``architecture``, ``dataset``, ``recipe``,
    ``date``, ``notes``) label the entry. The keyword ``fields`` replace fields of any of the three, e.g.
    ``evaluate_to_entry(model, x, y, eps=[0.03], model_name="m", architecture="cnn", dataset="digits",
    device="cpu")``. ``sample_indices`` are the positions of ``x`` in the test split, recorded in the entry with a
    hash of ``x``/``y`` (default ``0..N-1``: the first N test images, which is what ``wsr-bench eval`` and ``run``
    use). The jobs' evaluation stage calls this.
    """
    option_fields, runtime_fields, label_fields = split_fields(fields, SpectrumOptions, EvalRuntime, EntryLabels)
    runtime = resolve_runtime(runtime, runtime_fields, default=EvalRuntime(sanity=True))
    labels = dataclasses.replace(labels, **label_fields) if labels is not None else EntryLabels(**label_fields)
    result = evaluate_spectrum(model, x, y, resolve_options(options, option_fields), runtime=runtime)
    params = sum(p.numel() for p in model.parameters())
    samples = sample_record(result.break_eps, result.eps, x, y, sample_indices, break_attack=result.break_attack,
                            evidence=result.evidence)
    entry = result_to_entry(result, labels, params=params, samples=samples)
    entry.evaluation["memory_format"] = runtime.memory_format
    return entry


def load_eval_data(dataset: str, n_examples: int | None, *, data_root: str | Path = "data",
                   image_size: int | None = None, seed: int = 0):
    """The first ``n_examples`` test images of ``dataset`` (via :mod:`wsr_bench.data`) and the dataset splits, at
    ``image_size`` (None: the dataset's default, ``wsr_bench.data.DEFAULT_SIZE``: digits 16, Fashion-MNIST 28)."""
    from wsr_bench.data.datasets import as_tensors, load_dataset

    if n_examples is not None and int(n_examples) < 1:
        raise ValueError(f"--n-examples must be >= 1, got {n_examples}")
    splits = load_dataset(dataset, root=data_root, image_size=image_size, seed=seed)
    x, y = as_tensors(splits.test, n_examples)
    return x, y, splits
