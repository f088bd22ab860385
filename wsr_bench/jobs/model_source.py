"""Where an evaluation stage gets its network: a training stage's exported folder, a published timm tag, or any model
``wsr-bench eval`` accepts. Each source is a plain frozen dataclass (it travels inside a stage) that loads the network
and says what provenance the entry must carry (for a published tag: its weights file and sha256)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch.nn as nn

    from wsr_bench.jobs.stage import JobContext


@dataclass(frozen=True)
class ExportedModel:
    """An exported model folder (``model.safetensors`` + ``config.json``), e.g. a training stage's output."""

    folder: Path

    def load(self, ctx: JobContext) -> tuple[nn.Module, str, str]:
        """The network, its name and its architecture (the name is the folder's)."""
        from wsr_bench.models import load_exported

        model = load_exported(self.folder, device=ctx.device)
        return model, self.folder.name, model.pretrained_cfg["architecture"]

    def provenance(self) -> dict[str, Any]:
        return {}


@dataclass(frozen=True)
class PublishedModel:
    """A published tag ``<architecture>.<tag>`` of the weights folder ``weights_dir``, loaded through
    ``timm.create_model(name, pretrained=True)`` exactly as a user loads it."""

    name: str
    weights_dir: Path

    def record(self) -> dict[str, Any] | None:
        """The tag's manifest record (None while it is not published)."""
        from wsr_bench.models import pretrained

        return pretrained.read_manifest(self.weights_dir).get(self.name)

    def load(self, ctx: JobContext) -> tuple[nn.Module, str, str]:
        import timm

        from wsr_bench.models import pretrained

        # read now: another process (a worker of the job's executor) may have published the tag since this one
        # registered the folder
        pretrained.register_published(self.weights_dir)
        model = timm.create_model(self.name, pretrained=True)
        return model, self.name, pretrained.split_name(self.name)[0]

    def provenance(self) -> dict[str, Any]:
        """The weights file and sha256 the entry evaluates (and must name to count as done)."""
        record = self.record()
        if record is None:
            return {"weights_file": None, "weights_sha256": None}
        return {"weights_file": record["file"], "weights_sha256": record["sha256"]}


@dataclass(frozen=True)
class ModelSpec:
    """Any model ``wsr-bench eval`` takes: a timm name, ``robustbench:<Name>`` or an exported folder, with optional
    weights (``checkpoint``); built for the job's data (classes, channels, normalisation)."""

    spec: str
    dataset: str
    threat_model: str
    checkpoint: str | None = None
    model_dir: str = "models"

    def load(self, ctx: JobContext) -> tuple[nn.Module, str, str]:
        from wsr_bench.evaluate.model_loading import load_eval_model

        s = ctx.splits
        loaded = load_eval_model(self.spec, checkpoint=self.checkpoint, model_dir=self.model_dir,
                                 dataset=self.dataset, threat_model=self.threat_model, num_classes=s.num_classes,
                                 in_chans=s.in_chans, mean=s.mean, std=s.std, device=ctx.device)
        return loaded.model, loaded.name, loaded.architecture

    def provenance(self) -> dict[str, Any]:
        return {}
