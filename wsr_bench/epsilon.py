"""Perturbation strengths: parse ``"8/255"``-style strings, refuse bad values, and label eps for display.

Torch-free on purpose: the leaderboard (which must not import torch), the CLI and the configs all use it.
Linf eps live on the [0, 1] image scale, so 8/255 ~ 0.0314 and the paper's spectrum is {0.03, 0.10, 0.17, 0.25}.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from fractions import Fraction

#: The paper's evaluation spectrum (Linf, [0,1] scale); "average robust accuracy" is the mean over it.
PAPER_SPECTRUM: tuple[float, ...] = (0.03, 0.10, 0.17, 0.25)

#: Two eps closer than this are the same strength (0.0314 written as 8/255 or 0.031372549 is one column).
EPS_TOL = 1e-6


def parse_eps(value: str | float | int, *, max_eps: float = 1.0) -> float:
    """Parse one perturbation strength: a number (``0.03``) or a fraction string (``"8/255"``).

    Args:
        value: the strength as a float/int or string (``"0.03"``, ``"8/255"``, ``"1e-2"``).
        max_eps: largest accepted value; Linf eps on [0,1] images never exceed 1 (L2 callers may raise it).

    Returns:
        The strength as a float in ``[0, max_eps]``.

    Raises:
        ValueError: unparsable, NaN/inf, negative, or above ``max_eps`` (with a "did you mean N/255?" hint,
            since ``8`` almost always means 8/255 on the [0,255] pixel scale).
    """
    text = str(value).strip()
    try:
        eps = float(Fraction(text)) if "/" in text else float(text)
    except (ValueError, ZeroDivisionError):
        raise ValueError(f"cannot parse eps {value!r}: expected a number like 0.03 or a fraction like 8/255") from None
    if not math.isfinite(eps):
        raise ValueError(f"eps must be a finite number, got {value!r}")
    if eps < 0:
        raise ValueError(f"eps must be >= 0, got {value!r} (a perturbation budget is a norm bound)")
    if eps > max_eps:
        hint = _per_255_hint(eps, text)
        raise ValueError(f"eps {value!r} is above {max_eps:g}: eps is on the [0,1] image scale{hint}")
    return eps


def check_eps(eps: float, what: str, *, allow_zero: bool = False, error: type[ValueError] = ValueError) -> float:
    """Refuse a Linf strength outside (0, 1] (``[0, 1]`` with ``allow_zero``): the one range rule that configs,
    training recipes and attacks share.

    Args:
        eps: the strength, already a number (use :func:`parse_eps` for strings).
        what: how the message names it (``"train.eps"``, ``"recipe eps"``, ``"PGD strength"``).
        allow_zero: accept 0 (no perturbation), e.g. for the ``clean`` recipe.
        error: the ``ValueError`` subclass to raise (``ConfigError`` from the config).

    Returns:
        ``eps`` as a float.

    Raises:
        error: NaN, out of range; a value in (1, 255] gets a "did you mean N/255?" hint.
    """
    value = float(eps)
    if not ((0 <= value if allow_zero else 0 < value) and value <= 1):
        bounds = "[0, 1]" if allow_zero else "(0, 1]"
        hint = _per_255_hint(value, f"{value:g}") if value > 1 else ""
        raise error(f"{what} {value:g} is outside {bounds}; eps is on the [0,1] image scale (8/255 = 0.031){hint}")
    return value


def _per_255_hint(eps: float, text: str) -> str:
    """``"; did you mean 8/255 (= 0.0314)?"`` for a strength written on the [0,255] pixel scale, else ``""``."""
    return f"; did you mean {text}/255 (= {eps / 255:.4f})?" if eps <= 255 else ""


def parse_eps_list(values: str | float | Iterable[str | float], *, max_eps: float = 1.0) -> list[float]:
    """Parse ``"0.03,8/255"`` (or a list of numbers/strings) into a sorted list of distinct strengths.

    Raises:
        ValueError: empty list or any entry refused by :func:`parse_eps`.
    """
    if isinstance(values, str):
        items: list[str | float] = [v for v in values.replace(" ", "").split(",") if v]
    elif isinstance(values, (int, float)):
        items = [values]
    else:
        items = list(values)
    if not items:
        raise ValueError("eps list is empty: give at least one strength, e.g. 0.03,8/255")
    return dedupe_eps(parse_eps(v, max_eps=max_eps) for v in items)


def dedupe_eps(eps: Iterable[float]) -> list[float]:
    """Sort strengths ascending and merge those closer than :data:`EPS_TOL`."""
    out: list[float] = []
    for e in sorted(float(v) for v in eps):
        if not out or e - out[-1] > EPS_TOL:
            out.append(e)
    return out


def eps_label(eps: float) -> str:
    """Display label: ``"8/255"`` when eps is (to 1e-6) a multiple of 1/255 below 1, else ``"0.03"``-style.

    >>> eps_label(8 / 255), eps_label(0.03), eps_label(0.0), eps_label(0.5)
    ('8/255', '0.03', '0', '0.5')
    """
    eps = float(eps)
    if eps == 0:
        return "0"
    k = round(eps * 255)
    if 0 < k < 255 and abs(eps - k / 255) < EPS_TOL and not _is_short_decimal(eps):
        return f"{k}/255"
    return f"{eps:.6g}"


def _is_short_decimal(eps: float) -> bool:
    """True for strengths people write as decimals (0.5, 0.2, 0.03); 51/255 = 0.2 reads better as 0.2."""
    return abs(eps - round(eps, 3)) < 1e-12


def find_eps(eps: float, grid: Sequence[float], tol: float = 1e-4) -> int | None:
    """Index of the grid strength within ``tol`` of ``eps`` (None when absent); 0.03 and 8/255 differ."""
    for i, g in enumerate(grid):
        if abs(float(g) - float(eps)) <= tol:
            return i
    return None
