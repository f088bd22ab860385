"""Experiment configs: dataclasses with one commented default per field, YAML loading, ``--set a.b=c``
overrides, validation with clear errors, and a resolved dump written into every run folder.

In the spirit of pycls' ``core/config.py``, but passed around explicitly as objects, never as a global. Each stage
reads only its own section (``cfg.data``, ``cfg.search``, ``cfg.train``, ``cfg.eval``, ``cfg.run``).
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from wsr_bench.epsilon import PAPER_SPECTRUM, check_eps
from wsr_bench.infra.atomic import atomic_write_text
from wsr_bench.rules import (
    AMP_MODES,
    DEFAULT_SWEEP,
    ESTIMATORS,
    GENOTYPE_OF,
    GENOTYPE_RULES,
    MEMORY_FORMATS,
    NON_DARTS_MODELS,
    RECIPES,
    SEARCH_METHODS,
    STRENGTH_FEEDS,
    VLE_OUTPUTS,
    check_choice,
    check_dataset,
    check_objective,
    check_recipe,
    check_threat_model,
    check_warm_start,
    config_key,
    normalize_aa_version,
    normalize_attacks,
    normalize_norm,
    normalize_sweep,
)


class ConfigError(ValueError):
    """A config that cannot be used: unknown key, wrong type, out-of-range value, unreadable file."""


@dataclass
class DataConfig:
    name: str = "digits"            # digits (embedded default) | synthetic | cifar10 | cifar100 | svhn | fashion_mnist
    root: str = "data"              # local folder: cifar10/cifar100/svhn (torchvision layout), fashion_mnist IDX files
    download: bool = False          # let torchvision download a local dataset (off: this project runs offline)
    image_size: int | None = None   # side of digits/synthetic/fashion_mnist; null: 16/16/native 28; cifar/svhn keep 32
    limit: int | None = None        # keep at most this many images per split (quick runs)
    batch_size: int = 64            # training/search batch size (global, across DDP ranks)
    eval_batch_size: int = 256      # batch size for attacks and evaluation

    def validate(self) -> None:
        check_dataset(self.name, key="data.name", error=ConfigError)
        _check(self.image_size is None or self.image_size >= 8,
               f"data.image_size must be >= 8 or null (the dataset's default size), got {self.image_size}")
        _check(self.batch_size >= 1 and self.eval_batch_size >= 1, "data batch sizes must be >= 1")
        _check(self.limit is None or self.limit >= 1, f"data.limit must be >= 1 or null, got {self.limit}")


@dataclass
class ModelConfig:
    init_channels: int = 8          # C of the retrained network (official: 36-50; demo: small)
    layers: int = 5                 # number of cells (official: 20)
    auxiliary: bool = False         # DARTS auxiliary head during training
    auxiliary_weight: float = 0.4   # weight of the auxiliary loss when enabled
    drop_path_rate: float = 0.0     # drop-path probability, ramped up linearly over training as in DARTS

    def validate(self) -> None:
        _check(self.init_channels >= 2 and self.layers >= 3, "model.init_channels must be >= 2 and layers >= 3")
        _check(0.0 <= self.drop_path_rate < 1.0, f"model.drop_path_rate must be in [0,1), got {self.drop_path_rate}")


@dataclass
class TrainConfig:
    RECIPES: typing.ClassVar[tuple[str, ...]] = RECIPES
    AUGMENTS: typing.ClassVar[tuple[str, ...]] = ("none", "crop", "crop_flip")

    recipe: str = "pgd"             # pgd (Madry PGD-k) | trades | fgsm_rs (fast AT) | multi (multi-strength) | clean
    epochs: int = 10                # training epochs
    lr: float = 0.1                 # SGD learning rate (cosine schedule)
    lr_min: float = 0.0             # learning rate at the end of the cosine schedule (stepped every batch)
    momentum: float = 0.9           # SGD momentum
    weight_decay: float = 5e-4      # SGD weight decay (official retraining: 5e-4)
    grad_clip: float = 5.0          # gradient-norm clipping (0 disables)
    eps: float = 0.031              # training Linf strength (official: 0.031)
    steps: int = 7                  # attack steps during training (PGD-7; TRADES uses 10)
    step_size: float | None = None  # attack step; null = eps*2.5/steps (FGSM-RS: 1.25*eps, Wong et al.)
    trades_beta: float = 6.0        # TRADES trade-off beta
    multi_eps: list[float] = field(default_factory=lambda: [0.03, 0.045, 0.06, 0.075, 0.09, 0.105])  # recipe multi
    augment: str = "none"           # none | crop (random crop, 4-pixel zero padding) | crop_flip (+ horizontal flip)
    cutout: int = 0                 # cutout side length in pixels (0 disables)
    eval_examples: int = 256        # test images for the end-of-epoch clean / PGD check (0 skips it)
    eval_steps: int = 10            # PGD steps of the end-of-epoch check (at train.eps)
    sync_bn: bool = False           # under DDP on CUDA: BatchNorm statistics over the global batch (SyncBatchNorm)
    amp: str = "none"               # none (float32) | bf16: bfloat16 autocast of the training attacks and forward
                                    # passes (CPU and CUDA; the end-of-epoch check and every evaluation stay float32)

    def validate(self) -> None:
        check_choice(self.amp, AMP_MODES, "train.amp", error=ConfigError)
        check_recipe(self.recipe, self.eps, self.steps, self.step_size, self.trades_beta, self.multi_eps,
                     section="train", error=ConfigError)
        _check(self.epochs >= 1, f"train.epochs must be >= 1, got {self.epochs}")
        _check(self.lr > 0 and 0 <= self.lr_min <= self.lr, f"train.lr must be > 0 and 0 <= train.lr_min <= lr, "
               f"got lr {self.lr}, lr_min {self.lr_min}")
        _check(0 <= self.momentum < 1 and self.weight_decay >= 0 and self.grad_clip >= 0,
               "train.momentum must be in [0,1), train.weight_decay and train.grad_clip >= 0")
        check_choice(self.augment, self.AUGMENTS, "train.augment", error=ConfigError)
        _check(self.cutout >= 0 and self.eval_examples >= 0 and self.eval_steps >= 1,
               "train.cutout and train.eval_examples must be >= 0, train.eval_steps >= 1")


@dataclass(frozen=True)
class AneConfig:
    """``search.ane``: the AN-Estimator (it estimates the adversarial noise at the ``n2`` strengths PGD does not
    attack): what its encoders are fed, its memory M_a, and its training. Which estimator runs is ``search.estimator``
    (a choice of the method, with ``n1`` and ``n2``)."""

    strength_feed: str = "l2"       # strength fed to the AN-Estimator's encoders: l2 (noise RMS, official) | linf
    memory: int = 600               # M_a capacity in entries (paper: 600)
    fill_batches: int = 11          # D_t batches pushed into M_a per iteration (official: 11)
    batch: int = 64                 # images per such batch (official: the search batch, 64)
    targets: str = "leave_one_out"  # M_a targets: leave_one_out (each of the anchors + one random-eps PGD noise in
                                    # turn, from the other three, official) | random (the random-eps noise only)
    target_range: list[float] = field(default_factory=lambda: [0.0, 0.15])  # M_a target eps drawn in (lo, hi)
    passes: int = 1                 # K_a: passes over M_a per iteration (official: one pass)
    train_batch: int = 64           # M_a entries per AN-Estimator training step
    lr: float = 5e-4                # AdamW learning rate of the AN-Estimator (official: 5e-4)
    weight_decay: float = 1e-4      # AdamW weight decay of the AN-Estimator (official: 1e-4)
    lr_warmup: int = 4000           # linear warm-up of the AN-Estimator's learning rate, in steps (official 4000)

    def validate(self) -> None:
        for name in ("memory", "fill_batches", "batch", "passes", "train_batch"):
            _check(getattr(self, name) >= 1, f"search.ane.{name} must be >= 1, got {getattr(self, name)}")
        _check(self.lr > 0, f"search.ane.lr must be > 0, got {self.lr}")
        _check(self.lr_warmup >= 0, f"search.ane.lr_warmup must be >= 0, got {self.lr_warmup}")
        lo, hi = (list(self.target_range) + [None, None])[:2]
        _check(len(self.target_range) == 2 and 0 <= lo < hi <= 1,
               f"search.ane.target_range must be [lo, hi] with 0 <= lo < hi <= 1, got {self.target_range}")


@dataclass(frozen=True)
class VleConfig:
    """``search.vle``: the validation-loss estimator (VLE) the EWSS queries, its memory M_v of measured
    architectures, and its training."""

    model: str = "lstm"             # lstm (Eq. 8, official) | additive: a cost per (edge, op) and loss, fitted in
                                    # closed form by ridge regression on M_v (search_signal.yaml)
    hidden: int = 16                # VLE LSTM width (official --predictor_hidden_state 16)
    output: str = "standardised"    # standardised: per-output z-scores | bounded: 2*sigmoid (official). A deliberate
                                    # difference: the bounded head did not rank architectures (docs/fidelity.md)
    ridge: float = 1.0              # L2 penalty of the additive VLE's per-edge costs (in squared one-hot entries)
    op_ridge: float | None = None   # the additive VLE's per-cell op costs shared by all edges, and their L2 penalty
                                    # (null: no shared term)
    covariates: bool = False        # additive VLE: also fit whether a draw was just trained and the search's progress
                                    # (t, t^2) as nuisance terms of the measured losses (search_signal.yaml)
    memory: int = 100               # M_v capacity: (H, losses) pairs kept for the VLE (official --memory_size 100)
    store: str = "soft"             # what M_v keeps of a sampled H: soft (GumbelSoftmax weights at tau, official) |
                                    # hard (the one-hot sub-network)
    measure_draws: int = 1          # architectures measured into M_v per iteration: the trained draw and
                                    # measure_draws - 1 more drawn from A (official: 1)
    input_noise: float = 0.01       # sigma of the Gaussian noise added to H while the VLE trains (official 0.01)
    lr: float = 1e-3                # Adam learning rate of the VLE (official 1e-3)
    weight_decay: float = 1e-3      # Adam weight decay of the VLE (official 1e-3)
    warmup_passes: int = 500        # K_v: passes over M_v after the warm-up population (Alg. 1 line 18; official 500)
    passes: int = 500               # passes over M_v after every search step (Alg. 1 line 23; official 500)
    batch: int = 64                 # M_v entries per VLE step (official 64)

    def validate(self) -> None:
        for name in ("hidden", "memory", "measure_draws", "warmup_passes", "passes", "batch"):
            _check(getattr(self, name) >= 1, f"search.vle.{name} must be >= 1, got {getattr(self, name)}")
        for name in ("lr", "ridge"):
            _check(getattr(self, name) > 0, f"search.vle.{name} must be > 0, got {getattr(self, name)}")
        _check(self.model == "additive" or (self.op_ridge is None and not self.covariates),
               "search.vle.op_ridge and search.vle.covariates are terms of the additive VLE: set search.vle.model: "
               "additive, or leave them null / false")
        _check(self.op_ridge is None or self.op_ridge > 0, f"search.vle.op_ridge must be > 0 or null, got "
               f"{self.op_ridge}")
        _check(self.input_noise >= 0, f"search.vle.input_noise must be >= 0, got {self.input_noise}")


@dataclass(frozen=True)
class ArchConfig:
    """``search.arch``: the architecture weights A (``arch_weights``): their initialisation and their Adam optimizer
    (official DARTS / Wsr-NAS values)."""

    init_std: float = 1e-3          # A is initialised as init_std * randn (official, DARTS)
    lr: float = 3e-5                # Adam learning rate of A (official 3e-5)
    betas: list[float] = field(default_factory=lambda: [0.5, 0.999])  # Adam betas on A (official)
    weight_decay: float = 1e-3      # Adam weight decay of A (official --arch_weight_decay)
    samples: int = 8                # Gumbel draws of H averaged in one EWSS update (only with search.ewss_query: fresh)

    def validate(self) -> None:
        for name in ("init_std", "lr"):
            _check(getattr(self, name) > 0, f"search.arch.{name} must be > 0, got {getattr(self, name)}")
        _check(self.samples >= 1, f"search.arch.samples must be >= 1, got {self.samples}")
        _check(len(self.betas) == 2 and all(0 <= float(b) < 1 for b in self.betas),
               f"search.arch.betas must be two numbers in [0, 1), got {self.betas}")


@dataclass(frozen=True)
class WeightsConfig:
    """``search.weights``: the SGD optimizer of the super-network's shared weights (official values)."""

    lr: float = 0.1                 # SGD learning rate of the shared weights (official --learning_rate 0.1)
    lr_min: float = 0.001           # learning rate at the end of the cosine (official --learning_rate_min)
    lr_schedule: str = "search_cosine"  # search_cosine: constant through warm-up and population, cosine over the
                                    # search steps (official) | cosine: one cosine over all search epochs
    momentum: float = 0.9           # SGD momentum of the shared weights
    weight_decay: float = 3e-4      # SGD weight decay of the shared weights (DARTS)
    grad_clip: float = 5.0          # gradient-norm clipping of the shared weights (0 disables)

    def validate(self) -> None:
        _check(self.lr > 0, f"search.weights.lr must be > 0, got {self.lr}")
        _check(0 <= self.lr_min <= self.lr, f"search.weights.lr_min must be in [0, search.weights.lr], got "
               f"{self.lr_min}")
        _check(self.grad_clip >= 0 and 0 <= self.momentum < 1, "search.weights.grad_clip must be >= 0 and "
               "search.weights.momentum in [0, 1)")


@dataclass
class SearchConfig:
    """The search section. Defaults are the official Wsr-NAS recipe (zhicheng2T0/Wsr-NAS,
    ``search/robust_train_search_official.py``; see docs/fidelity.md), at the official sizes; configs scale the
    sizes down for small budgets, not the recipe's shape. The settings of the four trained parts are sections:
    ``ane`` (the AN-Estimator), ``vle`` (the validation-loss estimator), ``arch`` (the architecture weights A) and
    ``weights`` (the super-network's weights); the method's shape, its data, attacks and sampling stay at the top."""

    CHOICES: typing.ClassVar[dict[str, tuple[str, ...]]] = {
        "method": SEARCH_METHODS, "estimator": (*ESTIMATORS, "none"), "ane.strength_feed": STRENGTH_FEEDS,
        "naive_gradient": ("hard", "soft"), "warmup_recipe": ("clean", "pgd"),
        "weights.lr_schedule": ("search_cosine", "cosine"), "vle.store": ("soft", "hard"), "vle.output": VLE_OUTPUTS,
        "ewss_query": ("stored", "fresh", "expected"), "ane.targets": ("leave_one_out", "random"),
        "genotype_rule": GENOTYPE_RULES, "amp": AMP_MODES, "vle.model": ("lstm", "additive"),
        "direction": ("minimize", "maximize"),
    }  # dotted keys name a section's field; the lists the search code also uses come from wsr_bench.rules;
    #    objective_form (rules.OBJECTIVE_FORMS) is checked with the rest of the objective, by check_objective

    method: str = "wsr"             # wsr (Algorithm 1: AN-Estimator + EWSS) | naive (PGD at every strength)
    init_channels: int = 16         # super-network C (official search: 16)
    layers: int = 8                 # super-network cells (official search: 8)
    n1: int = 3                     # strengths attacked by PGD (anchors); naive: all strengths
    n2: int = 3                     # strengths estimated by the AN-Estimator (0 for naive)
    strengths: list[float] = field(default_factory=lambda: [0.03, 0.045, 0.06, 0.075, 0.09, 0.105])  # increasing
    objective_weights: list[float] = field(default_factory=lambda: [1, 2, 3, 5, 7, 10])  # beta_i, normalised
    nat_weight: float = 0.8         # alpha of Eq. 10: weight of the natural loss
    robust_weight: float = 0.2      # beta of Eq. 10: weight of the robust losses (nat_weight + robust_weight = 1)
    objective_form: str = "squared"  # squared: sum_i w_i * L_i^2 (official code) | linear: sum_i w_i * L_i (Eq. 10)
    estimator: str = "a"            # AN-Estimator: wa | a | e | e_minus | none (only with n2 = 0)
    population: int = 100           # N: warm-up architecture population (official --warm_up_population 100)
    search_steps: int = 200         # T: search steps after warm-up (official --epochs 200)
    warmup_epochs: int = 1          # epochs each population architecture is warmed up for (Alg. 1 line 4)
    warmup_recipe: str = "pgd"      # warm-up training: pgd (PGD-k at train_eps, official) | clean
    train_eps: float = 0.03         # Linf strength of the super-network's adversarial training (PGD-k)
    train_steps: int = 7            # PGD steps of that training (PGD-7 as the official search)
    attack_steps: int = 7           # PGD steps of the validation noises (anchors; every strength for naive)
    attack_random_start: bool = False  # random start of every PGD in the search (official: none)
    train_limit: int | None = None  # at most this many D_t images per search epoch (null: all of D_t)
    val_limit: int | None = None    # at most this many D_v images for noise generation and evaluation (null: all)
    bn_batches: int = 4             # D_t batches that re-estimate BatchNorm statistics of a sampled sub-network
                                    # before it is attacked in eval mode (one-shot NAS practice; 0 disables)
    tau: float = 0.1                # Gumbel-softmax temperature of sampling, M_v entries and the EWSS (official 0.1)
    ewss_query: str = "stored"      # stored: the EWSS queries the VLE at the soft H just trained and stored in M_v,
                                    # same Gumbel noise (official) | fresh: arch.samples fresh soft draws |
                                    # expected: at softmax(A), the probability each op is drawn (search_signal.yaml)
    direction: str = "minimize"     # minimize the objective (the search) | maximize it (the anti-search control)
    naive_gradient: str = "hard"    # naive's H for the gradient through the super-network: hard (straight-through
                                    # Gumbel sample, only sampled ops run) | soft (every op runs, DARTS' mixture)
    genotype_rule: str = "alpha"    # genotype derivation ranks edges and ops by raw A (official) | softmax(A) (DARTS)
    max_skip_normal: int | None = None  # P-DARTS cap on skip_connect edges in the derived normal cell (null: none)
    max_parameter_free_normal: int | None = None  # the same cap on all parameter-free ops (skip, pooling; null: none)
    amp: str = "none"               # none | bf16: bfloat16 autocast of the shared weights' training (its PGD too);
                                    # the anchors, estimated noises and validation losses stay float32
    progress: bool = True           # tqdm bars on the long phases
    ane: AneConfig = field(default_factory=AneConfig)          # the AN-Estimator (see AneConfig)
    vle: VleConfig = field(default_factory=VleConfig)          # the validation-loss estimator (see VleConfig)
    arch: ArchConfig = field(default_factory=ArchConfig)       # the architecture weights A (see ArchConfig)
    weights: WeightsConfig = field(default_factory=WeightsConfig)  # the super-network's weights (see WeightsConfig)

    def validate(self) -> None:
        for key, choices in self.CHOICES.items():
            value = self._get(key)
            _check(value in choices, f"search.{key} must be one of {' | '.join(choices)}, got {value!r}")
        self._validate_strengths()
        self._validate_objective()
        self._validate_sizes()
        _check(self.tau > 0, f"search.tau must be > 0, got {self.tau}")
        for section in (self.ane, self.vle, self.arch, self.weights):
            section.validate()

    def _get(self, dotted: str) -> Any:
        """The value of ``key`` or ``section.key``."""
        value: Any = self
        for part in dotted.split("."):
            value = getattr(value, part)
        return value

    def _validate_strengths(self) -> None:
        s = [float(e) for e in self.strengths]
        _check(len(s) > 0, "search.strengths is empty: list at least one Linf strength, e.g. [0.03, 0.06, 0.09]")
        for e in s:
            check_eps(e, "search.strengths entry", error=ConfigError)
        _check(all(s[i] < s[i + 1] for i in range(len(s) - 1)), f"search.strengths {s} must be strictly increasing")
        _check(self.n1 >= 1 and self.n2 >= 0, f"search.n1 must be >= 1 and n2 >= 0, got n1={self.n1}, n2={self.n2}")
        _check(self.n1 + self.n2 == len(s), f"search.n1 + search.n2 = {self.n1 + self.n2} but search.strengths "
               f"lists {len(s)} strengths; they must match (n1 by PGD, n2 by the AN-Estimator)")
        _check(not (self.n2 > 0 and self.estimator == "none"), f"search.n2 = {self.n2} strengths need an "
               f"AN-Estimator, but search.estimator is none; choose {' | '.join(ESTIMATORS)} or set n2: 0")
        _check(self.method != "naive" or self.n2 == 0, f"search.method naive runs PGD at every strength: set "
               f"search.n2: 0 and search.n1: {len(s)}, got n2={self.n2}")
        check_eps(self.train_eps, "search.train_eps", error=ConfigError)

    def _validate_objective(self) -> None:
        _check(len(self.objective_weights) == len(self.strengths), f"search.objective_weights has "
               f"{len(self.objective_weights)} entries but search.strengths has {len(self.strengths)}; give one "
               f"weight beta_i per strength")
        check_objective(self.nat_weight, self.robust_weight, self.objective_weights, self.objective_form,
                        section="search", error=ConfigError)

    def _validate_sizes(self) -> None:
        for name in ("init_channels", "population", "warmup_epochs", "train_steps", "attack_steps"):
            _check(getattr(self, name) >= 1, f"search.{name} must be >= 1, got {getattr(self, name)}")
        _check(self.layers >= 3, f"search.layers must be >= 3, got {self.layers}")
        _check(self.search_steps >= 1, f"search.search_steps must be >= 1 (T search steps; with 0 the architecture "
               f"weights are never updated and the genotype is their random initialisation), got {self.search_steps}")
        _check(self.bn_batches >= 0, f"search.bn_batches must be >= 0, got {self.bn_batches}")
        for name in ("train_limit", "val_limit"):
            _check(getattr(self, name) is None or getattr(self, name) >= 1, f"search.{name} must be >= 1 or null")
        for name in ("max_skip_normal", "max_parameter_free_normal"):
            value = getattr(self, name)
            _check(value is None or 0 <= value <= 8, f"search.{name} must be null or an edge count in 0..8 (a normal "
                   f"cell has 8 edges), got {value}")


#: The flat search keys that moved into a section: old key -> (section, field).
SEARCH_SECTION_KEYS: dict[str, tuple[str, str]] = {
    **{f"ane_{f.name}": ("ane", f.name) for f in dataclasses.fields(AneConfig) if f.name != "strength_feed"},
    "strength_feed": ("ane", "strength_feed"),
    **{f"vle_{f.name}": ("vle", f.name) for f in dataclasses.fields(VleConfig) if f.name != "measure_draws"},
    "measure_draws": ("vle", "measure_draws"),
    **{f"arch_{f.name}": ("arch", f.name) for f in dataclasses.fields(ArchConfig)},
    **{f"weight_{f.name}": ("weights", f.name) for f in dataclasses.fields(WeightsConfig)
       if f.name not in ("weight_decay", "grad_clip")},
    "weight_decay": ("weights", "weight_decay"), "grad_clip": ("weights", "grad_clip"),
}


def nest_search_keys(search: dict[str, Any]) -> dict[str, Any]:
    """A search section written with the old flat keys (``ane_batch``) in the sectioned layout (``ane: {batch}``):
    how a checkpoint written before the sections compares with today's config."""
    out: dict[str, Any] = {}
    for key, value in search.items():
        if key in SEARCH_SECTION_KEYS:
            section, name = SEARCH_SECTION_KEYS[key]
            out.setdefault(section, {})[name] = value
        else:
            out[key] = value
    return out


@dataclass
class EvalConfig:
    eps: list[float] = field(default_factory=lambda: list(PAPER_SPECTRUM))  # Linf strengths on the [0,1] scale
    attack: list[str] = field(default_factory=lambda: ["pgd"])  # fgsm | pgd | apgd-ce | autoattack | minnorm ...; a
                                                                # list: the worst case per sample
    steps: int = 20                 # PGD steps (step size eps * 2.5 / steps)
    n_examples: int = 200           # test images evaluated
    threat_model: str = "Linf"      # Linf | L2 | L1 (L1 eps sum |delta| over all pixels: e.g. 12 on CIFAR-10)
    aa_version: str = "standard"    # AutoAttack's version (with autoattack among the attacks): standard | plus | rand
    warm_start_steps: int | None = None  # PGD survivors continue from their worst iterate with K steps (null: cold)
    sweep: str = DEFAULT_SWEEP      # upward | downward | bisect: how chain attacks (autoattack) walk the eps

    def validate(self) -> None:
        """Check the section by the rules ``SpectrumOptions`` applies to it (:mod:`wsr_bench.rules`), and store the
        attack, threat-model and sweep names in their canonical spelling (``AA`` -> ``autoattack``, as the options
        would), so the run folder and the leaderboard paths use the names the results record."""
        self.sweep = normalize_sweep(self.sweep, key="eval.sweep", error=ConfigError)
        _check(len(self.eps) > 0, "eval.eps must list at least one strength")
        self.threat_model = normalize_norm(self.threat_model, key="eval.threat_model", error=ConfigError)
        for e in self.eps:  # Linf strengths lie in (0, 1]; L2 and L1 budgets are norms of the whole image
            if self.threat_model == "Linf":
                check_eps(e, "eval.eps", error=ConfigError)
            else:
                _check(math.isfinite(e) and e > 0, f"eval.eps {e:g} must be a finite number > 0")
        _check(self.steps >= 1 and self.n_examples >= 1, "eval.steps and eval.n_examples must be >= 1")
        self.attack = list(normalize_attacks(self.attack, key="eval.attack", error=ConfigError))
        self.aa_version = normalize_aa_version(self.aa_version, key="eval.aa_version", error=ConfigError)
        check_threat_model(self.attack, self.threat_model, [float(e) for e in self.eps], aa_version=self.aa_version,
                           name=config_key("eval"), error=ConfigError)
        if self.warm_start_steps is not None:
            check_warm_start(self.warm_start_steps, attacks=self.attack, threat_model=self.threat_model,
                             name=config_key("eval"), error=ConfigError)


@dataclass
class RunConfig:
    baselines: list[str] = field(default_factory=lambda: ["darts_v2", "racl", "advrush"])  # trained like the WsrNet
    leaderboard_reference: bool = True  # place RobustBench's published numbers beside ours in the leaderboard

    def validate(self) -> None:
        known = (*GENOTYPE_OF, *NON_DARTS_MODELS)
        for name in self.baselines:
            _check(name in known, f"run.baselines: unknown model {name!r}; known: {', '.join(known)}")


@dataclass
class ZooModelConfig:
    """One published model of the zoo: ``<architecture>.<tag>`` (a timm pretrained tag)."""

    architecture: str               # a registered model (wsrnet_basic, racl, preact_resnet18, ...) or wsrnet
    tag: str = "fmnist_pgd"         # pretrained tag; the weights ship as <architecture>.<tag>
    recipe: str | None = None       # training recipe (null: train.recipe), e.g. clean for the non-robust reference
    epochs: int | None = None       # training epochs (null: train.epochs)
    genotype: str | None = None     # wsrnet only: "search" (the cell this config's search finds) or a genotype.json
    width: int | None = None        # preact_resnet18 only: base channels (64 is the standard network)

    def validate(self) -> None:
        _check(bool(self.architecture) and bool(self.tag) and "." not in self.tag,
               f"zoo.models: architecture and tag must be set (tag without '.'), got {self.architecture!r}."
               f"{self.tag!r}")
        if self.recipe is not None:
            check_choice(self.recipe, RECIPES, "zoo.models[].recipe", error=ConfigError)
        _check((self.genotype is not None) == (self.architecture == "wsrnet"),
               f"zoo.models: architecture wsrnet needs genotype: search (or a genotype.json), and only wsrnet takes "
               f"one; got {self.architecture} with genotype {self.genotype!r}")
        _check(self.width is None or self.width >= 2, f"zoo.models[].width must be >= 2, got {self.width}")
        _check(self.epochs is None or self.epochs >= 1, f"zoo.models[].epochs must be >= 1, got {self.epochs}")

    @property
    def name(self) -> str:
        """``<architecture>.<tag>``: the timm name the weights are published under and the leaderboard row."""
        return f"{self.architecture}.{self.tag}"


@dataclass
class ZooConfig:
    """``wsr-bench zoo CONFIG``: train, evaluate and publish every listed model (each skipped once published)."""

    models: list[ZooModelConfig] = field(default_factory=list)  # the zoo, in build order
    leaderboard: str = "leaderboard"  # leaderboard folder the entries go to (then rebuilt)
    weights_dir: str | None = None  # where the weights and manifest.json go (null: the package's wsr_bench/weights)
    autoattack_examples: int = 1000  # first N test images for the AutoAttack sweep (the main table)
    pgd_examples: int | None = None  # first N test images for the PGD sweep (null: the whole test split)
    pgd_steps: int = 20             # PGD iterations of that sweep
    license: str = "mit"            # licence of the published weights

    def validate(self) -> None:
        for m in self.models:
            m.validate()
        names = [m.name for m in self.models]
        _check(len(set(names)) == len(names), f"zoo.models lists a name twice: {names}")
        _check(self.autoattack_examples >= 1 and self.pgd_steps >= 1 and (self.pgd_examples or 1) >= 1,
               "zoo.autoattack_examples, zoo.pgd_examples and zoo.pgd_steps must be >= 1")


#: where ``wsr-bench run`` / ``zoo`` run their stages: a process pool on this machine, or SLURM jobs via submitit
EXECUTOR_KINDS = ("local", "slurm")


@dataclass
class ExecutorConfig:
    """How a job's stages are run (``wsr_bench.jobs.executor``): ``--executor`` and ``--workers`` override ``kind``
    and ``workers``; the other keys are each SLURM job's resources (one job per stage; ignored locally)."""

    kind: str = "local"             # local (a process pool on this machine) | slurm (one submitit job per stage)
    workers: int | None = None      # stages at once (null: local, cores // threads per stage; slurm, every ready one)
    partition: str | None = None    # slurm partition (null: the cluster's default)
    account: str | None = None      # slurm account (null: the user's default)
    cpus_per_stage: int = 1         # CPUs of each stage's job (also its torch threads on slurm)
    gpus_per_stage: int = 0         # GPUs of each stage's job (then run with --device cuda)
    mem_gb: float | None = None     # memory of each stage's job (null: the partition's default)
    timeout_min: int = 720          # time limit of each stage's job in minutes (a stage resumes from its checkpoint)
    folder: str | None = None       # submitit's job files and logs (null: OUT/slurm)

    def validate(self) -> None:
        check_choice(self.kind, EXECUTOR_KINDS, "executor.kind", error=ConfigError)
        _check(self.workers is None or self.workers >= 1, f"executor.workers must be >= 1, got {self.workers}")
        _check(self.cpus_per_stage >= 1, f"executor.cpus_per_stage must be >= 1, got {self.cpus_per_stage}")
        _check(self.gpus_per_stage >= 0, f"executor.gpus_per_stage must be >= 0, got {self.gpus_per_stage}")
        _check(self.mem_gb is None or self.mem_gb > 0, f"executor.mem_gb must be > 0, got {self.mem_gb}")
        _check(self.timeout_min >= 1, f"executor.timeout_min must be >= 1, got {self.timeout_min}")


@dataclass
class ExperimentConfig:
    name: str = "experiment"        # run name, used in logs and leaderboard entries
    seed: int = 0                   # master seed: data splits, initialisation, sampling
    device: str = "auto"            # auto (cuda when available) | cpu | cuda | cuda:N
    memory_format: str = "channels_last"  # layout of networks and images: channels_last (NHWC, ~1.8x faster) |
                                    # contiguous (NCHW); results differ only by float rounding order
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    search: SearchConfig = field(default_factory=SearchConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    run: RunConfig = field(default_factory=RunConfig)
    zoo: ZooConfig = field(default_factory=ZooConfig)
    executor: ExecutorConfig = field(default_factory=ExecutorConfig)

    def validate(self) -> None:
        _check(self.device == "auto" or self.device == "cpu" or self.device.startswith("cuda"),
               f"device must be auto, cpu or cuda[:N], got {self.device!r}")
        check_choice(self.memory_format, MEMORY_FORMATS, "memory_format", error=ConfigError)
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if hasattr(value, "validate"):
                value.validate()


def _check(cond: bool, message: str) -> None:
    if not cond:
        raise ConfigError(message)


def _convert(value: Any, tp: Any, key: str) -> Any:
    """Coerce a YAML value to the annotated type ``tp`` (dataclasses recursively) or raise ``ConfigError``."""
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"config section {key!r} must be a mapping, got {type(value).__name__}")
        return _build(tp, value, key + ".")
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        return _convert(value, next(a for a in args if a is not type(None)), key)
    if origin is list:
        if not isinstance(value, list | tuple):
            raise ConfigError(f"config key {key!r} must be a list, got {value!r}")
        (item,) = typing.get_args(tp)
        return [_convert(v, item, f"{key}[{i}]") for i, v in enumerate(value)]
    if tp is float and isinstance(value, str) and "/" in value:
        num, _, den = value.partition("/")
        try:
            return float(num) / float(den)
        except ValueError:
            raise ConfigError(f"config key {key!r}: cannot read {value!r} as a number") from None
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"config key {key!r} must be true or false, got {value!r}")
        return value
    if tp in (int, float, str):
        if tp in (int, float) and isinstance(value, bool) or tp is int and isinstance(value, float):
            raise ConfigError(f"config key {key!r} must be {tp.__name__}, got {value!r}")
        try:
            return tp(value)
        except (TypeError, ValueError):
            raise ConfigError(f"config key {key!r} must be {tp.__name__}, got {value!r}") from None
    return value


#: Keys renamed since configs were first written: old dotted key -> new name (an old key gets a pointed error).
RENAMED_KEYS = {"eval.attacks": "eval.attack", "search.steps": "search.search_steps",
                "search.alpha": "search.nat_weight", "search.beta": "search.robust_weight",
                **{f"search.{old}": f"search.{section}.{name}" for old, (section, name) in SEARCH_SECTION_KEYS.items()}}


def _build(cls: type, raw: dict[str, Any], prefix: str = "") -> Any:
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(raw) - set(names))
    if unknown:
        key = prefix + unknown[0]
        if key in RENAMED_KEYS:
            raise ConfigError(f"config key {key!r} was renamed {RENAMED_KEYS[key]!r}")
        raise ConfigError(f"unknown config key {key!r}; known keys here: {', '.join(names)}")
    return cls(**{k: _convert(v, hints[k], prefix + k) for k, v in raw.items()})


def config_from_dict(raw: dict[str, Any], cls: type = ExperimentConfig) -> Any:
    """Build and validate a config from a plain dict (unknown keys are errors)."""
    cfg = _build(cls, raw or {})
    cfg.validate()
    return cfg


def apply_overrides(raw: dict[str, Any], overrides: list[str] | None) -> dict[str, Any]:
    """Apply ``a.b=c`` strings (values parsed as YAML) to a nested dict, in place; returns it."""
    for item in overrides or []:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"override {item!r} is not of the form section.key=value")
        node = raw
        parts = key.strip().split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {item!r}: {part!r} is not a config section")
        try:
            node[parts[-1]] = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ConfigError(f"override {item!r}: cannot parse value ({exc})") from None
    return raw


def load_config(path: str | Path | None, overrides: list[str] | None = None,
                cls: type = ExperimentConfig) -> Any:
    """Read a YAML config (``None`` = all defaults), apply ``--set`` overrides, build and validate it."""
    raw: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file {path} not found")
        try:
            raw = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"config file {path} is not valid YAML: {str(exc).splitlines()[0]}") from None
        if not isinstance(raw, dict):
            raise ConfigError(f"config file {path} must hold a mapping at the top level")
    return config_from_dict(apply_overrides(raw, overrides), cls)


def config_to_dict(cfg: Any) -> dict[str, Any]:
    """The resolved config as a plain dict (what ``dump_config`` writes)."""
    return dataclasses.asdict(cfg)


def dump_config(cfg: Any, path: str | Path) -> None:
    """Write the resolved config as YAML, atomically (every run folder gets one)."""
    atomic_write_text(path, yaml.safe_dump(config_to_dict(cfg), sort_keys=False))
