"""Process-wide run-time choices, one helper each: which device a job runs on, how its RNGs are seeded, the memory
layout of its networks and the precision of its training.

Every stage (search, training, evaluation, the pipeline, the ``autoattack`` bridge) resolves ``"auto"`` and seeds
the global generators through these functions, so they agree with each other and with the config's ``device`` /
``seed``; every network that is trained, searched or attacked goes through :func:`set_memory_format` (the config's
``memory_format``), and every training step's mixed precision through :func:`amp_autocast` (``train.amp`` /
``search.amp``).
"""

from __future__ import annotations

import contextlib
import random

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from wsr_bench.rules import AMP_MODES, MEMORY_FORMATS, check_choice

__all__ = ["amp_autocast", "check_amp", "memory_format_of", "resolve_device", "seed_everything", "set_memory_format"]


def resolve_device(name: str = "auto") -> str:
    """The device a job runs on: ``auto`` -> ``cuda`` when available, else ``cpu``; other names pass through.

    Inside an initialised process group of more than one rank, ``cuda`` becomes this rank's ``cuda:N`` (the current
    device torchrun's set-up selected), so each rank keeps to its own GPU.
    """
    device = ("cuda" if torch.cuda.is_available() else "cpu") if name == "auto" else name
    if device == "cuda" and dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        return f"cuda:{torch.cuda.current_device()}"
    return device


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and torch's (CPU and CUDA) global generators with ``seed``."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _channels_last_input(module: nn.Module, args: tuple) -> tuple | None:
    """Forward pre-hook: hand a 4-D first argument (the images) to the network in channels-last layout."""
    if args and isinstance(args[0], torch.Tensor) and args[0].dim() == 4:
        return (args[0].contiguous(memory_format=torch.channels_last), *args[1:])
    return None


def set_memory_format(model: nn.Module, name: str = "channels_last") -> nn.Module:
    """Lay out ``model``'s 4-D weights and its 4-D inputs as ``name`` (``channels_last`` | ``contiguous``), in place.

    ``channels_last`` (NHWC) is what timm's ``--channels-last`` does: the weights are converted once, and a forward
    pre-hook converts the images at every call, whoever makes the call (a training loop, torchattacks, AutoAttack,
    a sanity check), so every conv, pooling and BatchNorm of the network runs on NHWC tensors. On a 2-core CPU this
    halves the time of an adversarial-training step of the DARTS networks (``benchmarks/results/throughput.md``).
    ``contiguous`` restores the default NCHW layout and removes the hook. Values never change, only the order of
    float operations; state dicts, exports and checkpoints are layout-independent (a model saved in either layout
    loads into either). Calling it again with either name is safe.

    Returns:
        ``model`` itself.

    Raises:
        ValueError: ``name`` is not one of :data:`~wsr_bench.rules.MEMORY_FORMATS`.
    """
    check_choice(name, MEMORY_FORMATS, "memory_format")
    for key, hook in list(model._forward_pre_hooks.items()):
        if hook is _channels_last_input:
            del model._forward_pre_hooks[key]
    if name == "channels_last":
        model.to(memory_format=torch.channels_last)
        model.register_forward_pre_hook(_channels_last_input)
    else:
        model.to(memory_format=torch.contiguous_format)
    return model


def memory_format_of(model: nn.Module) -> str:
    """``"channels_last"`` if :func:`set_memory_format` put ``model`` in that layout, else ``"contiguous"``."""
    return "channels_last" if _channels_last_input in model._forward_pre_hooks.values() else "contiguous"


def check_amp(amp: str, device: str | torch.device, key: str = "amp") -> None:
    """Refuse a mixed-precision mode the device cannot run, in one line, before any work starts.

    Raises:
        ValueError: ``amp`` is not ``none``/``bf16`` (``key`` names the setting), or ``bf16`` on a CUDA device
            without bfloat16 support (pre-Ampere GPUs); CPUs run bf16 autocast everywhere (fast where they have
            AVX512-BF16 or AMX, emulated elsewhere).
    """
    check_choice(amp, AMP_MODES, key)
    dev = torch.device(device)
    if amp == "bf16" and dev.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise ValueError(f"{key} bf16: {torch.cuda.get_device_name(dev)} has no bfloat16 support; set {key}: none")


def amp_autocast(device: str | torch.device, amp: str = "none") -> contextlib.AbstractContextManager:
    """The autocast context of a training step: bfloat16 autocast on ``device``'s type for ``amp="bf16"``, nothing
    for ``"none"`` (float32, bit-reproducible on the CPU). Losses are taken in float32 (autocast's own rule for
    cross-entropy); the backward pass and the optimizer step are float32 either way."""
    check_choice(amp, AMP_MODES, "amp")
    if amp == "none":
        return contextlib.nullcontext()
    return torch.autocast(torch.device(device).type, dtype=torch.bfloat16)
