"""Search cost: Wsr-NAS (N1=3 PGD + N2=3 AN-Estimator strengths, EWSS) vs the naive search (PGD at all 6
strengths, gradient through the super-network), the paper's Table 6 and Table 3 comparisons at small scale.

Both searches run in one process on the same data (digits 16x16, seed 0), with the same super-network, population,
steps and training budget; phase times are CPU seconds of this single-threaded process (on a shared machine wall
time mostly measures the other jobs).

* ``naive`` (6 strengths) and ``wsr`` (3 + 3): seconds per iteration (mean over the population and search
  iterations, Alg. 1 lines 7-17 and 19-25) and the per-phase breakdown (Table 6).
* Marginal cost of one more strength, by PGD and by the estimator (the paper's 0.48 vs 0.08 days per strength):
  the per-strength share of the phases that grow with the number of strengths; without ``--quick`` also from
  whole-iteration differences of two extra searches, ``(naive_6 - naive_3) / 3`` and ``(wsr_3_8 - wsr_3_3) / 5``.
* VLE rank correlation: after the ``wsr`` search, the super-network gets a few more clean epochs over random
  architectures (the quick search trains too little for architectures to differ), then uniformly random
  architectures (never seen by any estimator) are measured on D_v exactly as the search measures them (PGD
  anchors + A-ANE noise, clean and per-strength CE, BatchNorm statistics re-estimated for each). In 4-fold
  cross-validation a fresh VLE trained on three folds predicts the fourth; Kendall's tau between predicted and
  measured objective (Eq. 10) over all architectures is reported, with the search's own running out-of-sample
  check (the VLE's prediction for each sampled architecture before it is trained) beside it.

    python benchmarks/search_cost.py --quick --out benchmarks/results/search_cost.json
    python benchmarks/search_cost.py --smoke     # seconds: every step at toy sizes, written to a temporary folder
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy.stats import kendalltau
from tqdm.auto import tqdm

from wsr_bench.config import config_from_dict
from wsr_bench.estimators.val_loss import LossMemory, ValLossEstimator, train_vle
from wsr_bench.infra.atomic import atomic_write_report
from wsr_bench.infra.distributed import set_epoch, shard_loader
from wsr_bench.infra.run_folder import RunFolder
from wsr_bench.search.engine import PHASES
from wsr_bench.search.naive import NaiveSearch
from wsr_bench.search.wsr_nas import WsrSearch
from wsr_bench.train import TrainRecipe, train_epoch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import smoke_out  # noqa: E402

logger = logging.getLogger("search_cost")

SIX = [0.03, 0.045, 0.06, 0.075, 0.09, 0.105]
ELEVEN = [0.03 + 0.0075 * i for i in range(11)]
W6 = [1, 2, 3, 5, 7, 10]
W11 = [1, 1.5, 2, 2.5, 3, 4, 5, 6, 7, 8.5, 10]
RUNS = {  # name -> (method, strengths, weights, n1, n2)
    "naive": ("naive", SIX, W6, 6, 0),
    "wsr": ("wsr", SIX, W6, 3, 3),
    "naive_3": ("naive", [0.03, 0.06, 0.09], [1, 3, 7], 3, 0),
    "wsr_3_8": ("wsr", ELEVEN, W11, 3, 8),
}
PAPER = {"naive_seconds_per_iteration": 1953.4, "wsr_seconds_per_iteration": 1251.0, "ratio": 1251.0 / 1953.4,
         "days_per_strength_pgd": 0.48, "days_per_strength_ane": 0.08}
# Phase times are CPU seconds of this (single-threaded) process: on a shared machine wall time mostly measures the
# other jobs. The wall time of each run is recorded beside them.
CLOCK = time.process_time
TABLE6 = {"Adv. Train": ["adv_train"], "A.E. Gen.": ["noise_gen"], "Search (naive)": [],
          "EWSS": ["eval", "vle_train"], "AN-E Train/Test": ["ane"]}


#: ``--smoke``: toy sizes, only to check that every step runs (its numbers mean nothing)
SMOKE_SEARCH = {"init_channels": 2, "population": 1, "search_steps": 1, "train_limit": 32, "val_limit": 16,
                "train_steps": 1, "attack_steps": 1, "bn_batches": 1, "ane": {"batch": 4},
                "vle": {"warmup_passes": 2, "passes": 1}}
#: VLE probe sizes (architectures, validation images, clean probe epochs, VLE passes): quick, full, smoke
PROBE = {"quick": (48, 32, 6, 300), "full": (96, 64, 6, 300), "smoke": (8, 8, 1, 5)}


def settings(quick: bool, smoke: bool = False) -> dict[str, Any]:
    """The shared config (everything but method and strengths) of every search in the benchmark.

    D_t and D_v have the same size, as the paper's two halves of the training set (the full run uses all of
    digits' 718 + 718); the AN-Estimator's memory update (one batch of B = 10 images, the paper's B) then weighs as
    little as it can at this scale. Everything else is the official recipe (the config defaults).
    """
    search = {"init_channels": 4, "layers": 3, "population": 2 if quick else 4, "search_steps": 1 if quick else 6,
              "train_limit": 256 if quick else None, "val_limit": 256 if quick else None, "train_steps": 7,
              "attack_steps": 7, "ane": {"fill_batches": 1, "batch": 10},
              "vle": {"warmup_passes": 100, "passes": 20},
              "progress": False}  # otherwise the official recipe (wsr_bench/config.py defaults)
    if smoke:
        for key, value in SMOKE_SEARCH.items():  # section by section: the smoke sizes, the rest as above
            search[key] = {**search[key], **value} if isinstance(value, dict) else value
    return {"name": "search-cost", "seed": 0, "device": "cpu",
            "data": {"name": "digits", "image_size": 16, "batch_size": 64, "eval_batch_size": 256},
            "search": search}


def make_config(base: dict[str, Any], name: str) -> Any:
    method, strengths, weights, n1, n2 = RUNS[name]
    raw = {**base, "name": f"search-cost-{name}",
           "search": {**base["search"], "method": method, "strengths": strengths, "objective_weights": weights,
                      "n1": n1, "n2": n2, "estimator": "a" if n2 else "none"}}
    return config_from_dict(raw)


def per_iteration(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean seconds per iteration (population + search tasks) and per phase, from a run's metrics."""
    its = [r for r in records if r["phase"] in ("population", "search")]
    breakdown = {p: float(np.mean([r["seconds"][p] for r in its])) for p in PHASES}
    return {"iterations": len(its), "seconds_per_iteration": float(np.mean([r["task_seconds"] for r in its])),
            "breakdown": breakdown,
            "ane_inference_seconds": float(np.mean([r.get("ane_inference_seconds") or 0.0 for r in its])),
            "non_training_seconds": float(np.mean([r["task_seconds"] - r["seconds"]["adv_train"] for r in its]))}


def table6(method: str, breakdown: dict[str, float]) -> dict[str, float]:
    """The breakdown in Table 6's columns (naive: the architecture update is the 'Search' column)."""
    out = {col: sum(breakdown[p] for p in phases) for col, phases in TABLE6.items()}
    out["Search (naive)" if method == "naive" else "EWSS"] += breakdown["arch_update"]
    return out


def run_one(base: dict[str, Any], name: str, root: Path) -> tuple[Any, dict[str, Any]]:
    cfg = make_config(base, name)
    engine = (WsrSearch if cfg.search.method == "wsr" else NaiveSearch)(cfg, root / name, "cpu", clock=CLOCK)
    t0 = time.perf_counter()
    engine.run()
    wall = time.perf_counter() - t0
    stats = per_iteration(RunFolder(root / name).read_metrics())
    method, strengths, _, n1, n2 = RUNS[name]
    stats.update(strengths=len(strengths), n1=n1, n2=n2, wall_seconds=wall, table6=table6(method, stats["breakdown"]))
    logger.info("%s: %.2f s/iteration (%s)", name, stats["seconds_per_iteration"],
                ", ".join(f"{k} {v:.2f}" for k, v in stats["breakdown"].items()))
    return engine, stats


def uniform_arch(shape: torch.Size, gen: torch.Generator) -> torch.Tensor:
    idx = torch.randint(0, shape[-1], shape[:-1], generator=gen)
    return torch.nn.functional.one_hot(idx, shape[-1]).float()


def train_probe_supernet(engine: WsrSearch, epochs: int, gen: torch.Generator) -> None:
    """A few more clean epochs over all of D_t, one random architecture per epoch, so that architectures differ
    measurably (the quick search itself trains too little for its losses to be more than noise)."""
    loader = shard_loader(engine.splits.train_t, 64, seed=0, shuffle=True)
    for epoch in range(epochs):
        set_epoch(loader, epoch)
        H = uniform_arch(engine.supernet.arch_weights.shape, gen)
        train_epoch(engine.view(H), loader, engine.w_opt, TrainRecipe(name="clean", eps=0.0), device=engine.device)


def measure_archs(engine: WsrSearch, n_archs: int, val_images: int, gen: torch.Generator
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """``n_archs`` uniformly random architectures and their (natural, per-strength) losses on D_v, measured as
    the search measures them (PGD anchors + AN-Estimator noise)."""
    engine.x_v, engine.y_v = engine.x_v[:val_images], engine.y_v[:val_images]
    archs, losses = [], []
    for _ in tqdm(range(n_archs), desc="VLE probe", leave=False):
        H = uniform_arch(engine.supernet.arch_weights.shape, gen)
        engine.recalibrate_bn(H)
        archs.append(H)
        losses.append(engine.measure(H, {}))
    return torch.stack(archs), torch.stack(losses)


def vle_rank_correlation(engine: WsrSearch, n_archs: int, folds: int, val_images: int, seed: int = 1,
                         probe_epochs: int = 6, vle_passes: int = 300) -> dict[str, Any]:
    """Kendall tau between VLE-predicted and measured objective on architectures the VLE was not trained on
    (``folds``-fold cross-validation over ``n_archs`` random architectures: each is predicted by a VLE trained on
    the other folds)."""
    gen = torch.Generator().manual_seed(seed)
    train_probe_supernet(engine, epochs=probe_epochs, gen=gen)
    archs, losses = measure_archs(engine, n_archs, val_images, gen)
    measured = engine.objective(losses)
    pred = torch.empty_like(measured)
    fold_taus = []
    for f in range(folds):
        test = torch.arange(n_archs) % folds == f
        memory = LossMemory(capacity=n_archs)
        for H, L in zip(archs[~test], losses[~test], strict=True):
            memory.push(H, L)
        torch.manual_seed(seed + f)
        vle = ValLossEstimator(14, 8, engine.objective.num_losses, hidden=engine.scfg.vle.hidden,
                               output=engine.scfg.vle.output)
        opt = torch.optim.Adam(vle.parameters(), lr=engine.scfg.vle.lr, weight_decay=engine.scfg.vle.weight_decay)
        train_vle(vle, memory, opt, passes=vle_passes, batch_size=64, generator=gen,
                  input_noise=engine.scfg.vle.input_noise)
        with torch.no_grad():
            pred[test] = engine.objective(vle(archs[test]))
        fold_taus.append(float(kendalltau(pred[test].numpy(), measured[test].numpy())[0]))
    tau, p = kendalltau(pred.numpy(), measured.numpy())
    return {"tau": float(tau), "p_value": float(p), "fold_taus": fold_taus, "n_archs": n_archs, "folds": folds,
            "val_images": val_images, "measured_objective_range": [float(measured.min()), float(measured.max())]}


def in_search_tau(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Kendall tau between the VLE's prediction (before training on it) and the measured objective per step."""
    pairs = [(r["objective_pred"], r["objective"]) for r in records if r.get("objective_pred") is not None]
    if len(pairs) < 3:
        return {"tau": None, "n": len(pairs)}
    tau, p = kendalltau(*zip(*pairs, strict=True))
    return {"tau": float(tau), "p_value": float(p), "n": len(pairs)}


def marginal(res: dict[str, Any]) -> dict[str, Any]:
    """Extra seconds per iteration for one more strength, by PGD and by the AN-Estimator.

    From the breakdowns of the two main runs: PGD = the naive's noise generation per strength plus its
    architecture pass per validation set (it grows by one set per strength); estimator = the AN-Estimator's
    inference per estimated strength plus the loss evaluation per validation set (M_a updates, VLE and EWSS do
    not grow with N2). With the extra runs (full mode) also the paper's way, from differences of whole iterations.
    """
    nb, wb = res["naive"]["breakdown"], res["wsr"]["breakdown"]
    n, n2 = res["naive"]["strengths"], res["wsr"]["n2"]
    pgd = nb["noise_gen"] / n + nb["arch_update"] / (n + 1)
    ane = res["wsr"]["ane_inference_seconds"] / n2 + wb["eval"] / (res["wsr"]["strengths"] + 1)
    out = {"pgd": pgd, "ane": ane, "ane_over_pgd": ane / pgd,
           "method": "per-strength share of the phases that grow with the number of strengths"}
    extra = res.get("extra_runs", {})
    if {"naive_3", "wsr_3_8"} <= set(extra):
        d_pgd = (res["naive"]["non_training_seconds"] - extra["naive_3"]["non_training_seconds"]) / 3
        d_ane = (extra["wsr_3_8"]["non_training_seconds"] - res["wsr"]["non_training_seconds"]) / 5
        out["from_differences"] = {"pgd": d_pgd, "ane": d_ane, "ane_over_pgd": d_ane / d_pgd if d_pgd > 0 else None,
                                   "method": "(naive_6 - naive_3)/3 and (wsr_3_8 - wsr_3_3)/5, iteration time "
                                             "without adversarial training"}
    return out


def machine_info() -> dict[str, Any]:
    return {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
            "python": platform.python_version(), "torch": torch.__version__, "device": "cpu",
            "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "loadavg_start": [round(v, 2) for v in os.getloadavg()]}


def run(quick: bool, workdir: Path, smoke: bool = False) -> dict[str, Any]:
    """The benchmark (``smoke``: the quick run's steps at toy sizes; recorded as ``smoke`` in the result)."""
    base = settings(quick, smoke)
    res: dict[str, Any] = {"quick": quick, **({"smoke": True} if smoke else {}), "machine": machine_info(),
                           "settings": base, "paper": PAPER,
                           "clock": "CPU seconds of this process (time.process_time), 1 torch thread"}
    t0, runs, engine = time.perf_counter(), {}, None
    for name in RUNS if not (quick or smoke) else ("naive", "wsr"):
        eng, runs[name] = run_one(base, name, workdir)
        if name == "wsr":
            engine = eng
            runs[name]["vle_in_search"] = in_search_tau(RunFolder(workdir / name).read_metrics())
    res["naive"], res["wsr"] = runs.pop("naive"), runs.pop("wsr")
    res["extra_runs"] = runs
    res["ratio_wsr_to_naive"] = res["wsr"]["seconds_per_iteration"] / res["naive"]["seconds_per_iteration"]
    res["marginal_seconds_per_strength"] = marginal(res)
    c0 = CLOCK()
    n_archs, val_images, probe_epochs, vle_passes = PROBE["smoke" if smoke else "quick" if quick else "full"]
    detail = vle_rank_correlation(engine, n_archs=n_archs, folds=4, val_images=val_images, probe_epochs=probe_epochs,
                                  vle_passes=vle_passes)
    detail["seconds"] = CLOCK() - c0
    res["vle_rank_correlation"] = detail["tau"]
    res["vle_rank_correlation_detail"] = {**detail, "in_search": res["wsr"]["vle_in_search"]}
    m = res["marginal_seconds_per_strength"]
    res["goals"] = {"iteration_ratio_le_0.64": res["ratio_wsr_to_naive"] <= 0.64,
                    "extra_strength_ratio_le_1/6": m["ane_over_pgd"] <= 1 / 6,
                    "vle_tau_ge_0.3": res["vle_rank_correlation"] >= 0.3}
    res["machine"]["loadavg_end"] = [round(v, 2) for v in os.getloadavg()]
    res["wall_seconds"] = time.perf_counter() - t0
    res["cpu_seconds"] = CLOCK()
    return res


def summary_markdown(res: dict[str, Any]) -> str:
    """The short Markdown summary written next to the JSON."""
    s, m, mach = res["settings"]["search"], res["marginal_seconds_per_strength"], res["machine"]
    v, cols = res["vle_rank_correlation_detail"], list(TABLE6)
    lines = [f"# Search cost: Wsr-NAS (3 PGD + 3 AN-Estimator strengths) vs naive (6 PGD strengths) "
             f"({'smoke' if res.get('smoke') else 'quick' if res['quick'] else 'full'} run)", "",
             f"digits 16x16, super-network C={s['init_channels']} L={s['layers']}, population {s['population']}, "
             f"{s['search_steps']} search steps, {s['train_limit'] or 'all'} D_t / {s['val_limit'] or 'all'} D_v "
             "images, " + (f"PGD-{s['train_steps']} training and anchors" if s["train_steps"] == s["attack_steps"] else
                f"PGD-{s['train_steps']} training and PGD-{s['attack_steps']} anchors")
             + f", B = {s['ane']['batch']}. Times are CPU seconds (one thread) per iteration, mean over the population "
             "and search iterations; columns as the paper's Table 6.", "",
             "| search | s/iteration | " + " | ".join(cols) + " |", "|---|---:|" + "---:|" * len(cols)]
    for key, label in (("naive", "naive, 6 PGD strengths"), ("wsr", "Wsr-NAS, 3 + 3")):
        r = res[key]
        lines.append(f"| {label} | {r['seconds_per_iteration']:.2f} | "
                     + " | ".join(f"{r['table6'][c]:.2f}" for c in cols) + " |")
    lines += ["", f"- Wsr-NAS iteration / naive iteration: **{res['ratio_wsr_to_naive']:.2f}** (paper: 1251 s / "
              f"1953 s = 0.64; goal <= 0.64).",
              f"- One more strength: **{m['pgd']:.3f} s** per iteration by PGD, **{m['ane']:.3f} s** by the "
              f"AN-Estimator (ratio **{m['ane_over_pgd']:.3f}**; paper 0.08 / 0.48 days = 0.17; goal <= 1/6); "
              f"{m['method']}."]
    if "from_differences" in m:
        d = m["from_differences"]
        lines.append(f"- The same from whole-iteration differences: PGD {d['pgd']:.3f} s, estimator {d['ane']:.3f} s "
                     f"(ratio {_fmt(d['ane_over_pgd'])}).")
    lines += [f"- VLE Kendall tau on unseen architectures: **{v['tau']:.2f}** (p = {v['p_value']:.2g}; "
              f"{v['n_archs']} random architectures, {v['folds']}-fold cross-validation, per-fold "
              f"{', '.join(f'{t:.2f}' for t in v['fold_taus'])}; goal >= 0.3). Running out-of-sample tau during the "
              f"search: {_fmt(v['in_search']['tau'])} over {v['in_search']['n']} steps.", "",
              f"Machine: {mach['processor']}, {mach['cpu_count']} CPUs, torch {mach['torch']} with "
              f"{mach['torch_threads']} thread(s); load average {mach['loadavg_start'][0]} at start, "
              f"{mach['loadavg_end'][0]} at end (other jobs shared the cores). Wall time {res['wall_seconds']:.0f} s, "
              f"CPU time {res['cpu_seconds']:.0f} s. No GPU in this session."]
    return "\n".join(lines) + "\n"


def _fmt(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.2f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small settings (about 5 minutes on 2 cores)")
    parser.add_argument("--smoke", action="store_true", help="seconds: every step at toy sizes (checks that the script "
                        "runs; the numbers mean nothing); written to a temporary folder unless --out is given")
    parser.add_argument("--out", help="results JSON (a Markdown summary is written beside it); required except with "
                        "--smoke")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1: steadier timings on a busy box)")
    args = parser.parse_args(argv)
    if not args.out and not args.smoke:
        parser.error("--out is required (except with --smoke)")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    logging.getLogger("wsr_bench").setLevel(logging.WARNING)
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory(prefix="search_cost_") as tmp:
        res = run(args.quick, Path(tmp), smoke=args.smoke)
    out = Path(args.out) if args.out else smoke_out("search_cost")
    atomic_write_report(out, res, summary_markdown(res))
    print(summary_markdown(res))
    print(f"wrote {out} and {out.with_suffix('.md')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
