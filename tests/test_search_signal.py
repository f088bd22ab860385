"""The search_signal recipe's parts (additive VLE, the expected EWSS query, extra measured draws, the anti-search)
end to end on a tiny super-network, and the planted landscape: the real search loop must respond to a known
signal (and the official recipe's budget must not move A)."""

import json

import pytest
import torch
import yaml
from safetensors.torch import load_file
from test_search import TINY, _Stop, _stop_after

from wsr_bench.config import load_config
from wsr_bench.search import run_search
from wsr_bench.search.planted import PlantedLandscape, run_planted

SIGNAL = ["search.vle.model=additive", "search.vle.op_ridge=1.0", "search.vle.ridge=10", "search.ewss_query=expected",
          "search.vle.store=hard", "search.vle.measure_draws=2", "search.objective_form=linear", "search.arch.lr=0.05",
          "search.vle.memory=1000", "search.arch.weight_decay=0", "search.vle.covariates=true"]


@pytest.fixture(scope="module")
def tiny_yaml(tmp_path_factory):
    path = tmp_path_factory.mktemp("cfg") / "tiny.yaml"
    path.write_text(yaml.safe_dump(TINY))
    return path


def test_signal_recipe_measures_extra_draws_and_resumes_exactly(tiny_yaml, tmp_path):
    cfg = load_config(tiny_yaml, SIGNAL)
    ref = run_search(cfg, tmp_path / "ref")
    records = [json.loads(line) for line in (tmp_path / "ref" / "metrics.jsonl").read_text().splitlines()]
    iterations = [r for r in records if r["phase"] in ("population", "search")]
    assert all(len(r["extra_objectives"]) == 1 for r in iterations)  # measure_draws 2: one more per iteration
    state = torch.load(tmp_path / "ref" / "checkpoint.pt", weights_only=True)
    assert len(state["vle_memory"]["losses"]) == 2 * len(iterations) and "vle_opt" not in state
    trained = state["vle_memory"]["covariates"][:, 0]
    assert trained.tolist() == [1.0, 0.0] * len(iterations)  # the trained draw, then the extra one
    with pytest.raises(_Stop):
        run_search(cfg, tmp_path / "cut", callback=_stop_after(5))  # after the first search step
    assert run_search(cfg, tmp_path / "cut", resume=True) == ref
    assert torch.equal(load_file(str(tmp_path / "cut" / "arch_weights.safetensors"))["arch_weights"],
                       load_file(str(tmp_path / "ref" / "arch_weights.safetensors"))["arch_weights"])


def test_anti_search_steps_the_other_way(tiny_yaml, tmp_path):
    """Same draws, same measurements up to the first step: maximize moves A by minus minimize's first step."""
    a0 = []
    for direction in ("minimize", "maximize"):
        with pytest.raises(_Stop):
            run_search(load_config(tiny_yaml, SIGNAL + [f"search.direction={direction}"]), tmp_path / direction,
                       callback=_stop_after(5))
        hist = torch.load(tmp_path / direction / "checkpoint.pt", weights_only=True)["history"]
        a0.append(hist[-1] - hist[-2])
    assert a0[0].abs().max() > 0.01
    assert torch.allclose(a0[0], -a0[1], atol=1e-6)


def _planted_cfg(tiny_yaml, method, extra):
    return load_config(tiny_yaml, [f"search.method={method}", "search.population=20", "search.search_steps=40",
                                   "search.init_channels=2", *extra])


def test_planted_landscape_is_found_by_the_signal_recipe_not_by_the_official_budget(tiny_yaml, tmp_path):
    """The machinery's response to signal: on a noiseless planted landscape the signal recipe ranks the planted
    best op first on most edges (chance 1/7); the official budget (T x arch_lr = 0.006) leaves A where it started
    (it moves by less than the gap between an edge's ops at init). Fails if the VLE fit, the query, the objective
    or the optimizer stop passing the signal to A."""
    landscape = PlantedLandscape.draw(seed=0, noise_sd=0.0, shared=0.5)
    signal = run_planted(_planted_cfg(tiny_yaml, "wsr", SIGNAL + ["search.vle.measure_draws=3"]), landscape,
                         tmp_path / "signal")
    assert signal["recovered"] >= 0.6 and signal["max_abs_delta"] > 0.5
    official = run_planted(_planted_cfg(tiny_yaml, "wsr", ["search.arch.lr=0.00015", "search.vle.passes=20",
                                                           "search.vle.warmup_passes=50"]), landscape,
                           tmp_path / "official")
    assert official["max_abs_delta"] < 0.01
    # a landscape with no signal gives no recovery beyond chance (the score can fail)
    flat = PlantedLandscape(torch.zeros_like(landscape.costs), noise_sd=1.0)
    none = run_planted(_planted_cfg(tiny_yaml, "wsr", SIGNAL + ["search.vle.measure_draws=3"]), flat, tmp_path / "flat")
    assert none["recovered"] < 0.5


def test_planted_naive_path_follows_the_gradient(tiny_yaml, tmp_path):
    landscape = PlantedLandscape.draw(seed=1, noise_sd=0.0, shared=0.5)
    naive = run_planted(_planted_cfg(tiny_yaml, "naive", ["search.n1=6", "search.n2=0", "search.estimator=none",
                                                          "search.arch.lr=0.05", "search.objective_form=linear",
                                                          "search.tau=1.0"]), landscape, tmp_path / "naive")
    assert naive["recovered"] > 1 / 7 + 0.15


def test_planted_landscape_bad_input():
    with pytest.raises(ValueError, match="noise_sd must be >= 0"):
        PlantedLandscape.draw(noise_sd=-1.0)
    with pytest.raises(ValueError, match="shared in"):
        PlantedLandscape.draw(shared=1.5)


def test_a_checkpoint_written_before_a_key_existed_resumes_with_its_default(tiny_yaml, tmp_path):
    """Keys added to the search section later (direction, measure_draws, vle_model ...) read as their defaults in
    an older checkpoint, so a finished older search still resumes; a changed value is still refused."""
    from wsr_bench.search import SearchCheckpointError
    from wsr_bench.search.state import SearchFolder

    cfg = load_config(tiny_yaml)
    run_search(cfg, tmp_path / "old")
    folder = SearchFolder(tmp_path / "old")
    state = torch.load(folder.checkpoint, weights_only=True)
    del state["config"]["search"]["direction"]
    for key in ("measure_draws", "model", "covariates"):
        del state["config"]["search"]["vle"][key]
    torch.save(state, folder.checkpoint)
    assert run_search(cfg, tmp_path / "old", resume=True) is not None
    with pytest.raises(SearchCheckpointError, match="search.direction"):
        run_search(load_config(tiny_yaml, ["search.direction=maximize"]), tmp_path / "old", resume=True)


def test_a_checkpoint_written_with_flat_search_keys_resumes(tiny_yaml, tmp_path):
    """A checkpoint written before the search section had its ane / vle / arch / weights sections holds flat keys
    (ane_batch, vle_passes, weight_lr, grad_clip ...); it compares as the same settings in today's layout, so it
    resumes, and a changed value in a section is still refused under its new name."""
    from wsr_bench.config import SEARCH_SECTION_KEYS
    from wsr_bench.search import SearchCheckpointError
    from wsr_bench.search.state import SearchFolder

    cfg = load_config(tiny_yaml)
    first = run_search(cfg, tmp_path / "old")
    folder = SearchFolder(tmp_path / "old")
    state = torch.load(folder.checkpoint, weights_only=True)
    search = state["config"]["search"]
    for old, (section, name) in SEARCH_SECTION_KEYS.items():
        search[old] = search[section][name]
    for section in ("ane", "vle", "arch", "weights"):
        del search[section]
    torch.save(state, folder.checkpoint)
    assert run_search(cfg, tmp_path / "old", resume=True) == first
    with pytest.raises(SearchCheckpointError, match="search.ane.batch"):
        run_search(load_config(tiny_yaml, ["search.ane.batch=5"]), tmp_path / "old", resume=True)


def _search_signal_module():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "search_signal.py"
    spec = importlib.util.spec_from_file_location("search_signal_under_test", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_one_way_icc_matches_the_anova_formula():
    """ICC(1) = (MSB - MSW) / (MSB + (k - 1) MSW), worked by hand for a 3 x 2 table; split halves of 2 seeds are the
    two seeds' rankings."""
    import numpy as np

    module = _search_signal_module()

    rel = module.one_way_icc(np.array([[1.0, 3.0], [5.0, 7.0], [9.0, 9.0]]))
    msb, msw = 2 * np.var([2.0, 6.0, 9.0], ddof=1), 4.0 / 3.0
    assert rel["within_var"] == pytest.approx(msw)
    assert rel["between_var"] == pytest.approx((msb - msw) / 2)
    assert rel["icc"] == pytest.approx((msb - msw) / (msb + msw))
    assert rel["split_half_tau"] == pytest.approx(1.0)
    flat = module.one_way_icc(np.array([[1.0, 2.0], [2.0, 1.0]]))  # no between-architecture variance
    assert flat["icc"] == 0.0 and flat["between_var"] == 0.0


def test_op_mix_calibration_recovers_planted_op_effects_and_its_curve_rises():
    """A target that is a known additive function of each cell's op counts (plus a little noise) is ranked well
    leave-one-out, the fitted effects have the planted signs, and ranking from more trainings is better on average;
    a target of pure noise is not ranked."""
    import random

    import numpy as np

    module = _search_signal_module()
    rng = random.Random(0)
    genotypes = [module.sq.random_genotype(rng, f"random-{k}") for k in range(30)]
    effect = {"sep_conv_3x3": 0.02, "skip_connect": -0.02}
    target = np.array([sum(effect.get(op, 0.0) for c in ("normal", "reduce") for op, _ in g[c]) for g in genotypes])
    noisy = target + np.random.default_rng(0).normal(0, 0.002, len(target))
    cal = module.op_mix_calibration(genotypes, noisy, ridge=1e-3, sizes=(8, 20), repeats=50)
    from scipy.stats import kendalltau

    assert kendalltau(cal["predicted"], noisy)[0] > 0.6
    assert cal["op_points"]["normal/sep_conv_3x3"] > 1.0 and cal["op_points"]["reduce/skip_connect"] < -1.0
    assert [c["trained"] for c in cal["curve"]] == [8, 20]
    assert cal["curve"][1]["tau_mean"] > cal["curve"][0]["tau_mean"] > 0.3
    null = module.op_mix_calibration(genotypes, np.random.default_rng(1).normal(0, 1, 30), ridge=10.0)
    assert abs(kendalltau(null["predicted"], np.random.default_rng(1).normal(0, 1, 30))[0]) < 0.4


def test_size_matched_calibrated_cells_keep_the_inputs_the_size_and_the_order():
    """The size-matched best and worst cells keep the reference's inputs, their real parameter counts (the model
    built) lie within the tolerance (so the per-edge parameter sum they were chosen by is exact), and the best has
    the larger fitted effect; the unmatched ones use one op per cell type."""
    import random

    module = _search_signal_module()
    retrain = module.sq.SETTINGS["power_smoke"]
    reference = module.sq.random_genotype(random.Random(3), "ref")
    ops = module.sq.NON_NONE_OPS
    points = {f"{c}/{o}": (k - 3.0) * (1 if c == "normal" else -1) for c in ("normal", "reduce")
              for k, o in enumerate(ops)}
    size = module.cell_params(reference, retrain)
    made = module.size_matched_calibrated_cells(points, reference, size, retrain, tolerance=0.1, draws=3000)

    def effect(g):
        return sum(points[f"{c}/{op}"] for c in ("normal", "reduce") for op, _ in g[c])

    best, worst = made["calibrated-matched-best"], made["calibrated-matched-worst"]
    for g in (best, worst):
        assert [src for _, src in g["normal"]] == [src for _, src in reference["normal"]]
        assert abs(module.cell_params(g, retrain) - size) <= 0.1 * size
    assert effect(best) > effect(worst)
    plain = module.calibrated_cells(points, reference)
    assert {op for op, _ in plain["calibrated-best"]["normal"]} == {ops[-1]}
    assert {op for op, _ in plain["calibrated-worst"]["reduce"]} == {ops[-1]}
    with pytest.raises(RuntimeError, match="no op assignment"):
        module.size_matched_calibrated_cells(points, reference, 10 * size, retrain, tolerance=0.01, draws=50)
