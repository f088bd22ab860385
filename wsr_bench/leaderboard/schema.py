"""The leaderboard entry: one evaluated model as a versioned, JSON-round-trippable dataclass.

Shaped like RobustBench's ``model_info/*.json`` but with numbers stored as numbers, accuracies as fractions in
[0,1], and the whole robustness curve (per attack and worst case) instead of one accuracy at one eps. Each eps is
stored as a float with a display label (``"8/255"``). ``schema_version`` lets later readers migrate old files.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Any

from wsr_bench.epsilon import PAPER_SPECTRUM, eps_label, find_eps

SCHEMA_VERSION = 1
WORST_CASE = "worst_case"


class SchemaError(ValueError):
    """A leaderboard entry that does not follow the schema (the message names the field)."""


def _fraction(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise SchemaError(f"{what} must be a number, got {value!r}")
    if not 0.0 <= float(value) <= 1.0:
        raise SchemaError(f"{what} must be a fraction in [0,1], got {value!r}")
    return float(value)


@dataclass
class Curve:
    """Accuracy at each eps for one attack (or the worst case over attacks)."""

    attack: str
    eps: list[float]
    accuracy: list[float]
    eps_label: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.eps = [float(e) for e in self.eps]
        if len(self.eps) != len(self.accuracy):
            raise SchemaError(f"curve {self.attack!r}: {len(self.eps)} eps but {len(self.accuracy)} accuracies")
        if any(b <= a for a, b in pairwise(self.eps)):
            raise SchemaError(f"curve {self.attack!r}: eps must be strictly increasing, got {self.eps}")
        if any(e < 0 or not math.isfinite(e) for e in self.eps):
            raise SchemaError(f"curve {self.attack!r}: eps must be finite and >= 0, got {self.eps}")
        self.accuracy = [_fraction(a, f"curve {self.attack!r} accuracy") for a in self.accuracy]
        self.eps_label = list(self.eps_label) or [eps_label(e) for e in self.eps]

    def at(self, eps: float, tol: float = 1e-4) -> float | None:
        """Accuracy at ``eps`` (None when that strength was not evaluated)."""
        i = find_eps(eps, self.eps, tol)
        return None if i is None else self.accuracy[i]

    def to_dict(self) -> dict[str, Any]:
        return {"attack": self.attack, "eps": self.eps, "eps_label": self.eps_label, "accuracy": self.accuracy}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Curve:
        try:
            return cls(str(d["attack"]), list(d["eps"]), list(d["accuracy"]), list(d.get("eps_label", [])))
        except (KeyError, TypeError) as exc:
            raise SchemaError(f"malformed curve {d!r:.80}: {exc}") from None


def average_over(curve: Curve, spectrum: Sequence[float] = PAPER_SPECTRUM) -> float | None:
    """Mean accuracy over ``spectrum`` (None unless every strength is on the curve)."""
    values = [curve.at(e) for e in spectrum]
    return None if any(v is None for v in values) else sum(values) / len(values)


def area_under_curve(clean_accuracy: float, curve: Curve) -> float | None:
    """Normalised area under accuracy(eps) from eps 0 (clean accuracy) to the curve's largest eps, in [0,1]."""
    if not curve.eps or curve.eps[-1] <= 0:
        return None
    xs = ([] if curve.eps[0] == 0 else [0.0]) + curve.eps
    ys = ([] if curve.eps[0] == 0 else [clean_accuracy]) + curve.accuracy
    area = sum((x1 - x0) * (y0 + y1) / 2 for (x0, x1), (y0, y1) in zip(pairwise(xs), pairwise(ys), strict=True))
    return area / xs[-1]


@dataclass
class LeaderboardEntry:
    """One model's wide-spectrum evaluation.

    Attributes:
        model: display name; architecture: network family; params: parameter count.
        training: training recipe (e.g. "PGD-7 AT, eps 8/255, 100 epochs").
        dataset, threat_model: e.g. "cifar10", "Linf".
        n_examples, seed: evaluation size and seed.
        clean_accuracy: fraction in [0,1].
        curves: per attack, plus ``"worst_case"`` (per-sample worst case over the attacks).
        avg_robust_accuracy: mean worst-case accuracy over the paper spectrum {0.03,0.10,0.17,0.25} (None if any
            of them was not evaluated); auc: normalised area under the worst-case curve up to ``auc_max_eps``.
        sanity: ``{check name: passed}``; versions: package versions; date: ISO date of the evaluation.
        evaluation: how it was evaluated (steps, sweep, passes, wall time...); source: who produced the numbers.
    """

    model: str
    architecture: str
    dataset: str
    threat_model: str
    clean_accuracy: float
    curves: dict[str, Curve]
    n_examples: int
    seed: int = 0
    params: int | None = None
    training: str = ""
    avg_robust_accuracy: float | None = None
    auc: float | None = None
    auc_max_eps: float | None = None
    sanity: dict[str, bool] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)
    date: str = ""
    source: str = "wsr-bench"
    evaluation: dict[str, Any] = field(default_factory=dict)
    notes: str = ""
    schema_version: int = SCHEMA_VERSION

    def __post_init__(self) -> None:
        if not str(self.model).strip():
            raise SchemaError("model name must not be empty")
        self.clean_accuracy = _fraction(self.clean_accuracy, "clean_accuracy")
        self.curves = {k: v if isinstance(v, Curve) else Curve.from_dict(v) for k, v in self.curves.items()}
        if WORST_CASE not in self.curves:
            raise SchemaError(f"entry {self.model!r} has no {WORST_CASE!r} curve")
        if int(self.n_examples) < 1:
            raise SchemaError(f"n_examples must be >= 1, got {self.n_examples}")
        worst = self.curves[WORST_CASE]
        if self.avg_robust_accuracy is None:
            self.avg_robust_accuracy = average_over(worst)
        if self.auc is None:
            self.auc = area_under_curve(self.clean_accuracy, worst)
            self.auc_max_eps = worst.eps[-1] if worst.eps else None

    @property
    def worst_case(self) -> Curve:
        """The worst-case curve over all attacks."""
        return self.curves[WORST_CASE]

    @property
    def flags(self) -> list[str]:
        """Names of failed sanity checks."""
        return [k for k, ok in self.sanity.items() if not ok]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (schema_version first)."""
        return {
            "schema_version": self.schema_version, "model": self.model, "architecture": self.architecture,
            "params": self.params, "training": self.training, "dataset": self.dataset,
            "threat_model": self.threat_model, "n_examples": int(self.n_examples), "seed": int(self.seed),
            "clean_accuracy": self.clean_accuracy, "avg_robust_accuracy": self.avg_robust_accuracy,
            "auc": self.auc, "auc_max_eps": self.auc_max_eps,
            "curves": {k: c.to_dict() for k, c in self.curves.items()},
            "sanity": dict(self.sanity), "versions": dict(self.versions), "date": self.date,
            "source": self.source, "evaluation": dict(self.evaluation), "notes": self.notes,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> LeaderboardEntry:
        """Validate and build an entry; unknown schema versions and missing fields raise :class:`SchemaError`."""
        if not isinstance(d, dict):
            raise SchemaError(f"an entry must be a JSON object, got {type(d).__name__}")
        version = d.get("schema_version")
        if version != SCHEMA_VERSION:
            raise SchemaError(f"unsupported schema_version {version!r} (this wsr-bench reads {SCHEMA_VERSION})")
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(d) - known)
        if unknown:
            raise SchemaError(f"unknown entry field(s): {', '.join(unknown)}")
        missing = [k for k in ("model", "architecture", "dataset", "threat_model", "clean_accuracy", "curves",
                               "n_examples") if k not in d]
        if missing:
            raise SchemaError(f"entry is missing field(s): {', '.join(missing)}")
        return cls(**d)
