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

__all__ = ["AdditiveLossEstimator", "LossMemory", "ValLossEstimator", "build_vle", "fit_vle", "train_vle",
           "vle_loss"]


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

    OUTPUTS = VLE_OUTPUTS  # the config's search.vle.output checks the same list

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


class AdditiveLossEstimator(nn.Module):
    """An additive ``psi``: every (cell, edge, op) adds a fixed amount to each loss, ``psi(H) = b + <W, H>``.

    Fitted in closed form by ridge regression of each of the ``N + 1`` measured losses on the flattened ``H`` of M_v
    (:meth:`fit`), so it needs no passes, no learning rate and no random initialisation, and with the few dozen
    measured architectures of a search it has a well-posed answer where an LSTM over 224 inputs does not
    (benchmarks/results/search_signal.md). Its gradient in ``H`` is ``W`` itself: how much each op on each edge
    is estimated to add to each loss. At a soft ``H = softmax(A)`` it is exactly the expected estimate over the
    architectures Gumbel sampling draws from ``A``, which is what ``search.ewss_query: expected`` minimises.

    With ``op_ridge`` the fit also has a per-cell op term shared by all edges (the draw's count of each op in
    each cell), penalised by ``op_ridge`` instead of ``ridge``: an op that helps on every edge is then learnt from
    every edge's draws at once, and each edge's own term only says how that edge differs. Both terms fold into one
    ``W`` after the fit, so the estimator stays ``b + <W, H>``.

    Args:
        num_edges, num_ops, num_outputs, cells: as :class:`ValLossEstimator`.
        ridge: the L2 penalty of the per-edge costs, in units of squared one-hot entries (larger: estimates shrink
            towards the memory's mean loss; an op seen in few draws moves the estimate less).
        op_ridge: the L2 penalty of the shared per-op costs (``None``: no shared term).
    """

    def __init__(self, num_edges: int, num_ops: int, num_outputs: int, cells: int = 2, ridge: float = 1.0,
                 op_ridge: float | None = None):
        super().__init__()
        if min(num_edges, num_ops, num_outputs, cells) < 1 or not ridge > 0 or not (op_ridge is None or op_ridge > 0):
            raise ValueError(f"AdditiveLossEstimator sizes must be >= 1 and ridges > 0, got edges={num_edges}, "
                             f"ops={num_ops}, outputs={num_outputs}, cells={cells}, ridge={ridge}, "
                             f"op_ridge={op_ridge}")
        self.shape, self.num_outputs, self.ridge = (cells, num_edges, num_ops), num_outputs, float(ridge)
        self.op_ridge = None if op_ridge is None else float(op_ridge)
        self.register_buffer("weight", torch.zeros(num_outputs, cells, num_edges, num_ops))
        self.register_buffer("bias", torch.zeros(num_outputs))

    def forward(self, H: Tensor) -> Tensor:
        """Loss estimates for ``H`` ``(cells, E, K)`` -> ``(N+1,)`` or ``(B, cells, E, K)`` -> ``(B, N+1)``."""
        if tuple(H.shape[-3:]) != self.shape or H.dim() not in (3, 4):
            raise ValueError(f"H must have shape {self.shape} or (B, *{self.shape}), got {tuple(H.shape)}")
        return torch.einsum("...cek,ocek->...o", H.to(self.weight.dtype), self.weight) + self.bias

    @torch.no_grad()
    def fit(self, H: Tensor, losses: Tensor, covariates: Tensor | None = None) -> float:
        """Ridge regression of ``losses`` ``(M, N+1)`` on ``H`` ``(M, cells, E, K)`` (centred, intercept
        unpenalised) and, as nuisance terms with a negligible penalty, on ``covariates`` ``(M, C)``: what the
        measured losses also depend on is then not credited to the ops that happened to be drawn with it. The
        estimator keeps the architecture terms only (a prediction is at the memory's mean covariates). Returns the
        in-sample mean squared error summed over the outputs (as :func:`vle_loss`)."""
        H64 = H.to(self.weight.device, torch.float64)
        parts, penalties = [H64.flatten(1)], [torch.full((H64[0].numel(),), self.ridge, dtype=torch.float64)]
        if self.op_ridge is not None:  # per-cell op counts: the shared term
            parts.append(H64.sum(2).flatten(1))
            penalties.append(torch.full((self.shape[0] * self.shape[2],), self.op_ridge, dtype=torch.float64))
        if covariates is not None and covariates.numel():
            parts.append(covariates.to(self.weight.device, torch.float64).reshape(len(H64), -1))
            penalties.append(torch.full((parts[-1].shape[1],), 1e-6, dtype=torch.float64))
        X, Y = torch.cat(parts, 1), losses.to(self.weight.device, torch.float64)
        x_mean, y_mean = X.mean(0), Y.mean(0)
        Xc, Yc = X - x_mean, Y - y_mean
        gram = Xc.T @ Xc + torch.diag(torch.cat(penalties).to(X.device))
        coef = torch.linalg.solve(gram, Xc.T @ Yc)  # (D, N+1)
        cells, edges, ops = self.shape
        W = coef[:cells * edges * ops].T.reshape(-1, cells, edges, ops)
        if self.op_ridge is not None:
            shared = coef[cells * edges * ops:cells * edges * ops + cells * ops]
            W = W + shared.T.reshape(-1, cells, 1, ops)
        self.weight.copy_(W.to(self.weight.dtype))
        self.bias.copy_((y_mean - x_mean @ coef).to(self.bias.dtype))
        return float((Xc @ coef - Yc).square().sum(-1).mean())


def build_vle(model: str, num_edges: int, num_ops: int, num_outputs: int, hidden: int = 16, output: str = "bounded",
              ridge: float = 1.0, op_ridge: float | None = None) -> nn.Module:
    """The VLE ``search.vle.model`` names: ``lstm`` (Eq. 8, the official estimator) or ``additive``."""
    if model == "additive":
        return AdditiveLossEstimator(num_edges, num_ops, num_outputs, ridge=ridge, op_ridge=op_ridge)
    if model == "lstm":
        return ValLossEstimator(num_edges, num_ops, num_outputs, hidden=hidden, output=output)
    raise ValueError(f"unknown VLE model {model!r}; expected lstm or additive")


def fit_vle(vle: nn.Module, memory: LossMemory, optimizer: torch.optim.Optimizer | None, passes: int = 1,
            batch_size: int = 64, generator: torch.Generator | None = None, input_noise: float = 0.0) -> float:
    """Fit ``psi`` to M_v: the closed form of an :class:`AdditiveLossEstimator`, else :func:`train_vle`'s passes."""
    if isinstance(vle, AdditiveLossEstimator):
        return vle.fit(*memory.tensors(), covariates=memory.covariates())
    if optimizer is None:
        raise ValueError("an LSTM VLE is trained by an optimizer; got None")
    return train_vle(vle, memory, optimizer, passes, batch_size, generator, input_noise)


class LossMemory:
    """M_v: a FIFO of at most ``capacity`` pairs ``(H_t, L_t)`` (architecture weights, measured losses), each with
    optional covariates ``c_t`` (what else the measurement depended on, e.g. whether the draw had just been trained;
    an additive VLE fits them as nuisance terms)."""

    def __init__(self, capacity: int = 64):
        if capacity < 1:
            raise ValueError(f"memory capacity must be >= 1, got {capacity}")
        self.capacity = capacity
        self._items: deque[tuple[Tensor, Tensor, Tensor]] = deque(maxlen=capacity)

    def __len__(self) -> int:
        return len(self._items)

    def push(self, H: Tensor, losses: Tensor, covariates: Tensor | None = None) -> None:
        """Add one pair; ``H`` ``(cells, E, K)``, ``losses`` ``(N+1,)``, ``covariates`` ``(C,)`` or None (stored
        detached on the CPU, float32)."""
        H, losses = H.detach().float().cpu(), torch.as_tensor(losses).detach().float().cpu().flatten()
        cov = torch.zeros(0) if covariates is None else torch.as_tensor(covariates).detach().float().cpu().flatten()
        if self._items:
            h0, l0, c0 = self._items[0]
            if H.shape != h0.shape or losses.shape != l0.shape or cov.shape != c0.shape:
                raise ValueError(f"memory holds H {tuple(h0.shape)}, losses {tuple(l0.shape)} and covariates "
                                 f"{tuple(c0.shape)}, got {tuple(H.shape)}, {tuple(losses.shape)} and "
                                 f"{tuple(cov.shape)}")
        if not torch.isfinite(losses).all():
            raise ValueError(f"measured losses must be finite, got {losses.tolist()}")
        self._items.append((H.clone(), losses.clone(), cov.clone()))

    def tensors(self) -> tuple[Tensor, Tensor]:
        """All pairs stacked: ``H`` ``(M, cells, E, K)`` and losses ``(M, N+1)``, oldest first."""
        if not self._items:
            raise ValueError("LossMemory is empty: push (H, losses) pairs first")
        hs, ls, _ = zip(*self._items, strict=True)
        return torch.stack(hs), torch.stack(ls)

    def covariates(self) -> Tensor:
        """The covariates of every pair, ``(M, C)`` (``C = 0`` when none were pushed)."""
        if not self._items:
            raise ValueError("LossMemory is empty: push (H, losses) pairs first")
        return torch.stack([c for _, _, c in self._items])

    def state_dict(self) -> dict[str, Tensor | int]:
        """Plain tensors for a ``weights_only`` checkpoint."""
        if not self._items:
            return {"capacity": self.capacity}
        H, L = self.tensors()
        state = {"capacity": self.capacity, "H": H, "losses": L}
        cov = self.covariates()
        if cov.shape[1]:
            state["covariates"] = cov
        return state

    def load_state_dict(self, state: dict) -> None:
        """Restore what :meth:`state_dict` returned (entries in the same order)."""
        self.capacity = int(state["capacity"])
        self._items = deque(maxlen=self.capacity)
        if "H" in state:
            covs = state.get("covariates", [None] * len(state["H"]))
            for H, L, c in zip(state["H"], state["losses"], covs, strict=True):
                self.push(H, L, c)


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
