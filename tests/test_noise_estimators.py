"""AN-Estimators (WA, A, E, E⁻), memory M_a, training, PGD anchors: shapes, projections, exactness, bad input."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from wsr_bench.estimators.noise import (
    ESTIMATORS,
    NoiseMemory,
    build_estimator,
    pgd_noise,
    project_noise,
    train_estimator,
)
from wsr_bench.search_space.ops import Normalize

ANCHOR_EPS = torch.tensor([0.02, 0.05, 0.08])
B, C, S = 4, 3, 16


def _batch(seed: int = 0, b: int = B, eps: torch.Tensor = ANCHOR_EPS) -> tuple[torch.Tensor, torch.Tensor]:
    """Images in [0,1] (with saturated pixels) and anchors inside their balls and the image range."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand(b, C, S, S, generator=gen)
    x[:, :, :4] = 0.0
    x[:, :, -4:] = 1.0
    anchors = (torch.rand(b, len(eps), C, S, S, generator=gen) * 2 - 1) * eps.view(1, -1, 1, 1, 1)
    anchors = torch.maximum(torch.minimum(anchors, 1 - x.unsqueeze(1)), -x.unsqueeze(1))
    return x, anchors


def _perturb_(est: nn.Module, seed: int = 1) -> nn.Module:
    """Give every parameter a random value, so the learned branch is active (it starts at zero)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in est.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.3)
    return est


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """Tiny models: one thread is faster, and immune to oversubscribed CPUs (restored afterwards)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def victim() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(Normalize((0.5,) * C, (0.25,) * C), nn.Conv2d(C, 4, 3, padding=1), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(16, 10)).eval()


@pytest.mark.parametrize("strength", ["linf", "l2"])
@pytest.mark.parametrize("name", sorted(ESTIMATORS))
def test_shapes_and_projection(name: str, strength: str) -> None:
    x, anchors = _batch()
    est = _perturb_(build_estimator(name, in_chans=C, image_size=S, strength=strength))
    # per-sample targets, including below the first anchor, between anchors, on one, and beyond the last
    targets = torch.tensor([[0.01, 0.03, 0.05, 0.2]] * B) * torch.linspace(0.8, 1.0, B).unsqueeze(1)
    out = est(x, anchors, ANCHOR_EPS, targets)
    assert out.shape == (B, 4, C, S, S)
    assert torch.isfinite(out).all()
    assert (out.abs() <= targets.view(B, 4, 1, 1, 1)).all()
    adv = x.unsqueeze(1) + out
    assert adv.min() >= -1e-6 and adv.max() <= 1 + 1e-6
    if name != "wa":  # the (randomised) learned branch is active, and the projection still holds
        wa = build_estimator("wa", in_chans=C, image_size=S)(x, anchors, ANCHOR_EPS, targets)
        assert (out - wa).abs().max() > 1e-3


@pytest.mark.parametrize("name", sorted(ESTIMATORS))
def test_untrained_estimators_equal_wa_and_param_counts(name: str) -> None:
    x, anchors = _batch(2)
    est = build_estimator(name, in_chans=C, image_size=S)
    wa = build_estimator("wa", in_chans=C, image_size=S)
    torch.testing.assert_close(est(x, anchors, ANCHOR_EPS, [0.035, 0.1]), wa(x, anchors, ANCHOR_EPS, [0.035, 0.1]))
    assert est.param_count() == sum(p.numel() for p in est.parameters())
    assert (est.param_count() == 0) == (name == "wa")
    assert est.param_count() < 100_000  # "lightweight"


@pytest.mark.parametrize("name", ["a", "e"])
def test_paper_form_without_gate(name: str) -> None:
    x, anchors = _batch(6)
    est = _perturb_(build_estimator(name, in_chans=C, image_size=S, gate=False))
    out = est(x, anchors, ANCHOR_EPS, [0.03, 0.12])
    assert out.shape == (B, 2, C, S, S) and (out.abs() <= torch.tensor([0.03, 0.12]).view(1, 2, 1, 1, 1)).all()
    assert est.param_count() < build_estimator(name, in_chans=C, image_size=S).param_count()


def test_wa_reproduces_anchor_exactly_and_interpolates() -> None:
    x, anchors = _batch(3)
    wa = build_estimator("wa", in_chans=C, image_size=S)
    out = wa(x, anchors, ANCHOR_EPS, ANCHOR_EPS)
    assert torch.equal(out, anchors)
    mid = wa(x, anchors, ANCHOR_EPS, [0.03])[:, 0]  # 2/3 of the way to the nearer anchor 0.02
    expected = (2 / 3) * anchors[:, 0] + (1 / 3) * anchors[:, 1]
    expected = torch.maximum(torch.minimum(expected.clamp(-0.03, 0.03), 1 - x), -x)
    torch.testing.assert_close(mid, expected)
    below = wa(x, anchors, ANCHOR_EPS, [0.01])[:, 0]
    torch.testing.assert_close(below, 0.5 * anchors[:, 0])


def test_batched_targets_match_single_targets() -> None:
    x, anchors = _batch(4)
    est = _perturb_(build_estimator("a", in_chans=C, image_size=S)).eval()
    both = est(x, anchors, ANCHOR_EPS, [0.03, 0.07])
    torch.testing.assert_close(both[:, 1:], est(x, anchors, ANCHOR_EPS, [0.07]), rtol=1e-5, atol=1e-6)


def test_memory_is_a_bounded_fifo() -> None:
    mem = NoiseMemory(capacity=10)
    for i in range(4):
        x, anchors = _batch(i, b=2)
        mem.push(x, anchors, ANCHOR_EPS, [0.03 + 0.01 * i, 0.09], anchors[:, :2] * 0 + i)
        assert len(mem) == min(10, 4 * (i + 1))
    batch = mem.sample(64, generator=torch.Generator().manual_seed(0))
    assert batch.x.shape == (10, C, S, S) and batch.anchors.shape == (10, 3, C, S, S)
    assert batch.target_eps.shape == (10, 1) and batch.target_noise.shape == (10, 1, C, S, S)
    # the oldest push (value 0) was dropped; the latest pushes (values 1..3) remain, 2 + 4 + 4 entries
    assert sorted(batch.target_noise.flatten(1)[:, 0].tolist()) == [1.0] * 2 + [2.0] * 4 + [3.0] * 4
    restored = NoiseMemory(capacity=10)
    restored.load_state_dict(mem.state_dict())
    assert len(restored) == 10
    for got, want in zip(restored.state_dict().values(), mem.state_dict().values(), strict=True):
        assert torch.equal(torch.as_tensor(got), torch.as_tensor(want))
    with pytest.raises(ValueError, match="anchors of shape"):
        mem.push(*_batch(0, b=2, eps=ANCHOR_EPS[:2]), ANCHOR_EPS[:2], [0.03], torch.zeros(2, 1, C, S, S))


def test_training_lowers_the_mse() -> None:
    # Targets the learned branch can fit but WA cannot: the interpolated noise pushed to the ball's edge (PGD-like).
    x, anchors = _batch(5, b=24)
    targets = torch.tensor([0.035, 0.065])
    wa = build_estimator("wa", in_chans=C, image_size=S)
    saturated = project_noise(torch.sign(wa(x, anchors, ANCHOR_EPS, targets)) * targets.view(1, -1, 1, 1, 1), x,
                              targets.expand(24, -1))
    mem = NoiseMemory(capacity=600)
    mem.push(x, anchors, ANCHOR_EPS, targets, saturated)
    for name, ratio in (("a", 0.85), ("e", 0.995), ("e_minus", 0.995)):  # E's smooth decoder learns slowly
        torch.manual_seed(0)
        est = build_estimator(name, in_chans=C, image_size=S)
        opt = torch.optim.AdamW(est.parameters(), lr=3e-3)
        gen = torch.Generator().manual_seed(0)
        first = train_estimator(est, mem, opt, iters=3, batch_size=48, generator=gen)
        train_estimator(est, mem, opt, iters=25, batch_size=48, generator=gen)
        last = train_estimator(est, mem, opt, iters=3, batch_size=48, generator=gen)
        assert last < ratio * first, (name, first, last)
    assert train_estimator(wa, mem, None) == 0.0


def test_pgd_noise_shapes_and_bounds(victim: nn.Module) -> None:
    torch.manual_seed(0)
    x = torch.rand(5, C, S, S)
    y = torch.randint(0, 10, (5,))
    noise = pgd_noise(victim, x, y, [0.05, 0.01], steps=3)
    assert noise.shape == (5, 2, C, S, S)
    assert noise[:, 0].abs().max() <= 0.05 and noise[:, 1].abs().max() <= 0.01
    assert noise[:, 0].abs().max() > 0.04  # PGD moves to the ball's edge
    assert (x.unsqueeze(1) + noise).min() >= 0 and (x.unsqueeze(1) + noise).max() <= 1
    with pytest.raises(ValueError, match=r"outside \(0, 1\]"):
        pgd_noise(victim, x, y, [0.0])
    with pytest.raises(ValueError, match="labels"):
        pgd_noise(victim, x, y[:3], [0.03])


@pytest.mark.parametrize(
    ("anchor_eps", "target_eps", "anchor_shape", "match"),
    [
        ([0.05, 0.02, 0.08], [0.03], None, "strictly increasing"),
        ([0.02, 0.02, 0.08], [0.03], None, "strictly increasing"),
        ([0.02, 0.05, 0.08], [0.0], None, "target_eps must be finite strengths > 0"),
        ([0.02, 0.05, 0.08], [-0.03], None, "> 0"),
        ([0.02, 0.05], [0.03], None, "anchor_eps has 2 strengths"),
        ([0.02, 0.05, 0.08], [[0.03]] * (B + 1), None, "target_eps must have shape"),
        ([0.02, 0.05, 0.08], [0.03], (B, 3, C, S, S - 1), "anchors must have shape"),
        ([0.02, 0.05, 0.08], [0.03], (B + 1, 3, C, S, S), "anchors must have shape"),
    ],
)
def test_bad_input_is_a_clear_value_error(anchor_eps, target_eps, anchor_shape, match) -> None:
    x, anchors = _batch()
    if anchor_shape is not None:
        anchors = torch.zeros(anchor_shape)
    for name in ESTIMATORS:
        with pytest.raises(ValueError, match=match):
            build_estimator(name, in_chans=C, image_size=S)(x, anchors, anchor_eps, target_eps)


def test_bad_construction_and_image_mismatch() -> None:
    with pytest.raises(ValueError, match="unknown AN-Estimator"):
        build_estimator("b")
    with pytest.raises(ValueError, match="strength must be one of"):
        build_estimator("a", strength="l1")
    with pytest.raises(ValueError, match="capacity"):
        NoiseMemory(capacity=0)
    with pytest.raises(ValueError, match="empty"):
        NoiseMemory().sample(4)
    x, anchors = _batch()
    with pytest.raises(ValueError, match="built for 1 channels"):
        build_estimator("a", in_chans=1, image_size=S)(x, anchors, ANCHOR_EPS, [0.03])
    with pytest.raises(ValueError, match=r"built for \(32, 32\) images"):
        build_estimator("e", in_chans=C, image_size=32)(x, anchors, ANCHOR_EPS, [0.03])
