"""The validation-loss estimator (VLE) of the Efficient Wide Spectrum Searcher (paper Eq. 8, 9) and its memory M_v.

``psi(H) -> (L_nat, L_eps1, ..., L_eps(N1+N2))``: an LSTM reads the rows of the architecture weights ``H`` (the
``E`` edges of the normal cell, then the ``E`` edges of the reduction cell; each row is the edge's ``K`` op weights
plus a one-hot cell type) and a dense head maps its final state to ``N1 + N2 + 1`` loss estimates. Because ``psi``
is differentiable in ``H`` and ``H = GumbelSoftmax(A)`` is differentiable in ``A``, the search objective's gradient
reaches ``A`` without a pass over validation images (see ``wsr_bench.search.objective``).

The memory ``M_v`` keeps the last ``T`` pairs ``(H_t, L_t)`` measured during the search; the VLE is trained on it by
the MSE of Eq. 9, in passes over the memory, with Gaussian noise on ``H`` (official: sigma 0.01). Two output forms:
``bounded`` (the official code: ``2 * sigmoid``, losses in (0, 2)) and ``standardised`` (targets standardised per
output with the memory's mean and standard deviation, stored as buffers and undone in ``forward``, so small loss
differences between architectures are not drowned by the common offset of the losses and losses above 2 fit).
"""

from __future__ import annotations

import logging
from collections import deque

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from wsr_bench.rules import VLE_OUTPUTS, check_choice

logger = logging.getLogger(__name__)

__all__ = ["LossMemory", "ValLossEstimator", "train_vle", "vle_loss"]


class ValLossEstimator(nn.Module):
    """``psi`` of Eq. 8: an LSTM architecture encoder over the rows of ``H`` and a dense multi-head output.

    Args:
        num_edges: edges per cell ``E`` (14 for the paper's 4-node cells).
        num_ops: primitives per edge ``K``.
        num_outputs: ``N1 + N2 + 1`` (natural loss first, then one loss per strength in increasing order).
        hidden: LSTM state and head width.
        cells: cell types in ``H`` (2: normal, reduction).
        output: ``bounded`` (``2 * sigmoid``, official) or ``standardised`` (see module docstring).
    """

    OUTPUTS = VLE_OUTPUTS  # the config's search.vle_output checks the same list

    def __init__(self, num_edges: int, num_ops: int, num_outputs: int, hidden: int = 16, cells: int = 2,
                 output: str = "bounded"):
        super().__init__()
        if min(num_edges, num_ops, num_outputs, hidden, cells) < 1:
            raise ValueError(f"ValLossEstimator sizes must be >= 1, got edges={num_edges}, ops={num_ops}, "
                             f"outputs={num_outputs}, hidden={hidden}, cells={cells}")
        check_choice(output, self.OUTPUTS, "VLE output")
        self.output = output
        self.shape = (cells, num_edges, num_ops)
        self.num_outputs = num_outputs
        self.encoder = nn.LSTM(num_ops + cells, hidden, batch_first=True)
        self.head = nn.Sequential(nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, num_outputs))
        cell_code = torch.eye(cells).repeat_interleave(num_edges, dim=0)  # (cells*E, cells)
        self.register_buffer("cell_code", cell_code, persistent=False)
        self.register_buffer("target_mean", torch.zeros(num_outputs))
        self.register_buffer("target_std", torch.ones(num_outputs))

    def forward(self, H: Tensor) -> Tensor:
        """Loss estimates for ``H`` of shape ``(cells, E, K)`` -> ``(N+1,)`` or a batch ``(B, cells, E, K)`` ->
        ``(B, N+1)``; differentiable in ``H``."""
        raw = self.raw(H)
        if self.output == "bounded":
            return 2.0 * torch.sigmoid(raw)
        return raw * self.target_std + self.target_mean

    def raw(self, H: Tensor) -> Tensor:
        """The head's output before the output form (standardised: estimates in units of the memory's std)."""
        single = H.dim() == 3
        batch = H.unsqueeze(0) if single else H
        if batch.dim() != 4 or tuple(batch.shape[1:]) != self.shape:
            raise ValueError(f"H must have shape {self.shape} or (B, *{self.shape}), got {tuple(H.shape)}")
        rows = batch.flatten(1, 2).to(self.cell_code.dtype)  # (B, cells*E, K)
        code = self.cell_code.unsqueeze(0).expand(rows.shape[0], -1, -1)
        _, (h_n, _) = self.encoder(torch.cat([rows, code], dim=-1))
        out = self.head(h_n[-1])
        return out[0] if single else out


class LossMemory:
    """M_v: a FIFO of at most ``capacity`` pairs ``(H_t, L_t)`` (architecture weights, measured losses)."""

    def __init__(self, capacity: int = 64):
        if capacity < 1:
            raise ValueError(f"memory capacity must be >= 1, got {capacity}")
        self.capacity = capacity
        self._items: deque[tuple[Tensor, Tensor]] = deque(maxlen=capacity)

    def __len__(self) -> int:
        return len(self._items)

    def push(self, H: Tensor, losses: Tensor) -> None:
        """Add one pair; ``H`` ``(cells, E, K)``, ``losses`` ``(N+1,)`` (stored detached on the CPU, float32)."""
        H, losses = H.detach().float().cpu(), torch.as_tensor(losses).detach().float().cpu().flatten()
        if self._items:
            h0, l0 = self._items[0]
            if H.shape != h0.shape or losses.shape != l0.shape:
                raise ValueError(f"memory holds H {tuple(h0.shape)} and losses {tuple(l0.shape)}, got H "
                                 f"{tuple(H.shape)} and losses {tuple(losses.shape)}")
        if not torch.isfinite(losses).all():
            raise ValueError(f"measured losses must be finite, got {losses.tolist()}")
        self._items.append((H.clone(), losses.clone()))

    def tensors(self) -> tuple[Tensor, Tensor]:
        """All pairs stacked: ``H`` ``(M, cells, E, K)`` and losses ``(M, N+1)``, oldest first."""
        if not self._items:
            raise ValueError("LossMemory is empty: push (H, losses) pairs first")
        hs, ls = zip(*self._items, strict=True)
        return torch.stack(hs), torch.stack(ls)

    def state_dict(self) -> dict[str, Tensor | int]:
        """Plain tensors for a ``weights_only`` checkpoint."""
        if not self._items:
            return {"capacity": self.capacity}
        H, L = self.tensors()
        return {"capacity": self.capacity, "H": H, "losses": L}

    def load_state_dict(self, state: dict) -> None:
        """Restore what :meth:`state_dict` returned (entries in the same order)."""
        self.capacity = int(state["capacity"])
        self._items = deque(maxlen=self.capacity)
        if "H" in state:
            for H, L in zip(state["H"], state["losses"], strict=True):
                self.push(H, L)


def vle_loss(vle: ValLossEstimator, H: Tensor, losses: Tensor) -> Tensor:
    """Eq. 9: mean over entries of the squared error summed over the N+1 outputs (standardised units for a
    ``standardised`` VLE)."""
    if vle.output == "bounded":
        return F.mse_loss(vle(H), losses, reduction="none").sum(-1).mean()
    target = (losses - vle.target_mean) / vle.target_std
    return F.mse_loss(vle.raw(H), target, reduction="none").sum(-1).mean()


def train_vle(vle: ValLossEstimator, memory: LossMemory, optimizer: torch.optim.Optimizer, passes: int = 1,
              batch_size: int = 64, generator: torch.Generator | None = None, input_noise: float = 0.0) -> float:
    """Train ``psi`` on ``M_v`` for ``passes`` shuffled passes of Eq. 9 (K_v in Algorithm 1); return the mean loss
    of the last pass.

    A standardised VLE first sets its buffers to the memory's per-output mean and standard deviation (floored at
    1e-3, so a memory of identical losses does not blow up). Each step takes ``batch_size`` entries and adds
    ``input_noise`` * N(0, 1) to their ``H`` (official: 0.01); ``generator`` on the CPU pins order and noise.
    """
    if passes < 1 or batch_size < 1 or input_noise < 0:
        raise ValueError(f"passes and batch_size must be >= 1 and input_noise >= 0, got {passes}, {batch_size}, "
                         f"{input_noise}")
    H_all, L_all = memory.tensors()
    if L_all.shape[1] != vle.num_outputs:
        raise ValueError(f"memory losses have {L_all.shape[1]} outputs, the VLE predicts {vle.num_outputs}")
    device = vle.target_mean.device
    H_all, L_all = H_all.to(device), L_all.to(device)
    if vle.output == "standardised":
        vle.target_mean.copy_(L_all.mean(0))
        vle.target_std.copy_(L_all.std(0, unbiased=False).clamp_min(1e-3) if len(L_all) > 1 else torch.ones_like(
            vle.target_std))
    vle.train()
    last = []
    for _ in range(passes):
        order, last = torch.randperm(len(L_all), generator=generator), []
        for start in range(0, len(order), batch_size):
            idx = order[start:start + batch_size]
            H = H_all[idx.to(device)]
            if input_noise > 0:
                H = H + input_noise * torch.randn(H.shape, generator=generator).to(device)
            loss = vle_loss(vle, H, L_all[idx.to(device)])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            last.append(float(loss.detach()) * len(idx))
    return sum(last) / len(L_all)
