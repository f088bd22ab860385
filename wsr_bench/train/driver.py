"""The retraining driver behind ``wsr-bench train`` and the training stage of ``wsr-bench run``.

``train_model`` trains a network with SGD (momentum, weight decay, per-batch cosine schedule), the configured
recipe, drop-path ramp, augmentation and gradient clipping; after every epoch it checks clean and PGD accuracy on
a slice of the test split, saves ``checkpoint.pt`` atomically (model, optimizer, scheduler, epoch, every rank's RNG
state, the architecture, the metric history), appends one JSON line to ``metrics.jsonl`` and one human line to
``train.log``; at the end it exports the network to ``model/`` (``model.safetensors`` + ``config.json``). Resuming
restores all of it, so 2 epochs equal 1 epoch + resume + 1 epoch bit for bit (on CPU). Only rank 0 writes.

Run folder::

    config.yaml  checkpoint.pt  metrics.jsonl  train.log  model/{model.safetensors,config.json}
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import ConcatDataset, Subset
from tqdm.auto import tqdm

from wsr_bench.config import ExperimentConfig, TrainConfig, config_to_dict, dump_config
from wsr_bench.data.datasets import DataSplits, load_splits
from wsr_bench.infra.checkpoint import get_rng_state, load_checkpoint, save_checkpoint, set_rng_state
from wsr_bench.infra.distributed import (
    all_gather_object,
    barrier,
    get_rank,
    get_world_size,
    is_main_process,
    joined_process_group,
    set_epoch,
    shard_loader,
    unwrap_model,
    wrap_ddp,
)
from wsr_bench.infra.run_folder import RunFolder
from wsr_bench.infra.runtime import check_amp, resolve_device, seed_everything, set_memory_format
from wsr_bench.infra.threads import apply_default_threads
from wsr_bench.train.augment import make_augment
from wsr_bench.train.loop import LoopOptions, NonFiniteLossError, eval_epoch, train_epoch
from wsr_bench.train.recipes import TrainRecipe

logger = logging.getLogger(__name__)

CHECKPOINT_FORMAT = "wsr-bench-train/1"


class TrainFolder(RunFolder):
    """A training run folder: the common files (``config.yaml``, ``checkpoint.pt``, ``metrics.jsonl``, ``train.log``)
    and the exported network in ``model/``."""

    log_name = "train.log"

    def __init__(self, root: str | Path):
        super().__init__(root)
        self.model = self.root / "model"

    def check_fresh(self) -> None:
        """Refuse to start over a folder that already holds a training checkpoint (``--resume`` continues it)."""
        if self.checkpoint.is_file():
            raise FileExistsError(f"{self.root} already holds a training checkpoint ({self.checkpoint.name}); pass "
                                  f"--resume to continue it, or choose another --out")


@dataclass(frozen=True)
class TrainSummary:
    """What one ``train_model`` call did (every rank returns one; only rank 0 wrote files)."""

    model: str                      # the model name or genotype file it was built from ("" when not known)
    architecture: str               # the network's identity (class and genotype), as checked on resume
    params: int                     # number of parameters
    recipe: str                     # the training recipe, e.g. "PGD-3 (eps 0.1)"
    epochs: int                     # epochs asked for (train.epochs)
    start_epoch: int                # epochs already done when this call started (resume)
    epochs_done: int                # epochs done when it returned
    finished: bool                  # all epochs done and the model exported
    final: dict[str, Any] | None    # the last epoch's metrics record (as in metrics.jsonl)
    out_dir: str                    # the run folder
    model_dir: str | None           # the exported model (None until finished)
    seconds: float                  # wall time of this call's epochs
    rank: int                       # this process's rank under torchrun (0 alone)
    world_size: int                 # number of processes


class TrainingDivergedError(ValueError):
    """Training stopped on a NaN/inf loss; the last good checkpoint was left untouched."""


class ResumeError(ValueError):
    """A checkpoint that cannot be resumed here (another model, another format)."""


# ------------------------------------------------------------------------------------------------ building blocks
def build_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """SGD with momentum and weight decay on every parameter (the DARTS / Wsr-NAS retraining set-up)."""
    return torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: TrainConfig, steps_per_epoch: int) -> Any:
    """Cosine annealing from ``lr`` to ``lr_min`` over all training steps (stepped once per batch)."""
    return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(1, cfg.epochs * steps_per_epoch),
                                                      eta_min=cfg.lr_min)


def model_identity(model: nn.Module) -> dict[str, Any]:
    """What a checkpoint must match to be resumed: architecture name and arguments (timm models of wsr-bench)
    and the names and shapes of every state-dict entry (any model)."""
    from wsr_bench.models.export import model_config

    bare = unwrap_model(model)
    try:
        cfg = model_config(bare)
        args = {k: v for k, v in cfg["model_args"].items() if k != "drop_path_rate"}
        ident: dict[str, Any] = {"architecture": cfg["architecture"], "num_classes": cfg["num_classes"],
                                 "model_args": json.loads(json.dumps(args))}
    except ValueError:
        ident = {"architecture": type(bare).__qualname__}
    shapes = [[k, list(v.shape)] for k, v in bare.state_dict().items()]
    ident["state_digest"] = hashlib.sha256(json.dumps(shapes).encode()).hexdigest()[:16]
    return ident


def describe_identity(ident: dict[str, Any]) -> str:
    """``darts_v2 (init_channels=8, layers=5, num_classes=10, genotype 1a2b3c4d)``."""
    args = ident.get("model_args") or {}
    parts = [f"{k}={args[k]}" for k in ("init_channels", "layers", "auxiliary") if k in args]
    if "num_classes" in ident:
        parts.append(f"num_classes={ident['num_classes']}")
    if "genotype" in args:
        parts.append("genotype " + hashlib.sha256(json.dumps(args["genotype"]).encode()).hexdigest()[:8])
    return f"{ident['architecture']} ({', '.join(parts) or 'state ' + ident['state_digest']})"


def _check_resume(state: dict[str, Any], ident: dict[str, Any], path: Path) -> None:
    if state.get("format") != CHECKPOINT_FORMAT:
        raise ResumeError(f"{path} is not a wsr-bench training checkpoint (format {state.get('format')!r}, "
                          f"expected {CHECKPOINT_FORMAT!r})")
    saved = state.get("identity") or {}
    if saved != ident:
        raise ResumeError(f"cannot resume: {path} was written for {describe_identity(saved)}, but the model to train "
                          f"is {describe_identity(ident)}; resume with the same model and model.* settings, or "
                          f"choose another --out")


def _check_aux(cfg: ExperimentConfig, splits: DataSplits) -> None:
    if cfg.model.auxiliary and splits.image_size < 32:
        raise ValueError(f"model.auxiliary needs 32x32 inputs (DARTS' auxiliary head expects 8x8 maps after the "
                         f"second reduction), got {splits.image_size}x{splits.image_size} {splits.name} images")


def _finite_or_none(v: Any) -> Any:
    return None if isinstance(v, float) and not math.isfinite(v) else v


# ------------------------------------------------------------------------------------------------ the driver
class _Run:
    """Everything one training run needs, built once by ``train_model``."""

    def __init__(self, cfg: ExperimentConfig, model: nn.Module, splits: DataSplits, out: Path, device: str,
                 progress: bool):
        self.cfg, self.tc, self.folder, self.device, self.progress = cfg, cfg.train, TrainFolder(out), device, progress
        self.recipe = TrainRecipe.from_config(cfg.train)
        _check_aux(cfg, splits)
        check_amp(cfg.train.amp, device, key="train.amp")
        self.bare = set_memory_format(model.to(device), cfg.memory_format)
        self.identity = model_identity(model)
        self.net = wrap_ddp(model, sync_bn=cfg.train.sync_bn)
        self.loader = shard_loader(ConcatDataset([splits.train_t, splits.train_v]), cfg.data.batch_size,
                                   seed=cfg.seed, shuffle=True)
        self.optimizer = build_optimizer(self.bare, cfg.train)
        self.scheduler = build_scheduler(self.optimizer, cfg.train, len(self.loader))
        n_eval = min(cfg.train.eval_examples, len(splits.test))
        self.eval_loader = None if n_eval == 0 else shard_loader(
            Subset(splits.test, range(n_eval)), cfg.data.eval_batch_size * get_world_size(), shuffle=False)
        self.augment = make_augment(cfg.train)
        self.loop = LoopOptions(grad_clip=cfg.train.grad_clip or None,
                                aux_weight=cfg.model.auxiliary_weight if cfg.model.auxiliary else 0.0,
                                amp=cfg.train.amp)
        self.path = self.folder.checkpoint
        self.dataset = splits.name
        self.image_size = splits.image_size  # recorded in the export, so that `wsr-bench eval` loads that size

    def restore(self, resume: bool) -> tuple[int, list[dict[str, Any]]]:
        """Load the checkpoint when resuming (or refuse to overwrite one); returns (epochs done, history)."""
        if not self.path.is_file():
            if resume:
                logger.info("no checkpoint in %s; starting from scratch", self.folder.root)
            seed_everything(self.cfg.seed + get_rank())
            if is_main_process():
                self.folder.write_metrics([])
            return 0, []
        if not resume:
            self.folder.check_fresh()
        state = load_checkpoint(self.path)
        _check_resume(state, self.identity, self.path)
        self.bare.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        rngs = state["rng"]
        set_rng_state(rngs[get_rank() % len(rngs)])
        self._apply_config(state.get("train_config") or {})
        history = list(state.get("history", []))
        if is_main_process():  # the checkpoint is the truth: drop lines of an epoch that was never checkpointed
            self.folder.write_metrics(history)
        logger.info("resumed %s after epoch %d/%d", self.path, state["epoch"], self.tc.epochs)
        return int(state["epoch"]), history

    def _apply_config(self, saved: dict[str, Any]) -> None:
        """On resume the config's hyper-parameters win; optimizer buffers and the schedule position come from the
        checkpoint. A changed ``lr`` scales the rest of the cosine schedule; changed ``epochs`` stretch it."""
        now = config_to_dict(self.tc)
        changed = {k: (saved[k], v) for k, v in now.items() if k in saved and saved[k] != v}
        if not changed:
            return
        logger.warning("train config differs from the checkpoint's (%s); continuing with the new values",
                       ", ".join(f"{k}: {a} -> {b}" for k, (a, b) in changed.items()))
        factor = self.tc.lr / saved["lr"] if saved.get("lr") else 1.0
        for group in self.optimizer.param_groups:
            group.update(lr=group["lr"] * factor, initial_lr=group.get("initial_lr", self.tc.lr) * factor,
                         momentum=self.tc.momentum, weight_decay=self.tc.weight_decay)
        self.scheduler.base_lrs = [b * factor for b in self.scheduler.base_lrs]
        self.scheduler.eta_min = self.tc.lr_min
        self.scheduler.T_max = max(1, self.tc.epochs * len(self.loader))

    def train_one(self, epoch: int) -> dict[str, Any]:
        """Train epoch ``epoch`` (0-based), evaluate, and return its metrics record."""
        tc = self.tc
        set_epoch(self.loader, epoch)
        if hasattr(self.bare, "drop_path_prob"):
            self.bare.drop_path_prob = self.cfg.model.drop_path_rate * epoch / tc.epochs
        try:
            stats = train_epoch(self.net, self.loader, self.optimizer, self.recipe, self.loop, device=self.device,
                                scheduler=self.scheduler, augment=self.augment, progress=self.progress,
                                desc=f"epoch {epoch + 1}/{tc.epochs}")
        except NonFiniteLossError as exc:
            kept = (f"the last good checkpoint {self.path} (after epoch {epoch}) is kept" if self.path.is_file()
                    else "no checkpoint had been written yet")
            raise TrainingDivergedError(
                f"training diverged at epoch {epoch + 1}/{tc.epochs}, step {exc.step + 1}/{len(self.loader)}: the "
                f"loss is {exc.value}; {kept}; resume it with a lower train.lr (--resume --set train.lr=...) or "
                f"keep train.grad_clip > 0") from None
        record = {"epoch": epoch + 1, "epochs": tc.epochs, "recipe": tc.recipe,
                  "lr": self.optimizer.param_groups[0]["lr"],
                  "drop_path_prob": getattr(self.bare, "drop_path_prob", None), "train_loss": stats["loss"],
                  "train_acc": stats["acc"], "train_n": stats["n"], "train_seconds": stats["seconds"],
                  "attack_seconds": stats["attack_seconds"]}
        record.update(self.evaluate())
        return record

    def evaluate(self) -> dict[str, Any]:
        """Clean and PGD-``eval_steps`` accuracy at ``train.eps`` on the first ``eval_examples`` test images (clean
        only when ``train.eps`` is 0, as a clean recipe may have it: there is no radius to attack at)."""
        if self.eval_loader is None:
            return {}
        t0 = time.perf_counter()
        clean = eval_epoch(self.net, self.eval_loader, self.device)
        if self.tc.eps <= 0:
            return {"clean_acc": clean["acc"], "clean_loss": clean["loss"], "eval_n": clean["n"],
                    "eval_seconds": time.perf_counter() - t0}
        attack = TrainRecipe("pgd", eps=self.tc.eps, steps=self.tc.eval_steps)
        robust = eval_epoch(self.net, self.eval_loader, self.device, attack=attack)
        return {"clean_acc": clean["acc"], "clean_loss": clean["loss"], "robust_acc": robust["acc"],
                "robust_loss": robust["loss"], "eval_eps": self.tc.eps, "eval_steps": self.tc.eval_steps,
                "eval_n": clean["n"], "eval_seconds": time.perf_counter() - t0}

    def save(self, epoch_done: int, history: list[dict[str, Any]]) -> None:
        """Checkpoint (atomically), metrics line and log line of a finished epoch; rank 0 writes."""
        rngs = all_gather_object(get_rng_state())  # collective: every rank takes part
        if is_main_process():
            save_checkpoint(self.path, {
                "format": CHECKPOINT_FORMAT, "epoch": epoch_done, "identity": self.identity,
                "model": self.bare.state_dict(), "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(), "rng": rngs, "history": history,
                "train_config": config_to_dict(self.tc), "steps_per_epoch": len(self.loader),
                "world_size": get_world_size()})
            self.folder.append_metrics(history[-1])
            line = _log_line(history[-1], self.recipe)
            logger.info(line)
            self.folder.write_log_line(line)
        barrier()


def _log_line(r: dict[str, Any], recipe: TrainRecipe) -> str:
    line = (f"epoch {r['epoch']}/{r['epochs']}  lr {r['lr']:.4g}  train loss {r['train_loss']:.4f} acc "
            f"{r['train_acc']:.4f} [{recipe.label}]  {r['train_seconds']:.1f}s (attack {r['attack_seconds']:.1f}s)")
    if "clean_acc" in r:
        line += f"  |  test clean {r['clean_acc']:.4f}"
        if "robust_acc" in r:
            line += f"  PGD-{r['eval_steps']}@{r['eval_eps']:g} {r['robust_acc']:.4f}"
        line += f"  (n={r['eval_n']})"
    return line


def _export(run: _Run, history: list[dict[str, Any]]) -> Path:
    """Write ``model/`` (timm-loadable export; bare safetensors weights for models outside the registry)."""
    from safetensors.torch import save_file

    from wsr_bench.infra.atomic import atomic_write_with
    from wsr_bench.models import export_model

    folder = run.folder.model
    final = {k: _finite_or_none(v) for k, v in (history[-1] if history else {}).items()}
    extra = {"dataset": run.dataset, "image_size": run.image_size, "recipe": run.recipe.label,
             "train": config_to_dict(run.tc), "final": final}
    try:
        export_model(run.bare, folder, extra=extra)
    except ValueError as exc:
        logger.warning("%s; writing bare weights to %s/model.safetensors", exc, folder)
        state = {k: v.detach().cpu().contiguous() for k, v in run.bare.state_dict().items()}
        atomic_write_with(folder / "model.safetensors", lambda tmp: save_file(state, str(tmp)))
    return folder


def train_model(cfg: ExperimentConfig, model: nn.Module, splits: DataSplits, out_dir: str | Path,
                resume: bool = False, device: str | None = None, progress: bool = True,
                stop_after: int | None = None) -> TrainSummary:
    """Adversarially train ``model`` as ``cfg.train`` says, checkpointing into ``out_dir``; export at the end.

    The resolved ``cfg`` is written to ``out_dir/config.yaml`` (rank 0) once the checkpoint checks have passed, so a
    refused resume leaves the run folder as it was.

    Args:
        cfg: the experiment config (``train``, ``data.batch_size``/``eval_batch_size``, ``model`` drop-path and
            auxiliary settings, ``seed``).
        model: the network (inputs in [0,1]); trained in place, in the layout ``cfg.memory_format`` says (the export
            and checkpoint do not depend on it). Under torchrun, call ``setup_distributed`` first (``run_training``
            does): the model is wrapped for DDP and only rank 0 writes.
        splits: the data; training uses ``train_t`` + ``train_v`` (the whole training set), checks use ``test``.
        out_dir: run folder (``checkpoint.pt``, ``metrics.jsonl``, ``train.log``, ``model/``).
        resume: continue from ``out_dir/checkpoint.pt`` (start fresh when there is none). Without it an existing
            checkpoint is an error, never overwritten.
        device: ``cpu`` / ``cuda[:N]``; ``None`` = ``cfg.device`` (this rank's GPU under DDP).
        progress: tqdm bars (rank 0).
        stop_after: stop once this many epochs are done (checkpointed, not exported; resume later), e.g. to
            spread a run over time-limited jobs.

    Returns:
        A :class:`TrainSummary` (``model`` empty: the caller knows the name).

    Raises:
        ValueError: bad recipe/config (``ConfigError``), a checkpoint of another model (``ResumeError``), a NaN
            loss (``TrainingDivergedError``; the last good checkpoint is kept).
        FileExistsError: ``out_dir`` holds a checkpoint and ``resume`` is false.
    """
    apply_default_threads()  # once per process: the package's CPU thread default (wsr_bench.infra.threads)
    out = Path(out_dir)
    if is_main_process():
        out.mkdir(parents=True, exist_ok=True)
    run = _Run(cfg, model, splits, out, resolve_device(device or cfg.device), progress)
    start, history = run.restore(resume)
    if is_main_process():
        dump_config(cfg, run.folder.config)
    t0 = time.perf_counter()
    epochs = tqdm(range(start, cfg.train.epochs), desc=f"train {run.recipe.label}", initial=start,
                  total=cfg.train.epochs, disable=not (progress and is_main_process()), dynamic_ncols=True)
    for epoch in epochs:
        history.append(run.train_one(epoch))
        run.save(epoch + 1, history)
        if stop_after is not None and epoch + 1 >= stop_after:
            break
    epochs.close()
    finished = len(history) >= cfg.train.epochs
    folder = run.folder.model
    if finished and is_main_process():
        _export(run, history)
    barrier()
    return TrainSummary(model="", architecture=run.identity["architecture"],
                        params=sum(p.numel() for p in run.bare.parameters()), recipe=run.recipe.label,
                        epochs=cfg.train.epochs, start_epoch=start, epochs_done=len(history), finished=finished,
                        final=history[-1] if history else None, out_dir=str(out),
                        model_dir=str(folder) if finished else None, seconds=time.perf_counter() - t0,
                        rank=get_rank(), world_size=get_world_size())


# ------------------------------------------------------------------------------------------------ CLI entry
def build_model(name: str, cfg: ExperimentConfig, splits: DataSplits, width: int | None = None) -> nn.Module:
    """A registered model (or ``wsrnet`` from a genotype.json) sized by ``cfg.model`` (or by ``width``, for the
    networks outside the DARTS space) for ``splits``' data."""
    from wsr_bench.models.catalog import create

    return create(name, init_channels=cfg.model.init_channels, layers=cfg.model.layers, width=width,
                  num_classes=splits.num_classes, in_chans=splits.in_chans, auxiliary=cfg.model.auxiliary,
                  drop_path_rate=cfg.model.drop_path_rate, mean=tuple(splits.mean), std=tuple(splits.std))


def default_model_name(out_dir: str | Path) -> str:
    """``OUT/genotype.json`` when a search left one there, else ``wsrnet_basic``."""
    genotype = Path(out_dir) / "genotype.json"
    return str(genotype) if genotype.is_file() else "wsrnet_basic"


def run_training(cfg: ExperimentConfig, out_dir: str | Path, model_name: str | None = None, resume: bool = False,
                 device: str | None = None, progress: bool = True) -> TrainSummary:
    """``wsr-bench train``: join torchrun's process group (if any), load the data, build the model, write
    ``config.yaml``, ``train_model``, leave the group (only if this call joined it: a caller that trains several
    models in one torchrun launch sets the group up once and keeps it). Returns ``train_model``'s summary with
    ``model`` filled in."""
    out = Path(out_dir)
    if not resume:
        TrainFolder(out).check_fresh()
    with joined_process_group(resolve_device(device or cfg.device)) as info:  # keeps a group the caller set up
        splits = load_splits(cfg.data, cfg.seed)
        name = model_name or default_model_name(out)
        seed_everything(cfg.seed)  # identical initial weights on every rank (DDP also broadcasts rank 0's)
        model = build_model(name, cfg, splits)
        summary = train_model(cfg, model, splits, out, resume=resume, device=info.device, progress=progress)
        return replace(summary, model=name)
