"""The pure functions of ``benchmarks/search_quality.py --power``: agreement between genotypes and its expectation for
random ones, how far A moved, the minimum detectable effect, the seed-noise decomposition, the genotype -> one-hot H
round trip through the super-network, the bootstrap Kendall tau; and (slow) that ``--power --render`` and quick
mode's smoke run still work beside the power pipeline that plain ``--smoke`` runs."""

import importlib.util
import json
import math
import os
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from wsr_bench.search_space.genotype import Genotype, known_genotypes
from wsr_bench.search_space.ops import PRIMITIVES
from wsr_bench.search_space.supernet import SuperNet, derive_genotype

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "search_quality.py"


def _load():
    spec = importlib.util.spec_from_file_location("search_quality_under_test", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


sq = _load()
CONCAT = [2, 3, 4, 5]


def geno(normal, reduce=None):
    return {"normal": normal, "normal_concat": CONCAT, "reduce": reduce or normal, "reduce_concat": CONCAT}


A_CELL = [["sep_conv_3x3", 0], ["skip_connect", 1], ["max_pool_3x3", 0], ["dil_conv_3x3", 2],
          ["sep_conv_5x5", 1], ["avg_pool_3x3", 3], ["dil_conv_5x5", 0], ["skip_connect", 4]]


# ------------------------------------------------------------------------------------------------ agreement
def test_agreement_of_a_genotype_with_itself_and_with_a_reordered_copy_is_one():
    g = geno(A_CELL)
    assert sq.edge_agreement(g, g) == 1.0
    swapped = [A_CELL[k + 1 - 2 * (k % 2)] for k in range(8)]  # the two edges of every node in the other order
    assert sq.edge_agreement(g, geno(swapped)) == 1.0
    assert sq.edge_agreement(Genotype.from_dict(g), g) == 1.0  # Genotype objects and dicts alike


def test_agreement_counts_same_op_from_same_input_at_same_node():
    other = [list(e) for e in A_CELL]
    other[0] = ["sep_conv_5x5", 0]  # node 2: op changed -> that edge no longer shared
    other[3] = ["dil_conv_3x3", 1]  # node 3: input changed -> no longer shared
    reduce = [list(e) for e in A_CELL]
    reduce[6], reduce[7] = ["skip_connect", 4], ["dil_conv_5x5", 0]  # same edges, other order: still shared
    assert sq.edge_agreement(geno(A_CELL), geno(other, reduce)) == pytest.approx(14 / 16)
    # the same (op, input) at another node does not count
    moved = [list(e) for e in A_CELL]
    moved[2], moved[4] = ["sep_conv_5x5", 1], ["max_pool_3x3", 0]  # node 3 and node 4 swap one edge each
    assert sq.edge_agreement(geno(A_CELL), geno(moved, A_CELL)) == pytest.approx(14 / 16)


def test_expected_random_agreement_is_exact_and_matches_monte_carlo():
    # node j has n = j + 2 inputs: 4 / (7 n) shared edges on average; (1/2 + 1/3 + 1/4 + 1/5) * 4/7 over 8 edges
    assert sq.expected_random_agreement() == pytest.approx(11 / 120, abs=1e-15)
    assert sq.monte_carlo_agreement(20000, seed=0) == pytest.approx(11 / 120, abs=0.004)
    assert sq.expected_random_agreement(nodes=2, n_ops=2) == pytest.approx((1 / 2 + 1 / 3) * 2 / 4)


def test_mean_pairwise_agreement():
    a, b = geno(A_CELL), geno([["none_of_these", 9]] * 8)
    assert sq.mean_pairwise_agreement([a]) is None
    assert sq.mean_pairwise_agreement([a, a, b]) == pytest.approx((1 + 0 + 0) / 3)


# ------------------------------------------------------------------------------------------------ movement of A
def test_entropy_drop_and_largest_change_of_A():
    a0 = np.zeros((2, 14, 8))
    a1 = a0.copy()
    a1[0, 3, 4] = 2.0
    move = sq.arch_movement(a0, a1)
    p = np.exp([2.0] + [0.0] * 7) / np.exp([2.0] + [0.0] * 7).sum()
    h_edge = float(-(p * np.log(p)).sum())
    assert move["entropy_start"] == pytest.approx(math.log(8))
    assert move["max_entropy"] == pytest.approx(math.log(8))
    assert move["entropy_drop_max_edge"] == pytest.approx(math.log(8) - h_edge)
    assert move["entropy_drop"] == pytest.approx((math.log(8) - h_edge) / 28)
    assert move["entropy_end"] == pytest.approx(math.log(8) - move["entropy_drop"])
    assert move["max_abs_change"] == pytest.approx(2.0)
    # shifting a whole edge's logits changes nothing in softmax(A) but is a change of A
    a2 = a0 + 0.5
    assert sq.arch_movement(a0, a2)["entropy_drop"] == pytest.approx(0.0, abs=1e-12)
    assert sq.arch_movement(a0, a2)["max_abs_change"] == pytest.approx(0.5)


# ------------------------------------------------------------------------------------------------ power
def test_mde_formula():
    z = 1.959963984540054 + 0.8416212335729143
    var = 0.01 ** 2  # a seed SD of one point
    assert sq.mde_points(var, 4) == pytest.approx(100 * z * math.sqrt(2 * var / 4))
    assert sq.mde_points(var, 4) == pytest.approx(z / math.sqrt(2))
    assert sq.mde_points(var, 4, extra_var=var) == pytest.approx(100 * z * math.sqrt(2 * var / 4 + var))
    assert sq.mde_points(0.0, 3) == 0.0
    n = sq.seeds_for_mde(var, 1.0)
    assert n == math.ceil(2 * z ** 2) == 16
    assert sq.mde_points(var, n) <= 1.0 < sq.mde_points(var, n - 1)
    assert sq.seeds_for_mde(0.0, 1.0) == 1


def test_seed_noise_pools_within_and_separates_between():
    per_seed = {"a": [0.40, 0.42, 0.44], "b": [0.50, 0.50, 0.53], "c": [0.45, 0.46]}
    noise = sq.seed_noise(per_seed)
    var = [np.var(v, ddof=1) for v in per_seed.values()]
    assert noise["within_var"] == pytest.approx((2 * var[0] + 2 * var[1] + 1 * var[2]) / 5)
    assert noise["within_sd"] == pytest.approx(math.sqrt(noise["within_var"]))
    assert noise["within_df"] == 5
    means = [np.mean(v) for v in per_seed.values()]
    assert noise["between_sd"] == pytest.approx(np.std(means, ddof=1))
    n_h = 3 / (1 / 3 + 1 / 3 + 1 / 2)
    assert noise["between_sd_true"] == pytest.approx(math.sqrt(np.var(means, ddof=1) - noise["within_var"] / n_h))
    assert noise["n_architectures"] == 3 and noise["n_seeds"] == [2, 3]
    assert 0 < noise["anova_p"] < 0.05
    same = sq.seed_noise({"a": [0.4, 0.5], "b": [0.5, 0.4]})
    assert same["between_sd_true"] == 0.0 and same["n_seeds"] == 2


def test_seed_test():
    t = sq.seed_test([0.5, 0.52], [0.4, 0.42], within_var=0.0002, df=10)
    assert t["diff"] == pytest.approx(0.1)
    assert t["ci_low"] < 0.1 < t["ci_high"]
    assert t["p"] < 0.01


# ------------------------------------------------------------------------------------------------ one-hot H
def _genotypes():
    rng = random.Random(0)
    out = [sq.random_genotype(rng, f"r{i}") for i in range(20)]
    return out + [k.genotype.to_dict() for k in known_genotypes().values()]


@pytest.mark.parametrize("rule", ["alpha", "softmax"])
def test_genotype_to_onehot_round_trip(rule):
    for g in _genotypes():
        H = sq.genotype_to_onehot(g)
        assert H.shape == (2, 14, len(PRIMITIVES))
        assert torch.equal(H.sum(-1), torch.ones(2, 14))  # one-hot on every edge
        assert int((H[..., PRIMITIVES.index("none")] == 0).sum()) == 16  # 8 chosen edges per cell
        derived = derive_genotype(H, 4, rule)
        assert sq.edge_agreement(derived, g) == 1.0
        canonical = [sorted(map(tuple, g["normal"][k:k + 2]), key=lambda e: e[1]) for k in range(0, 8, 2)]
        assert [list(e) for e in derived.normal] == [list(e) for pair in canonical for e in pair]


def test_onehot_rejects_two_edges_from_one_input():
    bad = [list(e) for e in A_CELL]
    bad[1] = ["skip_connect", 0]  # node 2 takes input 0 twice
    with pytest.raises(ValueError, match="distinct inputs"):
        sq.genotype_to_onehot(geno(bad, A_CELL))


def test_supernet_runs_the_onehot_subnetwork_with_none_edges():
    torch.manual_seed(0)
    net = SuperNet(2, 10, 3, in_chans=1, mean=(0.5,), std=(0.5,)).eval()
    g = sq.random_genotype(random.Random(3), "g")
    H = sq.genotype_to_onehot(g)
    x = torch.rand(4, 1, 16, 16)
    with torch.no_grad():
        out = net(x, H)
        zeroed = H.clone()
        zeroed[..., PRIMITIVES.index("none")] = 0.0  # `none` edges skipped instead of run as zeros
        assert torch.isfinite(out).all() and out.shape == (4, 10)
        assert torch.allclose(out, net(x, zeroed), atol=1e-6)
        # every edge's `none` output really is zero: an all-`none` H (no chosen edge at all) still runs
        all_none = torch.zeros_like(H)
        all_none[..., PRIMITIVES.index("none")] = 1.0
        assert torch.isfinite(net(x, all_none)).all()


# ------------------------------------------------------------------------------------------------ Kendall tau
def test_bootstrap_tau_on_known_cases():
    x = list(range(12))
    up = sq.kendall_bootstrap(x, [2 * v + 1 for v in x], n_boot=300, seed=0)
    assert up["tau"] == pytest.approx(1.0) and up["ci_low"] == pytest.approx(1.0) and up["ci_high"] == 1.0
    assert up["n"] == 12 and up["valid_boot"] == 300
    down = sq.kendall_bootstrap(x, [-v for v in x], n_boot=300, seed=0)
    assert down["tau"] == pytest.approx(-1.0) and down["ci_high"] == pytest.approx(-1.0)
    rng = np.random.default_rng(1)
    xs = np.arange(30.0)
    ys = xs + rng.normal(0, 8, 30)
    a = sq.kendall_bootstrap(xs, ys, n_boot=500, seed=7)
    assert a == sq.kendall_bootstrap(xs, ys, n_boot=500, seed=7)  # fixed seed, same interval
    assert -1 <= a["ci_low"] < a["tau"] < a["ci_high"] <= 1
    assert 0.3 < a["tau"] < 0.9
    flat = sq.kendall_bootstrap([1, 1, 1], [1, 2, 3], n_boot=20)
    assert math.isnan(flat["tau"]) and flat["valid_boot"] == 0


def test_json_ready_replaces_undefined_numbers():
    assert sq.json_ready({"a": float("nan"), "b": [np.float64(1.5), np.int64(2), float("inf")], "c": "x"}) == {
        "a": None, "b": [1.5, 2, None], "c": "x"}


def test_power_settings_fit_the_brief():
    s = sq.SETTINGS["power"]
    search = s["search_overrides"]
    assert s["wsr_seeds"] >= 3 and s["naive_seeds"] >= 2 and s["train_seeds"] >= 3
    assert search["population"] >= 20 and search["search_steps"] >= 40
    assert search["population"] + search["search_steps"] >= 60
    assert search["search_steps"] * search["arch"]["lr"] == pytest.approx(200 * 3e-5)
    assert s["random"] >= 2 and len(s["published"]) >= 2
    searches, archs = sq.power_jobs(s)
    assert sorted(searches) == ["naive-seed0", "naive-seed1", "wsr-seed0", "wsr-seed1", "wsr-seed2"]
    for raw in searches.values():
        assert raw["search"]["max_parameter_free_normal"] is None and raw["search"]["max_skip_normal"] is None
    # the random genotypes are quick mode's draws
    rng = random.Random(12345)
    assert archs["random-0"][1] == sq.random_genotype(rng, "random-0")


def test_a_cache_takes_more_seeds_and_workers_but_refuses_other_settings(tmp_path):
    s = dict(sq.SETTINGS["power_smoke"])
    sq._check_workdir(tmp_path, s)
    sq._check_workdir(tmp_path, {**s, "train_seeds": s["train_seeds"] + 1, "workers": 3})  # seed k is the same job
    assert json.loads((tmp_path / "settings.json").read_text())["train_seeds"] == s["train_seeds"] + 1
    with pytest.raises(SystemExit, match="caches a run with other settings"):
        sq._check_workdir(tmp_path, {**s, "epochs": s["epochs"] + 1})


# ------------------------------------------------------------------------------------------------ the script
def _run(*args):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, str(SCRIPT), *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=300)


@pytest.mark.slow
def test_power_smoke_renders_again_and_quick_smoke_still_runs(tmp_path):
    out = tmp_path / "power.json"
    proc = _run("--smoke", "--out", str(out))
    assert proc.returncode == 0, proc.stderr[-4000:]
    result = json.loads(out.read_text())
    assert result["power"] and result["smoke"]
    assert {m["kind"] for m in result["models"]} == {"wsr", "naive", "random", "published"}
    assert all(len(m["seeds"]) == 2 for m in result["models"])
    assert {x["method"] for x in result["searches"]} == {"wsr", "naive"}
    assert result["seed_agreement"]["random_expected"] == pytest.approx(11 / 120)
    md = out.with_suffix(".md").read_text()
    out.with_suffix(".md").unlink()
    proc = _run("--power", "--render", "--out", str(out))
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert out.with_suffix(".md").read_text() == md
    quick = tmp_path / "quick.json"
    proc = _run("--smoke", "--quick", "--out", str(quick))
    assert proc.returncode == 0, proc.stderr[-4000:]
    keys = set(json.loads(quick.read_text()))
    assert {"found_percentile", "per_image_scores", "summary", "searches"} <= keys and "seed_noise" not in keys
