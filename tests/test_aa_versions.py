"""AutoAttack's whole menu over the spectrum: ``--aa-version plus|rand`` and the L1 threat model.

Each new version and norm runs through ``evaluate_spectrum``'s downward sweep and gives, image by image, the verdicts
of pyautoattack's ``AutoAttack`` run separately at every eps (with the image-keyed starts the sweeps use); ``rand``
(EOT over 20 passes) breaks images of a randomised model that a single-sample AutoAttack leaves standing, and the
sanity check names ``--aa-version rand`` for it; bad input is a one-line error that writes nothing; the config
round-trips; leaderboard entries record the version, and RobustBench's ``unreliable`` flag shows.

AutoAttack runs with a small budget here (Square 100 queries, 2 target classes, at most 2 restarts), set through
pyautoattack's own attributes for the per-eps baseline and the sweeps alike, so the comparison stays exact and fast.
"""

from __future__ import annotations

import copy
import json

import pytest
import torch
import torch.nn as nn
from _wsr_eval_fixtures import digits, one_thread, small_autoattack_budget, trained_model  # noqa: F401

from wsr_bench.attacks.factory import build_attack, perturbation_norm
from wsr_bench.cli import main
from wsr_bench.config import ConfigError, config_from_dict, config_to_dict, load_config
from wsr_bench.evaluate import SpectrumOptions, evaluate_spectrum
from wsr_bench.evaluate.entry import result_to_entry
from wsr_bench.evaluate.sanity import run_sanity_checks
from wsr_bench.leaderboard import LeaderboardEntry


@pytest.fixture(scope="module")
def small_autoattack():
    """Every ``AutoAttack`` of this module gets the small budget, whatever its version."""
    with small_autoattack_budget(2):
        yield


@pytest.fixture(scope="module")
def setup(small_autoattack):
    torch.set_num_threads(1)
    _, _, x, y = digits()
    return _own(trained_model(adv_eps=0.05)), x[:12], y[:12]


def _own(model: nn.Module) -> nn.Module:
    """A copy of a cached model: ``evaluate_spectrum`` puts its model in channels_last in place, and the other test
    modules share the cached one (torchattacks' L2 PGD cannot take channels_last gradients)."""
    return copy.deepcopy(model)


def _per_eps(model, x, y, eps, norm, version):
    """pyautoattack's AutoAttack at each eps on all images (image-keyed starts): per-sample correctness (n, K)."""
    from pyautoattack import AutoAttack

    from wsr_bench.attacks.starts import key_autoattack_starts

    correct = []
    for e in eps:
        adversary = key_autoattack_starts(AutoAttack(model, device="cpu", eps=e, norm=norm, seed=0, version=version))
        adversary.verbose = False
        x_adv, _ = adversary.run_standard_evaluation(x, y, batch_size=len(x))
        assert float(perturbation_norm(x_adv - x, norm).max()) <= e + 1e-5
        with torch.no_grad():
            correct.append(model(x_adv).argmax(1) == y)
    return torch.stack(correct, 1)


def _correct(result, eps) -> torch.Tensor:
    return result.break_eps[:, None] > torch.tensor(eps, dtype=result.break_eps.dtype)[None, :]


@pytest.mark.slow
@pytest.mark.parametrize("version, norm, eps", [
    ("plus", "Linf", [0.05, 0.1, 0.2]),
    ("standard", "L1", [1.0, 2.0, 4.0]),
    ("plus", "L2", [0.5, 1.0, 2.0]),
])
def test_new_versions_and_l1_give_per_eps_autoattack_image_by_image(setup, version, norm, eps):
    model, x, y = setup
    result = evaluate_spectrum(model, x, y, eps=eps, attack="autoattack", aa_version=version, threat_model=norm,
                               device="cpu", batch_size=len(x))
    baseline = _per_eps(model, x, y, eps, norm, version)
    assert baseline[:, 0].sum() > baseline[:, -1].sum()  # a curve that falls: verdicts of both kinds to compare
    assert torch.equal(_correct(result, eps), baseline)
    assert result.threat_model == norm and result.settings["aa_version"] == version
    assert result.sweep == "downward" and "autoattack.screen" in result.passes_per_attack


def _random_sine_gradient() -> nn.Module:
    """The benchmark's randomised input layer (``autoattack_sweep.RandomSineGradient``): a fresh random sign per pixel
    and pass flips most pixels' gradient in a single pass while the output barely moves."""
    import importlib.util
    import sys
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "autoattack_sweep.py"
    spec = importlib.util.spec_from_file_location("autoattack_sweep_under_test", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module.RandomSineGradient()


@pytest.fixture(scope="module")
def randomised(small_autoattack):
    torch.set_num_threads(1)
    _, _, x, y = digits()
    return nn.Sequential(_random_sine_gradient(), _own(trained_model())).eval(), x[:16], y[:16]


@pytest.mark.slow
def test_rand_breaks_what_single_sample_autoattack_leaves_standing(randomised):
    model, x, y = randomised
    eps = [0.1, 0.2]
    single = evaluate_spectrum(model, x, y, eps=eps, attack="autoattack", device="cpu")
    eot = evaluate_spectrum(model, x, y, eps=eps, attack="autoattack", aa_version="rand", device="cpu")
    standing, broken = _correct(single, eps), ~_correct(eot, eps)
    assert int((standing & broken)[:, -1].sum()) >= 3  # images rand breaks at 0.2 that standard leaves standing
    assert eot.robust_accuracy[0.2] < single.robust_accuracy[0.2]
    assert eot.settings["aa_version"] == "rand" and set(eot.passes_per_attack) == {"clean", "autoattack.screen",
                                                                                    "autoattack"}


def test_randomised_model_is_named_and_rand_accepts_it(randomised):
    model, x, y = randomised
    kw = dict(eps=[0.1], n_examples=8, steps=2, square_queries=5)
    check = {v: next(c for c in run_sanity_checks(model, x, y, attack=("autoattack",), aa_version=v, **kw).checks
                     if c.name == "deterministic_forward") for v in ("standard", "plus", "rand")}
    for version in ("standard", "plus"):
        assert not check[version].passed and "\n" not in check[version].message
        assert "randomised" in check[version].message and "--aa-version rand" in check[version].message
    assert check["rand"].passed and "EOT" in check["rand"].message
    pgd = next(c for c in run_sanity_checks(model, x, y, attack=("pgd",), **kw).checks
               if c.name == "deterministic_forward")
    assert not pgd.passed and "--attack autoattack --aa-version rand" in pgd.message
    det = next(c for c in run_sanity_checks(_own(trained_model()), x, y, attack=("autoattack",), **kw).checks
               if c.name == "deterministic_forward")
    assert det.passed


def test_l1_attacks_stay_in_the_l1_ball_and_pgd_refuses_l1(setup):
    model, x, y = setup
    for name in ("apgd-ce", "apgd-t", "fab-t", "square"):
        adv = build_attack(name, model, 2.0, threat_model="L1", steps=5, n_queries=20, n_target_classes=1)(x, y)
        assert float(perturbation_norm(adv - x, "L1").max()) <= 2.0 + 1e-4, name
    assert torch.allclose(perturbation_norm(torch.ones(2, 1, 3, 3), "L1"), torch.full((2,), 9.0))
    for name in ("pgd", "fgsm"):
        with pytest.raises(ValueError, match=f"attack '{name}' has no L1 version.*apgd-ce"):
            build_attack(name, model, 2.0, threat_model="L1")
    report = run_sanity_checks(model, x, y, eps=[2.0], threat_model="L1", attack="apgd-ce", n_examples=8, steps=2,
                               square_queries=5)
    fgsm = next(c for c in report.checks if c.name == "fgsm_not_stronger_than_pgd")
    assert report.probe["white_box"] == "apgd-ce" and fgsm.passed and "no L1 FGSM" in fgsm.message
    assert report.probe["chance_eps"] == 0.5 * x[0].numel()  # every value moved by 0.5


def test_l2_pgd_and_fgm_run_on_a_channels_last_model(setup):
    """evaluate_spectrum puts models in channels_last; torchattacks' L2 PGD used to fail on their gradients."""
    model, x, y = setup
    result = evaluate_spectrum(_own(model), x[:6], y[:6], eps=[0.5, 1.0], attack=["pgd", "fgsm"], threat_model="L2",
                               steps=3, device="cpu", memory_format="channels_last")
    assert result.n_verified > 0 and result.threat_model == "L2"


@pytest.mark.parametrize("fields, message", [
    (dict(attack="autoattack", aa_version="bogus"), "aa_version must be one of standard, plus, rand, got 'bogus'"),
    (dict(attack="autoattack", aa_version="custom"), "'custom' is an attack list here"),
    (dict(attack="pgd", aa_version="rand"), "aa_version 'rand' configures AutoAttack, but attack is ['pgd']"),
    (dict(attack="autoattack", threat_model="L1", eps="8/255"), "is on another scale than threat_model 'L1'"),
    (dict(attack="pgd", threat_model="L1", eps="4"), "attack 'pgd' has no L1 version"),
])
def test_bad_options_are_one_line_errors(fields, message):
    with pytest.raises(ValueError) as err:
        SpectrumOptions(**fields)
    assert message in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize("args, message", [
    (["--attack", "autoattack", "--aa-version", "bogus"], "--aa-version must be one of standard, plus, rand, got "
                                                          "'bogus'"),
    (["--attack", "pgd", "--aa-version", "rand"], "--aa-version 'rand' configures AutoAttack, but --attack is "
                                                  "['pgd']"),
    (["--attack", "autoattack", "--threat-model", "L1", "--eps", "8/255"], "strengths like 8/255 = 0.031 are Linf "
                                                                          "budgets"),
    (["--attack", "autoattack", "--threat-model", "L1"], "is on another scale than --threat-model 'L1'"),
    (["--attack", "pgd", "--threat-model", "L1", "--eps", "12"], "'pgd' has no L1 version"),
])
def test_bad_eval_flags_are_one_line_errors_and_write_nothing(tmp_path, capsys, args, message):
    out = tmp_path / "entry.json"
    code = main(["eval", "--model", "wsrnet_basic", "--out", str(out), *args])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: ") and message in err and err.count("\n") == 1, err
    assert not out.exists() and not list(tmp_path.iterdir())


def test_config_round_trip_and_bad_config_values():
    cfg = load_config(None, ["eval.attack=[AA]", "eval.aa_version=PLUS", "eval.threat_model=l1",
                             "eval.eps=[2, 4, 12]"])
    assert (cfg.eval.aa_version, cfg.eval.threat_model, cfg.eval.eps) == ("plus", "L1", [2, 4, 12])
    again = config_from_dict(json.loads(json.dumps(config_to_dict(cfg))))
    assert config_to_dict(again) == config_to_dict(cfg)
    opts = SpectrumOptions.from_config(again)
    assert (opts.aa_version, opts.threat_model, opts.eps, opts.attack) == ("plus", "L1", (2.0, 4.0, 12.0),
                                                                        ("autoattack",))
    assert SpectrumOptions.from_config(again, attack=("apgd-ce",)).aa_version == "standard"  # no AutoAttack: no version
    for overrides, message in [
        (["eval.attack=[autoattack]", "eval.aa_version=rnd"], "eval.aa_version must be one of standard, plus, rand"),
        (["eval.aa_version=rand"], "eval.aa_version 'rand' configures AutoAttack, but eval.attack is ['pgd']"),
        (["eval.attack=[autoattack]", "eval.threat_model=L1"], "eval.eps 0.03, 0.1, 0.17, 0.25 is on another scale"),
        (["eval.threat_model=L1", "eval.eps=[4]"], "eval.attack 'pgd' has no L1 version"),
    ]:
        with pytest.raises(ConfigError, match=None) as err:
            load_config(None, overrides)
        assert message in str(err.value), str(err.value)


def test_entries_record_the_version_and_sections_keep_versions_apart(setup):
    model, x, y = setup
    result = evaluate_spectrum(model, x[:4], y[:4], eps=[0.1], attack="apgd-ce", steps=2, device="cpu")
    pgd_entry = result_to_entry(result, model_name="tiny", architecture="cnn", dataset="digits")
    assert pgd_entry.aa_version == "" and "aa_version" not in pgd_entry.evaluation and pgd_entry.suite == ""
    entry = pgd_entry.to_dict()
    entry["evaluation"] |= {"attacks": ["autoattack"], "aa_version": "rand"}
    rand = LeaderboardEntry.from_dict(json.loads(json.dumps(entry)))
    assert rand.aa_version == "rand" and rand.suite == "AutoAttack rand"
    entry["evaluation"].pop("aa_version")  # an entry from before versions were recorded ran standard AutoAttack
    assert LeaderboardEntry.from_dict(entry).aa_version == "standard" and LeaderboardEntry.from_dict(entry).suite == ""
    entry["evaluation"] |= {"aa_version": "plus", "suite": "all test images"}
    assert LeaderboardEntry.from_dict(entry).suite == "all test images, AutoAttack plus"


def test_robustbench_unreliable_flag_is_shown():
    from wsr_bench.leaderboard.reference import load_references
    from wsr_bench.leaderboard.tables import UNRELIABLE, leaderboard_frame

    refs = load_references()
    flagged = [r for r in refs if r.unreliable]
    assert flagged and len(flagged) < len(refs)  # the packaged data holds both
    frame = leaderboard_frame([], flagged[:1] + [r for r in refs if not r.unreliable][:1])
    assert sorted(frame["sanity"].tolist()) == sorted([UNRELIABLE, ""])
