"""``curves.png``: one robustness curve (worst case, eps 0 = clean) per leaderboard row, one panel per section, one
above the other (dataset/threat model, and evaluation suite when entries name one), with two shaded bands of the
same colour: the pointwise 95% interval (darker) and the simultaneous 95% band over all its strengths (lighter,
:func:`~wsr_bench.leaderboard.marks.row_band`). The published single points (RobustBench's, at most
``MAX_REFERENCE_POINTS`` of them, and every paper's) are crosses at their eps in the suite-less panel. The legend
sits outside the axes, right of each panel, so it hides no curve. Drawn on a bare ``matplotlib.figure.Figure`` (Agg
canvas), so no display, no pyplot global state and no backend switch in the caller's process.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from wsr_bench.infra.atomic import atomic_write_with
from wsr_bench.leaderboard.marks import row_band, row_interval
from wsr_bench.leaderboard.reference import SOURCE_LABEL, ReferenceEntry
from wsr_bench.leaderboard.schema import LeaderboardEntry
from wsr_bench.leaderboard.seeds import Row, SeedNoise, group_rows
from wsr_bench.leaderboard.tables import section_name

MAX_REFERENCE_POINTS = 8


def plot_curves(entries: Sequence[LeaderboardEntry], references: Sequence[ReferenceEntry] = (),
                seed_noise: dict[tuple[str, str], SeedNoise] | None = None) -> bytes:
    """Render the curves figure and return it as PNG bytes (one curve per :class:`~wsr_bench.leaderboard.seeds.Row`:
    entries that differ only by training seed are drawn as their mean)."""
    rows = group_rows(entries, seed_noise)
    keys = sorted({(r.entry.dataset, r.entry.threat_model, r.entry.suite) for r in rows}) or [("", "", "")]
    # panels one above the other, each with its legend to its right: side by side, a long legend would run into
    # the next panel
    fig = Figure(figsize=(10.0, 4.4 * len(keys)))
    FigureCanvasAgg(fig)
    axes = fig.subplots(len(keys), 1, squeeze=False)
    for ax, (ds, tm, suite) in zip(axes[:, 0], keys, strict=True):
        refs = [r for r in references if (r.dataset, r.threat_model, "") == (ds, tm, suite)]
        _panel(ax, [r for r in rows if (r.entry.dataset, r.entry.threat_model, r.entry.suite) == (ds, tm, suite)],
               _shown_references(refs), section_name(ds, tm, suite) if ds else "no entries yet",
               linf="Linf" in section_name(ds, tm))
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
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


def _panel(ax, rows: Sequence[Row], refs: Sequence[ReferenceEntry], title: str, linf: bool = True) -> None:
    for row in rows:
        xs = [0.0, *row.curve_eps()]
        ys = [100 * row.mean(x) for x in xs]
        pointwise = [row_interval(row, x) for x in xs]
        band = row_band(row)
        label = row.model + (f" ({row.n_seeds} seeds)" if row.n_seeds > 1 else "")
        (line,) = ax.plot(xs, ys, marker="o", markersize=3, label=label)
        ax.fill_between(xs, [100 * lo for lo, _ in band], [100 * hi for _, hi in band], color=line.get_color(),
                        alpha=0.10, linewidth=0)
        ax.fill_between(xs, [100 * lo for lo, _ in pointwise], [100 * hi for _, hi in pointwise],
                        color=line.get_color(), alpha=0.22, linewidth=0)
    for r in refs:
        who = "RobustBench" if r.source == SOURCE_LABEL else r.source
        ax.scatter([r.eps], [100 * r.robust_accuracy], marker="x", s=30, label=f"{r.model} ({who})")
    ax.set_title(title)
    ax.set_xlabel("eps (Linf, [0,1] scale)" if linf else "eps")
    ax.set_ylabel("robust accuracy (%)")
    ax.set_ylim(0, 100)
    ax.grid(alpha=0.3)
    if rows or refs:
        # outside the axes (right), so no curve is hidden: the curves differ most just past the training radius
        ax.legend(fontsize=6, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0, frameon=False)


def write_curves(path: str | Path, entries: Sequence[LeaderboardEntry],
                 references: Sequence[ReferenceEntry] = (),
                 seed_noise: dict[tuple[str, str], SeedNoise] | None = None) -> Path:
    """Write ``curves.png`` atomically."""
    png = plot_curves(entries, references, seed_noise)
    atomic_write_with(path, lambda tmp: Path(tmp).write_bytes(png))
    return Path(path)
