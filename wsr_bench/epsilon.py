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

#: The one tolerance that decides whether two strengths are equal, everywhere (de-duplication, labels, lookup in a
#: grid, a curve's value at a strength, a sample's breaking eps against a grid): 8/255 and 0.031372549 are one
#: column, 0.03 and 8/255 (0.0314) two.
EPS_TOL = 1e-6

#: The largest strength each threat model accepts: Linf on the [0,1] image scale, L2 and L1 norms of a whole image
#: (L1 sums |delta| over every value, e.g. 12 on CIFAR-10). :func:`max_eps` reads it.
MAX_EPS: dict[str, float] = {"Linf": 1.0, "L2": 1e3, "L1": 1e5}


def max_eps(threat_model: str | None = "Linf") -> float:
    """The largest strength ``threat_model`` accepts (:data:`MAX_EPS`; None: any threat model's, the largest)."""
    return max(MAX_EPS.values()) if threat_model is None else MAX_EPS[threat_model]


def same_eps(a: float, b: float) -> bool:
    """Whether two strengths are the same: within :data:`EPS_TOL`, relative to the strengths above 1 (large L2/L1
    budgets, whose float32 copies differ from the float64 grid by more than 1e-6)."""
    a, b = float(a), float(b)
    return abs(a - b) <= EPS_TOL * max(1.0, abs(a), abs(b))


def parse_eps(value: str | float | int, *, threat_model: str | None = "Linf") -> float:
    """Parse one perturbation strength: a number (``0.03``, kept as it is) or a string (``"0.03"``, ``"8/255"``).

    The one eps parser: the CLI's ``--eps``, the configs, :class:`~wsr_bench.evaluate.options.SpectrumOptions` and the
    attacks all come here (a list through :func:`parse_eps_list`); numbers are never turned into text and back.

    Args:
        value: the strength as a float/int or string (``"0.03"``, ``"8/255"``, ``"1e-2"``).
        threat_model: whose bound applies (:func:`max_eps`: Linf eps on [0,1] images never exceed 1); None: the
            largest of any threat model (where the threat model is checked later, e.g. the CLI's ``--eps``).

    Returns:
        The strength as a float in ``[0, max_eps(threat_model)]``.

    Raises:
        ValueError: unparsable, NaN/inf, negative, or above the bound (with a "did you mean N/255?" hint,
            since ``8`` almost always means 8/255 on the [0,255] pixel scale).
    """
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        eps, text = float(value), f"{value:g}"
    else:
        text = str(value).strip()
        try:
            eps = float(Fraction(text)) if "/" in text else float(text)
        except (ValueError, ZeroDivisionError):
            raise ValueError(f"cannot parse eps {value!r}: expected a number like 0.03 or a fraction like 8/255"
                             ) from None
    if not math.isfinite(eps):
        raise ValueError(f"eps must be a finite number, got {value!r}")
    if eps < 0:
        raise ValueError(f"eps must be >= 0, got {value!r} (a perturbation budget is a norm bound)")
    bound = max_eps(threat_model)
    if eps > bound:
        hint = _per_255_hint(eps, text)
        raise ValueError(f"eps {value!r} is above {bound:g}: eps is on the [0,1] image scale{hint}")
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


def parse_eps_list(values: str | float | Iterable[str | float], *, threat_model: str | None = "Linf"
                   ) -> list[float]:
    """Parse ``"0.03,8/255"`` (or a list of numbers/strings) into a sorted list of distinct strengths (each by
    :func:`parse_eps`, under ``threat_model``'s bound).

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
    return dedupe_eps(parse_eps(v, threat_model=threat_model) for v in items)


def dedupe_eps(eps: Iterable[float]) -> list[float]:
    """Sort strengths ascending and merge those closer than :data:`EPS_TOL`."""
    out: list[float] = []
    for e in sorted(float(v) for v in eps):
        if not out or e - out[-1] > EPS_TOL:
            out.append(e)
    return out


def eps_label(eps: float) -> str:
    """Display label: ``"8/255"`` when eps is (to :data:`EPS_TOL`) a multiple of 1/255 below 1, else ``"0.03"``-style.

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


def find_eps(eps: float, grid: Sequence[float]) -> int | None:
    """Index of the grid strength that is ``eps`` (:func:`same_eps`; None when absent); 0.03 and 8/255 differ."""
    for i, g in enumerate(grid):
        if same_eps(g, eps):
            return i
    return None
