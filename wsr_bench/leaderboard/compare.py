"""Is one model really more robust than another? Paired comparisons of leaderboard entries (no torch here).

``wsr-bench leaderboard compare A.json B.json`` (:func:`compare_entries`, :func:`format_comparison`) pairs two
entries evaluated on the same images: per strength, both accuracies, the difference and the exact McNemar p-value.
With ``--shared-images`` it pairs two entries of one dataset split on the images both hold, e.g. a model's
AutoAttack entry on the first 1,000 test images against its PGD-20 entry on all 10,000: how much the stronger
attack takes off, on the same images. That trusts dataset name, split and index (the image hashes of two
different image sets cannot be compared), so it is opt-in.
The leaderboard page uses :func:`top_marks` to mark, at each strength, the rows not significantly below the best
row: by the paired McNemar test when the row and the best row share their images, otherwise (different images, or
an entry without per-sample results) by overlap of the two 95% Clopper-Pearson intervals, which is conservative.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from wsr_bench.epsilon import eps_label, find_eps
from wsr_bench.leaderboard.schema import WORST_CASE, LeaderboardEntry, Samples
from wsr_bench.leaderboard.stats import ALPHA, correct_at, discordant, mcnemar_exact

CLEAN = "clean"


class ComparisonError(ValueError):
    """Two entries that cannot be compared pairwise (the message says why)."""


@dataclass(frozen=True)
class ComparisonRow:
    """One strength of a paired comparison; ``only_a``/``only_b``: images only A / only B gets right."""

    label: str
    eps: float
    accuracy_a: float
    accuracy_b: float
    only_a: int
    only_b: int
    p_value: float

    @property
    def difference(self) -> float:
        """Accuracy of A minus accuracy of B (fraction)."""
        return self.accuracy_a - self.accuracy_b


def _check_pairable(a: LeaderboardEntry, b: LeaderboardEntry, names: tuple[str, str],
                    shared_images: bool = False) -> None:
    for entry, name in zip((a, b), names, strict=True):
        if entry.samples is None:
            raise ComparisonError(f"{name} has no per-sample results (written before schema version 2); "
                                  "re-evaluate it with this wsr-bench to compare pairwise")
    if a.threat_model != b.threat_model:
        raise ComparisonError(f"{names[0]} is {a.threat_model} but {names[1]} is {b.threat_model}")
    sa, sb = a.samples, b.samples
    if sa.same_images(sb):
        return
    if shared_images:
        if (a.dataset, sa.split) != (b.dataset, sb.split):
            raise ComparisonError(f"{names[0]} is {a.dataset}/{sa.split} but {names[1]} is {b.dataset}/{sb.split}: "
                                  "no shared images")
        if not set(sa.indices) & set(sb.indices):
            raise ComparisonError(f"{names[0]} and {names[1]} share no {sa.split} image index")
        return
    if (sa.split, sa.indices) != (sb.split, sb.indices):
        raise ComparisonError(f"{names[0]} and {names[1]} were not computed on the same images: {len(sa.indices)} vs "
                              f"{len(sb.indices)} images, different {sa.split}/{sb.split} indices (--shared-images "
                              "pairs them on the images both hold)")
    raise ComparisonError(f"{names[0]} and {names[1]} were not computed on the same images: same indices but "
                          f"different data (sha256 {sa.data_sha256[:12]} vs {sb.data_sha256[:12]}; another dataset, "
                          "split seed or image size?)")


def compare_entries(a: LeaderboardEntry, b: LeaderboardEntry, names: tuple[str, str] = ("A", "B"),
                    shared_images: bool = False) -> list[ComparisonRow]:
    """Paired comparison of the worst-case curves of ``a`` and ``b``: clean, then every strength both evaluated.

    ``shared_images``: entries of the same dataset split on different image sets are paired on the images both
    hold (:func:`shared_breaks`), and the accuracies are those of these images, not the entries' own.

    Raises:
        ComparisonError: an entry lacks per-sample results, the entries used different images (and
            ``shared_images`` is off, or they share none) or threat models, or they share no strength.
    """
    _check_pairable(a, b, names, shared_images)
    wa, wb = a.curves[WORST_CASE], b.curves[WORST_CASE]
    common = [e for e in wa.eps if find_eps(e, wb.eps) is not None]
    if not common:
        raise ComparisonError(f"{names[0]} and {names[1]} share no evaluated eps ({wa.eps_label} vs {wb.eps_label})")
    if a.samples.same_images(b.samples):
        rows = [_row(CLEAN, 0.0, a.samples.break_eps, b.samples.break_eps, a.clean_accuracy, b.clean_accuracy)]
        return rows + [_row(eps_label(e), e, a.samples.break_eps, b.samples.break_eps, wa.at(e), wb.at(e))
                       for e in common]
    breaks_a, breaks_b = shared_breaks(a.samples, b.samples)
    return [_row(label, e, breaks_a, breaks_b) for label, e in [(CLEAN, 0.0), *((eps_label(e), e) for e in common)]]


def shared_breaks(sa: Samples, sb: Samples) -> tuple[list[float | None], list[float | None]]:
    """The breaking strengths of the images both records hold (same split), in the order of ``sa``."""
    where_b = {index: k for k, index in enumerate(sb.indices)}
    pairs = [(sa.break_eps[k], sb.break_eps[where_b[index]]) for k, index in enumerate(sa.indices) if index in where_b]
    return [p[0] for p in pairs], [p[1] for p in pairs]


def _row(label: str, eps: float, breaks_a: Sequence[float | None], breaks_b: Sequence[float | None],
         acc_a: float | None = None, acc_b: float | None = None) -> ComparisonRow:
    """One strength: accuracies (the entries' own, or recomputed from the breaking strengths) and McNemar."""
    correct_a, correct_b = correct_at(breaks_a, eps), correct_at(breaks_b, eps)
    acc_a = sum(correct_a) / len(correct_a) if acc_a is None else acc_a
    acc_b = sum(correct_b) / len(correct_b) if acc_b is None else acc_b
    only_a, only_b = discordant(correct_a, correct_b)
    return ComparisonRow(label, eps, acc_a, acc_b, only_a, only_b, mcnemar_exact(only_a, only_b))


def format_comparison(a: LeaderboardEntry, b: LeaderboardEntry, rows: Sequence[ComparisonRow],
                      names: tuple[str, str] = ("A", "B")) -> str:
    """The text ``wsr-bench leaderboard compare`` prints: who is who, the shared images, one line per strength."""
    s = a.samples
    if s.same_images(b.samples):
        images = (f"the same {len(s.indices)} {s.split} images in both (data sha256 {s.data_sha256[:12]})")
    else:
        n_shared = len(set(s.indices) & set(b.samples.indices))
        images = (f"the {n_shared} {s.split} images both hold, by index (A has {len(s.indices)}, B "
                  f"{len(b.samples.indices)}; accuracies on these images only)")
    lines = [f"A = {a.model} ({names[0]})", f"B = {b.model} ({names[1]})",
             f"{a.dataset} / {a.threat_model}: {images}; worst case over each entry's attacks",
             f"{'eps':<8} {'A (%)':>7} {'B (%)':>7} {'A-B (pts)':>10} {'only A':>7} {'only B':>7} {'McNemar p':>10}"]
    for r in rows:
        star = " *" if r.p_value < ALPHA else ""
        lines.append(f"{r.label:<8} {100 * r.accuracy_a:>7.1f} {100 * r.accuracy_b:>7.1f} {100 * r.difference:>+10.1f} "
                     f"{r.only_a:>7d} {r.only_b:>7d} {r.p_value:>10.4f}{star}")
    lines.append(f"only A / only B: images one model gets right and the other wrong; p: exact two-sided McNemar "
                 f"test on them (* p < {ALPHA:g})")
    return "\n".join(lines)


@dataclass(frozen=True)
class Mark:
    """Whether a row is not significantly below the best row at one strength, and how that was decided.

    ``method``: ``"best"`` (it is the best row), ``"paired"`` (exact McNemar, same images) or ``"overlap"``
    (95% intervals overlap or not; different images or no per-sample results). ``p_value`` for ``"paired"``.
    """

    tied: bool
    method: str
    best: str
    p_value: float | None = None


def top_marks(entries: Sequence[LeaderboardEntry]) -> list[dict[str, Mark]]:
    """Per entry (same order), per worst-case eps label: its :class:`Mark` against the best entry of its
    leaderboard section (dataset, threat model and evaluation suite, :attr:`LeaderboardEntry.suite`) at that eps.
    A row is *tied* with the best when the two-sided McNemar p >= ``ALPHA`` (paired) or when its interval's upper
    end reaches the best row's lower end (overlap). Rows of different sections are never compared."""
    marks: list[dict[str, Mark]] = [{} for _ in entries]
    sections: dict[tuple[str, str, str], list[int]] = {}
    for i, e in enumerate(entries):
        sections.setdefault((e.dataset, e.threat_model, e.suite), []).append(i)
    for members in sections.values():
        labels = {lab for i in members for lab in entries[i].worst_case.eps_label}
        for label in labels:
            points = {i: _point(entries[i], label) for i in members}
            points = {i: p for i, p in points.items() if p is not None}
            best = max(points, key=lambda i: (points[i][1], -i))
            for i in points:
                marks[i][label] = _mark(entries[best], entries[i], points[best], points[i], best == i)
    return marks


def _point(entry: LeaderboardEntry, label: str) -> tuple[float, float, float, float] | None:
    """``(eps, accuracy, ci_low, ci_high)`` of the worst-case curve at ``label`` (None when not evaluated)."""
    wc = entry.worst_case
    if label not in wc.eps_label:
        return None
    k = wc.eps_label.index(label)
    return wc.eps[k], wc.accuracy[k], wc.ci_low[k], wc.ci_high[k]


def _mark(best: LeaderboardEntry, other: LeaderboardEntry, pb: tuple, po: tuple, is_best: bool) -> Mark:
    if is_best:
        return Mark(True, "best", best.model)
    if best.samples is not None and other.samples is not None and best.samples.same_images(other.samples):
        only_best, only_other = discordant(best.samples.correct_at(pb[0]), other.samples.correct_at(po[0]))
        p = mcnemar_exact(only_best, only_other)
        return Mark(p >= ALPHA, "paired", best.model, p)
    return Mark(po[3] >= pb[2], "overlap", best.model)
