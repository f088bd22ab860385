"""The published model zoo (``wsr-bench zoo CONFIG``): train, evaluate and publish every model of ``cfg.zoo``.

Each model ``<architecture>.<tag>`` is one stage, skipped once it is published (its weights are in the manifest with
the sha256 of the file beside it, and both of its leaderboard entries exist), so a build continues after an
interruption and across sessions; inside a stage, the search, the training and both evaluations resume from their
own checkpoints. A stage:

1. (``genotype: search`` only) the search of the config's ``search`` section, into ``OUT/search/``;
2. adversarial (or clean) training with the config's ``train`` section into ``OUT/train/<name>/``;
3. the weights published as ``<weights_dir>/<architecture>.<tag>.safetensors`` and registered as a timm pretrained
   tag (:mod:`wsr_bench.models.pretrained`);
4. the published tag loaded back through ``timm.create_model(name, pretrained=True)`` and evaluated with
   PGD-``pgd_steps`` on the first ``pgd_examples`` (all) test images (a section of its own,
   ``entries/<dataset>/<threat>/pgd<steps>/<name>.json``), then with standard AutoAttack, downward sweep, on the first
   ``autoattack_examples`` test images (the leaderboard's main table, ``entries/<dataset>/<threat>/<name>.json``);
   both entries record the sha256 of the weights file they evaluated;
5. after each evaluation the manifest takes its clean and average robust accuracy (saying which evaluation they
   come from: AutoAttack's once it exists) and the leaderboard is rebuilt.

Every stage appends its wall and CPU seconds to ``OUT/zoo.jsonl`` (``zoo_cost`` sums them), so the cost of a build
spread over several processes and sessions is still known. Two processes may build disjoint ``--only`` lists side by
side: manifest updates are serialised by a lock file.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import logging
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from wsr_bench.config import ExperimentConfig, ZooModelConfig, dump_config
from wsr_bench.io import append_jsonl

logger = logging.getLogger(__name__)

__all__ = ["ZooStage", "build_zoo", "entry_paths", "summary_filled", "write_summary", "zoo_cost",
           "zoo_summary"]


@dataclass(frozen=True)
class ZooStage:
    """What one model's stage did (``skipped``: it was published already)."""

    name: str
    skipped: bool
    aa_entry: Path
    pgd_entry: Path
    wall_seconds: float = 0.0
    cpu_seconds: float = 0.0


def entry_paths(cfg: ExperimentConfig, name: str) -> tuple[Path, Path]:
    """The two leaderboard entries of model ``name``: AutoAttack (main table) and the PGD sweep (its own section)."""
    from wsr_bench.leaderboard.io import slug

    base = Path(cfg.zoo.leaderboard) / "entries" / slug(cfg.data.name) / slug(cfg.eval.threat_model)
    return base / f"{slug(name)}.json", base / f"pgd{cfg.zoo.pgd_steps}" / f"{slug(name)}.json"


def _weights_dir(cfg: ExperimentConfig) -> Path:
    from wsr_bench.models import pretrained

    return Path(cfg.zoo.weights_dir) if cfg.zoo.weights_dir else pretrained.package_weights_dir()


def _published(cfg: ExperimentConfig, member: ZooModelConfig, autoattack: bool = True) -> bool:
    """Published: the manifest lists the tag with its accuracies, its file matches the manifest's sha256, and its
    entries (the PGD one, and the AutoAttack one unless ``autoattack`` is off) exist and name that sha256."""
    from wsr_bench.leaderboard.io import load_entry
    from wsr_bench.models import pretrained

    info = pretrained.read_manifest(_weights_dir(cfg)).get(member.name)
    if not info or info.get("clean_accuracy") is None:
        return False
    path = _weights_dir(cfg) / info["file"]
    if not path.is_file() or pretrained.file_sha256(path) != info["sha256"]:
        return False
    aa, pgd = entry_paths(cfg, member.name)
    for entry in (aa, pgd) if autoattack else (pgd,):
        if not entry.is_file() or load_entry(entry).evaluation.get("weights_sha256") != info["sha256"]:
            return False
    return True


@contextlib.contextmanager
def _manifest_lock(weights_dir: Path) -> Iterator[None]:
    """Serialise manifest updates of processes building the zoo side by side."""
    weights_dir.mkdir(parents=True, exist_ok=True)
    with open(weights_dir / ".manifest.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


class _Stage:
    """One model's stage: the config it trains with, its folders, its timing."""

    def __init__(self, cfg: ExperimentConfig, member: ZooModelConfig, out: Path, device: str, progress: bool):
        recipe = member.recipe or cfg.train.recipe
        # a clean member keeps train.eps: the clean recipe ignores it and the end-of-epoch check attacks at it
        train = dataclasses.replace(cfg.train, recipe=recipe, epochs=member.epochs or cfg.train.epochs)
        self.cfg, self.member, self.out = dataclasses.replace(cfg, train=train), member, out
        self.device, self.progress = device, progress
        self.train_dir = out / "train" / member.name

    def genotype(self) -> str | None:
        """The genotype file of a ``wsrnet`` member (running the config's search when it says ``search``)."""
        g = self.member.genotype
        if g is None or g != "search":
            return g
        from wsr_bench.io import atomic_write_text
        from wsr_bench.search import SearchFolder, run_search

        path = self.out / "genotype.json"
        if not path.is_file():
            folder = SearchFolder(self.out / "search")
            found = run_search(self.cfg, folder.root, resume=folder.checkpoint.exists(), device=self.device)
            atomic_write_text(path, found.to_json() + "\n")
        return str(path)

    def build_model(self, splits):
        from wsr_bench.models.catalog import create

        m, mc = self.member, self.cfg.model
        spec = self.genotype() if m.architecture == "wsrnet" else m.architecture
        return create(spec, init_channels=mc.init_channels, layers=mc.layers, width=m.width,
                      num_classes=splits.num_classes, in_chans=splits.in_chans, auxiliary=mc.auxiliary,
                      drop_path_rate=mc.drop_path_rate, mean=tuple(splits.mean), std=tuple(splits.std))

    def train(self, splits):
        """Train (or resume, or reuse a finished run) and return the trained network."""
        from wsr_bench.models import load_exported
        from wsr_bench.train.driver import TrainFolder, train_model

        folder = TrainFolder(self.train_dir)
        if (folder.model / "model.safetensors").is_file():
            return load_exported(folder.model)
        model = self.build_model(splits)
        train_model(self.cfg, model, splits, folder.root, resume=folder.checkpoint.exists(), device=self.device,
                    progress=self.progress, config_path=folder.config)
        return model.cpu().eval()

    def publish(self, model, **fields: Any) -> dict[str, Any]:
        """Write the weights and (re)register the tag; returns the manifest record."""
        from wsr_bench.models import pretrained

        weights_dir = _weights_dir(self.cfg)
        with _manifest_lock(weights_dir):
            pretrained.publish_weights(model, self.member.architecture, self.member.tag, dataset=self.cfg.data.name,
                                       recipe=self.recipe_text(), license=self.cfg.zoo.license,
                                       weights_dir=weights_dir, **fields)
        pretrained.register_published(weights_dir)
        return pretrained.read_manifest(weights_dir)[self.member.name]

    def recipe_text(self) -> str:
        from wsr_bench.train import TrainRecipe

        t, m = self.cfg.train, self.cfg.model
        size = f"width {self.member.width}" if self.member.width else f"C={m.init_channels}, {m.layers} cells"
        return (f"{TrainRecipe.from_config(t).label}, {t.epochs} epochs, SGD lr {t.lr:g} (cosine), batch "
                f"{self.cfg.data.batch_size}, {size}, all {self.cfg.data.name} training images")

    def evaluate(self, x, y, path: Path, options, suite: str | None, weights: dict[str, Any]):
        """Evaluate the published tag (loaded through timm) into the entry ``path`` (resuming a killed run)."""
        import timm

        from wsr_bench.evaluate.pipeline import evaluate_to_entry
        from wsr_bench.evaluate.state import remove_state
        from wsr_bench.leaderboard.io import save_entry

        if path.is_file():
            from wsr_bench.leaderboard.io import load_entry

            entry = load_entry(path)
            if entry.evaluation.get("weights_sha256") == weights["sha256"]:
                return entry
        model = timm.create_model(self.member.name, pretrained=True)
        state = self.out / "state" / f"{path.parent.name}-{path.name}.state"
        entry = evaluate_to_entry(
            model, x, y, options, model_name=self.member.name, architecture=self.architecture_text(),
            dataset=self.cfg.data.name, recipe=self.recipe_text(), device=self.device,
            memory_format=self.cfg.memory_format, progress=self.progress, state_dir=state,
            state_info={"model": self.member.name, "sha256": weights["sha256"]},
            notes=f"wsr-bench zoo {self.cfg.name}: published as timm tag {self.member.name}")
        # the training seed (cfg.seed seeds training): entries of one member that differ only by it form one
        # leaderboard row (wsr_bench.leaderboard.seeds)
        entry.evaluation.update(weights_file=weights["file"], weights_sha256=weights["sha256"],
                                training_seed=int(self.cfg.seed))
        if suite:
            entry.evaluation["suite"] = suite
        save_entry(entry, path, force=True)
        remove_state(state)
        return entry

    def architecture_text(self) -> str:
        m = self.member
        if m.architecture == "wsrnet":
            return "wsrnet (the cell wsr-bench's search found)"
        return m.architecture


def _options(cfg: ExperimentConfig, attack: str, steps: int):
    from wsr_bench.evaluate.options import SpectrumOptions

    return SpectrumOptions.from_config(cfg, attack=(attack,), steps=steps, resume=True,
                                       sweep="downward" if attack == "autoattack" else None)


def build_zoo(cfg: ExperimentConfig, out_dir: str | Path, *, only: Sequence[str] | None = None,
              device: str | None = None, progress: bool = True, autoattack: bool = True) -> list[ZooStage]:
    """Build (or continue) the zoo of ``cfg.zoo`` with run folders under ``out_dir``; see the module docstring.

    Args:
        only: build just these models (``<architecture>.<tag>`` names, or architectures: all their tags); unknown
            names are an error. Another process may build the others side by side.
        device: ``cpu`` / ``cuda[:N]`` (default: the config's).
        autoattack: also run the AutoAttack sweep (the expensive part on a CPU: about 10,000 passes per image that
            resists it); off, a model is trained, published and PGD-evaluated, and a later run adds AutoAttack.

    Returns:
        One :class:`ZooStage` per model built or skipped, in the config's order.
    """
    from wsr_bench.data import as_tensors, load_splits
    from wsr_bench.leaderboard.build import build_leaderboard
    from wsr_bench.runtime import resolve_device

    members = _select(cfg.zoo.models, only)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    dump_config(cfg, out / "config.yaml")
    device = resolve_device(device or cfg.device)
    splits = load_splits(cfg.data, cfg.seed)
    x, y = as_tensors(splits.test, None)
    n_aa, n_pgd = min(cfg.zoo.autoattack_examples, len(y)), min(cfg.zoo.pgd_examples or len(y), len(y))
    pgd_suite = f"PGD-{cfg.zoo.pgd_steps}, {'all ' if n_pgd == len(y) else 'first '}{n_pgd:,} test images"
    results = []
    for member in members:
        aa_path, pgd_path = entry_paths(cfg, member.name)
        if _published(cfg, member, autoattack):
            logger.info("zoo: %s is published, skipped", member.name)
            results.append(ZooStage(member.name, True, aa_path, pgd_path))
            continue
        t0, c0 = time.perf_counter(), time.process_time()
        stage = _Stage(cfg, member, out, device, progress)
        logger.info("zoo: building %s (%s)", member.name, stage.recipe_text())
        model = stage.train(splits)
        weights = stage.publish(model)
        pgd = stage.evaluate(x[:n_pgd], y[:n_pgd], pgd_path, _options(cfg, "pgd", cfg.zoo.pgd_steps), pgd_suite,
                             weights)
        stage.publish(model, entry=str(pgd_path), clean_accuracy=pgd.clean_accuracy,
                      avg_robust_accuracy=pgd.avg_robust_accuracy, evaluation=pgd_suite)
        build_leaderboard(cfg.zoo.leaderboard)
        if autoattack:
            aa_suite = f"AutoAttack, first {n_aa:,} test images"
            aa = stage.evaluate(x[:n_aa], y[:n_aa], aa_path, _options(cfg, "autoattack", cfg.eval.steps), None,
                                weights)
            stage.publish(model, entry=str(aa_path), clean_accuracy=aa.clean_accuracy,
                          avg_robust_accuracy=aa.avg_robust_accuracy, evaluation=aa_suite)
            build_leaderboard(cfg.zoo.leaderboard)
        record = ZooStage(member.name, False, aa_path, pgd_path, round(time.perf_counter() - t0, 1),
                          round(time.process_time() - c0, 1))
        append_jsonl(out / "zoo.jsonl", {**dataclasses.asdict(record), "aa_entry": str(aa_path),
                                         "pgd_entry": str(pgd_path), "time": time.strftime("%Y-%m-%d %H:%M:%S")})
        results.append(record)
    return results


def _select(models: Sequence[ZooModelConfig], only: Sequence[str] | None) -> list[ZooModelConfig]:
    if not only:
        return list(models)
    unknown = [n for n in only if not any(n in (m.name, m.architecture) for m in models)]
    if unknown:
        raise ValueError(f"--only {', '.join(unknown)}: not in zoo.models ({', '.join(m.name for m in models)})")
    return [m for m in models if m.name in only or m.architecture in only]


def zoo_cost(out_dir: str | Path) -> dict[str, Any]:
    """The measured cost of a build from ``OUT/zoo.jsonl``: per model and in total (wall and CPU seconds)."""
    path = Path(out_dir) / "zoo.jsonl"
    rows = [json.loads(line) for line in path.read_text().splitlines()] if path.is_file() else []
    built = [r for r in rows if not r.get("skipped")]
    return {"models": {r["name"]: {"wall_seconds": r["wall_seconds"], "cpu_seconds": r["cpu_seconds"]} for r in built},
            "wall_seconds": round(sum(r["wall_seconds"] for r in built), 1),
            "cpu_seconds": round(sum(r["cpu_seconds"] for r in built), 1)}


#: The spectrum points the summary table shows (the paper's four strengths).
SUMMARY_EPS = (0.03, 0.10, 0.17, 0.25)
#: The markers delimiting the generated summary in a Markdown file (README.md, docs/zoo.md).
SUMMARY_BEGIN, SUMMARY_END = "<!-- zoo-table -->", "<!-- /zoo-table -->"


def _worst_at(entry, eps: float) -> float | None:
    curve = entry.curves.get("worst_case") or next(iter(entry.curves.values()))
    for e, acc in zip(curve.eps, curve.accuracy, strict=True):
        if abs(e - eps) < 1e-9:
            return acc
    return None


def _training_text(cfg: ExperimentConfig, member: ZooModelConfig) -> str:
    recipe = member.recipe or cfg.train.recipe
    epochs = member.epochs or cfg.train.epochs
    if recipe == "clean":
        return f"clean, {epochs} epochs"
    return f"{recipe.upper()}-{cfg.train.steps} at {cfg.train.eps:g}, {epochs} epochs"


def zoo_summary(cfg: ExperimentConfig) -> str:
    """A compact Markdown table of every model of ``cfg.zoo`` as its committed entries stand: clean and robust
    accuracy at the paper's four strengths, read from the AutoAttack entry when it exists (else the PGD sweep's),
    and which evaluation they come from; models not built yet say so. Generated, never edited by hand: the README
    and ``docs/zoo.md`` carry it between :data:`SUMMARY_BEGIN` / :data:`SUMMARY_END` (:func:`write_summary`)."""
    from wsr_bench.leaderboard.consistency import nesting_violations
    from wsr_bench.leaderboard.io import load_entry

    def pct(v: float | None) -> str:
        return "–" if v is None else f"{100 * v:.1f}"

    rows, published = [], 0
    for member in cfg.zoo.models:
        aa_path, pgd_path = entry_paths(cfg, member.name)
        path = aa_path if aa_path.is_file() else pgd_path if pgd_path.is_file() else None
        if path is None:
            rows.append(f"| `{member.name}` | {_training_text(cfg, member)} | not built yet | | | | | | | | |")
            continue
        published += 1
        e = load_entry(path)
        how = (f"AutoAttack, {e.n_examples:,} images" if path == aa_path
               else f"PGD-{cfg.zoo.pgd_steps}, {e.n_examples:,} images (AutoAttack to come)")
        accs = " | ".join(pct(_worst_at(e, eps)) for eps in SUMMARY_EPS)
        sanity = ", ".join(e.flags) if e.flags else "ok"
        nested = nesting_violations(e)[0]
        rows.append(f"| `{member.name}` | {_training_text(cfg, member)} | {how} | {pct(e.clean_accuracy)} | {accs} | "
                    f"{pct(e.avg_robust_accuracy)} | {sanity} | {'?' if nested is None else nested} |")
    head = ("| model | training | evaluated with | clean | " + " | ".join(f"{eps:g}" for eps in SUMMARY_EPS)
            + " | avg | sanity | non-nested |")
    lines = [f"{published} of {len(cfg.zoo.models)} models of `{cfg.name}` published so far (robust accuracy "
             "in %, Linf eps on the [0,1] scale; intervals, training-seed terms, whole-curve tests and every strength "
             f"in [`{cfg.zoo.leaderboard}/README.md`]({cfg.zoo.leaderboard}/README.md); sanity: the sanity checks the "
             "entry failed, or ok; non-nested: images robust at a larger eps but broken at a smaller one, 0 by "
             "construction for cumulative and downward sweeps):", "", head,
             "|" + "---|" * (head.count("|") - 1), *rows]
    return "\n".join(lines)


def summary_filled(cfg: ExperimentConfig, path: str | Path) -> tuple[str, str]:
    """The Markdown file ``path`` as it is and with its summary block regenerated (links made relative to the
    file's folder): equal when the file is in step with the committed entries.

    Raises:
        ValueError: the file lacks the markers (the message names the file).
    """
    import os

    path = Path(path)
    text = path.read_text()
    if SUMMARY_BEGIN not in text or SUMMARY_END not in text:
        raise ValueError(f"{path}: no {SUMMARY_BEGIN} ... {SUMMARY_END} block to fill")
    summary = zoo_summary(cfg)
    rel = Path(os.path.relpath(cfg.zoo.leaderboard, path.parent)).as_posix()
    if rel != str(cfg.zoo.leaderboard):
        summary = summary.replace(f"]({cfg.zoo.leaderboard}/", f"]({rel}/")
    start = text.index(SUMMARY_BEGIN) + len(SUMMARY_BEGIN)
    return text, text[:start] + "\n\n" + summary + "\n\n" + text[text.index(SUMMARY_END):]


def write_summary(cfg: ExperimentConfig, path: str | Path) -> bool:
    """Replace the block between the summary markers of the Markdown file ``path`` with :func:`zoo_summary`;
    returns whether the file changed (see :func:`summary_filled`)."""
    from wsr_bench.io import atomic_write_text

    text, new = summary_filled(cfg, path)
    if new != text:
        atomic_write_text(Path(path), new)
    return new != text
