"""``curves.png``: one robustness curve (worst case, eps 0 = clean) per model, one panel per leaderboard section
(dataset/threat model, and evaluation suite when entries name one), with its 95% Clopper-Pearson interval as a
shaded band of the same colour, and the published single points (RobustBench's, at most ``MAX_REFERENCE_POINTS``
of them, and every paper's) as crosses at their eps in the suite-less panel. Drawn on a bare
``matplotlib.figure.Figure`` (Agg canvas), so no display, no pyplot global state and no backend switch in the
caller's process.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from wsr_bench.io import atomic_write_with
from wsr_bench.leaderboard.reference import SOURCE_LABEL, ReferenceEntry
from wsr_bench.leaderboard.schema import LeaderboardEntry
from wsr_bench.leaderboard.tables import section_name

MAX_REFERENCE_POINTS = 8


def plot_curves(entries: Sequence[LeaderboardEntry], references: Sequence[ReferenceEntry] = ()) -> bytes:
    """Render the curves figure and return it as PNG bytes."""
    keys = sorted({(e.dataset, e.threat_model, e.suite) for e in entries}) or [("", "", "")]
    fig = Figure(figsize=(6.4 * len(keys), 4.4))
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, len(keys), squeeze=False)
    for ax, (ds, tm, suite) in zip(axes[0], keys, strict=True):
        refs = [r for r in references if (r.dataset, r.threat_model, "") == (ds, tm, suite)]
        _panel(ax, [e for e in entries if (e.dataset, e.threat_model, e.suite) == (ds, tm, suite)],
               _shown_references(refs), section_name(ds, tm, suite) if ds else "no entries yet",
               linf="Linf" in section_name(ds, tm))
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    return buf.getvalue()


def _shown_references(refs: Sequence[ReferenceEntry]) -> list[ReferenceEntry]:
    """The first ``MAX_REFERENCE_POINTS`` RobustBench points and every other published point, in the given order."""
    out, n_robustbench = [], 0
    for r in refs:
        if r.source == SOURCE_LABEL:
            n_robustbench += 1
            if n_robustbench > MAX_REFERENCE_POINTS:
                continue
        out.append(r)
    return out


def _panel(ax, entries: Sequence[LeaderboardEntry], refs: Sequence[ReferenceEntry], title: str,
           linf: bool = True) -> None:
    for e in entries:
        wc = e.worst_case
        clean = not wc.eps or wc.eps[0] > 0
        xs = ([0.0] if clean else []) + wc.eps
        ys = ([e.clean_accuracy] if clean else []) + wc.accuracy
        lows = ([e.clean_accuracy_ci[0]] if clean else []) + wc.ci_low
        highs = ([e.clean_accuracy_ci[1]] if clean else []) + wc.ci_high
        (line,) = ax.plot(xs, [100 * v for v in ys], marker="o", markersize=3, label=e.model)
        ax.fill_between(xs, [100 * v for v in lows], [100 * v for v in highs], color=line.get_color(), alpha=0.15,
                        linewidth=0)
    for r in refs:
        who = "RobustBench" if r.source == SOURCE_LABEL else r.source
        ax.scatter([r.eps], [100 * r.robust_accuracy], marker="x", s=30, label=f"{r.model} ({who})")
    ax.set_title(title)
    ax.set_xlabel("eps (Linf, [0,1] scale)" if linf else "eps")
    ax.set_ylabel("robust accuracy (%)")
    ax.set_ylim(0, 100)
    ax.grid(alpha=0.3)
    if entries or refs:
        ax.legend(fontsize=6, loc="best")


def write_curves(path: str | Path, entries: Sequence[LeaderboardEntry],
                 references: Sequence[ReferenceEntry] = ()) -> Path:
    """Write ``curves.png`` atomically."""
    png = plot_curves(entries, references)
    atomic_write_with(path, lambda tmp: Path(tmp).write_bytes(png))
    return Path(path)
