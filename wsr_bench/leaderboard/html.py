"""``index.html``: the leaderboard page, rendered with Jinja2 (autoescape on: every entry field is escaped).

Each section's table sorts by any eps column, the paper-spectrum average or the AUC when its header is clicked
(a few lines of inline JavaScript reading numeric ``data-v`` attributes); ``curves.png`` is embedded. It reads on a
1280-pixel laptop screen: the model column stays put while the strengths scroll sideways inside the table's own box,
and each training recipe is shown short (:func:`short_text`) with the whole of it on hover.
"""

from __future__ import annotations

from typing import Any

import jinja2
import pandas as pd

from wsr_bench.leaderboard.reference import SOURCE_LABEL
from wsr_bench.leaderboard.tables import (
    AVG_HEADER,
    BAND_NOTE,
    EPS_PREFIX,
    MARK_LEGEND,
    detail_column,
    eps_columns,
    is_missing,
    is_reference_row,
    percent,
    published_sources,
    reference_note,
    sections,
)

TEMPLATE = "index.html.j2"


def _env() -> jinja2.Environment:
    return jinja2.Environment(loader=jinja2.PackageLoader("wsr_bench.leaderboard", "templates"), autoescape=True,
                              undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)


#: Characters of a training recipe shown in the table before the rest moves to the hover text.
SHORT_TEXT = 24


def short_text(text: Any, limit: int = SHORT_TEXT) -> str:
    """The first comma-separated parts of ``text`` that fit in ``limit`` characters (at least the first part, cut at
    ``limit``), with ``…`` when something was left out: ``"PGD-3 (eps 0.1), 3 epochs…"``."""
    full = "" if is_missing(text) else " ".join(str(text).split())
    if len(full) <= limit:
        return full
    parts, out = full.split(", "), ""
    for part in parts:
        candidate = f"{out}, {part}" if out else part
        if len(candidate) > limit:
            break
        out = candidate
    return (out or full[:limit].rstrip()) + "…"


def _num(value: Any) -> str:
    if is_missing(value):
        return ""
    return repr(float(value))


#: a table cell's marks and their defaults (``_cell``'s keywords): a text column, a flagged sanity cell, the 95%
#: interval shown below, the tie mark, the hover title, the seed-SD mark, an extra CSS class.
_CELL_MARKS: dict[str, Any] = {"text": False, "flag": False, "interval": "", "tied": "", "title": "", "seed": False,
                               "css": ""}


def _cell(value: Any, sort: Any = None, **marks: Any) -> dict[str, Any]:
    """A table cell: its text, its sort key and its marks (:data:`_CELL_MARKS`)."""
    unknown = set(marks) - set(_CELL_MARKS)
    if unknown:
        raise TypeError(f"unknown cell mark {sorted(unknown)[0]!r}")
    shown = "" if is_missing(value) else str(value)
    return {"text_value": shown, "sort": _num(sort), **_CELL_MARKS, **marks}


def _interval(low: Any, high: Any) -> str:
    return "" if is_missing(low) or is_missing(high) else f"{percent(low)}–{percent(high)}"


def _eps_cell(r: dict[str, Any], col: str) -> dict[str, Any]:
    """An accuracy cell with its interval (small, below) and the tie mark (bold; † when by interval overlap)."""
    tied, test = r.get(detail_column(col, "tied@")), r.get(detail_column(col, "test@"))
    interval = _interval(r.get(detail_column(col, "ci_low@")), r.get(detail_column(col, "ci_high@")))
    band = _interval(r.get(detail_column(col, "band_low@")), r.get(detail_column(col, "band_high@")))
    seed_sd = r.get(detail_column(col, "seed_sd@"))
    documented = not is_missing(seed_sd) and not is_missing(r.get("seeds")) and int(r["seeds"]) == 1
    title = "" if is_missing(test) else str(test)
    where = (f"95% CI {interval}" + (f" (with seed SD {100 * float(seed_sd):.2f} points)" if documented else "")
             + (f"; simultaneous band {band}" if band else "") + "; ") if interval else ""
    return _cell(percent(r[col]), r[col], interval=interval, tied="" if is_missing(tied) else str(tied),
                 title=where + title, seed=documented)


def _summary_cell(r: dict[str, Any], key: str) -> dict[str, Any]:
    """The average / AUC cell: bold when the whole-curve test ties it with the section's best row."""
    tied, test = r.get(f"{key}_tied"), r.get(f"{key}_test")
    return _cell(percent(r[key]), r[key], tied="" if is_missing(tied) else str(tied),
                 title="" if is_missing(test) else str(test))


def _section_view(name: str, part: pd.DataFrame) -> dict[str, Any]:
    cols = eps_columns(part)
    columns = [{"label": x, "sortable": False, "text": True} for x in ("model", "source", "architecture", "training")]
    columns += [{"label": "params (M)", "sortable": True, "text": False}, {"label": "clean", "sortable": True,
                                                                          "text": False}]
    columns += [{"label": c[len(EPS_PREFIX):], "sortable": True, "text": False} for c in cols]
    columns += [{"label": label, "sortable": True, "text": False} for label in (AVG_HEADER, "AUC", "n", "seeds")]
    columns += [{"label": "sanity", "sortable": False, "text": True}]
    rows = []
    for r in part.to_dict("records"):
        params = None if is_missing(r["params"]) else float(r["params"]) / 1e6
        cells = [_cell(r["model"], text=True), _cell(r["source"], text=True),
                 _cell(r["architecture"], text=True),
                 _cell(short_text(r["training"]), text=True, title=r["training"], css="recipe"),
                 _cell("" if params is None else f"{params:.3g}", params),
                 _cell(percent(r["clean"]), r["clean"], interval=_interval(r["clean_ci_low"], r["clean_ci_high"]))]
        cells += [_eps_cell(r, c) for c in cols]
        n = r["n_examples"]
        seeds = r.get("seeds")
        cells += [_summary_cell(r, "avg"), _summary_cell(r, "auc"), _cell("" if is_missing(n) else int(n), n),
                  _cell("" if is_missing(seeds) else int(seeds), seeds)]
        flagged = not is_missing(r["sanity"]) and r["sanity"] not in ("ok", "")
        cells.append(_cell(r["sanity"], text=True, flag=flagged, css="sanity"))
        rows.append({"cells": cells, "reference": is_reference_row(r), "title": r["provenance"] or ""})
    return {"name": name, "columns": columns, "rows": rows}


def render_index(df: pd.DataFrame, *, title: str = "wsr-bench wide-spectrum leaderboard",
                 curves_png: str = "curves.png", provenance: str = "", version: str = "") -> str:
    """The HTML page for the leaderboard frame ``df`` (see :func:`wsr_bench.leaderboard.tables.leaderboard_frame`).

    When published rows from sources other than RobustBench (papers) are shown, the legend says what they are.
    """
    views = [_section_view(name, part) for name, part in sections(df)] if not df.empty else []
    shown = published_sources(df)
    papers = any(source != SOURCE_LABEL for source in shown)
    legend = MARK_LEGEND + (" " + reference_note(shown, markdown=False) if papers else "")
    return _env().get_template(TEMPLATE).render(title=title, sections=views, curves_png=curves_png,
                                                avg_header=AVG_HEADER, provenance=provenance, version=version,
                                                legend=legend, band_note=BAND_NOTE)
