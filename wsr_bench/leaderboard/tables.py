"""Leaderboard tables (pandas): one row per evaluated model, one column per eps, published rows beside ours.

Sections: one per dataset, threat model and evaluation suite (:attr:`LeaderboardEntry.suite`, from
``evaluation["suite"]``); a suite's section comes right after the suite-less section of its dataset/threat model,
which alone holds the published rows (RobustBench's leaderboard and papers, see
:mod:`wsr_bench.leaderboard.reference`).

Accuracy columns are named ``acc@<eps label>`` (``acc@8/255``, ``acc@0.03``) and ordered by eps. Our rows carry the
worst-case curve; published rows carry their single robust accuracy in the column of their eps.
Each accuracy column is followed by its details: ``ci_low@``/``ci_high@`` (95% Clopper-Pearson interval),
``tied@`` (``"best"``, ``"paired"`` or ``"overlap"`` when the row is not significantly below the best of our rows
at that eps, ``""`` when it is, missing for published rows) and ``test@`` (the decision in words); see
:func:`wsr_bench.leaderboard.compare.top_marks`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence

import pandas as pd

from wsr_bench.epsilon import PAPER_SPECTRUM, eps_label, parse_eps
from wsr_bench.leaderboard.compare import Mark, top_marks
from wsr_bench.leaderboard.reference import SOURCE_LABEL, ReferenceEntry
from wsr_bench.leaderboard.schema import LeaderboardEntry
from wsr_bench.leaderboard.stats import ALPHA

EPS_PREFIX = "acc@"
#: Per-eps detail columns, each ``<prefix><eps label>`` beside ``acc@<eps label>``.
DETAIL_PREFIXES = ("ci_low@", "ci_high@", "tied@", "test@")
INFO_COLUMNS = ["section", "dataset", "threat_model", "model", "source", "architecture", "params", "training",
                "n_examples", "clean", "clean_ci_low", "clean_ci_high"]
TAIL_COLUMNS = ["avg", "auc", "sanity", "date", "provenance"]
#: the ``sanity`` cell of a published row RobustBench flags ``"unreliable": true``.
UNRELIABLE = "potentially unreliable (RobustBench)"
AVG_HEADER = "avg(" + ",".join(f"{e:g}" for e in PAPER_SPECTRUM) + ")"


def section_name(dataset: str, threat_model: str, suite: str = "") -> str:
    """Section title of one dataset/threat model (``"cifar10 / Linf"``) and evaluation suite, when there is one
    (``"fashion_mnist / Linf / PGD-20, all 10,000 test images"``)."""
    base = f"{dataset} / {threat_model}"
    return f"{base} / {suite}" if suite else base


def section_key(dataset: str, threat_model: str, section: str) -> tuple[str, str]:
    """Page order of a section: ``(dataset / threat model title, suite)``, so a dataset/threat model's suite-less
    section comes first and its suites follow it (alphabetically)."""
    base = section_name(dataset, threat_model)
    if section == base:
        return base, ""
    return (base, section[len(base) + 3:]) if section.startswith(base + " / ") else (section, "")


def _describe(mark: Mark) -> str:
    if mark.method == "best":
        return "best at this eps"
    if mark.method == "paired":
        verdict = "not significantly below" if mark.tied else "significantly below"
        return f"{verdict} {mark.best} (exact McNemar on the same images, p={mark.p_value:.3g})"
    verdict = "overlaps" if mark.tied else "lies below"
    return f"95% interval {verdict} that of {mark.best} (different images: interval overlap)"


def _entry_row(e: LeaderboardEntry, marks: dict[str, Mark]) -> dict:
    row = {"section": section_name(e.dataset, e.threat_model, e.suite), "dataset": e.dataset,
           "threat_model": e.threat_model, "model": e.model, "source": e.source, "architecture": e.architecture,
           "params": e.params, "training": e.training, "n_examples": e.n_examples, "clean": e.clean_accuracy,
           "clean_ci_low": e.clean_accuracy_ci[0], "clean_ci_high": e.clean_accuracy_ci[1],
           "avg": e.avg_robust_accuracy, "auc": e.auc, "sanity": ", ".join(e.flags) if e.flags else "ok",
           "date": e.date, "provenance": "", "_suite": e.suite}
    wc = e.worst_case
    for eps, acc, low, high in zip(wc.eps, wc.accuracy, wc.ci_low, wc.ci_high, strict=True):
        label = eps_label(eps)
        mark = marks.get(label)
        row |= {EPS_PREFIX + label: acc, "ci_low@" + label: low, "ci_high@" + label: high,
                "tied@" + label: (mark.method if mark.tied else "") if mark else None,
                "test@" + label: _describe(mark) if mark else None}
    return row


_FILE_SEP = " (file "


def reference_training(r: ReferenceEntry) -> str:
    """The ``training`` cell of a published row: the paper's title, how the model was trained when the file says,
    and the attack behind the number when the file names it (``"Title: PGD AT (attack: PGD-20)"``)."""
    text = f"{r.paper}: {r.training}" if r.paper and r.training else (r.paper or r.training)
    if not r.attack:
        return text
    return f"{text} (attack: {r.attack})" if text else f"attack: {r.attack}"


def reference_provenance(r: ReferenceEntry) -> str:
    """The ``provenance`` cell of a published row: the file it was read from; for a source other than RobustBench,
    the cited link first (``"https://... (file reference/...json)"``)."""
    if r.source == SOURCE_LABEL or not r.link:
        return r.provenance
    where = f"; read at: {r.where}" if r.where else ""
    return f"{r.link}{_FILE_SEP}{r.provenance}{where})"


def _reference_row(r: ReferenceEntry) -> dict:
    return {"section": section_name(r.dataset, r.threat_model), "dataset": r.dataset, "threat_model": r.threat_model,
            "model": r.model, "source": r.source, "architecture": r.architecture, "params": None,
            "training": reference_training(r), "n_examples": None, "clean": r.clean_accuracy, "avg": None,
            "auc": None, "sanity": UNRELIABLE if r.unreliable else "", "date": "",
            "provenance": reference_provenance(r), "_suite": "",
            EPS_PREFIX + r.eps_label: r.robust_accuracy}


def select_references(entries: Sequence[LeaderboardEntry], references: Iterable[ReferenceEntry],
                      top: int = 10) -> list[ReferenceEntry]:
    """Published rows worth showing, for each dataset/threat model we have entries for (in any suite): the ``top``
    most robust RobustBench rows, every RobustBench model we evaluated ourselves through ``robustbench:<Name>``,
    and every row from another source (a paper's number: :attr:`ReferenceEntry.source` is not
    :data:`SOURCE_LABEL`). Per dataset/threat model, most robust first."""
    sections = {(e.dataset, e.threat_model) for e in entries}
    ours = {e.model.removeprefix("robustbench:") for e in entries}
    by_section: dict[tuple[str, str], list[ReferenceEntry]] = {}
    for r in references:
        if (r.dataset, r.threat_model) in sections:
            by_section.setdefault((r.dataset, r.threat_model), []).append(r)
    chosen: list[ReferenceEntry] = []
    for rows in by_section.values():
        rows.sort(key=lambda r: (-r.robust_accuracy, r.model))
        n_robustbench = 0
        for r in rows:
            if r.source != SOURCE_LABEL:
                chosen.append(r)
                continue
            if n_robustbench < top or r.model in ours:
                chosen.append(r)
            n_robustbench += 1
    return chosen


def entry_sort_key(e: LeaderboardEntry) -> float:
    """What orders our rows in a section (larger first): the paper-spectrum average, else the AUC, else -1."""
    for value in (e.avg_robust_accuracy, e.auc):
        if value is not None and not math.isnan(value):
            return float(value)
    return -1.0


def section_entries(entries: Sequence[LeaderboardEntry]) -> list[tuple[str, list[int]]]:
    """``[(section, indices into entries)]``: our entries per section, sections in page order (as
    :func:`sections`), entries in table order (as :func:`leaderboard_frame`: best average first, then by model, then
    as given), so ``indices[0]`` is the section's top row."""
    groups: dict[tuple[str, str], list[int]] = {}
    for i, e in enumerate(entries):
        groups.setdefault((section_name(e.dataset, e.threat_model), e.suite), []).append(i)
    out = []
    for base, suite in sorted(groups):
        members = sorted(groups[(base, suite)], key=lambda i: (-entry_sort_key(entries[i]), entries[i].model))
        out.append((f"{base} / {suite}" if suite else base, members))
    return out


def eps_columns(df: pd.DataFrame) -> list[str]:
    """The ``acc@...`` columns of ``df``, ordered by eps."""
    cols = [c for c in df.columns if str(c).startswith(EPS_PREFIX)]
    return sorted(cols, key=lambda c: parse_eps(c[len(EPS_PREFIX):], max_eps=1e3))


def detail_column(acc_column: str, prefix: str) -> str:
    """The ``prefix`` detail column (``"ci_low@"``...) of the accuracy column ``acc_column``."""
    return prefix + acc_column[len(EPS_PREFIX):]


def leaderboard_frame(entries: Sequence[LeaderboardEntry], references: Iterable[ReferenceEntry] = ()) -> pd.DataFrame:
    """One row per entry and reference, sorted by section (in page order, see :func:`section_key`), then ours (best
    average first), then the published rows (most robust first)."""
    marks = top_marks(entries)
    rows = [_entry_row(e, m) for e, m in zip(entries, marks, strict=True)] + [_reference_row(r) for r in references]
    df = pd.DataFrame(rows) if rows else pd.DataFrame(columns=INFO_COLUMNS + TAIL_COLUMNS + ["_suite"])
    for col in INFO_COLUMNS + TAIL_COLUMNS + [detail_column(c, p) for c in eps_columns(df) for p in DETAIL_PREFIXES]:
        if col not in df.columns:
            df[col] = None
    per_eps = [col for c in eps_columns(df) for col in (c, *(detail_column(c, p) for p in DETAIL_PREFIXES))]
    df = df[INFO_COLUMNS + per_eps + TAIL_COLUMNS + ["_suite"]]
    df = df.astype({"params": "Int64", "n_examples": "Int64"})
    if df.empty:
        return df.drop(columns=["_suite"])
    is_ref = df["n_examples"].isna()  # published rows have no evaluation size; every entry has one
    ref_acc = df[eps_columns(df)].max(axis=1, skipna=True).where(is_ref)
    key = df["avg"].fillna(df["auc"]).where(~is_ref, ref_acc).fillna(-1.0)
    base = [section_name(ds, tm) for ds, tm in zip(df["dataset"], df["threat_model"], strict=True)]
    df = df.assign(_base=base, _ref=is_ref, _key=-key).sort_values(["_base", "_suite", "_ref", "_key", "model"],
                                                                   kind="stable")
    return df.drop(columns=["_base", "_suite", "_ref", "_key"]).reset_index(drop=True)


def sections(df: pd.DataFrame) -> list[tuple[str, pd.DataFrame]]:
    """``[(section, rows)]`` in page order (:func:`section_key`: each dataset/threat model's suite-less section,
    then its suites), with the eps columns nobody in that section filled dropped."""
    out = []
    for name, part in df.groupby("section", sort=True):
        empty = [c for c in eps_columns(part) if part[c].isna().all()]
        empty += [detail_column(c, p) for c in empty for p in DETAIL_PREFIXES]
        first = part.iloc[0]
        out.append((section_key(str(first["dataset"]), str(first["threat_model"]), str(name)), str(name),
                    part.drop(columns=empty).reset_index(drop=True)))
    out.sort(key=lambda item: item[0])
    return [(name, part) for _, name, part in out]


def is_reference_row(r: dict) -> bool:
    """A published row (RobustBench's or a paper's) of the frame, as opposed to one of our entries."""
    return is_missing(r.get("n_examples"))


def published_sources(df: pd.DataFrame) -> list[str]:
    """The sources of the frame's published rows: RobustBench's first when shown, then the others (papers),
    sorted."""
    if df.empty:
        return []
    found = {str(s) for s in df[df["n_examples"].isna()]["source"] if not is_missing(s)}
    return ([SOURCE_LABEL] if SOURCE_LABEL in found else []) + sorted(found - {SOURCE_LABEL})


def reference_note(sources: Sequence[str], *, markdown: bool = True) -> str:
    """What the published rows are, for the page's introduction (``sources``: :func:`published_sources`):
    RobustBench's sentence alone, as before papers could be added, unless a source other than RobustBench's is
    shown; then one sentence naming the shown sources and saying where each row's provenance is."""
    if all(s == SOURCE_LABEL for s in sources):
        return (f"Rows marked *{SOURCE_LABEL}* are RobustBench's leaderboard numbers at their single eps." if markdown
                else f"Rows marked {SOURCE_LABEL} are RobustBench's leaderboard numbers at their single eps.")
    if markdown:
        names = ", ".join(f"*{_md(s)}*" for s in sources)
        where = ("each row's provenance is the paper's link (on its source) and the file it was read from (the "
                 "`provenance` column of `leaderboard.csv`)")
    else:
        names = ", ".join(sources)
        where = "hover a row for its provenance (the paper's link and the file it was read from)"
    return (f"Rows marked with a published source ({names}) are numbers taken from RobustBench's leaderboard or "
            f"from the cited paper, at their single eps, with the attack behind a paper's number after its title; "
            f"{where}. Published rows are not compared with ours.")


def is_missing(value: object) -> bool:
    """None, NaN or pandas' NA."""
    return value is None or (not isinstance(value, str) and bool(pd.isna(value)))


def percent(value: object, digits: int = 1) -> str:
    """Fraction -> ``"85.2"``; missing -> ``"–"``."""
    if is_missing(value):
        return "–"
    return f"{100 * float(value):.{digits}f}"


def with_interval(value: object, low: object, high: object, digits: int = 1) -> str:
    """``"62.0 (51.7–71.5)"`` in %; just the value when the interval is missing (RobustBench rows)."""
    if is_missing(low) or is_missing(high) or is_missing(value):
        return percent(value, digits)
    return f"{percent(value, digits)} ({percent(low, digits)}–{percent(high, digits)})"


#: Legend of the marks in both pages.
MARK_LEGEND = (f"95% Clopper-Pearson intervals in parentheses. Bold: not significantly below the best of our rows at "
               f"that eps (exact two-sided McNemar test, p >= {ALPHA:g}, for entries evaluated on the same images as "
               "the best row; † marks a cell decided instead by overlap of the two 95% intervals, used when the "
               "images differ or an entry has no per-sample results). RobustBench rows are not compared.")


def eps_cell_markdown(r: dict, col: str) -> str:
    """One eps cell of the Markdown table: accuracy (bold when tied with the best row, † when by overlap) and
    interval."""
    tied = r.get(detail_column(col, "tied@"))
    value = percent(r[col])
    if not is_missing(tied) and tied:
        value = f"**{value}**" + ("†" if tied == "overlap" else "")
    low, high = r.get(detail_column(col, "ci_low@")), r.get(detail_column(col, "ci_high@"))
    if is_missing(low) or is_missing(high) or is_missing(r[col]):
        return value
    return f"{value} ({percent(low)}–{percent(high)})"


def _params(value: object) -> str:
    if is_missing(value):
        return "–"
    return f"{float(value) / 1e6:.3g}M"


_SAFE_LINK = re.compile(r"https?://[^\s()<>\[\]|`'\"\\]+")


def _source_cell(r: dict) -> str:
    """The source cell: a paper's source links to the paper when its link is a plain http(s) URL."""
    source = _md(r["source"])
    if not is_reference_row(r) or r["source"] == SOURCE_LABEL:
        return source
    link = str(r.get("provenance") or "").split(_FILE_SEP, 1)[0]
    if not _SAFE_LINK.fullmatch(link):
        return source
    return "[" + source.replace("[", "\\[").replace("]", "\\]") + f"]({link})"


def _md(text: object) -> str:
    """A Markdown table cell: pipes, newlines and HTML metacharacters escaped (entry fields are untrusted)."""
    s = "" if is_missing(text) else str(text)
    s = s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return s.replace("|", "\\|").replace("\n", " ")


def markdown_table(part: pd.DataFrame) -> str:
    """A GitHub Markdown table of one section (accuracies in %, paper-spectrum average, AUC, sanity flags)."""
    cols = eps_columns(part)
    header = ["#", "model", "source", "architecture", "params", "training", "clean (%)"]
    header += [c[len(EPS_PREFIX):] for c in cols] + [AVG_HEADER, "AUC", "n", "sanity"]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    for i, r in enumerate(part.to_dict("records"), start=1):
        cells = [str(i), _md(r["model"]), _source_cell(r), _md(r["architecture"]), _params(r["params"]),
                 _md(r["training"]), with_interval(r["clean"], r["clean_ci_low"], r["clean_ci_high"])]
        cells += [eps_cell_markdown(r, c) for c in cols]
        n = r["n_examples"]
        cells += [percent(r["avg"]), percent(r["auc"]), "–" if is_missing(n) else str(int(n)), _md(r["sanity"])]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
