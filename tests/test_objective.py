"""Robust search objective (Eq. 10), the EWSS update, the strength layout, and the search config's checks."""

import pytest
import torch
from torch import nn

from wsr_bench.config import ConfigError, load_config
from wsr_bench.search import ObjectiveError, RobustObjective, ewss_step, strength_layout


def test_weights_are_normalised_and_eq10_is_computed():
    obj = RobustObjective(nat_weight=0.8, robust_weight=0.2, weights=(1, 2, 3, 5, 7, 10))
    assert sum(obj.weights) == pytest.approx(1.0) and obj.weights[0] == pytest.approx(1 / 28)
    losses = torch.tensor([1.0, 2.0, 2.0, 3.0, 3.0, 4.0, 4.0])
    expected = 0.8 * 1.0 + 0.2 * sum(w * v for w, v in zip(obj.weights, losses[1:].tolist(), strict=True))
    assert float(obj(losses)) == pytest.approx(expected)
    assert obj(torch.stack([losses, losses])).shape == (2,)


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"nat_weight": 0.7, "robust_weight": 0.2}, "nat_weight \\+ robust_weight must equal 1"),
    ({"nat_weight": 1.0, "robust_weight": 0.0}, "must be > 0"),
    ({"weights": (1, 0, 2)}, "beta_i must all be > 0"),
    ({"weights": ()}, "at least one strength weight"),
])
def test_bad_weights_are_refused(kwargs, match):
    with pytest.raises(ObjectiveError, match=match):
        RobustObjective(**kwargs)


def test_loss_vector_length_is_checked():
    with pytest.raises(ObjectiveError, match="expected 3 losses"):
        RobustObjective(weights=(1, 1))(torch.zeros(4))


class _LinearLandscape(nn.Module):
    """A stand-in VLE: every loss is sum(H * cost), so op 5 (cheapest) should win on every edge."""

    def __init__(self, n_out: int):
        super().__init__()
        cost = torch.ones(2, 14, 8)
        cost[..., 5] = 0.0
        self.register_buffer("cost", cost)
        self.scale = nn.Parameter(torch.ones(n_out))

    def forward(self, H):
        return (H * self.cost).sum((-1, -2, -3)).unsqueeze(-1) * self.scale


def test_ewss_moves_A_downhill_through_the_estimator_only():
    torch.manual_seed(0)
    arch_weights = nn.Parameter(1e-3 * torch.randn(2, 14, 8))
    vle = _LinearLandscape(n_out=4)
    obj = RobustObjective(weights=(1, 2, 3))
    opt = torch.optim.Adam([arch_weights], lr=0.05)
    gen = torch.Generator().manual_seed(0)
    values = [ewss_step(arch_weights, vle, obj, opt, tau=1.0, samples=4, generator=gen) for _ in range(30)]
    assert values[-1] < values[0]
    assert (arch_weights.detach().argmax(-1) == 5).all()
    assert vle.scale.grad is None  # the estimator's own weights get no gradient from the architecture step


@pytest.mark.parametrize(("strengths", "n1", "n2", "pgd"), [
    ([0.03, 0.045, 0.06, 0.075, 0.09, 0.105], 3, 3, [0.03, 0.06, 0.09]),
    ([0.03 + 0.0075 * i for i in range(11)], 3, 8, [0.03, 0.06, 0.09]),
    ([0.03, 0.06, 0.09], 3, 0, [0.03, 0.06, 0.09]),
    ([0.03], 1, 0, [0.03]),
])
def test_strength_layout_is_the_papers(strengths, n1, n2, pgd):
    got_pgd, got_est = strength_layout(strengths, n1, n2)
    assert got_pgd == pytest.approx(pgd)
    assert len(got_est) == n2 and sorted(got_pgd + got_est) == pytest.approx(sorted(strengths))


def test_strength_layout_refuses_mismatch():
    with pytest.raises(ValueError, match="add up"):
        strength_layout([0.03, 0.06], 1, 2)


@pytest.mark.parametrize(("overrides", "match"), [
    (["search.nat_weight=0.5"], "nat_weight \\+ search.robust_weight must equal 1"),
    (["search.strengths=[]"], "search.strengths is empty"),
    (["search.estimator=none"], "need an AN-Estimator"),
    (["search.n2=2"], "n1 \\+ search.n2 = 5 but search.strengths lists 6"),
    (["search.objective_weights=[1, 2]"], "objective_weights has 2 entries"),
    (["search.objective_weights=[1, 2, 3, 0, 7, 10]"], "must all be > 0"),
    (["search.method=naive"], "naive runs PGD at every strength"),
    (["search.strengths=[0.06, 0.03, 0.09, 0.1, 0.2, 0.3]"], "strictly increasing"),
    (["search.ane.target_range=[0.2, 0.1]"], "search.ane.target_range"),
])
def test_search_config_errors(overrides, match):
    with pytest.raises(ConfigError, match=match):
        load_config(None, overrides)


def test_shipped_search_configs_are_valid():
    for name, (n1, n2) in {"demo": (3, 3), "search_basic": (3, 3), "search_plus": (3, 8), "search_naive_1": (1, 0),
                           "search_naive_3": (3, 0), "search_naive_6": (6, 0)}.items():
        cfg = load_config(f"configs/{name}.yaml")
        assert (cfg.search.n1, cfg.search.n2) == (n1, n2), name
