"""Shared rules and run-time helpers: one name list and one check per invariant, used by the config and by the
objects built from it; one device resolution, one seeding, one dataset-from-config."""

import random

import numpy as np
import pytest
import torch

import wsr_bench.data as data
import wsr_bench.models.wsrnet as wsrnet
from wsr_bench import rules
from wsr_bench.config import ConfigError, TrainConfig, load_config
from wsr_bench.epsilon import check_eps
from wsr_bench.infra.runtime import resolve_device, seed_everything
from wsr_bench.search import ObjectiveError, RobustObjective
from wsr_bench.train import TrainRecipe


def test_name_lists_exist_once():
    assert data.DATASETS is rules.DATASETS and TrainConfig.RECIPES is rules.RECIPES
    assert wsrnet.GENOTYPE_OF is rules.GENOTYPE_OF and wsrnet.IMAGENET_MODELS is rules.IMAGENET_MODELS


def test_search_and_evaluation_name_lists_exist_once():
    from wsr_bench.attacks.factory import ATTACK_NAMES, NORMS
    from wsr_bench.config import SearchConfig
    from wsr_bench.estimators.noise import ESTIMATORS
    from wsr_bench.estimators.val_loss import ValLossEstimator

    choices = SearchConfig.CHOICES
    assert tuple(ESTIMATORS) == rules.ESTIMATORS and choices["estimator"] == (*rules.ESTIMATORS, "none")
    assert choices["ane.strength_feed"] is rules.STRENGTH_FEEDS and choices["genotype_rule"] is rules.GENOTYPE_RULES
    assert choices["vle.output"] is rules.VLE_OUTPUTS is ValLossEstimator.OUTPUTS
    assert choices["method"] is rules.SEARCH_METHODS
    assert ATTACK_NAMES is rules.ATTACK_NAMES and NORMS is rules.NORMS


@pytest.mark.parametrize(("overrides", "kwargs", "config_message", "options_message"), [
    (["eval.warm_start_steps=0"], {"warm_start_steps": 0}, "eval.warm_start_steps must be >= 1",
     "warm_start_steps must be >= 1"),
    (["eval.warm_start_steps=2", "eval.threat_model=L2"], {"warm_start_steps": 2, "threat_model": "L2", "eps": [0.5]},
     "it needs pgd among eval.attack, eval.threat_model 'Linf'",
     "it needs pgd among attack, threat_model 'Linf' and attack_all off"),
    (["eval.attack=[pgdd]"], {"attack": "pgdd"}, "eval.attack entry must be one of fgsm, pgd",
     "unknown attack 'pgdd': expected one of fgsm, pgd"),
    (["eval.threat_model=L3"], {"threat_model": "L3"}, "eval.threat_model must be one of Linf, L2, L1, got 'L3'",
     "unknown threat model 'L3'"),
])
def test_config_and_spectrum_options_share_the_evaluation_rules(overrides, kwargs, config_message, options_message):
    from wsr_bench.evaluate.options import SpectrumOptions

    with pytest.raises(ConfigError, match=config_message):
        load_config(None, overrides)
    with pytest.raises(ValueError, match=options_message):
        SpectrumOptions(**kwargs)


def test_the_config_spells_evaluation_names_as_the_options_do():
    from wsr_bench.evaluate.options import SpectrumOptions

    cfg = load_config(None, ["eval.attack=[PGD, AA, pgd]", "eval.threat_model=linf", "eval.sweep=Bisect"])
    assert (cfg.eval.attack, cfg.eval.threat_model, cfg.eval.sweep) == (["pgd", "autoattack"], "Linf", "bisect")
    options = SpectrumOptions.from_config(cfg)
    assert (list(options.attack), options.threat_model, options.sweep) == (cfg.eval.attack, "Linf", "bisect")


def test_one_spelling_per_evaluation_setting_in_the_cli_the_config_and_the_api():
    """Every ``wsr-bench eval`` setting flag is ``--`` plus a SpectrumOptions field (dashes for underscores), the
    ``eval`` section's keys are fields too, and an old config key is a one-line error naming its new one."""
    import argparse
    import dataclasses

    from wsr_bench.cli import build_parser
    from wsr_bench.config import EvalConfig
    from wsr_bench.evaluate.options import SpectrumOptions

    fields = {f.name for f in dataclasses.fields(SpectrumOptions)}
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    flags = {o for a in sub.choices["eval"]._actions for o in a.option_strings if o.startswith("--")}
    for name in ("eps", "attack", "threat_model", "aa_version", "steps", "batch_size", "seed", "attack_all", "sweep",
                 "warm_start_steps", "resume"):
        assert name in fields and "--" + name.replace("_", "-") in flags, name
    assert {f.name for f in dataclasses.fields(EvalConfig)} - {"n_examples"} <= fields
    for old, new in (("attacks", "attack"),):
        with pytest.raises(ConfigError) as err:
            load_config(None, [f"eval.{old}=[pgd]"])
        assert str(err.value) == f"config key 'eval.{old}' was renamed 'eval.{new}'"
    assert not hasattr(rules, "Wording")


def test_check_eps_range_and_hint():
    assert check_eps(0.03, "x") == 0.03 and check_eps(0, "x", allow_zero=True) == 0.0
    with pytest.raises(ValueError, match=r"x 0 is outside \(0, 1\]"):
        check_eps(0, "x")
    with pytest.raises(ValueError, match="x nan is outside"):
        check_eps(float("nan"), "x", allow_zero=True)
    with pytest.raises(ConfigError, match=r"x 8 is outside .*did you mean 8/255 \(= 0.0314\)\?"):
        check_eps(8, "x", error=ConfigError)


@pytest.mark.parametrize(("overrides", "kwargs", "message"), [
    (["train.eps=8"], {"eps": 8}, "eps 8 is outside .*did you mean 8/255"),
    (["train.steps=0"], {"steps": 0}, "steps must be an integer >= 1, got 0"),
    (["train.step_size=2"], {"step_size": 2}, r"step_size must be in \(0, 1\] or null"),
    (["train.trades_beta=-1"], {"trades_beta": -1}, "trades_beta must be >= 0"),
    (["train.multi_eps=[0.03, 2]"], {"multi_eps": (0.03, 2)}, "multi_eps entry 2 is outside"),
])
def test_config_and_recipe_share_the_recipe_rules(overrides, kwargs, message):
    with pytest.raises(ConfigError, match="train." + message):
        load_config(None, overrides)
    with pytest.raises(ValueError, match="recipe " + message):
        TrainRecipe(**kwargs)


def test_clean_recipe_may_have_zero_eps_everywhere():
    assert load_config(None, ["train.recipe=clean", "train.eps=0"]).train.eps == 0
    assert TrainRecipe(name="clean", eps=0).eps == 0


@pytest.mark.parametrize(("overrides", "kwargs", "message"), [
    (["search.nat_weight=0.7"], {"nat_weight": 0.7}, r"nat_weight \+ \S*robust_weight must equal 1 \(Eq. 10\)"),
    (["search.objective_weights=[1, 2, 3, 5, 7, .inf]"], {"weights": (1, float("inf"))}, "beta_i must all be > 0"),
    (["search.objective_form=cubic"], {"form": "cubic"}, "must be one of squared, linear, got 'cubic'"),
])
def test_config_and_objective_share_eq10s_rules(overrides, kwargs, message):
    with pytest.raises(ConfigError, match=message):
        load_config(None, overrides)
    with pytest.raises(ObjectiveError, match=message):
        RobustObjective(**kwargs)


def test_dataset_names_are_checked_by_one_rule():
    with pytest.raises(ConfigError, match="unknown dataset 'mnist'; data.name must be one of digits"):
        load_config(None, ["data.name=mnist"])
    with pytest.raises(data.DataError, match="unknown dataset 'mnist'; name must be one of digits"):
        data.load_dataset("mnist")


def test_load_splits_is_load_dataset_with_the_config_arguments():
    cfg = load_config(None, ["data.name=synthetic", "data.image_size=8", "data.limit=10", "seed=3"])
    got = data.load_splits(cfg.data, cfg.seed)
    want = data.load_dataset("synthetic", image_size=8, seed=3, limit=10)
    for split in ("train_t", "train_v", "test"):
        x, y = data.as_tensors(getattr(got, split))
        x2, y2 = data.as_tensors(getattr(want, split))
        assert torch.equal(x, x2) and torch.equal(y, y2)


def test_resolve_device():
    assert resolve_device("cpu") == "cpu" and resolve_device("cuda:1") == "cuda:1"
    assert resolve_device() == ("cuda" if torch.cuda.is_available() else "cpu")


def test_seed_everything_seeds_python_numpy_and_torch():
    seed_everything(5)
    drawn = (random.random(), np.random.rand(), torch.rand(1).item())
    random.seed(5)
    np.random.seed(5)
    torch.manual_seed(5)
    assert drawn == (random.random(), np.random.rand(), torch.rand(1).item())


@pytest.mark.parametrize("old,new", [("search.steps", "search.search_steps"), ("search.alpha", "search.nat_weight")])
def test_a_renamed_config_key_names_its_new_name(old, new):
    from wsr_bench.config import ConfigError, load_config

    with pytest.raises(ConfigError, match=f"config key '{old}' was renamed '{new}'"):
        load_config("configs/demo.yaml", [f"{old}=1"])


@pytest.mark.parametrize("old,new", [("search.ane_batch", "search.ane.batch"),
                                     ("search.strength_feed", "search.ane.strength_feed"),
                                     ("search.vle_warmup_passes", "search.vle.warmup_passes"),
                                     ("search.measure_draws", "search.vle.measure_draws"),
                                     ("search.arch_lr", "search.arch.lr"),
                                     ("search.weight_lr_min", "search.weights.lr_min"),
                                     ("search.weight_decay", "search.weights.weight_decay"),
                                     ("search.grad_clip", "search.weights.grad_clip")])
def test_a_flat_search_key_names_its_section(old, new):
    """The search section's ane / vle / arch / weights settings were flat keys (search.ane_batch); each old key is
    an error naming its new place, from --set and from a YAML file."""
    from wsr_bench.config import ConfigError, config_from_dict, load_config

    with pytest.raises(ConfigError, match=f"^config key '{old}' was renamed '{new}'$"):
        load_config("configs/demo.yaml", [f"{old}=1"])
    with pytest.raises(ConfigError, match=f"^config key '{old}' was renamed '{new}'$"):
        config_from_dict({"search": {old.split(".", 1)[1]: 1}})


def test_every_flat_search_key_has_a_place_and_every_section_field_an_old_key():
    """SEARCH_SECTION_KEYS maps each old flat key to a field that exists, and covers every section field."""
    import dataclasses

    from wsr_bench.config import SEARCH_SECTION_KEYS, SearchConfig

    sections = {f.name: f.default_factory for f in dataclasses.fields(SearchConfig) if dataclasses.is_dataclass(
        f.default_factory)}
    assert set(sections) == {"ane", "vle", "arch", "weights"}
    fields = {(s, f.name) for s, cls in sections.items() for f in dataclasses.fields(cls)}
    assert set(SEARCH_SECTION_KEYS.values()) == fields and len(SEARCH_SECTION_KEYS) == len(fields)


def test_an_old_search_key_on_the_command_line_is_one_line(tmp_path, capsys):
    from wsr_bench.cli import main

    old = tmp_path / "old.yaml"
    old.write_text("search:\n  vle_passes: 2\n")
    assert main(["search", str(old), "--out", str(tmp_path / "a")]) == 2
    assert capsys.readouterr().err == "error: config key 'search.vle_passes' was renamed 'search.vle.passes'\n"
    assert main(["search", "configs/demo.yaml", "--out", str(tmp_path / "b"), "--set", "search.ane_batch=4"]) == 2
    assert capsys.readouterr().err == "error: config key 'search.ane_batch' was renamed 'search.ane.batch'\n"
