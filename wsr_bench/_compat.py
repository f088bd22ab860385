"""Compatibility bridge: the original ``autoattack`` API on top of PyPI's ``pyautoattack``.

RobustBench 1.1.1 does ``from autoattack import AutoAttack`` / ``from autoattack.state import EvaluationState``
and calls ``AutoAttack(model, norm=, eps=, version=, device=, log_path=)`` and
``run_standard_evaluation(x, y, bs=, state_path=)``. PyPI only ships that code as ``pyautoattack``, whose
constructor takes keyword-only ``attacks=`` and whose ``run_standard_evaluation`` takes ``batch_size=`` and
returns ``(x_adv, y_adv)``. Importing :mod:`wsr_bench` calls :func:`install`, which appends a meta-path finder
that serves ``autoattack`` (and ``autoattack.<submodule>``) only when no real ``autoattack`` is importable: the
finder sits last on ``sys.meta_path``, so an installed ``autoattack`` always wins.

Nothing here imports torch or pyautoattack until ``autoattack`` is actually imported, so ``import wsr_bench``
stays light. Known upstream quirks, identical with the original ``autoattack`` and left as they are: resuming from
a ``state_path`` fails (the attack set is saved with ``str()`` and read back as a string), and
``robustbench.eval.benchmark(..., aa_state_path=...)`` calls ``.mean()`` on the state's boolean flags. Without a
``state_path`` everything works, which is how RobustBench's benchmark runs by default.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

logger = logging.getLogger(__name__)

_BRIDGED = "autoattack"
_BACKEND = "pyautoattack"
_OWN_ATTRS = ("_aa", "log_path", "is_tf_model")


class AutoAttack:
    """AutoAttack with the original ``fra31/auto-attack`` signature, delegating to ``pyautoattack.AutoAttack``.

    Args:
        model: classifier on [0,1] inputs returning logits.
        norm: "Linf", "L2" or "L1".
        eps: perturbation budget.
        seed: attack seed (None = time-based, as upstream).
        verbose: log progress (to the ``auto-attack`` logger and ``log_path``).
        attacks_to_run: attacks for ``version="custom"`` (e.g. ``["apgd-ce", "square"]``).
        version: "standard", "plus", "rand" or "custom".
        is_tf_model: TensorFlow models are not supported by this bridge.
        device: device the attacks run on (default: CUDA when available, else CPU; upstream always said "cuda").
        log_path: file that receives the attack log (the original wrote its prints there).

    Attributes such as ``apgd``, ``fab``, ``square``, ``apgd_targeted`` and ``attacks_to_run`` are those of the
    wrapped pyautoattack object, so upstream recipes like ``adversary.apgd.n_restarts = 1`` keep working.
    """

    def __init__(self, model: Any, norm: str = "Linf", eps: float = 0.3, seed: int | None = None,
                 verbose: bool = True, attacks_to_run: Sequence[str] = (), version: str = "standard",
                 is_tf_model: bool = False, device: Any = None, log_path: str | None = None) -> None:
        if is_tf_model:
            raise ValueError("TensorFlow models are not supported by the pyautoattack bridge (is_tf_model=True)")
        from pyautoattack import AutoAttack as _PyAutoAttack

        from wsr_bench.infra.runtime import (
            resolve_device,  # here, not at the top: importing the bridge stays torch-free
        )

        if device is None:  # upstream defaults to "cuda"; we pick it only when there is one
            device = resolve_device("auto")
        attacks = list(attacks_to_run) or None
        object.__setattr__(self, "_aa", _PyAutoAttack(model, attacks=attacks, device=device, eps=eps, norm=norm,
                                                      seed=seed, version=version))
        object.__setattr__(self, "log_path", log_path)
        object.__setattr__(self, "is_tf_model", False)
        self._aa.verbose = verbose

    def __getattr__(self, name: str) -> Any:
        return getattr(object.__getattribute__(self, "_aa"), name)

    def __setattr__(self, name: str, value: Any) -> None:
        if name in _OWN_ATTRS:
            object.__setattr__(self, name, value)
        else:
            setattr(self._aa, name, value)

    def run_standard_evaluation(self, x_orig: Any, y_orig: Any, bs: int = 250, return_labels: bool = False,
                                state_path: str | Path | None = None) -> Any:
        """Run the attack suite; returns ``x_adv`` (and ``y_adv`` when ``return_labels``), as upstream."""
        state = Path(state_path) if state_path is not None else None
        with self._logging_to_file():
            x_adv, y_adv = self._aa.run_standard_evaluation(x_orig, y_orig, batch_size=bs, state_path=state)
        return (x_adv, y_adv) if return_labels else x_adv

    def run_standard_evaluation_individual(self, x_orig: Any, y_orig: Any, bs: int = 250,
                                           return_labels: bool = False) -> dict[str, Any]:
        """Run each attack on its own; ``{attack: x_adv}`` (or ``(x_adv, y_adv)`` when ``return_labels``)."""
        with self._logging_to_file():
            adv = self._aa.run_standard_evaluation_individual(x_orig, y_orig, batch_size=bs)
        return adv if return_labels else {k: v[0] for k, v in adv.items()}

    def clean_accuracy(self, x_orig: Any, y_orig: Any, bs: int = 250) -> float:
        """Clean accuracy of the model on ``(x_orig, y_orig)``."""
        return self._aa.clean_accuracy(x_orig, y_orig, bs=bs)

    def set_version(self, version: str = "standard") -> None:
        """Switch to a preset ("standard", "plus", "rand") as the original ``set_version`` did."""
        self._aa.version = version
        self._aa._set_version(version)

    def _logging_to_file(self) -> _FileLog:
        return _FileLog(self.log_path, self._aa.logger, bool(self._aa.verbose))


class _FileLog:
    """Context manager that copies the ``auto-attack`` logger into ``log_path`` while an evaluation runs."""

    def __init__(self, path: str | None, log: logging.Logger, verbose: bool) -> None:
        self.path, self.log, self.verbose = path, log, verbose
        self.handler: logging.Handler | None = None
        self.level = log.level

    def __enter__(self) -> _FileLog:
        if self.path is not None and self.verbose:
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            self.handler = logging.FileHandler(self.path, mode="a")
            self.handler.setFormatter(logging.Formatter("%(message)s"))
            self.log.addHandler(self.handler)
            self.log.setLevel(logging.DEBUG)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.handler is not None:
            self.log.removeHandler(self.handler)
            self.handler.close()
            self.log.setLevel(self.level)


def _load_state_module(module: ModuleType) -> None:
    from pyautoattack.state import EvaluationState

    module.EvaluationState = EvaluationState


def _load_package(module: ModuleType) -> None:
    backend = importlib.import_module(_BACKEND)
    module.AutoAttack = AutoAttack
    module.__version__ = getattr(backend, "__version__", "unknown")
    module.__doc__ = f"autoattack API bridged onto {_BACKEND} by wsr_bench._compat"


class _BridgeLoader(importlib.abc.Loader):
    """Builds ``autoattack`` from this module and ``autoattack.<x>`` from ``pyautoattack.<x>``."""

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        sub = spec.name.partition(".")[2]
        if sub and sub not in ("state", "autoattack"):
            return importlib.import_module(f"{_BACKEND}.{sub}")  # plain alias, e.g. autoattack.autopgd_base
        return None

    def exec_module(self, module: ModuleType) -> None:
        sub = module.__name__.partition(".")[2]
        if sub == "state":
            _load_state_module(module)
        elif sub in ("", "autoattack"):
            _load_package(module)


class _BridgeFinder(importlib.abc.MetaPathFinder):
    """Serves ``autoattack`` from the bridge when no real package answered first."""

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> importlib.machinery.ModuleSpec | None:
        if fullname != _BRIDGED and not fullname.startswith(_BRIDGED + "."):
            return None
        if importlib.util.find_spec(_BACKEND) is None:
            return None
        is_pkg = fullname == _BRIDGED
        return importlib.machinery.ModuleSpec(fullname, _BridgeLoader(), is_package=is_pkg)


def install() -> bool:
    """Append the ``autoattack`` bridge finder to ``sys.meta_path`` (idempotent).

    Returns:
        True when the finder is installed (it stays inert while a real ``autoattack`` is importable).
    """
    if any(isinstance(f, _BridgeFinder) for f in sys.meta_path):
        return True
    sys.meta_path.append(_BridgeFinder())
    return True


def is_bridged() -> bool:
    """True when the imported ``autoattack`` is this bridge rather than a real installation."""
    mod = sys.modules.get(_BRIDGED) or importlib.import_module(_BRIDGED)
    return getattr(mod, "AutoAttack", None) is AutoAttack


install()
