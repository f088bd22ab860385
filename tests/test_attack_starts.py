"""Image-keyed random starts for pyautoattack's attacks: an image gets the same attack, and so the same verdict,
alone, in any batch and at any place in it; pyautoattack's own starts (the control) do not."""

from __future__ import annotations

import pytest
import torch
from _wsr_eval_fixtures import digits, trained_model

from wsr_bench.attacks import starts as attack_starts
from wsr_bench.attacks.factory import build_attack, seeded_rng
from wsr_bench.attacks.starts import image_keyed_noise, key_autoattack_starts


@pytest.fixture(scope="module")
def setup():
    torch.set_num_threads(1)
    _, _, x, y = digits()
    return trained_model(adv_eps=0.05), x[:12], y[:12]


def test_keyed_noise_follows_the_image_not_its_place():
    x = torch.rand(6, 1, 4, 4, generator=torch.Generator().manual_seed(0))
    a = image_keyed_noise(x, 0, "s")
    assert torch.equal(image_keyed_noise(x.flip(0), 0, "s").flip(0), a)  # reversed batch
    assert torch.equal(image_keyed_noise(x[2:4], 0, "s"), a[2:4])  # a sub-batch
    assert not torch.equal(image_keyed_noise(x, 1, "s"), a)  # another seed
    assert not torch.equal(image_keyed_noise(x, 0, "t"), a)  # another draw of the same attack
    assert a.shape == x.shape and a.abs().max() <= 1 and a.min() < 0 < a.max()
    assert image_keyed_noise(x, 0, "s", normal=True).abs().max() > 1
    assert image_keyed_noise(x, 0, "s", row_shape=(1, 1, 4)).shape == (6, 1, 1, 4)
    assert image_keyed_noise(x[:0], 0, "s").shape == (0, 1, 4, 4)


def _in_three_batches(attack, x, y):
    """The attack on the whole batch, on it reversed (put back in order), and on its even images."""
    order = torch.arange(len(x)).flip(0)
    return attack(x, y), attack(x[order], y[order])[order.argsort()], attack(x[::2], y[::2])


@pytest.mark.parametrize("name", ["apgd-ce", "apgd-t", "square"])
def test_a_keyed_attack_does_the_same_to_an_image_in_any_batch(setup, name):
    model, x, y = setup
    attack = build_attack(name, model, 0.1, steps=10, n_queries=60, n_target_classes=2, seed=3)
    whole, reversed_, evens = _in_three_batches(attack, x, y)
    with torch.no_grad():
        assert (model(whole).argmax(1) != y).any()  # it fools some images: the comparison has content
    torch.testing.assert_close(reversed_, whole, rtol=0, atol=1e-6)
    torch.testing.assert_close(evens, whole[::2], rtol=0, atol=1e-6)


@pytest.mark.parametrize("name", ["apgd-ce", "square"])
def test_pyautoattack_own_starts_depend_on_the_batch(setup, name):
    """The control: upstream's attacks, same settings, give an image another result when its batch changes."""
    from pyautoattack.autopgd_base import APGDAttack
    from pyautoattack.square import SquareAttack

    model, x, y = setup
    if name == "apgd-ce":
        upstream = APGDAttack(model, n_iter=10, n_restarts=1, eps=0.1, seed=3, loss="ce", device="cpu")
    else:
        upstream = SquareAttack(model, p_init=0.8, n_queries=60, eps=0.1, n_restarts=1, seed=3, device="cpu",
                                resc_schedule=False)

    def attack(xb, yb):
        with seeded_rng(3), torch.no_grad() if name == "square" else torch.enable_grad():
            return upstream.perturb(xb, yb)

    whole, reversed_, _ = _in_three_batches(attack, x, y)
    assert not torch.allclose(reversed_, whole, rtol=0, atol=1e-6)


def test_keying_autoattack_keeps_its_settings_and_its_verdicts_follow_the_image(setup):
    from pyautoattack import AutoAttack

    model, x, y = setup
    adversary = AutoAttack(model, device="cpu", eps=0.1, seed=0, version="standard")
    adversary.square.n_queries, adversary.apgd_targeted.n_target_classes, adversary.fab.n_target_classes = 60, 2, 2
    before = {name: dict(vars(getattr(adversary, name))) for name in ("apgd", "apgd_targeted", "square")}
    key_autoattack_starts(adversary)
    assert (type(adversary.apgd), type(adversary.apgd_targeted), type(adversary.square)) == (
        attack_starts.KeyedAPGD, attack_starts.KeyedAPGDTargeted, attack_starts.KeyedSquare)
    for name, attrs in before.items():
        assert vars(getattr(adversary, name)) == attrs, name  # n_restarts, n_queries, targets, seed: untouched
    adversary.verbose = False

    def attack(xb, yb):
        return adversary.run_standard_evaluation(xb, yb, batch_size=len(xb))[0]

    whole, reversed_, evens = _in_three_batches(attack, x, y)
    with torch.no_grad():
        fooled = model(whole).argmax(1) != y
        assert fooled.any() and not fooled.all()
        assert torch.equal(model(reversed_).argmax(1) != y, fooled)
        assert torch.equal(model(evens).argmax(1) != y[::2], fooled[::2])
