"""The publication stage: a trained network's weights become a timm pretrained tag ``<architecture>.<tag>`` (its
safetensors file and manifest record in a weights folder, :mod:`wsr_bench.models.pretrained`), and, after an
evaluation, the record takes that entry's clean and average robust accuracy.

:func:`publish_weights` writes one tag (both writes atomic); :class:`PublishStage` is the zoo's stage around it, which
publishes from a training stage's exported ``model/`` and serialises manifest updates of processes that build the zoo
side by side with a lock file.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from wsr_bench.infra.atomic import atomic_write_with
from wsr_bench.jobs.stage import JobContext, Stage
from wsr_bench.models import pretrained
from wsr_bench.rules import GENOTYPE_OF

__all__ = ["PublishStage", "TagRecord", "manifest_lock", "publish_weights"]


def _model_args(model: Any, architecture: str) -> dict[str, Any]:
    args = getattr(model, "model_args", None)
    if not isinstance(args, dict):
        raise ValueError("publish_weights needs a wsr-bench model (one with model_args, made by timm.create_model)")
    out = {k: v for k, v in args.items() if k not in pretrained.NOT_RECORDED}
    genotype = getattr(model, "genotype", None)
    if architecture == "wsrnet":
        if genotype is None:
            raise ValueError("architecture wsrnet needs a model with a genotype")
        out["genotype"] = genotype.to_dict()
    elif architecture.removesuffix("_imagenet") in GENOTYPE_OF:
        from wsr_bench.search_space.genotype import known_genotypes

        known = known_genotypes()[GENOTYPE_OF[architecture.removesuffix("_imagenet")]].genotype
        if genotype is None or {**genotype.to_dict(), "name": ""} != {**known.to_dict(), "name": ""}:
            raise ValueError(f"the model's genotype is not {architecture}'s; publish a found cell as architecture "
                             "'wsrnet'")
    elif genotype is not None:
        raise ValueError(f"{architecture} takes no genotype, but the model has one")
    return json.loads(json.dumps(out))


def _repo_relative(entry: str | Path | None) -> str | None:
    if entry is None:
        return None
    path = Path(entry)
    if path.is_absolute():
        root = pretrained.package_weights_dir().parents[1]
        try:
            path = path.resolve().relative_to(root.resolve())
        except ValueError:
            pass
    return path.as_posix()


@dataclass(frozen=True, kw_only=True)
class TagRecord:
    """What a published tag's manifest record says beside its file, hash and model arguments."""

    dataset: str
    recipe: str
    entry: str | Path | None = None          # stored relative to the repository root when it lies inside it
    clean_accuracy: float | None = None       # the accuracies may come later, in a second call
    avg_robust_accuracy: float | None = None
    evaluation: str | None = None             # which evaluation of ``entry`` they come from ("AutoAttack, first ...")
    license: str = "mit"
    image_size: int | None = None             # the side of the training images (None: the dataset's)


def publish_weights(model: Any, architecture: str, tag: str, record: TagRecord | None = None, *,
                    weights_dir: str | Path | None = None, **fields: Any) -> Path:
    """Write ``model``'s weights as ``weights_dir/<architecture>.<tag>.safetensors`` and add (or replace) the tag in
    ``weights_dir/manifest.json``; returns the weights file. Both writes are atomic.

    Args:
        model: a wsr-bench model made by ``timm.create_model`` (its ``model_args`` are recorded, and the genotype for
            the generic ``wsrnet``); its state dict must load into ``timm.create_model(architecture, **model_args)``.
        architecture: a registered architecture (``wsrnet_basic``, ``preact_resnet18``, ...) or ``wsrnet``.
        tag: the pretrained tag (letters, digits, ``_``, ``-``; not ``untrained``).
        record: the manifest fields (:class:`TagRecord`: ``dataset``, ``recipe``, ``entry``, ``clean_accuracy``,
            ``avg_robust_accuracy``, ``evaluation``, ``license``, ``image_size``); keyword ``fields`` replace them.
        weights_dir: the folder (default: the active one, whose tags are then re-registered with timm).
    """
    record = replace(record, **fields) if record is not None else TagRecord(**fields)
    dataset, image_size = record.dataset, record.image_size
    import timm
    from safetensors.torch import save_file

    if not pretrained.valid_tag(tag):
        raise ValueError(f"pretrained tag must be letters, digits, '_' or '-' (and not {pretrained.DEFAULT_TAG!r}), "
                         f"got {tag!r}")
    architectures = pretrained.registered_architectures()
    if not timm.is_model(architecture) or architecture not in architectures:
        raise ValueError(f"unknown architecture {architecture!r}: expected a wsr-bench timm model "
                         f"({', '.join(architectures)})")
    args = _model_args(model, architecture)
    num_classes, in_chans = int(model.model_args["num_classes"]), int(model.model_args["in_chans"])
    # DARTS' auxiliary head serves training only (auxiliary is not recorded): its weights are not published
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()
             if not k.startswith("auxiliary_head.")}
    check_args = dict(args)
    for key in ("mean", "std"):
        if key in check_args:
            check_args[key] = tuple(check_args[key])
    try:  # the tag must rebuild from what the manifest records
        rebuilt = timm.create_model(architecture, num_classes=num_classes, in_chans=in_chans, **check_args)
        rebuilt.load_state_dict(state)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(f"the model does not rebuild as {architecture} from its model_args: "
                         f"{str(exc).strip().splitlines()[0][:200]}") from None
    if image_size is None:
        from wsr_bench.data.datasets import DEFAULT_SIZE

        image_size = DEFAULT_SIZE.get(dataset, 32)
    folder = Path(weights_dir) if weights_dir is not None else pretrained.active_weights_dir()
    name = f"{architecture}.{tag}"
    path = folder / f"{name}.safetensors"
    atomic_write_with(path, lambda tmp: save_file(state, str(tmp)))
    tags = pretrained.read_manifest(folder)
    tags[name] = {
        "architecture": architecture, "tag": tag, "file": path.name, "sha256": pretrained.file_sha256(path),
        "model_args": args, "num_classes": num_classes, "input_size": [in_chans, int(image_size), int(image_size)],
        "dataset": dataset, "recipe": record.recipe, "license": record.license,
        "entry": _repo_relative(record.entry),
        "clean_accuracy": None if record.clean_accuracy is None else float(record.clean_accuracy),
        "avg_robust_accuracy": None if record.avg_robust_accuracy is None else float(record.avg_robust_accuracy),
        "evaluation": record.evaluation,
        "params": int(sum(p.numel() for p in rebuilt.parameters())),
    }
    pretrained.write_manifest(folder, tags)
    if folder.resolve() == pretrained.active_weights_dir().resolve():
        pretrained.register_published(folder)
    return path


@contextlib.contextmanager
def manifest_lock(weights_dir: Path) -> Iterator[None]:
    """Serialise manifest updates of processes publishing into ``weights_dir`` side by side."""
    weights_dir.mkdir(parents=True, exist_ok=True)
    with open(weights_dir / ".manifest.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


@dataclass(frozen=True, kw_only=True)
class PublishStage(Stage):
    """Publish the trained network in ``model_dir`` as ``architecture.tag`` in ``weights_dir``. With ``entry`` (an
    evaluation stage's output), the record also takes that entry's accuracies, with ``evaluation`` saying which
    evaluation they come from.

    Done when the manifest lists the tag with its file's sha256 (and, with ``entry``, names that entry and its
    accuracies).
    """

    architecture: str
    tag: str
    model_dir: Path
    weights_dir: Path
    dataset: str
    recipe: str
    license: str = "mit"
    entry: Path | None = None
    evaluation: str | None = None

    @property
    def tag_name(self) -> str:
        return f"{self.architecture}.{self.tag}"

    def outputs(self) -> tuple[Path, ...]:
        return (self.weights_dir / f"{self.tag_name}.safetensors", self.weights_dir / pretrained.MANIFEST_NAME)

    def is_done(self) -> bool:
        record = pretrained.read_manifest(self.weights_dir).get(self.tag_name)
        if record is None:
            return False
        path = self.weights_dir / record["file"]
        if not path.is_file() or pretrained.file_sha256(path) != record["sha256"]:
            return False
        if self.entry is None:
            return True
        from wsr_bench.leaderboard.entry_files import load_entry

        if not self.entry.is_file() or record.get("entry") != _repo_relative(self.entry):
            return False
        e = load_entry(self.entry)
        return (record.get("evaluation") == self.evaluation and record.get("clean_accuracy") == e.clean_accuracy
                and record.get("avg_robust_accuracy") == e.avg_robust_accuracy)

    def run(self, ctx: JobContext) -> dict[str, Any]:
        """Publish and (re)register the folder's tags with timm; returns the tag's manifest record."""
        from wsr_bench.models import load_exported

        fields: dict[str, Any] = {}
        if self.entry is not None:
            from wsr_bench.leaderboard.entry_files import load_entry

            e = load_entry(self.entry)
            fields = {"entry": str(self.entry), "clean_accuracy": e.clean_accuracy,
                      "avg_robust_accuracy": e.avg_robust_accuracy, "evaluation": self.evaluation}
        model = load_exported(self.model_dir)
        with manifest_lock(self.weights_dir):
            publish_weights(model, self.architecture, self.tag, dataset=self.dataset, recipe=self.recipe,
                            license=self.license, weights_dir=self.weights_dir, **fields)
        pretrained.register_published(self.weights_dir)
        return pretrained.read_manifest(self.weights_dir)[self.tag_name]
