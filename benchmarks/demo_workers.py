"""The demo job with 1 and with 2 workers in one run, and the zoo's wall time projected for 2, 16 and 64 workers.

What it measures: the wall time of ``wsr-bench --threads 1 run configs/demo.yaml --out OUT`` (the job ``make demo``
runs) with ``--workers 1`` and then ``--workers 2``, each in a fresh process and a fresh run folder (``--work``,
default ``runs/demo_workers/``), with the load average before and after each; whether the two printed tables and the
two runs' results (genotype, weights, every entry's numbers; not timestamps) are identical; and, from the 1-worker
run's stage times (``stages.jsonl``), the wall time a 2-worker schedule of the demo's stage graph should reach
(critical-path list scheduling: whenever a worker is free it takes the ready stage with the longest path to the end).
Goal (issue 37): <= 150 s with 2 workers, from 241 s with one on the idle 2-core development machine.

The zoo's projection: the stage graph of ``configs/zoo_fashion.yaml`` (``wsr_bench.jobs.zoo.member_stages``) with
each stage's cost from the committed build: ``--zoo-log runs/zoo/stages.jsonl`` when given (each stage's last
recorded seconds), else the two cost tables of ``docs/zoo.md`` (CPU-hours per model at one thread: training,
publication and PGD-20 as one block on the training stage, which makes the projection an upper bound by the PGD
share, and the AutoAttack entry on its evaluation stage; ``wsrnet``'s search, 1,370 s wall, on its search stage),
scheduled the same way for 1, 2, 16 and 64 workers, beside the lower bounds (the critical path; the work / workers).

Run it on an otherwise idle machine (two single-threaded jobs beside it make both runs slower and the 2-worker run
much slower):

    python benchmarks/demo_workers.py --out benchmarks/results/demo_workers.json   # ~7-8 min on an idle 2-core CPU
    python benchmarks/demo_workers.py --smoke                                      # seconds: a tiny config

Writes FILE.json (``benchmark``, ``machine``, ``config``, ``runs``, ``identical``, ``projection``, ``goal_met``,
``conclusion``) and FILE.md next to it.
"""

from __future__ import annotations

import argparse
import hashlib
import heapq
import json
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import load_average, machine_record, publish  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "configs" / "demo.yaml"
ZOO = ROOT / "configs" / "zoo_fashion.yaml"
ZOO_DOC = ROOT / "docs" / "zoo.md"
GOAL_SECONDS = 150.0
#: the smoke run's config: the tiny job of tests/test_executor.py (synthetic 8x8 images, one step of everything)
SMOKE_SETS = ["data.name=synthetic", "data.image_size=8", "data.limit=24", "data.batch_size=12",
              "search.init_channels=4", "search.layers=3", "search.population=2", "search.search_steps=1",
              "search.train_steps=1", "search.attack_steps=1", "search.vle.warmup_passes=3", "search.vle.passes=2",
              "search.ane.batch=4", "search.ane.fill_batches=1", "search.progress=false", "search.estimator=wa",
              "model.init_channels=4", "model.layers=3", "train.epochs=1", "train.steps=1", "train.eval_examples=8",
              "train.eval_steps=1", "eval.n_examples=12", "eval.steps=2", "eval.eps=[0.03, 0.25]",
              "run.baselines=[racl]", "device=cpu"]


# ------------------------------------------------------------------------------------------------ scheduling
def list_schedule(costs: dict[str, float], needs: dict[str, tuple[str, ...]], workers: int) -> float:
    """The wall time of running the graph on ``workers`` with critical-path list scheduling (the executor starts
    ready stages in list order; this is the better-informed schedule the projection assumes)."""
    order = list(costs)
    tail: dict[str, float] = {}
    for name in reversed(order):  # stages come after those they need: children are later in the list
        kids = [n for n in order if name in needs[n]]
        tail[name] = costs[name] + max((tail[k] for k in kids), default=0.0)
    waiting = {n: set(needs[n]) for n in order}
    ready = [(-tail[n], order.index(n), n) for n in order if not waiting[n]]
    heapq.heapify(ready)
    running: list[tuple[float, str]] = []
    now, finished = 0.0, set()
    while ready or running:
        while ready and len(running) < workers:
            _, _, name = heapq.heappop(ready)
            heapq.heappush(running, (now + costs[name], name))
        now, name = heapq.heappop(running)
        finished.add(name)
        for n in order:
            if name in waiting[n]:
                waiting[n].discard(name)
                if not waiting[n] and n not in finished:
                    heapq.heappush(ready, (-tail[n], order.index(n), n))
    return now


def critical_path(costs: dict[str, float], needs: dict[str, tuple[str, ...]]) -> float:
    longest: dict[str, float] = {}
    for name in costs:
        longest[name] = costs[name] + max((longest[n] for n in needs[name]), default=0.0)
    return max(longest.values(), default=0.0)


def projection(costs: dict[str, float], needs: dict[str, tuple[str, ...]], workers: list[int]) -> dict[str, Any]:
    total = sum(costs.values())
    return {"work_seconds": round(total, 1), "critical_path_seconds": round(critical_path(costs, needs), 1),
            "workers": {str(w): {"wall_seconds": round(list_schedule(costs, needs, w), 1),
                                 "lower_bound_seconds": round(max(critical_path(costs, needs), total / w), 1)}
                        for w in workers}}


# ------------------------------------------------------------------------------------------------ the demo
def run_job(config: Path, out: Path, workers: int, sets: list[str]) -> dict[str, Any]:
    """One ``wsr-bench --threads 1 run`` in a fresh process and folder: wall seconds, load, the printed table."""
    shutil.rmtree(out, ignore_errors=True)
    cmd = [sys.executable, "-m", "wsr_bench.cli", "--threads", "1", "run", str(config), "--out", str(out),
           "--workers", str(workers), "--no-progress"]
    for item in sets:
        cmd += ["--set", item]
    load = load_average()
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    stages = {r["stage"]: r["seconds"] for r in map(json.loads, (out / "stages.jsonl").read_text().splitlines())}
    return {"workers": workers, "wall_seconds": round(wall, 1), "load_start": load, "load_end": load_average(),
            "table": proc.stdout.split("\ndone in")[0].strip(), "stage_seconds": stages}


def results_digest(out: Path) -> dict[str, str]:
    """sha256 of the genotype, every exported weights file and every entry's numbers (not its date or timings)."""
    digest = {"genotype.json": hashlib.sha256((out / "genotype.json").read_bytes()).hexdigest()}
    for path in sorted(out.rglob("model.safetensors")):
        digest[path.relative_to(out).as_posix()] = hashlib.sha256(path.read_bytes()).hexdigest()
    for path in sorted((out / "leaderboard" / "entries").rglob("*.json")):
        e = json.loads(path.read_text())
        numbers = [e["clean_accuracy"], e["curves"], e["auc"], e["samples"], e["avg_robust_accuracy"]]
        digest[path.relative_to(out).as_posix()] = hashlib.sha256(json.dumps(numbers).encode()).hexdigest()
    return digest


def demo_graph(config: Path, sets: list[str], out: Path) -> dict[str, tuple[str, ...]]:
    from wsr_bench.config import load_config
    from wsr_bench.jobs.run import run_stages_of

    return {s.name: s.needs for s in run_stages_of(load_config(config, sets), out)}


# ------------------------------------------------------------------------------------------------ the zoo
def zoo_graph() -> tuple[dict[str, tuple[str, ...]], list[str]]:
    from wsr_bench.config import load_config
    from wsr_bench.jobs.zoo import member_stages

    cfg = load_config(ZOO)
    needs: dict[str, tuple[str, ...]] = {}
    for member in cfg.zoo.models:
        for stage in member_stages(cfg, member, ROOT / "runs" / "zoo", 10_000):
            needs[stage.name] = stage.needs
    return needs, [m.name for m in cfg.zoo.models]


def committed_costs(names: list[str]) -> tuple[dict[str, float], str]:
    """Seconds per zoo stage from docs/zoo.md's cost tables (see the module docstring)."""
    text = ZOO_DOC.read_text().split("<!-- zoo-cost -->", 1)[1]
    costs: dict[str, float] = {}
    for table in re.findall(r"((?:^\|.*\|\n)+)", text, re.M)[:2]:
        rows = [[c.strip() for c in line.strip().strip("|").split("|")] for line in table.splitlines()]
        col = next(i for i, c in enumerate(rows[0]) if c == "CPU-hours")
        aa = rows[0][0].startswith("AutoAttack")
        for row in rows[2:]:
            name = row[0].strip("`")
            number = re.search(r"\d+(?:\.\d+)?", row[col])
            if name not in names or not number:
                continue
            seconds = float(number.group()) * 3600
            if aa:
                costs[f"eval:{name}:autoattack"] = seconds
                continue
            search = re.search(r"([\d,]+) s wall", row[-1])
            if search:  # wsrnet: its search, within the model's hours
                costs[f"search:{name}"] = float(search.group(1).replace(",", ""))
                seconds -= costs[f"search:{name}"]
            costs[f"train:{name}"] = seconds
    return costs, "docs/zoo.md (CPU-hours per model; training, publication and PGD-20 on the training stage)"


def logged_costs(log: Path) -> tuple[dict[str, float], str]:
    costs = {}
    for r in map(json.loads, log.read_text().splitlines()):
        if not r["skipped"]:
            costs[r["stage"]] = r["seconds"]
    return costs, f"{log} (each stage's last recorded seconds)"


# ------------------------------------------------------------------------------------------------ report
def markdown(report: dict[str, Any]) -> str:
    runs, demo, zoo = report["runs"], report["projection"]["demo"], report["projection"]["zoo"]
    m = report["machine"]
    lines = ["# The demo job with 1 and 2 workers; the zoo projected", "",
             f"Machine: {m['cpu_count']} CPUs, {m['processor']}, torch {m['torch']}, load {m['load_start']} at the "
             f"start, {m['load_end']} at the end. Config: `{report['config']['config']}`"
             f"{' (smoke: tiny sizes, the numbers mean nothing)' if report['config']['smoke'] else ''}.", "",
             "| workers | wall (s) | load before | load after |", "|---:|---:|---:|---:|"]
    lines += [f"| {r['workers']} | {r['wall_seconds']} | {r['load_start']} | {r['load_end']} |" for r in runs]
    lines += ["", f"Identical tables and results (genotype, weights, entries' numbers): **{report['identical']}**; "
                  f"speed-up {report['speedup']}x; goal <= {GOAL_SECONDS:.0f} s with 2 workers: "
                  f"**{report['goal_met']}**.", "",
              f"Projected from the 1-worker run's stage times ({demo['work_seconds']} s of stages, critical path "
              f"{demo['critical_path_seconds']} s): 2 workers {demo['workers']['2']['wall_seconds']} s (stages only; "
              "the job adds its start-up).", "",
              f"## The zoo, projected ({zoo['source']})", "",
              f"Work {zoo['work_seconds'] / 3600:.1f} h at one thread, critical path "
              f"{zoo['critical_path_seconds'] / 3600:.2f} h.", "",
              "| workers | projected wall (h) | lower bound (h) |", "|---:|---:|---:|"]
    lines += [f"| {w} | {v['wall_seconds'] / 3600:.2f} | {v['lower_bound_seconds'] / 3600:.2f} |"
              for w, v in zoo["workers"].items()]
    return "\n".join(lines + ["", report["conclusion"], ""])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--smoke", action="store_true", help="seconds: a tiny config (checks that the script runs; the "
                                                        "numbers mean nothing)")
    p.add_argument("--out", help="results JSON (a .md summary is written beside it); required except with --smoke")
    p.add_argument("--work", help="run folders (default: runs/demo_workers, or a temporary folder with --smoke)")
    p.add_argument("--zoo-log", help="a zoo build's stages.jsonl to take the stage costs from (default: docs/zoo.md)")
    args = p.parse_args(argv)
    if not args.out and not args.smoke:
        p.error("--out is required (except with --smoke)")
    load_start = load_average()
    sets = SMOKE_SETS if args.smoke else []
    if args.work:
        work = Path(args.work)
    elif args.smoke:
        import tempfile

        work = Path(tempfile.mkdtemp(prefix="demo_workers_smoke_"))
    else:
        work = ROOT / "runs" / "demo_workers"
    runs = [run_job(DEMO, work / f"workers{n}", n, sets) for n in (1, 2)]
    same_results = results_digest(work / "workers1") == results_digest(work / "workers2")
    identical = same_results and runs[0]["table"] == runs[1]["table"]
    demo_needs = demo_graph(DEMO, sets, work / "workers1")
    demo_costs = {n: runs[0]["stage_seconds"].get(n, 0.0) for n in demo_needs}
    zoo_needs, names = zoo_graph()
    costs, source = logged_costs(Path(args.zoo_log)) if args.zoo_log else committed_costs(names)
    zoo = {"source": source, **projection({n: costs.get(n, 0.0) for n in zoo_needs}, zoo_needs, [1, 2, 16, 64])}
    two = runs[1]["wall_seconds"]
    speedup = round(runs[0]["wall_seconds"] / two, 2) if two else None
    goal_met = two <= GOAL_SECONDS
    report = {
        "benchmark": "demo_workers", "machine": machine_record(load_start),
        "config": {"config": str(DEMO.relative_to(ROOT)), "sets": sets, "smoke": args.smoke, "threads": 1,
                   "work": str(work)},
        "runs": runs, "identical": identical, "identical_results": same_results, "speedup": speedup,
        "projection": {"demo": projection(demo_costs, demo_needs, [1, 2]), "zoo": zoo},
        "goal_met": goal_met,
        "conclusion": (f"demo job: {runs[0]['wall_seconds']} s with 1 worker, {two} s with 2 ({speedup}x; goal <= "
                       f"{GOAL_SECONDS:.0f} s {'met' if goal_met else 'not met'}); tables and results "
                       f"{'identical' if identical else 'DIFFER'}. Zoo projected: "
                       + ", ".join(f"{w} workers {v['wall_seconds'] / 3600:.1f} h"
                                   for w, v in zoo["workers"].items()) + "."),
    }
    publish(report, markdown(report), args.out, "demo_workers")
    return 0


if __name__ == "__main__":
    sys.exit(main())
