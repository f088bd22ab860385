"""Which rows of a leaderboard section are not significantly below its best row: per strength and for the whole
curve, with a Holm correction over the section and the training-seed term where one is known (no torch here).

Per strength, each row is tested against the best row at that strength:

* same images, no seed term on either row: the exact McNemar test (:func:`~wsr_bench.leaderboard.stats.
  mcnemar_exact`) on the discordant images, as before;
* same images and a seed term (a row of several seeds, or a documented seed SD at that strength,
  :mod:`wsr_bench.leaderboard.seeds`): a Welch-Satterthwaite t test of the mean difference with the image variance
  of the paired per-image differences plus each row's seed variance (:func:`~wsr_bench.leaderboard.stats.t_test`);
* different images, or no per-sample record: overlap of the two rows' 95% intervals (conservative, no p-value).

All p-values of a section's per-strength tests form one family (about 100 tests for 9 rows and 12 strengths) and
are Holm-adjusted together (:func:`~wsr_bench.leaderboard.stats.holm`); a row is *tied* with the best where its
adjusted p is >= ``ALPHA``. The whole curve (AUC, and the paper's average) is tested the same way against the best
row by that statistic, on per-image scores (:mod:`wsr_bench.leaderboard.whole_curve`: a sign-flip permutation
test without a seed term, t with it), each statistic a family of its own.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import numpy as np

from wsr_bench.epsilon import eps_label, find_eps
from wsr_bench.leaderboard.seeds import AUC_KEY, AVG, Row
from wsr_bench.leaderboard.stats import (
    ALPHA,
    LEVEL,
    bonferroni_level,
    count_correct,
    holm,
    mcnemar_exact,
    simultaneous_band,
    t_interval,
    t_test,
)
from wsr_bench.leaderboard.whole_curve import (
    auc_scores,
    average_scores,
    common_grid,
    correctness,
    has_spectrum,
    sign_flip_p,
)


@dataclass(frozen=True)
class Mark:
    """Whether a row is not significantly below the best row at one strength (or for one whole-curve statistic),
    and how that was decided.

    ``method``: ``"best"`` (it is the best row), ``"paired"`` (a test on the same images) or ``"overlap"`` (95%
    intervals overlap or not; different images or no per-sample results). For ``"paired"``: ``p_value`` (raw),
    ``p_holm`` (Holm-adjusted over the section's family) and ``test`` (``"McNemar"``, ``"sign-flip"`` or
    ``"t+seed"``). ``seed``: where the seed term came from (``"measured"``: the row's own seeds; ``"documented"``:
    a documented seed SD; ``""``: none).
    """

    tied: bool
    method: str
    best: str
    p_value: float | None = None
    p_holm: float | None = None
    test: str = ""
    seed: str = ""


def row_interval(row: Row, key: float | str, level: float = LEVEL) -> tuple[float, float] | None:
    """The row's ``level`` interval at a strength (0: clean) or for ``"avg"``/``"auc"``: with a seed term, a t
    interval with the image variance of the mean (binomial, or of the per-image seed-averaged scores for several
    seeds) plus the seed variance; without, the stored Clopper-Pearson interval (strengths only; None for avg/auc)."""
    term = row.seed_term(key)
    mean = row.mean(key)
    if mean is None:
        return None
    if term is None:
        if isinstance(key, str):
            return None
        e = row.entry
        if key == 0:
            return tuple(e.clean_accuracy_ci)
        k = find_eps(key, e.worst_case.eps)
        return e.worst_case.ci_low[k], e.worst_case.ci_high[k]
    n = row.entry.n_examples
    image_var = _image_var(row, key, mean, n)
    return t_interval(mean, [(image_var, n - 1.0), term[:2]], level)


def row_band(row: Row, level: float = LEVEL) -> list[tuple[float, float]]:
    """The simultaneous ``level`` band of the row's curve over clean and :meth:`Row.curve_eps` (m points): at each
    point the interval at the Bonferroni level ``1 - (1 - level) / m``; Clopper-Pearson
    (:func:`~wsr_bench.leaderboard.stats.simultaneous_band`) without a seed term, the t interval of
    :func:`row_interval` where a point has one. All m hold at once with probability >= ``level`` (union bound)."""
    points = [0.0, *row.curve_eps()]
    n = int(row.entry.n_examples)
    plain = simultaneous_band([count_correct(row.mean(e), n) for e in points], n, level)
    point_level = bonferroni_level(level, len(points))
    return [row_interval(row, e, point_level) if row.seed_term(e) else plain[j] for j, e in enumerate(points)]


def _image_var(row: Row, key: float | str, mean: float, n: int) -> float:
    """Variance of the row's mean from the test images: of the per-image seed-averaged scores when the row has its
    per-sample records, else binomial ``p(1-p)/n`` (strengths) or 0 (avg/auc without records)."""
    scores = _scores(row, key)
    if scores is not None and len(scores) > 1:
        return float(np.var(scores, ddof=1)) / len(scores)
    return 0.0 if isinstance(key, str) else mean * (1 - mean) / n


def _scores(row: Row, key: float | str, grid: Sequence[float] | None = None) -> np.ndarray | None:
    if key == AUC_KEY:
        grid = grid or row.curve_eps()
        return row.scores(lambda b: auc_scores(b, grid))
    if key == AVG:
        return row.scores(average_scores) if has_spectrum(row.curve_eps()) else None
    return row.scores(lambda b: correctness(b, [key])[:, 0])


def _paired(best: Row, other: Row, key: float | str, grid: Sequence[float] | None = None) -> Mark | None:
    """The raw paired test of ``other`` against ``best`` (None when they do not share their images)."""
    sb, so = best.entry.samples, other.entry.samples
    if sb is None or so is None or not sb.same_images(so) or best.breaks() is None or other.breaks() is None:
        return None
    terms = [t for t in (best.seed_term(key), other.seed_term(key)) if t is not None]
    seed = "measured" if any(t[2] == "measured" for t in terms) else ("documented" if terms else "")
    a, b = _scores(best, key, grid), _scores(other, key, grid)
    if a is None or b is None:
        return None
    d = a - b
    if terms:
        image = (float(np.var(d, ddof=1)) / len(d), len(d) - 1.0)
        p, test = t_test(float(d.mean()), [image, *(t[:2] for t in terms)]), "t+seed"
    elif isinstance(key, str):
        p, test = sign_flip_p(d), "sign-flip"
    else:
        p, test = mcnemar_exact(int((d > 0).sum()), int((d < 0).sum())), "McNemar"
    return Mark(False, "paired", best.model, p, None, test, seed)


def _overlap(best: Row, other: Row, key: float) -> Mark | None:
    ib, io = row_interval(best, key), row_interval(other, key)
    if ib is None or io is None:
        return None
    seed = "documented" if (best.seed_term(key) or other.seed_term(key)) else ""
    return Mark(io[1] >= ib[0], "overlap", best.model, seed=seed)


def _decide(members: Sequence[int], rows: Sequence[Row], keys: Sequence[float | str],
            value: Callable[[Row, float | str], float | None],
            paired: Callable[[Row, Row, float | str], Mark | None],
            overlap: bool) -> dict[tuple[int, float | str], Mark]:
    """Marks of one family: for each key, every row of ``members`` against the best row by ``value``, then Holm
    over every paired p-value of the family."""
    out: dict[tuple[int, float | str], Mark] = {}
    for key in keys:
        values = {i: value(rows[i], key) for i in members}
        values = {i: v for i, v in values.items() if v is not None}
        if not values:
            continue
        best = max(values, key=lambda i: (values[i], -i))
        for i in values:
            if i == best:
                out[(i, key)] = Mark(True, "best", rows[best].model)
                continue
            mark = paired(rows[best], rows[i], key)
            if mark is None and overlap:
                mark = _overlap(rows[best], rows[i], key)
            if mark is not None:
                out[(i, key)] = mark
    tested = [k for k, m in out.items() if m.method == "paired"]
    for k, p in zip(tested, holm([out[k].p_value for k in tested]), strict=True):
        out[k] = replace(out[k], p_holm=p, tied=p >= ALPHA)
    return out


def section_marks(rows: Sequence[Row]) -> tuple[list[dict[str, Mark]], list[dict[str, Mark]]]:
    """``(per-strength marks, whole-curve marks)`` of every row (same order): per row, ``{eps label: Mark}`` (the
    clean column is not marked) and ``{"auc" | "avg": Mark}``. Rows of different sections (dataset, threat model,
    suite) are never compared."""
    strength: list[dict[str, Mark]] = [{} for _ in rows]
    whole: list[dict[str, Mark]] = [{} for _ in rows]
    sections: dict[tuple[str, str, str], list[int]] = {}
    for i, r in enumerate(rows):
        sections.setdefault((r.entry.dataset, r.entry.threat_model, r.entry.suite), []).append(i)
    for members in sections.values():
        eps = sorted({e for i in members for e in rows[i].curve_eps()})
        marks = _decide(members, rows, eps, lambda r, e: r.mean(e) if e in r.curve_eps() else None, _paired, True)
        for (i, e), m in marks.items():
            strength[i][eps_label(e)] = m
        for key in (AUC_KEY, AVG):
            marks = _decide(members, rows, [key], lambda r, k: r.mean(k), _whole_paired, False)
            for (i, k), m in marks.items():
                whole[i][k] = m
    return strength, whole


def _whole_paired(best: Row, other: Row, key: float | str) -> Mark | None:
    grid = common_grid(best.curve_eps(), other.curve_eps())
    if not grid or (key == AVG and not has_spectrum(grid)):
        return None
    return _paired(best, other, key, grid)
