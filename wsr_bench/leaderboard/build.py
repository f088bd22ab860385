"""``wsr-bench leaderboard build ROOT``: entries in, README.md + index.html + curves.png + leaderboard.csv out.

Reads ``ROOT/entries/**/*.json``, adds published rows for the same datasets/threat models (RobustBench's packaged
reference data, plus ``ROOT/reference/<dataset>/<threat>/*.json`` when present: overrides and papers' numbers), and
writes every output atomically. Generated files are never edited by hand; rebuild instead.

One section per dataset, threat model and evaluation suite (``evaluation["suite"]`` of an entry). In README.md,
each section with at least two of our entries is followed by paired comparisons of its rows against its top row
(:func:`paired_comparisons`, the text of ``wsr-bench leaderboard compare``: per strength with raw and Holm p, and
for the whole curve). Documented training-seed SDs (``ROOT/seed_noise/<dataset>/<threat>.json``,
:mod:`wsr_bench.leaderboard.seeds`) enter the intervals and marks of single-seed rows. A suite's section is also
followed by :func:`main_evaluation_gaps`: its models that have an entry in the main section too, the two entries
paired on the images both hold, which says how far the suite's numbers can be trusted (e.g. PGD-20 against AutoAttack).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from wsr_bench import __version__
from wsr_bench.infra.atomic import atomic_write_text, atomic_write_with
from wsr_bench.leaderboard.compare import ComparisonError, compare_entries, format_comparison, whole_curve_entries
from wsr_bench.leaderboard.curves import write_curves
from wsr_bench.leaderboard.entry_files import load_entries_with_paths
from wsr_bench.leaderboard.html import render_index
from wsr_bench.leaderboard.reference import load_references, provenance
from wsr_bench.leaderboard.schema import LeaderboardEntry
from wsr_bench.leaderboard.seeds import SeedNoise, load_seed_noise
from wsr_bench.leaderboard.stats import ALPHA
from wsr_bench.leaderboard.tables import (
    AVG_HEADER,
    BAND_NOTE,
    MARK_LEGEND,
    leaderboard_frame,
    markdown_table,
    published_sources,
    reference_note,
    section_entries,
    sections,
    select_references,
)

logger = logging.getLogger(__name__)


@dataclass
class BuildResult:
    """What a build wrote and from how many rows."""

    readme: Path
    index: Path
    curves: Path
    csv: Path
    n_entries: int
    n_references: int


def _provenance_text() -> str:
    p = provenance()
    return f"{p.get('source', '?')} at commit {p.get('commit', '?')}, {p.get('path', '')} ({p.get('license', '')})"


def _inline(text: object) -> str:
    """Untrusted text in running Markdown: one line, HTML metacharacters and Markdown punctuation escaped."""
    s = " ".join(str(text).split()).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return re.sub(r"([\\`*_\[\]|])", r"\\\1", s)


def _code_span(text: str) -> str:
    """``text`` as an inline code span that no backtick inside it can close early."""
    text = " ".join(str(text).split())
    fence = "`" * (max((len(run) for run in re.findall(r"`+", text)), default=0) + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def _fenced(text: str) -> list[str]:
    """``text`` in a fenced code block whose fence is longer than any backtick run inside it."""
    fence = "`" * max(3, max((len(run) for run in re.findall(r"`+", text)), default=0) + 1)
    return [f"{fence}text", text, fence]


def paired_comparisons(entries: Sequence[LeaderboardEntry], names: Sequence[str]) -> str:
    """Markdown block comparing every other row of a section with its top row, image by image.

    Args:
        entries: the section's entries in table order; ``entries[0]`` is the top row.
        names: how to name each entry (the build uses its path relative to the leaderboard folder).

    Returns:
        A heading line, then for each row evaluated on the same images as the top row the text of
        ``wsr-bench leaderboard compare TOP ROW`` (:func:`~wsr_bench.leaderboard.compare.format_comparison`) in a
        fenced code block, then one line per row that could not be paired saying why (other images, no per-sample
        results, no common eps). Empty when the section has fewer than two entries.
    """
    if len(entries) < 2:
        return ""
    top, top_name = entries[0], names[0]
    lines = [f"**Paired comparisons against the top row** ({_inline(top.model)}, {_code_span(top_name)}), as "
             "`wsr-bench leaderboard compare` prints them (A is the top row):", ""]
    skipped = []
    for other, name in zip(entries[1:], names[1:], strict=True):
        pair = (top_name, name)
        try:
            rows, whole = compare_entries(top, other, pair), whole_curve_entries(top, other, pair)
        except ComparisonError as exc:
            skipped.append(f"- {_inline(other.model)} ({_code_span(name)}): not compared: {_inline(exc)}")
            continue
        lines += [*_fenced(format_comparison(top, other, rows, pair, whole)), ""]
    if skipped:
        lines += [*skipped, ""]
    return "\n".join(lines[:-1])


def main_evaluation_gaps(suite_members: Sequence[LeaderboardEntry], entries: Sequence[LeaderboardEntry]) -> str:
    """Markdown table: each model of a suite's section that also has an entry in the main (suite-less) section of
    its dataset/threat model, both entries paired on the images both hold (``wsr-bench leaderboard compare
    --shared-images``): per strength, the suite's accuracy, an arrow, the main entry's, and ``*`` where the
    difference is significant (exact McNemar p, Holm-adjusted over the model's strengths, < ``ALPHA``). Empty when
    no model has both."""
    rows, eps_labels, suite = [], [], ""
    for other in suite_members:
        main = next((e for e in entries if (e.model, e.dataset, e.threat_model, e.suite)
                     == (other.model, other.dataset, other.threat_model, "")), None)
        if main is None:
            continue
        try:
            pairs = compare_entries(other, main, shared_images=True)
        except ComparisonError as exc:
            logger.info("%s: its %s and main entries are not paired: %s", other.model, other.suite, exc)
            continue
        n = len(set(other.samples.indices) & set(main.samples.indices))
        rows.append((other.model, n, {r.label: r for r in pairs}))
        eps_labels += [r.label for r in pairs if r.label not in eps_labels]
        suite = other.suite
    if not rows:
        return ""
    head = ["model", "images", *eps_labels]
    lines = [f"**The same models in the main table**: their entry of this section ({_inline(suite)}; left of the "
             "arrow) and their main entry (right), paired on the images both hold (`wsr-bench leaderboard compare "
             "--shared-images`); accuracy in %, `*` where the two differ significantly on these images (exact "
             f"McNemar p, Holm-adjusted over the model's strengths, < {ALPHA:g}).",
             "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for model, n, by_label in rows:
        cells = [f"{100 * r.accuracy_a:.1f} → {100 * r.accuracy_b:.1f}{' *' if r.p_holm < ALPHA else ''}"
                 if (r := by_label.get(label)) else "–" for label in eps_labels]
        lines.append("| " + " | ".join([_inline(model), f"{n:,}", *cells]) + " |")
    return "\n".join(lines)


def seed_note(seed_noise: dict[tuple[str, str], SeedNoise] | None) -> list[str]:
    """One paragraph per documented seed SD (where it applies, its values and where it was measured), each followed
    by an empty line; none without one."""
    out = []
    for (dataset, threat), noise in sorted((seed_noise or {}).items()):
        values = ", ".join(f"{k} {100 * v:.2f}" for k, v in noise.sd.items())
        out += [f"‡ Documented training-seed SD for single-seed rows of {_inline(dataset)} / {_inline(threat)} "
                f"(points; {noise.df:g} df): {values}. Measured by {_inline(noise.source)}. "
                + (f"{_inline(noise.note)} " if noise.note else "")
                + "It enters the intervals and tests of those cells only, by strength; a row of several seeds uses "
                "its own.", ""]
    return out


def build_readme(df, entries: list[LeaderboardEntry], title: str, names: Sequence[str] | None = None,
                 seed_noise: dict[tuple[str, str], SeedNoise] | None = None) -> str:
    """The Markdown page: explanation, curves image, one table per section (dataset/threat model/suite), each
    followed by its paired comparisons against the top row when it has at least two of our entries, provenance.

    ``names``: one per entry, how the comparisons name it (default: the model names); ``seed_noise``: the
    documented seed SDs used (said under the legend).
    """
    names = [e.model for e in entries] if names is None else list(names)
    lines = [f"# {title}", "",
             "<!-- generated by `wsr-bench leaderboard build`; do not edit by hand -->", "",
             "Robust accuracy (%) over the perturbation strength eps (Linf eps on the [0,1] image scale; worst case "
             f"over the attacks, per sample). `{AVG_HEADER}` is the mean over the paper's spectrum; AUC is the "
             "normalised area under the curve from eps 0 (clean) to the largest evaluated eps. "
             + reference_note(published_sources(df)), "",
             MARK_LEGEND + " " + BAND_NOTE, "", *seed_note(seed_noise),
             "![robustness curves](curves.png)", ""]
    if not entries:
        lines += ["No entries yet: add `entries/<dataset>/<threat>/<model>.json` (e.g. with `wsr-bench eval ... "
                  "--out`) and rebuild.", ""]
    ours = dict(section_entries(entries))
    for name, part in sections(df):
        heading = name.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
        lines += [f"## {heading}", "", markdown_table(part), ""]
        members = ours.get(name, [])
        block = paired_comparisons([entries[i] for i in members], [names[i] for i in members])
        if block:
            lines += [block, ""]
        gaps = main_evaluation_gaps([entries[i] for i in members if entries[i].suite], entries)
        if gaps:
            lines += [gaps, ""]
    lines += [f"RobustBench reference data: {_provenance_text()}.", ""]
    return "\n".join(lines)


def build_leaderboard(root: str | Path, *, reference_top: int = 10,
                      title: str = "wsr-bench wide-spectrum leaderboard") -> BuildResult:
    """Render the leaderboard under ``root``.

    Args:
        root: leaderboard folder holding ``entries/`` (and optionally ``reference/``).
        reference_top: RobustBench rows shown per dataset/threat model (the most robust ones, plus any model we
            evaluated via ``robustbench:<Name>``); rows from other sources (papers) are all shown.
        title: page title.

    Raises:
        FileNotFoundError: ``root`` does not exist.
        ValueError: a malformed entry (the message names the file).
    """
    root = Path(root)
    loaded = load_entries_with_paths(root)
    entries = [e for _, e in loaded]
    names = [p.relative_to(root).as_posix() for p, _ in loaded]
    refs = select_references(entries, load_references(extra_dir=root / "reference"), top=reference_top)
    seed_noise = load_seed_noise(root)
    df = leaderboard_frame(entries, refs, seed_noise)
    out = BuildResult(root / "README.md", root / "index.html", root / "curves.png", root / "leaderboard.csv",
                      len(entries), len(refs))
    atomic_write_text(out.readme, build_readme(df, entries, title, names, seed_noise))
    atomic_write_text(out.index, render_index(df, title=title, provenance=_provenance_text(), version=__version__))
    write_curves(out.curves, entries, refs, seed_noise)
    atomic_write_with(out.csv, lambda tmp: df.to_csv(tmp, index=False))
    logger.info("built leaderboard in %s: %d entries, %d published rows", root, len(entries), len(refs))
    return out
