"""Cost of resumability: a demo-sized spectrum evaluation with per-batch state writes vs without, same run.

The demo (``configs/demo.yaml``) evaluates 200 digits test images (16x16) with PGD-10 at eval batch size 256 on
C=8, 5-cell networks. This script trains one such network (``darts_v2``, C=8, 5 cells; FGSM-RS adversarial
training, so that samples survive past the first eps and every eps has work), then times
:func:`wsr_bench.evaluate.evaluate_spectrum` with ``state_dir`` (hashing the weights and images, one atomic
``torch.save`` per finished batch, and removing the folder afterwards, as ``wsr-bench eval`` does) against the same
call without it. The two variants alternate (with first, without first, ...) for several pairs per setting, so
drifting machine load hits both alike; the overhead is the median of the per-pair ratios of the process's CPU time
(user + system, one thread: what the evaluation itself costs, whatever else runs on the machine), with the wall-time
ratios beside them. The time spent in the state code itself (opening and hashing, batch writes, removal) is also
measured directly, inside the same runs. Settings: the demo's 4-point paper spectrum and the
12-point dense curve at batch 256, plus the dense curve at batch 32 (8x more, smaller batches) as a stress case.
Goal: at most 5% added wall time for the demo-sized evaluation.

    nice python benchmarks/eval_resume_cost.py --out benchmarks/results/eval_resume_cost.json   # ~10 min, 2 cores
    python benchmarks/eval_resume_cost.py --smoke     # seconds: toy sizes, written to a temporary folder

Writes FILE.json (``machine``, ``config``, ``model``, ``settings.<name>.{pairs[], median_ratio, state_seconds,
n_batch_files, ...}``, ``goal_met_state_code``, ``goal_met_side_by_side``) and FILE.md next to it.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import logging
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import timm
import torch
import torch.nn.functional as F
from torch.utils.data import ConcatDataset

import wsr_bench.evaluate.spectrum as spectrum_mod
import wsr_bench.models  # noqa: F401  (registers the architectures with timm)
from wsr_bench.attacks.factory import build_pgd
from wsr_bench.data.datasets import as_tensors, load_dataset
from wsr_bench.epsilon import PAPER_SPECTRUM
from wsr_bench.evaluate import evaluate_spectrum
from wsr_bench.evaluate.resume import SweepState, remove_state
from wsr_bench.train import TrainRecipe

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import load_average, machine_record, publish  # noqa: E402

logger = logging.getLogger("eval_resume_cost")

DENSE = (0.01, 0.02, 0.03, 0.05, 0.07, 0.10, 0.12, 0.14, 0.17, 0.20, 0.22, 0.25)


@dataclass
class Config:
    """Benchmark settings (the demo's evaluation: 200 images, PGD-10, batch 256, C=8, 5 cells)."""

    model: str = "darts_v2"
    init_channels: int = 8
    layers: int = 5
    train_epochs: int = 2
    train_eps: float = 0.05           # FGSM-RS training strength (random start, step 1.25 eps)
    n_test: int = 200
    steps: int = 10
    reps: int = 9                     # alternating pairs per batch-256 setting (3 for the batch-32 stress case)
    threads: int = 1
    seed: int = 0
    train_limit: int | None = None    # training images (None: all of D_t + D_v; --smoke only)
    smoke: bool = False

    @classmethod
    def smoke_config(cls) -> Config:
        """Seconds: a C=2, 3-cell network trained one epoch on 64 images, 16 test images, PGD-2, one pair per
        setting (its numbers mean nothing; it checks that the script runs)."""
        return cls(init_channels=2, layers=3, train_epochs=1, n_test=16, steps=2, reps=1, train_limit=64, smoke=True)


SETTINGS = {  # name -> (eps, batch size); the batch-32 case gets 3 pairs
    "paper4_b256": (tuple(PAPER_SPECTRUM), 256),
    "dense12_b256": (DENSE, 256),
    "dense12_b32": (DENSE, 32),
}


def train(cfg: Config, splits) -> torch.nn.Module:
    x, y = as_tensors(ConcatDataset([splits.train_t, splits.train_v]), cfg.train_limit)
    torch.manual_seed(cfg.seed)
    model = timm.create_model(cfg.model, init_channels=cfg.init_channels, layers=cfg.layers, num_classes=10,
                              mean=tuple(splits.mean), std=tuple(splits.std))
    opt = torch.optim.Adam(model.parameters(), 3e-3)
    gen = torch.Generator().manual_seed(cfg.seed)
    fgsm_rs_step = TrainRecipe(name="fgsm_rs", eps=cfg.train_eps).attack_step_size()  # one PGD step from a random start
    for _ in range(cfg.train_epochs):
        for idx in torch.randperm(len(x), generator=gen).split(64):
            xb, yb = x[idx], y[idx]
            adv = build_pgd(model, cfg.train_eps, 1, step_size=fgsm_rs_step, seed=gen)(xb, yb)  # eval mode
            model.train()
            opt.zero_grad()
            F.cross_entropy(model(adv), yb).backward()
            opt.step()
    return model.eval()


class StateTimer:
    """Wraps the state code evaluate_spectrum calls (open + hashing, batch saves) to time it directly."""

    def __init__(self) -> None:
        self.seconds = 0.0  # CPU seconds (process time) in the state code
        self.wall = 0.0
        self.save_seconds = 0.0  # CPU seconds in batch writes alone
        self.saves = 0
        self._open, self._save = spectrum_mod._open_shared_state, SweepState.save

    def __enter__(self) -> StateTimer:
        def timed_open(*args, **kwargs):
            with self.timing():
                return self._open(*args, **kwargs)

        def timed_save(state, *args, **kwargs):
            self.saves += 1
            before = self.seconds
            try:
                with self.timing():
                    return self._save(state, *args, **kwargs)
            finally:
                self.save_seconds += self.seconds - before

        spectrum_mod._open_shared_state, SweepState.save = timed_open, timed_save
        return self

    def __exit__(self, *exc) -> None:
        spectrum_mod._open_shared_state, SweepState.save = self._open, self._save

    @contextlib.contextmanager
    def timing(self):
        cpu, wall = time.process_time(), time.perf_counter()
        try:
            yield
        finally:
            self.seconds += time.process_time() - cpu
            self.wall += time.perf_counter() - wall


def one_run(model, x, y, eps, batch_size: int, cfg: Config, with_state: bool, tmp: Path) -> dict[str, Any]:
    folder = tmp / "entry.json.state"
    timer = StateTimer()
    start, cpu_start = time.perf_counter(), time.process_time()
    with timer:
        res = evaluate_spectrum(model, x, y, eps=list(eps), attack="pgd", steps=cfg.steps, batch_size=batch_size,
                                device="cpu", seed=cfg.seed, state_dir=folder if with_state else None)
        with timer.timing():
            if with_state:
                remove_state(folder)
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    return {"wall_s": wall, "cpu_s": cpu, "state_s": timer.seconds, "state_wall_s": timer.wall,
            "save_s": timer.save_seconds,
            "batch_files": timer.saves, "passes": res.passes.total,
            "robust_accuracy": [res.robust_accuracy[e] for e in res.eps]}


def bench_setting(model, x, y, eps, batch_size: int, reps: int, cfg: Config) -> dict[str, Any]:
    pairs = []
    with tempfile.TemporaryDirectory(prefix="resume_cost_") as tmp:
        one_run(model, x, y, eps[:1], batch_size, cfg, True, Path(tmp))  # warm-up (allocator, lazy imports)
        for rep in range(reps):
            order = (True, False) if rep % 2 == 0 else (False, True)
            runs = {w: one_run(model, x, y, eps, batch_size, cfg, w, Path(tmp)) for w in order}
            assert runs[True]["robust_accuracy"] == runs[False]["robust_accuracy"], "state changed the result"
            assert runs[True]["passes"] == runs[False]["passes"]
            w, wo = runs[True], runs[False]
            pairs.append({"with_cpu_s": round(w["cpu_s"], 3), "without_cpu_s": round(wo["cpu_s"], 3),
                          "cpu_ratio": round(w["cpu_s"] / wo["cpu_s"], 4), "with_wall_s": round(w["wall_s"], 3),
                          "without_wall_s": round(wo["wall_s"], 3), "wall_ratio": round(w["wall_s"] / wo["wall_s"], 4),
                          "state_code_s": round(w["state_s"], 4), "state_code_wall_s": round(w["state_wall_s"], 4),
                          "batch_writes_s": round(w["save_s"], 4),
                          "first": "with" if order[0] else "without"})
            logger.info("eps=%d batch=%d rep %d: CPU with %.2fs, without %.2fs (wall %.2fs, %.2fs), state code %.3fs",
                        len(eps), batch_size, rep, w["cpu_s"], wo["cpu_s"], w["wall_s"], wo["wall_s"], w["state_s"])
    median_with = statistics.median(p["with_cpu_s"] for p in pairs)
    state_s = statistics.median(p["state_code_s"] for p in pairs)
    ratios = sorted(p["cpu_ratio"] for p in pairs)
    return {"eps": list(eps), "batch_size": batch_size, "pairs": pairs, "cpu_ratio_range": [ratios[0], ratios[-1]],
            "median_ratio": round(statistics.median(p["cpu_ratio"] for p in pairs), 4),
            "median_wall_ratio": round(statistics.median(p["wall_ratio"] for p in pairs), 4),
            "median_with_state_s": round(median_with, 3),
            "median_without_s": round(statistics.median(p["without_cpu_s"] for p in pairs), 3),
            "state_seconds": round(state_s, 4), "state_share": round(state_s / median_with, 5),
            "state_wall_seconds": round(statistics.median(p["state_code_wall_s"] for p in pairs), 4),
            "batch_write_seconds": round(statistics.median(p["batch_writes_s"] for p in pairs), 4),
            "wall_spread_without": round(max(p["without_wall_s"] for p in pairs)
                                         / min(p["without_wall_s"] for p in pairs), 3),
            "n_batch_files": runs[True]["batch_files"], "passes": runs[True]["passes"],
            "robust_accuracy": runs[True]["robust_accuracy"]}


def markdown(report: dict[str, Any]) -> str:
    m, c = report["machine"], report["config"]
    lines = ["# Cost of resumable evaluation: per-batch state writes vs none"
             + (" (smoke run)" if c.get("smoke") else ""), "",
             f"Machine: {m['cpu_count']}-core CPU ({m['platform']}), Python {m['python']}, torch {m['torch']}, "
             f"{c['threads']} thread(s), load average {m['load_start']} at start and {m['load_end']} at the end "
             "(shared with other jobs).",
             f"Model: {c['model']} C={c['init_channels']}, {c['layers']} cells, FGSM-RS trained ({c['train_epochs']} "
             f"epochs, eps {c['train_eps']}), clean accuracy {100 * report['model']['clean_accuracy']:.1f}% on the "
             f"{c['n_test']} digits test images (16x16). Attack: PGD-{c['steps']}, survivors-only sweep, CPU. "
             f"{c['reps']} alternating pairs per batch-256 setting, 3 at batch 32.", "",
             "| setting | batch files | CPU s with state (median) | CPU s without (median) | median CPU ratio | "
             "median wall ratio | state code s | state code share |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for name, s in report["settings"].items():
        lines.append(f"| {name} | {s['n_batch_files']} | {s['median_with_state_s']:.2f} | {s['median_without_s']:.2f} "
                     f"| {s['median_ratio']:.3f} | {s['median_wall_ratio']:.3f} | {s['state_seconds']:.3f} | "
                     f"{100 * s['state_share']:.2f}% |")
    lines += ["", "Per-pair ratios with / without, CPU (wall): " + "; ".join(
        f"{name} " + ", ".join(f"{p['cpu_ratio']:.3f} ({p['wall_ratio']:.2f})" for p in s["pairs"])
        for name, s in report["settings"].items()),
        "", "## Reading", "", report["conclusion"], ""]
    return "\n".join(lines)


def conclusion(report: dict[str, Any]) -> str:
    st = report["settings"]

    def part(name: str, what: str, explain: bool = False) -> str:
        x = st[name]
        per_file = 1000 * x["batch_write_seconds"] / max(1, x["n_batch_files"])
        return (f"{what} spends {1000 * x['state_seconds']:.0f} ms of {x['median_with_state_s']:.1f} CPU s in the "
                f"state code ({100 * x['state_share']:.2f}%; {x['n_batch_files']} batch files at {per_file:.1f} ms "
                + ("each, the rest hashing the weights and images once and creating and removing the folder), "
                   if explain else "each), ") + f"median CPU ratio with/without {x['median_ratio']:.3f} (pairs "
                f"{x['cpu_ratio_range'][0]:.2f} to {x['cpu_ratio_range'][1]:.2f})")

    spread = max(x["wall_spread_without"] for x in st.values())
    return (part("paper4_b256", "The demo-sized evaluation (4 strengths, batch 256)", True) + "; "
            + part("dense12_b256", "with the dense 12-point curve it") + "; "
            + part("dense12_b32", "at batch 32 it") + ". "
            "The 5% goal, for both batch-256 settings: the state code's own share is "
            f"{'within' if report['goal_met_state_code'] else 'ABOVE'} 5%, and the side-by-side median CPU ratio is "
            f"{'within' if report['goal_met_side_by_side'] else 'ABOVE'} 1.05. The paired ratios scatter around 1 by "
            "far more than the state code costs (other jobs share the cores, and their load changes the speed of "
            "ours), so the side-by-side median resolves the overhead only to a few percent; the directly timed "
            "state code is the sharp figure. Wall-time ratios are in the table but not judged: the same run "
            f"without state varied up to {spread:.2f}x in wall time between repetitions.")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--smoke", action="store_true", help="seconds: toy sizes (checks that the script runs; the numbers "
                   "mean nothing); written to a temporary folder unless --out is given")
    p.add_argument("--out", help="results JSON (a .md summary is written beside it); required except with --smoke")
    p.add_argument("--reps", type=int, default=Config.reps, help="alternating pairs per batch-256 setting")
    p.add_argument("--threads", type=int, default=Config.threads)
    args = p.parse_args(argv)
    if not args.out and not args.smoke:
        p.error("--out is required (except with --smoke)")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    cfg = (dataclasses.replace(Config.smoke_config(), threads=args.threads) if args.smoke
           else Config(reps=args.reps, threads=args.threads))
    torch.set_num_threads(cfg.threads)
    load_start = load_average()
    splits = load_dataset("digits", image_size=16, seed=cfg.seed)
    t = time.perf_counter()
    model = train(cfg, splits)
    x, y = as_tensors(splits.test, cfg.n_test)
    with torch.no_grad():
        clean = float((model(x).argmax(1) == y).float().mean())
    logger.info("trained %s in %.1fs, clean accuracy %.3f", cfg.model, time.perf_counter() - t, clean)
    report: dict[str, Any] = {"benchmark": "eval_resume_cost", "config": dataclasses.asdict(cfg),
                              "model": {"clean_accuracy": clean}, "settings": {}}
    for name, (eps, batch_size) in SETTINGS.items():
        reps = cfg.reps if batch_size == 256 else min(3, cfg.reps)
        report["settings"][name] = bench_setting(model, x, y, eps, batch_size, reps, cfg)
    report["machine"] = machine_record(load_start)
    demo_sized = [report["settings"][k] for k in ("paper4_b256", "dense12_b256")]
    report["goal_met_state_code"] = all(x["state_share"] <= 0.05 for x in demo_sized)
    report["goal_met_side_by_side"] = all(x["median_ratio"] <= 1.05 for x in demo_sized)
    report["conclusion"] = conclusion(report)
    publish(report, markdown(report), args.out, "eval_resume_cost")
    return 0


if __name__ == "__main__":
    sys.exit(main())
