"""The training stage: build a network (a registered name, or ``wsrnet`` from a ``genotype.json``) sized by the
config, train it adversarially in its run folder (resuming from its checkpoint) and hand off the exported ``model/``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from wsr_bench.config import ExperimentConfig
from wsr_bench.jobs.stage import JobContext, Stage


@dataclass(frozen=True, kw_only=True)
class TrainStage(Stage):
    """Train ``spec`` (a model name or a genotype file another stage wrote) with ``cfg.train`` in ``folder``; the
    output is ``folder/model/`` (``model.safetensors`` and ``config.json``). ``width`` sizes the networks outside the
    DARTS space."""

    cfg: ExperimentConfig
    spec: str
    folder: Path
    width: int | None = None

    @property
    def model_dir(self) -> Path:
        from wsr_bench.train.driver import TrainFolder

        return TrainFolder(self.folder).model

    def outputs(self) -> tuple[Path, ...]:
        return (self.model_dir,)

    def is_done(self) -> bool:
        """The exported weights and their config are there (written last, atomically, by the finished training)."""
        return (self.model_dir / "model.safetensors").is_file() and (self.model_dir / "config.json").is_file()

    def run(self, ctx: JobContext) -> Path:
        from wsr_bench.infra.runtime import seed_everything
        from wsr_bench.train.driver import TrainFolder, build_model, train_model

        folder = TrainFolder(self.folder)
        # the initial weights from the config's seed, as wsr-bench train draws them: not from whatever the stages
        # before this one in the same process left in the random generators (stages run in any process, any order)
        seed_everything(self.cfg.seed)
        model = build_model(self.spec, self.cfg, ctx.splits, width=self.width)
        train_model(self.cfg, model, ctx.splits, folder.root, resume=folder.checkpoint.exists(), device=ctx.device,
                    progress=ctx.progress)
        return folder.model


@dataclass(frozen=True, kw_only=True)
class CopyModelStage(Stage):
    """Copy a training stage's exported ``model/`` to ``folder`` (the run's found WsrNet, ``OUT/model/``)."""

    source: Path
    folder: Path

    def outputs(self) -> tuple[Path, ...]:
        return (self.folder,)

    def is_done(self) -> bool:
        return (self.folder / "model.safetensors").is_file()

    def run(self, ctx: JobContext) -> Path:
        import shutil

        from wsr_bench.infra.distributed import barrier, is_main_process

        if is_main_process():
            shutil.copytree(self.source, self.folder, dirs_exist_ok=True)
        barrier()
        return self.folder
