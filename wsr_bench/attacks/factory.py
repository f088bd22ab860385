"""One place that turns ``(name, eps, norm, steps, ...)`` into an adversarial attack.

Every attack built here is a callable ``attack(x, y, sample_ids=None) -> x_adv`` on [0,1] images whose
perturbation stays inside the eps ball (Linf by default, L2 and L1 the same way). White-box attacks come from
torchattacks (FGSM, PGD-k with step eps*2.5/k and random start, PGDL2) and from pyautoattack (APGD-CE, APGD-T,
FAB-T, Square, AutoAttack in its versions standard, plus and rand). L1 balls are pyautoattack's alone (torchattacks
has no eps-bounded L1 PGD or FGSM), so under L1 only its attacks (:data:`L1_ATTACKS`) are built.
:class:`MinNormAttack` (FAB) returns each sample's smallest breaking eps instead, and ``"transfer"`` crafts PGD on a
surrogate model and replays it on the target (black box, as in the paper's generalisation study). :func:`build_pgd`
is the one Linf PGD the rest of the package (training recipes, the search's anchors, warm-started sweeps) and the
benchmarks build, and :func:`pgd_step_size` its step rule.
The attack and norm names (:data:`ATTACK_NAMES`, :func:`normalize_attack_name`, :func:`normalize_norm`) live in the
torch-free :mod:`wsr_bench.rules`, which the config checks too, and are re-exported here.

Randomness is explicit: every attack takes a ``seed``; pyautoattack's and torchattacks' global-RNG draws run
inside a forked RNG so the caller's stream is untouched. A sample's result does not depend on which other samples
share its batch: our PGD draws each sample's random start from ``(seed, eps, sample_id)``, and pyautoattack's APGD,
APGD-T and Square (alone or inside AutoAttack) draw theirs from the image itself (:mod:`wsr_bench.attacks.starts`).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F
import torchattacks

from wsr_bench.epsilon import parse_eps
from wsr_bench.rules import (  # noqa: F401 (torch-free, re-exported)
    AA_VERSIONS,
    ATTACK_NAMES,
    L1_ATTACKS,
    MAX_EPS,
    NORMS,
    normalize_aa_version,
    normalize_attack_name,
    normalize_norm,
)

logger = logging.getLogger(__name__)

#: Attacks that need the model's gradients (Square and transfer are black-box on the target).
WHITE_BOX: frozenset[str] = frozenset({"fgsm", "pgd", "apgd-ce", "apgd-t", "fab-t", "autoattack", "minnorm"})
#: Where each attack's random start comes from, recorded in every leaderboard entry's ``evaluation``.
RANDOM_STARTS = ("pgd: keyed by (seed, eps, sample id); apgd-ce, apgd-t, square and autoattack: keyed by "
                 "(seed, attack, the image's bytes), wsr_bench.attacks.starts; an image's result does not depend on "
                 "its batch")


def validate_images(x: torch.Tensor, y: torch.Tensor | None = None) -> None:
    """Refuse inputs the attacks would silently mis-handle.

    Raises:
        ValueError: ``x`` is not a finite float (B,C,H,W) tensor in [0,1] (images in [0,255] get a hint to divide
            by 255), or ``y`` is not an integer vector of the same length.
    """
    if not isinstance(x, torch.Tensor) or x.dim() != 4:
        raise ValueError(f"images must be a (B,C,H,W) tensor, got {type(x).__name__} {tuple(getattr(x, 'shape', ()))}")
    if not x.is_floating_point():
        raise ValueError(f"images must be float tensors in [0,1], got dtype {x.dtype} (convert with x.float() / 255)")
    if x.shape[0] == 0:
        raise ValueError("no images given (empty batch)")
    if not torch.isfinite(x).all():
        raise ValueError("images contain NaN or inf values")
    lo, hi = float(x.min()), float(x.max())
    if lo < 0 or hi > 1:
        hint = " (they look like [0,255] pixels: divide by 255)" if hi > 1.5 else ""
        raise ValueError(f"images must lie in [0,1], got range [{lo:.3g}, {hi:.3g}]{hint}")
    if y is not None:
        if y.dim() != 1 or y.shape[0] != x.shape[0] or y.is_floating_point():
            raise ValueError(f"labels must be an integer vector of length {x.shape[0]}, got {y.dtype} {tuple(y.shape)}")


def model_device(model: nn.Module) -> torch.device:
    """Device of the model's first parameter or buffer (CPU for parameter-free models)."""
    for t in list(model.parameters()) + list(model.buffers()):
        return t.device
    return torch.device("cpu")


@contextmanager
def seeded_rng(seed: int, device: torch.device | str = "cpu") -> Iterator[None]:
    """Run a block with the global torch RNG seeded to ``seed`` and restore the caller's RNG state afterwards."""
    dev = torch.device(device)
    devices = [dev.index or 0] if dev.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(int(seed) % 2**63)
        yield


def per_sample_uniform(shape: Sequence[int], sample_ids: torch.Tensor, seed: int, salt: int) -> torch.Tensor:
    """Uniform [-1,1] noise, one row per sample, drawn from a generator keyed by ``(seed, salt, sample_id)``.

    The same sample therefore gets the same random start whether it is attacked alone or in a batch of 1000,
    which is what makes the survivors-only and attack-all sweeps agree exactly.
    """
    rows = []
    gen = torch.Generator()
    for sid in sample_ids.tolist():
        gen.manual_seed((int(seed) * 1_000_003 + int(salt) * 7_919 + int(sid) * 104_729) % 2**63)
        rows.append(torch.rand(tuple(shape[1:]), generator=gen))
    return torch.stack(rows) * 2 - 1 if rows else torch.empty(tuple(shape))


def pgd_step_size(eps: float, steps: int) -> float:
    """Step size of a ``steps``-iteration PGD at radius ``eps``: ``eps * 2.5 / steps``.

    Madry et al.'s convention (https://arxiv.org/abs/1706.06083), used by DARTS-robust searches and the Wsr-NAS paper:
    the iterate can travel 2.5 radii in all, so it reaches the edge of the ball from any start and still moves along
    it. Every PGD of the package (training, anchors, evaluation, warm starts, benchmarks) takes this step unless it
    is given one.
    """
    return eps * 2.5 / steps


class PGD(torchattacks.PGD):
    r"""PGD in 'Towards Deep Learning Models Resistant to Adversarial Attacks' [https://arxiv.org/abs/1706.06083].

    torchattacks' PGD with these options, each off by default in :func:`build_pgd` (then torchattacks' own
    ``forward`` runs, random start from torch's global RNG): the random start of each sample drawn from
    ``(seed, eps, sample_id)`` (batch-independent, reproducible) or of the whole batch from a ``generator``;
    optionally a sample stops once an iterate is misclassified (``early_stop``; it then keeps that misclassified
    iterate, so the attack is at least as strong); and ``forward`` accepts a ``start`` iterate (warm start) in place
    of the random one.

    Distance Measure : Linf

    Arguments:
        model (nn.Module): model to attack (normalization inside; inputs in [0,1]).
        eps (float): maximum perturbation.
        step_size (float | None): step size (None: :func:`pgd_step_size`, eps * 2.5 / steps); torchattacks keeps
            it as ``alpha``.
        steps (int): number of steps.
        random_start (bool): uniform start in the eps ball.
        seed (int | None): seed of the per-sample random starts (None: one draw for the batch, from ``generator``
            or torch's global RNG).
        early_stop (bool): stop iterating a sample once it is misclassified.
        generator (torch.Generator | None): CPU generator of the batch's random start (needs ``seed=None``).

    Shape:
        - images: (N, C, H, W) in [0, 1]; labels: (N,); sample_ids: optional (N,) integer ids; output (N, C, H, W).
    """

    def __init__(self, model, eps=8 / 255, step_size=None, steps=10, random_start=True, seed=0, early_stop=False,
                 generator=None):
        if seed is not None and generator is not None:
            raise ValueError("PGD's random start comes from a seed or from a generator: give one of them")
        step_size = pgd_step_size(eps, steps) if step_size is None else step_size
        super().__init__(model, eps=eps, alpha=step_size, steps=steps, random_start=random_start)
        self.seed = seed
        self.early_stop = early_stop
        self.generator = generator

    @property
    def step_size(self) -> float:
        """The step size (torchattacks' ``alpha``)."""
        return self.alpha

    def forward(self, images, labels, sample_ids=None, start=None):
        r"""Overridden. ``start`` (optional, same shape as ``images``): iterate to start from instead of a random
        point (a warm start, e.g. the sample's adversarial example at a smaller eps); it is projected first."""
        if start is None and not self.early_stop and self.seed is None and self.generator is None:
            return super().forward(images, labels)  # torchattacks' PGD as it is
        images = images.clone().detach().to(self.device)
        labels = labels.clone().detach().to(self.device)
        ids = torch.arange(len(images)) if sample_ids is None else torch.as_tensor(sample_ids).cpu()
        adv = images.clone()
        if start is not None:
            if start.shape != images.shape:
                raise ValueError(f"PGD start has shape {tuple(start.shape)}, images {tuple(images.shape)}")
            delta = torch.clamp(start.detach().to(images) - images, min=-self.eps, max=self.eps)
            adv = torch.clamp(images + delta, min=0, max=1).detach()
        elif self.random_start:
            adv = torch.clamp(images + self.eps * self._start_noise(images, ids), min=0, max=1).detach()
        active = torch.arange(len(images), device=images.device)
        for _ in range(self.steps):
            if active.numel() == 0:
                break
            x_a = adv[active].clone().requires_grad_(True)
            outputs = self.get_logits(x_a)
            cost = F.cross_entropy(outputs, labels[active])
            grad = torch.autograd.grad(cost, x_a, retain_graph=False, create_graph=False)[0]
            keep = (outputs.argmax(1) == labels[active]) if self.early_stop else torch.ones_like(active, dtype=bool)
            step = x_a.detach() + self.step_size * grad.sign()
            delta = torch.clamp(step - images[active], min=-self.eps, max=self.eps)
            new = torch.clamp(images[active] + delta, min=0, max=1).detach()
            adv[active[keep]] = new[keep]
            active = active[keep]
        return adv

    def _start_noise(self, images: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        """Uniform [-1,1] start noise: per sample from ``(seed, eps, id)``, else one draw from the generator."""
        if self.seed is not None:
            return per_sample_uniform(images.shape, ids, self.seed, round(self.eps * 1e6)).to(images)
        return (torch.rand(images.shape, generator=self.generator) * 2 - 1).to(images)


def build_pgd(model: nn.Module, eps: float, steps: int, *, step_size: float | None = None, random_start: bool = True,
              seed: int | torch.Generator | None = None, early_stop: bool = False, train_mode: bool = False) -> PGD:
    """The package's Linf PGD: training, the search's anchors, evaluation sweeps and the benchmarks all build it here.

    With the defaults it is torchattacks' PGD as it is (random start from torch's global RNG, model in eval mode).

    Args:
        model: network taking [0,1] images (normalization inside) and returning logits.
        eps: Linf radius on the [0,1] scale.
        steps: iterations.
        step_size: step; ``None`` = :func:`pgd_step_size` (eps * 2.5 / steps).
        random_start: start from a uniform point of the eps ball (else from the clean image).
        seed: an int: draw each sample's random start from ``(seed, eps, sample_id)``, so a sample's result does not
            depend on its batch (evaluation); a CPU ``torch.Generator``: one draw for the batch from it; ``None``: one
            draw for the batch from torch's global RNG.
        early_stop: stop a sample once an iterate is misclassified (keeping that iterate).
        train_mode: attack the model in training mode with BatchNorm on batch statistics (their running estimates
            are updated too), e.g. where the loss that uses the examples is taken in training mode; the model's
            previous mode is restored only if it was training (torchattacks' rule).

    Returns:
        A :class:`PGD`; call it as ``attack(x, y)``, ``attack(x, y, sample_ids)`` or ``attack(x, y, ids, start=...)``.
    """
    generator = seed if isinstance(seed, torch.Generator) else None
    attack = PGD(model, eps=eps, step_size=step_size, steps=steps, random_start=random_start,
                 seed=None if generator is not None else seed, early_stop=early_stop, generator=generator)
    if train_mode:
        attack.set_model_training_mode(model_training=True, batchnorm_training=True)
    return attack


@dataclass
class Attack:
    """A built attack: ``attack(x, y, sample_ids=None) -> x_adv`` with ``||x_adv - x|| <= eps`` in ``norm``.

    Attributes:
        name: canonical attack name.
        eps: perturbation budget on the [0,1] scale.
        norm: "Linf", "L2" or "L1".
        white_box: whether it uses the target model's gradients.
        run: the underlying ``(x, y, sample_ids) -> x_adv`` function.
    """

    name: str
    eps: float
    norm: str
    white_box: bool
    run: Callable[[torch.Tensor, torch.Tensor, torch.Tensor | None], torch.Tensor]

    def __call__(self, x: torch.Tensor, y: torch.Tensor, sample_ids: torch.Tensor | None = None) -> torch.Tensor:
        """Attack a batch; returns detached adversarial images on ``x``'s device."""
        if len(x) == 0:
            return x.clone()
        with torch.enable_grad():  # callers often sit inside no_grad; gradient attacks need autograd
            return self.run(x, y, sample_ids).detach().to(x.device)


@dataclass(frozen=True)
class AttackSettings:
    """How :func:`build_attack` builds an attack beside its name, model and strength."""

    threat_model: str = "Linf"      # "Linf", "L2" or "L1" (APGD-CE, APGD-T, FAB-T, Square and AutoAttack only)
    steps: int = 20                 # iterations of PGD / APGD / FAB (FGSM is one step; PGD's step: pgd_step_size)
    seed: int = 0                   # seed of the attack's randomness
    n_queries: int = 1000           # Square's query budget
    n_target_classes: int = 9       # target classes of APGD-T / FAB-T (capped at n_classes - 1)
    n_classes: int | None = None    # number of classes (the targeted attacks; inferred from one forward when None)
    early_stop: bool = False        # PGD only: stop a sample once misclassified
    aa_version: str = "standard"    # AutoAttack only: pyautoattack's version, "standard", "plus" or "rand"


def build_attack(
    name: str,
    model: nn.Module,
    eps: float | str,
    settings: AttackSettings | None = None,
    *,
    surrogate: nn.Module | None = None,
    **fields: Any,
) -> Attack:
    """Build one eps-bounded attack on ``model``.

    Args:
        name: one of :data:`ATTACK_NAMES` except ``"minnorm"`` (see :func:`build_min_norm_attack`).
        model: target model, in eval mode, taking [0,1] images (normalization inside) and returning logits.
        eps: budget (float or ``"8/255"``); Linf eps above 1 is refused with a hint.
        settings: threat model, steps, seed, query and target budgets, early stop, AutoAttack's version
            (:class:`AttackSettings`); keyword ``fields`` replace its fields (``build_attack("pgd", m, 0.03,
            steps=10)``).
        surrogate: model the transfer attack crafts its PGD on (required for ``"transfer"``).

    Returns:
        An :class:`Attack`.

    Raises:
        ValueError: unknown attack, norm or AutoAttack version, bad eps or steps, an attack without an L1 version
            under L1, ``transfer`` without a surrogate.
        TypeError: a keyword that is no field of :class:`AttackSettings`.
    """
    st = dataclasses.replace(settings, **fields) if settings is not None else AttackSettings(**fields)
    norm, steps = st.threat_model, st.steps
    key = normalize_attack_name(name)
    norm = normalize_norm(norm)
    aa_version = normalize_aa_version(st.aa_version)
    eps = parse_eps(eps, threat_model=norm)
    if norm == "L1" and key not in L1_ATTACKS:
        raise ValueError(f"attack {key!r} has no L1 version (torchattacks has no L1 PGD or FGSM): under L1 use "
                         f"{', '.join(L1_ATTACKS)}")
    if key == "minnorm":
        raise ValueError("'minnorm' returns per-sample radii, not an eps-bounded attack: use build_min_norm_attack")
    if int(steps) < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    opts = dict(norm=norm, steps=int(steps), seed=int(st.seed), n_queries=int(st.n_queries),
                n_target_classes=int(st.n_target_classes), n_classes=st.n_classes, early_stop=st.early_stop,
                aa_version=aa_version)
    if key == "transfer":
        if surrogate is None:
            raise ValueError("the transfer attack needs a surrogate model to craft its adversarial examples on")
        crafted = _BUILDERS["pgd"](surrogate, eps, **opts)
        return Attack(key, eps, norm, False, crafted)
    return Attack(key, eps, norm, key in WHITE_BOX, _BUILDERS[key](model, eps, **opts))


class _ContiguousGrad(torch.autograd.Function):
    """Identity whose backward makes the gradient contiguous: torchattacks' PGDL2 ``view``s the input gradient, which
    a channels_last model (``evaluate_spectrum``'s default layout) returns in channels_last strides."""

    @staticmethod
    def forward(ctx, x):
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        return grad.contiguous()


class _ContiguousInputGrad(nn.Module):
    """``model`` behind :class:`_ContiguousGrad`, for torchattacks' L2 attacks."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(_ContiguousGrad.apply(x))


def _fgsm(model, eps, *, norm, seed, **_):
    if norm == "L2":  # the fast gradient method in L2: one full-length normalised-gradient step
        atk = torchattacks.PGDL2(_ContiguousInputGrad(model), eps=eps, alpha=eps, steps=1, random_start=False)
    else:
        atk = torchattacks.FGSM(model, eps=eps)
    return lambda x, y, ids: atk(x, y)


def _pgd(model, eps, *, norm, steps, seed, early_stop, **_):
    if norm == "L2":
        atk_l2 = torchattacks.PGDL2(_ContiguousInputGrad(model), eps=eps, alpha=pgd_step_size(eps, steps), steps=steps,
                                    random_start=True)

        def run_l2(x, y, ids):
            with seeded_rng(seed, x.device):
                return atk_l2(x, y)

        return run_l2
    atk = build_pgd(model, eps, steps, seed=seed, early_stop=early_stop)
    return lambda x, y, ids: atk(x, y, ids)


def _targets(model, x, n_target_classes, n_classes):
    if n_classes is None:
        with torch.no_grad():
            n_classes = model(x[:1]).shape[1]
    return max(1, min(n_target_classes, n_classes - 1))


def _apgd(model, eps, *, norm, steps, seed, n_target_classes, n_classes, targeted, **_):
    from wsr_bench.attacks.starts import KeyedAPGD, KeyedAPGDTargeted

    def run(x, y, ids):
        device = model_device(model)
        if targeted:
            atk = KeyedAPGDTargeted(model, n_iter=steps, norm=norm, n_restarts=1, eps=eps, seed=seed, device=device,
                                      n_target_classes=_targets(model, x, n_target_classes, n_classes))
        else:
            atk = KeyedAPGD(model, n_iter=steps, norm=norm, n_restarts=1, eps=eps, seed=seed, loss="ce",
                             device=device)
        with seeded_rng(seed, device):
            return atk.perturb(x.to(device), y.to(device))

    return run


def _fab_t(model, eps, *, norm, steps, seed, n_target_classes, n_classes, **_):
    from pyautoattack.fab_pt import FABAttack_PT

    def run(x, y, ids):
        device = model_device(model)
        atk = FABAttack_PT(model, norm=norm, n_restarts=1, n_iter=steps, eps=eps, seed=seed, targeted=True,
                           device=device, n_target_classes=_targets(model, x, n_target_classes, n_classes))
        with seeded_rng(seed, device):
            return atk.perturb(x.to(device), y.to(device))

    return run


def _square(model, eps, *, norm, seed, n_queries, **_):
    from wsr_bench.attacks.starts import KeyedSquare

    def run(x, y, ids):
        device = model_device(model)
        atk = KeyedSquare(model, p_init=0.8, n_queries=n_queries, eps=eps, norm=norm, n_restarts=1, seed=seed,
                           device=device, resc_schedule=False)
        with seeded_rng(seed, device), torch.no_grad():
            return atk.perturb(x.to(device), y.to(device))

    return run


def _autoattack(model, eps, *, norm, seed, aa_version, **_):
    return autoattack_run(model, eps, norm=norm, seed=seed, version=aa_version)


def build_autoattack(model: nn.Module, eps: float, *, norm: str, seed: int, version: str = "standard"):
    """pyautoattack's ``AutoAttack`` at ``eps`` as ``version`` configures it (attacks, restarts, target classes,
    Square's queries, L1's APGD schedule, ``rand``'s EOT over 20 passes), with image-keyed random starts
    (:func:`~wsr_bench.attacks.starts.key_autoattack_starts`)."""
    from pyautoattack import AutoAttack

    from wsr_bench.attacks.starts import key_autoattack_starts

    adversary = AutoAttack(model, device=model_device(model), eps=eps, norm=norm, seed=seed,
                           version=normalize_aa_version(version))
    return key_autoattack_starts(adversary)


def autoattack_run(model: nn.Module, eps: float, *, norm: str, seed: int, version: str = "standard",
                   skip: Sequence[str] = ()) -> Callable:
    """AutoAttack (pyautoattack, ``version`` = "standard", "plus" or "rand") with image-keyed random starts, as a
    run function.

    Every attack, budget and the order are pyautoattack's; :mod:`wsr_bench.attacks.starts` only keys each image's
    random starts by the image itself, so the verdict on an image does not depend on the batch it is attacked in.

    Args:
        version: AutoAttack's version, as pyautoattack spells it.
        skip: attacks of the version to leave out, e.g. ``("apgd-ce",)`` where the spectrum sweeps' screen has
            already run AutoAttack's own APGD-CE (:func:`autoattack_screen_run`) on these images at this eps.
    """
    def run(x, y, ids):
        device = model_device(model)
        adversary = build_autoattack(model, eps, norm=norm, seed=seed, version=version)
        adversary.attacks_to_run = [a for a in adversary.attacks_to_run if a not in skip]
        with seeded_rng(seed, device):
            x_adv, _ = adversary.run_standard_evaluation(x.to(device), y.to(device), batch_size=len(x))
        return x_adv

    return run


def autoattack_screen_run(model: nn.Module, eps: float, *, norm: str, seed: int, version: str = "standard"
                          ) -> Callable:
    """AutoAttack's first attack, its APGD-CE, exactly as ``version`` and ``norm`` configure it (standard Linf/L2:
    1 restart; plus: 5; standard L1: 5 with the large-eps schedule; rand: EOT over 20 passes), run the way
    ``run_standard_evaluation`` runs it (loss "ce", the version's seed): the screen of the downward and bisect
    sweeps, after which a chain step may leave APGD-CE out."""
    def run(x, y, ids):
        device = model_device(model)
        apgd = build_autoattack(model, eps, norm=norm, seed=seed, version=version).apgd
        apgd.loss, apgd.seed = "ce", seed
        with seeded_rng(seed, device):
            return apgd.perturb(x.to(device), y.to(device))

    return run


_BUILDERS: dict[str, Callable[..., Callable]] = {
    "fgsm": _fgsm,
    "pgd": _pgd,
    "apgd-ce": lambda m, e, **kw: _apgd(m, e, targeted=False, **kw),
    "apgd-t": lambda m, e, **kw: _apgd(m, e, targeted=True, **kw),
    "fab-t": _fab_t,
    "square": _square,
    "autoattack": _autoattack,
}


class MinNormAttack:
    """Minimum-norm attack (FAB, Croce & Hein 2020, https://arxiv.org/abs/1907.02044) via pyautoattack.

    For each sample it searches the smallest perturbation that changes the prediction and reports its norm: the
    sample's breaking radius (an upper bound on the true one). One run gives a whole robustness curve.

    Args:
        model: target model (eval mode, [0,1] inputs, logits out).
        norm: "Linf" or "L2".
        steps: FAB iterations per target class.
        n_target_classes: targeted FAB runs against the top-k other classes (0 = untargeted FAB, which costs one
            backward pass per class per iteration).
        seed: seed of FAB's randomness.
    """

    name = "minnorm"
    white_box = True

    def __init__(self, model: nn.Module, *, norm: str = "Linf", steps: int = 20, n_target_classes: int = 3,
                 seed: int = 0) -> None:
        if int(steps) < 1:
            raise ValueError(f"steps must be >= 1, got {steps}")
        self.model, self.norm, self.steps = model, normalize_norm(norm), int(steps)
        self.n_target_classes, self.seed = int(n_target_classes), int(seed)

    def radii(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-sample breaking radius and the adversarial example that attains it.

        Returns:
            ``(radius, x_adv)``: radius is 0 for samples misclassified already, ``inf`` where FAB found nothing
            (then ``x_adv`` is ``x``); otherwise ``model(x_adv) != y`` and ``||x_adv - x|| == radius``.
        """
        from pyautoattack.fab_pt import FABAttack_PT

        device = model_device(self.model)
        x, y = x.to(device), y.to(device)
        fab = FABAttack_PT(self.model, norm=self.norm, n_restarts=1, n_iter=self.steps, eps=1.0, seed=self.seed,
                           targeted=self.n_target_classes > 0, device=device)
        best = torch.full((len(x),), float("inf"), device=device)
        best_adv = x.clone()
        with torch.no_grad():
            logits = self.model(x)
        best[logits.argmax(1) != y] = 0.0
        n_runs = max(1, min(self.n_target_classes, logits.shape[1] - 1))
        with seeded_rng(self.seed, device):
            for target in range(2, n_runs + 2):
                fab.target_class = target
                adv = fab.attack_single_run(x, y, use_rand_start=False, is_targeted=self.n_target_classes > 0)
                self._keep_smaller(x, y, adv, best, best_adv)
        return best, best_adv

    def _keep_smaller(self, x, y, adv, best, best_adv) -> None:
        with torch.no_grad():
            fooled = self.model(adv).argmax(1) != y
        dist = perturbation_norm(adv - x, self.norm)
        better = fooled & (dist < best)
        best[better] = dist[better]
        best_adv[better] = adv[better]


def build_min_norm_attack(model: nn.Module, *, norm: str = "Linf", steps: int = 20, n_target_classes: int = 3,
                          seed: int = 0) -> MinNormAttack:
    """Build the FAB minimum-norm attack (see :class:`MinNormAttack`)."""
    return MinNormAttack(model, norm=norm, steps=steps, n_target_classes=n_target_classes, seed=seed)


def perturbation_norm(delta: torch.Tensor, norm: str = "Linf") -> torch.Tensor:
    """Per-sample Linf, L2 or L1 norm of a perturbation batch."""
    flat = delta.reshape(len(delta), -1)
    norm = normalize_norm(norm)
    if norm == "Linf":
        return flat.abs().amax(1)
    return flat.norm(p=2, dim=1) if norm == "L2" else flat.abs().sum(1)
