"""The published model zoo (``wsr-bench zoo CONFIG``): train, evaluate and publish every model of ``cfg.zoo``.

A recipe over the stages of :mod:`wsr_bench.jobs`. Each model ``<architecture>.<tag>`` is skipped once it is
published (its weights are in the manifest with the sha256 of the file beside it and its accuracies, and its
leaderboard entries exist and name that sha256), so a build continues after an interruption and across sessions;
otherwise its stages run, each skipping itself when its output checks out:

1. ``search:<name>`` (``genotype: search`` only): the search of the config's ``search`` section, into
   ``OUT/search/`` and ``OUT/genotype.json``;
2. ``train:<name>``: adversarial (or clean) training with the config's ``train`` section into ``OUT/train/<name>/``;
3. ``publish:<name>``: the weights published as ``<weights_dir>/<architecture>.<tag>.safetensors`` and registered as
   a timm pretrained tag (:mod:`wsr_bench.jobs.publishing`);
4. ``eval:<name>:pgd<steps>``: the published tag loaded back through ``timm.create_model(name, pretrained=True)`` and
   evaluated with PGD-``pgd_steps`` on the first ``pgd_examples`` (all) test images (a section of its own,
   ``entries/<dataset>/<threat>/pgd<steps>/<name>.json``), then ``eval:<name>:autoattack`` with standard AutoAttack,
   downward sweep, on the first ``autoattack_examples`` test images (the leaderboard's main table,
   ``entries/<dataset>/<threat>/<name>.json``); both entries record the sha256 of the weights file they evaluated;
5. after each evaluation, ``publish:<name>:<suite>``: the manifest takes its clean and average robust accuracy
   (saying which evaluation they come from: AutoAttack's once it exists), and ``leaderboard:<name>:<suite>`` rebuilds
   the leaderboard.

Every stage appends its wall and CPU seconds to ``OUT/stages.jsonl`` (``zoo_cost`` sums them per model), so the cost
of a build spread over several processes and sessions is still known. Two processes may build disjoint ``--only``
lists side by side: manifest updates are serialised by a lock file. With ``--workers N`` (or ``--executor slurm``)
the stages of every model still to build form one graph and independent ones run side by side
(:mod:`wsr_bench.jobs.executor`).
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from wsr_bench.config import ExecutorConfig, ExperimentConfig, ZooModelConfig, dump_config
from wsr_bench.jobs.executor import ExecutorOptions, run_graph
from wsr_bench.jobs.stage import JobContext, Stage, StageLog

logger = logging.getLogger(__name__)

__all__ = ["ZooModel", "build_zoo", "entry_paths", "member_stages", "zoo_cost"]

#: the timing log of builds before the stage protocol (one record per model); ``zoo_cost`` still reads it.
LEGACY_LOG_NAME = "zoo.jsonl"


@dataclass(frozen=True)
class ZooModel:
    """What the build did for one model (``skipped``: it was published already), and its stages' seconds."""

    name: str
    skipped: bool
    aa_entry: Path
    pgd_entry: Path
    wall_seconds: float = 0.0
    cpu_seconds: float = 0.0


def entry_paths(cfg: ExperimentConfig, name: str) -> tuple[Path, Path]:
    """The two leaderboard entries of model ``name``: AutoAttack (main table) and the PGD sweep (its own section)."""
    from wsr_bench.leaderboard.entry_files import slug

    base = Path(cfg.zoo.leaderboard) / "entries" / slug(cfg.data.name) / slug(cfg.eval.threat_model)
    return base / f"{slug(name)}.json", base / f"pgd{cfg.zoo.pgd_steps}" / f"{slug(name)}.json"


def weights_dir(cfg: ExperimentConfig) -> Path:
    """The folder the zoo publishes into (``zoo.weights_dir``, default the package's ``wsr_bench/weights``)."""
    from wsr_bench.models import pretrained

    return Path(cfg.zoo.weights_dir) if cfg.zoo.weights_dir else pretrained.package_weights_dir()


def member_config(cfg: ExperimentConfig, member: ZooModelConfig) -> ExperimentConfig:
    """``cfg`` with the member's training recipe and epochs (a clean member keeps ``train.eps``: the clean recipe
    ignores it and the end-of-epoch check attacks at it)."""
    train = dataclasses.replace(cfg.train, recipe=member.recipe or cfg.train.recipe,
                                epochs=member.epochs or cfg.train.epochs)
    return dataclasses.replace(cfg, train=train)


def recipe_text(cfg: ExperimentConfig, member: ZooModelConfig) -> str:
    """How the member was trained, as the manifest and its entries say it (``cfg``: the member's config)."""
    from wsr_bench.train import TrainRecipe

    t, m = cfg.train, cfg.model
    size = f"width {member.width}" if member.width else f"C={m.init_channels}, {m.layers} cells"
    return (f"{TrainRecipe.from_config(t).label}, {t.epochs} epochs, SGD lr {t.lr:g} (cosine), batch "
            f"{cfg.data.batch_size}, {size}, all {cfg.data.name} training images")


def _architecture_text(member: ZooModelConfig) -> str:
    if member.architecture == "wsrnet":
        return "wsrnet (the cell wsr-bench's search found)"
    return member.architecture


def _options(cfg: ExperimentConfig, attack: str, steps: int):
    from wsr_bench.evaluate.options import SpectrumOptions

    return SpectrumOptions.from_config(cfg, attack=(attack,), steps=steps, resume=True,
                                       sweep="downward" if attack == "autoattack" else None)


def member_stages(cfg: ExperimentConfig, member: ZooModelConfig, out: Path, n_test: int,
                  autoattack: bool = True) -> list[Stage]:
    """The stages that build one zoo model, in order (see the module docstring); ``n_test``: the test images."""
    from wsr_bench.evaluate.options import EntryLabels, EvalRuntime
    from wsr_bench.jobs.evaluating import EvaluateStage
    from wsr_bench.jobs.model_source import PublishedModel
    from wsr_bench.jobs.publishing import PublishStage
    from wsr_bench.jobs.reporting import LeaderboardStage
    from wsr_bench.jobs.searching import SearchStage
    from wsr_bench.jobs.training import TrainStage

    mcfg, name = member_config(cfg, member), member.name
    stages: list[Stage] = []
    spec = member.architecture
    if member.architecture == "wsrnet":
        spec = member.genotype
        if member.genotype == "search":
            spec = str(out / "genotype.json")
            stages.append(SearchStage(name=f"search:{name}", cfg=mcfg, folder=out / "search", genotype=Path(spec)))
    train = TrainStage(name=f"train:{name}", needs=tuple(s.name for s in stages), cfg=mcfg, spec=spec,
                       folder=out / "train" / name, width=member.width)
    recipe = recipe_text(mcfg, member)
    publish = dict(architecture=member.architecture, tag=member.tag, model_dir=train.model_dir,
                   weights_dir=weights_dir(cfg), dataset=cfg.data.name, recipe=recipe, license=cfg.zoo.license)
    stages += [train, PublishStage(name=f"publish:{name}", needs=(train.name,), **publish)]
    aa_path, pgd_path = entry_paths(cfg, name)
    n_aa, n_pgd = min(cfg.zoo.autoattack_examples, n_test), min(cfg.zoo.pgd_examples or n_test, n_test)
    suites = [(f"pgd{cfg.zoo.pgd_steps}", pgd_path, n_pgd, _options(cfg, "pgd", cfg.zoo.pgd_steps),
               f"PGD-{cfg.zoo.pgd_steps}, {'all ' if n_pgd == n_test else 'first '}{n_pgd:,} test images", True)]
    if autoattack:
        suites.append(("autoattack", aa_path, n_aa, _options(cfg, "autoattack", cfg.eval.steps),
                       f"AutoAttack, first {n_aa:,} test images", False))
    for suite, path, n, options, evaluation, own_section in suites:
        evaluate = EvaluateStage(
            name=f"eval:{name}:{suite}", needs=(f"publish:{name}",), entry=path, n_examples=n, options=options,
            source=PublishedModel(name, weights_dir(cfg)),
            labels=EntryLabels(model_name=name, architecture=_architecture_text(member), dataset=cfg.data.name,
                               recipe=recipe, notes=f"wsr-bench zoo {cfg.name}: published as timm tag {name}"),
            runtime=EvalRuntime(memory_format=mcfg.memory_format, sanity=True, state_info={"model": name},
                                state_dir=out / "state" / f"{path.parent.name}-{path.name}.state"),
            # the training seed (cfg.seed seeds training): entries of one member that differ only by it form one
            # leaderboard row (wsr_bench.leaderboard.seeds)
            evaluation={"training_seed": int(mcfg.seed), **({"suite": evaluation} if own_section else {})})
        record = PublishStage(name=f"publish:{name}:{suite}", needs=(evaluate.name,), entry=path,
                              evaluation=evaluation, **publish)
        board = LeaderboardStage(name=f"leaderboard:{name}:{suite}", needs=(record.name,),
                                 folder=Path(cfg.zoo.leaderboard))
        stages += [evaluate, record, board]
    return stages


def _published(stages: Sequence[Stage]) -> bool:
    """A model is published when its weights are (file and manifest agree), the manifest holds its accuracies and
    its entries name the weights' sha256 (the AutoAttack one only when the build runs AutoAttack)."""
    from wsr_bench.jobs.evaluating import EvaluateStage
    from wsr_bench.jobs.publishing import PublishStage
    from wsr_bench.models import pretrained

    weights = next(s for s in stages if isinstance(s, PublishStage) and s.entry is None)
    if not weights.is_done():
        return False
    if pretrained.read_manifest(weights.weights_dir)[weights.tag_name].get("clean_accuracy") is None:
        return False
    return all(s.is_done() for s in stages if isinstance(s, EvaluateStage))


def build_zoo(cfg: ExperimentConfig, out_dir: str | Path, *, only: Sequence[str] | None = None,
              device: str | None = None, progress: bool = True, autoattack: bool = True,
              executor: ExecutorOptions | None = None) -> list[ZooModel]:
    """Build (or continue) the zoo of ``cfg.zoo`` with run folders under ``out_dir``; see the module docstring.

    Args:
        only: build just these models (``<architecture>.<tag>`` names, or architectures: all their tags); unknown
            names are an error. Another process may build the others side by side.
        device: ``cpu`` / ``cuda[:N]`` (default: the config's).
        autoattack: also run the AutoAttack sweep (the expensive part on a CPU: about 10,000 passes per image that
            resists it); off, a model is trained, published and PGD-evaluated, and a later run adds AutoAttack.
        executor: how the stages of every model to build run, as one graph (:mod:`wsr_bench.jobs.executor`;
            default one after another in this process).

    Returns:
        One :class:`ZooModel` per model built or skipped, in the config's order.
    """
    from wsr_bench.infra.runtime import resolve_device

    members = _select(cfg.zoo.models, only)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    dump_config(cfg, out / "config.yaml")
    ctx = JobContext(StageLog(out), resolve_device(device or cfg.device), progress, data=cfg.data, seed=cfg.seed)
    n_test = len(ctx.splits.test)
    stage_cfg = dataclasses.replace(cfg, executor=ExecutorConfig())  # how it runs is no stage's setting
    built: dict[str, list[Stage]] = {}
    for member in members:
        stages = member_stages(stage_cfg, member, out, n_test, autoattack)
        if _published(stages):
            logger.info("zoo: %s is published, skipped", member.name)
            continue
        logger.info("zoo: building %s (%s)", member.name, recipe_text(member_config(cfg, member), member))
        built[member.name] = stages
    records = {r.stage: r for r in run_graph([s for stages in built.values() for s in stages], ctx, executor)}
    if built and executor is not None and (executor.workers or 2) > 1:  # published in other processes: register
        from wsr_bench.models import pretrained  # them here too, as a build in this process does

        pretrained.register_published(weights_dir(cfg))
    results = []
    for member in members:
        aa_path, pgd_path = entry_paths(cfg, member.name)
        mine = [records[s.name] for s in built.get(member.name, ())]
        results.append(ZooModel(member.name, member.name not in built, aa_path, pgd_path,
                                round(sum(r.seconds for r in mine), 1), round(sum(r.cpu_seconds for r in mine), 1)))
    return results


def _select(models: Sequence[ZooModelConfig], only: Sequence[str] | None) -> list[ZooModelConfig]:
    if not only:
        return list(models)
    unknown = [n for n in only if not any(n in (m.name, m.architecture) for m in models)]
    if unknown:
        raise ValueError(f"--only {', '.join(unknown)}: not in zoo.models ({', '.join(m.name for m in models)})")
    return [m for m in models if m.name in only or m.architecture in only]


def zoo_cost(out_dir: str | Path) -> dict[str, Any]:
    """The measured cost of a build: per model and in total (wall and CPU seconds), from the stages' log
    ``OUT/stages.jsonl`` (a stage ``<kind>:<model>[:<suite>]`` counts for its model) and, for builds before the stage
    protocol, ``OUT/zoo.jsonl`` (one record per model stage; a model's last record, the total over all)."""
    out = Path(out_dir)
    legacy = out / LEGACY_LOG_NAME
    rows = [json.loads(line) for line in legacy.read_text().splitlines()] if legacy.is_file() else []
    built = [r for r in rows if not r.get("skipped")]
    models = {r["name"]: {"wall_seconds": r["wall_seconds"], "cpu_seconds": r["cpu_seconds"]} for r in built}
    wall, cpu = sum(r["wall_seconds"] for r in built), sum(r["cpu_seconds"] for r in built)
    for r in StageLog(out).records():
        parts = r["stage"].split(":")
        if r["skipped"] or len(parts) < 2:
            continue
        cost = models.setdefault(parts[1], {"wall_seconds": 0.0, "cpu_seconds": 0.0})
        cost["wall_seconds"] = round(cost["wall_seconds"] + r["seconds"], 1)
        cost["cpu_seconds"] = round(cost["cpu_seconds"] + r["cpu_seconds"], 1)
        wall, cpu = wall + r["seconds"], cpu + r["cpu_seconds"]
    return {"models": models, "wall_seconds": round(wall, 1), "cpu_seconds": round(cpu, 1)}
