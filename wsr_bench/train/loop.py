"""One ``train_epoch`` and one ``eval_epoch``, used by retraining, the search and the benchmarks.

Both work unchanged under DDP: pass a model wrapped by ``wsr_bench.infra.distributed.wrap_ddp`` and a loader from
``shard_loader``; attacks run on the bare network, the training forward goes through the wrapper (so gradients
are averaged), and the returned statistics are reduced over ranks (``n``-weighted means, summed counts).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from wsr_bench.infra.distributed import TrainView, all_reduce_stats, any_rank, is_main_process, unwrap_model
from wsr_bench.infra.runtime import amp_autocast
from wsr_bench.train.recipes import TrainRecipe, adversarial_examples, attack_batch, recipe_loss

logger = logging.getLogger(__name__)

StepCallback = Callable[[int, dict[str, Any]], Any]


class NonFiniteLossError(ValueError):
    """The training loss became NaN or infinite (the step was not applied)."""

    def __init__(self, message: str, step: int, value: float):
        super().__init__(message)
        self.step, self.value = step, value


def _forward_fn(model: nn.Module, bare: nn.Module) -> Callable[[torch.Tensor, bool], tuple[torch.Tensor, Any]]:
    """``forward(x, aux) -> (logits, aux_logits|None)`` through the DDP wrapper when there is one."""
    ddp = isinstance(model, nn.parallel.DistributedDataParallel)
    if ddp and not isinstance(model.module, TrainView):
        def plain_ddp(x: torch.Tensor, aux: bool) -> tuple[torch.Tensor, Any]:
            if aux:
                raise ValueError("auxiliary loss under DDP needs the model wrapped by "
                                 "wsr_bench.infra.distributed.wrap_ddp")
            return model(x), None
        return plain_ddp

    def forward(x: torch.Tensor, aux: bool) -> tuple[torch.Tensor, Any]:
        if aux and not hasattr(bare, "forward_with_aux"):
            raise ValueError(f"aux_weight > 0 needs a model with forward_with_aux (DARTS auxiliary head); "
                             f"{type(bare).__name__} has none")
        if ddp:
            out = model(x, aux=aux)
            return out if aux else (out, None)
        return bare.forward_with_aux(x) if aux else (model(x), None)
    return forward


@dataclass(frozen=True)
class LoopOptions:
    """How :func:`train_epoch` takes each step, built once per run (by the training driver, the search, a
    benchmark) and passed to every epoch. What a step learns from is the ``TrainRecipe``; the model, data, optimizer,
    schedule, augmentation, callbacks and progress bar are the epoch's arguments."""

    grad_clip: float | None = None  # max gradient norm (None/0: no clipping)
    aux_weight: float = 0.0         # weight of DARTS' auxiliary-head loss (0: no auxiliary forward)
    max_steps: int | None = None    # stop the epoch after this many batches (None: the whole loader)
    amp: str = "none"               # none | bf16: autocast of the step's attack and forward (runtime.amp_autocast)


@dataclass(frozen=True)
class EpochRuntime:
    """What an epoch runs with beside the step settings (:class:`LoopOptions`): none of it changes what a step
    computes, only where it runs, what surrounds it and what is shown."""

    device: Any = "cpu"                                               # where batches go (a str or torch.device)
    scheduler: Any = None                                             # steps once per batch after the optimizer
    augment: Callable[[torch.Tensor], torch.Tensor] | None = None     # transform of the clean batch (crop/flip/...)
    step_callback: StepCallback | None = None                         # step_callback(step, info); truthy: stop
    progress: bool = False                                            # a tqdm bar (rank 0 only)
    desc: str = "train"                                               # its label


_LOOP_FIELDS = frozenset(f.name for f in dataclasses.fields(LoopOptions))


def _clip(model: nn.Module, grad_clip: float | None) -> None:
    if grad_clip:
        nn.utils.clip_grad_norm_(model.parameters(), grad_clip)


def train_epoch(model: nn.Module, loader: Iterable, optimizer: torch.optim.Optimizer, recipe: TrainRecipe,
                options: LoopOptions | None = None, *, runtime: EpochRuntime | None = None,
                **fields: Any) -> dict[str, Any]:
    """Train for one pass over ``loader`` with ``recipe``.

    Args:
        model: the network, or ``wrap_ddp(network)``; left in training mode.
        loader: yields ``(x, y)`` with x in [0,1].
        optimizer: steps once per batch; ``scheduler`` (optional) steps once per batch after it.
        recipe: a ``TrainRecipe``.
        options: the step settings (:class:`LoopOptions`).
        runtime: the rest (:class:`EpochRuntime`): ``device``, ``scheduler``, ``augment``, ``step_callback``,
            ``progress``, ``desc``. Keyword ``fields`` replace fields of either, e.g.
            ``train_epoch(model, loader, opt, recipe, grad_clip=5.0, device="cpu")``.
        device: where batches go.
        augment: batch transform applied to the clean batch before the attack (crop/flip/cutout).
        step_callback: called after each step as ``step_callback(step, {"loss", "acc", "n", "lr"})``; a truthy
            return value ends the epoch early.
        progress: show a tqdm bar (rank 0 only), labelled ``desc``.

    Returns:
        ``{"loss", "acc", "n", "steps", "seconds", "attack_seconds"}``: mean loss and accuracy on the batches the
        loss was computed from (adversarial ones for every recipe but ``clean``), examples seen, wall times.

    Raises:
        NonFiniteLossError: the loss of some step is NaN/inf (that step is not applied; all ranks stop).
    """
    loop_fields = {k: v for k, v in fields.items() if k in _LOOP_FIELDS}
    runtime_fields = {k: v for k, v in fields.items() if k not in loop_fields}
    runtime = dataclasses.replace(runtime or EpochRuntime(), **runtime_fields)
    options = dataclasses.replace(options or LoopOptions(), **loop_fields)
    device, augment, scheduler, progress, desc = (runtime.device, runtime.augment, runtime.scheduler, runtime.progress,
                                                  runtime.desc)
    step_callback = runtime.step_callback
    bare = unwrap_model(model)
    forward = _forward_fn(model, bare)
    model.train()
    t0, attack_s = time.perf_counter(), 0.0
    loss_sum, correct, n, steps = 0.0, 0, 0, 0
    bar = tqdm(loader, desc=desc, disable=not (progress and is_main_process()), leave=False, dynamic_ncols=True)
    for step, (x, y) in enumerate(bar):
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        if augment is not None:
            x = augment(x)
        with amp_autocast(device, options.amp):
            ta = time.perf_counter()
            x_train, y_train = attack_batch(recipe, bare, x, y)
            attack_s += time.perf_counter() - ta
            loss, logits = recipe_loss(recipe, forward, x, y, x_train, y_train, options.aux_weight)
        value = float(loss.detach())
        if any_rank(not math.isfinite(value)):
            raise NonFiniteLossError(f"non-finite training loss ({value}) at step {step} of {desc}; the step was not "
                                     f"applied", step, value)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        _clip(model, options.grad_clip)
        optimizer.step()
        if scheduler is not None:
            scheduler.step()
        b = y_train.numel()
        batch_correct = int((logits.detach().argmax(1) == y_train).sum())
        loss_sum, correct, n, steps = loss_sum + value * b, correct + batch_correct, n + b, steps + 1
        bar.set_postfix(loss=f"{loss_sum / n:.3f}", acc=f"{correct / n:.3f}")
        info = {"loss": value, "acc": batch_correct / b, "n": b, "lr": optimizer.param_groups[0]["lr"]}
        stop = step_callback is not None and step_callback(step, info)
        if stop or (options.max_steps and steps >= options.max_steps):
            break
    bar.close()
    stats = {"loss": loss_sum / max(n, 1), "acc": correct / max(n, 1), "n": n, "steps": steps,
             "seconds": time.perf_counter() - t0, "attack_seconds": attack_s}
    return all_reduce_stats(stats)


def eval_epoch(model: nn.Module, loader: Iterable, device: str | torch.device = "cpu", attack: Any = None,
               progress: bool = False, desc: str = "eval") -> dict[str, Any]:
    """Accuracy and CE loss over ``loader``: clean when ``attack`` is ``None``, else under Linf PGD.

    Args:
        model: the network (a DDP wrapper is unwrapped); evaluated in eval mode, its mode restored after.
        loader: yields ``(x, y)``; under DDP a ``shard_loader`` (statistics are reduced over ranks).
        attack: anything with ``eps`` and ``steps`` (and optionally ``step_size``, ``random_start``), e.g. a
            ``TrainRecipe``: PGD-``steps`` at ``eps`` with step ``step_size`` or eps*2.5/steps.

    Returns:
        ``{"loss", "acc", "n", "seconds"}`` (plus ``"eps"`` and ``"attack_steps"`` under attack).
    """
    bare = unwrap_model(model)
    was_training = bare.training
    bare.eval()
    t0, loss_sum, correct, n = time.perf_counter(), 0.0, 0, 0
    try:
        for x, y in tqdm(loader, desc=desc, disable=not (progress and is_main_process()), leave=False):
            x, y = x.to(device), y.to(device)
            if attack is not None:
                x = adversarial_examples(bare, x, y, float(attack.eps), int(attack.steps),
                                         getattr(attack, "step_size", None), getattr(attack, "random_start", True))
            with torch.no_grad():
                logits = bare(x)
            loss_sum += float(F.cross_entropy(logits, y, reduction="sum"))
            correct += int((logits.argmax(1) == y).sum())
            n += y.numel()
    finally:
        bare.train(was_training)
    stats: dict[str, Any] = {"loss": loss_sum / max(n, 1), "acc": correct / max(n, 1), "n": n,
                             "seconds": time.perf_counter() - t0}
    if attack is not None:
        stats.update(eps=float(attack.eps), attack_steps=int(attack.steps))
    return all_reduce_stats(stats)
