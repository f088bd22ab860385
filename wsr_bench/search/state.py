"""The files of a search run folder, and the checkpoint that lets a search resume exactly.

A run folder holds ``config.yaml`` (resolved config), ``search.log`` (human readable), ``metrics.jsonl`` (one record
per task of Algorithm 1), ``checkpoint.pt`` (everything needed to continue: super-network, optimizers, ``A``, the
estimators and their memories, RNG states, task counter; rewritten atomically after every task) and, when the
search ends, ``genotype.json``, ``genotype.png`` (the cells drawn), ``search_report.json`` (collapse diagnostics),
``arch_weights.safetensors`` and ``arch_weights.png``.

Resuming loads the checkpoint and drops metric records of tasks after it (a run killed between writing a record and
its checkpoint would otherwise log that task twice), so a resumed run leaves the same files as an uninterrupted one.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import torch

from wsr_bench.infra.atomic import atomic_write_text, atomic_write_with
from wsr_bench.infra.checkpoint import load_checkpoint, save_checkpoint
from wsr_bench.infra.run_folder import RunFolder
from wsr_bench.search_space.genotype import Genotype
from wsr_bench.search_space.ops import PRIMITIVES

logger = logging.getLogger(__name__)

__all__ = ["CHECKPOINT_VERSION", "SearchCheckpointError", "SearchFolder", "plot_arch_weights", "plot_genotype"]

# 3: the supernet's A is saved as `arch_weights`; 2: population as (hard, soft, noise) draws, op counts, the official
# recipe's state
CHECKPOINT_VERSION = 3
# What a resumed search must share with the run that wrote the checkpoint: the config sections the search reads
# (model/train/eval/run sections belong to later stages and may change), except the keys below.
SEARCH_SECTIONS = ("seed", "data", "search")
RESUMABLE_CHANGES = ("search_steps", "progress")


class SearchCheckpointError(ValueError):
    """A run folder that cannot be used as asked: an existing search without ``--resume``, or a mismatch."""


class SearchFolder(RunFolder):
    """A search run folder (see module docstring): the common files plus what the search writes at its end."""

    log_name = "search.log"

    def __init__(self, root: str | Path):
        super().__init__(root)
        self.genotype = self.root / "genotype.json"
        self.arch_weights_file = self.root / "arch_weights.safetensors"  # the architecture weights A
        self.plot = self.root / "arch_weights.png"
        self.report = self.root / "search_report.json"
        self.cells_plot = self.root / "genotype.png"

    def check_fresh(self) -> None:
        """Refuse to start over a folder that already holds a search (``--resume`` continues it)."""
        if self.checkpoint.exists() or self.genotype.exists():
            raise SearchCheckpointError(f"{self.root} already holds a search (checkpoint.pt/genotype.json); pass "
                                        f"--resume to continue it or choose another --out folder")

    def truncate_metrics(self, next_task: int) -> None:
        """Keep only records of tasks before ``next_task`` (those the checkpoint already covers)."""
        if self.metrics.exists():
            self.write_metrics([r for r in self.read_metrics() if int(r.get("task", -1)) < next_task])

    def save_checkpoint(self, state: dict[str, Any]) -> None:
        save_checkpoint(self.checkpoint, {"version": CHECKPOINT_VERSION, **state})

    def load_checkpoint(self, config: dict[str, Any]) -> dict[str, Any]:
        """Read the checkpoint and check it was written by a search with the same settings as ``config``."""
        state = load_checkpoint(self.checkpoint)
        if state.get("version") != CHECKPOINT_VERSION:
            raise SearchCheckpointError(f"{self.checkpoint} has version {state.get('version')}, expected "
                                        f"{CHECKPOINT_VERSION}; start a new search in another folder")
        old = _with_defaults({k: v for k, v in state.get("config", {}).items() if k in SEARCH_SECTIONS})
        diff = _config_difference(old, {k: v for k, v in config.items() if k in SEARCH_SECTIONS})
        if diff:
            raise SearchCheckpointError(f"cannot resume {self.root}: config key {diff} differs from the checkpoint's "
                                        f"(only search.{' / search.'.join(RESUMABLE_CHANGES)} may change)")
        return state

    def write_results(self, genotype: Genotype, arch_weights: torch.Tensor, history: torch.Tensor) -> None:
        """Write ``genotype.json``, ``arch_weights.safetensors`` and ``arch_weights.png`` (each atomically)."""
        from safetensors.torch import save_file

        atomic_write_text(self.genotype, genotype.to_json() + "\n")
        tensors = {"arch_weights": arch_weights.detach().float().cpu().contiguous(),
                   "probabilities": torch.softmax(arch_weights.detach().float().cpu(), -1).contiguous()}
        atomic_write_with(self.arch_weights_file, lambda tmp: save_file(tensors, str(tmp), metadata={
            "primitives": ",".join(PRIMITIVES), "layout": "(cell: normal|reduce, edge, primitive)"}))
        atomic_write_with(self.plot, lambda tmp: plot_arch_weights(history, tmp))
        atomic_write_with(self.cells_plot, lambda tmp: plot_genotype(genotype, tmp))

    def write_report(self, report: dict[str, Any]) -> None:
        """Write ``search_report.json`` atomically and log its one-line summary."""
        from wsr_bench.search.diagnostics import describe_report

        atomic_write_text(self.report, json.dumps(report, indent=1) + "\n")
        logger.info(describe_report(report))


def _with_defaults(old: dict[str, Any]) -> dict[str, Any]:
    """A checkpoint's config with the keys added since it was written at their defaults (a key a search did not
    know is the behaviour its default keeps: ``search.direction: minimize``, ``search.vle.measure_draws: 1`` ...),
    and a search section written before it had sections (``search.ane_batch``) in today's layout
    (``search.ane.batch``)."""
    from wsr_bench.config import ExperimentConfig, config_to_dict, nest_search_keys

    if isinstance(old.get("search"), dict):
        old = {**old, "search": nest_search_keys(old["search"])}
    defaults = config_to_dict(ExperimentConfig())
    return {k: _merged(defaults[k], v) if isinstance(v, dict) and isinstance(defaults.get(k), dict) else v
            for k, v in old.items()}


def _merged(defaults: dict[str, Any], old: dict[str, Any]) -> dict[str, Any]:
    """``defaults`` overwritten by ``old``, section by section."""
    out = dict(defaults)
    for k, v in old.items():
        out[k] = _merged(defaults[k], v) if isinstance(v, dict) and isinstance(defaults.get(k), dict) else v
    return out


def _config_difference(old: dict[str, Any], new: dict[str, Any], prefix: str = "") -> str | None:
    """The first dotted key whose value differs between two config dicts (ignoring resumable changes)."""
    for key in sorted(set(old) | set(new)):
        dotted = f"{prefix}{key}"
        if prefix == "search." and key in RESUMABLE_CHANGES:
            continue
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            found = _config_difference(a, b, dotted + ".")
            if found:
                return found
        elif a != b:
            return dotted
    return None


def plot_arch_weights(history: torch.Tensor, path: str | Path) -> None:
    """Plot the architecture weights over the search: for each cell type, the mean softmax(A) weight of every
    primitive over the edges, one point per task. ``history`` is ``(tasks+1, 2, E, K)`` raw ``A`` snapshots."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    probs = torch.softmax(history.float(), -1).mean(2).numpy()  # (T, 2, K)
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8), sharey=True)
    for c, (ax, title) in enumerate(zip(axes, ("normal cell", "reduction cell"), strict=True)):
        for k, name in enumerate(PRIMITIVES):
            ax.plot(range(len(probs)), probs[:, c, k], label=name, lw=1.5)
        ax.set_title(title)
        ax.set_xlabel("task (warm-up, population, search steps)")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("mean softmax(A) over edges")
    axes[1].legend(fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5))
    fig.tight_layout()
    fig.savefig(path, format="png", dpi=110)
    plt.close(fig)


def plot_genotype(genotype: Genotype, path: str | Path) -> None:
    """Draw the normal and reduction cells of ``genotype`` as graphs, left to right: the inputs c_{k-2} and c_{k-1},
    the intermediate nodes in one column, the output c_{k}; every edge labelled with its op (parameter-free ops in
    red)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from wsr_bench.search.diagnostics import PARAMETER_FREE

    fig, axes = plt.subplots(1, 2, figsize=(13, 5.4))
    for ax, (kind, edges, concat) in zip(axes, (("normal", genotype.normal, genotype.normal_concat),
                                                ("reduce", genotype.reduce, genotype.reduce_concat)), strict=True):
        steps = len(edges) // 2
        top = steps - 1.0
        pos = {0: (0.0, top - 0.5), 1: (0.0, 0.5), "out": (5.4, top / 2)}
        pos.update({n + 2: (3.0, top - n) for n in range(steps)})  # the intermediate nodes in one column
        for k, (op, src) in enumerate(edges):
            color = "tab:red" if op in PARAMETER_FREE else "tab:blue"
            between_nodes = src >= 2  # an edge inside the column bulges to its right, the others are straight
            _draw_edge(ax, pos[src], pos[k // 2 + 2], op, color, -0.7 if between_nodes else 0.0)
        for n in concat:
            _draw_edge(ax, pos[n], pos["out"], None, "0.7", 0.0)
        labels = {0: "c_{k-2}", 1: "c_{k-1}", "out": "c_{k}", **{n + 2: str(n) for n in range(steps)}}
        for node, (x, y) in pos.items():
            ax.text(x, y, labels[node], ha="center", va="center", fontsize=10, zorder=3,
                    bbox={"boxstyle": "round", "fc": "lightyellow" if node in (0, 1, "out") else "lightblue"})
        free = sum(op in PARAMETER_FREE for op, _ in edges)
        ax.set_title(f"{kind} cell: {free}/{len(edges)} edges parameter-free (red)")
        ax.set_xlim(-0.8, 6.2)
        ax.set_ylim(-0.6, top + 0.6)
        ax.set_aspect("equal")
        ax.axis("off")
    fig.suptitle(genotype.name or "genotype", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, format="png", dpi=110)
    plt.close(fig)


def _draw_edge(ax, start: tuple[float, float], end: tuple[float, float], label: str | None, color: str,
               rad: float) -> None:
    """An arrow from ``start`` to ``end`` (straight, or an arc3 of ``rad``) with ``label`` on it."""
    (x0, y0), (x1, y1) = start, end
    ax.annotate("", xy=end, xytext=start, zorder=1, arrowprops={
        "arrowstyle": "-|>", "color": color, "lw": 1.3 if label else 0.8, "shrinkA": 12, "shrinkB": 12,
        "connectionstyle": f"arc3,rad={rad}"})
    if label:  # straight: 60% of the way; arc: the quadratic Bezier's midpoint (halfway to arc3's control point)
        if rad == 0:
            mx, my = x0 + 0.6 * (x1 - x0), y0 + 0.6 * (y1 - y0)
        else:
            mx, my = (x0 + x1) / 2 + 0.5 * rad * (y1 - y0), (y0 + y1) / 2 - 0.5 * rad * (x1 - x0)
        ax.text(mx, my, label, fontsize=7, color=color, ha="center", va="center", zorder=2,
                bbox={"fc": "white", "ec": "none", "alpha": 0.85, "pad": 0.4})
