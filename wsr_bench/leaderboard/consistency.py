"""Per-sample consistency of an entry: how many images have verdicts that are not nested across strengths.

The Linf balls are nested, so an image the attacks break at eps_j is broken at every larger eps. An image that the
whole attack (every attack of the entry) was run on at a larger eps *and failed*, while an adversarial example at
a smaller eps exists, has non-nested verdicts: the attack failed somewhere (a local optimum, too few steps, gradient
masking). The evaluator counts these images from what every attack did (``SpectrumResult.nesting_violations``) and
the entry records the count in ``evaluation["nesting_violations"]``.

Sweeps that never attack an image again at or above its breaking strength (the cumulative upward sweep over the
survivors, and the ``downward``/``bisect`` chain sweeps, which run the chain only below each image's break) cannot
produce a violation: for entries written before the count existed, :func:`nesting_violations` derives 0 from the
recorded sweep and says so, and leaves the count unknown for a sweep that attacks every image at every eps.
"""

from __future__ import annotations

from wsr_bench.leaderboard.schema import LeaderboardEntry

#: Sweeps whose structure makes a violation impossible (no attack at or above an image's breaking strength).
NESTED_BY_CONSTRUCTION = ("upward", "downward", "bisect")


def nesting_violations(entry: LeaderboardEntry) -> tuple[int | None, str]:
    """``(count, how)``: the recorded count (``how="recorded"``), 0 derived from a sweep that cannot violate
    nesting (``how="<sweep> sweep: by construction"``), or ``(None, "not recorded")``."""
    ev = entry.evaluation if isinstance(entry.evaluation, dict) else {}
    count = ev.get("nesting_violations")
    if isinstance(count, int) and not isinstance(count, bool) and count >= 0:
        return count, "recorded"
    sweep = ev.get("sweep")
    attack_all = bool((ev.get("settings") or {}).get("attack_all", False))
    if sweep in NESTED_BY_CONSTRUCTION and not attack_all:
        return 0, f"{sweep} sweep: by construction"
    return None, "not recorded"


def nesting_text(entry: LeaderboardEntry) -> str:
    """The sanity column's words: ``"non-nested 0"``, ``"non-nested 0 (downward sweep: by construction)"``,
    ``"non-nested 3"``
    or ``"non-nested ?"`` (not recorded)."""
    count, how = nesting_violations(entry)
    if count is None:
        return "non-nested ?"
    return f"non-nested {count}" + ("" if how == "recorded" else f" ({how})")
