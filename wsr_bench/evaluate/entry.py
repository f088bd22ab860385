"""Evaluation -> leaderboard entry: :func:`evaluate_to_entry` evaluates a network over the spectrum and returns its
entry, :func:`result_to_entry` turns a finished :class:`SpectrumResult` into one (with the package versions that shaped
it). The jobs' evaluation stage (:mod:`wsr_bench.jobs.evaluating`) writes the entries.
"""

from __future__ import annotations

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
from wsr_bench.evaluate.options import SpectrumOptions
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


def result_to_entry(result: SpectrumResult, *, model_name: str, architecture: str, dataset: str,
                    recipe: str = "", params: int | None = None, date: str | None = None,
                    notes: str = "", samples: Samples | None = None) -> LeaderboardEntry:
    """Turn a :class:`SpectrumResult` into a :class:`LeaderboardEntry` (curves per attack plus worst case; the 95%
    intervals follow from the accuracies and n). ``samples`` (see :func:`~wsr_bench.evaluate.samples.sample_record`)
    records the evaluated images and per-sample results, for paired comparisons."""
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
        model=model_name, architecture=architecture, dataset=dataset, threat_model=result.norm,
        clean_accuracy=result.clean_accuracy, curves=curves, n_examples=result.n_examples, seed=result.seed,
        params=params, training=recipe, sanity=sanity,
        versions=package_versions(), date=date or _dt.date.today().isoformat(), evaluation=evaluation, notes=notes,
        samples=samples)


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
    model_name: str,
    architecture: str,
    dataset: str,
    recipe: str = "",
    date: str | None = None,
    notes: str = "",
    sample_indices: Sequence[int] | None = None,
    device: str | torch.device | None = None,
    memory_format: str = "channels_last",
    surrogate: nn.Module | None = None,
    sanity: bool = True,
    progress: bool = False,
    state_dir: str | Path | None = None,
    state_info: dict[str, Any] | None = None,
    **fields: Any,
) -> LeaderboardEntry:
    """Evaluate ``model`` over the spectrum (with sanity checks) and return its leaderboard entry.

    ``options`` and the keyword ``fields`` (``eps``, ``attack``, ``steps``, ``norm``...) say what to compute, and
    ``device`` ... ``state_info`` how, exactly as for :func:`~wsr_bench.evaluate.spectrum.evaluate_spectrum`
    (sanity checks on by default here). ``model_name`` ... ``notes`` label the entry. ``sample_indices`` are the
    positions of ``x`` in the test split, recorded in the entry with a hash of ``x``/``y`` (default ``0..N-1``: the
    first N test images, which is what ``wsr-bench eval`` and ``run`` use). The pipeline (``wsr-bench run``) calls
    this after training.
    """
    result = evaluate_spectrum(model, x, y, options, device=device, memory_format=memory_format,
                               surrogate=surrogate, sanity=sanity, progress=progress, state_dir=state_dir,
                               state_info=state_info, **fields)
    params = sum(p.numel() for p in model.parameters())
    samples = sample_record(result.break_eps, result.eps, x, y, sample_indices, break_attack=result.break_attack,
                            evidence=result.evidence)
    entry = result_to_entry(result, model_name=model_name, architecture=architecture, dataset=dataset,
                            recipe=recipe, params=params, date=date, notes=notes, samples=samples)
    entry.evaluation["memory_format"] = memory_format
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
