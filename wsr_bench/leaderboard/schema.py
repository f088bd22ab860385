"""The leaderboard entry: one evaluated model as a versioned, JSON-round-trippable dataclass.

Shaped like RobustBench's ``model_info/*.json`` but with numbers stored as numbers, accuracies as fractions in
[0,1], and the whole robustness curve (per attack and worst case) instead of one accuracy at one eps. Each eps is
stored as a float with a display label (``"8/255"``). ``schema_version`` lets later readers migrate old files.

Schema versions:

* 1: curves, clean accuracy, summary numbers, sanity flags, evaluation details.
* 2 (current): every curve point and the clean accuracy carry an exact 95% Clopper-Pearson interval
  (``ci_low``/``ci_high``, ``clean_accuracy_ci``; see :mod:`wsr_bench.leaderboard.stats` for why not Wilson), and
  ``samples`` records which test images were used (``indices`` into the split, ``data_sha256`` of the images and
  labels, see :class:`Samples`) and each image's worst-case breaking eps, from which its correctness at every
  evaluated eps follows (what ``wsr-bench leaderboard compare`` pairs). A version-1 file still loads: its intervals
  are computed from accuracy and ``n_examples`` (exact, since the accuracies are k/n) and ``samples`` is None, so it
  cannot be compared pairwise. It is written back as version 2. Two optional ``samples`` fields came later within
  version 2 and are absent from earlier files: ``break_attack`` (which attack broke each image) and ``evidence``
  (per image and eps: attacked, or inferred from a stronger result).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Any

from wsr_bench.epsilon import PAPER_SPECTRUM, eps_label, find_eps
from wsr_bench.leaderboard.stats import accuracy_interval, correct_at

SCHEMA_VERSION = 2
#: Versions :meth:`LeaderboardEntry.from_dict` reads (older ones are migrated on load).
READABLE_VERSIONS = (1, 2)
#: Slack when checking stored accuracies against per-sample results (clean accuracy is a float32 mean).
_CONSISTENCY_TOL = 1e-6
WORST_CASE = "worst_case"


class SchemaError(ValueError):
    """A leaderboard entry that does not follow the schema (the message names the field)."""


def _fraction(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise SchemaError(f"{what} must be a number, got {value!r}")
    if not 0.0 <= float(value) <= 1.0:
        raise SchemaError(f"{what} must be a fraction in [0,1], got {value!r}")
    return float(value)


def _interval_list(values: Sequence[Any], accuracy: Sequence[float], what: str, lower: bool) -> list[float]:
    out = [_fraction(v, what) for v in values]
    if len(out) != len(accuracy):
        raise SchemaError(f"{what}: {len(out)} values for {len(accuracy)} accuracies")
    if any((v > a + 1e-9) if lower else (v < a - 1e-9) for v, a in zip(out, accuracy, strict=True)):
        raise SchemaError(f"{what} must {'not exceed' if lower else 'be at least'} the accuracy, got {out}")
    return out


@dataclass
class Curve:
    """Accuracy at each eps for one attack (or the worst case over attacks), with its 95% interval per point.

    ``ci_low``/``ci_high`` are empty until :meth:`fill_intervals` (which :class:`LeaderboardEntry` calls) or given.
    """

    attack: str
    eps: list[float]
    accuracy: list[float]
    eps_label: list[str] = field(default_factory=list)
    ci_low: list[float] = field(default_factory=list)
    ci_high: list[float] = field(default_factory=list)

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
        if bool(self.ci_low) != bool(self.ci_high):
            raise SchemaError(f"curve {self.attack!r}: ci_low and ci_high come together")
        if self.ci_low:
            self.ci_low = _interval_list(self.ci_low, self.accuracy, f"curve {self.attack!r} ci_low", lower=True)
            self.ci_high = _interval_list(self.ci_high, self.accuracy, f"curve {self.attack!r} ci_high", lower=False)

    def fill_intervals(self, n: int) -> None:
        """Compute the Clopper-Pearson 95% intervals from the accuracies and ``n`` images, unless already given."""
        if not self.ci_low:
            bounds = [accuracy_interval(a, n) for a in self.accuracy]
            self.ci_low, self.ci_high = [lo for lo, _ in bounds], [hi for _, hi in bounds]

    def at(self, eps: float) -> float | None:
        """Accuracy at ``eps`` (None when that strength was not evaluated; :func:`~wsr_bench.epsilon.same_eps`)."""
        i = find_eps(eps, self.eps)
        return None if i is None else self.accuracy[i]

    def to_dict(self) -> dict[str, Any]:
        return {"attack": self.attack, "eps": self.eps, "eps_label": self.eps_label, "accuracy": self.accuracy,
                "ci_low": self.ci_low, "ci_high": self.ci_high}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Curve:
        try:
            return cls(str(d["attack"]), list(d["eps"]), list(d["accuracy"]), list(d.get("eps_label", [])),
                       list(d.get("ci_low", [])), list(d.get("ci_high", [])))
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
class Samples:
    """Which images an entry was computed on and how each one fared: what a paired comparison needs.

    Attributes:
        indices: positions of the evaluated images in the dataset's ``split`` (in evaluation order).
        data_sha256: hex SHA-256 of the evaluated images and labels as evaluated (images quantised to uint8,
            ``round(255 x)``, so equal pixels hash equally however they were loaded; see
            ``wsr_bench.evaluate.samples.data_sha256`` for the exact byte layout). Two entries on the same images
            share it; a different subset, order, resize or dataset changes it.
        break_eps: per image, the smallest evaluated eps at which the worst case over the attacks fooled the model
            (0: wrong already on the clean image; None: never fooled). The image counts as correct at ``eps``
            exactly when its breaking eps is larger, so the worst-case curve is recomputable from it.
        split: the dataset split the indices refer to.
        break_attack: per image, the attack whose adversarial example set ``break_eps`` (None: never fooled or
            wrong already on the clean image; a chain's screen reads ``"autoattack/apgd-ce"``); None when not
            recorded.
        evidence: per image, one letter per eps of the worst-case curve: ``a`` attacked at that eps (every attack
            ran there, or one fooled the model there), ``b`` counted wrong because an adversarial example at a
            smaller eps lies inside this ball (exact), ``r`` counted correct because the whole attack chain failed
            at a larger eps while only its cheap screen ran here (the downward and bisect sweeps; not exact, see
            ``wsr_bench.evaluate.sweeps``); None when not recorded.
    """

    indices: list[int]
    data_sha256: str
    break_eps: list[float | None]
    split: str = "test"
    break_attack: list[str | None] | None = None
    evidence: list[str] | None = None

    def __post_init__(self) -> None:
        if any(isinstance(i, bool) or not isinstance(i, int) or i < 0 for i in self.indices):
            raise SchemaError("samples.indices must be non-negative integers")
        if len(set(self.indices)) != len(self.indices):
            raise SchemaError("samples.indices must not repeat an image")
        sha = str(self.data_sha256).lower()
        if len(sha) != 64 or any(ch not in "0123456789abcdef" for ch in sha):
            raise SchemaError(f"samples.data_sha256 must be 64 hex digits, got {self.data_sha256!r:.80}")
        self.data_sha256 = sha
        if len(self.break_eps) != len(self.indices):
            raise SchemaError(f"samples: {len(self.break_eps)} break_eps for {len(self.indices)} indices")
        for b in self.break_eps:
            if b is not None and (isinstance(b, bool) or not isinstance(b, (int, float)) or not 0 <= b < math.inf):
                raise SchemaError(f"samples.break_eps must be finite numbers >= 0 or null, got {b!r}")
        self.break_eps = [None if b is None else float(b) for b in self.break_eps]
        if self.break_attack is not None:
            if len(self.break_attack) != len(self.indices) or any(
                    a is not None and not isinstance(a, str) for a in self.break_attack):
                raise SchemaError(f"samples.break_attack must hold one attack name or null per image "
                                  f"({len(self.indices)})")
            self.break_attack = list(self.break_attack)
        if self.evidence is not None:
            if len(self.evidence) != len(self.indices) or any(
                    not isinstance(e, str) or set(e) - set("abr") for e in self.evidence):
                raise SchemaError(f"samples.evidence must hold one string of a/b/r letters per image "
                                  f"({len(self.indices)})")
            self.evidence = list(self.evidence)

    def check_evidence(self, eps: Sequence[float]) -> None:
        """``evidence`` must have one letter per eps and agree with ``break_eps`` (``b`` only where the image is
        wrong, ``r`` only where it is correct)."""
        if self.evidence is None:
            return
        for i, (text, b) in enumerate(zip(self.evidence, self.break_eps, strict=True)):
            if len(text) != len(eps):
                raise SchemaError(f"samples.evidence[{i}] has {len(text)} letters for {len(eps)} eps")
            for letter, e in zip(text, eps, strict=True):
                wrong = b is not None and b <= e
                if (letter == "b" and not wrong) or (letter == "r" and wrong):
                    raise SchemaError(f"samples.evidence[{i}] says {letter!r} at eps {e:g}, but its break_eps is {b}")

    def correct_at(self, eps: float) -> list[bool]:
        """Per-image correctness at ``eps`` (0 gives clean correctness)."""
        return correct_at(self.break_eps, eps)

    def same_images(self, other: Samples) -> bool:
        """True when both were computed on the same images in the same order (same split, indices and hash)."""
        return (self.split, self.indices, self.data_sha256) == (other.split, other.indices, other.data_sha256)

    def to_dict(self) -> dict[str, Any]:
        out = {"split": self.split, "indices": self.indices, "data_sha256": self.data_sha256,
               "break_eps": self.break_eps}
        for key in ("break_attack", "evidence"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        return out

    @classmethod
    def from_dict(cls, d: Any) -> Samples:
        if not isinstance(d, dict):
            raise SchemaError(f"samples must be an object, got {type(d).__name__}")
        unknown = sorted(set(d) - {"split", "indices", "data_sha256", "break_eps", "break_attack", "evidence"})
        if unknown:
            raise SchemaError(f"unknown samples field(s): {', '.join(unknown)}")
        try:
            optional = {k: None if d.get(k) is None else list(d[k]) for k in ("break_attack", "evidence")}
            return cls(list(d["indices"]), str(d["data_sha256"]), list(d["break_eps"]), str(d.get("split", "test")),
                       **optional)
        except (KeyError, TypeError) as exc:
            raise SchemaError(f"malformed samples: missing or invalid {exc}") from None


@dataclass
class LeaderboardEntry:
    """One model's wide-spectrum evaluation.

    Attributes:
        model: display name; architecture: network family; params: parameter count.
        training: training recipe (e.g. "PGD-7 AT, eps 8/255, 100 epochs").
        dataset, threat_model: e.g. "cifar10", "Linf".
        n_examples, seed: evaluation size and seed.
        clean_accuracy: fraction in [0,1]; clean_accuracy_ci: its 95% Clopper-Pearson interval ``[low, high]``.
        curves: per attack, plus ``"worst_case"`` (per-sample worst case over the attacks), each point with its
            95% interval.
        avg_robust_accuracy: mean worst-case accuracy over the paper spectrum {0.03,0.10,0.17,0.25} (None if any
            of them was not evaluated); auc: normalised area under the worst-case curve up to ``auc_max_eps``.
        sanity: ``{check name: passed}``; versions: package versions; date: ISO date of the evaluation.
        evaluation: how it was evaluated (steps, sweep, passes, wall time...); source: who produced the numbers.
        samples: the evaluated images and each one's worst-case breaking eps (None for entries without them,
            e.g. schema version 1 files); the worst-case curve and clean accuracy must agree with it.

    ``evaluation["suite"]`` (optional, a short display string such as ``"PGD-20, all 10,000 test images"``) names
    the evaluation suite: the leaderboard gives each dataset/threat model/suite its own section (see
    :attr:`suite`). Entries without it form the dataset/threat model's main section, as before suites existed.
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
    clean_accuracy_ci: list[float] = field(default_factory=list)
    samples: Samples | None = None
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
        self._fill_intervals()
        if self.samples is not None:
            self.samples = self.samples if isinstance(self.samples, Samples) else Samples.from_dict(self.samples)
            self._check_samples()
        suite = self.evaluation.get("suite") if isinstance(self.evaluation, dict) else None
        if suite is not None and not isinstance(suite, str):
            raise SchemaError(f"evaluation.suite must be a string (e.g. \"PGD-20, all 10,000 test images\"), "
                              f"got {suite!r:.80}")

    def _fill_intervals(self) -> None:
        for curve in self.curves.values():
            curve.fill_intervals(int(self.n_examples))
        if not self.clean_accuracy_ci:
            self.clean_accuracy_ci = list(accuracy_interval(self.clean_accuracy, int(self.n_examples)))
        ci = list(self.clean_accuracy_ci)
        if len(ci) != 2:
            raise SchemaError(f"clean_accuracy_ci must be [low, high], got {ci!r}")
        acc = [self.clean_accuracy]
        self.clean_accuracy_ci = (_interval_list(ci[:1], acc, "clean_accuracy_ci low", lower=True)
                                  + _interval_list(ci[1:], acc, "clean_accuracy_ci high", lower=False))

    def _check_samples(self) -> None:
        """The per-sample record must describe this entry: one record per image, same curve, same clean accuracy."""
        s = self.samples
        if len(s.indices) != int(self.n_examples):
            raise SchemaError(f"samples cover {len(s.indices)} images but n_examples is {self.n_examples}")
        for eps, acc in [(0.0, self.clean_accuracy), *zip(self.worst_case.eps, self.worst_case.accuracy,
                                                           strict=True)]:
            measured = sum(s.correct_at(eps)) / len(s.indices)
            if abs(measured - acc) > _CONSISTENCY_TOL:
                what = "clean accuracy" if eps == 0.0 else f"worst-case accuracy at eps {eps:g}"
                raise SchemaError(f"samples.break_eps give {what} {measured:.6f}, but the entry says {acc:.6f}")
        s.check_evidence(self.worst_case.eps)

    @property
    def suite(self) -> str:
        """The evaluation suite (``evaluation["suite"]``, whitespace collapsed; ``""`` when not set): entries of one
        dataset and threat model but different suites go to different leaderboard sections. An AutoAttack version
        other than standard (:attr:`aa_version`) is part of the suite (``"AutoAttack plus"``), so entries of
        different versions never share a column (nor one with RobustBench's standard-AutoAttack rows); the threat
        model (Linf, L2, L1) is part of every section's name already."""
        suite = " ".join(str(self.evaluation.get("suite") or "").split())
        version = self.aa_version
        if version in ("", "standard"):
            return suite
        return f"{suite}, AutoAttack {version}" if suite else f"AutoAttack {version}"

    @property
    def aa_version(self) -> str:
        """AutoAttack's version when AutoAttack ran (``evaluation["aa_version"]``; "standard" for entries from
        before versions were recorded), ``""`` when it did not run."""
        attacks = (self.evaluation.get("attacks") or []) if isinstance(self.evaluation, dict) else []
        if "autoattack" not in attacks:
            return ""
        return str(self.evaluation.get("aa_version") or "standard")

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
            "clean_accuracy_ci": list(self.clean_accuracy_ci),
            "samples": None if self.samples is None else self.samples.to_dict(),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> LeaderboardEntry:
        """Validate and build an entry (older schema versions are migrated to the current one).

        Raises:
            SchemaError: unknown schema version, unknown or missing fields, or invalid values.
        """
        if not isinstance(d, dict):
            raise SchemaError(f"an entry must be a JSON object, got {type(d).__name__}")
        version = d.get("schema_version")
        if version not in READABLE_VERSIONS or isinstance(version, bool):
            raise SchemaError(f"unsupported schema_version {version!r} (this wsr-bench reads "
                              f"{', '.join(map(str, READABLE_VERSIONS))})")
        d = {**d, "schema_version": SCHEMA_VERSION}  # version 1 -> 2: intervals are computed in __post_init__
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(d) - known)
        if unknown:
            raise SchemaError(f"unknown entry field(s): {', '.join(unknown)}")
        missing = [k for k in ("model", "architecture", "dataset", "threat_model", "clean_accuracy", "curves",
                               "n_examples") if k not in d]
        if missing:
            raise SchemaError(f"entry is missing field(s): {', '.join(missing)}")
        return cls(**d)
