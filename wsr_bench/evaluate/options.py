"""The settings of a spectrum evaluation as one frozen, validated object: :class:`SpectrumOptions`.

Built once (from keyword arguments, the ``wsr-bench eval`` flags or an experiment config) and passed down to
:func:`~wsr_bench.evaluate.spectrum.evaluate_spectrum`, :func:`~wsr_bench.evaluate.entry.evaluate_to_entry` and
:func:`~wsr_bench.jobs.eval.run_eval`. Each of them takes ``options`` plus keyword ``fields`` and evaluates
with ``dataclasses.replace(options or SpectrumOptions(), **fields)``: the fields override the options, a misspelt
field is a ``TypeError`` naming it, and every combination is validated here, once, before any work starts. The
names (attacks, threat model, sweep) and the warm-start rule are checked by the torch-free :mod:`wsr_bench.rules`,
which the config's ``eval`` section applies too.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import InitVar, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from wsr_bench.epsilon import PAPER_SPECTRUM, parse_eps_list
from wsr_bench.rules import (
    DEFAULT_SWEEP,
    Naming,
    check_threat_model,
    check_warm_start,
    normalize_aa_version,
    normalize_attacks,
    normalize_norm,
    normalize_sweep,
)
from wsr_bench.rules import flag as flag_name
from wsr_bench.rules import keyword as keyword_name

if TYPE_CHECKING:
    from wsr_bench.config import ExperimentConfig

@dataclass(frozen=True)
class SpectrumOptions:
    """What a spectrum evaluation computes: strengths, attacks, sweep strategy, batching, seeds, resume.

    Every field here changes the result or how it is reached (so the resume state records them); the data and
    the run-time choices that do not (model, images, labels, device, surrogate model, progress bar, state folder,
    sanity checks) are arguments of the evaluation functions instead. Inputs are normalized on construction:
    ``eps`` becomes a sorted tuple of floats, ``attack`` a tuple of canonical names, ``threat_model`` "Linf", "L2"
    or "L1". Each field has the name its ``wsr-bench eval`` flag and its config key (``eval.<field>``) have.
    The fields are documented in full in :func:`~wsr_bench.evaluate.spectrum.evaluate_spectrum`.

    Raises:
        ValueError: a bad eps, attack, threat model or sweep name, or a combination that cannot run (checked once,
            here).
    """

    eps: tuple[float, ...] = PAPER_SPECTRUM  # strengths: floats, "8/255" strings or one "0.03,8/255" string
    attack: tuple[str, ...] = ("pgd",)       # a name or names (comma lists too); worst case per sample
    steps: int = 20                          # PGD/APGD/FAB-T iterations (PGD step eps*2.5/steps)
    batch_size: int = 128                    # attack batch size; fixes the batches, hence resume and sharding
    threat_model: str = "Linf"               # Linf | L2 | L1 (RobustBench's name; AutoAttack calls it norm)
    aa_version: str = "standard"             # AutoAttack's version (pyautoattack's names): standard | plus | rand
    attack_all: bool = False                 # attack every clean-correct sample at every eps (the naive sweep)
    chain_attacks: bool = False              # later attacks skip samples an earlier one broke (AutoAttack-style)
    sweep: str | None = None                 # upward | downward | bisect for chain attacks (None: the default)
    seed: int = 0                            # seed of every attack's randomness
    n_queries: int = 1000                    # Square's query budget
    n_target_classes: int = 9                # target classes of APGD-T / FAB-T
    minnorm_steps: int = 20                  # FAB iterations of the min-norm attack
    minnorm_targets: int = 3                 # target classes of the min-norm attack
    early_stop: bool = False                 # PGD stops on a sample once it is misclassified
    warm_start_steps: int | None = None      # PGD survivors continue from their worst iterate with K steps
    warm_restart_ratio: float = 0.3          # ... and restart cold when their margin fell below this fraction
    resume: bool = False                     # continue from the state folder's finished batches
    flag_names: InitVar[bool] = False        # name the options by their `wsr-bench eval` flags in error messages

    def __post_init__(self, flag_names: bool) -> None:
        name: Naming = flag_name if flag_names else keyword_name
        threat_model = normalize_norm(self.threat_model)
        eps = parse_eps_list(self.eps, threat_model=threat_model)
        sweep = None if self.sweep is None else normalize_sweep(self.sweep)
        self._set(threat_model=threat_model, eps=tuple(eps), attack=normalize_attacks(self.attack), sweep=sweep,
                  aa_version=normalize_aa_version(self.aa_version, key=name("aa_version")))
        check_threat_model(self.attack, threat_model, eps, aa_version=self.aa_version, name=name)
        if int(self.batch_size) < 1 or int(self.steps) < 1:
            raise ValueError(f"{name('batch_size')} and {name('steps')} must be >= 1, "
                             f"got batch_size={self.batch_size}, steps={self.steps}")
        self._set(batch_size=int(self.batch_size), steps=int(self.steps), seed=int(self.seed),
                  warm_restart_ratio=float(self.warm_restart_ratio))
        if self.warm_start_steps is not None:
            self._set(warm_start_steps=int(self.warm_start_steps))
            check_warm_start(self.warm_start_steps, attacks=self.attack, threat_model=self.threat_model,
                             attack_all=self.attack_all, restart_ratio=self.warm_restart_ratio, name=name)
        self._check_sweep(name)

    def _set(self, **values: Any) -> None:
        """Store normalized values (the dataclass is frozen once ``__post_init__`` returns)."""
        for key, value in values.items():
            object.__setattr__(self, key, value)

    def _check_sweep(self, name: Naming) -> None:
        """A named sweep must apply: not with ``attack_all``, and not ``downward``/``bisect`` for a chain holding
        ``minnorm`` (which has no eps to screen at)."""
        if self.sweep is None or self.sweep == "upward":
            return
        if self.attack_all:
            raise ValueError(f"{name('sweep')} {self.sweep!r} cannot be combined with {name('attack_all')} (the "
                             "naive sweep attacks every sample at every eps); drop one of them")
        if self._minnorm_chain:
            raise ValueError(f"{name('sweep')} {self.sweep!r} screens a chain at every eps, but 'minnorm' has no eps; "
                             f"use {name('sweep')} 'upward' for chains with minnorm")

    @property
    def _minnorm_chain(self) -> bool:
        return self.chain_attacks and len(self.attack) > 1 and "minnorm" in self.attack

    @property
    def sweep_strategy(self) -> str:
        """The sweep chain attacks get: ``sweep``, or by default "upward" under ``attack_all`` (which visits every
        eps anyway) and for chains holding ``minnorm``, else ``DEFAULT_SWEEP``."""
        if self.sweep is not None:
            return self.sweep
        return "upward" if self.attack_all or self._minnorm_chain else DEFAULT_SWEEP

    def result_settings(self) -> dict[str, Any]:
        """The settings recorded in a result (and an entry's ``evaluation.settings``) and in the resume state's
        identity, beside eps, attacks, threat model, batch size and chaining, which those record on their own;
        AutoAttack's version where AutoAttack runs."""
        aa = {"aa_version": self.aa_version} if "autoattack" in self.attack else {}
        return {"steps": self.steps, **aa, "seed": self.seed, "n_queries": self.n_queries,
                "n_target_classes": self.n_target_classes, "minnorm_steps": self.minnorm_steps,
                "minnorm_targets": self.minnorm_targets, "early_stop": self.early_stop,
                "warm_start_steps": self.warm_start_steps, "warm_restart_ratio": self.warm_restart_ratio,
                "attack_all": self.attack_all, "sweep": self.sweep_strategy}

    @classmethod
    def from_config(cls, cfg: ExperimentConfig, **fields: Any) -> SpectrumOptions:
        """The options an experiment config asks for: its ``eval`` section, the data section's evaluation batch
        size and the master seed; ``fields`` add or override (e.g. ``resume=True``)."""
        ev = cfg.eval
        attack = normalize_attacks(fields.get("attack", ev.attack))  # the version applies where AutoAttack runs
        return cls(**{"eps": ev.eps, "attack": ev.attack, "threat_model": ev.threat_model, "steps": ev.steps,
                      "aa_version": ev.aa_version if "autoattack" in attack else "standard",
                      "warm_start_steps": ev.warm_start_steps, "sweep": ev.sweep,
                      "batch_size": cfg.data.eval_batch_size, "seed": cfg.seed, **fields})


def resolve_options(options: SpectrumOptions | None, fields: dict[str, Any]) -> SpectrumOptions:
    """``options`` with ``fields`` replaced (the defaults when ``options`` is None): how every evaluation entry point
    turns its ``options`` and keyword fields into one validated object."""
    if options is not None and not fields:
        return options
    return dataclasses.replace(options or SpectrumOptions(), **fields)


@dataclass(frozen=True)
class EvalRuntime:
    """How an evaluation runs, beside what it computes (:class:`SpectrumOptions`): one small object that every
    evaluation entry point takes as ``runtime`` (or as keywords, e.g. ``evaluate_spectrum(..., device="cpu")``).

    None of these is recorded in the resume state's identity except through ``state_info`` (and the surrogate's
    weights hash); the device and the memory layout change only the order of float operations.
    """

    device: Any = None                          # where to run (None: CUDA when available); a str or torch.device
    memory_format: str = "channels_last"        # the layout the model runs in during the evaluation (restored after)
    surrogate: Any = None                       # the nn.Module the transfer attack crafts on
    sanity: bool = False                        # also run the sanity checks and attach their report
    progress: bool = False                      # show a tqdm bar
    state_dir: str | Path | None = None         # keep per-batch progress here (wsr_bench.evaluate.resume)
    state_info: Mapping[str, Any] | None = None  # extra identity recorded in (and compared with) the state


@dataclass(frozen=True, kw_only=True)
class EntryLabels:
    """What a leaderboard entry says about the model beside its numbers (``model_name``/``architecture`` None in a
    job's evaluation stage: the loaded model's own; ``date`` None: today)."""

    dataset: str
    recipe: str = ""
    notes: str = ""
    model_name: str | None = None
    architecture: str | None = None
    date: str | None = None


def split_fields(fields: Mapping[str, Any], *classes: type) -> list[dict[str, Any]]:
    """Sort keyword ``fields`` by the dataclass (of ``classes``) that has a field of that name: one dict per class,
    in order. A name none of them has is a ``TypeError`` naming it, as a misspelt keyword argument is."""
    out: list[dict[str, Any]] = [{} for _ in classes]
    names = [{f.name for f in dataclasses.fields(c)} | ({"flag_names"} if c is SpectrumOptions else set())
             for c in classes]
    for key, value in fields.items():
        index = next((i for i, n in enumerate(names) if key in n), None)
        if index is None:
            raise TypeError(f"unexpected keyword argument {key!r}")
        out[index][key] = value
    return out


def resolve_runtime(runtime: EvalRuntime | None, fields: Mapping[str, Any], *,
                    default: EvalRuntime | None = None) -> EvalRuntime:
    """``runtime`` (else ``default``, else the defaults) with ``fields`` replaced."""
    base = runtime if runtime is not None else (default or EvalRuntime())
    return dataclasses.replace(base, **fields) if fields else base
