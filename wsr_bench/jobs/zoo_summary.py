"""The published zoo as a job's summary table: a compact Markdown table of every model of ``cfg.zoo`` as its
committed entries stand, generated into the README and ``docs/zoo.md`` between markers (``wsr-bench zoo --summary``,
``--write-summary``), never edited by hand."""

from __future__ import annotations

from pathlib import Path

from wsr_bench.config import ExperimentConfig, ZooModelConfig
from wsr_bench.epsilon import PAPER_SPECTRUM
from wsr_bench.jobs.zoo import entry_paths

__all__ = ["SUMMARY_BEGIN", "SUMMARY_END", "summary_filled", "write_summary", "zoo_summary"]

#: The markers delimiting the generated summary in a Markdown file (README.md, docs/zoo.md).
SUMMARY_BEGIN, SUMMARY_END = "<!-- zoo-table -->", "<!-- /zoo-table -->"


def _worst_at(entry, eps: float) -> float | None:
    """The entry's worst-case accuracy at ``eps`` (its only curve where it has no worst case)."""
    from wsr_bench.leaderboard.schema import WORST_CASE

    return (entry.curves.get(WORST_CASE) or next(iter(entry.curves.values()))).at(eps)


def _training_text(cfg: ExperimentConfig, member: ZooModelConfig) -> str:
    recipe = member.recipe or cfg.train.recipe
    epochs = member.epochs or cfg.train.epochs
    if recipe == "clean":
        return f"clean, {epochs} epochs"
    return f"{recipe.upper()}-{cfg.train.steps} at {cfg.train.eps:g}, {epochs} epochs"


def zoo_summary(cfg: ExperimentConfig) -> str:
    """A compact Markdown table of every model of ``cfg.zoo`` as its committed entries stand: clean and robust
    accuracy at the paper's four strengths, read from the AutoAttack entry when it exists (else the PGD sweep's),
    and which evaluation they come from; models not built yet say so. Generated, never edited by hand: the README
    and ``docs/zoo.md`` carry it between :data:`SUMMARY_BEGIN` / :data:`SUMMARY_END` (:func:`write_summary`)."""
    from wsr_bench.leaderboard.consistency import nesting_violations
    from wsr_bench.leaderboard.entry_files import load_entry

    def pct(v: float | None) -> str:
        return "–" if v is None else f"{100 * v:.1f}"

    rows, published = [], 0
    for member in cfg.zoo.models:
        aa_path, pgd_path = entry_paths(cfg, member.name)
        path = aa_path if aa_path.is_file() else pgd_path if pgd_path.is_file() else None
        if path is None:
            rows.append(f"| `{member.name}` | {_training_text(cfg, member)} | not built yet | | | | | | | | |")
            continue
        published += 1
        e = load_entry(path)
        how = (f"AutoAttack, {e.n_examples:,} images" if path == aa_path
               else f"PGD-{cfg.zoo.pgd_steps}, {e.n_examples:,} images (AutoAttack to come)")
        accs = " | ".join(pct(_worst_at(e, eps)) for eps in PAPER_SPECTRUM)
        sanity = ", ".join(e.flags) if e.flags else "ok"
        nested = nesting_violations(e)[0]
        rows.append(f"| `{member.name}` | {_training_text(cfg, member)} | {how} | {pct(e.clean_accuracy)} | {accs} | "
                    f"{pct(e.avg_robust_accuracy)} | {sanity} | {'?' if nested is None else nested} |")
    head = ("| model | training | evaluated with | clean | " + " | ".join(f"{eps:g}" for eps in PAPER_SPECTRUM)
            + " | avg | sanity | non-nested |")
    lines = [f"{published} of {len(cfg.zoo.models)} models of `{cfg.name}` published so far (robust accuracy "
             "in %, Linf eps on the [0,1] scale; intervals, training-seed terms, whole-curve tests and every strength "
             f"in [`{cfg.zoo.leaderboard}/README.md`]({cfg.zoo.leaderboard}/README.md); sanity: the sanity checks the "
             "entry failed, or ok; non-nested: images robust at a larger eps but broken at a smaller one, 0 by "
             "construction for cumulative and downward sweeps):", "", head,
             "|" + "---|" * (head.count("|") - 1), *rows]
    return "\n".join(lines)


def summary_filled(cfg: ExperimentConfig, path: str | Path) -> tuple[str, str]:
    """The Markdown file ``path`` as it is and with its summary block regenerated (links made relative to the
    file's folder): equal when the file is in step with the committed entries.

    Raises:
        ValueError: the file lacks the markers (the message names the file).
    """
    import os

    path = Path(path)
    text = path.read_text()
    if SUMMARY_BEGIN not in text or SUMMARY_END not in text:
        raise ValueError(f"{path}: no {SUMMARY_BEGIN} ... {SUMMARY_END} block to fill")
    summary = zoo_summary(cfg)
    rel = Path(os.path.relpath(cfg.zoo.leaderboard, path.parent)).as_posix()
    if rel != str(cfg.zoo.leaderboard):
        summary = summary.replace(f"]({cfg.zoo.leaderboard}/", f"]({rel}/")
    start = text.index(SUMMARY_BEGIN) + len(SUMMARY_BEGIN)
    return text, text[:start] + "\n\n" + summary + "\n\n" + text[text.index(SUMMARY_END):]


def write_summary(cfg: ExperimentConfig, path: str | Path) -> bool:
    """Replace the block between the summary markers of the Markdown file ``path`` with :func:`zoo_summary`;
    returns whether the file changed (see :func:`summary_filled`)."""
    from wsr_bench.infra.atomic import atomic_write_text

    text, new = summary_filled(cfg, path)
    if new != text:
        atomic_write_text(Path(path), new)
    return new != text
