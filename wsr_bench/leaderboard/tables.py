"""Leaderboard tables (pandas): one row per evaluated model, one column per eps, published rows beside ours.

Sections: one per dataset, threat model and evaluation suite (:attr:`LeaderboardEntry.suite`, from
``evaluation["suite"]``); a suite's section comes right after the suite-less section of its dataset/threat model,
which alone holds the published rows (RobustBench's leaderboard and papers, see
:mod:`wsr_bench.leaderboard.reference`).

Accuracy columns are named ``acc@<eps label>`` (``acc@8/255``, ``acc@0.03``) and ordered by eps. Our rows carry the
worst-case curve; published rows carry their single robust accuracy in the column of their eps.
Each accuracy column is followed by its details: ``ci_low@``/``ci_high@`` (95% interval: Clopper-Pearson, or with
the training-seed term a t interval, :func:`wsr_bench.leaderboard.marks.row_interval`), ``band_low@``/
``band_high@`` (the simultaneous 95% band of the whole curve, :func:`wsr_bench.leaderboard.marks.row_band`),
``tied@`` (``"best"``, ``"paired"`` or ``"overlap"`` when the row is not significantly below the best of our rows at
that eps, ``""`` when it is, missing for published rows), ``p@``/``p_holm@`` (the raw and Holm-adjusted p-value of
that test), ``seed_sd@`` (the seed SD in the interval and test, empty without one) and ``test@`` (the decision in
words); see :mod:`wsr_bench.leaderboard.marks`. One row per :class:`~wsr_bench.leaderboard.seeds.Row` (entries that
differ only by training seed are one row; ``seeds`` is their number).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence

import pandas as pd

from wsr_bench.epsilon import PAPER_SPECTRUM, eps_label, parse_eps
from wsr_bench.leaderboard.consistency import nesting_text, nesting_violations
from wsr_bench.leaderboard.marks import Mark, row_band, row_interval, section_marks
from wsr_bench.leaderboard.reference import SOURCE_LABEL, ReferenceEntry
from wsr_bench.leaderboard.schema import LeaderboardEntry
from wsr_bench.leaderboard.seeds import AUC_KEY, AVG, Row, SeedNoise, group_rows
from wsr_bench.leaderboard.stats import ALPHA

EPS_PREFIX = "acc@"
#: Per-eps detail columns, each ``<prefix><eps label>`` beside ``acc@<eps label>``.
DETAIL_PREFIXES = ("ci_low@", "ci_high@", "band_low@", "band_high@", "tied@", "p@", "p_holm@", "seed_sd@", "test@")
INFO_COLUMNS = ["section", "dataset", "threat_model", "model", "source", "architecture", "params", "training",
                "n_examples", "seeds", "clean", "clean_ci_low", "clean_ci_high", "clean_band_low", "clean_band_high",
                "clean_seed_sd"]
TAIL_COLUMNS = ["avg", "avg_tied", "avg_test", "auc", "auc_tied", "auc_test", "nesting_violations", "sanity", "date",
                "provenance"]
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
    """A mark in words (the page's hover text and the CSV's ``test@``)."""
    seed = {"measured": " with the seed term of the rows' training seeds",
            "documented": " with a documented seed SD for single-seed rows", "": ""}[mark.seed]
    if mark.method == "best":
        return "best of the section"
    if mark.method == "paired":
        verdict = "not significantly below" if mark.tied else "significantly below"
        test = {"McNemar": "exact McNemar", "sign-flip": "sign-flip permutation test",
                "t+seed": "t test"}.get(mark.test, mark.test)
        return (f"{verdict} {mark.best} ({test} on the same images{seed}, p={mark.p_value:.3g}, "
                f"Holm p={mark.p_holm:.3g})")
    verdict = "overlaps" if mark.tied else "lies below"
    return f"95% interval{seed} {verdict} that of {mark.best} (different images: interval overlap)"


def _mark_cells(mark: Mark | None) -> dict:
    if mark is None:
        return {"tied": None, "p": None, "p_holm": None, "test": None}
    return {"tied": mark.method if mark.tied else "", "p": mark.p_value, "p_holm": mark.p_holm,
            "test": _describe(mark)}


def _sanity(e: LeaderboardEntry) -> str:
    """The sanity cell: failed checks (or ``ok``), then the per-sample nesting count."""
    return f"{', '.join(e.flags) if e.flags else 'ok'}; {nesting_text(e)}"


def _entry_row(row: Row, marks: dict[str, Mark], whole: dict[str, Mark]) -> dict:
    e = row.entry
    eps = row.curve_eps()
    band = row_band(row)
    clean_ci = row_interval(row, 0.0)
    seed_sd = {k: (None if (t := row.seed_term(k)) is None else t[3]) for k in (0.0, AVG, AUC_KEY, *eps)}
    avg, auc = _mark_cells(whole.get(AVG)), _mark_cells(whole.get(AUC_KEY))
    out = {"section": section_name(e.dataset, e.threat_model, e.suite), "dataset": e.dataset,
           "threat_model": e.threat_model, "model": row.model, "source": e.source, "architecture": e.architecture,
           "params": e.params, "training": e.training, "n_examples": e.n_examples, "seeds": row.n_seeds,
           "clean": row.mean(0.0), "clean_ci_low": clean_ci[0], "clean_ci_high": clean_ci[1],
           "clean_band_low": band[0][0], "clean_band_high": band[0][1], "clean_seed_sd": seed_sd[0.0],
           "avg": row.mean(AVG), "avg_tied": avg["tied"], "avg_test": avg["test"],
           "auc": row.mean(AUC_KEY), "auc_tied": auc["tied"], "auc_test": auc["test"],
           "nesting_violations": nesting_violations(e)[0] if row.n_seeds == 1 else
           _sum_or_none([nesting_violations(m)[0] for m in row.members]),
           "sanity": "; ".join(_sanity(m) for m in row.members) if row.n_seeds > 1 else _sanity(e),
           "date": e.date, "provenance": "", "_suite": e.suite}
    for j, x in enumerate(eps, start=1):
        label = eps_label(x)
        low, high = row_interval(row, x)
        cells = _mark_cells(marks.get(label))
        out |= {EPS_PREFIX + label: row.mean(x), "ci_low@" + label: low, "ci_high@" + label: high,
                "band_low@" + label: band[j][0], "band_high@" + label: band[j][1], "tied@" + label: cells["tied"],
                "p@" + label: cells["p"], "p_holm@" + label: cells["p_holm"], "seed_sd@" + label: seed_sd[x],
                "test@" + label: cells["test"]}
    return out


def _sum_or_none(values: Sequence[int | None]) -> int | None:
    return None if any(v is None for v in values) else sum(values)


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
    return sorted(cols, key=lambda c: parse_eps(c[len(EPS_PREFIX):], threat_model=None))


def detail_column(acc_column: str, prefix: str) -> str:
    """The ``prefix`` detail column (``"ci_low@"``...) of the accuracy column ``acc_column``."""
    return prefix + acc_column[len(EPS_PREFIX):]


def leaderboard_frame(entries: Sequence[LeaderboardEntry], references: Iterable[ReferenceEntry] = (),
                      seed_noise: dict[tuple[str, str], SeedNoise] | None = None) -> pd.DataFrame:
    """One row per :class:`~wsr_bench.leaderboard.seeds.Row` (entries that differ only by training seed form one)
    and per reference, sorted by section (in page order, see :func:`section_key`), then ours (best average first),
    then the published rows (most robust first). ``seed_noise``: documented seed SDs for single-seed rows, per
    dataset and threat model (:func:`~wsr_bench.leaderboard.seeds.load_seed_noise`)."""
    ours = group_rows(entries, seed_noise)
    marks, whole = section_marks(ours)
    rows = [_entry_row(r, m, w) for r, m, w in zip(ours, marks, whole, strict=True)]
    rows += [_reference_row(r) for r in references]
    df = pd.DataFrame(rows) if rows else pd.DataFrame(columns=INFO_COLUMNS + TAIL_COLUMNS + ["_suite"])
    wanted = INFO_COLUMNS + TAIL_COLUMNS + [detail_column(c, p) for c in eps_columns(df) for p in DETAIL_PREFIXES]
    missing = [col for col in wanted if col not in df.columns]
    if missing:  # at once: column by column fragments the frame
        df = pd.concat([df, pd.DataFrame({col: [None] * len(df) for col in missing}, index=df.index)], axis=1)
    per_eps = [col for c in eps_columns(df) for col in (c, *(detail_column(c, p) for p in DETAIL_PREFIXES))]
    df = df[INFO_COLUMNS + per_eps + TAIL_COLUMNS + ["_suite"]]
    df = df.astype({"params": "Int64", "n_examples": "Int64", "seeds": "Int64", "nesting_violations": "Int64"}).copy()
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
MARK_LEGEND = (f"95% intervals in parentheses (Clopper-Pearson, test images only; ‡: with the training-seed term of a "
               f"documented seed SD, the row having one seed). Bold: not significantly below the best of our rows at "
               f"that eps, by a paired test on the same images (exact two-sided McNemar; a t test where a seed term "
               f"is known) whose p-value is Holm-adjusted over all the section's per-eps tests (adjusted p >= "
               f"{ALPHA:g}); † marks a cell decided instead by overlap of the two 95% intervals, used when the images "
               f"differ or an entry has no per-sample results. A bold average or AUC is not significantly below the "
               f"best row's by the whole-curve test (a paired sign-flip permutation test on the per-image "
               f"scores, or t with the seed term; Holm over the section's rows). RobustBench rows are not compared.")


#: What the plot's shading is (both pages).
BAND_NOTE = ("In the plot, the darker shade around each curve is its pointwise 95% interval and the lighter one its "
             "simultaneous 95% band (all strengths at once: Clopper-Pearson at the Bonferroni level 1 - 0.05/m for m "
             "points; the CSV has it as band_low@/band_high@).")


def _marked(value: str, tied: object, seed_sd: object = None, seeds: object = 1) -> str:
    """``value`` bold when tied (``†`` when by overlap), ``‡`` when a documented seed SD entered its test."""
    if not is_missing(tied) and tied:
        value = f"**{value}**" + ("†" if tied == "overlap" else "")
    documented = not is_missing(seed_sd) and (is_missing(seeds) or int(seeds) == 1)
    return value + ("‡" if documented else "")


def eps_cell_markdown(r: dict, col: str) -> str:
    """One eps cell of the Markdown table: accuracy (bold when tied with the best row, † when by overlap, ‡ with a
    documented seed SD) and interval."""
    value = _marked(percent(r[col]), r.get(detail_column(col, "tied@")), r.get(detail_column(col, "seed_sd@")),
                    r.get("seeds"))
    low, high = r.get(detail_column(col, "ci_low@")), r.get(detail_column(col, "ci_high@"))
    if is_missing(low) or is_missing(high) or is_missing(r[col]):
        return value
    return f"{value} ({percent(low)}–{percent(high)})"


def summary_cell_markdown(r: dict, key: str) -> str:
    """The ``avg`` / ``auc`` cell: value in %, bold when the whole-curve test ties it with the best row."""
    return _marked(percent(r[key]), r.get(f"{key}_tied"))


def seeds_text(value: object) -> str:
    """The ``seeds`` cell: ``"1"``, ``"3"``; ``"–"`` for published rows."""
    return "–" if is_missing(value) else str(int(value))


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
    header += [c[len(EPS_PREFIX):] for c in cols] + [AVG_HEADER, "AUC", "n", "seeds", "sanity"]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    for i, r in enumerate(part.to_dict("records"), start=1):
        clean = with_interval(r["clean"], r["clean_ci_low"], r["clean_ci_high"])
        if not is_missing(r.get("clean_seed_sd")) and int(r.get("seeds") or 1) == 1:
            clean = clean.replace(" (", "‡ (", 1)
        cells = [str(i), _md(r["model"]), _source_cell(r), _md(r["architecture"]), _params(r["params"]),
                 _md(r["training"]), clean]
        cells += [eps_cell_markdown(r, c) for c in cols]
        n = r["n_examples"]
        cells += [summary_cell_markdown(r, "avg"), summary_cell_markdown(r, "auc"),
                  "–" if is_missing(n) else str(int(n)), seeds_text(r.get("seeds")), _md(r["sanity"])]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
