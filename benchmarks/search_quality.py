"""Search quality: do the cells Wsr-NAS finds beat cells drawn at random from the same space?

One run, one machine, one recipe for every architecture:

1. searches: Wsr-NAS with ``--seeds`` seeds and the naive baseline (PGD at every strength, gradient through the
   super-network) with one, all with the search section of ``configs/demo.yaml`` (the official recipe at demo
   scale) on Fashion-MNIST, without the demo's cap on parameter-free ops (what the search finds by itself);
2. architectures: the found genotypes, ``--random`` genotypes drawn uniformly from the DARTS space (per node two
   distinct inputs, each with one of the 7 non-``none`` ops, uniformly) and the published ones (wsrnet_basic, racl,
   advrush, darts_v2);
3. every architecture built at one size (C, cells), PGD-k adversarially trained with one recipe (same data,
   epochs, seed), then attacked with PGD over the paper's spectrum {0.03, 0.10, 0.17, 0.25} on the same test
   images.

Reported per model: average robust accuracy over the spectrum with a 95% interval (normal approximation on the
per-image scores, score = the fraction of the four strengths the image survives); the best Wsr-NAS genotype's
percentile among the random ones; paired tests on the same images (Wilcoxon signed-rank on per-image scores, and
the mean difference with its 95% interval) of each found genotype against the median random genotype and against
the best published genotype.

    python benchmarks/search_quality.py --quick        # 2 CPU cores, Fashion-MNIST 16x16 (about an hour)
    python benchmarks/search_quality.py --power        # 2 CPU cores, about 4 CPU-hours (2 h wall): see below
    python benchmarks/search_quality.py                # one GPU: Fashion-MNIST 28x28, larger search and training
    python benchmarks/search_quality.py --quick --render   # rewrite the .md from the committed .json (also --power)
    python benchmarks/search_quality.py --smoke        # seconds: the --power pipeline at toy sizes on digits, in a
                                                       # temporary folder (--smoke --quick: quick mode's pipeline)

``--power`` asks whether this benchmark can tell a good cell from a bad one at all, and whether at that power the
Wsr-NAS cells beat random ones (``benchmarks/results/search_quality_power.{json,md}``):

- noise: every architecture (3 Wsr-NAS and 2 naive genotypes, quick mode's 8 random draws, the 4 published
  genotypes: 17) trained with 3 seeds (model initialisation, data order, attack randomness; the same 12,000
  training and 1,000 test images), so the within-architecture (seed) SD, the between-architecture SD, a one-way
  ANOVA, and the minimum detectable effect MDE = (z_0.975 + z_0.8) * sqrt(2 * within_var / n_seeds) of comparing two
  architectures' seed-averaged scores (also with a test-image term), and the seeds an MDE of 1 point would need;
- scale: Fashion-MNIST 16x16, C=8, 5 cells, PGD-3 at eps 0.1 for 3 epochs on 12,000 images (quick mode: 6,000),
  PGD-10 over the spectrum on 1,000 test images; per-model train/attack seconds are recorded;
- searches with data: population 20 and 40 steps (60 measured architectures for the VLE) on the demo's C=4 3-cell
  super-network (384 / 128 images), arch_lr 1.5e-4 (T * arch_lr = 0.006, official), ane_lr_warmup 800, no cap on
  parameter-free ops; per search how far A moved (entropy of softmax(A), largest |A - A_0|, from the checkpoint's
  history of A), its cells, the VLE's out-of-sample ranking, and the agreement between seeds against two random
  genotypes' (exact);
- one-shot fidelity: every genotype as a one-hot sub-network of wsr-seed0's final super-network (``none`` on the
  edges it does not use; BatchNorm re-estimated as the search does), attacked like the stand-alone models on the
  same test images; Kendall tau against the stand-alone scores with a bootstrap interval;
- the verdict: quick mode's percentiles and paired per-image tests on seed-averaged scores, each with a
  training-seed test beside it, and Mann-Whitney tests of the found genotypes against the random and published ones.

Cost of ``--power`` (measured on this 2-core machine, one thread per job, with another job running beside it):
one 12,000-image PGD-3 epoch takes 46-57 CPU s, the attack of 1,000 test images 15-21 CPU s, so a model costs about
180 CPU s and the 51 models about 2.6 CPU-hours; a Wsr-NAS search of 80 tasks about 400 CPU s, a naive one about
300 (0.5 CPU-hours for the five); the one-shot measurements a few minutes: about 3 CPU-hours in all, about 1.5 hours
of wall time with 2 worker processes when nothing else runs:

    nice .venv/bin/python benchmarks/search_quality.py --power --workers 2   # cached in runs/search_quality_power

Needs Fashion-MNIST (``make data``). Every finished search, model and one-shot measurement is cached in
``--workdir``, and searches and trainings resume from their checkpoints, so an interrupted run continues where it
stopped.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import math
import multiprocessing
import random
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import load_average, machine_record, smoke_out  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
SPECTRUM = [0.03, 0.10, 0.17, 0.25]
PUBLISHED = ["wsrnet_basic", "racl", "advrush", "darts_v2"]
NON_NONE_OPS = ["max_pool_3x3", "avg_pool_3x3", "skip_connect", "sep_conv_3x3", "sep_conv_5x5", "dil_conv_3x3",
                "dil_conv_5x5"]

SETTINGS = {
    "quick": {"image_size": 16, "search_overrides": {}, "init_channels": 8, "layers": 5, "train_images": 6000,
              "epochs": 3, "train_eps": 0.1, "train_steps": 3, "lr": 0.05, "batch_size": 64, "test_images": 1000,
              "attack_steps": 10, "workers": 2},
    "full": {"image_size": 28, "search_overrides": {"init_channels": 16, "layers": 8, "population": 20,
                                                    "search_steps": 50, "train_limit": 10000, "val_limit": 2000,
                                                    "train_steps": 7, "attack_steps": 7, "arch": {"lr": 0.00012},
                                                    "ane": {"fill_batches": 4, "batch": 64, "lr_warmup": 1000}},
             "init_channels": 16, "layers": 8, "train_images": 60000, "epochs": 20, "train_eps": 0.1,
             "train_steps": 7, "lr": 0.1, "batch_size": 128, "test_images": 10000, "attack_steps": 20,
             "workers": 1},
    # --power: can the benchmark tell cells apart, and at that power do Wsr-NAS cells beat random ones? (2-core CPU,
    # about 4 CPU-hours: see the module docstring). Searches: the demo's search section (C=4, 3 cells, 384 / 128
    # images) with population 20 and 40 steps, arch_lr 0.006 / 40 (T * arch_lr as the official 200 * 3e-5) and the
    # AN-Estimator's warm-up spanning the search (about 580 estimator steps in 60 iterations; the official 4,000
    # span its 3,000). Retraining: twice quick mode's images, four training seeds per architecture (three gave an MDE
    # of 1.13 points and the run's own estimate asked for four to reach 1 point; a fourth seed reuses the cache).
    "power": {"image_size": 16, "search_overrides": {"population": 20, "search_steps": 40, "arch": {"lr": 0.00015},
                                                     "ane": {"lr_warmup": 800}},
              "init_channels": 8, "layers": 5, "train_images": 12000, "epochs": 3, "train_eps": 0.1,
              "train_steps": 3, "lr": 0.05, "batch_size": 64, "test_images": 1000, "attack_steps": 10, "workers": 2,
              "wsr_seeds": 3, "naive_seeds": 2, "train_seeds": 4, "data_seed": 0, "random": 8,
              "published": PUBLISHED, "oneshot_supernet": "wsr-seed0", "bootstrap": 2000, "bootstrap_seed": 0},
    # seconds: the --power pipeline at toy sizes on the embedded digits (what plain --smoke runs)
    "power_smoke": {"image_size": 16, "dataset": "digits",
                    "search_overrides": {"init_channels": 2, "population": 2, "search_steps": 2, "train_limit": 32,
                                         "val_limit": 16, "train_steps": 1, "attack_steps": 1, "bn_batches": 1,
                                         "ane": {"batch": 4}, "vle": {"warmup_passes": 2, "passes": 1},
                                         "arch": {"lr": 0.003}},
                    "init_channels": 2, "layers": 3, "train_images": 64, "epochs": 1, "train_eps": 0.1,
                    "train_steps": 1, "lr": 0.05, "batch_size": 32, "test_images": 16, "attack_steps": 2,
                    "workers": 0, "wsr_seeds": 2, "naive_seeds": 2, "train_seeds": 2, "data_seed": 0, "random": 2,
                    "published": ["wsrnet_basic"], "oneshot_supernet": "wsr-seed0", "bootstrap": 200,
                    "bootstrap_seed": 0},
    # seconds: every step at toy sizes on the embedded digits (its numbers mean nothing; it checks that the script runs)
    "smoke": {"image_size": 16, "dataset": "digits", "published": ["wsrnet_basic"],
              "search_overrides": {"init_channels": 2, "population": 1, "search_steps": 1, "train_limit": 32,
                                   "val_limit": 16, "train_steps": 1, "attack_steps": 1, "bn_batches": 1,
                                   "ane": {"batch": 4}, "vle": {"warmup_passes": 2, "passes": 1}},
              "init_channels": 2, "layers": 3, "train_images": 64, "epochs": 1, "train_eps": 0.1, "train_steps": 1,
              "lr": 0.05, "batch_size": 32, "test_images": 16, "attack_steps": 2, "workers": 0},
}


class InlineExecutor:
    """``workers: 0``: every job runs in this process when it is submitted (the smoke run, where starting a worker
    process would cost more than its jobs)."""

    def __enter__(self) -> InlineExecutor:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def submit(self, fn: Any, *args: Any, **kwargs: Any) -> Future:
        future: Future = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except Exception as exc:  # raised by .result(), as a worker's would be
            future.set_exception(exc)
        return future


def executor(workers: int) -> ProcessPoolExecutor | InlineExecutor:
    """``workers`` spawned worker processes, or this process for ``0``."""
    if workers == 0:
        return InlineExecutor()
    return ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))


# ------------------------------------------------------------------------------------------------ architectures
def random_genotype(rng: random.Random, name: str) -> dict[str, Any]:
    """A genotype drawn uniformly from the DARTS space: per node two distinct inputs, each with a uniform op."""
    def cell() -> list[list[Any]]:
        edges = []
        for node in range(4):
            for src in sorted(rng.sample(range(node + 2), 2)):
                edges.append([rng.choice(NON_NONE_OPS), src])
        return edges

    return {"name": name, "normal": cell(), "normal_concat": [2, 3, 4, 5], "reduce": cell(),
            "reduce_concat": [2, 3, 4, 5]}


def search_config(settings: dict[str, Any], method: str, seed: int) -> dict[str, Any]:
    """The demo's search section on Fashion-MNIST (``--smoke``: digits; naive: PGD at all six strengths, no
    estimator)."""
    demo = yaml.safe_load((ROOT / "configs" / "demo.yaml").read_text())
    search = {**merged(demo["search"], settings["search_overrides"]), "progress": False,
              "max_parameter_free_normal": None, "max_skip_normal": None}  # the search itself, without caps
    if method == "naive":
        search.update(method="naive", n1=6, n2=0, estimator="none")
    return {"name": f"{method}-seed{seed}", "seed": seed, "device": "auto",
            "data": {"name": settings.get("dataset", "fashion_mnist"), "image_size": settings["image_size"],
                     "batch_size": 64, "eval_batch_size": 256},
            "search": search}


def merged(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``base`` with ``overrides`` merged in, section by section (``{"ane": {"batch": 4}}`` changes only
    ``ane.batch``)."""
    out = copy.deepcopy(base)
    for key, value in overrides.items():
        both = isinstance(value, dict) and isinstance(out.get(key), dict)
        out[key] = merged(out[key], value) if both else copy.deepcopy(value)
    return out


def run_search_job(raw: dict[str, Any], out: str) -> dict[str, Any]:
    """Worker: one search (resumes an interrupted one); returns the genotype and the collapse report."""
    import torch

    from wsr_bench.config import config_from_dict
    from wsr_bench.search import run_search

    torch.set_num_threads(1)
    folder = Path(out)
    t0 = time.perf_counter()
    genotype = run_search(config_from_dict(copy.deepcopy(raw)), folder, resume=True)
    report = json.loads((folder / "search_report.json").read_text())
    return {"genotype": genotype.to_dict(), "report": report, "seconds": time.perf_counter() - t0}


# ------------------------------------------------------------------------------------------------ train + attack
def standalone_splits(settings: dict[str, Any], seed: int, data_seed: int | None = None) -> Any:
    """The data of a stand-alone training: ``settings``' dataset at its image size, split with ``data_seed`` (default
    ``seed``), the training halves cut to ``train_images`` // 2 each."""
    import torch

    from wsr_bench.data.datasets import load_dataset

    s = settings
    splits = load_dataset(s.get("dataset", "fashion_mnist"), image_size=s["image_size"],
                          seed=seed if data_seed is None else data_seed)
    half = s["train_images"] // 2
    splits.train_t = torch.utils.data.Subset(splits.train_t, range(min(half, len(splits.train_t))))
    splits.train_v = torch.utils.data.Subset(splits.train_v, range(min(half, len(splits.train_v))))
    return splits


def train_and_attack_model(name: str, model: Any, splits: Any, settings: dict[str, Any], workdir: str,
                           seed: int) -> dict[str, Any]:
    """Adversarially train ``model`` (in place, resumable in ``workdir/train/<name>``) with the benchmark's recipe
    (PGD-``train_steps`` at ``train_eps``, cosine ``lr`` over ``epochs``), then attack it over the spectrum on the
    first ``test_images`` test images; every per-image score, with the CPU time of each phase."""

    from wsr_bench.config import config_from_dict
    from wsr_bench.data.datasets import as_tensors
    from wsr_bench.evaluate.spectrum import evaluate_spectrum
    from wsr_bench.infra.runtime import resolve_device
    from wsr_bench.train import train_model

    s = settings
    cfg = config_from_dict({
        "name": name, "seed": seed, "device": "auto",
        "data": {"name": s.get("dataset", "fashion_mnist"), "image_size": s["image_size"],
                 "batch_size": s["batch_size"]},
        "model": {"init_channels": s["init_channels"], "layers": s["layers"]},
        "train": {"recipe": "pgd", "epochs": s["epochs"], "lr": s["lr"], "eps": s["train_eps"],
                  "steps": s["train_steps"], "eval_examples": 0}})
    t0, c0 = time.perf_counter(), time.process_time()
    train_model(cfg, model, splits, Path(workdir) / "train" / name, resume=True, device=cfg.device, progress=False)
    t1, c1 = time.perf_counter(), time.process_time()
    x, y = as_tensors(splits.test, s["test_images"])
    res = evaluate_spectrum(model.eval(), x, y, eps=SPECTRUM, attack="pgd", steps=s["attack_steps"], batch_size=250,
                            device=resolve_device(cfg.device), seed=seed)
    break_eps = res.break_eps.tolist()
    scores = [sum(b > e + 1e-9 for e in SPECTRUM) / len(SPECTRUM) for b in break_eps]
    return {"name": name, "clean_acc": res.clean_accuracy, "robust_curve": [res.robust_accuracy[e] for e in res.eps],
            "scores": scores, "params": sum(p.numel() for p in model.parameters()),
            "train_seconds": t1 - t0, "eval_seconds": time.perf_counter() - t1, "train_cpu_seconds": c1 - c0,
            "eval_cpu_seconds": time.process_time() - c1}


def train_and_attack(name: str, arch: str | dict[str, Any], settings: dict[str, Any], workdir: str,
                     seed: int, data_seed: int | None = None) -> dict[str, Any]:
    """Worker: build ``arch`` at the benchmark's size, adversarially train it, attack it over the spectrum.

    ``seed`` seeds the model's initialisation, the order of the training data and the attacks; ``data_seed`` (default:
    ``seed``) the split of the training set into the halves the training images are taken from (and, for the
    embedded digits, the test split), so that training seeds of one architecture can share their images."""
    import torch

    import wsr_bench.models  # noqa: F401  (timm registration)
    from wsr_bench.models.catalog import create

    torch.set_num_threads(1)
    s = settings
    splits = standalone_splits(s, seed, data_seed)
    torch.manual_seed(seed)
    kwargs = dict(init_channels=s["init_channels"], layers=s["layers"], num_classes=10, in_chans=splits.in_chans,
                  mean=splits.mean, std=splits.std)
    model = create("wsrnet", genotype=arch, **kwargs) if isinstance(arch, dict) else create(arch, **kwargs)
    return train_and_attack_model(name, model, splits, s, workdir, seed)


# ------------------------------------------------------------------------------------------------ statistics
def mean_ci(values: list[float]) -> tuple[float, float, float]:
    """Mean and its 95% interval (normal approximation)."""
    a = np.asarray(values, dtype=float)
    half = 1.96 * a.std(ddof=1) / math.sqrt(len(a)) if len(a) > 1 else 0.0
    return float(a.mean()), float(a.mean() - half), float(a.mean() + half)


def paired(a: list[float], b: list[float]) -> dict[str, Any]:
    """Paired comparison of per-image scores: mean difference a - b with its 95% interval, Wilcoxon p-value."""
    from scipy.stats import wilcoxon

    d = np.asarray(a) - np.asarray(b)
    mean, lo, hi = mean_ci(d.tolist())
    p = 1.0 if not np.any(d) else float(wilcoxon(d, zero_method="wilcox").pvalue)
    return {"mean_diff": mean, "ci_low": lo, "ci_high": hi, "wilcoxon_p": p, "n_differ": int(np.count_nonzero(d))}


def percentile(value: float, population: list[float]) -> float:
    """Share of ``population`` below ``value`` (ties count half), in percent."""
    below = sum(v < value for v in population) + 0.5 * sum(v == value for v in population)
    return 100.0 * below / len(population)


def summarise(models: list[dict[str, Any]]) -> dict[str, Any]:
    """Percentile of the best Wsr-NAS genotype among the random ones, and the paired tests."""
    by_kind = {k: [m for m in models if m["kind"] == k] for k in ("wsr", "naive", "random", "published")}
    randoms = sorted(by_kind["random"], key=lambda m: m["avg_robust_acc"])
    median_random = randoms[(len(randoms) - 1) // 2]
    best_published = max(by_kind["published"], key=lambda m: m["avg_robust_acc"])
    best_wsr = max(by_kind["wsr"], key=lambda m: m["avg_robust_acc"])
    tests = []
    for m in by_kind["wsr"] + by_kind["naive"]:
        for ref in (median_random, best_published):
            tests.append({"model": m["name"], "against": ref["name"], **paired(m["scores"], ref["scores"])})
    random_accs = [m["avg_robust_acc"] for m in randoms]
    return {"found_percentile": percentile(best_wsr["avg_robust_acc"], random_accs),
            "wsr_percentiles": {m["name"]: percentile(m["avg_robust_acc"], random_accs) for m in by_kind["wsr"]},
            "best_wsr": best_wsr["name"], "median_random": median_random["name"],
            "best_published": best_published["name"], "paired_tests": tests,
            "naive_percentile": [percentile(m["avg_robust_acc"], [r["avg_robust_acc"] for r in randoms])
                                 for m in by_kind["naive"]]}


# ------------------------------------------------------------------------------------------------ report
def render(result: dict[str, Any]) -> str:
    s, summ = result["settings"], result["summary"]
    data = "digits" if s.get("dataset") == "digits" else "Fashion-MNIST"
    mode = "smoke" if result.get("smoke") else "quick" if result["quick"] else "full"
    lines = [f"# Search quality ({mode})", "",
             f"Machine: {result['machine']['processor']}, {result['machine']['cpu_count']} cores, torch "
             f"{result['machine']['torch']}, device {result['machine']['device']}; wall time "
             f"{result['wall_seconds'] / 60:.1f} min (searches {result['search_wall_seconds'] / 60:.1f} min).", "",
             f"{data} {s['image_size']}x{s['image_size']}, every model C={s['init_channels']}, "
             f"{s['layers']} cells, PGD-{s['train_steps']} training at eps {s['train_eps']} for {s['epochs']} epochs "
             f"on {s['train_images']} images (lr {s['lr']}), then PGD-{s['attack_steps']} over {SPECTRUM} on the "
             f"same {s['test_images']} test images. Searches: the search section of configs/demo.yaml on the same "
             f"data ({s['image_size']}x{s['image_size']}).", "",
             "| model | kind | normal cell parameter-free | params | clean | robust @ " + " / ".join(
                 f"{e:g}" for e in SPECTRUM) + " | avg robust (95% CI) |", "|---|---|---|---|---|---|---|"]
    for m in sorted(result["models"], key=lambda m: -m["avg_robust_acc"]):
        curve = " / ".join(f"{v:.3f}" for v in m["robust_curve"])
        lines.append(f"| {m['name']} | {m['kind']} | {m['parameter_free_normal']}/8 | {m['params'] / 1e3:.1f}k | "
                     f"{m['clean_acc']:.3f} | {curve} | {m['avg_robust_acc']:.4f} ({m['ci_low']:.4f}-"
                     f"{m['ci_high']:.4f}) |")
    n_random = sum(m["kind"] == "random" for m in result["models"])
    per_seed = ", ".join(f"{k} {v:.1f}" for k, v in summ.get("wsr_percentiles", {}).items())
    lines += ["", f"**Best Wsr-NAS genotype ({summ['best_wsr']}) percentile among the {n_random} random genotypes: "
              f"{summ['found_percentile']:.1f}** (each seed: {per_seed}; the best of several seeds is a selected "
              f"value) "
              f"(naive: {', '.join(f'{p:.1f}' for p in summ['naive_percentile'])}).", "",
              "Paired tests on the same test images (per-image score = fraction of the four strengths survived; "
              "difference = model - reference; Wilcoxon signed-rank p):", "",
              "| model | against | mean difference (95% CI) | images that differ | p |", "|---|---|---|---|---|"]
    for t in summ["paired_tests"]:
        lines.append(f"| {t['model']} | {t['against']} | {t['mean_diff']:+.4f} ({t['ci_low']:+.4f} to "
                     f"{t['ci_high']:+.4f}) | {t['n_differ']} | {t['wilcoxon_p']:.3g} |")
    lines += ["", "Searches (collapse check of the derived cells):", ""]
    for name, srch in result["searches"].items():
        cells = srch["report"]["cells"]
        lines.append(f"- {name}: normal {cells['normal']['parameter_free']}/8 parameter-free, reduce "
                     f"{cells['reduce']['parameter_free']}/8; {srch['seconds']:.0f} s")
    if result.get("finding"):
        lines += ["", "## What the numbers show", "", result["finding"]]
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------------------------ power: statistics
def _normal_quantile(p: float) -> float:
    from statistics import NormalDist

    return NormalDist().inv_cdf(p)


def mde_points(within_var: float, n_seeds: int, alpha: float = 0.05, power: float = 0.8,
               extra_var: float = 0.0) -> float:
    """Minimum detectable effect, in points (x100) of average robust accuracy, of a two-sided comparison of two
    architectures' seed-averaged scores at level ``alpha`` with probability ``power``:
    ``(z_{1-alpha/2} + z_power) * sqrt(2 * within_var / n_seeds + extra_var)`` (``within_var``: the variance of one
    training seed's score around its architecture's mean, as a fraction; ``extra_var``: a further variance of the
    difference, e.g. the test-image term)."""
    z = _normal_quantile(1 - alpha / 2) + _normal_quantile(power)
    return 100.0 * z * math.sqrt(2.0 * within_var / n_seeds + extra_var)


def seeds_for_mde(within_var: float, target_points: float, alpha: float = 0.05, power: float = 0.8) -> int:
    """The fewest training seeds per architecture whose :func:`mde_points` (seed term only) is at most
    ``target_points``."""
    z = _normal_quantile(1 - alpha / 2) + _normal_quantile(power)
    return max(1, math.ceil(2.0 * within_var * (100.0 * z / target_points) ** 2 - 1e-9))


def seed_noise(per_seed: dict[str, list[float]]) -> dict[str, Any]:
    """Within-architecture (training seed) and between-architecture spread of average robust accuracy.

    ``within_sd``: pooled over the architectures with at least two seeds (variances weighted by their degrees of
    freedom); ``between_sd``: standard deviation over architectures of the seed-averaged scores;
    ``between_sd_true``: the part of it not explained by seed noise, ``sqrt(max(between_var - within_var / n, 0))``
    with ``n`` the harmonic mean of the seeds per architecture (method of moments); ``anova_f``/``anova_p``: one-way
    ANOVA of the per-seed scores over the architectures (do they differ at all?)."""
    from scipy.stats import f_oneway

    groups = {k: np.asarray(v, dtype=float) for k, v in per_seed.items()}
    multi = [g for g in groups.values() if len(g) > 1]
    df = sum(len(g) - 1 for g in multi)
    within_var = sum((len(g) - 1) * g.var(ddof=1) for g in multi) / df if df else float("nan")
    means = np.asarray([g.mean() for g in groups.values()])
    between_var = float(means.var(ddof=1)) if len(means) > 1 else float("nan")
    n_h = len(groups) / sum(1.0 / len(g) for g in groups.values())
    seeds = sorted({len(g) for g in groups.values()})
    anova = f_oneway(*groups.values()) if multi and len(groups) > 1 else None
    return {"within_sd": math.sqrt(within_var), "within_var": within_var, "within_df": df,
            "between_sd": math.sqrt(between_var),
            "between_sd_true": math.sqrt(max(between_var - within_var / n_h, 0.0)),
            "n_architectures": len(groups), "n_seeds": seeds[0] if len(seeds) == 1 else seeds,
            "anova_f": None if anova is None else float(anova.statistic),
            "anova_p": None if anova is None else float(anova.pvalue)}


def seed_test(a: list[float], b: list[float], within_var: float, df: int) -> dict[str, float]:
    """Difference of two architectures' seed-averaged scores against training-seed noise: ``mean(a) - mean(b)``,
    its 95% interval and two-sided p-value from the pooled within-architecture variance (t with ``df`` degrees of
    freedom)."""
    from scipy.stats import t as student

    diff = float(np.mean(a) - np.mean(b))
    se = math.sqrt(within_var * (1.0 / len(a) + 1.0 / len(b)))
    half = float(student.ppf(0.975, df)) * se
    p = float(2 * student.sf(abs(diff) / se, df)) if se > 0 else float(diff == 0)
    return {"diff": diff, "ci_low": diff - half, "ci_high": diff + half, "p": p}


def kendall_bootstrap(x: list[float], y: list[float], n_boot: int = 2000, seed: int = 0) -> dict[str, Any]:
    """Kendall's tau-b of ``x`` and ``y`` with a percentile bootstrap 95% interval over the pairs (resampled with
    replacement, ``numpy.random.default_rng(seed)``; resamples where tau is undefined are skipped)."""
    from scipy.stats import kendalltau

    xa, ya = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    tau, p = kendalltau(xa, ya)
    rng = np.random.default_rng(seed)
    boots = []
    for _ in range(n_boot):
        idx = rng.integers(0, len(xa), len(xa))
        t = kendalltau(xa[idx], ya[idx])[0]
        if np.isfinite(t):
            boots.append(float(t))
    lo, hi = (np.percentile(boots, [2.5, 97.5]).tolist() if boots else [float("nan")] * 2)
    return {"tau": float(tau), "ci_low": float(lo), "ci_high": float(hi), "n": len(xa), "p_value": float(p),
            "n_boot": n_boot, "valid_boot": len(boots), "seed": seed}


# ------------------------------------------------------------------------------------------------ power: genotypes
def _cells(g: Any) -> tuple[list[Any], list[Any]]:
    if isinstance(g, dict):
        return g["normal"], g["reduce"]
    return list(g.normal), list(g.reduce)


def _nodes(edges: list[Any]) -> list[set[tuple[str, int]]]:
    """A cell's edges as one set of ``(op, input)`` per intermediate node."""
    return [{(str(op), int(src)) for op, src in edges[k:k + 2]} for k in range(0, len(edges), 2)]


def edge_agreement(a: Any, b: Any) -> float:
    """Fraction of the edges (normal and reduce cells, 16 in the DARTS space) two genotypes share: an edge of a node
    counts when the other genotype has the same op from the same input node at the same node."""
    shared = total = 0
    for ea, eb in zip(_cells(a), _cells(b), strict=True):
        shared += sum(len(na & nb) for na, nb in zip(_nodes(ea), _nodes(eb), strict=True))
        total += len(ea)
    return shared / total


def expected_random_agreement(nodes: int = 4, n_ops: int = len(NON_NONE_OPS)) -> float:
    """Exact :func:`edge_agreement` expected between two genotypes drawn by :func:`random_genotype`: node ``j`` has
    ``n = j + 2`` candidate inputs; an input is chosen by both with probability ``(2/n)^2`` and then carries the
    same op with probability ``1/n_ops``, so the node shares ``4 / (n * n_ops)`` edges on average."""
    return sum(4.0 / ((j + 2) * n_ops) for j in range(nodes)) / (2 * nodes)


def monte_carlo_agreement(pairs: int, seed: int = 0) -> float:
    """:func:`edge_agreement` of ``pairs`` pairs of independent :func:`random_genotype` draws (a check of
    :func:`expected_random_agreement`)."""
    rng = random.Random(seed)
    return sum(edge_agreement(random_genotype(rng, "a"), random_genotype(rng, "b")) for _ in range(pairs)) / pairs


def mean_pairwise_agreement(genotypes: list[Any]) -> float | None:
    """Mean :func:`edge_agreement` over the pairs of ``genotypes`` (``None`` for fewer than two)."""
    pairs = [(a, b) for i, a in enumerate(genotypes) for b in genotypes[i + 1:]]
    return sum(edge_agreement(a, b) for a, b in pairs) / len(pairs) if pairs else None


def edge_entropy(arch_weights: Any) -> np.ndarray:
    """Entropy (nats) of softmax(A) on every edge: ``(2, E)`` for ``A`` of shape ``(2, E, K)``."""
    a = np.asarray(arch_weights, dtype=np.float64)
    a = a - a.max(-1, keepdims=True)
    p = np.exp(a) / np.exp(a).sum(-1, keepdims=True)
    return -(p * np.log(np.clip(p, 1e-300, None))).sum(-1)


def arch_movement(a0: Any, a1: Any) -> dict[str, float]:
    """How far A moved from ``a0`` to ``a1``: mean per-edge entropy of softmax(A) before and after, its mean drop
    (and the largest drop of one edge), the largest ``|A - A_0|`` entry, against ``log K`` (uniform)."""
    h0, h1 = edge_entropy(a0), edge_entropy(a1)
    delta = np.abs(np.asarray(a1, dtype=np.float64) - np.asarray(a0, dtype=np.float64))
    return {"entropy_start": float(h0.mean()), "entropy_end": float(h1.mean()), "entropy_drop": float((h0 - h1).mean()),
            "entropy_drop_max_edge": float((h0 - h1).max()), "max_abs_change": float(delta.max()),
            "max_entropy": math.log(np.asarray(a0).shape[-1])}


def genotype_to_onehot(genotype: Any, nodes: int = 4) -> Any:
    """The one-hot ``H`` ``(2, E, K)`` of the super-network that is ``genotype``'s sub-network: each chosen
    ``(op, input)`` of a node is one-hot on ``op``, every other edge into that node one-hot on ``none`` (a zero)."""
    import torch

    from wsr_bench.search_space.ops import PRIMITIVES
    from wsr_bench.search_space.supernet import num_edges

    H = torch.zeros(2, num_edges(nodes), len(PRIMITIVES))
    H[..., PRIMITIVES.index("none")] = 1.0
    for c, edges in enumerate(_cells(genotype)):
        if len(edges) != 2 * nodes:
            raise ValueError(f"a cell of {nodes} nodes has {2 * nodes} edges, got {len(edges)}")
        start = 0
        for node, pair in enumerate(_nodes(edges)):
            if len(pair) != 2 or len({src for _, src in pair}) != 2:
                raise ValueError(f"node {node + 2} needs two edges from distinct inputs to be a one-hot sub-network, "
                                 f"got {sorted(pair)}")
            for op, src in pair:
                H[c, start + src] = 0.0
                H[c, start + src, PRIMITIVES.index(op)] = 1.0
            start += node + 2
    return H


# ------------------------------------------------------------------------------------------------ power: workers
def power_search_job(raw: dict[str, Any], out: str) -> dict[str, Any]:
    """Worker: one search (resumed when interrupted) with what the power report needs of it: the genotype, the
    collapse report, how far A moved (from the checkpoint's history of A), the VLE's out-of-sample ranking of the
    architectures it was about to measure, and the search's own compute time."""
    from scipy.stats import kendalltau

    from wsr_bench.infra.checkpoint import load_checkpoint

    c0 = time.process_time()
    result = run_search_job(raw, out)
    folder = Path(out)
    state = load_checkpoint(folder / "checkpoint.pt")
    history = state["history"].float().numpy()
    records = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines() if line.strip()]
    pairs = [(r["objective_pred"], r["objective"]) for r in records
             if r.get("phase") == "search" and r.get("objective_pred") is not None]
    vle = {"tau": float(kendalltau(*zip(*pairs, strict=True))[0]) if len(pairs) > 2 else None, "n": len(pairs)}
    return {**result, "movement": arch_movement(history[0], history[-1]), "vle_prediction": vle,
            "population": raw["search"]["population"], "search_steps": raw["search"]["search_steps"],
            "search_seconds": float(state["elapsed"]), "cpu_seconds": time.process_time() - c0,
            "tasks": len(records)}


def oneshot_job(raw: dict[str, Any], search_dir: str, archs: dict[str, dict[str, Any]], settings: dict[str, Any],
                cache_dir: str) -> list[str]:
    """Worker: every architecture of ``archs`` (name -> genotype dict) as a one-hot sub-network of the final
    super-network of the search in ``search_dir``: BatchNorm statistics re-estimated as the search does
    (``SearchEngine.recalibrate_bn``), then attacked with the benchmark's PGD spectrum on the stand-alone models'
    test images (robust accuracy as the stand-alone models', and the mean cross-entropy at each strength under
    PGD noise crafted as the search crafts its anchors). Each result is written to ``cache_dir/<name>.json`` as soon
    as it is measured; returns the names."""
    import torch
    import torch.nn.functional as F

    from wsr_bench.config import config_from_dict
    from wsr_bench.data.datasets import as_tensors, load_dataset
    from wsr_bench.estimators.noise import pgd_noise
    from wsr_bench.evaluate.spectrum import evaluate_spectrum
    from wsr_bench.infra.atomic import atomic_write_json
    from wsr_bench.infra.checkpoint import load_checkpoint
    from wsr_bench.search.wsr_nas import WsrSearch
    from wsr_bench.search_space.genotype import Genotype
    from wsr_bench.search_space.supernet import derive_genotype

    torch.set_num_threads(1)
    cache = Path(cache_dir)
    todo = {k: v for k, v in archs.items() if not (cache / f"{k}.json").is_file()}
    if not todo:
        return []
    cfg = config_from_dict(copy.deepcopy(raw))
    s = settings
    splits = load_dataset(s.get("dataset", "fashion_mnist"), image_size=s["image_size"], seed=s["data_seed"])
    x, y = as_tensors(splits.test, s["test_images"])
    with tempfile.TemporaryDirectory(prefix="oneshot_") as tmp:
        engine = WsrSearch(cfg, tmp)
        engine.load_state_dict(load_checkpoint(Path(search_dir) / "checkpoint.pt"))
        for name, geno in todo.items():
            t0, c0 = time.perf_counter(), time.process_time()
            H = genotype_to_onehot(geno, engine.supernet.nodes)
            derived = derive_genotype(H, engine.supernet.nodes, "alpha")
            if edge_agreement(derived, Genotype.from_dict(geno)) != 1.0:
                raise RuntimeError(f"{name}: the one-hot H does not derive back to its genotype")
            engine.recalibrate_bn(H)
            model = engine.view(H).eval()
            res = evaluate_spectrum(model, x, y, eps=SPECTRUM, attack="pgd", steps=s["attack_steps"], batch_size=250,
                                    device=engine.device, seed=s["data_seed"])
            survived = [sum(b > e + 1e-9 for e in SPECTRUM) for b in res.break_eps.tolist()]
            torch.manual_seed(s["data_seed"])
            sums = torch.zeros(len(SPECTRUM), dtype=torch.float64)
            for i in range(0, len(y), 250):
                xb, yb = x[i:i + 250].to(engine.device), y[i:i + 250].to(engine.device)
                noise = pgd_noise(model, xb, yb, SPECTRUM, steps=s["attack_steps"],
                                  random_start=engine.scfg.attack_random_start)
                with torch.no_grad():
                    for k in range(len(SPECTRUM)):
                        sums[k] += F.cross_entropy(model((xb + noise[:, k]).clamp(0, 1)), yb, reduction="sum").item()
            losses = (sums / len(y)).tolist()
            atomic_write_json(cache / f"{name}.json", {
                "name": name, "supernet": Path(search_dir).name, "clean_acc": res.clean_accuracy,
                "robust_curve": [res.robust_accuracy[e] for e in res.eps],
                "avg_robust_acc": sum(survived) / (len(SPECTRUM) * len(survived)), "robust_losses": losses,
                "robust_loss": sum(losses) / len(losses),
                "survived": "".join(str(v) for v in survived), "seconds": time.perf_counter() - t0,
                "cpu_seconds": time.process_time() - c0})
    return list(todo)


# ------------------------------------------------------------------------------------------------ power: the run
def power_jobs(settings: dict[str, Any]) -> tuple[dict[str, dict[str, Any]], dict[str, tuple[str, Any]]]:
    """The searches (name -> config) and the architectures known before any search ends (random, published)."""
    searches = {f"wsr-seed{s}": search_config(settings, "wsr", s) for s in range(settings["wsr_seeds"])}
    searches.update({f"naive-seed{s}": search_config(settings, "naive", s) for s in range(settings["naive_seeds"])})
    rng = random.Random(12345)  # the draws of quick mode: random-0..7 are quick mode's genotypes
    archs: dict[str, tuple[str, Any]] = {f"random-{i}": ("random", random_genotype(rng, f"random-{i}"))
                                         for i in range(settings["random"])}
    archs.update({name: ("published", name) for name in settings["published"]})
    return searches, archs


def _check_workdir(workdir: Path, settings: dict[str, Any]) -> None:
    """Refuse a work folder that caches results of other settings. The worker count may change, and so may the
    number of training seeds: seed k's model is the same job whatever the count, so more seeds reuse the cache."""
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / "settings.json"
    free = ("workers", "train_seeds")
    mine = {k: v for k, v in settings.items() if k not in free}
    if path.is_file():
        theirs = {k: v for k, v in json.loads(path.read_text()).items() if k not in free}
        if theirs != mine:
            raise SystemExit(f"{workdir} caches a run with other settings ({path}); use another --workdir")
    path.write_text(json.dumps(settings, indent=1) + "\n")


def run_power(settings: dict[str, Any], workdir: Path, workers: int | None = None) -> dict[str, Any]:
    """The --power pipeline: searches, then every architecture trained with ``train_seeds`` seeds and measured as a
    sub-network of one search's super-network; every search, model and one-shot measurement is cached in
    ``workdir``. Jobs run in one pool as soon as what they need exists (trainings of random and published cells
    beside the searches)."""
    from concurrent.futures import FIRST_COMPLETED, wait

    from wsr_bench.infra.runtime import resolve_device
    from wsr_bench.models.wsrnet import GENOTYPE_OF
    from wsr_bench.search_space.genotype import known_genotypes

    s = settings
    _check_workdir(workdir, s)
    load_start, t0 = load_average(), time.perf_counter()
    search_cfgs, archs = power_jobs(s)
    dirs = {k: workdir / d for k, d in (("search", "search"), ("searches", "searches"), ("models", "models"),
                                         ("oneshot", "oneshot"))}
    for d in dirs.values():
        d.mkdir(parents=True, exist_ok=True)
    seeds = list(range(s["train_seeds"]))
    known = known_genotypes()

    def genotype_of(arch: Any) -> dict[str, Any]:
        return arch if isinstance(arch, dict) else known[GENOTYPE_OF[arch]].genotype.to_dict()

    searches: dict[str, dict[str, Any]] = {}
    pending: dict[Future, tuple[str, str]] = {}
    search_done_at: float | None = None
    oneshot_submitted = False
    n_workers = s["workers"] if workers is None else workers
    with executor(n_workers) as pool, _cancel_on_error(pending):
        def train(name: str, arch: Any) -> None:
            for seed in seeds:
                if not (dirs["models"] / f"{name}-seed{seed}.json").is_file():
                    pending[pool.submit(train_and_attack, f"{name}-seed{seed}", arch, s, str(workdir), seed,
                                        data_seed=s["data_seed"])] = ("model", f"{name}-seed{seed}")

        def search_finished(key: str, result: dict[str, Any]) -> None:
            searches[key] = result
            kind = "naive" if key.startswith("naive") else "wsr"
            archs[key] = (kind, {**result["genotype"], "name": key})
            train(key, archs[key][1])

        for key, raw in search_cfgs.items():  # the searches first: they take longest
            cached = dirs["searches"] / f"{key}.json"
            if cached.is_file():
                search_finished(key, json.loads(cached.read_text()))
            else:
                pending[pool.submit(power_search_job, raw, str(dirs["search"] / key))] = ("search", key)
        for name, (_, arch) in list(archs.items()):
            if name not in searches:
                train(name, arch)
        while pending or not oneshot_submitted:
            if len(searches) == len(search_cfgs) and not oneshot_submitted:
                search_done_at = search_done_at or time.perf_counter()
                oneshot_submitted = True
                names = sorted(archs)
                chunks = [names[i::max(n_workers, 1)] for i in range(max(n_workers, 1))]
                key = s["oneshot_supernet"]
                for chunk in (c for c in chunks if c):
                    pending[pool.submit(oneshot_job, search_cfgs[key], str(dirs["search"] / key),
                                        {n: genotype_of(archs[n][1]) for n in chunk}, s,
                                        str(dirs["oneshot"]))] = ("oneshot", ",".join(chunk))
                continue
            done, _ = wait(list(pending), return_when=FIRST_COMPLETED)
            for future in done:
                phase, key = pending.pop(future)
                result = future.result()
                if phase == "search":
                    (dirs["searches"] / f"{key}.json").write_text(json.dumps(result))
                    search_finished(key, result)
                elif phase == "model":
                    (dirs["models"] / f"{key}.json").write_text(json.dumps(result))
                print(f"done {phase} {key}", flush=True)
    order = [k for k in search_cfgs] + [k for k in archs if k not in search_cfgs]  # found, random, published
    archs = {k: archs[k] for k in order}
    searches = {k: searches[k] for k in search_cfgs}
    return assemble_power(s, archs, searches, dirs, seeds, genotype_of, load_start, t0,
                          (search_done_at or time.perf_counter()) - t0, resolve_device())


@contextlib.contextmanager
def _cancel_on_error(pending: dict[Future, Any]) -> Iterator[None]:
    """On an error, cancel the queued jobs (the pool would otherwise run them all before the error is raised)."""
    try:
        yield
    except BaseException:
        for future in pending:
            future.cancel()
        raise


def assemble_power(s: dict[str, Any], archs: dict[str, tuple[str, Any]], searches: dict[str, dict[str, Any]],
                   dirs: dict[str, Path], seeds: list[int], genotype_of: Any, load_start: float, t0: float,
                   search_wall: float, device: str) -> dict[str, Any]:
    """The --power result from the cached searches, models and one-shot measurements."""
    from wsr_bench.search.diagnostics import cell_counts
    from wsr_bench.search_space.genotype import Genotype

    models, per_image, per_seed_survived = [], {}, {}
    for name, (kind, arch) in archs.items():
        runs = [json.loads((dirs["models"] / f"{name}-seed{seed}.json").read_text()) for seed in seeds]
        oneshot = json.loads((dirs["oneshot"] / f"{name}.json").read_text())
        geno = Genotype.from_dict(genotype_of(arch))
        scores = np.mean([r["scores"] for r in runs], axis=0)
        per_image[name] = [round(float(v), 6) for v in scores]
        per_seed_survived[name] = ["".join(str(round(v * len(SPECTRUM))) for v in r["scores"]) for r in runs]
        models.append({
            "name": name, "kind": kind, "genotype": geno.to_dict(),
            "seeds": [{"seed": seed, "avg_robust_acc": float(np.mean(r["scores"])), "clean_acc": r["clean_acc"],
                       "robust_curve": r["robust_curve"], "train_seconds": r["train_seconds"],
                       "eval_seconds": r["eval_seconds"], "train_cpu_seconds": r.get("train_cpu_seconds"),
                       "eval_cpu_seconds": r.get("eval_cpu_seconds")} for seed, r in zip(seeds, runs, strict=True)],
            "avg_robust_acc": float(scores.mean()), "clean_acc": float(np.mean([r["clean_acc"] for r in runs])),
            "robust_curve": np.mean([r["robust_curve"] for r in runs], axis=0).tolist(),
            "params": runs[0]["params"], "parameter_free_normal": cell_counts(geno.normal)["parameter_free"],
            "parameter_free_reduce": cell_counts(geno.reduce)["parameter_free"],
            "oneshot": {k: oneshot[k] for k in ("supernet", "clean_acc", "robust_curve", "avg_robust_acc",
                                                "robust_losses", "robust_loss", "seconds", "cpu_seconds")}})
    noise = seed_noise({m["name"]: [r["avg_robust_acc"] for r in m["seeds"]] for m in models})
    image_var = float(np.mean([np.var(per_image[m["name"]], ddof=1) for m in models]))
    for m in models:  # seed noise of the seed average plus the test images' sampling noise of its mean
        half = 1.96 * math.sqrt(noise["within_var"] / len(seeds) + np.var(per_image[m["name"]], ddof=1)
                                / len(per_image[m["name"]]))
        m.update(ci_low=m["avg_robust_acc"] - half, ci_high=m["avg_robust_acc"] + half,
                 seed_sd=float(np.std([r["avg_robust_acc"] for r in m["seeds"]], ddof=1)) if len(seeds) > 1 else None)
    names = [m["name"] for m in models]
    pair_image_var = [float(np.var(np.subtract(per_image[a], per_image[b]), ddof=1)) / len(per_image[a])
                      for i, a in enumerate(names) for b in names[i + 1:]]
    mde = mde_points(noise["within_var"], len(seeds))
    mde_images = mde_points(noise["within_var"], len(seeds), extra_var=float(np.mean(pair_image_var)))
    seeds_1pt = seeds_for_mde(noise["within_var"], 1.0)
    model_seconds = [r["train_seconds"] + r["eval_seconds"] for m in models for r in m["seeds"]]
    model_cpu = [(r["train_cpu_seconds"] or 0) + (r["eval_cpu_seconds"] or 0) for m in models for r in m["seeds"]]
    cost = {"models_trained": len(model_seconds),
            "train_seconds_mean": float(np.mean([r["train_seconds"] for m in models for r in m["seeds"]])),
            "eval_seconds_mean": float(np.mean([r["eval_seconds"] for m in models for r in m["seeds"]])),
            "model_seconds_mean": float(np.mean(model_seconds)), "model_cpu_seconds_mean": float(np.mean(model_cpu))}
    stand = [m["avg_robust_acc"] for m in models]
    predictors = {"avg_robust_acc": [m["oneshot"]["avg_robust_acc"] for m in models],
                  "neg_robust_loss": [-m["oneshot"]["robust_loss"] for m in models],
                  "clean_acc": [m["oneshot"]["clean_acc"] for m in models]}
    tau_by = {k: kendall_bootstrap(v, stand, s["bootstrap"], s["bootstrap_seed"]) for k, v in predictors.items()}
    tau = {**tau_by["avg_robust_acc"], "supernet": s["oneshot_supernet"],
           "data": f"the stand-alone models' {s['test_images']} test images"}
    search_list = []
    for key, r in searches.items():
        method, seed = key.split("-seed")
        geno = r["genotype"]
        search_list.append({
            "name": key, "method": method, "seed": int(seed), "population": r["population"],
            "search_steps": r["search_steps"], "measured_architectures": r["population"] + r["search_steps"],
            "normal": geno["normal"], "reduce": geno["reduce"],
            "parameter_free_normal": r["report"]["cells"]["normal"]["parameter_free"],
            "parameter_free_reduce": r["report"]["cells"]["reduce"]["parameter_free"],
            "sampled_parameter_free_share": {c: r["report"]["cells"][c]["sampled_parameter_free_share"]
                                             for c in ("normal", "reduce")},
            **r["movement"], "vle_prediction": r["vle_prediction"], "seconds": r["search_seconds"],
            "cpu_seconds": r["cpu_seconds"]})
    by_method = {m: [x["name"] for x in search_list if x["method"] == m] for m in ("wsr", "naive")}
    agreement = {m: mean_pairwise_agreement([searches[k]["genotype"] for k in ks]) for m, ks in by_method.items()}
    agreement.update(random_expected=expected_random_agreement(), random_expected_how="exact",
                     random_observed=mean_pairwise_agreement([genotype_of(a) for k, a in archs.values()
                                                              if k == "random"]),
                     wsr_vs_naive=float(np.mean([edge_agreement(searches[a]["genotype"], searches[b]["genotype"])
                                                 for a in by_method["wsr"] for b in by_method["naive"]]))
                     if by_method["wsr"] and by_method["naive"] else None)
    summary = summarise_power(models, per_image, noise, len(seeds))
    phases = {"searches": _phase([r["search_seconds"] for r in searches.values()],
                                 [r["cpu_seconds"] for r in searches.values()]),
              "training": _phase(model_seconds, model_cpu),
              "oneshot": _phase([m["oneshot"]["seconds"] for m in models],
                                [m["oneshot"]["cpu_seconds"] for m in models])}
    return {"quick": False, "power": True, "machine": machine_record(load_start, device=device), "settings": s,
            "spectrum": SPECTRUM, "searches": search_list, "search_wall_seconds": search_wall, "models": models,
            "per_image_scores": per_image, "per_seed_survived": per_seed_survived, "summary": summary,
            "found_percentile": summary["found_percentile"], "seed_noise": noise,
            "mde_points": mde, "mde": {
                "points": mde, "points_with_images": mde_images, "alpha": 0.05, "power": 0.8,
                "formula": "(z_0.975 + z_0.8) * sqrt(2 * within_var / n_seeds) * 100",
                "formula_with_images": "(z_0.975 + z_0.8) * sqrt(2 * within_var / n_seeds + image_var) * 100, "
                                       "image_var = mean over architecture pairs of var_i(d_i) / n_images (d_i: "
                                       "difference of the pair's seed-averaged per-image scores)",
                "image_var": float(np.mean(pair_image_var)), "mean_image_score_var": image_var,
                "seeds_for_1_point": seeds_1pt,
                "cpu_hours_for_1_point_per_architecture": seeds_1pt * cost["model_cpu_seconds_mean"] / 3600,
                "cpu_hours_for_1_point_all_architectures": seeds_1pt * cost["model_cpu_seconds_mean"] * len(models)
                / 3600},
            "seed_agreement": agreement, "oneshot_kendall_tau": tau, "oneshot_kendall_tau_by": tau_by, "cost": cost,
            "phase_seconds": phases,
            "wall_seconds": time.perf_counter() - t0}


def _phase(seconds: list[float], cpu: list[float]) -> dict[str, float]:
    return {"jobs": len(seconds), "job_seconds": float(sum(seconds)), "cpu_seconds": float(sum(cpu))}


def summarise_power(models: list[dict[str, Any]], per_image: dict[str, list[float]], noise: dict[str, Any],
                    n_seeds: int) -> dict[str, Any]:
    """Quick mode's summary on the seed-averaged scores (percentiles, paired per-image tests), each paired test with
    its training-seed test beside it, the method-level comparisons (Mann-Whitney U of the found genotypes'
    seed-averaged scores against the random ones') and the pairs of architectures further apart than the MDE."""
    from scipy.stats import mannwhitneyu

    summ = summarise([{**m, "scores": per_image[m["name"]]} for m in models])
    by_name = {m["name"]: m for m in models}
    seeds_of = {m["name"]: [r["avg_robust_acc"] for r in m["seeds"]] for m in models}
    if "within_var" in noise:
        for t in summ["paired_tests"]:
            t["seed_test"] = seed_test(seeds_of[t["model"]], seeds_of[t["against"]], noise["within_var"],
                                       noise["within_df"])
    accs = {k: [m["avg_robust_acc"] for m in models if m["kind"] == k] for k in ("wsr", "naive", "random",
                                                                                   "published")}
    methods = {}
    for kind in ("wsr", "naive"):
        for ref in ("random", "published"):
            a, b = accs[kind], accs[ref]
            if a and b:
                methods[f"{kind}_vs_{ref}"] = {"mean_diff": float(np.mean(a) - np.mean(b)), "n": [len(a), len(b)],
                                               "mannwhitney_p": float(mannwhitneyu(a, b, alternative="two-sided")
                                                                      .pvalue)}
    summ["methods"] = methods
    summ["kind_means"] = {k: (float(np.mean(v)) if v else None) for k, v in accs.items()}
    if "within_var" in noise:
        mde = mde_points(noise["within_var"], n_seeds) / 100
        names = list(by_name)
        diffs = [abs(by_name[a]["avg_robust_acc"] - by_name[b]["avg_robust_acc"]) for i, a in enumerate(names)
                 for b in names[i + 1:]]
        summ["pairs_beyond_mde"] = [int(sum(d > mde for d in diffs)), len(diffs)]
        summ["spread_points"] = 100 * (max(by_name[n]["avg_robust_acc"] for n in names)
                                       - min(by_name[n]["avg_robust_acc"] for n in names))
    return summ


# ------------------------------------------------------------------------------------------------ power: report
def json_ready(obj: Any) -> Any:
    """``obj`` with every non-finite float (an undefined tau or p-value at toy sizes) as ``None`` (JSON null)."""
    if isinstance(obj, dict):
        return {k: json_ready(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [json_ready(v) for v in obj]
    if isinstance(obj, float | np.floating):
        return float(obj) if math.isfinite(obj) else None
    if isinstance(obj, np.integer):
        return int(obj)
    return obj


def _num(v: float | None, spec: str = ".3g") -> str:
    """``v`` formatted, or ``n/a`` when it is undefined (``None``)."""
    return "n/a" if v is None or (isinstance(v, float) and not math.isfinite(v)) else format(v, spec)


def _genotype_text(edges: list[Any]) -> str:
    return " ".join(f"{op}<{src}" for op, src in edges)


def random_draw_report(models: list[dict[str, Any]]) -> str:
    """How representative the random genotypes are: their parameter-free edges against the expectation for uniform
    draws (3 of the 7 non-``none`` ops, so 48/7 = 6.86 of 16 edges; the z-score uses the binomial SD of a mean of
    ``n`` genotypes), and their parameter counts against the found ones' (score tracks size, so a control of
    other size is no control: benchmarks/search_signal.py draws size-matched ones)."""
    rand = [m for m in models if m["kind"] == "random"]
    found = [m for m in models if m["kind"] in ("wsr", "naive")]
    if not rand:
        return "No random genotypes."
    k = len(NON_NONE_OPS)
    share = 3 / k
    pf = [m["parameter_free_normal"] + m["parameter_free_reduce"] for m in rand]
    mean, expected = float(np.mean(pf)), 16 * share
    z = (mean - expected) / math.sqrt(16 * share * (1 - share) / len(pf))
    rand_params = float(np.mean([m["params"] for m in rand]))
    found_params = float(np.mean([m["params"] for m in found])) if found else float("nan")
    verdict = "unrepresentative of uniform draws" if abs(z) > 2 else "within the spread of uniform draws"
    size = ("and smaller than the found cells" if rand_params < 0.95 * found_params else
            "and larger than the found cells" if rand_params > 1.05 * found_params else
            "and as large as the found cells")
    return (f"**The random draws as a control.** The {len(rand)} uniform random genotypes have {mean:.1f} of 16 edges "
            f"parameter-free on average against {expected:.2f} expected for uniform draws (z = {z:+.1f}) and "
            f"{rand_params / 1e3:.1f}k parameters on average against {found_params / 1e3:.1f}k for the found cells: "
            f"{verdict}, {size}, so the method-level comparison above is not size-matched "
            f"(benchmarks/search_signal.py draws size-matched controls).")


def render_power(result: dict[str, Any]) -> str:
    from wsr_bench.config import nest_search_keys

    s, summ, noise, mde = result["settings"], result["summary"], result["seed_noise"], result["mde"]
    data = "digits" if s.get("dataset") == "digits" else "Fashion-MNIST"
    n_seeds, machine, cost = noise["n_seeds"], result["machine"], result["cost"]
    phases = result["phase_seconds"]
    srch = nest_search_keys(s["search_overrides"])  # results written before the sections hold flat keys
    mode = "power, smoke" if result.get("smoke") else "power"
    lines = [
        f"# Search quality ({mode}): can the benchmark tell cells apart, and do Wsr-NAS cells beat random ones?", "",
        f"Machine: {machine['processor']}, {machine['cpu_count']} cores, torch {machine['torch']}, device "
        f"{machine['device']}, load {machine.get('load_start')} at the start and {machine.get('load_end')} at the "
        f"end; wall time {result['wall_seconds'] / 3600:.2f} h (the last invocation, cached jobs not counted) with "
        f"{s['workers']} worker processes. Compute "
        f"(single-thread jobs, CPU seconds): searches {phases['searches']['cpu_seconds'] / 3600:.2f} h "
        f"({phases['searches']['jobs']} jobs), training and attack {phases['training']['cpu_seconds'] / 3600:.2f} h "
        f"({phases['training']['jobs']} models), one-shot {phases['oneshot']['cpu_seconds'] / 3600:.2f} h; one "
        f"model: {cost['train_seconds_mean']:.0f} s training + {cost['eval_seconds_mean']:.0f} s attack (wall, "
        f"mean), {cost['model_cpu_seconds_mean']:.0f} CPU s.", "",
        f"**Retraining scale.** {data} {s['image_size']}x{s['image_size']}; every architecture built at C="
        f"{s['init_channels']}, {s['layers']} cells; PGD-{s['train_steps']} training at eps {s['train_eps']} for "
        f"{s['epochs']} epochs on the same {s['train_images']} training images (lr {s['lr']}, batch "
        f"{s['batch_size']}), {n_seeds} training seeds (seed = model initialisation, data order and attack "
        f"randomness); PGD-{s['attack_steps']} over {SPECTRUM} on the same {s['test_images']} test images. "
        f"Score of an image = the share of the four strengths it survives; average robust accuracy = the mean "
        f"score.", "",
        f"**Searches.** The search section of configs/demo.yaml on the same data (C={srch.get('init_channels', 4)} "
        f"super-network, {srch.get('layers', 3)} cells), population {srch['population']}, {srch['search_steps']} "
        f"steps, arch_lr {srch['arch']['lr']:g} (T * arch_lr = {srch['search_steps'] * srch['arch']['lr']:g}), "
        f"ane_lr_warmup {srch.get('ane', {}).get('lr_warmup', 100)}, no cap on parameter-free ops; Wsr-NAS seeds "
        f"0-{s['wsr_seeds'] - 1}, naive (PGD at all six strengths, gradient through the super-network) seeds "
        f"0-{s['naive_seeds'] - 1}. Random genotypes: {s['random']} uniform draws (quick mode's draws).", "",
        "## 1. Noise: how far apart must two cells be to be told apart?", "",
        f"- Within an architecture (training seeds, pooled over {noise['n_architectures']} architectures, "
        f"{noise['within_df']} degrees of freedom): SD **{100 * noise['within_sd']:.2f} points** of average "
        f"robust accuracy.",
        f"- Between architectures (SD of the {noise['n_architectures']} seed-averaged scores): "
        f"**{100 * noise['between_sd']:.2f} points** ({100 * noise['between_sd_true']:.2f} after removing the "
        f"seed noise of a {n_seeds}-seed average); all architectures within {summ['spread_points']:.2f} points.",
        f"- Minimum detectable effect of a two-sided comparison of two architectures' {n_seeds}-seed averages at "
        f"alpha 0.05 and 80% power: MDE = (z_0.975 + z_0.8) * sqrt(2 * within_var / n_seeds) = "
        f"**{mde['points']:.2f} points** (seed noise only, for a verdict on these test images); "
        f"{mde['points_with_images']:.2f} points with a test-image term (+ mean over architecture pairs of "
        f"var_i(d_i) / {s['test_images']}, d_i the pair's per-image difference of seed-averaged scores; it "
        f"counts the per-image seed noise twice, so it is an upper bound) for a verdict on {data} at large.",
        f"- {summ['pairs_beyond_mde'][0]} of {summ['pairs_beyond_mde'][1]} pairs of architectures differ by more "
        f"than the MDE.",
        f"- An MDE of 1 point would need **{mde['seeds_for_1_point']} seeds** per architecture: "
        f"{mde['cpu_hours_for_1_point_per_architecture']:.1f} CPU-hours per architecture at the measured "
        f"{cost['model_cpu_seconds_mean']:.0f} CPU s per model, "
        f"{mde['cpu_hours_for_1_point_all_architectures']:.1f} CPU-hours for these {len(result['models'])} "
        f"architectures.", "",
        "## 2. Every architecture", "",
        f"Seed-averaged ({n_seeds} seeds); the interval is 1.96 * sqrt(within_var / n_seeds + var_i(score_i) / "
        f"n_images); one-shot = the same genotype as a one-hot sub-network of "
        f"{result['oneshot_kendall_tau']['supernet']}'s "
        f"final super-network (BatchNorm re-estimated, same attack and test images).", "",
        "| model | kind | parameter-free normal / reduce | params | clean | robust @ " + " / ".join(
            f"{e:g}" for e in SPECTRUM) + " | avg robust (95% CI) | per seed | one-shot avg robust / robust loss |",
        "|---|---|---|---|---|---|---|---|---|"]
    for m in sorted(result["models"], key=lambda m: -m["avg_robust_acc"]):
        curve = " / ".join(f"{v:.3f}" for v in m["robust_curve"])
        per_seed = ", ".join(f"{r['avg_robust_acc']:.4f}" for r in m["seeds"])
        lines.append(f"| {m['name']} | {m['kind']} | {m['parameter_free_normal']}/8, {m['parameter_free_reduce']}/8 "
                     f"| {m['params'] / 1e3:.1f}k | {m['clean_acc']:.3f} | {curve} | {m['avg_robust_acc']:.4f} "
                     f"({m['ci_low']:.4f}-{m['ci_high']:.4f}) | {per_seed} | {m['oneshot']['avg_robust_acc']:.4f} / "
                     f"{m['oneshot']['robust_loss']:.3f} |")
    n_random = sum(m["kind"] == "random" for m in result["models"])
    per_seed_pct = ", ".join(f"{k} {v:.1f}" for k, v in summ["wsr_percentiles"].items())
    kind_means = ", ".join(f"{k} {100 * v:.2f}" for k, v in summ["kind_means"].items() if v is not None)
    lines += ["", "## 3. The verdict at this power", "",
              f"Mean seed-averaged average robust accuracy by kind (points): {kind_means}.", "",
              f"**Best Wsr-NAS genotype ({summ['best_wsr']}) percentile among the {n_random} random genotypes: "
              f"{summ['found_percentile']:.1f}** (each seed: {per_seed_pct}; the best of several seeds is a "
              f"selected value; naive: {', '.join(f'{p:.1f}' for p in summ['naive_percentile'])}).", "",
              "Method level (seed-averaged scores of the found genotypes against those of the reference kind; "
              "Mann-Whitney U, two-sided):", "",
              "| comparison | mean difference (points) | genotypes | p |", "|---|---|---|---|"]
    for k, v in summ["methods"].items():
        lines.append(f"| {k.replace('_', ' ')} | {100 * v['mean_diff']:+.2f} | {v['n'][0]} vs {v['n'][1]} | "
                     f"{_num(v['mannwhitney_p'])} |")
    lines += ["", "Paired tests of each found genotype against the median random genotype and the best published "
              "one: per-image scores averaged over seeds on the same test images (mean difference with its 95% "
              "interval, Wilcoxon signed-rank p; these see only the test images' noise) and, beside them, the same "
              "difference against the training-seed noise (pooled within-architecture variance, t-test):", "",
              "| model | against | per-image mean difference (95% CI) | images that differ | Wilcoxon p | seed "
              "95% CI | seed p |", "|---|---|---|---|---|---|---|"]
    for t in summ["paired_tests"]:
        st = t.get("seed_test", {})
        lines.append(f"| {t['model']} | {t['against']} | {t['mean_diff']:+.4f} ({t['ci_low']:+.4f} to "
                     f"{t['ci_high']:+.4f}) | {t['n_differ']} | {_num(t['wilcoxon_p'])} | "
                     f"{_num(st.get('ci_low'), '+.4f')} to {_num(st.get('ci_high'), '+.4f')} | {_num(st.get('p'))} |")
    lines += ["", random_draw_report(result["models"])]
    lines += ["", "## 4. The searches", "",
              "| search | measured architectures | entropy of softmax(A) start -> end (drop; max edge drop) | max "
              "abs(A - A_0) | VLE tau (predicted vs measured, search steps) | normal cell | reduce cell | CPU s |",
              "|---|---|---|---|---|---|---|---|"]
    for x in result["searches"]:
        vle = x["vle_prediction"]
        vle_text = f"{vle['tau']:+.2f} (n={vle['n']})" if vle.get("tau") is not None else "-"
        lines.append(f"| {x['name']} | {x['measured_architectures']} ({x['population']} + {x['search_steps']}) | "
                     f"{x['entropy_start']:.5f} -> {x['entropy_end']:.5f} ({x['entropy_drop']:.2e}; "
                     f"{x['entropy_drop_max_edge']:.2e}) | {x['max_abs_change']:.4f} | {vle_text} | "
                     f"{x['parameter_free_normal']}/8 parameter-free: {_genotype_text(x['normal'])} | "
                     f"{x['parameter_free_reduce']}/8: {_genotype_text(x['reduce'])} | {x['cpu_seconds']:.0f} |")
    ag = result["seed_agreement"]

    def pct(v: float | None) -> str:
        return "-" if v is None else f"{100 * v:.1f}%"

    lines += ["", f"Maximum entropy log 8 = {math.log(8):.4f}. Agreement between seeds (share of the 16 edges two "
              f"genotypes share, same op from the same input at the same node, mean over pairs of seeds): Wsr-NAS "
              f"{pct(ag['wsr'])}, naive {pct(ag['naive'])}, Wsr-NAS vs naive {pct(ag.get('wsr_vs_naive'))}; two "
              f"uniformly random genotypes {pct(ag['random_expected'])} ({ag['random_expected_how']}: sum over nodes "
              f"of 4 / (n_inputs * 7), over 8 edges; the {n_random} random genotypes here: "
              f"{pct(ag.get('random_observed'))}).", "",
              "## 5. One-shot fidelity", ""]
    tau = result["oneshot_kendall_tau"]
    lines += [f"Kendall tau between the one-shot and the stand-alone seed-averaged average robust accuracy over the "
              f"{tau['n']} architectures: **{_num(tau['tau'], '+.3f')}** (bootstrap 95% interval "
              f"{_num(tau['ci_low'], '+.3f')} to {_num(tau['ci_high'], '+.3f')}, {tau['n_boot']} resamples of the "
              f"architectures, seed {tau['seed']}; p = {_num(tau['p_value'])}). "
              f"Super-network: the final one of {tau['supernet']}; data: {tau['data']}. "
              f"A genotype is the one-hot H with its two chosen (op, input) edges per node and `none` on the other "
              f"inputs, so it runs 8 of the 14 edges of a cell, while the super-network was trained on draws that "
              f"run almost every edge.", ""]
    by = result.get("oneshot_kendall_tau_by", {})
    other = [f"{label} {_num(by[k]['tau'], '+.3f')} ({_num(by[k]['ci_low'], '+.3f')} to "
             f"{_num(by[k]['ci_high'], '+.3f')})" for k, label in (
                 ("neg_robust_loss", "minus the one-shot robust loss (mean cross-entropy over the four strengths "
                                     "under PGD as the search crafts it)"),
                 ("clean_acc", "the one-shot clean accuracy")) if k in by]
    if other:
        lines += [f"Secondary one-shot predictors (same test, not the pre-specified one): {'; '.join(other)}.", ""]
    lines += ["## What the numbers show", "", verdict_text(result)]
    if result.get("finding"):
        lines += ["", result["finding"]]
    return "\n".join(lines) + "\n"


def verdict_text(result: dict[str, Any]) -> str:
    """The verdict, stated from the numbers by fixed rules (no threshold is tuned to the outcome)."""
    summ, mde, noise = result["summary"], result["mde"], result["seed_noise"]
    tau = result["oneshot_kendall_tau"]
    beyond, pairs = summ["pairs_beyond_mde"]
    differ = noise.get("anova_p") is not None and noise["anova_p"] < 0.05
    typical = 2 / math.sqrt(math.pi) * 100 * noise["between_sd_true"]  # E|d| of two normal draws, sd sqrt(2)*sd_b
    reach = ("can tell typical cells of this space apart" if typical >= mde["points"] else
             "tells two cells apart only when they differ more than typical cells of this space do")
    text = [f"The architectures {'differ' if differ else 'are not shown to differ'} beyond training-seed noise "
            f"(one-way ANOVA of the per-seed scores over {noise['n_architectures']} architectures: F = "
            f"{_num(noise['anova_f'], '.2f')}, p = {_num(noise['anova_p'])}). With {noise['n_seeds']} training seeds a "
            f"comparison of two cells detects (80% power, alpha 0.05) differences of {mde['points']:.2f} points or "
            f"more, while two of these cells differ by about {typical:.2f} points on average (1.13 x the "
            f"between-architecture SD after removing seed noise, {100 * noise['between_sd_true']:.2f}); all lie "
            f"within {summ['spread_points']:.2f} points and {beyond} of {pairs} pairs are observed further apart "
            f"than the MDE. So at this scale the benchmark {reach}."]
    m = summ["methods"].get("wsr_vs_random")
    if m:
        beats = m["mean_diff"] > 0 and (m["mannwhitney_p"] or 1.0) < 0.05
        text.append(f"Wsr-NAS genotypes score {100 * m['mean_diff']:+.2f} points against the random ones on average "
                    f"(Mann-Whitney p = {_num(m['mannwhitney_p'])}, {m['n'][0]} vs {m['n'][1]} genotypes): Wsr-NAS "
                    f"{'beats' if beats else 'does not detectably beat'} random cells at this power "
                    f"(best seed's percentile {summ['found_percentile']:.1f}).")
    n = summ["methods"].get("naive_vs_random")
    if n:
        text.append(f"The naive search: {100 * n['mean_diff']:+.2f} points against random (p = "
                    f"{_num(n['mannwhitney_p'])}).")
    lo, hi = tau["ci_low"], tau["ci_high"]
    agrees = ("agrees" if lo is not None and lo > 0 else "disagrees" if hi is not None and hi < 0 else
              "is not shown to agree")
    text.append(f"The one-shot ranking {agrees} with the stand-alone one (tau {_num(tau['tau'], '+.2f')}, interval "
                f"{_num(lo, '+.2f')} to {_num(hi, '+.2f')}).")
    return " ".join(text)


# ------------------------------------------------------------------------------------------------ main
def run(quick: bool, seeds: int, n_random: int, workdir: Path, smoke: bool = False) -> dict[str, Any]:
    from wsr_bench.infra.runtime import resolve_device
    from wsr_bench.models.wsrnet import GENOTYPE_OF
    from wsr_bench.search.diagnostics import cell_counts
    from wsr_bench.search_space.genotype import Genotype, known_genotypes

    settings = SETTINGS["smoke" if smoke else "quick" if quick else "full"]
    load_start, t0 = load_average(), time.perf_counter()
    jobs = {f"wsr-seed{s}": search_config(settings, "wsr", s) for s in range(seeds)}
    jobs["naive-seed0"] = search_config(settings, "naive", 0)
    with executor(settings["workers"]) as pool:
        futures = {k: pool.submit(run_search_job, raw, str(workdir / "search" / k)) for k, raw in jobs.items()}
        searches = {k: f.result() for k, f in futures.items()}
    search_wall = time.perf_counter() - t0
    rng = random.Random(12345)
    archs: dict[str, tuple[str, Any]] = {k: ("naive" if k.startswith("naive") else "wsr", s["genotype"])
                                         for k, s in searches.items()}
    archs.update({f"random-{i}": ("random", random_genotype(rng, f"random-{i}")) for i in range(n_random)})
    known = known_genotypes()
    archs.update({name: ("published", name) for name in settings.get("published", PUBLISHED)})
    cache = workdir / "models"
    cache.mkdir(parents=True, exist_ok=True)
    todo = {k: v for k, v in archs.items() if not (cache / f"{k}.json").is_file()}
    with executor(settings["workers"]) as pool:
        futures = {k: pool.submit(train_and_attack, k, arch, settings, str(workdir), 0)
                   for k, (_, arch) in todo.items()}
        for k, f in futures.items():
            (cache / f"{k}.json").write_text(json.dumps(f.result()))
            print(f"done {k}", flush=True)
    models = []
    for name, (kind, arch) in archs.items():
        r = json.loads((cache / f"{name}.json").read_text())
        geno = Genotype.from_dict(arch) if isinstance(arch, dict) else known[GENOTYPE_OF[arch]].genotype
        mean, lo, hi = mean_ci(r["scores"])
        models.append({"name": name, "kind": kind, "genotype": geno.to_dict(), "avg_robust_acc": mean, "ci_low": lo,
                       "ci_high": hi, "clean_acc": r["clean_acc"], "robust_curve": r["robust_curve"],
                       "parameter_free_normal": cell_counts(geno.normal)["parameter_free"], "params": r["params"],
                       "train_seconds": r["train_seconds"], "eval_seconds": r["eval_seconds"],
                       "scores": r["scores"]})
    return {"quick": quick, **({"smoke": True} if smoke else {}),
            "machine": machine_record(load_start, device=resolve_device()), "settings": settings,
            "spectrum": SPECTRUM, "searches": searches, "search_wall_seconds": search_wall, "models": models,
            "summary": summarise(models), "wall_seconds": time.perf_counter() - t0}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="2 CPU cores, 16x16 images (about an hour)")
    p.add_argument("--power", action="store_true", help="2 CPU cores, about 4 CPU-hours: training-seed noise, the "
                   "minimum detectable effect, searches with data (3 Wsr-NAS and 2 naive seeds, population 20, 40 "
                   "steps), their agreement, one-shot fidelity and the verdict at that power "
                   "(benchmarks/results/search_quality_power.{json,md})")
    p.add_argument("--smoke", action="store_true", help="seconds: the --power pipeline at toy sizes on digits (with "
                   "--quick: quick mode's pipeline, 1 Wsr-NAS seed, 2 random genotypes, 1 published); checks that "
                   "the script runs, the numbers mean nothing; results in a temporary folder unless --out is given, "
                   "searches and models in another unless --workdir is")
    p.add_argument("--out", type=Path, default=None, help="results JSON (a .md is written beside it; default "
                   "benchmarks/results/search_quality[_quick|_power].json)")
    p.add_argument("--seeds", type=int, default=None, help="Wsr-NAS search seeds (quick and full modes; default 2)")
    p.add_argument("--random", type=int, default=None, help="random genotypes (quick and full modes; default 8)")
    p.add_argument("--workers", type=int, default=None, help="worker processes of --power (default 2; 0 runs every "
                   "job in this process)")
    p.add_argument("--workdir", type=Path, default=None, help="cache of searches, trained models and one-shot "
                   "measurements (default runs/search_quality[_quick|_power]; runs/ is git-ignored)")
    p.add_argument("--render", action="store_true", help="only rewrite the .md from the results .json")
    args = p.parse_args(argv)
    if args.power or (args.smoke and not args.quick):
        return main_power(args)
    args.seeds = 2 if args.seeds is None else args.seeds
    args.random = 8 if args.random is None else args.random
    if args.smoke and not args.render:
        args.seeds, args.random = 1, 2
    if args.out:
        out = args.out
    elif args.smoke and not args.render:
        out = smoke_out("search_quality")
    else:
        out = RESULTS / f"search_quality{'_quick' if args.quick else ''}.json"
    if args.render:  # the summary is recomputed from the stored per-image scores
        result = json.loads(out.read_text())
        scores = result["per_image_scores"]
        result["summary"] = summarise([{**m, "scores": scores[m["name"]]} for m in result["models"]])
    else:
        scratch = tempfile.TemporaryDirectory(prefix="search_quality_") if args.smoke and not args.workdir else None
        workdir = args.workdir or (Path(scratch.name) if scratch else
                                   ROOT / "runs" / f"search_quality{'_quick' if args.quick else ''}")
        try:
            full = run(args.quick, args.seeds, args.random, workdir, smoke=args.smoke)
        finally:
            if scratch:
                scratch.cleanup()
        result = {**full, "models": [{k: v for k, v in m.items() if k != "scores"} for m in full["models"]],
                  "per_image_scores": {m["name"]: m["scores"] for m in full["models"]}}
        if out.is_file():
            result["finding"] = json.loads(out.read_text()).get("finding")
    from wsr_bench.infra.atomic import atomic_write_report

    result["found_percentile"] = result["summary"]["found_percentile"]  # also at the top level, for readers
    atomic_write_report(out, result, render(result))
    print(render(result))
    print(f"wrote {out} and {out.with_suffix('.md')}")
    return 0


def main_power(args: argparse.Namespace) -> int:
    """``--power`` (and plain ``--smoke``, at toy sizes): run or resume it, or ``--render`` its .md again."""
    from wsr_bench.infra.atomic import atomic_write_report

    smoke = args.smoke and not args.render
    settings = dict(SETTINGS["power_smoke" if smoke else "power"])
    if args.workers is not None:
        settings["workers"] = args.workers
    if args.out:
        out = args.out
    elif smoke:
        out = smoke_out("search_quality_power")
    else:
        out = RESULTS / "search_quality_power.json"
    if args.render:  # the summary is recomputed from the stored per-image and per-seed scores
        result = json.loads(out.read_text())
        result["summary"] = summarise_power(result["models"], result["per_image_scores"], result["seed_noise"],
                                            result["settings"]["train_seeds"])
        result["found_percentile"] = result["summary"]["found_percentile"]
    else:
        scratch = tempfile.TemporaryDirectory(prefix="search_quality_power_") if smoke and not args.workdir else None
        workdir = args.workdir or (Path(scratch.name) if scratch else ROOT / "runs" / "search_quality_power")
        try:
            result = run_power(settings, workdir)
        finally:
            if scratch:
                scratch.cleanup()
        if smoke:
            result["smoke"] = True
        if out.is_file():
            result["finding"] = json.loads(out.read_text()).get("finding")
    result = json_ready(result)
    atomic_write_report(out, result, render_power(result))
    print(render_power(result))
    print(f"wrote {out} and {out.with_suffix('.md')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
