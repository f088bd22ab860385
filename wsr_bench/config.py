"""Experiment configs: dataclasses with one commented default per field, YAML loading, ``--set a.b=c``
overrides, validation with clear errors, and a resolved dump written into every run folder.

In the spirit of pycls' ``core/config.py``, but passed around explicitly as objects, never as a global. Each stage
reads only its own section (``cfg.data``, ``cfg.search``, ``cfg.train``, ``cfg.eval``, ``cfg.run``).
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from wsr_bench.io import atomic_write_text


class ConfigError(ValueError):
    """A config that cannot be used: unknown key, wrong type, out-of-range value, unreadable file."""


PAPER_SPECTRUM = [0.03, 0.10, 0.17, 0.25]


@dataclass
class DataConfig:
    name: str = "digits"            # digits (embedded default) | synthetic | cifar10 | cifar100 | svhn
    root: str = "data"              # local folder holding cifar10/cifar100/svhn in torchvision's layout
    download: bool = False          # let torchvision download a local dataset (off: this project runs offline)
    image_size: int = 16            # side of digits/synthetic images (local datasets keep 32)
    limit: int | None = None        # keep at most this many images per split (quick runs)
    batch_size: int = 64            # training/search batch size (global, across DDP ranks)
    eval_batch_size: int = 256      # batch size for attacks and evaluation

    def validate(self) -> None:
        from wsr_bench.data import DATASETS

        _check(self.name in DATASETS, f"data.name must be one of {', '.join(DATASETS)}, got {self.name!r}")
        _check(self.image_size >= 8, f"data.image_size must be >= 8, got {self.image_size}")
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
    recipe: str = "pgd"             # pgd (Madry PGD-k) | trades | fgsm_rs (fast AT) | multi (multi-strength) | clean
    epochs: int = 10                # training epochs
    lr: float = 0.1                 # SGD learning rate (cosine schedule)
    momentum: float = 0.9           # SGD momentum
    weight_decay: float = 5e-4      # SGD weight decay (official retraining: 5e-4)
    grad_clip: float = 5.0          # gradient-norm clipping (0 disables)
    eps: float = 0.031              # training Linf strength (official: 0.031)
    steps: int = 7                  # attack steps during training (PGD-7; TRADES uses 10)
    trades_beta: float = 6.0        # TRADES trade-off beta
    multi_eps: list[float] = field(default_factory=lambda: [0.03, 0.045, 0.06, 0.075, 0.09, 0.105])  # recipe multi
    cutout: int = 0                 # cutout side length in pixels (0 disables)

    def validate(self) -> None:
        _check(self.epochs >= 1 and self.steps >= 1, "train.epochs and train.steps must be >= 1")
        _check(self.lr > 0, f"train.lr must be > 0, got {self.lr}")
        _check(0 < self.eps <= 1, f"train.eps {self.eps} is outside (0, 1]; eps is on the [0,1] scale (8/255)")


@dataclass
class SearchConfig:
    method: str = "wsr"             # wsr (Algorithm 1: AN-Estimator + EWSS) | naive (PGD at every strength)
    init_channels: int = 8          # super-network C (official search: 16)
    layers: int = 5                 # super-network cells (official search: 8)
    n1: int = 3                     # strengths attacked by PGD (anchors); naive: all strengths
    n2: int = 3                     # strengths estimated by the AN-Estimator (0 for naive)
    strengths: list[float] = field(default_factory=lambda: [0.03, 0.045, 0.06, 0.075, 0.09, 0.105])
    objective_weights: list[float] = field(default_factory=lambda: [1, 2, 3, 5, 7, 10])  # beta_i, normalised
    alpha: float = 0.8              # weight of the natural loss in Eq. 10
    beta: float = 0.2               # weight of the robust losses in Eq. 10 (alpha + beta = 1)
    estimator: str = "a"            # AN-Estimator: wa | a | e | e_minus
    population: int = 4             # N: warm-up architecture population
    steps: int = 4                  # T: search steps after warm-up

    def validate(self) -> None:
        _check(self.method in ("wsr", "naive"), f"search.method must be wsr or naive, got {self.method!r}")
        _check(len(self.strengths) > 0, "search.strengths must not be empty")


@dataclass
class EvalConfig:
    eps: list[float] = field(default_factory=lambda: list(PAPER_SPECTRUM))  # Linf strengths on the [0,1] scale
    attacks: list[str] = field(default_factory=lambda: ["pgd"])  # fgsm | pgd | apgd-ce | autoattack | minnorm ...
    steps: int = 20                 # PGD steps (step size eps * 2.5 / steps)
    n_examples: int = 200           # test images evaluated
    threat_model: str = "Linf"      # Linf | L2

    def validate(self) -> None:
        _check(len(self.eps) > 0, "eval.eps must list at least one strength")
        for e in self.eps:
            _check(0 < float(e) <= 1, f"eval.eps {e} is outside (0, 1]; eps is on the [0,1] scale (8/255 = 0.031)")
        _check(self.steps >= 1 and self.n_examples >= 1, "eval.steps and eval.n_examples must be >= 1")
        _check(self.threat_model in ("Linf", "L2"), f"eval.threat_model must be Linf or L2, got {self.threat_model}")


@dataclass
class ExperimentConfig:
    name: str = "experiment"        # run name, used in logs and leaderboard entries
    seed: int = 0                   # master seed: data splits, initialisation, sampling
    device: str = "auto"            # auto (cuda when available) | cpu | cuda | cuda:N
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    search: SearchConfig = field(default_factory=SearchConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    def validate(self) -> None:
        _check(self.device == "auto" or self.device == "cpu" or self.device.startswith("cuda"),
               f"device must be auto, cpu or cuda[:N], got {self.device!r}")
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


def _build(cls: type, raw: dict[str, Any], prefix: str = "") -> Any:
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(raw) - set(names))
    if unknown:
        raise ConfigError(f"unknown config key {prefix + unknown[0]!r}; known keys here: {', '.join(names)}")
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


def resolve_device(name: str = "auto") -> str:
    """``auto`` -> ``cuda`` when available, else ``cpu``."""
    if name != "auto":
        return name
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"
