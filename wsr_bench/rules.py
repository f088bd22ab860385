"""Names and invariants that the configs and the objects built from them share, written once and torch-free.

``config.py`` checks a YAML file against these rules, and the objects the stages build (``TrainRecipe``,
``RobustObjective``, ``load_dataset``) check their own arguments against the same functions, so a rule and its
message live in one place. Each check takes the error class to raise (``ConfigError`` from the config,
``ObjectiveError`` from the objective, ``DataError`` from the data loader) and says which names its message uses:
the config's keys (``section="train"`` -> ``train.eps``) or the object's own fields.

Nothing here imports torch (or the modules that do): ``wsr_bench.config``, and through it ``wsr-bench --help`` and
the leaderboard tools, must load without it. The eps range rule is :func:`wsr_bench.epsilon.check_eps`.

The evaluation's names (attacks, threat models, sweeps) are normalised here too: ``normalize_*`` fold case and
aliases into the canonical name, for ``EvalConfig`` and ``SpectrumOptions`` (and ``wsr_bench.attacks.factory``)
alike, and :func:`check_warm_start` holds the rule both apply to a warm-started sweep. A setting has one name in the
CLI, the config and the Python API (``attack``, ``threat_model``, ``attack_all``, ...); the messages write it as the
caller's user does (:data:`Naming`: ``threat_model``, ``eval.threat_model`` or ``--threat-model``).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence

from wsr_bench.epsilon import MAX_EPS, check_eps

__all__ = ["AA_VERSIONS", "AMP_MODES", "ATTACK_NAMES", "DATASETS", "DEFAULT_SWEEP", "ESTIMATORS", "GENOTYPE_OF",
           "GENOTYPE_RULES", "IMAGENET_MODELS", "L1_ATTACKS", "L1_MIN_EPS", "MAX_EPS", "MEMORY_FORMATS",
           "NON_DARTS_MODELS", "NORMS", "OBJECTIVE_FORMS", "PUBLISHED_ARCHITECTURES_FILE", "RECIPES", "SEARCH_METHODS",
           "STRENGTH_FEEDS", "SWEEPS", "VLE_OUTPUTS", "check_choice", "check_dataset", "check_objective",
           "check_recipe", "check_threat_model", "check_warm_start", "normalize_aa_version", "normalize_attack_name",
           "normalize_attacks", "normalize_norm", "normalize_sweep", "published_architectures", "Naming", "config_key",
           "flag", "keyword"]

#: Datasets ``wsr_bench.data.load_dataset`` can load (``data.name``).
DATASETS: tuple[str, ...] = ("digits", "synthetic", "cifar10", "cifar100", "svhn", "fashion_mnist")

#: The published architectures of the DARTS space, in one place: ``data_files/genotypes.json`` lists each timm model
#: (``models``: its name, its genotype, its description, and an ImageNet-shape description when it also has one) beside
#: the genotypes themselves; :mod:`wsr_bench.models.wsrnet` registers every listed model with timm from it. Adding an
#: architecture is adding its genotype and its ``models`` line there.
PUBLISHED_ARCHITECTURES_FILE = "data_files/genotypes.json"


def published_architectures() -> list[dict[str, str]]:
    """The ``models`` list of :data:`PUBLISHED_ARCHITECTURES_FILE` (read now; torch-free)."""
    from importlib import resources

    raw = json.loads(resources.files("wsr_bench").joinpath(PUBLISHED_ARCHITECTURES_FILE).read_text())
    return list(raw["models"])


#: timm model name -> shipped genotype name (WsrNet-Robust is WsrNet-Basic retrained with other hyper-parameters).
GENOTYPE_OF: dict[str, str] = {m["name"]: m["genotype"] for m in published_architectures()}
#: models also registered in an ImageNet shape (``<name>_imagenet``).
IMAGENET_MODELS: tuple[str, ...] = tuple(m["name"] for m in published_architectures() if "imagenet_description" in m)
#: registered timm models outside the DARTS space: no genotype, sized by ``width`` (not ``init_channels``/``layers``).
NON_DARTS_MODELS: tuple[str, ...] = ("preact_resnet18",)

#: adversarial training recipes (``train.recipe``; ``wsr_bench.train.recipes`` says what each does).
RECIPES: tuple[str, ...] = ("pgd", "trades", "fgsm_rs", "multi", "clean")

#: tensor layouts of networks and their 4-D inputs (top-level ``memory_format``, ``--memory-format``;
#: :func:`wsr_bench.infra.runtime.set_memory_format`): channels_last (NHWC, about 1.8x faster on CPU and CUDA)
#: | contiguous.
MEMORY_FORMATS: tuple[str, ...] = ("channels_last", "contiguous")
#: mixed precision of training (``train.amp``, ``search.amp``; :func:`wsr_bench.infra.runtime.amp_autocast`): none
#: (float32) | bf16 (bfloat16 autocast of the training forward passes and the training attacks; evaluation stays
#: float32).
AMP_MODES: tuple[str, ...] = ("none", "bf16")

#: forms of the robust search objective (``search.objective_form``; ``wsr_bench.search.objective``).
OBJECTIVE_FORMS: tuple[str, ...] = ("squared", "linear")

#: search algorithms (``search.method``; ``wsr_bench.search.wsr_nas.run_search`` runs them).
SEARCH_METHODS: tuple[str, ...] = ("wsr", "naive")
#: AN-Estimators (``search.estimator``, which also takes ``none``; ``wsr_bench.estimators.noise`` builds them).
ESTIMATORS: tuple[str, ...] = ("wa", "a", "e", "e_minus")
#: the strength an AN-Estimator's encoders are fed (``search.ane.strength_feed``): the noise's L2 RMS or the Linf eps.
STRENGTH_FEEDS: tuple[str, ...] = ("l2", "linf")
#: output heads of the validation-loss estimator (``search.vle.output``; ``wsr_bench.estimators.val_loss``).
VLE_OUTPUTS: tuple[str, ...] = ("bounded", "standardised")
#: how a genotype is read from the architecture weights (``search.genotype_rule``): raw A or softmax(A) per edge.
GENOTYPE_RULES: tuple[str, ...] = ("alpha", "softmax")

#: canonical attack names (``eval.attack``, ``wsr-bench eval --attack``; ``wsr_bench.attacks.factory`` builds them).
ATTACK_NAMES: tuple[str, ...] = (
    "fgsm", "pgd", "apgd-ce", "apgd-t", "fab-t", "square", "autoattack", "transfer", "minnorm",
)
_ATTACK_ALIASES = {
    "pgd-linf": "pgd", "pgdl2": "pgd", "pgd-l2": "pgd", "apgd": "apgd-ce", "apgdce": "apgd-ce", "apgdt": "apgd-t",
    "apgd-dlr-t": "apgd-t", "fab": "fab-t", "fabt": "fab-t", "aa": "autoattack", "auto-attack": "autoattack",
    "min-norm": "minnorm", "fab-minnorm": "minnorm", "black-box": "transfer", "fgm": "fgsm",
}
#: threat models, i.e. the norm of the perturbation ball (``eval.threat_model``, ``--threat-model``).
NORMS: tuple[str, ...] = ("Linf", "L2", "L1")
_NORM_ALIASES = {"linf": "Linf", "inf": "Linf", "l-inf": "Linf", "l2": "L2", "2": "L2", "l1": "L1", "1": "L1"}
#: attacks with an L1 version (pyautoattack's APGD, APGD-T, FAB and Square, hence AutoAttack); torchattacks has no
#: eps-bounded L1 PGD or FGSM, so ``pgd``, ``fgsm`` and ``transfer`` (PGD on a surrogate) refuse L1.
L1_ATTACKS: tuple[str, ...] = ("apgd-ce", "apgd-t", "fab-t", "square", "autoattack", "minnorm")
#: (MAX_EPS, the largest strength each threat model accepts, is wsr_bench.epsilon's, re-exported here.)
#: an L1 spectrum whose largest strength is below this is on another scale (a Linf one such as 8/255, most likely):
#: an L1 budget sums |delta| over every pixel and channel (L1-APGD, Croce & Hein 2021, uses 12 on CIFAR-10).
L1_MIN_EPS = 1.0
#: AutoAttack's versions as pyautoattack spells them (``eval.aa_version``, ``--aa-version``): ``standard``
#: (APGD-CE, APGD-T, FAB-T, Square), ``plus`` (APGD-CE and APGD-DLR with 5 restarts, FAB with 5, Square, APGD-T,
#: FAB-T) and ``rand`` (APGD-CE and APGD-DLR with EOT over 20 forward passes, for randomised models). Its
#: ``custom`` is a list of attacks here: ``--attack apgd-ce,apgd-t,...`` (chained in Python: ``chain_attacks=True``).
AA_VERSIONS: tuple[str, ...] = ("standard", "plus", "rand")
#: How a spectrum evaluation walks the strengths (:mod:`wsr_bench.evaluate.sweeps` says what each assumes):
#: "upward" attacks a sample at every eps up to its break; "downward" and "bisect" screen every eps with a chain's
#: cheap first attack and run the whole chain (AutoAttack) about once per sample (``eval.sweep``, ``--sweep``).
SWEEPS: tuple[str, ...] = ("upward", "downward", "bisect")
#: The fastest sweep that stayed identical to per-eps AutoAttack in ``benchmarks/results/autoattack_sweep.md``.
DEFAULT_SWEEP = "downward"

#: the config spells two objective fields differently from ``RobustObjective``.
_OBJECTIVE_KEYS = {"weights": "objective_weights", "form": "objective_form"}

Error = type[ValueError]


#: How a shared check's message names a setting: the setting's one name (``threat_model``), as a Python keyword
#: (:func:`keyword`), a config key (:func:`config_key`, ``eval.threat_model``) or a ``wsr-bench eval`` flag
#: (:func:`flag`, ``--threat-model``). The name is the same in all three; only its punctuation differs.
Naming = Callable[[str], str]


def keyword(setting: str) -> str:
    """``setting`` as a Python keyword (the field name itself)."""
    return setting


def flag(setting: str) -> str:
    """``setting`` as a command-line flag: ``attack_all`` -> ``--attack-all``."""
    return "--" + setting.replace("_", "-")


def config_key(section: str) -> Naming:
    """Name settings as keys of the config section ``section``: ``config_key("eval")("attack")`` -> ``eval.attack``."""
    return lambda setting: f"{section}.{setting}"


def check_choice(value: str, choices: Sequence[str], key: str, *, error: Error = ValueError) -> str:
    """Refuse ``value`` unless it is one of ``choices``: ``"<key> must be one of a, b, got 'c'"``."""
    if value not in choices:
        raise error(f"{key} must be one of {', '.join(choices)}, got {value!r}")
    return value


def check_dataset(name: str, *, key: str = "name", error: Error = ValueError) -> str:
    """Refuse a dataset name ``load_dataset`` does not know; ``key`` is how the message names the setting."""
    if name not in DATASETS:
        raise error(f"unknown dataset {name!r}; {key} must be one of {', '.join(DATASETS)}")
    return name


def check_recipe(name: str, eps: float, steps: int, step_size: float | None, trades_beta: float,
                 multi_eps: Sequence[float], *, section: str | None = None, error: Error = ValueError) -> None:
    """The rules of an adversarial training recipe, for ``TrainConfig`` and ``TrainRecipe`` alike.

    ``eps`` lies in (0, 1] (``clean`` may take 0), ``steps`` is an integer >= 1, ``step_size`` is ``None`` or in
    (0, 1], ``trades_beta`` >= 0, and every ``multi_eps`` entry is a strength in (0, 1] (recipe ``multi`` needs one).

    Args:
        section: config section whose keys the messages name (``"train"`` -> ``train.eps``); ``None`` names the
            recipe's fields (``recipe eps``).
        error: the ``ValueError`` subclass to raise.
    """
    def key(field: str) -> str:
        return f"{section}.{field}" if section else f"recipe {field}"

    if name not in RECIPES:
        where = f"{section}.recipe=" if section else ""
        raise error(f"unknown training recipe {where}{name!r}; expected one of {', '.join(RECIPES)}")
    check_eps(eps, key("eps"), allow_zero=name == "clean", error=error)
    if int(steps) != steps or steps < 1:
        raise error(f"{key('steps')} must be an integer >= 1, got {steps}")
    if step_size is not None and not 0 < step_size <= 1:
        raise error(f"{key('step_size')} must be in (0, 1] or null (eps*2.5/steps), got {step_size}")
    if trades_beta < 0:
        raise error(f"{key('trades_beta')} must be >= 0, got {trades_beta}")
    if name == "multi" and not multi_eps:
        raise error(f"{key('multi_eps')} is empty: recipe multi needs at least one strength")
    for e in multi_eps:
        check_eps(e, f"{key('multi_eps')} entry", error=error)


def check_objective(nat_weight: float, robust_weight: float, weights: Sequence[float], form: str, *,
                    section: str | None = None, error: Error = ValueError) -> None:
    """The constraints of the robust search objective (paper Eq. 10), for ``SearchConfig`` and ``RobustObjective``.

    ``alpha, beta > 0`` with ``alpha + beta = 1`` (``nat_weight``, ``robust_weight``), at least one strength
    weight ``beta_i``, all finite and > 0 (they are normalised to sum to 1 afterwards), and a known ``form``.

    Args:
        section: config section whose keys the messages name (``"search"`` -> ``search.objective_weights``);
            ``None`` names ``RobustObjective``'s fields.
        error: the ``ValueError`` subclass to raise.
    """
    def key(field: str) -> str:
        return f"{section}.{_OBJECTIVE_KEYS.get(field, field)}" if section else field

    w = [float(v) for v in weights]
    if not w:
        raise error(f"{key('weights')} is empty: the objective needs at least one strength weight beta_i")
    if not all(math.isfinite(v) and v > 0 for v in w):
        raise error(f"{key('weights')}: the strength weights beta_i must all be > 0 (they are normalised to sum "
                    f"to 1), got {list(weights)}")
    nat, rob = key("nat_weight"), key("robust_weight")
    if not (nat_weight > 0 and robust_weight > 0):
        raise error(f"{nat} and {rob} must be > 0, got {nat_weight} and {robust_weight}")
    if abs(nat_weight + robust_weight - 1.0) > 1e-6:
        raise error(f"{nat} + {rob} must equal 1 (Eq. 10), got {nat_weight} + {robust_weight} = "
                    f"{nat_weight + robust_weight:g}")
    check_choice(form, OBJECTIVE_FORMS, key("form"), error=error)


def normalize_attack_name(name: str, *, key: str | None = None, error: Error = ValueError) -> str:
    """Canonical attack name (case, ``_`` and common aliases folded); an unknown name raises ``error``, naming the
    setting ``key`` when given (``"eval.attack entry must be one of ..."``)."""
    folded = str(name).strip().lower().replace("_", "-")
    return _canonical(name, _ATTACK_ALIASES.get(folded, folded), ATTACK_NAMES, "attack", key, error)


def normalize_attacks(attack: str | Sequence[str], *, key: str | None = None,
                      error: Error = ValueError) -> tuple[str, ...]:
    """Canonical attack names, in order, without repeats; comma lists (``"fgsm,pgd"``) are split."""
    names = [attack] if isinstance(attack, str) else list(attack)
    names = [n for part in names for n in str(part).split(",") if n.strip()]
    if not names:
        where = f" in {key}" if key else ""
        raise error(f"no attack given{where}: expected a name like 'pgd' or a list like ['fgsm', 'pgd']")
    entry = f"{key} entry" if key else None
    return tuple(dict.fromkeys(normalize_attack_name(n, key=entry, error=error) for n in names))


def normalize_norm(norm: str, *, key: str | None = None, error: Error = ValueError) -> str:
    """``"linf"``/``"Linf"``/``"inf"`` -> ``"Linf"``, ``"l2"``/``"2"`` -> ``"L2"``, ``"l1"``/``"1"`` -> ``"L1"``;
    anything else raises ``error``."""
    folded = str(norm).strip().lower()
    return _canonical(norm, _NORM_ALIASES.get(folded, folded), NORMS, "threat model", key, error)


def normalize_aa_version(version: str, *, key: str | None = None, error: Error = ValueError) -> str:
    """Canonical AutoAttack version (case and blanks folded); ``custom`` and unknown names raise a one-line ``error``
    (``custom`` is spelled as an attack list here)."""
    folded = str(version).strip().lower()
    if folded == "custom":
        raise error(f"{key or 'AutoAttack version'} 'custom' is an attack list here: give the attacks instead (e.g. "
                    "apgd-ce,apgd-t,fab-t,square; chained in Python with chain_attacks=True); versions: "
                    + ", ".join(AA_VERSIONS))
    return _canonical(version, folded, AA_VERSIONS, "AutoAttack version", key, error)


def check_threat_model(attacks: Sequence[str], threat_model: str, eps: Sequence[float], *,
                       aa_version: str = "standard", name: Naming = keyword, error: Error = ValueError) -> None:
    """The rules that tie the attacks, the threat model and the AutoAttack version together, for ``EvalConfig`` and
    ``SpectrumOptions`` alike (canonical names expected); ``name`` says how the messages name the settings.

    * L1 only with attacks that have an L1 version (:data:`L1_ATTACKS`), and with strengths on the L1 scale: a
      spectrum whose largest eps is below :data:`L1_MIN_EPS` is refused as a Linf one given by mistake.
    * An ``aa_version`` other than ``standard`` configures AutoAttack, so it needs ``autoattack`` among the attacks.
    """
    if threat_model == "L1":
        bad = [a for a in attacks if a not in L1_ATTACKS]
        if bad:
            raise error(f"{name('attack')} {bad[0]!r} has no L1 version (torchattacks has no L1 PGD or FGSM): with "
                        f"{name('threat_model')} 'L1' use {', '.join(L1_ATTACKS)}")
        if eps and max(eps) < L1_MIN_EPS:
            raise error(f"{name('eps')} {', '.join(f'{e:g}' for e in eps)} is on another scale than "
                        f"{name('threat_model')} 'L1': an L1 budget sums |delta| over every pixel and channel (L1-APGD "
                        f"uses 12 on CIFAR-10); strengths like 8/255 = 0.031 are Linf budgets: give L1 budgets (e.g. "
                        f"2,4,8,12) or {name('threat_model')} 'Linf'")
    if aa_version != "standard" and "autoattack" not in attacks:
        raise error(f"{name('aa_version')} {aa_version!r} configures AutoAttack, but {name('attack')} is "
                    f"{list(attacks)}: add autoattack to {name('attack')} (or drop {name('aa_version')})")


def normalize_sweep(name: str, *, key: str | None = None, error: Error = ValueError) -> str:
    """Canonical sweep name (case and surrounding blanks folded); an unknown name raises a one-line ``error``."""
    folded = str(name).strip().lower()
    return _canonical(name, folded, SWEEPS, "sweep", key, error)


def _canonical(value: str, name: str, choices: Sequence[str], noun: str, key: str | None, error: Error) -> str:
    """``name`` (``value`` folded) if it is one of ``choices``; else an error naming the setting ``key`` as
    :func:`check_choice` does (``value`` is no choice either: folding keeps a canonical name), or the ``noun``."""
    if name in choices:
        return name
    if key is not None:
        check_choice(value, choices, key, error=error)
    raise error(f"unknown {noun} {value!r}: expected one of {', '.join(choices)}")


def check_warm_start(steps: int, *, attacks: Sequence[str], threat_model: str, attack_all: bool | None = None,
                     restart_ratio: float | None = None, name: Naming = keyword, error: Error = ValueError) -> None:
    """The rules of a warm-started PGD sweep, for ``EvalConfig`` and ``SpectrumOptions`` alike.

    The survivors of each eps continue Linf PGD from their previous iterate for ``steps`` >= 1 iterations
    (``warm_start_steps``; unset means cold starts and is not checked here) and restart cold when their margin fell
    below ``restart_ratio`` in [0, 1]; so it needs "pgd" among the canonical ``attacks``, threat model "Linf" and
    ``attack_all`` off.

    Args:
        attack_all, restart_ratio: ``None`` where the caller has no such setting (the config).
        name: how the messages name the settings.
        error: the ``ValueError`` subclass to raise.
    """
    if steps < 1:
        raise error(f"{name('warm_start_steps')} must be >= 1 (leave it unset for cold starts), got {steps}")
    if restart_ratio is not None and not 0 <= restart_ratio <= 1:
        raise error(f"{name('warm_restart_ratio')} must be in [0, 1] (0: never restart cold), got {restart_ratio}")
    if threat_model != "Linf" or attack_all or "pgd" not in attacks:
        off = "" if attack_all is None else f" and {name('attack_all')} off"
        got = "" if attack_all is None else f", {name('attack_all')}={attack_all}"
        raise error(f"{name('warm_start_steps')} continues Linf PGD from each survivor's previous iterate: it needs "
                    f"pgd among {name('attack')}, {name('threat_model')} 'Linf'{off} (got {name('attack')}="
                    f"{list(attacks)}, {name('threat_model')}={threat_model!r}{got})")
