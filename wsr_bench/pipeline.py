"""The main job, end to end (``wsr-bench run``): search -> genotype.json -> WsrNet (timm) -> adversarial
training -> export -> spectrum evaluation of the found WsrNet and the baselines -> leaderboard.

Every arrow is a file in the run folder, and every stage skips itself when its output already exists, so a stopped
run continues where it was (search and training also resume mid-way from their own checkpoints)::

    OUT/config.yaml                     resolved config
    OUT/search/                         search run folder (checkpoint, metrics.jsonl, arch weights plot)
    OUT/genotype.json                   the found architecture
    OUT/train/<model>/                  training run folders (checkpoint, metrics.jsonl, train.log, model/)
    OUT/model/                          the found WsrNet, exported (model.safetensors + config.json)
    OUT/leaderboard/entries/...json     one spectrum-evaluation entry per model
    OUT/leaderboard/{README.md,index.html,curves.png,leaderboard.csv}
"""

from __future__ import annotations

import logging
import shutil
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from wsr_bench.config import ExperimentConfig, dump_config
from wsr_bench.distributed import barrier, is_main_process, joined_process_group
from wsr_bench.io import append_jsonl
from wsr_bench.runtime import resolve_device

logger = logging.getLogger(__name__)

FOUND_MODEL = "wsrnet"


@dataclass
class PipelineResult:
    """Where the main job left its artefacts, and how long each stage took (seconds; 0 when skipped)."""

    out_dir: Path
    genotype: Path
    model_dir: Path
    leaderboard: Path
    entries: dict[str, Path] = field(default_factory=dict)
    stage_seconds: dict[str, float] = field(default_factory=dict)


def _stage(out: Path, name: str, done: bool, timings: dict[str, float]):
    """Log a stage start/skip and record its time in ``OUT/pipeline.jsonl``; use as ``with _stage(...)``."""

    class _Timer:
        def __enter__(self):
            self.t0 = time.perf_counter()
            logger.info("stage %s: %s", name, "already done, skipped" if done else "running")
            return self

        def __exit__(self, exc_type, exc, tb):
            if exc_type is None:
                timings[name] = 0.0 if done else round(time.perf_counter() - self.t0, 1)
                if is_main_process():
                    append_jsonl(out / "pipeline.jsonl", {"stage": name, "skipped": done, "seconds": timings[name]})
            return False

    return _Timer()


def _search(cfg: ExperimentConfig, out: Path, device: str, timings: dict[str, float], progress: bool = True) -> Path:
    from wsr_bench.search import SearchFolder, run_search

    genotype = out / "genotype.json"
    with _stage(out, "search", genotype.is_file(), timings):
        if not genotype.is_file():
            folder = SearchFolder(out / "search")
            if not progress:  # the search reads its bars from the config (a change a resumed search accepts)
                cfg = replace(cfg, search=replace(cfg.search, progress=False))
            found = run_search(cfg, folder.root, resume=folder.checkpoint.exists(), device=device)
            from wsr_bench.io import atomic_write_text

            atomic_write_text(genotype, found.to_json() + "\n")
    return genotype


def _train(cfg: ExperimentConfig, out: Path, name: str, spec: str, splits, device: str,
           timings: dict[str, float], progress: bool = True) -> Path:
    from wsr_bench.train.driver import TrainFolder, build_model, train_model

    folder = TrainFolder(out / "train" / name)
    done = (folder.model / "model.safetensors").is_file()
    with _stage(out, f"train:{name}", done, timings):
        if not done:
            model = build_model(spec, cfg, splits)
            train_model(cfg, model, splits, folder.root, resume=folder.checkpoint.exists(), device=device,
                        progress=progress)
    return folder.model


def _evaluate(cfg: ExperimentConfig, out: Path, name: str, model_dir: Path, eval_data, options, device: str,
              timings: dict[str, float], progress: bool = True) -> Path:
    """Evaluate one trained model with ``options`` (a ``SpectrumOptions``) into its leaderboard entry, resuming."""
    from wsr_bench.evaluate.pipeline import evaluate_to_entry
    from wsr_bench.evaluate.state import remove_state, state_dir_for
    from wsr_bench.leaderboard.io import save_entry, slug
    from wsr_bench.models import load_exported

    path = out / "leaderboard" / "entries" / slug(cfg.data.name) / slug(cfg.eval.threat_model) / f"{slug(name)}.json"
    with _stage(out, f"eval:{name}", path.is_file(), timings):
        if not path.is_file():
            x, y = eval_data
            model = load_exported(model_dir, device=device)
            entry = evaluate_to_entry(
                model, x, y, options, model_name=name, architecture=model.pretrained_cfg["architecture"],
                dataset=cfg.data.name, recipe=cfg.train.recipe, device=device, memory_format=cfg.memory_format,
                progress=progress,
                state_dir=state_dir_for(path), state_info={"model": name},
                notes=f"wsr-bench run {cfg.name}: {cfg.train.recipe} eps={cfg.train.eps:.4f}, "
                      f"{cfg.train.epochs} epochs, C={cfg.model.init_channels}, {cfg.model.layers} cells")
            if is_main_process():  # under torchrun every rank evaluated its share of the batches
                save_entry(entry, path)
                remove_state(state_dir_for(path))
            barrier()
    return path


def run_pipeline(cfg: ExperimentConfig, out_dir: str | Path, device: str | None = None,
                 progress: bool = True) -> PipelineResult:
    """Run (or continue) the whole job described by ``cfg`` in ``out_dir``; see the module docstring. ``progress``
    shows the search's, the trainings' and the evaluations' progress bars."""
    from wsr_bench.data import as_tensors, load_splits
    from wsr_bench.evaluate.options import SpectrumOptions
    from wsr_bench.leaderboard.build import build_leaderboard

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with joined_process_group(device or resolve_device(cfg.device)) as info:  # one process unless under torchrun
        device = info.device
        if is_main_process():
            dump_config(cfg, out / "config.yaml")
        timings: dict[str, float] = {}
        genotype = _search(cfg, out, device, timings, progress)
        splits = load_splits(cfg.data, cfg.seed)
        models = {FOUND_MODEL: str(genotype), **{name: name for name in cfg.run.baselines}}
        model_dirs = {name: _train(cfg, out, name, spec, splits, device, timings, progress)
                      for name, spec in models.items()}
        found_dir = out / "model"
        if not (found_dir / "model.safetensors").is_file() and is_main_process():
            shutil.copytree(model_dirs[FOUND_MODEL], found_dir, dirs_exist_ok=True)
        barrier()
        eval_data = as_tensors(splits.test, cfg.eval.n_examples)
        options = SpectrumOptions.from_config(cfg, resume=True)
        entries = {name: _evaluate(cfg, out, name, d, eval_data, options, device, timings, progress)
                   for name, d in model_dirs.items()}
        with _stage(out, "leaderboard", False, timings):
            if is_main_process():
                build_leaderboard(out / "leaderboard")
        return PipelineResult(out, genotype, found_dir, out / "leaderboard", entries, timings)
