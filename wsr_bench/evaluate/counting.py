"""Count forward and backward passes through a model, per sample, whatever attack library drives it.

Attacks call ``model(x)`` and then ``torch.autograd.grad`` / ``.backward`` on something computed from the
logits. :class:`CountingModel` wraps the model: each forward adds the batch size to ``forward`` and, when the
output requires grad, registers a gradient hook on the logits, which fires once per backward pass through them
(FAB's one-backward-per-class Jacobian therefore counts once per class). A *pass* is one sample going through
the network once, so attacking 100 images with PGD-20 costs 100*20 forward + 100*20 backward passes.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn as nn


@dataclass
class PassCount:
    """Per-sample forward/backward passes and the number of model calls behind them."""

    forward: int = 0
    backward: int = 0
    forward_calls: int = 0
    backward_calls: int = 0

    @property
    def total(self) -> int:
        """Forward + backward sample passes (the cost figure the benchmark compares)."""
        return self.forward + self.backward

    def __add__(self, other: PassCount) -> PassCount:
        return PassCount(self.forward + other.forward, self.backward + other.backward,
                         self.forward_calls + other.forward_calls, self.backward_calls + other.backward_calls)

    def __sub__(self, other: PassCount) -> PassCount:
        return PassCount(self.forward - other.forward, self.backward - other.backward,
                         self.forward_calls - other.forward_calls, self.backward_calls - other.backward_calls)

    def copy(self) -> PassCount:
        """A snapshot (counters keep moving on the original)."""
        return PassCount(**asdict(self))

    def to_dict(self) -> dict[str, int]:
        """JSON-ready counts including ``total``."""
        return {**asdict(self), "total": self.total}


class CountingModel(nn.Module):
    """Transparent wrapper around ``model`` that counts passes in ``self.count``.

    It forwards ``train()``/``eval()`` and parameters, so torchattacks and pyautoattack treat it as the model. It
    starts in the wrapped model's mode: torchattacks reads ``model.training`` before an attack and calls
    ``model.train()`` afterwards when it was True, which would silently switch BatchNorm to batch statistics.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.count = PassCount()
        self.train(model.training)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.model(x)
        n = int(x.shape[0])
        self.count.forward += n
        self.count.forward_calls += 1
        if isinstance(out, torch.Tensor) and out.requires_grad:
            out.register_hook(self._on_backward(n))
        return out

    def _on_backward(self, n: int):
        def hook(grad: torch.Tensor) -> None:
            self.count.backward += n
            self.count.backward_calls += 1

        return hook

    def reset(self) -> None:
        """Zero the counters."""
        self.count = PassCount()
