"""Throughput: channels_last and bf16 autocast against contiguous float32, measured in the same run.

For each task the baseline (contiguous NCHW layout, float32: what wsr-bench did before ``memory_format`` existed)
and each variant run interleaved (baseline, variant, variant, ... then again, ``reps`` rounds), on the same data
and identically initialised networks, and each reports the median of its rounds. Tasks:

* ``train_step``: the package's adversarial-training step (``train_epoch`` with a PGD-3 ``TrainRecipe`` at eps 0.1,
  batch 64, SGD) of ``darts_v2`` and ``wsrnet_basic`` (C=8, 5 cells, 1 channel, Fashion-MNIST); variants
  ``channels_last`` and ``channels_last_bf16`` (``LoopOptions.amp="bf16"``), and ``compile`` once
  (``torch.compile`` of the channels-last network; its compile time is recorded apart).
* ``search_iteration``: one Wsr-NAS search iteration of ``configs/demo.yaml`` (Alg. 1 lines 20-24: adversarial
  training of a sampled sub-network for one epoch of D_t, the AN-Estimator update, PGD anchors and estimated noise
  on D_v, the losses, the VLE update and the EWSS step); ``ms_per_image`` is its time over the D_t images trained
  (``search.train_limit``); variants ``channels_last`` and ``channels_last_bf16`` (``search.amp``).
* ``pgd_sweep``: ``evaluate_spectrum`` with PGD-10 over 5 strengths (survivors-only) on a model adversarially
  trained for one epoch first; variant ``channels_last`` (evaluation stays float32).
* ``autoattack_sweep``: ``evaluate_spectrum`` with standard AutoAttack, downward sweep, 2 strengths, 16 images, at
  1 thread only (at 2 threads it would double the run for a row no goal asks for).

Every measurement is cached in ``--workdir`` (default ``runs/throughput``) as it finishes, with the load average
around it, so a killed run continues where it stopped; delete the folder to measure again.

Correctness, in the same run: the (image, eps) verdicts of every channels_last sweep against its contiguous
baseline (they may differ only through the order of float operations), and a ``darts_v2`` adversarially trained in
bf16 against the same network trained in float32 (same seed, data and recipe), both evaluated with PGD-20.

    python benchmarks/throughput.py --out benchmarks/results/throughput.json     # ~60 min on 2 idle cores
    python benchmarks/throughput.py --smoke                                      # seconds; writes to a temp folder
    python benchmarks/throughput.py --render --out benchmarks/results/throughput.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import load_average, machine_record, smoke_out  # noqa: E402

from wsr_bench.config import load_config  # noqa: E402
from wsr_bench.data.datasets import as_tensors, load_dataset  # noqa: E402
from wsr_bench.evaluate.spectrum import evaluate_spectrum  # noqa: E402
from wsr_bench.infra.atomic import atomic_write_json, atomic_write_report  # noqa: E402
from wsr_bench.infra.runtime import seed_everything, set_memory_format  # noqa: E402
from wsr_bench.leaderboard.stats import mcnemar_exact  # noqa: E402
from wsr_bench.models.catalog import create  # noqa: E402
from wsr_bench.search.wsr_nas import WsrSearch  # noqa: E402
from wsr_bench.train import LoopOptions, TrainRecipe, adversarial_examples, eval_epoch, train_epoch  # noqa: E402

logger = logging.getLogger("throughput")

TASKS = ("train_step", "search_iteration", "pgd_sweep", "autoattack_sweep")
VARIANTS = ("channels_last", "channels_last_bf16", "compile")
#: goals of the throughput issue: (task, variant, minimum speed-up at 1 thread)
GOALS = (("train_step", "channels_last", 1.8), ("search_iteration", "channels_last", 1.8),
         ("train_step", "channels_last_bf16", 2.0), ("search_iteration", "channels_last_bf16", 2.0),
         ("pgd_sweep", "channels_last", 1.5), ("autoattack_sweep", "channels_last", 1.5))


@dataclass(frozen=True)
class Config:
    dataset: str = "fashion_mnist"
    models: tuple[str, ...] = ("darts_v2", "wsrnet_basic")
    sizes: tuple[int, ...] = (16, 28)
    threads: tuple[int, ...] = (1, 2)
    init_channels: int = 8
    layers: int = 5
    batch: int = 64
    train_eps: float = 0.1
    train_steps: int = 3            # PGD-3 training attack
    timed_batches: int = 4          # training batches per timed round
    reps: int = 3                   # interleaved rounds per measurement (median reported)
    search_overrides: tuple[str, ...] = ()
    pretrain_images: int = 4000     # one epoch of PGD-3 before the sweeps, so that the curves are not trivial
    sweep_n: int = 256
    sweep_eps: tuple[float, ...] = (0.02, 0.05, 0.1, 0.15, 0.2)
    sweep_steps: int = 10
    aa_n: int = 16                  # standard AutoAttack costs ~10,000 passes per image that resists it
    aa_eps: tuple[float, ...] = (0.05, 0.15)
    aa_threads: tuple[int, ...] = (1,)  # thread counts the AutoAttack sweeps are timed at
    aa_reps: int = 1
    amp_images: int = 10000         # the bf16-vs-fp32 training check: darts_v2, 28x28 (or the largest size)
    amp_epochs: int = 2
    amp_test: int = 1000
    compile: bool = True


SMOKE = Config(dataset="digits", models=("darts_v2",), sizes=(16,), threads=(1,), init_channels=4, layers=3,
               batch=16, timed_batches=1, reps=1,
               search_overrides=("search.population=1", "search.train_limit=32", "search.val_limit=16",
                                 "search.vle.passes=2", "search.vle.warmup_passes=2", "search.ane.batch=8",
                                 "data.batch_size=16", "search.progress=false"),
               pretrain_images=32, sweep_n=16, sweep_eps=(0.05, 0.1), sweep_steps=2, aa_n=4, aa_eps=(0.1,),
               amp_images=32, amp_epochs=1, amp_test=16, compile=False)


# ------------------------------------------------------------------------------------------------ timing
def interleaved(runs: dict[str, Callable[[], float]], reps: int) -> dict[str, list[float]]:
    """Call every ``runs[name]()`` (returning seconds) once per round, in order, ``reps`` rounds."""
    out: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(reps):
        for name, run in runs.items():
            out[name].append(run())
    return out


def rows_from(task: str, model: str, size: int, threads: int, seconds: dict[str, list[float]], per: int,
              extra: dict[str, dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    """One row per variant: median ms per image over the rounds, against the ``baseline`` entry's median."""
    base = statistics.median(seconds["baseline"]) * 1000 / per
    rows = []
    for variant, secs in seconds.items():
        if variant == "baseline":
            continue
        ms = statistics.median(secs) * 1000 / per
        rows.append({"task": task, "model": model, "image_size": size, "threads": threads, "variant": variant,
                     "ms_per_image": round(ms, 3), "baseline_ms_per_image": round(base, 3),
                     "speedup": round(base / ms, 3), "rounds": len(secs), **(extra or {}).get(variant, {})})
    return rows


# ------------------------------------------------------------------------------------------------ pieces
def load_images(cfg: Config, size: int):
    """The dataset's splits at ``size`` (Fashion-MNIST, 1 channel; digits in the smoke run)."""
    return load_dataset(cfg.dataset, image_size=size, seed=0)


def build(cfg: Config, name: str, splits, seed: int = 0) -> torch.nn.Module:
    seed_everything(seed)
    return create(name, init_channels=cfg.init_channels, layers=cfg.layers, num_classes=splits.num_classes,
                  in_chans=splits.in_chans, mean=tuple(splits.mean), std=tuple(splits.std))


def batches(splits, n: int, batch: int, seed: int = 0) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The first ``n`` training images (a seeded shuffle) in batches, as tensors (no loader in the timing)."""
    x, y = as_tensors(splits.train_t, None)
    perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))[:n]
    return [(x[perm[i:i + batch]], y[perm[i:i + batch]]) for i in range(0, len(perm), batch)]


def train(model: torch.nn.Module, data, cfg: Config, amp: str = "none") -> float:
    """One pass of the package's training step over ``data``; returns its wall seconds."""
    recipe = TrainRecipe("pgd", eps=cfg.train_eps, steps=cfg.train_steps)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    t0 = time.perf_counter()
    train_epoch(model, data, opt, recipe, LoopOptions(grad_clip=5.0, amp=amp))
    return time.perf_counter() - t0


def bench_train_step(cfg: Config, name: str, size: int, threads: int, splits, compile_once: bool
                     ) -> list[dict[str, Any]]:
    data = batches(splits, cfg.batch * cfg.timed_batches, cfg.batch)
    base = set_memory_format(build(cfg, name, splits), "contiguous")
    cl = set_memory_format(build(cfg, name, splits), "channels_last")
    bf = set_memory_format(build(cfg, name, splits), "channels_last")
    runs: dict[str, Callable[[], float]] = {
        "baseline": lambda: train(base, data, cfg), "channels_last": lambda: train(cl, data, cfg),
        "channels_last_bf16": lambda: train(bf, data, cfg, amp="bf16")}
    extra: dict[str, dict[str, Any]] = {}
    if compile_once:
        compiled = torch.compile(set_memory_format(build(cfg, name, splits), "channels_last"))
        t0 = time.perf_counter()
        try:
            train(compiled, data[:1], cfg)  # compiles (forward and backward)
        except Exception as exc:  # a compiler failure is a result too, not a reason to lose the rest of the run
            logger.warning("torch.compile failed: %s", exc)
            extra["compile_error"] = f"{type(exc).__name__}: {str(exc)[:300]}"
        else:
            extra["compile"] = {"compile_seconds": round(time.perf_counter() - t0, 1)}
            runs["compile"] = lambda: train(compiled, data, cfg)
    for run in runs.values():  # warm-up round (allocator, oneDNN primitive caches), not timed
        run()
    seconds = interleaved(runs, cfg.reps)
    rows = rows_from("train_step", name, size, threads, seconds, cfg.batch * cfg.timed_batches, extra)
    if "compile_error" in extra:
        rows.append({"task": "train_step", "model": name, "image_size": size, "threads": threads, "variant": "compile",
                     "ms_per_image": None, "baseline_ms_per_image": rows[0]["baseline_ms_per_image"], "speedup": None,
                     "error": extra["compile_error"]})
    return rows


def bench_search(cfg: Config, size: int, threads: int, workdir: Path) -> list[dict[str, Any]]:
    """One search iteration of configs/demo.yaml, per variant (each its own engine from the same seed)."""
    def engine(memory_format: str, amp: str) -> WsrSearch:
        overrides = [f"data.image_size={size}", f"memory_format={memory_format}", f"search.amp={amp}",
                     "search.progress=false", *cfg.search_overrides]
        c = load_config(Path(__file__).resolve().parents[1] / "configs" / "demo.yaml", overrides)
        e = WsrSearch(c, tempfile.mkdtemp(dir=workdir), "cpu")
        e.iteration(e.population[0], search=False)  # warm-up: fills M_v and M_a once, primes the caches
        e.vle_ready = True
        return e

    engines = {"baseline": engine("contiguous", "none"), "channels_last": engine("channels_last", "none"),
               "channels_last_bf16": engine("channels_last", "bf16")}

    def iteration(e: WsrSearch) -> float:
        t0 = time.perf_counter()
        e.iteration(e.sample_arch(), search=True)
        return time.perf_counter() - t0

    seconds = interleaved({k: (lambda e=e: iteration(e)) for k, e in engines.items()}, cfg.reps)
    per = len(engines["baseline"].train_set)
    return rows_from("search_iteration", "supernet (demo.yaml)", size, threads, seconds, per)


def legacy_ops(model: torch.nn.Module) -> torch.nn.Module:
    """``model`` with the two ops this change rewrote put back as they were (same weights, same values): DARTS'
    ``nn.AvgPool2d(3, stride, 1, count_include_pad=False)`` for :class:`AvgPool3x3`, and a plain ``nn.Conv2d`` for
    :class:`DepthwiseConv2d` (whose stride-2, dilation-2 case now runs on the even pixels)."""
    from wsr_bench.search_space.ops import AvgPool3x3, DepthwiseConv2d

    for parent in list(model.modules()):
        for key, child in list(parent.named_children()):
            if isinstance(child, AvgPool3x3):
                setattr(parent, key, torch.nn.AvgPool2d(3, child.stride, 1, count_include_pad=False))
            elif isinstance(child, DepthwiseConv2d):
                conv = torch.nn.Conv2d(child.in_channels, child.out_channels, child.kernel_size, child.stride,
                                       child.padding, child.dilation, child.groups, bias=child.bias is not None)
                conv.load_state_dict(child.state_dict())
                setattr(parent, key, conv)
    return model


def bench_ops_rewrite(cfg: Config, name: str, size: int, splits) -> list[dict[str, Any]]:
    """The training step against the code before this change: contiguous with the original ops (the baseline), the
    rewritten ops alone (``ops_rewrite``) and with channels_last (``ops_rewrite+channels_last``)."""
    data = batches(splits, cfg.batch * cfg.timed_batches, cfg.batch)
    legacy = set_memory_format(legacy_ops(build(cfg, name, splits)), "contiguous")
    new = set_memory_format(build(cfg, name, splits), "contiguous")
    cl = set_memory_format(build(cfg, name, splits), "channels_last")
    runs = {"baseline": lambda: train(legacy, data, cfg), "ops_rewrite": lambda: train(new, data, cfg),
            "ops_rewrite+channels_last": lambda: train(cl, data, cfg)}
    for run in runs.values():
        run()
    rows = rows_from("train_step", name, size, 1, interleaved(runs, cfg.reps), cfg.batch * cfg.timed_batches)
    return [{**r, "baseline": "contiguous, the original DARTS ops (the code before this change)"} for r in rows]


def pretrained(cfg: Config, name: str, splits) -> torch.nn.Module:
    """``name`` after one epoch of PGD-3 adversarial training on ``pretrain_images`` (channels_last, float32)."""
    model = set_memory_format(build(cfg, name, splits), "channels_last")
    train(model, batches(splits, cfg.pretrain_images, cfg.batch, seed=1), cfg)
    return model.eval()


def bench_sweep(cfg: Config, task: str, model: torch.nn.Module, name: str, size: int, threads: int, splits
                ) -> dict[str, Any]:
    """PGD-10 or AutoAttack (downward) sweep, contiguous vs channels_last: ``{"rows", "verdicts"}``, the latter the
    number of (image, eps) verdicts compared and how many differ between the layouts."""
    pgd = task == "pgd_sweep"
    n, eps = (cfg.sweep_n, cfg.sweep_eps) if pgd else (cfg.aa_n, cfg.aa_eps)
    x, y = as_tensors(splits.test, n)
    opts = dict(eps=list(eps), attack="pgd", steps=cfg.sweep_steps) if pgd else dict(
        eps=list(eps), attack="autoattack", sweep="downward")
    results: dict[str, list] = {"baseline": [], "channels_last": []}

    def run(fmt: str, key: str) -> float:
        t0 = time.perf_counter()
        results[key].append(evaluate_spectrum(model, x, y, device="cpu", memory_format=fmt, batch_size=128,
                                              **opts))
        return time.perf_counter() - t0

    seconds = interleaved({"baseline": lambda: run("contiguous", "baseline"),
                           "channels_last": lambda: run("channels_last", "channels_last")},
                          cfg.reps if pgd else cfg.aa_reps)
    grid = torch.tensor(eps)
    v = {"compared": 0, "differ": 0}
    for a, b in zip(results["baseline"], results["channels_last"], strict=True):
        ra, rb = a.break_eps[:, None] > grid, b.break_eps[:, None] > grid
        v["compared"] += ra.numel()
        v["differ"] += int((ra != rb).sum())
    acc = {"baseline_curve": [round(results["baseline"][0].robust_accuracy[e], 4) for e in eps]}
    return {"rows": rows_from(task, name, size, threads, seconds, n, {"channels_last": acc}), "verdicts": v}


def amp_training_check(cfg: Config) -> dict[str, Any]:
    """darts_v2 trained in float32 and in bf16 (same seed, data, recipe, channels_last), then clean and PGD-20 at
    the training eps on the first ``amp_test`` test images, paired (McNemar)."""
    size = max(cfg.sizes)
    splits = load_images(cfg, size)
    data = batches(splits, cfg.amp_images, cfg.batch, seed=2)
    x, y = as_tensors(splits.test, cfg.amp_test)
    out: dict[str, Any] = {"model": "darts_v2", "image_size": size, "train_images": len(data) * cfg.batch,
                           "epochs": cfg.amp_epochs, "recipe": f"PGD-{cfg.train_steps} (eps {cfg.train_eps})",
                           "test_images": len(y), "eval": "PGD-20 at the training eps"}
    correct = {}
    for amp in ("none", "bf16"):
        model = set_memory_format(build(cfg, "darts_v2", splits, seed=3), "channels_last")
        t0 = time.perf_counter()
        for _ in range(cfg.amp_epochs):
            train(model, data, cfg, amp=amp)
        seconds = time.perf_counter() - t0
        clean = eval_epoch(model, [(x, y)])
        model.eval()
        adv = adversarial_examples(model, x, y, cfg.train_eps, 20, random_start=True)
        with torch.no_grad():
            correct[amp] = model(adv).argmax(1) == y
        out["fp32" if amp == "none" else "bf16"] = {"clean_acc": round(clean["acc"], 4),
                                                     "pgd20_acc": round(float(correct[amp].float().mean()), 4),
                                                     "train_seconds": round(seconds, 1)}
    only_fp32 = int((correct["none"] & ~correct["bf16"]).sum())
    only_bf16 = int((correct["bf16"] & ~correct["none"]).sum())
    out.update(only_fp32=only_fp32, only_bf16=only_bf16, mcnemar_p=round(mcnemar_exact(only_fp32, only_bf16), 4))
    return out


# ------------------------------------------------------------------------------------------------ the run
def cached(workdir: Path, key: str, compute: Callable[[], Any]) -> Any:
    """``compute()``'s result, kept as ``workdir/<key>.json`` so that a killed run continues where it stopped."""
    path = workdir / f"{key}.json"
    if path.is_file():
        return json.loads(path.read_text())
    start = load_average()
    value = {"result": compute(), "load": [start, load_average()]}
    atomic_write_json(path, value)
    return value


def pretrained_cached(cfg: Config, name: str, splits, workdir: Path) -> torch.nn.Module:
    """:func:`pretrained`, its weights kept in ``workdir`` (a resumed run sweeps the same model)."""
    from safetensors.torch import load_file, save_file

    path = workdir / f"pretrained-{name}-{splits.image_size}.safetensors"
    if path.is_file():
        model = set_memory_format(build(cfg, name, splits), "channels_last")
        model.load_state_dict(load_file(str(path)))
        return model.eval()
    model = pretrained(cfg, name, splits)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    return model


def run(cfg: Config, workdir: Path) -> dict[str, Any]:
    """Every measurement, each cached in ``workdir`` (the AutoAttack sweeps at ``aa_threads`` only)."""
    load_start = load_average()
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "config.json").write_text(json.dumps(dataclasses.asdict(cfg)))
    rows: list[dict[str, Any]] = []
    loads: dict[str, list[float]] = {}
    verdicts: dict[str, dict[str, int]] = {}
    t_start = time.perf_counter()

    def unit(key: str, compute: Callable[[], Any]) -> Any:
        logger.info("%s", key)
        value = cached(workdir, key, compute)
        loads[key] = value["load"]
        return value["result"]

    for size in cfg.sizes:
        splits = load_images(cfg, size)
        models = {name: pretrained_cached(cfg, name, splits, workdir) for name in cfg.models}
        for threads in cfg.threads:
            torch.set_num_threads(threads)
            for name in cfg.models:
                compile_here = cfg.compile and (size, threads, name) == (cfg.sizes[0], cfg.threads[0], cfg.models[0])
                rows += unit(f"train_step-{name}-{size}-{threads}",
                             partial(bench_train_step, cfg, name, size, threads, splits, compile_once=compile_here))
                tasks = ("pgd_sweep", "autoattack_sweep") if threads in cfg.aa_threads else ("pgd_sweep",)
                for task in tasks:
                    got = unit(f"{task}-{name}-{size}-{threads}",
                               partial(bench_sweep, cfg, task, models[name], name, size, threads, splits))
                    rows += got["rows"]
                    v = verdicts.setdefault(task, {"compared": 0, "differ": 0})
                    v["compared"] += got["verdicts"]["compared"]
                    v["differ"] += got["verdicts"]["differ"]
            rows += unit(f"search_iteration-{size}-{threads}", partial(bench_search, cfg, size, threads, workdir))
        torch.set_num_threads(1)
        for name in cfg.models:
            rows += unit(f"ops_rewrite-{name}-{size}", partial(bench_ops_rewrite, cfg, name, size, splits))
    torch.set_num_threads(min(cfg.threads))
    amp = unit("amp_training", lambda: amp_training_check(cfg))
    return {"benchmark": "throughput", "config": dataclasses.asdict(cfg), "rows": rows, "verdicts": verdicts,
            "amp_training": amp, "goals": goals(rows), "wall_seconds": round(time.perf_counter() - t_start, 1),
            "unit_load": loads, "machine": machine_record(load_start)}


def goals(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each goal at 1 thread: the geometric mean and the smallest speed-up over its rows (against contiguous float32
    with the same ops), and whether every row and the mean meet it."""
    out = []
    for task, variant, target in GOALS:
        values = [r["speedup"] for r in rows if r["task"] == task and r["variant"] == variant and r["threads"] == 1
                  and r["speedup"] is not None and "baseline" not in r]
        if not values:
            continue
        mean = statistics.geometric_mean(values)
        out.append({"task": task, "variant": variant, "goal": target, "rows": len(values), "mean": round(mean, 3),
                    "min": round(min(values), 3), "mean_met": mean >= target, "all_met": min(values) >= target})
    return out


def render(res: dict[str, Any]) -> str:
    m = res["machine"]
    lines = ["# Throughput: channels_last and bf16 against contiguous float32 (same run)", "",
             f"{m['cpu_count']} CPUs ({m['processor']}), torch {m['torch']}, load {m['load_start']} -> "
             f"{m['load_end']} (the last process: {res['wall_seconds']:.0f} s; measurements of earlier ones are "
             f"cached in the work folder). Medians of {res['config']['reps']} interleaved "
             f"rounds ({res['config']['aa_reps']} for AutoAttack); ms per image.", "",
             "| task | model | size | threads | variant | baseline ms | variant ms | speed-up |",
             "|---|---|---:|---:|---|---:|---:|---:|"]
    for r in [r for r in res["rows"] if "baseline" not in r]:
        if r["speedup"] is None:
            lines.append(f"| {r['task']} | {r['model']} | {r['image_size']} | {r['threads']} | {r['variant']} | "
                         f"{r['baseline_ms_per_image']:.2f} | failed: {r['error'][:80]} | - |")
            continue
        note = f" (compile {r['compile_seconds']} s)" if "compile_seconds" in r else ""
        lines.append(f"| {r['task']} | {r['model']} | {r['image_size']} | {r['threads']} | {r['variant']}{note} | "
                     f"{r['baseline_ms_per_image']:.2f} | {r['ms_per_image']:.2f} | **{r['speedup']:.2f}x** |")
    legacy = [r for r in res["rows"] if "baseline" in r]
    if legacy:
        lines += ["", "## Against the code before this change (1 thread)", "",
                  "The table above compares layouts with the same ops. This one times the training step against "
                  "contiguous float32 with the original DARTS ops (`nn.AvgPool2d(count_include_pad=False)` and "
                  "strided dilated depthwise `nn.Conv2d`), i.e. the code before this change, with the rewritten ops "
                  "alone and with channels_last as well.", "",
                  "| model | size | variant | before ms | variant ms | speed-up |", "|---|---:|---|---:|---:|---:|"]
        for r in legacy:
            lines.append(f"| {r['model']} | {r['image_size']} | {r['variant']} | {r['baseline_ms_per_image']:.2f} | "
                         f"{r['ms_per_image']:.2f} | **{r['speedup']:.2f}x** |")
    lines += ["", "## Goals (1 thread)", "", "| task | variant | goal | geometric mean | smallest | met |",
              "|---|---|---:|---:|---:|---|"]
    for g in res["goals"]:
        met = "yes" if g["all_met"] else ("on average, not every row" if g["mean_met"] else "no")
        lines.append(f"| {g['task']} | {g['variant']} | {g['goal']}x | {g['mean']:.2f}x | {g['min']:.2f}x | {met} |")
    lines += ["", "Load average (1 min) at the start and end of each measurement (another job on the other core "
              "shows as load near 2): " + ", ".join(f"{k} {a:.1f}-{b:.1f}" for k, (a, b) in
                                                     res.get("unit_load", {}).items()) + ".", ""]
    lines += ["", "## Correctness", ""]
    for task, v in res["verdicts"].items():
        lines.append(f"- {task}: channels_last and contiguous disagree on {v['differ']} of {v['compared']} (image, "
                     f"eps) verdicts (the layouts change only the order of float operations).")
    a = res["amp_training"]
    lines += [f"- bf16 training: {a['model']} {a['image_size']}x{a['image_size']}, {a['epochs']} epoch(s) of "
              f"{a['recipe']} on {a['train_images']} images, evaluated on {a['test_images']} test images: float32 "
              f"clean {a['fp32']['clean_acc']:.1%}, PGD-20 {a['fp32']['pgd20_acc']:.1%} "
              f"({a['fp32']['train_seconds']} s); bf16 clean {a['bf16']['clean_acc']:.1%}, PGD-20 "
              f"{a['bf16']['pgd20_acc']:.1%} ({a['bf16']['train_seconds']} s). Under PGD-20, {a['only_fp32']} "
              f"images only the float32 model gets right, {a['only_bf16']} only the bf16 one "
              f"(McNemar p = {a['mcnemar_p']})."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", help="results JSON (a .md summary is written beside it); default: "
                                 "benchmarks/results/throughput.json, or a temporary folder with --smoke")
    p.add_argument("--smoke", action="store_true", help="tiny sizes, digits, seconds (the tests run it)")
    p.add_argument("--no-compile", action="store_true", help="skip the torch.compile row (it compiles for minutes)")
    p.add_argument("--render", action="store_true", help="only rewrite FILE.md from --out")
    p.add_argument("--workdir", type=Path, help="cache of finished measurements (default: runs/throughput; with "
                                                "--smoke a temporary folder)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    out = Path(args.out or (smoke_out("throughput") if args.smoke else "benchmarks/results/throughput.json"))
    if args.render:
        res = json.loads(out.read_text())
        atomic_write_report(out, res, render(res))
        return 0
    cfg = SMOKE if args.smoke else Config()
    if args.no_compile:
        cfg = dataclasses.replace(cfg, compile=False)
    if args.smoke and args.workdir is None:
        with tempfile.TemporaryDirectory(prefix="throughput-work-") as work:
            res = run(cfg, Path(work))
    else:
        res = run(cfg, args.workdir or Path("runs/throughput"))
    atomic_write_report(out, res, render(res))
    print(render(res))
    print(f"wrote {out} and {out.with_suffix('.md')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
