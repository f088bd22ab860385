"""The main job, end to end (``wsr-bench run``): search -> genotype.json -> WsrNet (timm) -> adversarial
training -> export -> spectrum evaluation of the found WsrNet and the baselines -> leaderboard.

A recipe over the stages of :mod:`wsr_bench.jobs`: every arrow is a file in the run folder, and every stage skips
itself when its output exists and checks out, so a stopped run continues where it was (search, training and
evaluation also resume mid-way from their own checkpoints)::

    OUT/config.yaml                     resolved config
    OUT/stages.jsonl                    one timing record per stage, run or skipped
    OUT/search/                         search run folder (checkpoint, metrics.jsonl, architecture weights plot)
    OUT/genotype.json                   the found architecture                                  (stage search)
    OUT/train/<model>/                  training run folders (checkpoint, metrics.jsonl, model/) (stage train:<model>)
    OUT/model/                          the found WsrNet, exported (model.safetensors + config.json) (stage model)
    OUT/leaderboard/entries/...json     one spectrum-evaluation entry per model                  (stage eval:<model>)
    OUT/leaderboard/{README.md,index.html,curves.png,leaderboard.csv}                          (stage leaderboard)
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

from wsr_bench.config import ExecutorConfig, ExperimentConfig, dump_config
from wsr_bench.evaluate.options import EntryLabels, EvalRuntime, SpectrumOptions
from wsr_bench.infra.distributed import is_distributed, is_main_process, joined_process_group
from wsr_bench.infra.runtime import resolve_device
from wsr_bench.jobs.evaluating import EvaluateStage
from wsr_bench.jobs.executor import ExecutorOptions, run_graph
from wsr_bench.jobs.model_source import ExportedModel
from wsr_bench.jobs.reporting import LeaderboardStage
from wsr_bench.jobs.searching import SearchStage
from wsr_bench.jobs.stage import JobContext, Stage, StageLog
from wsr_bench.jobs.training import CopyModelStage, TrainStage

FOUND_MODEL = "wsrnet"


@dataclass
class RunResult:
    """Where the main job left its artefacts, and how long each stage took (seconds; 0 when skipped)."""

    out_dir: Path
    genotype: Path
    model_dir: Path
    leaderboard: Path
    entries: dict[str, Path] = field(default_factory=dict)
    stage_seconds: dict[str, float] = field(default_factory=dict)


def run_stages_of(cfg: ExperimentConfig, out: Path) -> list[Stage]:
    """The main job's stages, in order: search, one training and one evaluation per model, the leaderboard."""
    from wsr_bench.evaluate.resume import state_dir_for
    from wsr_bench.leaderboard.entry_files import slug

    genotype = out / "genotype.json"
    models = {FOUND_MODEL: str(genotype), **{name: name for name in cfg.run.baselines}}
    trains = {name: TrainStage(name=f"train:{name}", needs=("search",) if name == FOUND_MODEL else (), cfg=cfg,
                               spec=spec, folder=out / "train" / name) for name, spec in models.items()}
    options = SpectrumOptions.from_config(cfg, resume=True)
    entries = out / "leaderboard" / "entries" / slug(cfg.data.name) / slug(cfg.eval.threat_model)
    evals = [EvaluateStage(
        name=f"eval:{name}", needs=(f"train:{name}",), source=ExportedModel(train.model_dir), options=options,
        labels=EntryLabels(model_name=name, dataset=cfg.data.name, recipe=cfg.train.recipe,
                           notes=f"wsr-bench run {cfg.name}: {cfg.train.recipe} eps={cfg.train.eps:.4f}, "
                                 f"{cfg.train.epochs} epochs, C={cfg.model.init_channels}, {cfg.model.layers} cells"),
        entry=entries / f"{slug(name)}.json", n_examples=cfg.eval.n_examples,
        runtime=EvalRuntime(memory_format=cfg.memory_format, sanity=True,
                            state_dir=state_dir_for(entries / f"{slug(name)}.json"), state_info={"model": name}))
        for name, train in trains.items()]
    search = SearchStage(name="search", cfg=cfg, folder=out / "search", genotype=genotype)
    found = CopyModelStage(name="model", needs=(f"train:{FOUND_MODEL}",), source=trains[FOUND_MODEL].model_dir,
                           folder=out / "model")
    board = LeaderboardStage(name="leaderboard", needs=tuple(e.name for e in evals), folder=out / "leaderboard")
    return [search, *trains.values(), found, *evals, board]


def run_pipeline(cfg: ExperimentConfig, out_dir: str | Path, device: str | None = None,
                 progress: bool = True, executor: ExecutorOptions | None = None) -> RunResult:
    """Run (or continue) the whole job described by ``cfg`` in ``out_dir``; see the module docstring. ``progress``
    shows the search's, the trainings' and the evaluations' progress bars (one bar over the stages with several
    workers). ``executor``: how the stages run (:mod:`wsr_bench.jobs.executor`; default one after another in this
    process, as under ``torchrun``)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with joined_process_group(device or resolve_device(cfg.device)) as info:  # one process unless under torchrun
        if is_main_process():
            dump_config(cfg, out / "config.yaml")
        ctx = JobContext(StageLog(out, write=is_main_process()), info.device, progress, data=cfg.data, seed=cfg.seed)
        stages = run_stages_of(replace(cfg, executor=ExecutorConfig()), out)  # how it runs is no stage's setting
        records = run_graph(stages, ctx, None if is_distributed() else executor)
        entries = {s.name.removeprefix("eval:"): s.entry for s in stages if isinstance(s, EvaluateStage)}
        return RunResult(out, out / "genotype.json", out / "model", out / "leaderboard", entries,
                         {r.stage: r.seconds for r in records})
