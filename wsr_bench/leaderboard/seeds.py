"""Training-seed noise in the leaderboard: rows of several seeds, and a documented seed SD for single-seed rows.

A row's number is an estimate of what its *architecture and recipe* reach, and that has two sources of error: the
test images (the binomial term of :mod:`wsr_bench.leaderboard.stats`) and the training run (another seed gives
another model). :class:`Row` groups the entries that differ only by training seed (``evaluation["training_seed"]``
set, same dataset, threat model, suite, architecture, recipe and test images): its accuracy is the mean over the
seeds, its seed SD their sample SD (``n_seeds - 1`` df), and its intervals and tests add the variance of that mean,
``sd^2 / n_seeds``, to the image term (Welch-Satterthwaite df, :func:`~wsr_bench.leaderboard.stats.t_interval`).

A row of one seed has no seed SD of its own. :class:`SeedNoise` is a *documented* one for a dataset and threat
model, read from ``ROOT/seed_noise/<dataset>/<threat>.json``: per strength (``"clean"``, ``"0.03"``...), for the
paper's average (``"avg"``) and the AUC (``"auc"``), with its df and where it was measured. It applies at exactly
those strengths; cells that use it are marked. For the zoo it is the pooled within-architecture SD of the
search-power benchmark (:func:`seed_noise_from_power`), 17 architectures x 4 seeds.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from wsr_bench.epsilon import find_eps, parse_eps
from wsr_bench.leaderboard.schema import Curve, LeaderboardEntry, area_under_curve

#: Keys of a documented seed SD besides the strengths.
CLEAN, AVG, AUC_KEY = "clean", "avg", "auc"
_SEED_SUFFIX = re.compile(r"[-_.]?(seed|s)\d+$")


@dataclass(frozen=True)
class SeedNoise:
    """A documented training-seed SD (fractions of accuracy) for single-seed rows of one dataset/threat model.

    Attributes:
        dataset, threat_model: where it applies.
        sd: ``{"clean" | eps label | "avg" | "auc": SD of one training run's accuracy}``.
        df: degrees of freedom of the SD estimate (pooled: sum over architectures of seeds - 1).
        source: where it was measured (a results file and how).
        note: what was measured but left out, and why (shown with the source).
    """

    dataset: str
    threat_model: str
    sd: dict[str, float]
    df: float
    source: str
    note: str = ""

    def at(self, key: float | str) -> float | None:
        """The SD at a strength (a float eps; 0 is clean) or for ``"avg"``/``"auc"``; None when not documented."""
        if isinstance(key, str):
            return self.sd.get(key)
        if key == 0:
            return self.sd.get(CLEAN)
        labels = [k for k in self.sd if k not in (CLEAN, AVG, AUC_KEY)]
        i = find_eps(key, [parse_eps(k) for k in labels])
        return None if i is None else self.sd[labels[i]]

    def to_dict(self) -> dict[str, Any]:
        return {"dataset": self.dataset, "threat_model": self.threat_model, "sd": dict(self.sd), "df": self.df,
                "source": self.source, "note": self.note}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SeedNoise:
        sd = {str(k): float(v) for k, v in d["sd"].items()}
        if any(not math.isfinite(v) or v < 0 for v in sd.values()):
            raise ValueError(f"a seed SD must be a finite number >= 0, got {sd}")
        return cls(str(d["dataset"]), str(d["threat_model"]), sd, float(d["df"]), str(d.get("source", "")),
                   str(d.get("note", "")))


def load_seed_noise(root: str | Path) -> dict[tuple[str, str], SeedNoise]:
    """``{(dataset, threat_model): SeedNoise}`` from ``root/seed_noise/<dataset>/<threat>.json`` (none: empty)."""
    out = {}
    for path in sorted(Path(root).glob("seed_noise/*/*.json")):
        try:
            noise = SeedNoise.from_dict(json.loads(path.read_text()))
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"{path}: malformed seed SD file: {exc}") from None
        out[(noise.dataset, noise.threat_model)] = noise
    return out


def seed_noise_from_power(results: dict[str, Any], dataset: str, threat_model: str, source: str,
                          keep: Sequence[str] | None = None, note: str = "") -> SeedNoise:
    """The pooled within-architecture seed SD of a search-power benchmark result (``benchmarks/search_quality.py
    --power``): per strength of its spectrum, clean, the paper's average and the AUC on its own grid (0 and the
    spectrum), each pooled over the architectures with several seeds (variances weighted by their df), as the
    benchmark's own ``seed_noise`` does for the average. ``keep``: the keys to keep (all by default); ``note``: why
    the others were left out."""
    spectrum = [float(e) for e in results["spectrum"]]
    per_key: dict[str, list[list[float]]] = {}
    for model in results["models"]:
        runs = model["seeds"]
        if len(runs) < 2:
            continue
        values = {CLEAN: [r["clean_acc"] for r in runs], AVG: [r["avg_robust_acc"] for r in runs]}
        values[AUC_KEY] = [area_under_curve(r["clean_acc"], Curve("worst_case", spectrum, r["robust_curve"]))
                           for r in runs]
        for j, e in enumerate(spectrum):
            values[f"{e:g}"] = [r["robust_curve"][j] for r in runs]
        for key, v in values.items():
            per_key.setdefault(key, []).append(v)
    if not per_key:
        raise ValueError("the results hold no architecture with several training seeds")
    sd, df = {}, 0
    for key, groups in per_key.items():
        df = sum(len(g) - 1 for g in groups)
        sd[key] = math.sqrt(sum((len(g) - 1) * float(np.var(g, ddof=1)) for g in groups) / df)
    if keep is not None:
        unknown = sorted(set(keep) - set(sd))
        if unknown:
            raise ValueError(f"the results measure no seed SD for {unknown} (they have {sorted(sd)})")
        sd = {k: sd[k] for k in keep}
    return SeedNoise(dataset, threat_model, sd, float(df), source, note)


def _base_name(model: str) -> str:
    return _SEED_SUFFIX.sub("", model)


@dataclass
class Row:
    """One leaderboard row: the entries of one architecture and recipe that differ only by training seed (one entry
    for a single-seed row), plus the documented seed SD that applies to its section, if any."""

    members: list[LeaderboardEntry]
    documented: SeedNoise | None = None

    @property
    def entry(self) -> LeaderboardEntry:
        """The first member (its info columns stand for the row)."""
        return self.members[0]

    @property
    def n_seeds(self) -> int:
        return len(self.members)

    @property
    def model(self) -> str:
        """The display name: the entry's model, or for several seeds their common name without a seed suffix."""
        if self.n_seeds == 1:
            return self.entry.model
        names = {_base_name(e.model) for e in self.members}
        return names.pop() if len(names) == 1 else self.entry.model

    def curve_eps(self) -> list[float]:
        """The worst-case strengths every member evaluated."""
        eps = self.entry.worst_case.eps
        return [e for e in eps if all(m.worst_case.at(e) is not None for m in self.members)]

    def values(self, key: float | str) -> list[float] | None:
        """Each member's accuracy at a strength (0: clean) or its ``"avg"`` / ``"auc"`` (None when one lacks it)."""
        out = []
        for m in self.members:
            v = ({AVG: m.avg_robust_accuracy, AUC_KEY: m.auc}[key] if isinstance(key, str)
                 else m.clean_accuracy if key == 0 else m.worst_case.at(key))
            if v is None:
                return None
            out.append(float(v))
        return out

    def mean(self, key: float | str) -> float | None:
        v = self.values(key)
        return None if v is None else float(np.mean(v))

    def seed_term(self, key: float | str) -> tuple[float, float, str, float] | None:
        """``(variance of the row's mean from the seeds, df, "measured" | "documented", seed SD)`` at a strength
        (0: clean) or for ``"avg"``/``"auc"``; None when neither the row's seeds nor a documented SD give one."""
        if self.n_seeds > 1:
            v = self.values(key)
            if v is None:
                return None
            sd = float(np.std(v, ddof=1))
            return sd * sd / len(v), len(v) - 1.0, "measured", sd
        sd = None if self.documented is None else self.documented.at(key)
        return None if sd is None else (sd * sd, self.documented.df, "documented", sd)

    def breaks(self) -> list[list[float | None]] | None:
        """Each member's per-image breaking strengths (None when a member has no per-sample record)."""
        if any(m.samples is None for m in self.members):
            return None
        return [m.samples.break_eps for m in self.members]

    def scores(self, score) -> np.ndarray | None:
        """Per image, ``score(break_eps)`` averaged over the seeds (None without per-sample records)."""
        b = self.breaks()
        return None if b is None else np.mean([score(x) for x in b], axis=0)


def _seed_order(seed: object) -> tuple[int, float, str]:
    """Numeric seeds in numeric order, then any other recorded seed by its text."""
    if isinstance(seed, (int, float)) and not isinstance(seed, bool):
        return 0, float(seed), ""
    return 1, 0.0, str(seed)


def _group_key(e: LeaderboardEntry) -> tuple | None:
    if e.samples is None or e.evaluation.get("training_seed") is None:
        return None
    s = e.samples
    return (e.dataset, e.threat_model, e.suite, e.architecture, e.training, _base_name(e.model), s.split,
            tuple(s.indices), s.data_sha256)


def group_rows(entries: Sequence[LeaderboardEntry],
               documented: dict[tuple[str, str], SeedNoise] | None = None) -> list[Row]:
    """The rows of ``entries`` in first-seen order: entries with a recorded ``evaluation["training_seed"]``, equal
    but for it (same dataset, threat model, suite, architecture, recipe, model name up to a seed suffix such as
    ``-seed1``/``_s1``, and test images) form one row, ordered by seed; any other entry is a row of its own. A row
    of one seed takes the documented SD of its dataset/threat model (``documented``), when there is one.

    Raises:
        ValueError: two entries of one row record the same training seed.
    """
    documented = documented or {}
    rows: list[Row] = []
    by_key: dict[tuple, Row] = {}
    for e in entries:
        key = _group_key(e)
        if key is not None and key in by_key:
            by_key[key].members.append(e)
            continue
        row = Row([e])
        rows.append(row)
        if key is not None:
            by_key[key] = row
    for row in rows:
        seeds = [m.evaluation.get("training_seed") for m in row.members]
        if len(set(map(str, seeds))) != len(seeds):
            raise ValueError(f"{row.model}: several entries record training seed(s) {seeds}")
        row.members.sort(key=lambda m: _seed_order(m.evaluation.get("training_seed")))
        if row.n_seeds == 1:
            row.documented = documented.get((row.entry.dataset, row.entry.threat_model))
    return rows

