"""The one-shot super-network of the DARTS space with Gumbel-softmax architecture weights (paper Eq. 2).

``SuperNet`` holds the shared operation weights and the architecture weights ``A`` (``arch_weights``, shape
``(2, E, K)``: normal and reduction cells, ``E`` edges, ``K`` primitives). ``H = GumbelSoftmax(A, xi, tau)`` weighs
the ops on every edge; a one-hot ``H`` (``sample()``) is a discrete sub-network, and the forward pass then runs only
the chosen op of each edge. ``genotype()`` derives the final cell the DARTS way. Compact on purpose, in the spirit of
DARTS' ``cnn/model_search.py``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from wsr_bench.rules import GENOTYPE_RULES, check_choice
from wsr_bench.search_space.genotype import Genotype
from wsr_bench.search_space.ops import PRIMITIVES, FactorizedReduce, Normalize, ReLUConvBN, make_op

CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD = (0.2471, 0.2435, 0.2616)


def num_edges(nodes: int) -> int:
    """Edges in a cell with ``nodes`` intermediate nodes (node j has j+2 inputs)."""
    return sum(2 + i for i in range(nodes))


def edge_index(nodes: int) -> list[tuple[int, int]]:
    """``(source, target)`` node of every edge, in the order rows of ``H`` use."""
    return [(src, node + 2) for node in range(nodes) for src in range(node + 2)]


class MixedOp(nn.Module):
    """All primitives on one edge; output ``sum_k h_k * O_k(x)`` over the ops whose weight is non-zero."""

    def __init__(self, channels: int, stride: int):
        super().__init__()
        self.ops = nn.ModuleList()
        for name in PRIMITIVES:
            op = make_op(name, channels, stride, affine=False)
            if "pool" in name:
                op = nn.Sequential(op, nn.BatchNorm2d(channels, affine=False))
            self.ops.append(op)

    def forward(self, x: torch.Tensor, weights: torch.Tensor, active: list[int]) -> torch.Tensor:
        return sum(weights[k] * self.ops[k](x) for k in active)


class SearchCell(nn.Module):
    """A cell of the super-network: every node sums the mixed ops on all its incoming edges (Eq. 2)."""

    def __init__(self, nodes: int, multiplier: int, c_pp: int, c_p: int, c: int, reduction: bool,
                 reduction_prev: bool):
        super().__init__()
        self.reduction = reduction
        self.nodes, self.multiplier = nodes, multiplier
        self.preprocess0 = FactorizedReduce(c_pp, c, affine=False) if reduction_prev else ReLUConvBN(
            c_pp, c, 1, 1, 0, affine=False)
        self.preprocess1 = ReLUConvBN(c_p, c, 1, 1, 0, affine=False)
        self.edges = nn.ModuleList(
            MixedOp(c, 2 if reduction and src < 2 else 1) for src, _ in edge_index(nodes))

    def forward(self, s0: torch.Tensor, s1: torch.Tensor, weights: torch.Tensor,
                active: list[list[int]]) -> torch.Tensor:
        states = [self.preprocess0(s0), self.preprocess1(s1)]
        offset = 0
        for _ in range(self.nodes):
            n_in = len(states)
            states.append(sum(self.edges[offset + j](h, weights[offset + j], active[offset + j])
                              for j, h in enumerate(states)))
            offset += n_in
        return torch.cat(states[-self.multiplier:], dim=1)


class SuperNet(nn.Module):
    """DARTS-space one-shot super-network taking images in [0,1].

    Args:
        C: initial channels (the stem has ``3 * C``).
        num_classes: classifier outputs.
        layers: number of cells; reduction cells sit at 1/3 and 2/3 depth.
        nodes: intermediate nodes per cell (4 gives the paper's 7-node cells).
        in_chans: input channels.
        mean, std: input normalisation applied inside the model.
        arch_init_std: A starts as ``arch_init_std * randn`` (DARTS and the official Wsr-NAS code: 1e-3).
    """

    def __init__(self, C: int = 16, num_classes: int = 10, layers: int = 8, nodes: int = 4, in_chans: int = 3,
                 mean: tuple[float, ...] = CIFAR_MEAN, std: tuple[float, ...] = CIFAR_STD, arch_init_std: float = 1e-3):
        super().__init__()
        if C < 2 or C % 2 or layers < 3 or nodes < 2:
            raise ValueError(f"SuperNet needs an even C >= 2, layers >= 3, nodes >= 2; got C={C}, "
                             f"layers={layers}, nodes={nodes}")
        self.nodes, self.num_classes = nodes, num_classes
        self.normalize = Normalize(mean, std)
        c_curr = 3 * C
        self.stem = nn.Sequential(nn.Conv2d(in_chans, c_curr, 3, padding=1, bias=False), nn.BatchNorm2d(c_curr))
        c_pp, c_p, c_curr = c_curr, c_curr, C
        self.cells = nn.ModuleList()
        reduction_prev = False
        for i in range(layers):
            reduction = i in (layers // 3, 2 * layers // 3)
            c_curr = c_curr * 2 if reduction else c_curr
            self.cells.append(SearchCell(nodes, nodes, c_pp, c_p, c_curr, reduction, reduction_prev))
            reduction_prev = reduction
            c_pp, c_p = c_p, nodes * c_curr
        self.global_pooling = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(c_p, num_classes)
        self.arch_weights = nn.Parameter(arch_init_std * torch.randn(2, num_edges(nodes), len(PRIMITIVES)))

    def arch_parameters(self) -> list[nn.Parameter]:
        """The architecture weights A (kept apart from the operation weights, as in DARTS)."""
        return [self.arch_weights]

    def weights(self) -> list[nn.Parameter]:
        """The shared operation weights (everything but A)."""
        return [p for name, p in self.named_parameters() if name != "arch_weights"]

    def gumbel_softmax(self, tau: float = 1.0, hard: bool = False,
                       generator: torch.Generator | None = None) -> torch.Tensor:
        """``H = GumbelSoftmax(A, xi, tau)``; with ``hard`` a one-hot H that still carries A's gradient."""
        return gumbel_softmax(self.arch_weights, tau, hard, generator)

    @torch.no_grad()
    def sample(self, tau: float = 1.0, generator: torch.Generator | None = None) -> torch.Tensor:
        """Draw a discrete sub-architecture: a one-hot H (one op per edge) sampled from GumbelSoftmax(A)."""
        return gumbel_softmax(self.arch_weights, tau, hard=True, generator=generator).detach()

    def forward(self, x: torch.Tensor, H: torch.Tensor | None = None) -> torch.Tensor:
        """Logits for images ``x`` in [0,1]. ``H`` defaults to softmax(A); zero entries of H are skipped."""
        if H is None:
            H = F.softmax(self.arch_weights, dim=-1)
        if H.shape != self.arch_weights.shape:
            raise ValueError(f"H must have shape {tuple(self.arch_weights.shape)}, got {tuple(H.shape)}")
        active = [[[k for k in torch.nonzero(row).flatten().tolist()] for row in cell] for cell in (H != 0).cpu()]
        s0 = s1 = self.stem(self.normalize(x))
        for cell in self.cells:
            kind = 1 if cell.reduction else 0
            s0, s1 = s1, cell(s0, s1, H[kind], active[kind])
        return self.classifier(self.global_pooling(s1).flatten(1))

    def genotype(self, rule: str = "softmax", max_skip_normal: int | None = None,
                 max_parameter_free_normal: int | None = None) -> Genotype:
        """The final cells derived from A (see :func:`derive_genotype`)."""
        return derive_genotype(self.arch_weights.detach(), self.nodes, rule, max_skip_normal, max_parameter_free_normal)


PARAMETER_FREE_OPS = ("none", "max_pool_3x3", "avg_pool_3x3", "skip_connect")


def derive_genotype(arch_weights: torch.Tensor, nodes: int, rule: str = "softmax", max_skip_normal: int | None = None,
                    max_parameter_free_normal: int | None = None) -> Genotype:
    """Per node the two strongest non-``none`` inputs, each with its best non-``none`` op.

    Args:
        arch_weights: architecture weights ``A``, ``(2, E, K)`` (normal, reduction).
        nodes: intermediate nodes per cell.
        rule: ``alpha`` ranks by the raw weights (the official Wsr-NAS code), ``softmax`` by softmax(A) per edge
            (DARTS).
        max_skip_normal: the P-DARTS cap: while the normal cell has more ``skip_connect`` edges than this, the
            chosen skip edge with the lowest score loses its skip option and the cell is derived again.
        max_parameter_free_normal: the same cap over every parameter-free op (skip and pooling).
    """
    check_choice(rule, GENOTYPE_RULES, "genotype rule")
    scores = arch_weights.detach().float().cpu().clone()
    if rule == "softmax":
        scores = F.softmax(scores, dim=-1)
    scores[..., PRIMITIVES.index("none")] = -float("inf")
    normal = _derive(scores[0], nodes)
    for cap, ops in ((max_skip_normal, ("skip_connect",)), (max_parameter_free_normal, PARAMETER_FREE_OPS)):
        while cap is not None and sum(op in ops for op, _ in normal) > cap:
            chosen = [(row, PRIMITIVES.index(op)) for row, (op, _) in zip(_chosen_rows(normal, nodes), normal,
                                                                            strict=True) if op in ops]
            row, k = min(chosen, key=lambda rk: float(scores[0, rk[0], rk[1]]))
            scores[0, row, k] = -float("inf")
            normal = _derive(scores[0], nodes)
    concat = tuple(range(2, 2 + nodes))
    return Genotype(normal=normal, normal_concat=concat, reduce=_derive(scores[1], nodes), reduce_concat=concat)


def _chosen_rows(edges: tuple[tuple[str, int], ...], nodes: int) -> list[int]:
    """Row of ``A`` (edge index) of every ``(op, source)`` of a derived cell."""
    starts = [sum(2 + i for i in range(node)) for node in range(nodes)]
    return [starts[k // 2] + src for k, (_, src) in enumerate(edges)]


def gumbel_noise(shape: torch.Size | tuple[int, ...], generator: torch.Generator | None = None,
                 device: torch.device | str = "cpu") -> torch.Tensor:
    """Standard Gumbel noise ``xi = -log(-log(u))`` drawn on the CPU with ``generator`` (then moved)."""
    u = torch.rand(shape, generator=generator, device="cpu").to(device)
    return -torch.log((-torch.log(u.clamp(1e-20, 1.0 - 1e-7))).clamp_min(1e-20))


def gumbel_softmax(logits: torch.Tensor, tau: float, hard: bool, generator: torch.Generator | None = None,
                   noise: torch.Tensor | None = None) -> torch.Tensor:
    """Gumbel-softmax over the last axis with an explicit generator (``F.gumbel_softmax`` takes none), or with a
    given Gumbel draw ``noise`` (to evaluate the same sample again as ``A`` changes)."""
    if tau <= 0:
        raise ValueError(f"Gumbel-softmax temperature must be > 0, got {tau}")
    xi = gumbel_noise(logits.shape, generator, logits.device) if noise is None else noise
    soft = F.softmax((logits + xi) / tau, dim=-1)
    if not hard:
        return soft
    one_hot = F.one_hot(soft.argmax(-1), soft.shape[-1]).to(soft.dtype)
    return one_hot - soft.detach() + soft


def _derive(scores: torch.Tensor, nodes: int) -> tuple[tuple[str, int], ...]:
    """One cell from per-edge op scores ``(E, K)`` whose ``none`` column is already ``-inf``."""
    gene, start = [], 0
    for node in range(nodes):
        n_in = node + 2
        rows = scores[start:start + n_in]
        best_src = sorted(range(n_in), key=lambda i: -float(rows[i].max()))[:2]
        gene.extend((PRIMITIVES[int(rows[i].argmax())], i) for i in sorted(best_src))
        start += n_in
    return tuple(gene)


class FixedArchitecture(nn.Module):
    """A super-network seen through a fixed H: ``forward(x) = supernet(x, H)``.

    Lets a sampled sub-network be trained, attacked (torchattacks wants an ``nn.Module``) and evaluated like any
    model while sharing the super-network's weights.
    """

    def __init__(self, supernet: SuperNet, H: torch.Tensor):
        super().__init__()
        self.supernet = supernet
        self.register_buffer("H", H.detach().clone(), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.supernet(x, self.H)
