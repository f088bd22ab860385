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
    python benchmarks/search_quality.py                # one GPU: Fashion-MNIST 28x28, larger search and training
    python benchmarks/search_quality.py --quick --render   # rewrite the .md from the committed .json
    python benchmarks/search_quality.py --smoke        # seconds: toy sizes on digits, written to a temporary folder

Needs Fashion-MNIST (``make data``). Every finished search and model is cached in ``--workdir``, so an interrupted
run continues where it stopped.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import multiprocessing
import random
import sys
import tempfile
import time
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
                                                    "train_steps": 7, "attack_steps": 7, "arch_lr": 0.00012,
                                                    "ane_fill_batches": 4, "ane_batch": 64, "ane_lr_warmup": 1000},
             "init_channels": 16, "layers": 8, "train_images": 60000, "epochs": 20, "train_eps": 0.1,
             "train_steps": 7, "lr": 0.1, "batch_size": 128, "test_images": 10000, "attack_steps": 20,
             "workers": 1},
    # seconds: every step at toy sizes on the embedded digits (its numbers mean nothing; it checks that the script runs)
    "smoke": {"image_size": 16, "dataset": "digits", "published": ["wsrnet_basic"],
              "search_overrides": {"init_channels": 2, "population": 1, "search_steps": 1, "train_limit": 32,
                                   "val_limit": 16, "train_steps": 1, "attack_steps": 1, "bn_batches": 1,
                                   "ane_batch": 4, "vle_warmup_passes": 2, "vle_passes": 1},
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
    search = {**demo["search"], **settings["search_overrides"], "progress": False,
              "max_parameter_free_normal": None, "max_skip_normal": None}  # the search itself, without caps
    if method == "naive":
        search.update(method="naive", n1=6, n2=0, estimator="none")
    return {"name": f"{method}-seed{seed}", "seed": seed, "device": "auto",
            "data": {"name": settings.get("dataset", "fashion_mnist"), "image_size": settings["image_size"],
                     "batch_size": 64, "eval_batch_size": 256},
            "search": search}


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
def train_and_attack(name: str, arch: str | dict[str, Any], settings: dict[str, Any], workdir: str,
                     seed: int) -> dict[str, Any]:
    """Worker: build ``arch`` at the benchmark's size, adversarially train it, attack it over the spectrum."""
    import torch

    import wsr_bench.models  # noqa: F401  (timm registration)
    from wsr_bench.config import config_from_dict
    from wsr_bench.data import as_tensors, load_dataset
    from wsr_bench.evaluate.spectrum import evaluate_spectrum
    from wsr_bench.models.catalog import create
    from wsr_bench.runtime import resolve_device
    from wsr_bench.train import train_model

    torch.set_num_threads(1)
    s = settings
    dataset = s.get("dataset", "fashion_mnist")
    splits = load_dataset(dataset, image_size=s["image_size"], seed=seed)
    half = s["train_images"] // 2
    splits.train_t = torch.utils.data.Subset(splits.train_t, range(min(half, len(splits.train_t))))
    splits.train_v = torch.utils.data.Subset(splits.train_v, range(min(half, len(splits.train_v))))
    cfg = config_from_dict({
        "name": name, "seed": seed, "device": "auto",
        "data": {"name": dataset, "image_size": s["image_size"], "batch_size": s["batch_size"]},
        "model": {"init_channels": s["init_channels"], "layers": s["layers"]},
        "train": {"recipe": "pgd", "epochs": s["epochs"], "lr": s["lr"], "eps": s["train_eps"],
                  "steps": s["train_steps"], "eval_examples": 0}})
    torch.manual_seed(seed)
    kwargs = dict(init_channels=s["init_channels"], layers=s["layers"], num_classes=10, in_chans=splits.in_chans,
                  mean=splits.mean, std=splits.std)
    model = create("wsrnet", genotype=arch, **kwargs) if isinstance(arch, dict) else create(arch, **kwargs)
    t0 = time.perf_counter()
    train_model(cfg, model, splits, Path(workdir) / "train" / name, resume=True, device=cfg.device, progress=False)
    t1 = time.perf_counter()
    x, y = as_tensors(splits.test, s["test_images"])
    res = evaluate_spectrum(model.eval(), x, y, eps=SPECTRUM, attack="pgd", steps=s["attack_steps"], batch_size=250,
                            device=resolve_device(cfg.device), seed=seed)
    break_eps = res.break_eps.tolist()
    scores = [sum(b > e + 1e-9 for e in SPECTRUM) / len(SPECTRUM) for b in break_eps]
    return {"name": name, "clean_acc": res.clean_accuracy, "robust_curve": [res.robust_accuracy[e] for e in res.eps],
            "scores": scores, "params": sum(p.numel() for p in model.parameters()),
            "train_seconds": t1 - t0, "eval_seconds": time.perf_counter() - t1}


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


# ------------------------------------------------------------------------------------------------ main
def run(quick: bool, seeds: int, n_random: int, workdir: Path, smoke: bool = False) -> dict[str, Any]:
    from wsr_bench.models.wsrnet import GENOTYPE_OF
    from wsr_bench.runtime import resolve_device
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
    p.add_argument("--smoke", action="store_true", help="seconds: 1 Wsr-NAS seed, 2 random genotypes, 1 published, "
                   "toy sizes on digits (checks that the script runs; the numbers mean nothing); results in a "
                   "temporary folder unless --out is given, searches and models in another unless --workdir is")
    p.add_argument("--out", type=Path, default=None, help="results JSON (a .md is written beside it; default "
                   "benchmarks/results/search_quality[_quick].json)")
    p.add_argument("--seeds", type=int, default=2, help="Wsr-NAS search seeds")
    p.add_argument("--random", type=int, default=8, help="random genotypes")
    p.add_argument("--workdir", type=Path, default=None, help="cache of searches and trained models")
    p.add_argument("--render", action="store_true", help="only rewrite the .md from the results .json")
    args = p.parse_args(argv)
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
    from wsr_bench.io import atomic_write_report

    result["found_percentile"] = result["summary"]["found_percentile"]  # also at the top level, for readers
    atomic_write_report(out, result, render(result))
    print(render(result))
    print(f"wrote {out} and {out.with_suffix('.md')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
