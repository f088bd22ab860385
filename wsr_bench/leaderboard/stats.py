"""Sampling error of leaderboard numbers: exact binomial intervals and the exact McNemar test (no torch here).

Robust accuracy on n test images is a binomial proportion k/n, so a leaderboard of 200 images cannot tell 93.5%
from 92.0%. Two tools say how much a number and a difference mean:

* :func:`clopper_pearson`: the exact (Clopper-Pearson) 95% interval of one accuracy. Chosen over Wilson because it
  is exact (built from the binomial distribution itself, via beta quantiles), never undercovers (coverage >= 95%
  for every n and accuracy, where Wilson dips below 95% at some proportions), and stays meaningful at 0% and 100%,
  which robust accuracy reaches at large eps. The price is slightly wider intervals than Wilson's.
* :func:`mcnemar_exact`: two models evaluated on the *same* images are paired; only the discordant images (one
  model right, the other wrong) carry information about the difference, and under "no difference" each discordant
  image goes either way with probability 1/2. The exact test is a two-sided binomial test on them.

And for many numbers at once (issue 36):

* :func:`holm`: Holm's step-down adjustment of a family of p-values (the per-strength tests of a comparison, or of a
  leaderboard section);
* :func:`simultaneous_band`: a band that covers a whole curve at once (Bonferroni-level Clopper-Pearson);
* :func:`t_interval`, :func:`t_test`, :func:`combined_df`: an interval and a test whose variance adds terms of
  different degrees of freedom (test images and training seeds), Welch-Satterthwaite.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from wsr_bench.epsilon import same_eps

#: Confidence level of every interval in entries, tables and plots.
LEVEL = 0.95
#: Significance level of "significantly below the top row".
ALPHA = 0.05


def count_correct(accuracy: float, n: int) -> int:
    """The number of correct images behind ``accuracy`` on ``n`` images (entries store k/n, so this is exact)."""
    return max(0, min(int(n), round(float(accuracy) * int(n))))


def clopper_pearson(k: int, n: int, level: float = LEVEL) -> tuple[float, float]:
    """Exact two-sided interval of a binomial proportion with ``k`` successes out of ``n``.

    ``lower = Beta(alpha/2; k, n-k+1)`` and ``upper = Beta(1-alpha/2; k+1, n-k)``, with 0 at k=0 and 1 at k=n.
    Example: 62/100 -> (0.5175, 0.7152).

    Raises:
        ValueError: ``n < 1``, ``k`` outside ``[0, n]`` or ``level`` outside (0, 1).
    """
    from scipy.stats import beta

    k, n = int(k), int(n)
    if n < 1 or not 0 <= k <= n:
        raise ValueError(f"clopper_pearson needs 0 <= k <= n and n >= 1, got k={k}, n={n}")
    if not 0.0 < level < 1.0:
        raise ValueError(f"confidence level must be in (0,1), got {level}")
    a = 1.0 - level
    lower = 0.0 if k == 0 else float(beta.ppf(a / 2, k, n - k + 1))
    upper = 1.0 if k == n else float(beta.ppf(1 - a / 2, k + 1, n - k))
    return lower, upper


def accuracy_interval(accuracy: float, n: int, level: float = LEVEL) -> tuple[float, float]:
    """:func:`clopper_pearson` of an accuracy fraction measured on ``n`` images."""
    return clopper_pearson(count_correct(accuracy, n), n, level)


def mcnemar_exact(only_a: int, only_b: int) -> float:
    """Two-sided exact McNemar p-value from the discordant pairs.

    Args:
        only_a: images model A got right and model B wrong; only_b: the reverse.

    Returns:
        The two-sided binomial test p-value of ``only_a`` out of ``only_a + only_b`` at p=1/2 (1.0 when there are
        no discordant pairs: nothing speaks for a difference).
    """
    from scipy.stats import binomtest

    only_a, only_b = int(only_a), int(only_b)
    if only_a < 0 or only_b < 0:
        raise ValueError(f"discordant counts must be >= 0, got {only_a}, {only_b}")
    if only_a + only_b == 0:
        return 1.0
    return float(min(1.0, binomtest(only_a, only_a + only_b, 0.5).pvalue))


def correct_at(break_eps: Sequence[float | None], eps: float) -> list[bool]:
    """Per-image correctness at ``eps`` from per-image breaking strengths.

    A breaking strength is the smallest evaluated eps at which the image was misclassified (0: already wrong
    clean; None: never broken), so the image is still correct at ``eps`` exactly when its breaking eps is larger
    and not the same strength (:func:`~wsr_bench.epsilon.same_eps` absorbs float32 rounding of grid values).
    """
    return [b is None or (b > eps and not same_eps(b, eps)) for b in break_eps]


def discordant(a: Sequence[bool], b: Sequence[bool]) -> tuple[int, int]:
    """``(A right & B wrong, A wrong & B right)`` over paired per-image correctness."""
    if len(a) != len(b):
        raise ValueError(f"paired results need the same images, got {len(a)} and {len(b)}")
    return sum(x and not y for x, y in zip(a, b, strict=True)), sum(y and not x for x, y in zip(a, b, strict=True))


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values (family-wise error rate ``<= alpha`` when each is compared with alpha).

    Sort the m p-values ascending, multiply the i-th smallest (i from 0) by ``m - i``, take the running maximum and
    cap at 1; the result is in the input order. Holm is chosen over Bonferroni because it is uniformly more powerful
    with the same guarantee and no assumption on how the tests depend on each other (the strengths of one curve are
    strongly dependent). Hand example: ``holm([0.01, 0.04, 0.03]) == [0.03, 0.06, 0.06]``.
    """
    p = [float(v) for v in p_values]
    if any(not 0.0 <= v <= 1.0 for v in p):
        raise ValueError(f"p-values must lie in [0,1], got {p}")
    m, out, running = len(p), [0.0] * len(p), 0.0
    for rank, i in enumerate(sorted(range(m), key=lambda j: p[j])):
        running = max(running, min(1.0, (m - rank) * p[i]))
        out[i] = running
    return out


def bonferroni_level(level: float, m: int) -> float:
    """The per-point confidence level that makes ``m`` intervals hold together with probability ``>= level``."""
    if m < 1:
        raise ValueError(f"a band needs at least one point, got m={m}")
    return 1.0 - (1.0 - level) / m


def simultaneous_band(counts: Sequence[int], n: int, level: float = LEVEL) -> list[tuple[float, float]]:
    """A simultaneous ``level`` band for a whole curve: one Clopper-Pearson interval per point at the Bonferroni
    level ``1 - (1 - level) / m`` (m points).

    Every interval covers its true accuracy with probability ``>= 1 - (1 - level) / m`` (Clopper-Pearson never
    undercovers), so by the union bound all m cover at once with probability ``>= level``, whatever the dependence
    between the points. Chosen over a bootstrap max-t band because that one needs a standard error at every point
    and has none where a curve reaches 0% or 100% (which robust curves do at large eps), and is only asymptotically
    right; the price of Bonferroni is some width, since the points of one curve are strongly correlated.
    """
    band_level = bonferroni_level(level, len(counts))
    return [clopper_pearson(k, n, band_level) for k in counts]


def combined_df(terms: Sequence[tuple[float, float]]) -> float:
    """Welch-Satterthwaite degrees of freedom of a sum of variance estimates ``[(variance, df), ...]``.

    ``df = (sum v)^2 / sum(v^2 / df)``; a term with infinite df adds nothing to the denominator. Infinite when every
    term has infinite df (or the total variance is 0).
    """
    total = sum(v for v, _ in terms)
    denominator = sum(v * v / df for v, df in terms if v > 0 and math.isfinite(df))
    return math.inf if total <= 0 or denominator == 0 else total * total / denominator


def t_interval(mean: float, terms: Sequence[tuple[float, float]], level: float = LEVEL,
               clip: bool = True) -> tuple[float, float]:
    """``mean -+ t * sqrt(sum of variances)``, t the Student quantile at the Welch-Satterthwaite df of ``terms``
    (``[(variance, df), ...]``: e.g. the test images' and the training seeds'); clipped to [0, 1] when ``clip``
    (an accuracy; not a difference)."""
    from scipy.stats import t

    half = float(t.ppf(0.5 + level / 2, combined_df(terms))) * math.sqrt(sum(v for v, _ in terms))
    low, high = mean - half, mean + half
    return (max(0.0, low), min(1.0, high)) if clip else (low, high)


def t_test(difference: float, terms: Sequence[tuple[float, float]]) -> float:
    """Two-sided p-value of ``difference / sqrt(sum of variances)`` against Student t at the Welch-Satterthwaite df
    (1.0 when the variance is 0 and the difference too; 0.0 when only the variance is 0)."""
    from scipy.stats import t

    var = sum(v for v, _ in terms)
    if var <= 0:
        return 1.0 if difference == 0 else 0.0
    return float(min(1.0, 2.0 * t.sf(abs(difference) / math.sqrt(var), combined_df(terms))))
