"""The epsilon-spectrum evaluator, model loading (timm, exported folders, RobustBench offline) and entries."""

from __future__ import annotations

import json
import math
import warnings

import pytest
import torch
import torch.nn as nn
from _wsr_eval_fixtures import digits, handwritten_pgd, one_thread, tiny_cnn, trained_model  # noqa: F401

import wsr_bench.evaluate.batches as batches_mod
from wsr_bench.attacks.factory import Attack
from wsr_bench.evaluate import (
    AdversarialExampleError,
    CountingModel,
    evaluate_spectrum,
    evaluate_to_entry,
    load_eval_model,
    load_robustbench_model,
)
from wsr_bench.leaderboard import LeaderboardEntry

EPS = [0.03, 0.10, 0.17, 0.25]


@pytest.fixture(scope="module")
def model():
    return trained_model()


@pytest.fixture(scope="module")
def data():
    _, _, x, y = digits()
    return x[:64], y[:64]


def test_api_returns_fractions_keyed_by_eps(model, data):
    x, y = data
    res = evaluate_spectrum(model, x, y, eps=EPS, attack="pgd", steps=5, batch_size=32, device="cpu")
    assert isinstance(res.clean_accuracy, float) and 0.8 < res.clean_accuracy <= 1.0
    assert list(res.robust_accuracy) == EPS
    accs = list(res.robust_accuracy.values())
    assert all(isinstance(a, float) and 0 <= a <= 1 for a in accs)
    assert accs == sorted(accs, reverse=True) and accs[0] <= res.clean_accuracy and accs[-1] < 0.2
    # per-sample breaking eps agrees with the curve: 0 = wrong when clean, inf = never broken
    for e, acc in res.robust_accuracy.items():
        assert acc == pytest.approx((res.break_eps > e).float().mean().item())
    assert (res.break_eps == 0).float().mean().item() == pytest.approx(1 - res.clean_accuracy)
    assert res.n_verified > 0 and json.dumps(res.to_dict())


def test_survivors_only_and_attack_all_give_the_same_curve_with_fewer_passes(model, data):
    x, y = data
    kw = dict(eps=EPS, attack="pgd", steps=5, batch_size=16, device="cpu", seed=11)
    survivors = evaluate_spectrum(model, x, y, **kw)
    everyone = evaluate_spectrum(model, x, y, attack_all=True, **kw)
    assert survivors.robust_accuracy == everyone.robust_accuracy
    assert torch.equal(survivors.break_eps, everyone.break_eps)
    assert survivors.passes.total < everyone.passes.total
    raw = everyone.raw_accuracy["pgd"]  # each eps on its own: never below the cumulative curve
    assert all(raw[e] >= everyone.robust_accuracy[e] for e in EPS)


def test_pass_counts_are_exact_for_pgd(model, data):
    x, y = data
    k = 4
    res = evaluate_spectrum(model, x, y, eps=[0.05], attack="pgd", steps=k, batch_size=64, device="cpu")
    n, attacked = len(x), int(round(res.clean_accuracy * len(x)))
    assert res.passes.forward == n + attacked * (k + 1)  # clean pass, k steps, one verification forward
    assert res.passes.backward == attacked * k


def test_counting_model_counts_every_backward(model, data):
    x, y = data
    counting = CountingModel(model)
    xg = x[:5].clone().requires_grad_(True)
    out = counting(xg)
    for c in range(3):  # FAB-style: one backward per class through the same logits
        out[:, c].sum().backward(retain_graph=True)
    assert counting.count.forward == 5 and counting.count.backward == 15 and counting.count.backward_calls == 3


def test_attack_list_is_the_per_sample_worst_case(model, data):
    x, y = data
    res = evaluate_spectrum(model, x, y, eps=EPS, attack=["fgsm", "pgd"], steps=5, device="cpu")
    assert set(res.per_attack) == {"fgsm", "pgd"}
    worst = torch.minimum(res.break_eps_per_attack["fgsm"], res.break_eps_per_attack["pgd"])
    assert torch.equal(res.break_eps, worst)
    for e in EPS:
        assert res.robust_accuracy[e] <= min(res.per_attack["fgsm"][e], res.per_attack["pgd"][e])


def test_minnorm_gives_radii_and_the_hybrid_is_no_weaker(model, data):
    x, y = data
    kw = dict(eps=EPS, steps=5, device="cpu", minnorm_steps=10, minnorm_targets=1)
    pgd = evaluate_spectrum(model, x, y, attack="pgd", **kw)
    mn = evaluate_spectrum(model, x, y, attack="minnorm", **kw)
    assert mn.min_norm is not None and torch.isfinite(mn.min_norm).float().mean() > 0.9
    hybrid = evaluate_spectrum(model, x, y, attack=["minnorm", "pgd"], chain_attacks=True, **kw)
    for e in EPS:
        assert hybrid.robust_accuracy[e] <= pgd.robust_accuracy[e]
        assert hybrid.robust_accuracy[e] <= mn.robust_accuracy[e]
    assert hybrid.passes_per_attack["pgd"].total < pgd.passes_per_attack["pgd"].total


def _robust_model_and_images():
    robust = trained_model(adv_eps=0.1, epochs=4)
    _, _, x, y = digits()
    return robust, x[:200], y[:200]


def _assert_no_weaker_than_handwritten_pgd20(res, model, x, y) -> None:
    """At every eps of ``res``, its accuracy is at most a hand-written PGD-20's plus sampling noise."""
    gen = torch.Generator().manual_seed(1)
    for e in res.eps:
        adv = handwritten_pgd(model, x, y, e, 20, gen)
        with torch.no_grad():
            theirs = (model(adv).argmax(1) == y).float().mean().item()
        noise = 2 * math.sqrt(max(theirs * (1 - theirs), 0.05) / len(x)) + 1 / len(x)
        assert res.robust_accuracy[e] <= theirs + noise, (e, res.robust_accuracy[e], theirs)


def test_our_pgd20_is_never_weaker_than_an_independent_pgd20():
    """Adversarially trained tiny CNN: ours vs a hand-written PGD-20 at every eps, within sampling noise."""
    robust, x, y = _robust_model_and_images()
    res = evaluate_spectrum(robust, x, y, eps=EPS, attack="pgd", steps=20, device="cpu", seed=0)
    _assert_no_weaker_than_handwritten_pgd20(res, robust, x, y)
    assert 0.05 < res.robust_accuracy[0.10] < res.clean_accuracy  # the model is robust, so the test has teeth


def test_warm_started_sweep_continues_survivors_with_fewer_steps(model, data):
    x, y = data
    k, kw = 6, 2
    cold = evaluate_spectrum(model, x, y, eps=EPS, attack="pgd", steps=k, device="cpu", seed=3)
    warm = evaluate_spectrum(model, x, y, eps=EPS, attack="pgd", steps=k, device="cpu", seed=3, warm_start_steps=kw,
                             warm_restart_ratio=0.0)
    assert warm.robust_accuracy[EPS[0]] == cold.robust_accuracy[EPS[0]]  # the first eps starts cold, as before
    assert warm.settings["warm_start_steps"] == kw and warm.n_verified > 0
    # exact pass count: at each eps the samples still standing are attacked, k steps cold at the first eps and
    # kw continued steps after it, plus one verification forward each
    correct = warm.break_eps > 0
    attacked = [int((correct & (warm.break_eps >= e)).sum()) for e in EPS]
    steps = [k] + [kw] * (len(EPS) - 1)
    assert warm.passes.backward == sum(a * s for a, s in zip(attacked, steps, strict=True))
    assert warm.passes.forward == len(x) + sum(a * (s + 1) for a, s in zip(attacked, steps, strict=True))
    assert warm.passes.total < cold.passes.total
    # restarting every survivor cold as well costs more and is at least as strong as the continuation alone
    both = evaluate_spectrum(model, x, y, eps=EPS, attack="pgd", steps=k, device="cpu", seed=3, warm_start_steps=kw,
                             warm_restart_ratio=1.0)
    assert both.passes.total > warm.passes.total
    assert all(both.robust_accuracy[e] <= min(warm.robust_accuracy[e], cold.robust_accuracy[e]) for e in EPS)


def test_warm_started_sweep_is_no_weaker_than_an_independent_pgd20():
    """The continuation attack (PGD-4 from the previous iterate) against a cold hand-written PGD-20 per eps."""
    robust, x, y = _robust_model_and_images()
    eps = [2 / 255, 4 / 255, 8 / 255, 16 / 255, 32 / 255, 64 / 255]
    res = evaluate_spectrum(robust, x, y, eps=eps, attack="pgd", steps=20, device="cpu", warm_start_steps=4)
    _assert_no_weaker_than_handwritten_pgd20(res, robust, x, y)
    assert 0.05 < res.robust_accuracy[16 / 255] < res.clean_accuracy


@pytest.mark.parametrize("kwargs, match", [
    ({"warm_start_steps": 0}, ">= 1"),
    ({"warm_start_steps": 3, "warm_restart_ratio": 1.5}, r"in \[0, 1\]"),
    ({"warm_start_steps": 3, "attack_all": True}, "attack_all off"),
    ({"warm_start_steps": 3, "threat_model": "L2", "eps": [0.5]}, "threat_model 'Linf'"),
    ({"warm_start_steps": 3, "attack": "fgsm"}, "pgd among attack"),
])
def test_warm_start_needs_a_survivors_linf_pgd_sweep(model, data, kwargs, match):
    x, y = data
    with pytest.raises(ValueError, match=match):
        evaluate_spectrum(model, x, y, device="cpu", **{"eps": EPS, **kwargs})


def test_invalid_adversarial_examples_are_rejected(model, data, monkeypatch):
    x, y = data

    def cheating(name, m, eps, **kw):
        return Attack(name, eps, "Linf", True, lambda xb, yb, ids: (xb + 2 * eps).clamp(0, 1))

    monkeypatch.setattr(batches_mod, "build_attack", cheating)
    with pytest.raises(AdversarialExampleError, match="exceeded the Linf budget"):
        evaluate_spectrum(model, x, y, eps=[0.03], device="cpu")

    def out_of_range(name, m, eps, **kw):
        return Attack(name, eps, "Linf", True, lambda xb, yb, ids: xb + 1e-3)

    monkeypatch.setattr(batches_mod, "build_attack", out_of_range)
    with pytest.raises(AdversarialExampleError, match=r"\[0,1\]"):
        evaluate_spectrum(model, torch.ones_like(x) * 0.9995, y, eps=[0.03], device="cpu")


class _NaNModel(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(1, 1)

    def forward(self, x):
        return torch.full((len(x), 10), float("nan"))


@pytest.mark.parametrize("kwargs, match", [
    ({"eps": [8]}, r"did you mean 8/255"),
    ({"eps": [-0.03]}, "must be >= 0"),
    ({"eps": "0.03,abc"}, "cannot parse eps"),
    ({"attack": "pgdd"}, "unknown attack"),
    ({"attack": "transfer"}, "surrogate"),
    ({"steps": 0}, "steps"),
])
def test_bad_arguments_are_clear_errors(model, data, kwargs, match):
    x, y = data
    with pytest.raises(ValueError, match=match):
        evaluate_spectrum(model, x, y, device="cpu", **kwargs)


def test_bad_inputs_are_clear_errors(model, data):
    x, y = data
    with pytest.raises(ValueError, match=r"\[0,1\].*divide by 255"):
        evaluate_spectrum(model, x * 255, y, eps=[0.03], device="cpu")
    with pytest.raises(ValueError, match="non-finite outputs"):
        evaluate_spectrum(_NaNModel(), x, y, eps=[0.03], device="cpu")


def test_evaluate_to_entry_builds_a_json_ready_entry(model, data):
    x, y = data
    entry = evaluate_to_entry(model, x[:32], y[:32], model_name="tiny-cnn", architecture="cnn", dataset="digits",
                              recipe="standard", eps=EPS, attack=["fgsm", "pgd"], steps=5, device="cpu",
                              date="2025-01-01")
    assert isinstance(entry, LeaderboardEntry)
    assert set(entry.curves) == {"fgsm", "pgd", "worst_case"}
    assert entry.worst_case.eps_label == ["0.03", "0.1", "0.17", "0.25"]
    assert entry.avg_robust_accuracy == pytest.approx(sum(entry.worst_case.accuracy) / 4)
    assert 0 < entry.auc < entry.clean_accuracy and entry.params == sum(p.numel() for p in model.parameters())
    assert set(entry.sanity) >= {"nonzero_gradients", "deterministic_forward"} and not entry.flags
    assert entry.versions["torch"] and entry.evaluation["passes"]["total"] > 0
    d = json.loads(json.dumps(entry.to_dict(), allow_nan=False))
    assert LeaderboardEntry.from_dict(d).to_dict() == d


# ------------------------------------------------------------------------------------------------- model loading
def test_load_exported_folder_with_checkpoint(tmp_path):
    import timm
    from safetensors.torch import save_file

    import wsr_bench.models as wm

    net = timm.create_model("wsrnet_basic", init_channels=4, layers=3, num_classes=10)
    wm.export_model(net, tmp_path / "exp")
    loaded = load_eval_model(str(tmp_path / "exp"))
    assert loaded.source == "exported" and loaded.architecture == "wsrnet_basic" and loaded.params > 0
    assert not loaded.model.training
    state = {k: torch.zeros_like(v) if v.is_floating_point() else v for k, v in net.state_dict().items()}
    save_file(state, str(tmp_path / "zeros.safetensors"))
    zeroed = load_eval_model(str(tmp_path / "exp"), checkpoint=tmp_path / "zeros.safetensors")
    assert all(p.detach().abs().sum().item() == 0 for p in zeroed.model.parameters())
    torch.save({"state_dict": {"bogus": torch.zeros(1)}}, tmp_path / "bad.pt")
    with pytest.raises(ValueError, match="does not fit"):
        load_eval_model(str(tmp_path / "exp"), checkpoint=tmp_path / "bad.pt")
    with pytest.raises(FileNotFoundError, match="not found"):
        load_eval_model(str(tmp_path / "exp"), checkpoint=tmp_path / "missing.pt")


def test_load_timm_names():
    plain = load_eval_model("resnet10t", num_classes=10, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    assert plain.source == "timm" and plain.model(torch.rand(2, 3, 16, 16)).shape == (2, 10)
    with pytest.raises(ValueError, match="unknown model 'wsrnet_basc'.*did you mean wsrnet_basic"):
        load_eval_model("wsrnet_basc")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_eval_model("./no/such/folder")


def test_robustbench_model_loads_offline_from_a_local_checkpoint(tmp_path):
    from robustbench.model_zoo import model_dicts
    from robustbench.model_zoo.enums import BenchmarkDataset, ThreatModel

    reference = model_dicts[BenchmarkDataset.cifar_10][ThreatModel.Linf]["Ding2020MMA"]["model"]()
    target = tmp_path / "cifar10" / "Linf" / "Ding2020MMA.pt"
    with pytest.raises(FileNotFoundError, match=f"expected {target}"):
        load_robustbench_model("Ding2020MMA", tmp_path, "cifar10", "Linf")
    target.parent.mkdir(parents=True)
    torch.save({"state_dict": {f"module.{k}": v for k, v in reference.state_dict().items()}}, target)
    loaded = load_eval_model("robustbench:Ding2020MMA", model_dir=tmp_path, dataset="cifar10")
    assert loaded.source == "robustbench" and loaded.architecture == "WideResNet-28-4"
    for (k, v), (_, w) in zip(reference.state_dict().items(), loaded.model.state_dict().items(), strict=True):
        assert torch.equal(v, w), k


def test_the_robustbench_bridge_filters_no_warning_and_a_cli_load_prints_none(tmp_path, monkeypatch):
    """Known third-party deprecations are silenced at the CLI's entry only: a warning robustbench's ``load_model``
    raises reaches the caller, and under the CLI's filters (everything else an error) a local load is silent."""
    import robustbench.utils as rb_utils
    from robustbench.model_zoo import model_dicts
    from robustbench.model_zoo.enums import BenchmarkDataset, ThreatModel

    from wsr_bench.cli import silence_third_party_warnings

    reference = model_dicts[BenchmarkDataset.cifar_10][ThreatModel.Linf]["Ding2020MMA"]["model"]()
    target = tmp_path / "cifar10" / "Linf" / "Ding2020MMA.pt"
    target.parent.mkdir(parents=True)
    torch.save({"state_dict": reference.state_dict()}, target)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        silence_third_party_warnings()  # what `wsr-bench` does first
        load_robustbench_model("Ding2020MMA", tmp_path, "cifar10", "Linf")
    load_model = rb_utils.load_model

    def noisy_load_model(*args, **kwargs):
        warnings.warn("a note from robustbench", UserWarning, stacklevel=1)
        return load_model(*args, **kwargs)

    monkeypatch.setattr(rb_utils, "load_model", noisy_load_model)
    with pytest.warns(UserWarning, match="a note from robustbench"):
        load_robustbench_model("Ding2020MMA", tmp_path, "cifar10", "Linf")


def test_unknown_robustbench_names_and_datasets_are_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="unknown RobustBench model 'Carmon2019Unlabled'.*Carmon2019Unlabeled"):
        load_robustbench_model("Carmon2019Unlabled", tmp_path, "cifar10", "Linf")
    with pytest.raises(ValueError, match="no 'digits' models"):
        load_robustbench_model("Carmon2019Unlabeled", tmp_path, "digits", "Linf")


class _ModeRecorder(nn.Module):
    """A BatchNorm model that records whether each forward ran in training mode."""

    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.Flatten(),
                                 nn.Linear(8 * 8 * 8, 10))
        self.modes: list[bool] = []

    def forward(self, x):
        self.modes.append(self.training)
        return self.net(x)


def test_batchnorm_models_are_attacked_and_verified_in_eval_mode(data):
    """torchattacks calls model.train() after an attack when the model it was given looked like training."""
    x, y = data
    rec = _ModeRecorder().train()
    kw = dict(eps=[0.01, 0.03], attack=["fgsm", "pgd", "apgd-ce"], steps=3, batch_size=16, device="cpu")
    survivors = evaluate_spectrum(rec, x, y, **kw)
    assert rec.modes and not any(rec.modes) and rec.training  # eval throughout, training mode restored after
    everyone = evaluate_spectrum(rec.eval(), x, y, attack_all=True, **kw)
    assert torch.equal(survivors.break_eps_per_attack["pgd"], everyone.break_eps_per_attack["pgd"])


def test_model_is_left_in_its_original_mode(data):
    x, y = data
    net = tiny_cnn().train()
    evaluate_spectrum(net, x[:8], y[:8], eps=[0.01], steps=1, device="cpu")
    assert net.training
