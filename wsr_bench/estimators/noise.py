"""Adversarial Noise Estimators (AN-Estimators, paper Eq. 3-7, Fig. 2) and their memory M_a (Eq. 4, 5).

An AN-Estimator turns ``N1`` PGD noises of an input (the *anchors*, at strengths ``eps_1 < ... < eps_N1``) into
noises at other strengths ``eps_hat`` at a small fraction of PGD's cost, so a search can use many strengths while
running PGD at only a few. Four designs, all ``nn.Module``s with one call signature::

    delta_hat = est(x, anchors, anchor_eps, target_eps)   # (B,C,H,W), (B,N1,C,H,W), (N1,)|(B,N1), (N2,)|(B,N2)
                                                           # -> (B,N2,C,H,W)

* ``"wa"``  WA-ANE: weight-free linear interpolation between the neighbouring anchors (Eq. 6).
* ``"a"``   A-ANE: WA-ANE plus a trainable adjustment (Eq. 7): a bi-directional RNN with vector hidden states over
  the anchor sequence and an attention stage whose values come from a shared conv module over the noises (plus a
  per-sample gate from the query, our addition; ``gate=False`` removes it).
* ``"e"``   E-ANE: the same with feature-map hidden states (conv RNN cells); keys and values from the state maps.
* ``"e_minus"`` E-ANE without attention: the states queried at ``eps_hat`` are decoded directly.

Every output is projected into its ``eps_hat`` Linf ball and so that ``x + delta`` stays in [0, 1]. The trainable
branches end in zero-initialised layers, so an untrained A/E/E- estimator equals WA-ANE and training (MSE to the
PGD noise at ``eps_hat``, Eq. 5) starts from a sensible estimate.

*Strength fed to the encoders* (``strength=``): ``"linf"`` feeds the Linf eps; ``"l2"`` feeds the noise's L2 norm, as
the official code does, divided by ``sqrt(C*H*W)`` (the RMS) so that it is on the eps scale for any image size. A
target's L2 norm is unknown before the noise exists, so it is estimated by interpolating the anchors' norms at
``eps_hat`` with the WA-ANE weights (linear between the neighbouring anchors, ``eps_hat/eps_1`` or
``eps_hat/eps_N1`` times the end anchor's norm outside). WA-ANE itself always interpolates in Linf eps.
"""

from __future__ import annotations

import logging
import math
from collections import deque
from collections.abc import Sequence
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from wsr_bench.estimators.anchors import pgd_noise
from wsr_bench.rules import ESTIMATORS as ESTIMATOR_NAMES
from wsr_bench.rules import STRENGTH_FEEDS, check_choice

logger = logging.getLogger(__name__)

__all__ = [
    "ESTIMATORS",
    "AttentionEstimator",
    "EncodingEstimator",
    "EncodingEstimatorNoAttention",
    "NoiseEstimator",
    "NoiseMemory",
    "WeightedAverageEstimator",
    "build_estimator",
    "pgd_noise",
    "project_noise",
    "train_estimator",
]

_STRENGTH_SCALE = 10.0  # strengths (~0.01-0.2) are multiplied by this before the FC norm encoders


class Neighbours(NamedTuple):
    """Where each target strength sits in the anchor sequence, all ``(B, N2)``.

    ``lo``/``hi`` index the anchors WA-ANE mixes with weights ``w_lo``/``w_hi``; ``below`` counts anchors with
    ``eps < eps_hat`` and ``not_above`` anchors with ``eps <= eps_hat`` (where the RNN queries start).
    """

    lo: Tensor
    hi: Tensor
    w_lo: Tensor
    w_hi: Tensor
    below: Tensor
    not_above: Tensor


def _as_eps(value: Tensor | Sequence[float] | float, batch: int, name: str, ref: Tensor) -> Tensor:
    """Strengths as a ``(B, N)`` tensor in ``ref``'s dtype/device; a ``(N,)`` vector is shared by the batch."""
    eps = torch.as_tensor(value, dtype=ref.dtype, device=ref.device)
    if eps.dim() == 0:
        eps = eps.reshape(1)
    if eps.dim() == 1:
        eps = eps.unsqueeze(0).expand(batch, -1)
    if eps.dim() != 2 or eps.shape[0] != batch or eps.shape[1] == 0:
        raise ValueError(f"{name} must have shape (N,) or (B={batch}, N) with N >= 1, got {tuple(eps.shape)}")
    if not torch.isfinite(eps).all() or (eps <= 0).any():
        raise ValueError(f"{name} must be finite strengths > 0, got min {eps.min().item():.4g}")
    return eps


def check_inputs(x: Tensor, anchors: Tensor, anchor_eps: Tensor | Sequence[float],
                 target_eps: Tensor | Sequence[float] | float, in_chans: int | None = None,
                 image_size: tuple[int, int] | None = None) -> tuple[Tensor, Tensor]:
    """Validate an estimator call and return ``(anchor_eps, target_eps)`` as ``(B, N1)`` and ``(B, N2)`` tensors.

    Raises:
        ValueError: wrong ranks or mismatched shapes, anchors not strictly increasing in strength, a strength
            ``<= 0``, or images whose channels/size differ from what the estimator was built for.
    """
    if x.dim() != 4:
        raise ValueError(f"x must be images (B, C, H, W), got shape {tuple(x.shape)}")
    if anchors.dim() != 5 or anchors.shape[0] != x.shape[0] or anchors.shape[2:] != x.shape[1:]:
        want = f"({x.shape[0]}, N1, {', '.join(map(str, x.shape[1:]))})"
        raise ValueError(f"anchors must have shape (B, N1, C, H, W) = {want}, got {tuple(anchors.shape)}")
    if in_chans is not None and x.shape[1] != in_chans:
        raise ValueError(f"estimator was built for {in_chans} channels, images have {x.shape[1]}")
    if image_size is not None and tuple(x.shape[-2:]) != tuple(image_size):
        raise ValueError(f"estimator was built for {tuple(image_size)} images, got {tuple(x.shape[-2:])}")
    a_eps = _as_eps(anchor_eps, x.shape[0], "anchor_eps", x)
    if a_eps.shape[1] != anchors.shape[1]:
        raise ValueError(f"anchor_eps has {a_eps.shape[1]} strengths but anchors hold {anchors.shape[1]} noises")
    if (a_eps[:, 1:] <= a_eps[:, :-1]).any():
        raise ValueError("anchors must be sorted by strictly increasing strength (anchor_eps[..., i] < anchor_eps[..., "
                         f"i+1]), got {a_eps[0].tolist()}")
    t_eps = _as_eps(target_eps, x.shape[0], "target_eps", x)
    return a_eps, t_eps


def neighbours(anchor_eps: Tensor, target_eps: Tensor) -> Neighbours:
    """WA-ANE's neighbouring anchors and weights for every target (``(B, N1)``, ``(B, N2)`` -> ``(B, N2)`` each).

    Between anchors ``eps^- < eps_hat <= eps^+`` the nearer anchor gets the larger weight,
    ``w^- = (eps^+ - eps_hat) / (eps^+ - eps^-)``; the weights printed in the paper's Eq. 6 are the other way round
    (the farther anchor would dominate, and ``eps_hat = eps^+`` would return ``delta_{eps^-}``), which contradicts
    its own description, so the evident intent is implemented. Outside the anchors the end anchor is scaled,
    ``(eps_hat/eps_1) delta_1`` or ``(eps_hat/eps_N1) delta_N1`` (the printed ``eps_1 delta_1`` is read the same way).
    """
    n1 = anchor_eps.shape[1]
    a = anchor_eps.contiguous()
    t = target_eps.contiguous()
    below = torch.searchsorted(a, t)  # anchors with eps < t
    not_above = torch.searchsorted(a, t, right=True)  # anchors with eps <= t
    lo = (below - 1).clamp(0, n1 - 1)
    hi = below.clamp(0, n1 - 1)
    e_lo, e_hi = a.gather(1, lo), a.gather(1, hi)
    inside = (below > 0) & (below < n1)
    span = torch.where(inside, e_hi - e_lo, torch.ones_like(t))
    w_lo = torch.where(inside, (e_hi - t) / span, t / e_lo)
    w_hi = torch.where(inside, (t - e_lo) / span, torch.zeros_like(t))  # outside: lo is the end anchor, scaled
    return Neighbours(lo, hi, w_lo, w_hi, below, not_above)


def _pick(seq: Tensor, idx: Tensor) -> Tensor:
    """``seq[b, idx[b, j]]`` for a ``(B, N, ...)`` sequence and ``(B, M)`` indices -> ``(B, M, ...)``."""
    rows = torch.arange(seq.shape[0], device=seq.device).unsqueeze(1).expand_as(idx)
    return seq[rows, idx]


def _mix(seq: Tensor, nb: Neighbours) -> Tensor:
    """WA-ANE combination ``w_lo * seq[lo] + w_hi * seq[hi]`` of a ``(B, N1, ...)`` sequence."""
    shape = nb.w_lo.shape + (1,) * (seq.dim() - 2)
    return nb.w_lo.reshape(shape) * _pick(seq, nb.lo) + nb.w_hi.reshape(shape) * _pick(seq, nb.hi)


def project_noise(delta: Tensor, x: Tensor, eps: Tensor) -> Tensor:
    """Clamp ``delta`` (B,N,C,H,W) into each ``eps`` (B,N) Linf ball and so that ``x + delta`` is in [0, 1]."""
    e = eps.reshape(eps.shape + (1, 1, 1))
    delta = torch.maximum(torch.minimum(delta, e), -e)
    xb = x.unsqueeze(1)
    return torch.maximum(torch.minimum(delta, 1 - xb), -xb)


def _normalised(noise: Tensor, strength: str) -> Tensor:
    """Noise ``(..., C, H, W)`` divided by its own Linf norm (``linf``) or RMS (``l2``), so encoders see its shape."""
    flat = noise.flatten(-3)
    scale = flat.abs().amax(-1) if strength == "linf" else flat.pow(2).mean(-1).sqrt()
    return noise / scale.clamp_min(1e-12).reshape(scale.shape + (1, 1, 1))


class NoiseEstimator(nn.Module):
    """Base class: validation, WA-ANE interpolation, the learned adjustment (if any) and the final projection.

    Subclasses implement :meth:`adjustment`, returning ``(B, N2, C, H, W)`` in units of ``eps_hat`` (the output
    is ``WA + eps_hat * adjustment``), or ``None`` for no adjustment.
    """

    def __init__(self, in_chans: int = 3, image_size: int | tuple[int, int] = 32, strength: str = "linf"):
        super().__init__()
        check_choice(strength, STRENGTH_FEEDS, "strength")
        if in_chans < 1:
            raise ValueError(f"in_chans must be >= 1, got {in_chans}")
        size = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
        if len(size) != 2 or min(size) < 2:
            raise ValueError(f"image_size must be an int or (H, W) of at least 2 pixels, got {image_size!r}")
        self.in_chans, self.image_size, self.strength = in_chans, size, strength

    def param_count(self) -> int:
        """Number of trainable parameters (0 for WA-ANE)."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad)

    def strengths(self, anchors: Tensor, anchor_eps: Tensor, nb: Neighbours,
                  target_eps: Tensor) -> tuple[Tensor, Tensor]:
        """Strengths fed to the encoders: Linf eps, or RMS (L2 / sqrt(CHW)) with targets interpolated (see module)."""
        if self.strength == "linf":
            return anchor_eps, target_eps
        rms = anchors.flatten(2).pow(2).mean(-1).sqrt()
        return rms, _mix(rms, nb).clamp_min(1e-8)

    def adjustment(self, x: Tensor, anchors: Tensor, anchor_s: Tensor, target_s: Tensor,
                   nb: Neighbours) -> Tensor | None:
        """Learned correction in units of eps_hat, ``(B, N2, C, H, W)``; ``None`` when there is none."""
        return None

    def forward(self, x: Tensor, anchors: Tensor, anchor_eps: Tensor | Sequence[float],
                target_eps: Tensor | Sequence[float] | float) -> Tensor:
        """Estimate noises at ``target_eps`` from anchors at ``anchor_eps`` (shapes in the module docstring)."""
        a_eps, t_eps = check_inputs(x, anchors, anchor_eps, target_eps, self.in_chans, self.image_size)
        nb = neighbours(a_eps, t_eps)
        delta = _mix(anchors, nb)
        if next(self.parameters(), None) is not None:
            anchor_s, target_s = self.strengths(anchors, a_eps, nb, t_eps)
            adj = self.adjustment(x, anchors, anchor_s, target_s, nb)
            if adj is not None:
                delta = delta + adj * t_eps.reshape(t_eps.shape + (1, 1, 1))
        return project_noise(delta, x, t_eps)


class WeightedAverageEstimator(NoiseEstimator):
    """WA-ANE (Eq. 6): linear interpolation between the anchors neighbouring eps_hat, scaling outside them.

    No parameters. The paper's printed Eq. 6 gives the *farther* anchor the larger weight and writes
    ``eps_1 delta_1`` below the first anchor; this implements the evident intent (nearer anchor weighs more,
    ``(eps_hat/eps_1) delta_1``), so ``eps_hat == eps_i`` returns anchor ``i`` exactly. See :func:`neighbours`.
    """


def _cpr(in_ch: int, channels: int, pool: int) -> nn.Sequential:
    """Conv-Pool-Reshape: strided 3x3 conv, ReLU, adaptive average pool to ``pool x pool``, flatten."""
    return nn.Sequential(nn.Conv2d(in_ch, channels, 3, stride=2, padding=1), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(pool), nn.Flatten())


def _zero_last(module: nn.Sequential) -> nn.Sequential:
    """Zero the last layer so the learned adjustment starts at 0 (the estimator starts as WA-ANE)."""
    nn.init.zeros_(module[-1].weight)
    nn.init.zeros_(module[-1].bias)
    return module


def _options(cls: type, given: dict[str, Any]) -> dict[str, Any]:
    """``cls.OPTIONS`` with ``given`` replacing them; a name it lacks is a ``TypeError`` naming it."""
    unknown = sorted(set(given) - set(cls.OPTIONS))
    if unknown:
        raise TypeError(f"{cls.__name__} got an unexpected keyword argument {unknown[0]!r}")
    return {**cls.OPTIONS, **given}


class _RecurrentEstimator(NoiseEstimator):
    """Shared part of A-ANE and E-ANE: the bi-directional RNN over the anchor sequence (Fig. 2).

    Subclasses define ``x_enc`` (initial state from x), ``norm_enc`` (strength encoding), the cells ``cell_f`` /
    ``cell_b`` and :meth:`_step` (vector states for A-ANE, feature maps for E-ANE).
    """

    def _step(self, cell: nn.Module, h: Tensor, noise_code: Tensor, norm_code: Tensor) -> Tensor:
        raise NotImplementedError

    def _norm_code(self, strength: Tensor) -> Tensor:
        """Encoding of strengths ``(..., )`` -> ``(..., norm_dim)``."""
        return F.relu(self.norm_enc(_STRENGTH_SCALE * strength.unsqueeze(-1)))

    def _recur(self, x: Tensor, codes: Tensor, norms: Tensor) -> tuple[Tensor, Tensor]:
        """Run both cells over the anchors' codes ``(B, N1, ...)`` from the state encoded from ``x``.

        Returns ``(fwd_seq, bwd_seq)``, each ``(B, N1+1, ...)``: ``fwd_seq[:, k]`` is the state after the first k
        anchors, ``bwd_seq[:, k]`` the state after anchors k..N1-1 (``bwd_seq[:, N1]`` is the initial state).
        """
        n1 = codes.shape[1]
        h0 = self.x_enc(x)
        fwd, bwd = [h0], [h0]
        for i in range(n1):
            fwd.append(self._step(self.cell_f, fwd[-1], codes[:, i], norms[:, i]))
            bwd.append(self._step(self.cell_b, bwd[-1], codes[:, n1 - 1 - i], norms[:, n1 - 1 - i]))
        return torch.stack(fwd, 1), torch.stack(bwd[::-1], 1)


class AttentionEstimator(_RecurrentEstimator):
    """A-ANE (Eq. 7, Fig. 2): WA-ANE + attention over a bi-directional vector RNN of the anchors.

    Cell ``F_f``/``F_b``: ``h = tanh(FC([h_prev, CPR(normalised noise), FC(strength)]))``; the initial state is
    ``tanh(FC(CPR(x)))``. The query for eps_hat runs each cell once more from the state next to eps_hat (forward:
    after the anchors below it; backward: after those above it) with a zero noise encoding and eps_hat's norm
    encoding; keys are the concatenated forward/backward states; values are a shared conv module over each
    normalised noise at full resolution (optionally with x as extra input channels).
    ``adjustment = gate(q) * (softmax(q.k / sqrt(d)) @ values)``.

    Args:
        in_chans: image channels. image_size: image side (or (H, W)). strength: ``"linf"`` or ``"l2"``.
        hidden: RNN state size. enc_channels: CPR conv channels (encoding = enc_channels * pool**2).
        pool: CPR pooled side. norm_dim: norm-encoding size. value_channels: hidden channels of the value convs.
        value_with_image: also feed x to the value convs. value_kernel: kernel of the second value conv.
        gate: scale the attention output per sample, target and channel by ``1 + tanh(FC(query))``. Not in the
            paper: without it the values (one fixed conv per anchor) cannot change how strongly the correction acts
            for a given input, so a single estimator trained on several victims applies one average correction
            and its attack strength swung with the order of the victims and the learning rate (Table 5
            benchmark: 70-94% of PGD-7's accuracy drop kept; see benchmarks/README.md). ``gate=False`` is the
            paper's form.

    Defaults (hidden 32, 8-channel CPR pooled to 4x4, 8-channel values) give ~20k parameters and ~0.4 MFLOP per
    estimated noise on 3x16x16 images with 4 anchors and 3 targets; the full-resolution value convs dominate.
    """

    #: the sizes and switches (keyword arguments of the constructor) and their defaults
    OPTIONS: dict[str, Any] = {"hidden": 32, "enc_channels": 8, "pool": 4, "norm_dim": 16, "value_channels": 8,
                               "value_with_image": False, "value_kernel": 3, "gate": True}

    def __init__(self, in_chans: int = 3, image_size: int | tuple[int, int] = 32, strength: str = "linf",
                 **options: Any):
        super().__init__(in_chans, image_size, strength)
        o = _options(type(self), options)
        hidden, enc_channels, pool, norm_dim = o["hidden"], o["enc_channels"], o["pool"], o["norm_dim"]
        value_channels, value_with_image, value_kernel, gate = (o["value_channels"], o["value_with_image"],
                                                                o["value_kernel"], o["gate"])
        enc = enc_channels * pool * pool
        self.x_enc = nn.Sequential(_cpr(in_chans, enc_channels, pool), nn.Linear(enc, hidden), nn.Tanh())
        self.noise_enc = _cpr(in_chans, enc_channels, pool)
        self.norm_enc = nn.Linear(1, norm_dim)
        self.cell_f = nn.Linear(hidden + enc + norm_dim, hidden)
        self.cell_b = nn.Linear(hidden + enc + norm_dim, hidden)
        self.query = nn.Linear(2 * hidden, 2 * hidden)
        v_in = 2 * in_chans if value_with_image else in_chans
        self.values = _zero_last(nn.Sequential(nn.Conv2d(v_in, value_channels, 3, padding=1), nn.ReLU(),
                                               nn.Conv2d(value_channels, in_chans, value_kernel,
                                                         padding=value_kernel // 2)))
        self.enc_dim, self.value_with_image = enc, value_with_image
        self.gate = nn.Linear(2 * hidden, in_chans) if gate else None

    def _step(self, cell: nn.Linear, h: Tensor, noise_code: Tensor, norm_code: Tensor) -> Tensor:
        return torch.tanh(cell(torch.cat([h, noise_code, norm_code], dim=-1)))

    def adjustment(self, x: Tensor, anchors: Tensor, anchor_s: Tensor, target_s: Tensor,
                   nb: Neighbours) -> Tensor:
        b, n1 = anchors.shape[:2]
        normed = _normalised(anchors, self.strength)
        codes = self.noise_enc(normed.flatten(0, 1)).view(b, n1, -1)
        fwd_seq, bwd_seq = self._recur(x, codes, self._norm_code(anchor_s))  # (B, N1+1, h) each
        keys = torch.cat([fwd_seq[:, 1:], bwd_seq[:, :-1]], dim=-1)  # (B, N1, 2h)
        n2 = target_s.shape[1]
        t_norm = self._norm_code(target_s)
        zero = t_norm.new_zeros(b, n2, self.enc_dim)
        q_f = self._step(self.cell_f, _pick(fwd_seq, nb.below), zero, t_norm)
        q_b = self._step(self.cell_b, _pick(bwd_seq, nb.not_above), zero, t_norm)
        query = self.query(torch.cat([q_f, q_b], dim=-1))  # (B, N2, 2h)
        attn = torch.softmax(query @ keys.transpose(1, 2) / math.sqrt(keys.shape[-1]), dim=-1)  # (B, N2, N1)
        if self.value_with_image:
            normed = torch.cat([normed, x.unsqueeze(1).expand_as(normed)], dim=2)
        values = self.values(normed.flatten(0, 1)).view_as(anchors)
        adj = torch.einsum("bti,bichw->btchw", attn, values)
        if self.gate is not None:
            adj = adj * (1 + torch.tanh(self.gate(query)))[..., None, None]
        return adj


class EncodingEstimator(_RecurrentEstimator):
    """E-ANE: WA-ANE + attention over a bi-directional *convolutional* RNN (feature-map hidden states).

    States are ``hidden`` maps at half resolution: ``h = tanh(conv([h_prev, conv(normalised noise),
    broadcast FC(strength)]))``, initial state ``tanh(conv(x))``. The query (pooled states next to eps_hat, stepped
    once with a zero noise map and eps_hat's norm) attends over keys pooled from the concatenated state maps;
    values are decoded from the state maps (two convs at the states' resolution, then bilinear upsampling to the
    image size, which keeps E-ANE light but smooth). With ``attention=False`` (E-ANE⁻) the queried state maps are
    decoded directly.

    Args:
        in_chans, image_size, strength: as for :class:`AttentionEstimator`.
        hidden: state channels. enc_channels: noise-encoding channels. norm_dim: norm-encoding channels.
        key_dim: query/key size. pool: side the state maps are pooled to for keys/queries.
        dec_channels: hidden channels of the decoder. attention: ``False`` gives E-ANE⁻.
        gate: as for :class:`AttentionEstimator` (with attention only; E-ANE⁻ has no query vector).
    """

    #: the sizes and switches (keyword arguments of the constructor) and their defaults
    OPTIONS: dict[str, Any] = {"hidden": 8, "enc_channels": 8, "norm_dim": 4, "key_dim": 32, "pool": 2,
                               "dec_channels": 8, "attention": True, "gate": True}

    def __init__(self, in_chans: int = 3, image_size: int | tuple[int, int] = 32, strength: str = "linf",
                 **options: Any):
        super().__init__(in_chans, image_size, strength)
        o = _options(type(self), options)
        hidden, enc_channels, norm_dim, key_dim = o["hidden"], o["enc_channels"], o["norm_dim"], o["key_dim"]
        pool, dec_channels, attention, gate = o["pool"], o["dec_channels"], o["attention"], o["gate"]
        self.attention = attention
        self.x_enc = nn.Sequential(nn.Conv2d(in_chans, hidden, 3, stride=2, padding=1), nn.Tanh())
        self.noise_enc = nn.Sequential(nn.Conv2d(in_chans, enc_channels, 3, stride=2, padding=1), nn.ReLU())
        self.norm_enc = nn.Linear(1, norm_dim)
        self.cell_f = nn.Conv2d(hidden + enc_channels + norm_dim, hidden, 3, padding=1)
        self.cell_b = nn.Conv2d(hidden + enc_channels + norm_dim, hidden, 3, padding=1)
        if attention:
            self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(pool), nn.Flatten())
            self.query = nn.Linear(2 * hidden * pool * pool, key_dim)
            self.key = nn.Linear(2 * hidden * pool * pool, key_dim)
            self.gate = nn.Linear(key_dim, in_chans) if gate else None
        self.decoder = _zero_last(nn.Sequential(nn.Conv2d(2 * hidden, dec_channels, 3, padding=1), nn.ReLU(),
                                                nn.Conv2d(dec_channels, in_chans, 3, padding=1)))
        self.enc_channels = enc_channels

    def _step(self, cell: nn.Conv2d, h: Tensor, noise_map: Tensor, norm_code: Tensor) -> Tensor:
        norm_map = norm_code[..., None, None].expand(*norm_code.shape, *h.shape[-2:])
        return torch.tanh(cell(torch.cat([h, noise_map, norm_map], dim=1)))

    def _decode(self, maps: Tensor, size: tuple[int, int]) -> Tensor:
        """State maps ``(M, 2*hidden, h, w)`` -> noise-shaped maps ``(M, C, H, W)``."""
        return F.interpolate(self.decoder(maps), size=size, mode="bilinear", align_corners=False)

    def adjustment(self, x: Tensor, anchors: Tensor, anchor_s: Tensor, target_s: Tensor,
                   nb: Neighbours) -> Tensor:
        b, n1, c, hh, ww = anchors.shape
        codes = self.noise_enc(_normalised(anchors, self.strength).flatten(0, 1))
        codes = codes.view(b, n1, *codes.shape[1:])
        fwd_seq, bwd_seq = self._recur(x, codes, self._norm_code(anchor_s))  # (B, N1+1, h, H/2, W/2) each
        n2 = target_s.shape[1]
        t_norm = self._norm_code(target_s).flatten(0, 1)
        zero = codes.new_zeros(b * n2, *codes.shape[2:])
        q_f = self._step(self.cell_f, _pick(fwd_seq, nb.below).flatten(0, 1), zero, t_norm)
        q_b = self._step(self.cell_b, _pick(bwd_seq, nb.not_above).flatten(0, 1), zero, t_norm)
        queried = torch.cat([q_f, q_b], dim=1)  # (B*N2, 2h, h/2, w/2)
        if not self.attention:
            return self._decode(queried, (hh, ww)).view(b, n2, c, hh, ww)
        states = torch.cat([fwd_seq[:, 1:], bwd_seq[:, :-1]], dim=2).flatten(0, 1)  # (B*N1, 2h, ., .)
        keys = self.key(self.pool(states)).view(b, n1, -1)
        query = self.query(self.pool(queried)).view(b, n2, -1)
        attn = torch.softmax(query @ keys.transpose(1, 2) / math.sqrt(keys.shape[-1]), dim=-1)
        values = self._decode(states, (hh, ww)).view(b, n1, c, hh, ww)
        adj = torch.einsum("bti,bichw->btchw", attn, values)
        if self.gate is not None:
            adj = adj * (1 + torch.tanh(self.gate(query)))[..., None, None]
        return adj


class EncodingEstimatorNoAttention(EncodingEstimator):
    """E-ANE⁻: :class:`EncodingEstimator` without the attention stage (the paper's ablation)."""

    def __init__(self, in_chans: int = 3, image_size: int | tuple[int, int] = 32, strength: str = "linf", **kwargs):
        kwargs["attention"] = False
        super().__init__(in_chans, image_size, strength, **kwargs)


#: the AN-Estimators by name: the names (``search.estimator``) are ``wsr_bench.rules.ESTIMATORS``, in this order.
ESTIMATORS: dict[str, type[NoiseEstimator]] = dict(zip(
    ESTIMATOR_NAMES,
    (WeightedAverageEstimator, AttentionEstimator, EncodingEstimator, EncodingEstimatorNoAttention),
    strict=True))


def build_estimator(name: str, in_chans: int = 3, image_size: int | tuple[int, int] = 32, strength: str = "linf",
                    **kwargs) -> NoiseEstimator:
    """Build an AN-Estimator by name (``"wa"``, ``"a"``, ``"e"``, ``"e_minus"``); kwargs go to its constructor."""
    if name not in ESTIMATORS:
        raise ValueError(f"unknown AN-Estimator {name!r}; choose one of {sorted(ESTIMATORS)}")
    return ESTIMATORS[name](in_chans=in_chans, image_size=image_size, strength=strength, **kwargs)


class MemoryBatch(NamedTuple):
    """A batch drawn from :class:`NoiseMemory`: one target per sample (``N2 = 1``), as in Eq. 4."""

    x: Tensor  # (b, C, H, W)
    anchors: Tensor  # (b, N1, C, H, W)
    anchor_eps: Tensor  # (b, N1)
    target_eps: Tensor  # (b, 1)
    target_noise: Tensor  # (b, 1, C, H, W)


class NoiseMemory:
    """M_a (Eq. 4): a bounded FIFO of ``(x, anchors, anchor_eps, eps_hat, delta_eps_hat)`` training samples.

    A push of ``B`` images with ``N2`` targets adds ``B * N2`` entries (each entry has one target strength, as in
    the paper); beyond ``capacity`` the oldest entries are dropped, so the estimator trains on noise from the
    latest networks. Entries are stored detached on ``device`` (default: where they were pushed). All entries
    must share the image shape and the number of anchors ``N1``.
    """

    def __init__(self, capacity: int = 600, device: torch.device | str | None = None):
        if capacity < 1:
            raise ValueError(f"memory capacity must be >= 1, got {capacity}")
        self.capacity = capacity
        self.device = device
        self._items: deque[tuple[Tensor, Tensor, Tensor, Tensor, Tensor]] = deque(maxlen=capacity)
        self._shape: tuple[int, ...] | None = None  # anchors' per-sample shape (N1, C, H, W)

    def __len__(self) -> int:
        return len(self._items)

    def push(self, x: Tensor, anchors: Tensor, anchor_eps: Tensor | Sequence[float],
             target_eps: Tensor | Sequence[float] | float, target_noise: Tensor) -> None:
        """Add a batch: ``x`` (B,C,H,W), ``anchors`` (B,N1,C,H,W), ``anchor_eps`` (N1,)|(B,N1), ``target_eps``
        (N2,)|(B,N2), ``target_noise`` (B,N2,C,H,W). Raises ``ValueError`` on bad or inconsistent shapes."""
        a_eps, t_eps = check_inputs(x, anchors, anchor_eps, target_eps)
        want = (x.shape[0], t_eps.shape[1], *x.shape[1:])
        if tuple(target_noise.shape) != want:
            raise ValueError(f"target_noise must have shape (B, N2, C, H, W) = {want}, got {tuple(target_noise.shape)}")
        if self._shape is not None and tuple(anchors.shape[1:]) != self._shape:
            raise ValueError(f"memory holds anchors of shape (N1, C, H, W) = {self._shape}, "
                             f"got {tuple(anchors.shape[1:])}")
        self._shape = tuple(anchors.shape[1:])
        dev = x.device if self.device is None else self.device
        x, anchors, a_eps, t_eps, target_noise = (t.detach().to(dev) for t in (x, anchors, a_eps, t_eps, target_noise))
        for i in range(x.shape[0]):
            for j in range(t_eps.shape[1]):
                self._items.append((x[i], anchors[i], a_eps[i], t_eps[i, j : j + 1], target_noise[i, j : j + 1]))

    def sample(self, batch_size: int, generator: torch.Generator | None = None) -> MemoryBatch:
        """Draw ``min(batch_size, len)`` distinct entries uniformly (``generator`` on the CPU pins the draw)."""
        if not self._items:
            raise ValueError("NoiseMemory is empty: push (x, anchors, anchor_eps, target_eps, target_noise) first")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        idx = torch.randperm(len(self._items), generator=generator)[:batch_size].tolist()
        return MemoryBatch(*(torch.stack(parts) for parts in zip(*(self._items[i] for i in idx), strict=True)))

    def clear(self) -> None:
        """Drop every entry."""
        self._items.clear()
        self._shape = None

    def state_dict(self) -> dict[str, Any]:
        """Entries (oldest first) as stacked plain tensors, for ``weights_only`` checkpoints."""
        state: dict[str, Any] = {"capacity": self.capacity}
        if self._items:
            parts = (torch.stack(p) for p in zip(*self._items, strict=True))
            state.update(zip(("x", "anchors", "anchor_eps", "target_eps", "target_noise"), parts, strict=True))
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Replace the entries with those of :meth:`state_dict` (same order; this memory's capacity applies)."""
        self.clear()
        if "x" in state:
            self.push(state["x"], state["anchors"], state["anchor_eps"], state["target_eps"], state["target_noise"])


def estimator_loss(est: NoiseEstimator, batch: MemoryBatch) -> Tensor:
    """Eq. 5: squared L2 distance between estimated and PGD noise, summed over pixels, averaged over entries."""
    pred = est(batch.x, batch.anchors, batch.anchor_eps, batch.target_eps)
    return (pred - batch.target_noise).pow(2).flatten(1).sum(1).mean()


def train_estimator(est: NoiseEstimator, mem: NoiseMemory, optimizer: torch.optim.Optimizer | None,
                    iters: int = 1, batch_size: int = 32, generator: torch.Generator | None = None,
                    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None) -> float:
    """Train ``est`` on ``mem`` for ``iters`` steps of Eq. 5 (K_a in Algorithm 1); return the mean loss.
    ``scheduler`` (e.g. the official learning-rate warm-up) steps after every optimizer step.

    WA-ANE has no parameters: it returns 0.0 without touching the memory or the optimizer.

    Raises:
        ValueError: empty memory, ``iters < 1`` or ``batch_size < 1``, or no optimizer for a trainable estimator.
    """
    if est.param_count() == 0:
        return 0.0
    if optimizer is None:
        raise ValueError(f"{type(est).__name__} has parameters: pass an optimizer (e.g. AdamW lr 5e-4, wd 1e-4)")
    if iters < 1:
        raise ValueError(f"iters must be >= 1, got {iters}")
    device = next(est.parameters()).device
    est.train()
    total = 0.0
    for _ in range(iters):
        batch = MemoryBatch(*(t.to(device) for t in mem.sample(batch_size, generator)))
        loss = estimator_loss(est, batch)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if scheduler is not None:
            scheduler.step()
        total += float(loss.detach())
    return total / iters
