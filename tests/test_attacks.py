"""Attack construction: eps parsing, input validation, and that every attack stays in its eps ball."""

from __future__ import annotations

import pytest
import torch
from _wsr_eval_fixtures import digits, one_thread, trained_model  # noqa: F401  (one_thread: autouse)

from wsr_bench.attacks.factory import (
    ATTACK_NAMES,
    PGD,
    build_attack,
    build_min_norm_attack,
    normalize_attack_name,
    perturbation_norm,
    seeded_rng,
    validate_images,
)
from wsr_bench.epsilon import eps_label, parse_eps, parse_eps_list


@pytest.fixture(scope="module")
def model():
    return trained_model()


@pytest.fixture(scope="module")
def batch():
    _, _, x, y = digits()
    return x[:24], y[:24]


# ------------------------------------------------------------------------------------------------- eps parsing
@pytest.mark.parametrize("text, value", [("8/255", 8 / 255), ("0.03", 0.03), (0.1, 0.1), ("0", 0.0), (" 1/2 ", 0.5)])
def test_parse_eps_accepts_numbers_and_fractions(text, value):
    assert parse_eps(text) == pytest.approx(value)


def test_eps_above_one_is_refused_with_a_hint():
    with pytest.raises(ValueError, match=r"did you mean 8/255 \(= 0\.0314\)"):
        parse_eps(8)
    with pytest.raises(ValueError, match="did you mean 16/255"):
        parse_eps("16")


@pytest.mark.parametrize("bad", ["-0.1", -1, "abc", "nan", "inf", "1/0", ""])
def test_bad_eps_is_refused(bad):
    with pytest.raises(ValueError, match="eps"):
        parse_eps(bad)


def test_parse_eps_list_sorts_dedupes_and_labels():
    eps = parse_eps_list("0.1, 8/255,0.03,0.1")
    assert eps == pytest.approx([0.03, 8 / 255, 0.1])
    assert [eps_label(e) for e in eps] == ["0.03", "8/255", "0.1"]
    assert eps_label(64 / 255) == "64/255" and eps_label(0.5) == "0.5" and eps_label(0.2) == "0.2"
    with pytest.raises(ValueError, match="empty"):
        parse_eps_list("")


def test_one_eps_tolerance_decides_equality_everywhere():
    """dedupe, labels, lookup in a grid, a curve's value and a sample's correctness use the one EPS_TOL."""
    from wsr_bench.epsilon import EPS_TOL, find_eps, max_eps, same_eps
    from wsr_bench.leaderboard.schema import Curve
    from wsr_bench.leaderboard.stats import correct_at

    grid = [0.03, 8 / 255, 0.1]
    near, far = 8 / 255 + EPS_TOL / 2, 8 / 255 + 2 * EPS_TOL
    assert same_eps(near, 8 / 255) and not same_eps(far, 8 / 255) and not same_eps(0.03, 8 / 255)
    assert find_eps(near, grid) == 1 and find_eps(far, grid) is None
    assert parse_eps_list([0.1, 0.1 + EPS_TOL / 2, 0.1 + 2 * EPS_TOL]) == [0.1, 0.1 + 2 * EPS_TOL]
    curve = Curve("worst_case", grid, [0.9, 0.8, 0.5])
    assert curve.at(near) == 0.8 and curve.at(far) is None
    assert correct_at([near, far, None, 0.0], 8 / 255) == [False, True, True, False]
    assert same_eps(float(torch.tensor(123.4, dtype=torch.float32)), 123.4)  # float32 copies of large L1 budgets
    assert (max_eps("Linf"), max_eps("L2"), max_eps("L1"), max_eps(None)) == (1.0, 1e3, 1e5, 1e5)


def test_numbers_stay_numbers_and_keep_the_255_hint():
    assert parse_eps(0.1 + 1e-17) == 0.1 + 1e-17 and parse_eps(8 / 255) == 8 / 255
    with pytest.raises(ValueError, match="did you mean 8/255"):
        parse_eps(8.0)
    assert parse_eps("300", threat_model="L2") == 300.0 and parse_eps(5e4, threat_model=None) == 5e4


# ------------------------------------------------------------------------------------------------- validation
def test_images_in_0_255_are_refused_with_a_hint(batch):
    x, y = batch
    with pytest.raises(ValueError, match="divide by 255"):
        validate_images(x * 255, y)
    with pytest.raises(ValueError, match="float"):
        validate_images((x * 255).to(torch.uint8), y)
    with pytest.raises(ValueError, match="NaN"):
        validate_images(torch.full_like(x, float("nan")), y)
    with pytest.raises(ValueError, match="labels"):
        validate_images(x, y[:3])
    with pytest.raises(ValueError, match="empty"):
        validate_images(x[:0], y[:0])


def test_unknown_attack_is_refused(model):
    with pytest.raises(ValueError, match="unknown attack 'pgdd'.*fgsm, pgd"):
        normalize_attack_name("pgdd")
    with pytest.raises(ValueError, match="unknown attack"):
        build_attack("deepfool", model, 0.1)
    assert normalize_attack_name("APGD_CE") == "apgd-ce" and normalize_attack_name("AA") == "autoattack"
    with pytest.raises(ValueError, match="surrogate"):
        build_attack("transfer", model, 0.1)
    with pytest.raises(ValueError, match="threat model"):
        build_attack("pgd", model, 0.1, threat_model="L7")


# ------------------------------------------------------------------------------------------------- attacks
def _fooled(model, adv, y):
    with torch.no_grad():
        return (model(adv).argmax(1) != y).float().mean().item()


@pytest.mark.parametrize("name, kwargs", [
    ("fgsm", {}), ("pgd", {"steps": 10}), ("apgd-ce", {"steps": 10}), ("apgd-t", {"steps": 5, "n_target_classes": 2}),
    ("fab-t", {"steps": 5, "n_target_classes": 2}), ("square", {"n_queries": 50}),
])
def test_every_attack_stays_in_the_linf_ball_and_image_range(model, batch, name, kwargs):
    x, y = batch
    eps = 0.1
    adv = build_attack(name, model, eps, **kwargs)(x, y)
    assert adv.shape == x.shape and torch.isfinite(adv).all()
    assert adv.min() >= 0 and adv.max() <= 1
    assert perturbation_norm(adv - x).max() <= eps + 1e-6
    if name != "square":  # white-box attacks at eps 0.1 fool a standard digits model on some inputs
        assert _fooled(model, adv, y) > 0


def test_autoattack_standard_runs(model, batch):
    x, y = batch
    adv = build_attack("autoattack", model, 0.25)(x[:8], y[:8])
    assert perturbation_norm(adv - x[:8]).max() <= 0.25 + 1e-6
    assert _fooled(model, adv, y[:8]) == 1.0


def test_l2_pgd_respects_the_l2_ball(model, batch):
    x, y = batch
    adv = build_attack("pgd", model, 1.0, threat_model="L2", steps=10)(x, y)
    assert perturbation_norm(adv - x, "L2").max() <= 1.0 + 1e-5
    assert _fooled(model, adv, y) > 0
    fgm = build_attack("fgsm", model, 1.0, threat_model="L2")(x, y)
    assert perturbation_norm(fgm - x, "L2").max() <= 1.0 + 1e-5


def test_pgd_result_of_a_sample_does_not_depend_on_its_batch(model, batch):
    x, y = batch
    atk = build_attack("pgd", model, 0.1, steps=5, seed=3)
    ids = torch.arange(100, 100 + len(x))
    together = atk(x, y, ids)
    alone = torch.cat([atk(x[i:i + 1], y[i:i + 1], ids[i:i + 1]) for i in (0, 5, 11)])
    assert torch.allclose(together[[0, 5, 11]], alone, atol=1e-6)
    other_seed = build_attack("pgd", model, 0.1, steps=5, seed=4)(x, y, ids)
    assert not torch.allclose(together, other_seed)


def test_pgd_warm_start_is_projected_and_used(model, batch):
    x, y = batch
    eps = 0.05
    far = (x + 0.5).clamp(0, 1)  # outside the ball: projected onto its surface before any step
    adv = PGD(model, eps=eps, step_size=0.0, steps=1, random_start=False)(x, y, start=far)
    assert torch.allclose(adv, torch.min(x + eps, far).clamp(0, 1), atol=1e-6)
    cold = PGD(model, eps=eps, step_size=eps * 2.5 / 3, steps=3)(x, y)
    warm = PGD(model, eps=eps, step_size=eps * 2.5 / 3, steps=3, random_start=False)(x, y, start=far)
    assert not torch.equal(warm, cold) and perturbation_norm(warm - x).max() <= eps + 1e-6
    with pytest.raises(ValueError, match="start has shape"):
        PGD(model, eps=eps)(x, y, start=far[:3])


def test_pgd_early_stop_is_at_least_as_strong(model, batch):
    x, y = batch
    plain = build_attack("pgd", model, 0.06, steps=10)(x, y)
    early = build_attack("pgd", model, 0.06, steps=10, early_stop=True)(x, y)
    assert _fooled(model, early, y) >= _fooled(model, plain, y)
    assert perturbation_norm(early - x).max() <= 0.06 + 1e-6


def test_transfer_attack_is_crafted_on_the_surrogate(model, batch):
    x, y = batch
    surrogate = trained_model(seed=1, epochs=2)
    atk = build_attack("transfer", model, 0.2, surrogate=surrogate, steps=10)
    assert not atk.white_box
    adv = atk(x, y)
    assert perturbation_norm(adv - x).max() <= 0.2 + 1e-6
    crafted = build_attack("pgd", surrogate, 0.2, steps=10)(x, y, torch.arange(len(x)))
    assert torch.allclose(adv, crafted)


def test_min_norm_attack_returns_breaking_radii(model, batch):
    x, y = batch
    radius, adv = build_min_norm_attack(model, steps=10, n_target_classes=2).radii(x, y)
    found = torch.isfinite(radius) & (radius > 0)
    assert found.float().mean() > 0.5
    assert torch.allclose(perturbation_norm(adv - x)[found], radius[found], atol=1e-6)
    with torch.no_grad():
        assert (model(adv[found]).argmax(1) != y[found]).all()


def test_attacks_leave_the_global_rng_alone(model, batch):
    x, y = batch
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    build_attack("square", model, 0.1, n_queries=5)(x[:4], y[:4])
    build_attack("apgd-ce", model, 0.1, steps=3)(x[:4], y[:4])
    assert torch.equal(torch.rand(3), expected)
    with seeded_rng(7):
        a = torch.rand(2)
    with seeded_rng(7):
        assert torch.equal(torch.rand(2), a)


def test_attack_names_are_all_buildable_or_documented(model):
    for name in ATTACK_NAMES:
        if name in ("minnorm", "transfer"):
            continue
        assert build_attack(name, model, "8/255").eps == pytest.approx(8 / 255)
