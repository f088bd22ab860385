"""Search signal: does the search move, agree with itself and follow a signal? The official recipe's verdict, a
planted landscape, and configs/search_signal.yaml measured against it.

Parts (each cached in ``--workdir``, resumable after a kill, merged into one results file):

- ``official``: the official recipe at the search-quality benchmark's size (``search_quality.py --power``'s
  searches: Fashion-MNIST 16x16, C=4 super-network, population 20, 40 steps, T x arch_lr = 0.006), 3 seeds. Per edge,
  whether argmax(A_T) equals argmax(A_0) (``init_match``) and argmax(A_T - A_0) (``delta_match``), the correlation of
  A_T - A_0 across seeds; test-retest of the measurement the search learns from (40 draws from seed 0's final
  super-network, each measured twice as the search measures it: disjoint validation images and another BatchNorm
  calibration batch; Kendall tau of the two objectives); whether the VLE's gradient points the right way (40 draws:
  on the edge where the gradient's spread over the non-``none`` ops is largest, the op it rates best and the op it
  rates worst are each put on the edge and measured; the share of draws where the measured objective is lower with
  the op rated best; chance 0.5).
- ``planted``: the real search loop on a planted landscape (:mod:`wsr_bench.search.planted`) for the official
  recipe, configs/search_signal.yaml and the naive path, over noise SD and budget; the share of edges recovered.
- ``recipe``: configs/search_signal.yaml with 6 seeds: movement, entropy drop, seed agreement, test-retest as above;
  the one-shot Kendall tau of seed 0's super-network against the stand-alone scores of the 17 architectures of
  ``search_quality_power.json`` and of found and anti-found cells trained the same way (4 seeds each).
- ``fidelity``: the recipe with a longer-trained super-network (6,000 instead of 384 training images per search
  epoch), 2 seeds: its movement and seed agreement, and the one-shot Kendall tau of its super-network over the same
  stand-alone set as ``recipe``'s: does a better-trained super-network rank cells as stand-alone training does?
- ``scale``: the retraining-scale pilot: reliability (one seed's ICC, split-half Kendall tau) of 6 of the power
  benchmark's architectures at 2 seeds at its scale and with twice the epochs, per model CPU-second, and the
  method-level MDE of the designed 12 vs 12 cells at 2 seeds at each scale.
- ``target``: the one-shot Kendall tau against a stand-alone target that can show one: every architecture of the
  stand-alone set (the power benchmark's 17, the recipe's, the anti-search's and the fidelity variants' found cells)
  retrained at the scale the ``scale`` pilot chose (6 epochs) at 2 seeds (the pilot's models are reused); the
  one-shot scores of the recipe's and of each fidelity variant's seed-0 super-network ranked against it, the
  target's own reliability over every architecture, and the found-minus-anti difference at that scale.
- ``finetune``: a measurement other than the raw one-shot loss: every architecture of the stand-alone set as a
  one-hot sub-network at the super-network's size, adversarially trained for 1 epoch with the stand-alone recipe from
  the recipe's seed-0 super-network's weights and, as the control at the same cost, from a fresh initialisation;
  both ranked against the ``target`` (with the raw one-shot scores beside them).
- ``controls``: the anti-search (the recipe maximising its objective) and size-matched random cells (uniform draws
  accepted within +-5% of a found cell's parameter count), their parameter-free edge counts against expectation,
  and the method-level differences that have been trained so far.

Run: ``python benchmarks/search_signal.py [--part official|planted|recipe|fidelity|scale|target|finetune|controls|all]
[--workers 2]``;
``--smoke`` runs every part at toy sizes on digits in seconds.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import fcntl
import json
import math
import random
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import search_quality as sq  # noqa: E402
from _common import load_average, machine_record, smoke_out  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
PARTS = ("official", "planted", "recipe", "fidelity", "scale", "target", "finetune", "calibrated", "controls")

SETTINGS: dict[str, dict[str, Any]] = {
    "full": {
        "official_seeds": 3, "recipe_seeds": 6, "anti_seeds": 2, "draws": 40, "draw_seed": 123,
        "recipe_config": "configs/search_signal.yaml", "recipe_overrides": {},
        "official": sq.SETTINGS["power"],  # its search section and its retraining scale
        "planted": {"noise_sd": [0.0, 1.0, 2.0, 4.0], "steps": [40, 120], "shared": [0.0, 0.5], "seeds": [0],
                    "population": 20, "lstm_steps": [40]},  # the official LSTM VLE costs minutes per run at T=120
        "retrain": sq.SETTINGS["power"], "retrain_found": 3, "retrain_anti": 2, "retrain_random": 0,
        "param_tolerance": 0.05, "power_results": "benchmarks/results/search_quality_power.json",
        "bootstrap": 2000, "workers": 2,
        # the recipe with a longer-trained super-network: 6,000 instead of 384 training images per search epoch
        "fidelity": {"seeds": [0, 1], "retrain_found": 2,
                     "variants": {"train_limit_6000": {"search": {"train_limit": 6000}}}},
        # retraining-scale pilot: 6 of the power benchmark's architectures (evenly spaced by score) at 2 seeds, at
        # its scale (read from its results) and with twice the epochs
        "scale": {"architectures": 6, "seeds": [0, 1], "variants": {"epochs_6": {"epochs": 6}}},
        # the stand-alone target at the scale the pilot chose (one of ``scale``'s variants), seed-major
        "target": {"scale": "epochs_6", "seeds": [0, 1]},
        # a measurement other than the raw one-shot loss: each architecture as a one-hot sub-network at the
        # super-network's size, its weights inherited from the recipe's seed-0 super-network or freshly initialised
        # (the control at the same cost), adversarially trained for ``epochs`` with the stand-alone recipe
        "finetune": {"supernet": "recipe", "epochs": [1, 3], "arms": ["inherit", "scratch"],
                     "calibration_sizes": [6, 12, 18]},
        # does the op-count calibration extrapolate? the cells it rates best and worst (``reference``'s inputs, one
        # op per cell type), retrained like the target; the size-matched pair also with ``matched_seeds`` (seeds 2-5
        # were added after its first 2 seeds gave +0.52 points, p 0.11, before any of them was trained)
        "calibrated": {"reference": "wsrnet_basic", "param_tolerance": 0.05, "matched_draws": 200000,
                       "matched_seeds": [0, 1, 2, 3, 4, 5]},
    },
    "smoke": {
        "official_seeds": 2, "recipe_seeds": 2, "anti_seeds": 1, "draws": 4, "draw_seed": 123,
        "recipe_config": "configs/search_signal.yaml",
        "recipe_overrides": {"data": {"name": "digits"},
                             "search": {"init_channels": 2, "population": 2, "search_steps": 2, "train_limit": 32,
                                        "val_limit": 16, "train_steps": 1, "attack_steps": 1, "bn_batches": 1,
                                        "ane": {"batch": 4}, "vle": {"measure_draws": 2}}},
        "official": sq.SETTINGS["power_smoke"],
        "planted": {"noise_sd": [0.0, 2.0], "steps": [4], "shared": [0.5], "seeds": [0], "population": 4,
                    "lstm_steps": [4]},
        "retrain": sq.SETTINGS["power_smoke"], "retrain_found": 1, "retrain_anti": 1, "retrain_random": 1,
        "param_tolerance": 0.5, "power_results": None, "bootstrap": 100, "workers": 0,
        "fidelity": {"seeds": [0, 1], "retrain_found": 1,
                     "variants": {"train_limit_64": {"search": {"train_limit": 64}}}},
        "scale": {"architectures": 3, "seeds": [0, 1], "variants": {"epochs_2": {"epochs": 2}}},
        "target": {"scale": "epochs_2", "seeds": [0, 1]},
        "finetune": {"supernet": "recipe", "epochs": [1], "arms": ["inherit", "scratch"], "calibration_sizes": [2]},
        "calibrated": {"reference": "recipe-seed0", "param_tolerance": 0.2, "matched_draws": 2000,
                       "matched_seeds": [0, 1, 2]},
    },
}


# ------------------------------------------------------------------------------------------------ configs
def official_config(s: dict[str, Any], seed: int) -> dict[str, Any]:
    """The official recipe at the power benchmark's size (its ``search_config``)."""
    return sq.search_config(s["official"], "wsr", seed)


def recipe_config(s: dict[str, Any], seed: int, direction: str = "minimize",
                  variant: dict[str, dict[str, Any]] | None = None) -> dict[str, Any]:
    """configs/search_signal.yaml with ``seed`` (and ``direction``), as ``wsr-bench search ... --set seed=K`` runs
    it, with the smoke sizes and then a fidelity ``variant``'s values merged in."""
    from wsr_bench.config import config_to_dict, load_config

    raw = config_to_dict(load_config(ROOT / s["recipe_config"], [f"seed={seed}", "search.progress=false",
                                                                 f"search.direction={direction}"]))
    for overrides in (s["recipe_overrides"], variant or {}):
        raw = sq.merged(raw, overrides)
    return raw


# ------------------------------------------------------------------------------------------------ workers
@contextlib.contextmanager
def folder_lock(folder: Path):
    """An exclusive lock beside a search folder (``<folder>.lock``), as the shell lanes take with ``flock``: two
    processes never resume the same search at once."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    with open(f"{folder}.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def search_job(raw: dict[str, Any], out: str) -> dict[str, Any]:
    """Worker: one search (resumed where it stopped), then what every part reads of it: A at the start and end,
    the genotype, the measured architectures, the search's own time."""
    import torch

    from wsr_bench.config import config_from_dict
    from wsr_bench.infra.checkpoint import load_checkpoint
    from wsr_bench.search import run_search

    torch.set_num_threads(1)
    folder = Path(out)
    c0 = time.process_time()
    with folder_lock(folder):
        genotype = run_search(config_from_dict(copy.deepcopy(raw)), folder, resume=True)
    state = load_checkpoint(folder / "checkpoint.pt")
    memory = state.get("vle_memory", {})
    return {"genotype": genotype.to_dict(), "a0": state["history"][0].tolist(), "a_t": state["history"][-1].tolist(),
            "measured_architectures": int(len(memory["losses"])) if "losses" in memory else 0,
            "search_seconds": float(state["elapsed"]), "cpu_seconds": time.process_time() - c0}


def _engine(raw: dict[str, Any], search_dir: str, tmp: str):
    """The search's engine with its final state (super-network, A, estimators) loaded from the checkpoint."""
    from wsr_bench.config import config_from_dict
    from wsr_bench.infra.checkpoint import load_checkpoint
    from wsr_bench.search.wsr_nas import WsrSearch

    engine = WsrSearch(config_from_dict(copy.deepcopy(raw)), tmp)
    engine.load_state_dict(load_checkpoint(Path(search_dir) / "checkpoint.pt"))
    return engine


def _measured_objective(engine, H) -> float:
    """The objective of sub-network ``H`` measured as the search measures it (BatchNorm re-estimated, PGD anchors
    and estimated noises on the engine's D_v images)."""
    engine.recalibrate_bn(H)
    return float(engine.objective(engine.measure(H, {})))


def test_retest_job(raw: dict[str, Any], search_dir: str, draws: int, seed: int) -> dict[str, Any]:
    """Worker: ``draws`` architectures drawn from the final A, each measured twice: on the search's D_v images
    and BatchNorm batches, then on as many other D_v images with BatchNorm batches further on in D_t."""
    import torch
    from scipy.stats import kendalltau
    from torch.utils.data import Subset

    from wsr_bench.data.datasets import as_tensors

    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory(prefix="retest_") as tmp:
        engine = _engine(raw, search_dir, tmp)
        engine.generator = torch.Generator().manual_seed(seed)
        samples = [engine.sample_arch().hard for _ in range(draws)]
        n = len(engine.y_v)
        x, y = (t.to(engine.device) for t in as_tensors(engine.splits.train_v, 2 * n))
        runs = []
        for half, (xs, ys) in enumerate(((x[:n], y[:n]), (x[n:], y[n:]))):
            engine.x_v, engine.y_v = xs, ys
            start = half * len(engine.train_set)
            engine.train_set = Subset(engine.splits.train_t, range(start, start + len(engine.train_set)))
            runs.append([_measured_objective(engine, H) for H in samples])
    tau, p = kendalltau(runs[0], runs[1])
    return {"tau": float(tau), "p_value": float(p), "n": draws, "images_per_measurement": n,
            "first": runs[0], "second": runs[1]}


def gradient_job(raw: dict[str, Any], search_dir: str, draws: int, seed: int) -> dict[str, Any]:
    """Worker: does the VLE's gradient point the right way? Per draw, the gradient of the estimated objective at
    the draw as M_v stores it; on the edge with the largest spread of the gradient over the non-``none`` ops, the
    draw with the op the gradient rates best and with the op it rates worst are both measured."""
    import torch

    from wsr_bench.search_space.ops import PRIMITIVES

    torch.set_num_threads(1)
    none = PRIMITIVES.index("none")
    rows = []
    with tempfile.TemporaryDirectory(prefix="gradient_") as tmp:
        engine = _engine(raw, search_dir, tmp)
        engine.generator = torch.Generator().manual_seed(seed)
        for _ in range(draws):
            sample = engine.sample_arch()
            H = engine.stored(sample).clone().to(engine.device).requires_grad_(True)
            (g,) = torch.autograd.grad(engine.objective(engine.vle(H)), [H])
            g = g.detach().cpu().clone()
            g[..., none] = float("nan")
            spread = torch.nan_to_num(g, nan=-float("inf")).amax(-1) - torch.nan_to_num(g, nan=float("inf")).amin(-1)
            c, e = divmod(int(spread.argmax()), spread.shape[1])
            best = int(torch.nan_to_num(g[c, e], nan=float("inf")).argmin())
            worst = int(torch.nan_to_num(g[c, e], nan=-float("inf")).argmax())
            measured = {}
            for name, op in (("best", best), ("worst", worst)):
                Hx = sample.hard.clone()
                Hx[c, e] = 0.0
                Hx[c, e, op] = 1.0
                measured[name] = _measured_objective(engine, Hx)
            rows.append({"cell": c, "edge": e, "best_op": PRIMITIVES[best], "worst_op": PRIMITIVES[worst],
                         "gradient_gap": float(g[c, e, worst] - g[c, e, best]), **measured,
                         "agrees": measured["best"] < measured["worst"]})
    agree = sum(r["agrees"] for r in rows)
    return {"share": agree / len(rows), "n": len(rows), "agree": agree, "rows": rows}


def planted_job(raw: dict[str, Any], landscape: dict[str, Any], out: str) -> dict[str, Any]:
    """Worker: one search on a planted landscape (:func:`wsr_bench.search.planted.run_planted`)."""
    import shutil

    import torch

    from wsr_bench.config import config_from_dict
    from wsr_bench.search.planted import PlantedLandscape, run_planted

    torch.set_num_threads(1)
    shutil.rmtree(out, ignore_errors=True)
    t0 = time.process_time()
    result = run_planted(config_from_dict(copy.deepcopy(raw)), PlantedLandscape.draw(**landscape), out)
    shutil.rmtree(out, ignore_errors=True)
    return {**{k: v for k, v in result.items() if k != "recovered_by_task"}, "cpu_seconds": time.process_time() - t0}


def retrain_job(name: str, genotype: dict[str, Any], retrain: dict[str, Any], workdir: str, seed: int):
    """Worker: the power benchmark's stand-alone training and PGD spectrum (``search_quality.train_and_attack``)."""
    return sq.train_and_attack(name, genotype, retrain, workdir, seed, data_seed=retrain["data_seed"])


def finetune_job(raw: dict[str, Any], search_dir: str | None, archs: dict[str, dict[str, Any]],
                 settings: dict[str, Any], cache_dir: str) -> list[str]:
    """Worker: every architecture of ``archs`` (name -> genotype) as a one-hot sub-network at the super-network's
    size, with the weights of the final super-network of the search in ``search_dir`` (inherited) or, when it is
    ``None``, of a freshly initialised one (the search's own initialisation: the control at the same cost); each is
    adversarially trained for ``settings['epochs']`` as the stand-alone models are (``search_quality``'s recipe,
    images and spectrum) and written to ``cache_dir/<name>.json`` as it lands. Returns the names."""
    import torch

    from wsr_bench.config import config_from_dict
    from wsr_bench.infra.atomic import atomic_write_json
    from wsr_bench.infra.checkpoint import load_checkpoint
    from wsr_bench.search.wsr_nas import WsrSearch
    from wsr_bench.search_space.supernet import FixedArchitecture

    torch.set_num_threads(1)
    cache = Path(cache_dir)
    todo = {k: v for k, v in archs.items() if not (cache / f"{k}.json").is_file()}
    if not todo:
        return []
    s, seed = settings, settings["data_seed"]
    splits = sq.standalone_splits(s, seed)
    with tempfile.TemporaryDirectory(prefix="finetune_") as tmp:
        engine = WsrSearch(config_from_dict(copy.deepcopy(raw)), tmp)
        if search_dir is not None:
            engine.load_state_dict(load_checkpoint(Path(search_dir) / "checkpoint.pt"))
        for name, geno in todo.items():
            H = sq.genotype_to_onehot(geno, engine.supernet.nodes)
            model = FixedArchitecture(copy.deepcopy(engine.supernet), H)
            torch.manual_seed(seed)
            res = sq.train_and_attack_model(name, model, splits, s, str(cache / "work"), seed)
            res["params"] = None  # the whole super-network's; the architecture's own is the stand-alone set's
            atomic_write_json(cache / f"{name}.json", sq.json_ready(res))
    return list(todo)


# ------------------------------------------------------------------------------------------------ measures of A
NON_NONE = slice(1, None)  # PRIMITIVES[0] is none


def edge_matches(a0: Any, a_t: Any) -> dict[str, float]:
    """Per edge (both cells), whether the op A_T ranks first among the non-``none`` ops is the one A_0 ranked first
    (init) and the one A_T - A_0 ranks first (delta)."""
    a0, a_t = np.asarray(a0, dtype=float)[..., NON_NONE], np.asarray(a_t, dtype=float)[..., NON_NONE]
    top = a_t.argmax(-1)
    return {"init_match": float((top == a0.argmax(-1)).mean()), "delta_match": float((top == (a_t - a0).argmax(-1)
                                                                                       ).mean())}


def delta_correlation(searches: list[dict[str, Any]]) -> float | None:
    """Mean Pearson correlation over pairs of seeds of the changes A_T - A_0 (every entry of both cells)."""
    deltas = [(np.asarray(r["a_t"]) - np.asarray(r["a0"])).ravel() for r in searches]
    pairs = [float(np.corrcoef(a, b)[0, 1]) for i, a in enumerate(deltas) for b in deltas[i + 1:]]
    return float(np.mean(pairs)) if pairs else None


def summarise_searches(searches: list[dict[str, Any]], seeds: list[int], retrain: dict[str, Any]) -> dict[str, Any]:
    """Movement, matches, agreement and cell sizes of a set of searches (one per seed)."""
    from wsr_bench.search.diagnostics import cell_counts

    rows = []
    for seed, r in zip(seeds, searches, strict=True):
        move = sq.arch_movement(r["a0"], r["a_t"])
        counts = {c: cell_counts(r["genotype"][c])["parameter_free"] for c in ("normal", "reduce")}
        rows.append({"seed": seed, "max_abs_delta": move["max_abs_change"], "entropy_drop": move["entropy_drop"],
                     "entropy_end": move["entropy_end"], **edge_matches(r["a0"], r["a_t"]),
                     "measured_architectures": r["measured_architectures"],
                     "params": cell_params(r["genotype"], retrain), "parameter_free": counts,
                     "genotype": r["genotype"], "cpu_seconds": r["cpu_seconds"],
                     "search_seconds": r["search_seconds"]})
    return {"searches": rows, "seeds": seeds,
            "init_match": float(np.mean([r["init_match"] for r in rows])),
            "delta_match": float(np.mean([r["delta_match"] for r in rows])),
            "delta_corr": delta_correlation(searches),
            "seed_agreement": sq.mean_pairwise_agreement([r["genotype"] for r in searches]),
            "random_expected": sq.expected_random_agreement(),
            "op_mix_agreement": op_mix_agreement([r["genotype"] for r in searches]),
            "op_mix_random_expected": op_mix_random()}


def op_mix_overlap(a: Any, b: Any) -> float:
    """The share of edges two genotypes have in common when only each cell's mix of ops counts (the histogram
    intersection of the ops of the normal cells plus that of the reduce cells, over 16 edges): what seeds can agree
    on when their per-edge choices differ but their op preferences per cell do not."""
    shared = sum(sum((Counter(op for op, _ in ca) & Counter(op for op, _ in cb)).values())
                 for ca, cb in zip(sq._cells(a), sq._cells(b), strict=True))
    return shared / sum(len(c) for c in sq._cells(a))


def op_mix_agreement(genotypes: list[Any]) -> float | None:
    """Mean :func:`op_mix_overlap` over pairs of genotypes."""
    pairs = [(a, b) for i, a in enumerate(genotypes) for b in genotypes[i + 1:]]
    return sum(op_mix_overlap(a, b) for a, b in pairs) / len(pairs) if pairs else None


def op_mix_random(pairs: int = 20000, seed: int = 0) -> float:
    """:func:`op_mix_overlap` expected between two uniform genotypes (Monte Carlo over ``pairs`` pairs)."""
    rng = random.Random(seed)
    return sum(op_mix_overlap(sq.random_genotype(rng, "a"), sq.random_genotype(rng, "b"))
               for _ in range(pairs)) / pairs


def cell_params(genotype: dict[str, Any], retrain: dict[str, Any]) -> int:
    """Parameters of ``genotype`` built at the retraining size (1-channel 16x16 Fashion-MNIST, 10 classes)."""
    import wsr_bench.models  # noqa: F401
    from wsr_bench.models.catalog import create

    model = create("wsrnet", genotype=genotype, init_channels=retrain["init_channels"], layers=retrain["layers"],
                   num_classes=10, in_chans=1)
    return sum(p.numel() for p in model.parameters())


def size_matched_random(target: int, retrain: dict[str, Any], tolerance: float, rng: random.Random,
                        name: str, max_draws: int = 5000) -> tuple[dict[str, Any], int]:
    """A uniform draw from the space accepted only within ``tolerance`` of ``target`` parameters (rejection
    sampling); returns it with the number of draws it took."""
    for k in range(1, max_draws + 1):
        g = sq.random_genotype(rng, name)
        if abs(cell_params(g, retrain) - target) <= tolerance * target:
            return g, k
    raise RuntimeError(f"no uniform draw within {tolerance:.0%} of {target} parameters in {max_draws} draws")


def parameter_free_expected() -> float:
    """Expected parameter-free edges of a uniform cell (3 of the 7 non-``none`` ops, 8 edges)."""
    return 8 * 3 / len(sq.NON_NONE_OPS)


# ------------------------------------------------------------------------------------------------ the parts
class Runner:
    """Runs the parts' jobs in a pool (or inline), caching each result as JSON in ``workdir``."""

    def __init__(self, settings: dict[str, Any], workdir: Path, workers: int):
        self.s, self.workdir, self.workers = settings, workdir, workers

    def cached(self, key: str, fn: Any, *args: Any) -> Any:
        """``fn(*args)`` once: its result is stored as ``workdir/cache/<key>.json``."""
        path = self.workdir / "cache" / f"{key}.json"
        if path.is_file():
            return json.loads(path.read_text())
        t0 = time.perf_counter()
        result = fn(*args)
        from wsr_bench.infra.atomic import atomic_write_json

        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json(path, sq.json_ready(result))
        print(f"done {key} in {time.perf_counter() - t0:.1f}s", flush=True)
        return json.loads(path.read_text())

    def map(self, jobs: dict[str, tuple[Any, ...]]) -> dict[str, Any]:
        """Run ``{key: (fn, *args)}`` (cached ones are read), ``workers`` at a time."""
        todo = {k: v for k, v in jobs.items() if not (self.workdir / "cache" / f"{k}.json").is_file()}
        if todo and self.workers > 0:
            with sq.executor(min(self.workers, len(todo))) as pool:
                futures = {k: pool.submit(self.cached, k, *v) for k, v in todo.items()}
                for f in futures.values():
                    f.result()
        return {k: self.cached(k, *v) for k, v in jobs.items()}

    def searches(self, kind: str, seeds: list[int], config: Any) -> list[dict[str, Any]]:
        jobs = {f"search-{kind}-seed{k}": (search_job, config(k), str(self.workdir / kind / f"seed{k}"))
                for k in seeds}
        return list(self.map(jobs).values())


def measured_searches(r: Runner, kind: str, config: Any) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The searches of one recipe (``kind``: official or recipe; ``config(seed)`` their raw configs), summarised,
    with the test-retest and gradient-direction checks on seed 0's final super-network."""
    s = r.s
    seeds = list(range(s[f"{kind}_seeds"]))
    searches = r.searches(kind, seeds, config)
    raw0, dir0 = config(0), str(r.workdir / kind / "seed0")
    checks = r.map({f"{kind}-retest": (test_retest_job, raw0, dir0, s["draws"], s["draw_seed"]),
                    f"{kind}-gradient": (gradient_job, raw0, dir0, s["draws"], s["draw_seed"])})
    retest, gradient = checks[f"{kind}-retest"], checks[f"{kind}-gradient"]
    return searches, {**summarise_searches(searches, seeds, s["retrain"]), "test_retest_tau": retest["tau"],
                      "test_retest": _drop(retest, "first", "second"), "gradient_sign_agreement": gradient["share"],
                      "gradient": _drop(gradient, "rows"), "gradient_rows": gradient["rows"]}


def part_official(r: Runner) -> dict[str, Any]:
    _, out = measured_searches(r, "official", lambda k: official_config(r.s, k))
    return {**out, "config": dict(official_config(r.s, 0)["search"])}


def _drop(d: dict[str, Any], *keys: str) -> dict[str, Any]:
    return {k: v for k, v in d.items() if k not in keys}


def planted_configs(s: dict[str, Any], steps: int) -> dict[str, tuple[str, dict[str, Any]]]:
    """The recipes run on planted landscapes, at ``steps`` search steps: (recipe, method) -> raw config."""
    p = s["planted"]
    official = official_config(s, 0)
    official["search"].update(population=p["population"], search_steps=steps, init_channels=2)
    official["search"]["arch"] = {**official["search"]["arch"], "lr": 0.006 / steps}
    recipe = recipe_config(s, 0)
    recipe["search"].update(population=p["population"], search_steps=steps, init_channels=2)
    naive = copy.deepcopy(recipe)
    naive["search"].update(method="naive", n1=len(naive["search"]["strengths"]), n2=0, estimator="none", tau=1.0)
    naive_official = copy.deepcopy(official)
    naive_official["search"].update(method="naive", n1=6, n2=0, estimator="none")
    for raw in (official, recipe, naive, naive_official):  # (one_draw is copied from recipe below)
        raw["data"] = {**raw["data"], "name": "digits"}  # no training: the data only sizes the loop
        raw["search"].update(train_limit=8, val_limit=16, progress=False)
    one_draw = copy.deepcopy(recipe)  # the recipe measuring only the trained draw, as the official loop does
    one_draw["search"]["vle"] = {**one_draw["search"]["vle"], "measure_draws": 1}
    return {"official/wsr": official, "official/naive": naive_official, "search_signal/wsr": recipe,
            "search_signal/naive": naive, "search_signal_one_draw/wsr": one_draw}


def part_planted(r: Runner) -> list[dict[str, Any]]:
    p, jobs, meta = r.s["planted"], {}, {}
    for steps in p["steps"]:
        for name, raw in planted_configs(r.s, steps).items():
            lstm = raw["search"]["method"] == "wsr" and raw["search"].get("vle", {}).get("model", "lstm") == "lstm"
            if lstm and steps not in p["lstm_steps"]:
                continue
            for noise in p["noise_sd"]:
                for shared in p["shared"]:
                    for seed in p["seeds"]:
                        key = f"planted-{name.replace('/', '-')}-T{steps}-noise{noise:g}-shared{shared:g}-seed{seed}"
                        landscape = {"seed": seed, "noise_sd": noise, "shared": shared}
                        jobs[key] = (planted_job, raw, landscape, str(r.workdir / "planted" / key))
                        recipe, method = name.split("/")
                        meta[key] = {"recipe": recipe, "method": method, "noise_sd": noise, "steps": steps,
                                     "shared": shared, "landscape_seed": seed}
    results = r.map(jobs)
    return [{**meta[k], "recovered": v["recovered"], "max_abs_delta": v["max_abs_delta"],
             "cpu_seconds": v["cpu_seconds"]} for k, v in results.items()]


def part_recipe(r: Runner) -> dict[str, Any]:
    searches, out = measured_searches(r, "recipe", lambda k: recipe_config(r.s, k))
    out = {"config": r.s["recipe_config"], **out}
    out["oneshot_kendall_tau"], out["oneshot"] = oneshot_tau(r, searches, recipe_config(r.s, 0),
                                                             str(r.workdir / "recipe" / "seed0"))
    return out


def standalone_scores(r: Runner, searches: dict[str, list[dict[str, Any]]],
                      counts: dict[str, int] | None = None) -> dict[str, dict[str, Any]]:
    """Seed-averaged stand-alone scores: the power benchmark's 17 architectures (from its committed results) and the
    first found cells of each kind of search here (``counts``: kind -> how many; by default the recipe's and the
    anti-search's), trained at the same scale with as many seeds."""
    s, out = r.s, {}
    counts = counts or {"recipe": s["retrain_found"], "anti": s["retrain_anti"]}
    retrain = s["retrain"]
    if s["power_results"] and (ROOT / s["power_results"]).is_file():
        for m in json.loads((ROOT / s["power_results"]).read_text())["models"]:
            out[m["name"]] = {"kind": m["kind"], "genotype": m["genotype"], "avg_robust_acc": m["avg_robust_acc"],
                              "params": m["params"], "seeds": len(m["seeds"]) if isinstance(m["seeds"], list)
                              else m["seeds"], "source": s["power_results"]}
    cells = {}
    for kind, count in counts.items():
        for k, res in enumerate(searches.get(kind, [])[:count]):
            cells[f"{kind}-seed{k}"] = (kind, res["genotype"])
    rng = random.Random(0)
    for k in range(s["retrain_random"]):
        target = cell_params(searches["recipe"][k % len(searches["recipe"])]["genotype"], retrain)
        g, _ = size_matched_random(target, retrain, s["param_tolerance"], rng, f"matched-{k}")
        cells[f"matched-{k}"] = ("matched_random", g)
    seeds = list(range(retrain["train_seeds"]))
    jobs = {f"model-{name}-seed{seed}": (retrain_job, f"{name}-seed{seed}", g, retrain, str(r.workdir / "models"),
                                         seed) for name, (_, g) in cells.items() for seed in seeds}
    trained = r.map(jobs)
    for name, (kind, g) in cells.items():
        runs = [trained[f"model-{name}-seed{seed}"] for seed in seeds]
        per_seed = [float(np.mean(m["scores"])) for m in runs]
        out[name] = {"kind": kind, "genotype": g, "avg_robust_acc": float(np.mean(per_seed)), "per_seed": per_seed,
                     "params": runs[0]["params"], "seeds": len(seeds), "source": "trained here",
                     "cpu_seconds": sum(m["train_cpu_seconds"] + m["eval_cpu_seconds"] for m in runs)}
    return out


def oneshot_tau(r: Runner, searches: list[dict[str, Any]], raw: dict[str, Any], search_dir: str,
                cache_name: str = "oneshot", extra: dict[str, tuple[list[dict[str, Any]], int]] | None = None
                ) -> tuple[dict[str, Any], dict[str, Any]]:
    """Kendall tau between the one-shot average robust accuracy under the final super-network of the search in
    ``search_dir`` (the recipe's seed 0, or a fidelity variant's) and the stand-alone seed-averaged one, over every
    architecture with a stand-alone score; the one-shot measurements are cached in ``workdir/<cache_name>``.
    ``extra`` (kind -> (searches, how many to retrain)) adds found cells of other searches to the stand-alone set."""
    anti = r.searches("anti", list(range(r.s["anti_seeds"])), lambda k: recipe_config(r.s, k, "maximize"))
    extra = extra or {}
    scores = standalone_scores(r, {"recipe": searches, "anti": anti, **{k: v for k, (v, _) in extra.items()}},
                               {"recipe": r.s["retrain_found"], "anti": r.s["retrain_anti"],
                                **{k: n for k, (_, n) in extra.items()}})
    names = sorted(scores)
    one = oneshot_scores(r, {n: v["genotype"] for n, v in scores.items()}, raw, search_dir, cache_name)
    tau = sq.kendall_bootstrap([one[n]["avg_robust_acc"] for n in names],
                               [scores[n]["avg_robust_acc"] for n in names], n_boot=r.s["bootstrap"])
    detail = {n: {"oneshot_avg_robust_acc": one[n]["avg_robust_acc"], "oneshot_robust_loss": one[n]["robust_loss"],
                  **_drop(scores[n], "genotype")} for n in names}
    return tau, detail


def oneshot_scores(r: Runner, genotypes: dict[str, Any], raw: dict[str, Any], search_dir: str,
                   cache_name: str) -> dict[str, dict[str, Any]]:
    """The one-shot measurements (``search_quality.oneshot_job``) of ``genotypes`` (name -> genotype) under the final
    super-network of the search in ``search_dir``, each cached in ``workdir/<cache_name>/<name>.json`` as it lands;
    the architectures still to measure are split over the workers."""
    cache = r.workdir / cache_name
    cache.mkdir(parents=True, exist_ok=True)
    todo = {n: g for n, g in genotypes.items() if not (cache / f"{n}.json").is_file()}
    if todo:
        settings = {**r.s["retrain"], "dataset": raw["data"]["name"]}
        names = sorted(todo)
        chunks = [c for c in (names[i::max(r.workers, 1)] for i in range(max(r.workers, 1))) if c]
        with folder_lock(Path(search_dir)), sq.executor(r.workers and len(chunks)) as pool:
            for f in [pool.submit(sq.oneshot_job, raw, search_dir, {n: todo[n] for n in c}, settings, str(cache))
                      for c in chunks]:
                f.result()
    return {n: json.loads((cache / f"{n}.json").read_text()) for n in sorted(genotypes)}


def part_fidelity(r: Runner) -> list[dict[str, Any]]:
    """The recipe with a longer-trained super-network (each variant overrides configs/search_signal.yaml's values):
    whether a super-network that has seen more training images ranks architectures as stand-alone training does
    (the one-shot Kendall tau of seed 0's super-network over the same stand-alone set as ``recipe``), and whether
    its seeds then agree. The variants' searches live in ``workdir/fidelity/<variant>/seed<k>``."""
    f = r.s["fidelity"]
    recipe = r.searches("recipe", list(range(r.s["recipe_seeds"])), lambda k: recipe_config(r.s, k))
    rows = []
    for name, variant in f["variants"].items():
        jobs = {f"search-fidelity-{name}-seed{k}": (search_job, recipe_config(r.s, k, variant=variant),
                                                    str(r.workdir / "fidelity" / name / f"seed{k}"))
                for k in f["seeds"]}
        searches = list(r.map(jobs).values())
        kind = f"fidelity-{name}"
        tau, detail = oneshot_tau(r, recipe, recipe_config(r.s, f["seeds"][0], variant=variant),
                                  str(r.workdir / "fidelity" / name / f"seed{f['seeds'][0]}"), f"oneshot-{name}",
                                  extra={kind: (searches, f["retrain_found"])})
        by_kind: dict[str, list[float]] = {}
        for v in detail.values():
            by_kind.setdefault(v["kind"], []).append(v["avg_robust_acc"])
        rows.append({"variant": name, "overrides": variant, **summarise_searches(searches, f["seeds"], r.s["retrain"]),
                     "oneshot_kendall_tau": tau, "oneshot": detail,
                     "found_minus_anti": group_difference(by_kind, kind, "anti"),
                     "found_minus_recipe_found": group_difference(by_kind, kind, "recipe")})
    return rows


def group_difference(by_kind: dict[str, list[float]], a: str, b: str) -> dict[str, Any]:
    """Mean stand-alone score of kind ``a`` minus that of kind ``b`` (points) with a two-sided Mann-Whitney p."""
    from scipy.stats import mannwhitneyu

    xa, xb = by_kind.get(a, []), by_kind.get(b, [])
    if not xa or not xb:
        return {"points": None, "p": None, "n": [len(xa), len(xb)]}
    p = float(mannwhitneyu(xa, xb, alternative="two-sided").pvalue) if len(xa) + len(xb) > 2 else None
    return {"points": 100 * (float(np.mean(xa)) - float(np.mean(xb))), "p": p, "n": [len(xa), len(xb)]}


def one_way_icc(scores: np.ndarray) -> dict[str, float]:
    """Reliability of an (architectures x seeds) score table by one-way ANOVA: the between-architecture variance
    (MSB - MSW) / k (floored at 0), the seed variance MSW, ICC(1) = between / (between + within) (the share of one
    seed's score variance that is between architectures), and the Kendall tau between the architectures' scores under
    two disjoint halves of the seeds (mean over the ways to split them)."""
    from itertools import combinations

    from scipy.stats import kendalltau

    n, k = scores.shape
    msb = k * float(np.var(scores.mean(1), ddof=1))
    msw = float(np.sum((scores - scores.mean(1, keepdims=True)) ** 2) / (n * (k - 1)))
    between = max((msb - msw) / k, 0.0)
    taus = [float(kendalltau(scores[:, list(a)].mean(1), scores[:, [j for j in range(k) if j not in a]].mean(1))[0])
            for a in combinations(range(k), k // 2) if 0 in a]
    return {"icc": between / (between + msw) if between + msw > 0 else 0.0, "between_var": between,
            "within_var": msw, "split_half_tau": float(np.mean(taus))}


def part_scale(r: Runner) -> dict[str, Any]:
    """Retraining-scale pilot: the reliability of stand-alone scores (ICC, split-half tau) of the same architectures
    and seeds at the power benchmark's scale (its committed per-seed scores) and at each variant scale (trained here),
    with the CPU cost of one model and the method-level MDE of the designed 12 vs 12 cells at 2 seeds. Without the
    power benchmark's results (smoke), uniform random cells are drawn and the base scale is trained here too."""
    s, c = r.s, r.s["scale"]
    seeds, keys = c["seeds"], ("epochs", "train_images", "image_size")
    power = ROOT / s["power_results"] if s["power_results"] else None
    variants = dict(c["variants"])
    if power and power.is_file():
        models = sorted(json.loads(power.read_text())["models"], key=lambda m: m["avg_robust_acc"])
        picked = [(m["name"], m["genotype"]) for m in
                  (models[int(i)] for i in np.linspace(0, len(models) - 1, c["architectures"]).round())]
        by_name = {m["name"]: m for m in models}
        base = np.array([[next(x for x in by_name[n]["seeds"] if x["seed"] == k)["avg_robust_acc"] for k in seeds]
                         for n, _ in picked])
        cpu = float(np.mean([x["train_cpu_seconds"] + x["eval_cpu_seconds"] for n, _ in picked
                             for x in by_name[n]["seeds"]]))
        measured = [("power", base, cpu, s["retrain"])]
        power_means = [by_name[n]["avg_robust_acc"] for n, _ in picked]  # all of the power benchmark's seeds
    else:
        rng = random.Random(0)
        picked = [(f"random-{k}", sq.random_genotype(rng, f"random-{k}")) for k in range(c["architectures"])]
        measured, variants, power_means = [], {"power": {}, **variants}, None
    for name, overrides in variants.items():
        retrain = {**s["retrain"], **overrides}
        jobs = {f"scale-{name}-{a}-seed{k}": (retrain_job, f"{a}-seed{k}", g, retrain, str(r.workdir / "scale" / name),
                                              k) for a, g in picked for k in seeds}
        done = r.map(jobs)
        per_seed = np.array([[float(np.mean(done[f"scale-{name}-{a}-seed{k}"]["scores"])) for k in seeds]
                             for a, _ in picked])
        cpu = float(np.mean([v["train_cpu_seconds"] + v["eval_cpu_seconds"] for v in done.values()]))
        measured.append((name, per_seed, cpu, retrain))
    from scipy.stats import kendalltau

    rows = []
    for name, per_seed, cpu, retrain in measured:
        rel = one_way_icc(per_seed)
        # does this scale rank the architectures as the power benchmark's mean over all its seeds does?
        tau_power = float(kendalltau(per_seed.mean(1), power_means)[0]) if power_means else None
        rows.append({"scale": name, "settings": {k: retrain[k] for k in keys}, **rel, "model_cpu_seconds": cpu,
                     "tau_vs_power_means": tau_power,
                     "mde_in_between_sd": (method_mde(rel["between_var"], rel["within_var"], 12, 2)
                                           / (100 * math.sqrt(rel["between_var"])) if rel["between_var"] > 0 else None),
                     "mde_design_points": method_mde(rel["between_var"], rel["within_var"], 12, 2),
                     "design_cpu_hours": 48 * 2 * cpu / 3600,
                     "scores": {a: per_seed[i].tolist() for i, (a, _) in enumerate(picked)}})
    return {"architectures": [a for a, _ in picked], "seeds": seeds, "scales": rows}


def fidelity_searches(r: Runner) -> dict[str, list[dict[str, Any]]]:
    """Each fidelity variant's searches (``fidelity-<variant>`` -> one result per seed), cached by ``fidelity``."""
    f = r.s["fidelity"]
    return {f"fidelity-{name}": list(r.map({f"search-fidelity-{name}-seed{k}": (
        search_job, recipe_config(r.s, k, variant=variant), str(r.workdir / "fidelity" / name / f"seed{k}"))
        for k in f["seeds"]}).values()) for name, variant in f["variants"].items()}


def standalone_set(r: Runner) -> tuple[list[dict[str, Any]], dict[str, list[dict[str, Any]]],
                                        dict[str, dict[str, Any]]]:
    """The recipe's searches, the fidelity variants' and the stand-alone set every one-shot tau is read over (the
    power benchmark's 17 architectures and the found cells of the recipe, the anti-search and each variant)."""
    s = r.s
    recipe = r.searches("recipe", list(range(s["recipe_seeds"])), lambda k: recipe_config(s, k))
    anti = r.searches("anti", list(range(s["anti_seeds"])), lambda k: recipe_config(s, k, "maximize"))
    variants = fidelity_searches(r)
    cells = standalone_scores(r, {"recipe": recipe, "anti": anti, **variants},
                              {"recipe": s["retrain_found"], "anti": s["retrain_anti"],
                               **{k: s["fidelity"]["retrain_found"] for k in variants}})
    return recipe, variants, cells


def target_retrain(s: dict[str, Any]) -> dict[str, Any]:
    """The retraining settings of the stand-alone target: ``retrain`` with the scale ``target.scale`` names."""
    return {**s["retrain"], **s["scale"]["variants"][s["target"]["scale"]]}


def target_scores(r: Runner, cells: dict[str, dict[str, Any]], seeds: list[int]
                  ) -> tuple[dict[str, Any], dict[str, Any], np.ndarray]:
    """The stand-alone target of ``cells`` at ``target.scale`` with ``seeds`` (trained when not cached): the
    retraining settings, every model's result, and the per-seed average robust accuracy (architectures sorted by
    name x seeds)."""
    t = r.s["target"]
    retrain = target_retrain(r.s)
    names = sorted(cells)
    jobs = {f"scale-{t['scale']}-{a}-seed{k}": (retrain_job, f"{a}-seed{k}", cells[a]["genotype"], retrain,
                                                str(r.workdir / "scale" / t["scale"]), k) for k in seeds for a in names}
    done = r.map(jobs)
    per_seed = np.array([[float(np.mean(done[f"scale-{t['scale']}-{a}-seed{k}"]["scores"])) for k in seeds]
                         for a in names])
    return retrain, done, per_seed


def cached_target_seeds(r: Runner, cells: dict[str, dict[str, Any]]) -> list[int]:
    """The target's seeds whose every model is already trained (the finetune part ranks against those)."""
    t = r.s["target"]
    return [k for k in t["seeds"] if all((r.workdir / "cache" / f"scale-{t['scale']}-{a}-seed{k}.json").is_file()
                                         for a in cells)]


def trained_target(r: Runner, part: str, seeds: list[int] | None
                   ) -> tuple[dict[str, dict[str, Any]], list[str], list[int], np.ndarray]:
    """The stand-alone set, its sorted names, the target ``seeds`` (default: those fully trained) and their
    per-seed scores, for a part that ranks against the target without training it (``part`` names it in the error
    when no seed is trained yet)."""
    _, _, cells = standalone_set(r)
    seeds = cached_target_seeds(r, cells) if seeds is None else list(seeds)
    if not seeds:
        raise SystemExit(f"{part}: no target seed is trained yet (run --part target first)")
    _, _, per_seed = target_scores(r, cells, seeds)
    return cells, sorted(cells), seeds, per_seed


def part_target(r: Runner, seeds: list[int] | None = None) -> dict[str, Any]:
    """The one-shot Kendall tau against the stand-alone target at the scale ``scale`` chose: the stand-alone set of
    ``recipe`` and ``fidelity`` retrained at ``target.scale`` with ``seeds`` (default ``target.seeds``; seed-major, so a
    first seed lands for every architecture before the second starts; the pilot's models are reused), then the
    one-shot scores of the recipe's seed-0 super-network and of each fidelity variant's ranked against the seed mean.
    Also: the target's reliability over every architecture (with >= 2 seeds), how the power scale's 4-seed scores
    rank against it, whether it tracks parameter count, and found minus anti-found at this scale."""
    from scipy.stats import kendalltau

    s, t, f = r.s, r.s["target"], r.s["fidelity"]
    seeds = list(t["seeds"] if seeds is None else seeds)
    recipe, variants, cells = standalone_set(r)
    names = sorted(cells)
    supernets = [("recipe seed 0", recipe_config(s, 0), str(r.workdir / "recipe" / "seed0"), "oneshot")]
    supernets += [(f"fidelity {name} seed {f['seeds'][0]}", recipe_config(s, f["seeds"][0], variant=variant),
                   str(r.workdir / "fidelity" / name / f"seed{f['seeds'][0]}"), f"oneshot-{name}")
                  for name, variant in f["variants"].items()]
    oneshot = {label: oneshot_scores(r, {n: cells[n]["genotype"] for n in names}, raw, d, cache)
               for label, raw, d, cache in supernets}
    retrain, done, per_seed = target_scores(r, cells, seeds)
    target = per_seed.mean(1)
    short = [cells[a]["avg_robust_acc"] for a in names]
    by_kind: dict[str, list[float]] = {}
    for a, score in zip(names, target, strict=True):
        by_kind.setdefault(cells[a]["kind"], []).append(float(score))
    return {
        "scale": t["scale"], "settings": {k: retrain[k] for k in ("epochs", "train_images", "image_size")},
        "seeds": seeds, "n": len(names),
        "reliability": one_way_icc(per_seed) if len(seeds) > 1 else None,
        "oneshot": [{"supernet": label,
                     "tau": sq.kendall_bootstrap([one[a]["avg_robust_acc"] for a in names], target.tolist(),
                                                 n_boot=s["bootstrap"]),
                     "tau_vs_power_scale": sq.kendall_bootstrap([one[a]["avg_robust_acc"] for a in names], short,
                                                                n_boot=s["bootstrap"])}
                    for label, one in oneshot.items()],
        "tau_power_scale_vs_target": sq.kendall_bootstrap(short, target.tolist(), n_boot=s["bootstrap"]),
        "tau_params_vs_target": float(kendalltau([cells[a]["params"] for a in names], target)[0]),
        "found_minus_anti": group_difference(by_kind, "recipe", "anti"),
        **{f"{k}_minus_anti": group_difference(by_kind, k, "anti") for k in variants},
        "model_cpu_seconds": float(np.mean([v["train_cpu_seconds"] + v["eval_cpu_seconds"] for v in done.values()])),
        "scores": {a: {"kind": cells[a]["kind"], "params": cells[a]["params"], "per_seed": per_seed[i].tolist(),
                       "power_scale": short[i], **{f"oneshot {label}": one[a]["avg_robust_acc"]
                                                   for label, one in oneshot.items()}}
                   for i, a in enumerate(names)},
    }


def partial_reliability(r: Runner, cells: dict[str, dict[str, Any]]) -> dict[str, Any] | None:
    """The target's reliability (:func:`one_way_icc`) over the architectures whose every ``target.seeds`` model is
    trained so far (None with fewer than 3): what a second seed says before it covers the whole set."""
    t = r.s["target"]
    done = [a for a in sorted(cells) if all((r.workdir / "cache" / f"scale-{t['scale']}-{a}-seed{k}.json").is_file()
                                            for k in t["seeds"])]
    if len(done) < 3 or len(t["seeds"]) < 2:
        return None
    _, _, per_seed = target_scores(r, {a: cells[a] for a in done}, list(t["seeds"]))
    return {"architectures": done, "n": len(done), "seeds": list(t["seeds"]), **one_way_icc(per_seed)}


def op_mix_calibration(genotypes: list[Any], target: np.ndarray, ridge: float, sizes: tuple[int, ...] = (),
                       repeats: int = 200, seed: int = 0) -> dict[str, Any]:
    """Could a few stand-alone trainings calibrate a search? Leave-one-out: a ridge regression (the recipe's own
    ``vle.ridge``) of the target on each cell's op counts (7 ops x normal/reduce, the recipe's per-cell op costs),
    fitted on every other architecture, predicts the one left out; also the per-cell op costs fitted on all. For each
    of ``sizes`` (how many stand-alone trainings a search could afford), ``repeats`` random splits fit on that many
    architectures and rank the rest: the mean Kendall tau and its 5-95% range over splits."""
    from scipy.stats import kendalltau

    from wsr_bench.search_space.ops import PRIMITIVES

    ops = [o for o in PRIMITIVES if o != "none"]
    x = np.array([[sum(op == o for op, _ in g[c]) for c in ("normal", "reduce") for o in ops] for g in genotypes],
                 float)
    y = np.asarray(target, float)

    def fit(xs: np.ndarray, ys: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
        mu = xs.mean(0)
        w = np.linalg.solve((xs - mu).T @ (xs - mu) + ridge * np.eye(xs.shape[1]), (xs - mu).T @ (ys - ys.mean()))
        return w, mu, float(ys.mean())

    predicted = []
    for i in range(len(y)):
        keep = np.arange(len(y)) != i
        w, mu, y0 = fit(x[keep], y[keep])
        predicted.append(float(y0 + (x[i] - mu) @ w))
    rng = np.random.default_rng(seed)
    curve = []
    for k in (k for k in sizes if 2 <= k <= len(y) - 2):
        taus = []
        for _ in range(repeats):
            order = rng.permutation(len(y))
            w, mu, y0 = fit(x[order[:k]], y[order[:k]])
            taus.append(float(kendalltau(y0 + (x[order[k:]] - mu) @ w, y[order[k:]])[0]))
        taus = np.nan_to_num(np.array(taus))
        curve.append({"trained": k, "ranked": len(y) - k, "tau_mean": float(taus.mean()),
                      "tau_p05": float(np.percentile(taus, 5)), "tau_p95": float(np.percentile(taus, 95))})
    w, _, _ = fit(x, y)
    return {"model": "ridge on per-cell op counts, leave-one-out", "ridge": ridge, "predicted": predicted,
            "curve": curve,
            "op_points": {f"{cell}/{o}": 100 * float(w[k * len(ops) + j]) for k, cell in enumerate(("normal", "reduce"))
                          for j, o in enumerate(ops)}}


def part_finetune(r: Runner, seeds: list[int] | None = None) -> dict[str, Any]:
    """A measurement other than the raw one-shot loss, against the 6-epoch target: every architecture of the
    stand-alone set as a one-hot sub-network at the super-network's size, (a) with the weights of the recipe's
    seed-0 super-network and (b) freshly initialised, each adversarially trained for ``finetune.epochs`` with the
    stand-alone recipe, then attacked with the stand-alone spectrum. Does inheriting the super-network's weights
    rank the architectures as stand-alone training does, and better than the same training from scratch? Ranked
    against the target's ``seeds`` (default: those fully trained)."""
    from scipy.stats import kendalltau

    s, c = r.s, r.s["finetune"]
    cells, names, seeds, per_seed = trained_target(r, "finetune", seeds)
    target = per_seed.mean(1)
    raw = recipe_config(s, 0)
    search_dir = str(r.workdir / c["supernet"] / "seed0")
    base = {**s["retrain"], "dataset": raw["data"]["name"], "init_channels": raw["search"]["init_channels"],
            "layers": raw["search"]["layers"]}
    oneshot = oneshot_scores(r, {n: cells[n]["genotype"] for n in names}, raw, search_dir, "oneshot")
    rows = [{"arm": "oneshot", "epochs": 0, "scores": {a: oneshot[a]["avg_robust_acc"] for a in names},
             "clean_acc": float(np.mean([oneshot[a]["clean_acc"] for a in names])),
             "model_cpu_seconds": float(np.mean([oneshot[a]["cpu_seconds"] for a in names]))}]
    for epochs in c["epochs"]:
        for arm in c["arms"]:
            cache = r.workdir / f"finetune-{arm}-e{epochs}"
            todo = {a: cells[a]["genotype"] for a in names if not (cache / f"{a}.json").is_file()}
            if todo:
                chunks = [ch for ch in (sorted(todo)[i::max(r.workers, 1)] for i in range(max(r.workers, 1))) if ch]
                with sq.executor(r.workers and len(chunks)) as pool:
                    for f in [pool.submit(finetune_job, raw, search_dir if arm == "inherit" else None,
                                          {a: todo[a] for a in ch}, {**base, "epochs": epochs}, str(cache))
                              for ch in chunks]:
                        f.result()
            got = {a: json.loads((cache / f"{a}.json").read_text()) for a in names}
            rows.append({"arm": arm, "epochs": epochs, "scores": {a: float(np.mean(got[a]["scores"])) for a in names},
                         "clean_acc": float(np.mean([got[a]["clean_acc"] for a in names])),
                         "model_cpu_seconds": float(np.mean([got[a]["train_cpu_seconds"] + got[a]["eval_cpu_seconds"]
                                                             for a in names]))})
    params = [cells[a]["params"] for a in names]
    short = [cells[a]["avg_robust_acc"] for a in names]
    for row in rows:
        x = [row["scores"][a] for a in names]
        row["tau"] = sq.kendall_bootstrap(x, target.tolist(), n_boot=s["bootstrap"])
        row["tau_vs_power_scale"] = sq.kendall_bootstrap(x, short, n_boot=s["bootstrap"])
        row["tau_vs_params"] = float(kendalltau(x, params)[0])
    calibration = op_mix_calibration([cells[a]["genotype"] for a in names], target, raw["search"]["vle"]["ridge"],
                                     sizes=tuple(c["calibration_sizes"]))
    calibration["tau"] = sq.kendall_bootstrap(calibration.pop("predicted"), target.tolist(), n_boot=s["bootstrap"])
    return {"supernet": f"{c['supernet']} seed 0", "target_seeds": seeds, "n": len(names), "calibration": calibration,
            "target_reliability": partial_reliability(r, cells),
            "settings": {"train_images": base["train_images"], "train_eps": base["train_eps"], "lr": base["lr"],
                         "init_channels": base["init_channels"], "layers": base["layers"]},
            "rows": rows}


def calibrated_cells(op_points: dict[str, float], reference: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The cells the op-count calibration rates best and worst: ``reference``'s inputs with every edge of a cell given
    the op of the highest (lowest) fitted effect for that cell type. Both lie beyond every architecture the fit saw,
    so training them tests whether the fitted effects add up, which a search calibrated this way would rely on."""
    out = {}
    for label, pick in (("best", max), ("worst", min)):
        g = {**copy.deepcopy(reference), "name": f"calibrated-{label}"}
        for cell in ("normal", "reduce"):
            op = pick(sq.NON_NONE_OPS, key=lambda o, cell=cell: op_points[f"{cell}/{o}"])
            g[cell] = [[op, src] for _, src in reference[cell]]
        out[g["name"]] = g
    return out


def size_matched_calibrated_cells(op_points: dict[str, float], reference: dict[str, Any], target_params: float,
                                  retrain: dict[str, Any], tolerance: float, draws: int, seed: int = 0
                                  ) -> dict[str, dict[str, Any]]:
    """The best and worst cells by the fitted op effects among ``draws`` uniform op assignments on ``reference``'s
    inputs whose parameter count lies within ``tolerance`` of ``target_params``: the same question as
    :func:`calibrated_cells` with size taken out. With the inputs fixed, a cell's parameters are a sum over its
    edges, so each (cell, edge, op) is built once and the draws are scored in numpy."""
    ops, cells = sq.NON_NONE_OPS, ("normal", "reduce")
    base_g = {**copy.deepcopy(reference), **{c: [[ops[0], src] for _, src in reference[c]] for c in cells}}
    base = cell_params(base_g, retrain)
    cost = np.zeros((2, len(reference["normal"]), len(ops)))
    for ci, c in enumerate(cells):
        for e in range(len(reference[c])):
            for oi, op in enumerate(ops[1:], start=1):
                g = copy.deepcopy(base_g)
                g[c][e][0] = op
                cost[ci, e, oi] = cell_params(g, retrain) - base
    gain = np.array([[op_points[f"{c}/{o}"] for o in ops] for c in cells])
    rng = np.random.default_rng(seed)
    pick = rng.integers(0, len(ops), size=(draws, 2, cost.shape[1]))
    params = base + np.take_along_axis(np.broadcast_to(cost, (draws, *cost.shape)), pick[..., None], -1).sum((1, 2, 3))
    effect = gain[np.arange(2)[None, :, None], pick].sum((1, 2))
    ok = np.flatnonzero(np.abs(params - target_params) <= tolerance * target_params)
    if not len(ok):
        raise RuntimeError(f"no op assignment within {tolerance:.0%} of {target_params:.0f} parameters in "
                           f"{draws} draws")
    out = {}
    for label, k in (("best", ok[np.argmax(effect[ok])]), ("worst", ok[np.argmin(effect[ok])])):
        name = f"calibrated-matched-{label}"
        out[name] = {**copy.deepcopy(reference), "name": name,
                     **{c: [[ops[pick[k, ci, e]], src] for e, (_, src) in enumerate(reference[c])]
                        for ci, c in enumerate(cells)}}
    return out


def part_calibrated(r: Runner, seeds: list[int] | None = None) -> dict[str, Any]:
    """Does the stand-alone calibration extrapolate? The op effects fitted on the whole target (see
    :func:`op_mix_calibration`) name a best and a worst cell (:func:`calibrated_cells`) and a size-matched pair
    (:func:`size_matched_calibrated_cells`); all are retrained like the target, with its ``seeds`` (default: those fully
    trained), the matched pair with ``calibrated.matched_seeds`` when set. Each difference against the one the fit
    predicts, with a z from the target's pooled seed variance and a Welch t-test on the cells' own seeds, and where each
    cell ranks among the target's architectures."""
    from scipy.stats import norm, ttest_ind

    s = r.s
    cells, names, seeds, per_seed = trained_target(r, "calibrated", seeds)
    target = per_seed.mean(1)
    ridge = recipe_config(s, 0)["search"]["vle"]["ridge"]
    cal = op_mix_calibration([cells[a]["genotype"] for a in names], target, ridge)
    cb = s["calibrated"]
    reference = cells[cb["reference"]]["genotype"]
    retrain = target_retrain(s)
    mean_params = float(np.mean([cells[a]["params"] for a in names]))
    groups = [(calibrated_cells(cal["op_points"], reference), seeds),
              (size_matched_calibrated_cells(cal["op_points"], reference, mean_params, retrain,
                                             cb["param_tolerance"], cb["matched_draws"]),
               list(cb.get("matched_seeds") or seeds))]

    def effect(g: dict[str, Any]) -> float:
        return sum(cal["op_points"][f"{c}/{op}"] for c in ("normal", "reduce") for op, _ in g[c])

    base = float(np.mean([effect(cells[a]["genotype"]) for a in names]))
    out = {}
    for made, cell_seeds in groups:
        _, _, scores = target_scores(r, {n: {"genotype": g} for n, g in made.items()}, cell_seeds)
        for i, (n, g) in enumerate(sorted(made.items())):
            out[n] = {"genotype": g, "params": cell_params(g, retrain), "seeds": cell_seeds,
                      "per_seed": scores[i].tolist(), "points": 100 * float(scores[i].mean()),
                      "predicted_points": 100 * float(target.mean()) + effect(g) - base,
                      "target_architectures_below": int(np.sum(target < scores[i].mean()))}
    out = dict(sorted(out.items()))
    within = one_way_icc(per_seed)["within_var"] if len(seeds) > 1 else None

    def contrast(best: str, worst: str) -> dict[str, Any]:
        b, w = out[best], out[worst]
        diff = b["points"] - w["points"]
        se = 100 * math.sqrt(within * (1 / len(b["seeds"]) + 1 / len(w["seeds"]))) if within else None
        welch = (float(ttest_ind(b["per_seed"], w["per_seed"], equal_var=False).pvalue)
                 if min(len(b["seeds"]), len(w["seeds"])) > 1 else None)
        return {"points": diff, "predicted_points": b["predicted_points"] - w["predicted_points"],
                "se_points": se, "p": float(2 * norm.sf(abs(diff) / se)) if se else None, "welch_p": welch,
                "seeds": [len(b["seeds"]), len(w["seeds"])]}

    return {"reference": s["calibrated"]["reference"], "seeds": seeds, "n_target": len(names),
            "target_points": {"mean": 100 * float(target.mean()), "min": 100 * float(target.min()),
                              "max": 100 * float(target.max())},
            "mean_target_params": mean_params, "param_tolerance": cb["param_tolerance"],
            "matched_seeds": groups[1][1], "cells": out,
            "best_minus_worst": contrast("calibrated-best", "calibrated-worst"),
            "matched_best_minus_worst": contrast("calibrated-matched-best", "calibrated-matched-worst")}


Z_POWER = 1.959964 + 0.841621  # two-sided alpha 0.05, power 0.8


def reliability(power_results: Path) -> dict[str, Any]:
    """Reliability of the retraining scale from the power benchmark's per-seed scores: the share of one seed's
    score variance that is between architectures (ICC(1) = between / (between + within)), and the Kendall tau
    between the architectures' means over two disjoint halves of the seeds (mean over the ways to split them)."""
    from itertools import combinations

    from scipy.stats import kendalltau

    res = json.loads(power_results.read_text())
    noise = res["seed_noise"]
    between, within = noise["between_sd_true"] ** 2, noise["within_var"]
    per_seed = np.array([[seed["avg_robust_acc"] for seed in m["seeds"]] for m in res["models"]])
    n = per_seed.shape[1]
    taus = [float(kendalltau(per_seed[:, list(a)].mean(1), per_seed[:, [k for k in range(n) if k not in a]].mean(1)
                             )[0]) for a in combinations(range(n), n // 2) if 0 in a]
    return {"icc": between / (between + within), "split_half_tau": float(np.mean(taus)), "between_var": between,
            "within_var": within, "n_architectures": per_seed.shape[0], "n_seeds": n,
            "source": str(power_results.relative_to(ROOT))}


def method_mde(between_var: float, within_var: float, n_archs: int, n_seeds: int) -> float:
    """Minimum detectable difference (points; alpha 0.05 two-sided, power 0.8) between the mean scores of two groups
    of ``n_archs`` architectures, each trained with ``n_seeds`` seeds: each architecture's mean carries the
    between-architecture variance and the seed variance over ``n_seeds``."""
    return 100 * Z_POWER * math.sqrt(2 * (between_var + within_var / n_seeds) / n_archs)


def part_controls(r: Runner, recipe: dict[str, Any] | None) -> dict[str, Any]:
    """The anti-search's movement and cells, size-matched random draws (parameter-free counts against expectation),
    and the method-level differences of what has been trained."""
    s = r.s
    seeds = list(range(s["anti_seeds"]))
    anti = summarise_searches(r.searches("anti", seeds, lambda k: recipe_config(s, k, "maximize")), seeds,
                              s["retrain"])
    rng = random.Random(1)
    matched = []
    for row in (recipe or {}).get("searches", [])[:s["recipe_seeds"]]:
        g, draws = size_matched_random(row["params"], s["retrain"], s["param_tolerance"], rng, f"m{row['seed']}")
        from wsr_bench.search.diagnostics import cell_counts

        matched.append({"for_seed": row["seed"], "target_params": row["params"], "params": cell_params(g, s["retrain"]),
                        "draws_to_accept": draws, "parameter_free": {c: cell_counts(g[c])["parameter_free"]
                                                                     for c in ("normal", "reduce")}})
    detail = (recipe or {}).get("oneshot", {})
    by_kind: dict[str, list[float]] = {}
    for v in detail.values():
        by_kind.setdefault(v["kind"], []).append(v["avg_robust_acc"])

    return {"anti": anti, "matched_random": matched, "parameter_free_expected": parameter_free_expected(),
            "param_tolerance": s["param_tolerance"], "retraining": "search_quality.py --power scale (Fashion-MNIST "
            "16x16, C=8, 5 cells, PGD-3 at 0.1, 3 epochs on 12,000 training images, 4 seeds)",
            "n_found": len(by_kind.get("recipe", [])), "n_anti": len(by_kind.get("anti", [])),
            "n_random": len(by_kind.get("matched_random", [])),
            "found_minus_anti": group_difference(by_kind, "recipe", "anti"),
            "found_minus_random": group_difference(by_kind, "recipe", "random"),
            "found_minus_matched_random": group_difference(by_kind, "recipe", "matched_random"),
            **mde_report(s, by_kind)}


def mde_report(s: dict[str, Any], by_kind: dict[str, list[float]]) -> dict[str, Any]:
    """The retraining scale's reliability and the method-level MDE: of what has been trained here, and of the
    design the issue sizes (12 found, 12 anti-found, 24 matched random cells at 2 seeds)."""
    if not s["power_results"] or not (ROOT / s["power_results"]).is_file():
        return {"reliability": None, "mde_points": None, "mde_design_points": None}
    rel = reliability(ROOT / s["power_results"])
    seeds = s["retrain"]["train_seeds"]
    n = min(len(by_kind.get("recipe", [])), len(by_kind.get("anti", []))) or None
    return {"reliability": rel,
            "mde_points": method_mde(rel["between_var"], rel["within_var"], n, seeds) if n else None,
            "mde_design_points": method_mde(rel["between_var"], rel["within_var"], 12, 2),
            "mde_note": f"found vs anti-found with {n} cells each at {seeds} seeds (mde_points) and the design of 12 "
                        "vs 12 at 2 seeds (mde_design_points), from the power benchmark's between-architecture and "
                        "seed variances"}


# ------------------------------------------------------------------------------------------------ report
def render(res: dict[str, Any]) -> str:
    def f(v: Any, spec: str = ".3f") -> str:
        return "-" if v is None else format(v, spec)

    lines = ["# Search signal: does the search move, agree with itself and follow a signal?", "",
             f"Machine: {res['machine'].get('processor')}, {res['machine'].get('cpu_count')} cores, torch "
             f"{res['machine'].get('torch')}, load {res['machine'].get('load_start')} at the start; every job "
             "single-threaded.", ""]
    notes = [v["note"] for k, v in sorted(res.items()) if k.startswith("machine_") and isinstance(v, dict)
             and v.get("note")]  # parts merged in from later runs say where and how they ran
    lines += [*(f"- {n}" for n in notes), *([""] if notes else [])]
    for kind, title in (("official", "The official recipe (power-benchmark size, T x arch_lr = 0.006)"),
                        ("recipe", "configs/search_signal.yaml"),):
        r = res.get(kind)
        if not r:
            continue
        lines += [f"## {title}", "",
                  "| seed | max abs(A_T - A_0) | entropy drop (nats) | init match | delta match | measured archs | "
                  "params | parameter-free normal / reduce | search s |", "|---|---|---|---|---|---|---|---|---|"]
        for row in r["searches"]:
            pf = row["parameter_free"]
            lines.append(f"| {row['seed']} | {f(row['max_abs_delta'], '.4f')} | {f(row['entropy_drop'], '.4f')} | "
                         f"{f(row['init_match'], '.2f')} | {f(row['delta_match'], '.2f')} | "
                         f"{row['measured_architectures']} | {row['params']} | {pf['normal']}/8, {pf['reduce']}/8 | "
                         f"{f(row['search_seconds'], '.0f')} |")
        lines += ["", f"- Seed agreement: **{f(r['seed_agreement'], '.3f')}** of edges (two uniform random "
                      f"genotypes: {f(r['random_expected'], '.3f')}); counting only each cell's mix of ops, "
                      f"{f(r.get('op_mix_agreement'), '.3f')} (random {f(r.get('op_mix_random_expected'), '.3f')}); "
                      f"correlation of A_T - A_0 across seeds "
                      f"{f(r['delta_corr'], '.3f')}; argmax(A_T) = argmax(A_0) on {f(r['init_match'], '.2f')} of "
                      f"edges, = argmax(A_T - A_0) on {f(r['delta_match'], '.2f')}.",
                  f"- Test-retest of the measured objective ({r['test_retest']['n']} draws, "
                  f"{r['test_retest']['images_per_measurement']} images per measurement): Kendall tau "
                  f"**{f(r['test_retest_tau'])}** (p {f(r['test_retest']['p_value'], '.2g')}).",
                  f"- The VLE gradient's direction: the op it rates best measured lower than the op it rates worst in "
                  f"**{f(r['gradient_sign_agreement'], '.2f')}** of {r['gradient']['n']} draws (chance 0.5)."]
        if r.get("oneshot_kendall_tau"):
            t = r["oneshot_kendall_tau"]
            lines.append(f"- One-shot Kendall tau (seed 0's super-network) against stand-alone scores over {t['n']} "
                         f"architectures: **{f(t['tau'])}** (95% bootstrap {f(t['ci_low'])} to {f(t['ci_high'])}).")
        lines.append("")
    if res.get("fidelity"):
        lines += ["## A longer-trained super-network (configs/search_signal.yaml with overrides)", "",
                  "| variant | seeds | max abs(A_T - A_0) | entropy drop (nats) | seed agreement | one-shot mean avg "
                  "robust acc | one-shot Kendall tau (95% bootstrap) | n | search s |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for v in res["fidelity"]:
            t, rows = v["oneshot_kendall_tau"], v["searches"]
            lines.append(
                f"| {v['variant']} | {len(rows)} | {f(min(x['max_abs_delta'] for x in rows), '.2f')}-"
                f"{f(max(x['max_abs_delta'] for x in rows), '.2f')} | {f(min(x['entropy_drop'] for x in rows), '.2f')}-"
                f"{f(max(x['entropy_drop'] for x in rows), '.2f')} | {f(v['seed_agreement'], '.3f')} | "
                f"{f(float(np.mean([o['oneshot_avg_robust_acc'] for o in v['oneshot'].values()])), '.3f')} | "
                f"{f(t['tau'])} ({f(t['ci_low'])} to {f(t['ci_high'])}) | {t['n']} | "
                f"{'/'.join(format(x['search_seconds'], '.0f') for x in rows)} |")
        lines.append("")
        for v in res["fidelity"]:
            fa, fr = v["found_minus_anti"], v["found_minus_recipe_found"]
            lines.append(f"- {v['variant']}: its found cells retrained (power scale) minus the anti-search's: "
                         f"{f(fa['points'], '+.2f')} points (p {f(fa['p'], '.2g')}, n {fa['n']}); minus the recipe's "
                         f"found cells: {f(fr['points'], '+.2f')} points (p {f(fr['p'], '.2g')}, n {fr['n']}).")
        lines.append("")
    if res.get("scale"):
        sc = res["scale"]
        lines += [f"## Retraining-scale pilot ({', '.join(sc['architectures'])}; "
                  f"seeds {sc['seeds']})", "",
                  "| scale | epochs | ICC (one seed) | split-half tau | tau vs the power benchmark's 4-seed means | "
                  "between-arch SD (pts) | seed SD (pts) | CPU s per model | MDE 12 vs 12 at 2 seeds (pts) | that MDE "
                  "in between-arch SDs | CPU-h of that design |", "|---|---|---|---|---|---|---|---|---|---|---|"]
        for x in sc["scales"]:
            lines.append(f"| {x['scale']} | {x['settings']['epochs']} | {f(x['icc'], '.2f')} | "
                         f"{f(x['split_half_tau'], '.2f')} | {f(x.get('tau_vs_power_means'), '.2f')} | "
                         f"{f(100 * math.sqrt(x['between_var']), '.2f')} | "
                         f"{f(100 * math.sqrt(x['within_var']), '.2f')} | {f(x['model_cpu_seconds'], '.0f')} | "
                         f"{f(x['mde_design_points'], '.2f')} | {f(x.get('mde_in_between_sd'), '.1f')} | "
                         f"{f(x['design_cpu_hours'], '.1f')} |")
        lines.append("")
    if res.get("target"):
        tg = res["target"]
        rel = tg.get("reliability") or {}
        lines += [f"## One-shot ranking against the {tg['settings']['epochs']}-epoch stand-alone target ({tg['n']} "
                  f"architectures, seeds {tg['seeds']})", "",
                  "| super-network | Kendall tau vs the target (95% bootstrap) | vs the 3-epoch power-scale scores |",
                  "|---|---|---|"]
        for o in tg["oneshot"]:
            a, b = o["tau"], o["tau_vs_power_scale"]
            lines.append(f"| {o['supernet']} | {f(a['tau'])} ({f(a['ci_low'])} to {f(a['ci_high'])}) | "
                         f"{f(b['tau'])} ({f(b['ci_low'])} to {f(b['ci_high'])}) |")
        ps, fa = tg["tau_power_scale_vs_target"], tg["found_minus_anti"]
        lines += ["", *([f"- The target's reliability over all {tg['n']} architectures: one seed's ICC "
                         f"{f(rel.get('icc'), '.2f')}, split-half tau {f(rel.get('split_half_tau'), '.2f')}, "
                         f"between-arch SD {f(100 * math.sqrt(rel['between_var']), '.2f')} pts, seed SD "
                         f"{f(100 * math.sqrt(rel['within_var']), '.2f')} pts."] if rel else []),
                  f"- The 3-epoch power-scale scores against the target: tau {f(ps['tau'])} ({f(ps['ci_low'])} to "
                  f"{f(ps['ci_high'])}); parameter count against the target: tau {f(tg['tau_params_vs_target'])}.",
                  f"- At this scale, found minus anti-found: {f(fa['points'], '+.2f')} points (p {f(fa['p'], '.2g')}, "
                  f"n {fa['n']}); "
                  + "; ".join(f"{k[:-len('_minus_anti')]} minus anti-found {f(v['points'], '+.2f')} points "
                              f"(p {f(v['p'], '.2g')})" for k, v in tg.items()
                              if k.endswith("_minus_anti") and k != "found_minus_anti")
                  + f". CPU s per model {f(tg['model_cpu_seconds'], '.0f')}.", ""]
    if res.get("finetune"):
        ft = res["finetune"]
        st = ft["settings"]
        lines += [f"## Fine-tuned sub-networks against the stand-alone target ({ft['n']} architectures, target seeds "
                  f"{ft['target_seeds']})", "",
                  f"Each architecture as a one-hot sub-network at the super-network's size (C={st['init_channels']}, "
                  f"{st['layers']} cells), adversarially trained with the stand-alone recipe (PGD at "
                  f"{st['train_eps']:g}, lr {st['lr']:g}, {st['train_images']:,} images per epoch) from the "
                  f"{ft['supernet']} super-network's weights (inherit) or from a fresh initialisation (scratch); "
                  "epochs 0 is the raw one-shot measurement.", "",
                  "| arm | epochs | Kendall tau vs the target (95% bootstrap) | vs the 3-epoch power-scale scores | "
                  "vs parameters | mean clean acc | mean avg robust acc | CPU s per model |",
                  "|---|---|---|---|---|---|---|---|"]
        for row in ft["rows"]:
            a, b = row["tau"], row["tau_vs_power_scale"]
            lines.append(f"| {row['arm']} | {row['epochs']} | {f(a['tau'])} ({f(a['ci_low'])} to "
                         f"{f(a['ci_high'])}) | {f(b['tau'])} ({f(b['ci_low'])} to {f(b['ci_high'])}) | "
                         f"{f(row['tau_vs_params'])} | {f(row['clean_acc'])} | "
                         f"{f(float(np.mean(list(row['scores'].values()))))} | "
                         f"{f(row['model_cpu_seconds'], '.0f')} |")
        rel = ft.get("target_reliability")
        if rel:
            lines += ["", f"- The target's reliability over the {rel['n']} architectures with seeds {rel['seeds']} "
                      f"trained so far: one seed's ICC {f(rel['icc'], '.2f')}, split-half tau "
                      f"{f(rel['split_half_tau'], '.2f')}, between-architecture SD "
                      f"{f(100 * math.sqrt(rel['between_var']), '.2f')} points, seed SD "
                      f"{f(100 * math.sqrt(rel['within_var']), '.2f')} points."]
        cal = ft.get("calibration")
        if cal:
            t = cal["tau"]
            lines += ["", f"- Stand-alone calibration, no super-network ({cal['model']}, ridge {cal['ridge']:g}): "
                      f"Kendall tau {f(t['tau'])} ({f(t['ci_low'])} to {f(t['ci_high'])}) against the target; the "
                      "fitted op effects (points per edge): " + ", ".join(
                          f"{k} {v:+.2f}" for k, v in sorted(cal["op_points"].items(), key=lambda kv: -kv[1])) + "."]
            if cal.get("curve"):
                lines.append("- The same calibration fitted on fewer stand-alone trainings (random splits, mean "
                             "Kendall tau on the rest, 5-95% range): " + "; ".join(
                                 f"{c['trained']} trained: {f(c['tau_mean'])} ({f(c['tau_p05'])} to "
                                 f"{f(c['tau_p95'])}, {c['ranked']} ranked)" for c in cal["curve"]) + ".")
        lines.append("")
    def op_mix(edges: list[list[Any]]) -> str:
        return ", ".join(f"{n}x {op}" for op, n in Counter(op for op, _ in edges).most_common())

    if res.get("calibrated"):
        cb = res["calibrated"]
        tp, bw = cb["target_points"], cb["best_minus_worst"]
        matched = cb.get("matched_seeds", cb["seeds"])
        lines += [f"## Does the stand-alone calibration extrapolate? (seeds {cb['seeds']}"
                  + (f"; the size-matched pair {matched}" if matched != cb["seeds"] else "") + ")", "",
                  f"The op effects fitted on all {cb['n_target']} target architectures name a best and a worst cell "
                  f"({cb['reference']}'s inputs, one op per cell type), retrained like the target (target mean "
                  f"{tp['mean']:.2f}, range {tp['min']:.2f} to {tp['max']:.2f} points).", "",
                  "| cell | normal ops | reduce ops | parameters | avg robust acc (points) | predicted | per seed | "
                  "target architectures below |", "|---|---|---|---|---|---|---|---|"]
        for n, c in cb["cells"].items():
            lines.append(f"| {n} | {op_mix(c['genotype']['normal'])} | {op_mix(c['genotype']['reduce'])} | "
                         f"{c['params']:,} | {c['points']:.2f} | {c['predicted_points']:.2f} | "
                         + ", ".join(f"{100 * x:.2f}" for x in c["per_seed"])
                         + f" | {c['target_architectures_below']} of {cb['n_target']} |")
        mw = cb["matched_best_minus_worst"]

        def seeds_of(c: dict[str, Any]) -> str:
            n = c.get("seeds")
            return f"{n[0]} against {n[1]} seeds; " if n else ""

        lines += ["", f"- Best minus worst: {bw['points']:+.2f} points (predicted {bw['predicted_points']:+.2f}; "
                  f"{seeds_of(bw)}seed-noise SE {f(bw['se_points'], '.2f')}, p {f(bw['p'], '.2g')}"
                  + (f", Welch p {bw['welch_p']:.2g}" if bw.get("welch_p") is not None else "") + ").",
                  f"- Size-matched (the best and worst of uniform op assignments on the same inputs within "
                  f"{cb['param_tolerance']:.0%} of the target's mean {cb['mean_target_params']:,.0f} parameters): "
                  f"{mw['points']:+.2f} points (predicted {mw['predicted_points']:+.2f}; {seeds_of(mw)}"
                  f"seed-noise SE {f(mw['se_points'], '.2f')}, p {f(mw['p'], '.2g')}"
                  + (f", Welch p {mw['welch_p']:.2g}" if mw.get("welch_p") is not None else "") + ").", ""]
    if res.get("planted"):
        lines += ["## Planted landscape (share of edges recovered; chance 1/7 = 0.143)", "",
                  "| recipe | method | steps | shared | " + " | ".join(
                      f"noise {n:g}" for n in sorted({p['noise_sd'] for p in res['planted']})) + " |"]
        noises = sorted({p["noise_sd"] for p in res["planted"]})
        lines.append("|---|---|---|---|" + "---|" * len(noises))
        groups: dict[tuple, dict[float, list[float]]] = {}
        for p in res["planted"]:
            groups.setdefault((p["recipe"], p["method"], p["steps"], p["shared"]), {}).setdefault(
                p["noise_sd"], []).append(p["recovered"])
        for (recipe, method, steps, shared), by in sorted(groups.items()):
            cells = " | ".join(f(float(np.mean(by[n])), ".2f") if n in by else "-" for n in noises)
            lines.append(f"| {recipe} | {method} | {steps} | {shared:g} | {cells} |")
        lines.append("")
    if res.get("controls"):
        c = res["controls"]
        anti_pf = "; ".join(f"{r['parameter_free']['normal']} and {r['parameter_free']['reduce']}"
                            for r in c["anti"]["searches"])
        matched_pf = "; ".join(f"{m['parameter_free']['normal']} and {m['parameter_free']['reduce']}"
                               for m in c["matched_random"])
        lines += ["## Controls", "", f"- Anti-search seeds: {len(c['anti']['searches'])}; their cells' parameter-free "
                  f"edges of 8 (normal and reduce cell): {anti_pf}.",
                  f"- Size-matched random cells (within {c['param_tolerance']:.0%} of each found cell's parameters): "
                  f"parameter-free edges of 8 (normal and reduce) {matched_pf} (uniform expectation "
                  f"{c['parameter_free_expected']:.2f} per cell); {c['n_random']} of them trained so far.",
                  *([f"- Retraining scale ({c['retraining']}): one seed's ICC {f(c['reliability']['icc'], '.2f')}, "
                     f"split-half Kendall tau {f(c['reliability']['split_half_tau'], '.2f')} "
                     f"({c['reliability']['n_architectures']} architectures x {c['reliability']['n_seeds']} seeds). "
                     f"Method-level MDE: {f(c['mde_points'], '.2f')} points for what is trained here, "
                     f"{f(c['mde_design_points'], '.2f')} for 12 found vs 12 anti-found cells at 2 seeds."]
                    if c.get("reliability") else []),
                  f"- Found minus anti-found: {f(c['found_minus_anti']['points'], '+.2f')} points "
                  f"(p {f(c['found_minus_anti']['p'], '.2g')}, n {c['found_minus_anti']['n']}); found minus matched "
                  f"random: {f(c['found_minus_matched_random']['points'], '+.2f')} points; found minus the power "
                  f"benchmark's 8 unmatched random cells: {f(c['found_minus_random']['points'], '+.2f')} points (p "
                  f"{f(c['found_minus_random']['p'], '.2g')}).", ""]
    if res.get("finding"):
        lines += ["## What the numbers show", "", res["finding"], ""]
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------------ main
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--part", choices=(*PARTS, "all"), default="all", help="which part to run (default: all)")
    p.add_argument("--smoke", action="store_true", help="every part at toy sizes on digits (seconds)")
    p.add_argument("--out", type=Path, default=None, help="results JSON (default benchmarks/results/"
                   "search_signal.json; a .md beside it); parts merge into it")
    p.add_argument("--workdir", type=Path, default=None, help="cache of searches, checks and models (default "
                   "runs/search_signal)")
    p.add_argument("--workers", type=int, default=None, help="worker processes (default 2; 0 runs inline)")
    p.add_argument("--target-seeds", type=int, nargs="+", default=None, help="the target part's retraining seeds "
                   "(default: its settings'; a first seed over every architecture can be reported before the second)")
    p.add_argument("--render", action="store_true", help="only rewrite the .md from the results JSON")
    args = p.parse_args(argv)
    from wsr_bench.infra.atomic import atomic_write_json, atomic_write_text

    out = args.out or (smoke_out("search_signal") if args.smoke else RESULTS / "search_signal.json")
    if args.render:
        atomic_write_text(out.with_suffix(".md"), render(json.loads(out.read_text())) + "\n")
        return 0
    s = SETTINGS["smoke" if args.smoke else "full"]
    workdir = args.workdir or (out.parent / "work" if args.smoke else ROOT / "runs" / "search_signal")
    runner = Runner(s, workdir, s["workers"] if args.workers is None else args.workers)
    res = json.loads(out.read_text()) if out.is_file() else {}
    load_start = load_average()
    parts = PARTS if args.part == "all" else (args.part,)
    for part in parts:
        t0 = time.perf_counter()
        if part == "official":
            res["official"] = part_official(runner)
        elif part == "planted":
            res["planted"] = part_planted(runner)
        elif part == "recipe":
            res["recipe"] = part_recipe(runner)
        elif part == "fidelity":
            res["fidelity"] = part_fidelity(runner)
        elif part == "scale":
            res["scale"] = part_scale(runner)
        elif part == "target":
            res["target"] = part_target(runner, args.target_seeds)
        elif part == "finetune":
            res["finetune"] = part_finetune(runner, args.target_seeds)
        elif part == "calibrated":
            res["calibrated"] = part_calibrated(runner, args.target_seeds)
        else:
            res["controls"] = part_controls(runner, res.get("recipe"))
        res.setdefault("wall_seconds", {})[part] = time.perf_counter() - t0
        res["machine"] = machine_record(load_start)
        res["smoke"] = args.smoke
        atomic_write_json(out, sq.json_ready(res))
        atomic_write_text(out.with_suffix(".md"), render(res) + "\n")
    print(f"wrote {out} and {out.with_suffix('.md')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
