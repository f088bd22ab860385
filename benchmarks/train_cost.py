"""Training cost vs robustness: PGD-7 vs FGSM-RS (fast AT) vs TRADES on the embedded digits data, same run.

Every recipe trains the same small DARTS network (darts_v2, C=8, L=5 by default; same seed, same initial weights,
same batch order) for the same number of epochs with the package's own ``train_epoch`` (SGD, momentum 0.9,
weight decay 5e-4, per-batch cosine schedule, gradient clipping 5). After every epoch a cheap check (PGD-10 at the
training eps on the first ``curve_examples`` test images) traces robustness against cumulative training time; at
the end the whole test split is evaluated clean and under PGD-20 at each ``eval_eps`` (step eps*2.5/20, random
start). Training time excludes evaluation. The anchor (Wong et al. 2020): FGSM with random start should reach
PGD-7's robustness at a fraction of the time; the summary says whether it does here.

    python benchmarks/train_cost.py --quick --threads 1 --out benchmarks/results/train_cost_quick.json  # 4-8 min
    python benchmarks/train_cost.py --threads 1 --out benchmarks/results/train_cost.json               # 40 min
    python benchmarks/train_cost.py --smoke --threads 1   # seconds: toy sizes, written to a temporary folder

Writes FILE.json (``machine``, ``config``, ``recipes.<name>.{label, seconds_per_epoch, train_seconds,
attack_seconds, relative_time, clean_acc, robust_acc.{eps}, curve[...]}``, ``anchor``) and FILE.md next to it.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import platform
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import ConcatDataset, Subset

from wsr_bench.config import config_from_dict
from wsr_bench.data.datasets import load_dataset
from wsr_bench.infra.atomic import atomic_write_report, atomic_write_text
from wsr_bench.infra.distributed import set_epoch, shard_loader
from wsr_bench.train import (
    LoopOptions,
    TrainRecipe,
    build_model,
    build_optimizer,
    build_scheduler,
    eval_epoch,
    train_epoch,
)

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import smoke_out  # noqa: E402

logger = logging.getLogger("train_cost")

RECIPE_ARGS = {"pgd": {"steps": 7}, "fgsm_rs": {"steps": 1}, "trades": {"steps": 10, "trades_beta": 6.0}}
DISPLAY = {"pgd": "PGD-7", "fgsm_rs": "FGSM-RS (step 1.25 eps)", "trades": "TRADES (10 steps, beta 6)"}


@dataclass
class Config:
    """Benchmark settings (``--quick`` shrinks the network and the epoch budget)."""

    recipes: tuple[str, ...] = ("pgd", "fgsm_rs", "trades")
    model: str = "darts_v2"
    init_channels: int = 8
    layers: int = 5
    image_size: int = 16
    epochs: int = 8
    batch_size: int = 64
    lr: float = 0.05
    eps: float = 0.05                 # training strength (13/255; small nets learn little at 0.1 in a few epochs)
    eval_eps: tuple[float, ...] = (0.03, 0.05, 0.1)  # PGD-20 strengths (the training eps is always added)
    eval_steps: int = 20
    curve_examples: int = 128
    seed: int = 0
    limit: int | None = None          # at most this many images per split (None: all; --smoke only)
    quick: bool = False
    smoke: bool = False
    progress: bool = field(default_factory=sys.stderr.isatty)  # tqdm bars on a terminal only

    @classmethod
    def quick_config(cls) -> Config:
        return cls(init_channels=4, layers=3, epochs=5, eval_eps=(0.03,), curve_examples=64, quick=True)

    @classmethod
    def smoke_config(cls) -> Config:
        """Seconds: every recipe for one epoch on 64 images per split, a C=2 network, PGD-2 checks (its numbers mean
        nothing; it checks that the script runs)."""
        return cls(init_channels=2, layers=3, epochs=1, batch_size=32, eval_eps=(0.03,), eval_steps=2,
                   curve_examples=16, limit=64, smoke=True)


def _experiment(cfg: Config, recipe: str) -> Any:
    return config_from_dict({
        "seed": cfg.seed, "device": "cpu", "data": {"name": "digits", "image_size": cfg.image_size,
                                                    "batch_size": cfg.batch_size},
        "model": {"init_channels": cfg.init_channels, "layers": cfg.layers},
        "train": {"recipe": recipe, "epochs": cfg.epochs, "lr": cfg.lr, "eps": cfg.eps,
                  "steps": RECIPE_ARGS[recipe]["steps"]}})


def run_recipe(cfg: Config, name: str, splits: Any) -> dict[str, Any]:
    """Train one recipe for ``cfg.epochs`` epochs from the shared seed; trace and evaluate it."""
    exp = _experiment(cfg, name)
    recipe = TrainRecipe(name=name, eps=cfg.eps, **RECIPE_ARGS[name])
    torch.manual_seed(cfg.seed)
    model = build_model(cfg.model, exp, splits)
    loader = shard_loader(ConcatDataset([splits.train_t, splits.train_v]), cfg.batch_size, seed=cfg.seed)
    optimizer = build_optimizer(model, exp.train)
    scheduler = build_scheduler(optimizer, exp.train, len(loader))
    probe = shard_loader(Subset(splits.test, range(min(cfg.curve_examples, len(splits.test)))), 256, shuffle=False)
    loop = LoopOptions(grad_clip=5.0)
    curve, train_s, attack_s = [], 0.0, 0.0
    for epoch in range(cfg.epochs):
        set_epoch(loader, epoch)
        stats = train_epoch(model, loader, optimizer, recipe, loop, device="cpu", scheduler=scheduler,
                            progress=cfg.progress, desc=f"{name} epoch {epoch + 1}/{cfg.epochs}")
        train_s, attack_s = train_s + stats["seconds"], attack_s + stats["attack_seconds"]
        check = eval_epoch(model, probe, attack=TrainRecipe(eps=cfg.eps, steps=10)) if cfg.curve_examples else {}
        curve.append({"epoch": epoch + 1, "train_seconds": train_s, "train_loss": stats["loss"],
                      "train_acc": stats["acc"], "probe_robust_acc": check.get("acc")})
        logger.info("%s epoch %d: %.1fs (attack %.1fs) loss %.3f, probe PGD-10@%g %.3f", name, epoch + 1,
                    stats["seconds"], stats["attack_seconds"], stats["loss"], cfg.eps, check.get("acc", float("nan")))
    test = shard_loader(splits.test, 256, shuffle=False)
    clean = eval_epoch(model, test, progress=cfg.progress, desc=f"{name} clean")
    robust = {f"{e:g}": eval_epoch(model, test, attack=TrainRecipe(eps=e, steps=cfg.eval_steps), progress=cfg.progress,
                                   desc=f"{name} PGD-{cfg.eval_steps}@{e:g}")["acc"] for e in cfg.eval_eps}
    return {"label": recipe.label, "seconds_per_epoch": train_s / cfg.epochs, "train_seconds": train_s,
            "attack_seconds": attack_s, "clean_acc": clean["acc"], "robust_acc": robust, "curve": curve,
            "params": sum(p.numel() for p in model.parameters())}


def time_to_reach(curve: list[dict[str, Any]], target: float) -> float | None:
    """Cumulative training seconds at the first epoch whose probe robust accuracy reaches ``target``."""
    for point in curve:
        if point["probe_robust_acc"] is not None and point["probe_robust_acc"] >= target:
            return point["train_seconds"]
    return None


def anchor(cfg: Config, recipes: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Does FGSM-RS reach PGD-7's robustness (PGD-20 at the training eps, whole test split) for less time?"""
    if "pgd" not in recipes or "fgsm_rs" not in recipes:
        return {}
    key = f"{cfg.eps:g}"
    pgd, fast = recipes["pgd"], recipes["fgsm_rs"]
    gap = fast["robust_acc"][key] - pgd["robust_acc"][key]
    target = pgd["curve"][-1]["probe_robust_acc"]
    reach = time_to_reach(fast["curve"], target) if target is not None else None
    return {"eps": cfg.eps, "pgd7_robust_acc": pgd["robust_acc"][key], "fgsm_rs_robust_acc": fast["robust_acc"][key],
            "robust_gap": gap, "time_ratio": fast["train_seconds"] / pgd["train_seconds"],
            "fgsm_rs_seconds_to_pgd7_probe": reach, "holds": bool(gap >= -0.02 and fast["train_seconds"]
                                                                 < pgd["train_seconds"])}


def machine_info() -> dict[str, Any]:
    return {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
            "python": platform.python_version(), "torch": torch.__version__, "device": "cpu",
            "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "loadavg_start": [round(v, 2) for v in os.getloadavg()]}


def summary_markdown(res: dict[str, Any]) -> str:
    """The short Markdown summary written next to the JSON."""
    cfg, m, a = res["config"], res["machine"], res["anchor"]
    eps_cols = [f"{e:g}" for e in cfg["eval_eps"]]
    mode = "smoke" if cfg.get("smoke") else "quick" if cfg["quick"] else "full"
    lines = [f"# Training cost: PGD-7 vs FGSM-RS vs TRADES ({mode} run)", "",
             f"digits {cfg['image_size']}x{cfg['image_size']}, {cfg['model']} C={cfg['init_channels']} "
             f"L={cfg['layers']}, {cfg['epochs']} epochs each, batch {cfg['batch_size']}, lr {cfg['lr']} cosine, "
             f"train eps {cfg['eps']:g}; test split {res['n_test']} images, PGD-{cfg['eval_steps']} "
             f"(step eps*2.5/{cfg['eval_steps']}, random start).", "",
             "| recipe | s/epoch | train s | x PGD-7 time | clean | " +
             " | ".join(f"PGD-{cfg['eval_steps']}@{e}" for e in eps_cols) + " |",
             "|---|---:|---:|---:|---:|" + "---:|" * len(eps_cols)]
    for name, r in res["recipes"].items():
        lines.append(f"| {DISPLAY.get(name, name)} | {r['seconds_per_epoch']:.1f} | {r['train_seconds']:.0f} | "
                     f"{r['relative_time']:.2f} | {r['clean_acc']:.3f} | " +
                     " | ".join(f"{r['robust_acc'][e]:.3f}" for e in eps_cols) + " |")
    se = (0.25 / res["n_test"]) ** 0.5
    lines += ["", f"One seed; an accuracy on {res['n_test']} test images has a standard error of up to {se:.3f}, so "
                  f"differences below ~{2 * se:.2f} are within noise."]
    if a:
        verdict = "holds" if a["holds"] else "does not hold"
        reach = a["fgsm_rs_seconds_to_pgd7_probe"]
        reach_text = "" if reach is None else (f"; its per-epoch probe first matches PGD-7's final probe after "
                                               f"{reach:.0f} s")
        lines += ["", f"Anchor ({verdict} here; criterion: FGSM-RS within 0.02 of PGD-7's PGD-20 accuracy at the "
                      f"training eps, for less training time): FGSM-RS reaches {a['fgsm_rs_robust_acc']:.3f} "
                      f"PGD-20@{a['eps']:g} vs PGD-7's {a['pgd7_robust_acc']:.3f} ({a['robust_gap']:+.3f}) in "
                      f"{a['time_ratio']:.2f}x PGD-7's training time{reach_text}."]
    lines += ["", f"Machine: {m['processor']}, {m['cpu_count']} CPUs, torch {m['torch']} with {m['torch_threads']} "
                  f"thread(s); load average {m['loadavg_start'][0]} at start, {m['loadavg_end'][0]} at end "
                  f"(other jobs shared the cores: absolute times are inflated, ratios are what to read). "
                  f"Wall time {m['wall_s']:.0f} s."]
    return "\n".join(lines) + "\n"


def run(cfg: Config) -> dict[str, Any]:
    t0, machine = time.perf_counter(), machine_info()
    splits = load_dataset("digits", image_size=cfg.image_size, seed=cfg.seed, limit=cfg.limit)
    recipes = {name: run_recipe(cfg, name, splits) for name in cfg.recipes}
    base = recipes.get("pgd", next(iter(recipes.values())))["train_seconds"]
    for r in recipes.values():
        r["relative_time"] = r["train_seconds"] / base
    machine.update(loadavg_end=[round(v, 2) for v in os.getloadavg()], wall_s=time.perf_counter() - t0)
    config = dataclasses.asdict(cfg)
    return {"benchmark": "train_cost", "machine": machine, "config": config, "n_test": len(splits.test),
            "n_train": len(splits.train_t) + len(splits.train_v), "recipes": recipes, "anchor": anchor(cfg, recipes)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="C=4, L=3 network, 5 epochs, PGD-20 at 0.03 and 0.05")
    parser.add_argument("--smoke", action="store_true", help="seconds: toy sizes (checks that the script runs; the "
                        "numbers mean nothing); written to a temporary folder unless --out is given")
    parser.add_argument("--out", help="results JSON (a .md summary beside it); required except with --smoke")
    parser.add_argument("--epochs", type=int, help="epochs per recipe")
    parser.add_argument("--eps", type=float, help="training eps (default 0.05)")
    parser.add_argument("--recipes", help="comma-separated subset of pgd,fgsm_rs,trades")
    parser.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's choice)")
    parser.add_argument("--render", action="store_true", help="only rewrite FILE.md from an existing --out JSON")
    args = parser.parse_args(argv)
    if not args.out and (args.render or not args.smoke):
        parser.error("--out is required (except with --smoke)")
    if args.render:
        res = json.loads(Path(args.out).read_text())
        atomic_write_text(Path(args.out).with_suffix(".md"), summary_markdown(res))
        print(summary_markdown(res))
        return 0
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    cfg = Config.smoke_config() if args.smoke else Config.quick_config() if args.quick else Config()
    changes = {k: v for k, v in {"epochs": args.epochs, "eps": args.eps}.items() if v is not None}
    if args.recipes:
        changes["recipes"] = tuple(r.strip() for r in args.recipes.split(","))
        unknown = set(changes["recipes"]) - set(RECIPE_ARGS)
        if unknown:
            parser.error(f"unknown recipes {sorted(unknown)}; choose from {', '.join(RECIPE_ARGS)}")
    cfg = dataclasses.replace(cfg, **changes)
    cfg = dataclasses.replace(cfg, eval_eps=tuple(sorted({cfg.eps, *cfg.eval_eps})))
    if args.threads:
        torch.set_num_threads(args.threads)
    res = run(cfg)
    out = Path(args.out) if args.out else smoke_out("train_cost")
    atomic_write_report(out, res, summary_markdown(res))
    print(summary_markdown(res))
    print(f"wrote {out} and {out.with_suffix('.md')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
