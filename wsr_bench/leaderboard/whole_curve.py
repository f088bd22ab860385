"""Is A more robust than B *across the spectrum*? Whole-curve paired statistics from per-image breaking strengths.

Every entry stores each image's worst-case breaking strength (``samples.break_eps``), so each image has its own
curve: right up to its breaking strength, wrong from there on. Both whole-curve summaries are means of per-image
scores over the images:

* the **AUC** score of an image is the normalised trapezoid area under its own right/wrong curve on the grid
  ``0, e_1, ..., e_K`` (0 = clean), so the mean over the images is exactly the entry's AUC on that grid
  (:func:`~wsr_bench.leaderboard.schema.area_under_curve` is linear in the accuracies);
* the **paper's average** score of an image is the fraction of the paper's four strengths it survives.

On shared images the difference of two entries is the mean of the per-image differences ``d_i``, so

* its 95% interval is a paired percentile bootstrap over the images (:func:`paired_bootstrap_ci`: the images are
  resampled together, which keeps each image's pairing), and
* its test is the paired **sign-flip permutation test** of the mean difference (:func:`sign_flip_p`): under "A
  and B are equally robust" the two models' scores of an image are exchangeable, so each ``d_i`` is as likely to
  have either sign; the p-value is the share of the 2^n sign patterns (9,999 drawn at random when there are more)
  whose mean is at least as far from 0 as the observed one. The per-image AUC score is the image's breaking
  strength read on the common grid (censored at its largest eps, where "never broken" sits), so this is a paired
  test on the breaking strengths that weighs how much longer an image holds. Zeros (both models break the image at
  the same strength) contribute nothing to any sign pattern, and ties need no correction, so the coarse grid and
  the many never-broken or clean-wrong images need no special handling.

  Why not the Wilcoxon signed-rank test, the usual paired rank test: it tests a shift of the *pseudo-median* of the
  ``d_i``, not their mean, so it can contradict the interval of the very difference the table shows. On the zoo,
  ``preact_resnet18`` against ``pc_darts``: AUC difference -0.09 points, bootstrap 95% CI -0.46 to +0.27, yet
  Wilcoxon p = 0.014, because more images last a little longer under ``pc_darts`` (108 against 84) while those that
  last longer under ``preact_resnet18`` do so by more. The sign-flip test asks exactly whether the AUC (or average)
  difference is 0, and agrees with the interval. Why not the paired t-test: the ``d_i`` are discrete, mostly 0 and
  heavy-tailed; the permutation test needs no normality.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from wsr_bench.epsilon import EPS_TOL, PAPER_SPECTRUM, find_eps
from wsr_bench.leaderboard.stats import LEVEL, t_interval, t_test

#: Bootstrap resamples of every whole-curve interval, and the seed that makes them reproducible.
N_BOOT = 9999
BOOT_SEED = 0
#: Float slack when reading correctness at a grid eps from a breaking eps (float32 grid values).
_TOL = EPS_TOL

AUC = "AUC"
AVERAGE = "avg(" + ",".join(f"{e:g}" for e in PAPER_SPECTRUM) + ")"


def correctness(break_eps: Sequence[float | None], eps: Sequence[float]) -> np.ndarray:
    """``(n_images, len(eps))`` 0/1 matrix: image i is right at ``eps[j]`` (its breaking eps is larger)."""
    b = np.array([np.inf if v is None else float(v) for v in break_eps], dtype=float)
    return (b[:, None] > np.asarray(eps, dtype=float)[None, :] + _TOL).astype(float)


def auc_scores(break_eps: Sequence[float | None], grid: Sequence[float]) -> np.ndarray:
    """Per image, the normalised trapezoid area under its right/wrong curve on ``0, *grid`` (``grid`` ascending,
    > 0 at its end); the mean over images is the AUC of the accuracy curve on that grid."""
    xs = np.asarray(([0.0] if grid[0] > 0 else []) + [float(e) for e in grid])
    if len(xs) < 2 or xs[-1] <= 0:
        raise ValueError(f"an AUC needs a grid reaching above 0, got {list(grid)}")
    c = correctness(break_eps, xs)
    return ((c[:, 1:] + c[:, :-1]) / 2 * np.diff(xs)[None, :]).sum(1) / xs[-1]


def average_scores(break_eps: Sequence[float | None], spectrum: Sequence[float] = PAPER_SPECTRUM) -> np.ndarray:
    """Per image, the fraction of the ``spectrum`` strengths it survives (the paper's average, image by image)."""
    return correctness(break_eps, spectrum).mean(1)


def common_grid(eps_a: Sequence[float], eps_b: Sequence[float]) -> list[float]:
    """The strengths both curves evaluated (those of ``eps_a`` found in ``eps_b``)."""
    return [e for e in eps_a if find_eps(e, eps_b) is not None]


def has_spectrum(grid: Sequence[float], spectrum: Sequence[float] = PAPER_SPECTRUM) -> bool:
    """Whether every strength of ``spectrum`` is on ``grid`` (the paper's average needs all four)."""
    return all(find_eps(e, grid) is not None for e in spectrum)


def paired_bootstrap_ci(d: np.ndarray, level: float = LEVEL, n_boot: int = N_BOOT,
                        seed: int = BOOT_SEED) -> tuple[float, float]:
    """Percentile bootstrap interval of ``mean(d)``, ``d`` the per-image differences of two models on shared
    images (resampling the differences resamples the image pairs). A constant ``d`` gives ``(d, d)``.

    The per-image differences take few distinct values (they are read on a grid), so a resample is drawn as
    multinomial counts over those values: the same distribution as resampling the images one by one, at a cost that
    does not grow with the number of images (a leaderboard build runs dozens of these on 1,000-10,000 images)."""
    d = np.asarray(d, dtype=float)
    if len(d) == 0:
        raise ValueError("no shared images to bootstrap")
    if np.all(d == d[0]):
        return float(d[0]), float(d[0])
    values, counts = np.unique(d, return_counts=True)
    draws = np.random.default_rng(seed).multinomial(len(d), counts / len(d), size=n_boot)
    means = draws @ values / len(d)
    alpha = (1 - level) / 2
    low, high = np.percentile(means, [100 * alpha, 100 * (1 - alpha)])
    return float(low), float(high)


def sign_flip_p(d: np.ndarray, n_resamples: int = N_BOOT, seed: int = BOOT_SEED) -> float:
    """Two-sided paired sign-flip permutation p-value of ``mean(d)``: the share of sign patterns of the differences
    whose sum is at least as far from 0 as the observed one. Exact (every pattern) when the nonzero differences allow
    at most ``n_resamples`` patterns, else Monte Carlo with that many random patterns (seeded; the observed pattern
    is counted, as in scipy's ``permutation_test``, so never 0). The zeros are left out first: they change no
    pattern's sum, and the sum of the nonzero differences orders the patterns as the mean does. 1.0 when fewer than
    two differences are nonzero. Hand example: ``sign_flip_p([1, 2, 3]) == 0.25`` (2 of the 8 patterns reach |sum| 6).
    Written in numpy rather than through scipy's ``permutation_test``, which took about a second per call here."""
    d = np.asarray(d, dtype=float)
    nonzero = d[d != 0]
    n = len(nonzero)
    if n < 2:
        return 1.0
    observed = abs(float(nonzero.sum()))
    reach = observed - 1e-9 * max(1.0, observed)  # float slack: a pattern equal to the observed one counts
    if 2 ** n <= n_resamples:
        signs = 1.0 - 2.0 * ((np.arange(2 ** n)[:, None] >> np.arange(n)[None, :]) & 1)
        return float(np.mean(np.abs(signs @ nonzero) >= reach))
    rng, hits = np.random.default_rng(seed), 0
    for start in range(0, n_resamples, 500):
        signs = rng.choice((-1.0, 1.0), size=(min(500, n_resamples - start), n))
        hits += int(np.sum(np.abs(signs @ nonzero) >= reach))
    return float(min(1.0, (hits + 1) / (n_resamples + 1)))


@dataclass(frozen=True)
class WholeCurveStat:
    """One whole-curve summary of a paired comparison: both values, the difference A - B, its 95% interval and the
    test. ``test``: ``"sign-flip"`` (image term only) or ``"t+seed"`` (the seed term added); ``a_higher``/
    ``b_higher``: images whose score is higher under A / under B (the others tie)."""

    name: str
    value_a: float
    value_b: float
    ci_low: float
    ci_high: float
    p_value: float
    test: str
    a_higher: int
    b_higher: int

    @property
    def difference(self) -> float:
        return self.value_a - self.value_b


def whole_curve_stat(name: str, scores_a: np.ndarray, scores_b: np.ndarray,
                     seed_terms: Sequence[tuple[float, float]] = (), level: float = LEVEL) -> WholeCurveStat:
    """Compare per-image scores of A and B on the same images (same order).

    ``seed_terms``: ``[(variance of the row's mean over its seeds, df), ...]`` for the two rows; empty: test images
    only (bootstrap interval, sign-flip permutation test). Otherwise a t interval and test with the image variance
    of the mean difference (``var(d) / n``, n - 1 df) plus those terms.
    """
    a, b = np.asarray(scores_a, dtype=float), np.asarray(scores_b, dtype=float)
    if a.shape != b.shape or a.ndim != 1 or len(a) < 2:
        raise ValueError(f"paired scores need the same images (at least 2), got {a.shape} and {b.shape}")
    d = a - b
    diff = float(d.mean())
    if seed_terms:
        terms = [(float(d.var(ddof=1)) / len(d), len(d) - 1.0), *seed_terms]
        low, high = t_interval(diff, terms, level, clip=False)
        p, test = t_test(diff, terms), "t+seed"
    else:
        (low, high), p, test = paired_bootstrap_ci(d, level), sign_flip_p(d), "sign-flip"
    return WholeCurveStat(name, float(a.mean()), float(b.mean()), low, high, p, test, int((d > 0).sum()),
                          int((d < 0).sum()))


def whole_curve_pair(breaks_a: Sequence[float | None], breaks_b: Sequence[float | None],
                     grid: Sequence[float]) -> list[WholeCurveStat]:
    """The AUC (on ``grid``) and, when ``grid`` holds the paper's four strengths, the paper's average of two entries'
    per-image breaking strengths on the same images, image term only."""
    out = [whole_curve_stat(AUC, auc_scores(breaks_a, grid), auc_scores(breaks_b, grid))]
    if has_spectrum(grid):
        out.append(whole_curve_stat(AVERAGE, average_scores(breaks_a), average_scores(breaks_b)))
    return out
