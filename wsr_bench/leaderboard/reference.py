"""Published numbers beside ours, one accuracy at one eps per model: RobustBench's leaderboard (reference data
shipped with the package) and numbers from papers (files in ``ROOT/reference/``).

The packaged files are verbatim copies of RobustBench's ``model_info/<dataset>/<threat_model>/<Model>.json`` at
commit 78fcc9e (see ``data_files/robustbench/PROVENANCE.json``); accuracies there are percentage strings, here
fractions. A file under ``ROOT/reference/<dataset>/<threat_model>/`` uses the same format and may add ``"source"``
(who published the number, e.g. ``"published paper"``; default :data:`SOURCE_LABEL`) and ``"attack"`` (the attack
behind it, e.g. ``"PGD-20"``), and may give a paper's number as ``"robust_acc"`` instead of RobustBench's
``"autoattack_acc"``/``"external"`` (``robust_acc`` needs a ``source``). See ``leaderboard/reference/README.md``.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

from wsr_bench.epsilon import eps_label, parse_eps

logger = logging.getLogger(__name__)

SOURCE_LABEL = "RobustBench (published)"


@dataclass(frozen=True)
class ReferenceEntry:
    """One published row: clean and robust accuracy (fractions) at ``eps``.

    ``source``: who published it (:data:`SOURCE_LABEL` for RobustBench's leaderboard, e.g. ``"published paper"``
    otherwise); ``attack``: the attack behind ``robust_accuracy`` when the file names it (``""`` otherwise);
    ``provenance``: the file the row was read from; ``link``: the paper (or leaderboard) it cites; ``training``:
    how the model was trained and ``where``: where in the source the numbers were read, when a paper's file says so;
    ``unreliable``: RobustBench's flag for an evaluation it calls "potentially unreliable" (e.g. a randomised defence
    evaluated without AutoAttack's ``rand`` version), shown beside the row.
    """

    model: str
    dataset: str
    threat_model: str
    eps: float
    clean_accuracy: float
    robust_accuracy: float
    autoattack_accuracy: float | None
    architecture: str
    paper: str
    link: str
    venue: str
    additional_data: bool
    provenance: str
    source: str = SOURCE_LABEL
    attack: str = ""
    training: str = ""
    where: str = ""
    unreliable: bool = False

    @property
    def eps_label(self) -> str:
        """Display label of ``eps`` (``"8/255"``)."""
        return eps_label(self.eps)


def provenance() -> dict[str, Any]:
    """Where the reference data comes from (repository, commit, path, license)."""
    return json.loads(_data_root().joinpath("PROVENANCE.json").read_text())


def _data_root():
    return resources.files("wsr_bench").joinpath("data_files", "robustbench")


def _percent(value: Any) -> float | None:
    try:
        return round(float(value) / 100.0, 6)
    except (TypeError, ValueError):
        return None


def _text(d: dict[str, Any], key: str, where: str) -> str | None:
    value = d.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{where}: {key} must be a non-empty string, got {value!r:.80}")
    return " ".join(value.split())


def parse_reference(d: dict[str, Any], model: str, dataset: str, threat_model: str, where: str) -> ReferenceEntry:
    """Turn one RobustBench ``model_info`` dict (or a paper's file, see the module doc) into a
    :class:`ReferenceEntry` (``external`` wins over AA, as upstream).

    The dataset comes from the folder, not the file's ``dataset`` field (cifar100/Linf/Hendrycks2019Using.json
    says "cifar10" at commit 78fcc9e; RobustBench itself goes by the folder too).

    Raises:
        ValueError: no numeric clean accuracy or robust accuracy, both ``robust_acc`` and RobustBench's accuracies,
            ``robust_acc`` without a ``source``, or a ``source``/``attack`` that is not a non-empty string.
    """
    aa = _percent(d.get("autoattack_acc"))
    robust = _percent(d.get("external"))
    robust = aa if robust is None else robust
    clean = _percent(d.get("clean_acc"))
    source = _text(d, "source", where)
    attack = _text(d, "attack", where) or ""
    training, read_at = _text(d, "training", where) or "", _text(d, "where", where) or ""
    if "robust_acc" in d:
        if robust is not None:
            raise ValueError(f"{where}: give either robust_acc (a paper's number) or autoattack_acc/external "
                             "(RobustBench's), not both")
        if source is None:
            raise ValueError(f'{where}: robust_acc needs a "source" saying who published it (e.g. "published paper")')
        robust = _percent(d.get("robust_acc"))
    if robust is None or clean is None:
        raise ValueError(f"{where}: needs numeric clean_acc and autoattack_acc (or robust_acc with a source)")
    return ReferenceEntry(
        model=model, dataset=dataset, threat_model=threat_model,  # the folder decides (as in RobustBench)
        eps=parse_eps(d.get("eps", "nan"), threat_model=None), clean_accuracy=clean, robust_accuracy=robust,
        autoattack_accuracy=aa, architecture=str(d.get("architecture", "")), paper=str(d.get("name", "")),
        link=str(d.get("link", "")), venue=str(d.get("venue", "")), additional_data=bool(d.get("additional_data")),
        provenance=where, source=SOURCE_LABEL if source is None else source, attack=attack, training=training,
        where=read_at, unreliable=d.get("unreliable") is True)


@lru_cache(maxsize=1)
def _packaged() -> tuple[ReferenceEntry, ...]:
    commit = provenance().get("commit", "?")
    out = []
    info = _data_root().joinpath("model_info")
    for ds_dir in sorted(info.iterdir(), key=lambda p: p.name):
        for tm_dir in sorted(ds_dir.iterdir(), key=lambda p: p.name):
            for f in sorted(tm_dir.iterdir(), key=lambda p: p.name):
                if f.name.endswith(".json"):
                    where = f"RobustBench/robustbench@{commit}:model_info/{ds_dir.name}/{tm_dir.name}/{f.name}"
                    out.append(parse_reference(json.loads(f.read_text()), f.name[:-5], ds_dir.name, tm_dir.name,
                                               where))
    return tuple(out)


def load_references(dataset: str | None = None, threat_model: str | None = None,
                    extra_dir: str | Path | None = None) -> list[ReferenceEntry]:
    """Published RobustBench rows, optionally filtered, plus ``extra_dir/<dataset>/<threat>/*.json`` if given.

    Extra files (RobustBench's format, optionally with ``source``, ``attack`` and ``robust_acc``; see the module
    doc) override packaged ones with the same dataset/threat/name.
    """
    rows = {(r.dataset, r.threat_model, r.model): r for r in _packaged()}
    if extra_dir is not None and Path(extra_dir).is_dir():
        for f in sorted(Path(extra_dir).glob("*/*/*.json")):
            ds, tm = f.parent.parent.name, f.parent.name
            try:
                rows[(ds, tm, f.stem)] = parse_reference(json.loads(f.read_text()), f.stem, ds, tm, str(f))
            except (ValueError, json.JSONDecodeError) as exc:
                raise ValueError(f"bad reference file {f}: {exc}") from None
    return [r for (ds, tm, _), r in sorted(rows.items())
            if (dataset is None or ds == dataset) and (threat_model is None or tm == threat_model)]


def find_reference(model: str, dataset: str, threat_model: str) -> ReferenceEntry | None:
    """The published row of one RobustBench model (None when absent)."""
    for r in load_references(dataset, threat_model):
        if r.model == model:
            return r
    return None
