"""Is one model really more robust than another? Paired comparisons of leaderboard entries (no torch here).

``wsr-bench leaderboard compare A.json B.json`` (:func:`compare_entries`, :func:`whole_curve_entries`,
:func:`format_comparison`) pairs two entries evaluated on the same images: per strength, both accuracies, the
difference, the exact McNemar p-value and its Holm-adjusted value over the strengths of the comparison (the
family: clean and every shared strength); then for the whole curve, the differences in AUC and in the paper's
average with a paired bootstrap 95% interval and the sign-flip permutation test on the per-image scores
(:mod:`wsr_bench.leaderboard.whole_curve`). These are test-image statistics only: the training seed is not in them
(the leaderboard's marks add it, :mod:`wsr_bench.leaderboard.marks`).
With ``--shared-images`` it pairs two entries of one dataset split on the images both hold, e.g. a model's
AutoAttack entry on the first 1,000 test images against its PGD-20 entry on all 10,000: how much the stronger
attack takes off, on the same images. That trusts dataset name, split and index (the image hashes of two
different image sets cannot be compared), so it is opt-in.
The leaderboard page marks the rows not significantly below the best row with :mod:`wsr_bench.leaderboard.marks`
(:func:`top_marks` is its one-entry-per-row form).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

from wsr_bench.epsilon import eps_label, find_eps
from wsr_bench.leaderboard.marks import Mark, section_marks
from wsr_bench.leaderboard.schema import WORST_CASE, LeaderboardEntry, Samples
from wsr_bench.leaderboard.seeds import Row
from wsr_bench.leaderboard.stats import ALPHA, correct_at, discordant, holm, mcnemar_exact
from wsr_bench.leaderboard.whole_curve import WholeCurveStat, common_grid, whole_curve_pair

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
    p_holm: float | None = None

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
        rows += [_row(eps_label(e), e, a.samples.break_eps, b.samples.break_eps, wa.at(e), wb.at(e)) for e in common]
    else:
        breaks_a, breaks_b = shared_breaks(a.samples, b.samples)
        rows = [_row(label, e, breaks_a, breaks_b)
                for label, e in [(CLEAN, 0.0), *((eps_label(e), e) for e in common)]]
    return [replace(r, p_holm=p) for r, p in zip(rows, holm([r.p_value for r in rows]), strict=True)]


def whole_curve_entries(a: LeaderboardEntry, b: LeaderboardEntry, names: tuple[str, str] = ("A", "B"),
                        shared_images: bool = False) -> list[WholeCurveStat]:
    """Whole-curve paired comparison of ``a`` and ``b`` on their shared images: the AUC on the strengths both
    evaluated and, when those hold the paper's four, the paper's average (A - B, paired bootstrap 95% interval,
    sign-flip permutation p; :func:`~wsr_bench.leaderboard.whole_curve.whole_curve_pair`).

    Raises:
        ComparisonError: as :func:`compare_entries`.
    """
    _check_pairable(a, b, names, shared_images)
    grid = common_grid(a.worst_case.eps, b.worst_case.eps)
    if not grid:
        raise ComparisonError(f"{names[0]} and {names[1]} share no evaluated eps")
    if a.samples.same_images(b.samples):
        return whole_curve_pair(a.samples.break_eps, b.samples.break_eps, grid)
    return whole_curve_pair(*shared_breaks(a.samples, b.samples), grid)


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
                      names: tuple[str, str] = ("A", "B"), whole: Sequence[WholeCurveStat] = ()) -> str:
    """The text ``wsr-bench leaderboard compare`` prints: who is who, the shared images, one line per strength
    (raw and Holm-adjusted McNemar p, ``*`` where the adjusted p < ``ALPHA``), then the whole-curve lines
    (``whole``, :func:`whole_curve_entries`) when given."""
    s = a.samples
    if s.same_images(b.samples):
        images = (f"the same {len(s.indices)} {s.split} images in both (data sha256 {s.data_sha256[:12]})")
    else:
        n_shared = len(set(s.indices) & set(b.samples.indices))
        images = (f"the {n_shared} {s.split} images both hold, by index (A has {len(s.indices)}, B "
                  f"{len(b.samples.indices)}; accuracies on these images only)")
    lines = [f"A = {a.model} ({names[0]})", f"B = {b.model} ({names[1]})",
             f"{a.dataset} / {a.threat_model}: {images}; worst case over each entry's attacks",
             f"{'eps':<8} {'A (%)':>7} {'B (%)':>7} {'A-B (pts)':>10} {'only A':>7} {'only B':>7} {'McNemar p':>10} "
             f"{'Holm p':>7}"]
    for r in rows:
        holm_p = r.p_value if r.p_holm is None else r.p_holm
        star = " *" if holm_p < ALPHA else ""
        lines.append(f"{r.label:<8} {100 * r.accuracy_a:>7.1f} {100 * r.accuracy_b:>7.1f} {100 * r.difference:>+10.1f} "
                     f"{r.only_a:>7d} {r.only_b:>7d} {r.p_value:>10.4f} {holm_p:>7.4f}{star}")
    lines.append(f"only A / only B: images one model gets right and the other wrong; p: exact two-sided McNemar "
                 f"test on them, Holm p: adjusted over the {len(rows)} strengths (* Holm p < {ALPHA:g})")
    if whole:
        lines += ["whole curve (per-image scores on the shared strengths):",
                  f"{'':<24} {'A (%)':>7} {'B (%)':>7} {'A-B (pts)':>10} {'95% CI (pts)':>16} {'A>B':>5} {'B>A':>5} "
                  f"{'sign-flip p':>11}"]
        for w in whole:
            ci = f"{100 * w.ci_low:+.2f} .. {100 * w.ci_high:+.2f}"
            star = " *" if w.p_value < ALPHA else ""
            lines.append(f"{w.name:<24} {100 * w.value_a:>7.2f} {100 * w.value_b:>7.2f} {100 * w.difference:>+10.2f} "
                         f"{ci:>16} {w.a_higher:>5d} {w.b_higher:>5d} {w.p_value:>11.4f}{star}")
        lines.append("A>B / B>A: images whose score (area under their own curve; share of the paper's strengths "
                     "survived) is higher under A / B; CI: paired bootstrap over the images; p: paired sign-flip "
                     f"permutation test of the mean per-image difference (* p < {ALPHA:g}); test images only, not "
                     "seeds")
    return "\n".join(lines)


def top_marks(entries: Sequence[LeaderboardEntry]) -> list[dict[str, Mark]]:
    """Per entry (same order), per worst-case eps label: its :class:`~wsr_bench.leaderboard.marks.Mark` against the
    best entry of its leaderboard section, each entry a row of its own with no seed term
    (:func:`wsr_bench.leaderboard.marks.section_marks`: McNemar on shared images, Holm over the section, interval
    overlap otherwise)."""
    return section_marks([Row([e]) for e in entries])[0]
