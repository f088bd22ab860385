"""Thread defaults: wsr-bench's commands on an idle machine and beside a process that keeps one core busy.

Each command runs in a fresh process (the console script, as a user starts it), so the thread count and OpenMP's
wait policy are what a user gets, with the environment cleared of ``OMP_NUM_THREADS``, ``MKL_NUM_THREADS``,
``OMP_WAIT_POLICY``, ``GOMP_SPINCOUNT`` and ``WSR_BENCH_THREADS``. Commands:

- ``search``: ``wsr-bench search configs/demo.yaml --set search.population=2 --set search.search_steps=2``;
- ``train``: one epoch of darts_v2 at the demo's size (C=8, 5 cells, PGD-3 training, no end-of-epoch check);
- ``eval``: the demo's evaluation (200 digits test images, PGD-10 at its 10 strengths, batch 256) of a darts_v2
  trained once, untimed, before the runs (``setup``).

Settings:

- ``default``: no flag (the new default: 1 thread, ``OMP_WAIT_POLICY=PASSIVE``);
- ``threads_1``: ``--threads 1``;
- ``threads_cores``: ``--threads <available cores>`` (with the new ``OMP_WAIT_POLICY=PASSIVE``);
- ``old_default``: ``WSR_BENCH_THREADS=torch``: wsr-bench sets neither the count nor the wait policy, which is
  exactly the code path before the default existed (torch's own count, OpenMP's own wait policy: unset, i.e.
  libgomp's default of spinning for a while before sleeping, not ``OMP_WAIT_POLICY=ACTIVE``).

Conditions: ``idle`` (``--reps`` runs per command and setting, the settings' order rotated per repetition; median)
and ``busy``: one run each beside ``python -c 'while True: pass'``, started by this script and always killed.
A busy run is stopped after max(``--min-timeout``, 3x its idle median) and recorded as "> N s (timed out)".
Goals: with the default, busy <= 1.3x idle for every command, and the default's idle time at most 10% above the
old default's.

    python benchmarks/threads.py --out benchmarks/results/threads.json   # 15-20 min on an idle 2-core machine
    python benchmarks/threads.py --smoke     # seconds: a tiny eval, default setting, a few-second busy process

Run it on an otherwise idle machine: the ``idle`` rows and the busy process assume nothing else runs. Writes
FILE.json (``config``, ``machine``, ``runs[]``, ``summary``, ``goals``, ``goal_met``, ``conclusion``) and FILE.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import load_average, machine_record, publish  # noqa: E402

sys.path.insert(0, str(ROOT))
from wsr_bench.infra.threads import available_cores  # noqa: E402

logger = logging.getLogger("threads")

#: variables that decide torch's thread count or OpenMP's wait policy: removed from every command's environment
CLEARED = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "WSR_BENCH_THREADS")
BUSY_CODE = "while True: pass"
DEMO_EPS = "0.01,0.02,0.03,0.05,0.07,0.1,0.13,0.17,0.21,0.25"  # configs/demo.yaml's eval.eps


@dataclass
class Config:
    """What runs (the full benchmark); :meth:`smoke_config` shrinks it to seconds."""

    commands: tuple[str, ...] = ("search", "train", "eval")
    settings: tuple[str, ...] = ("default", "threads_1", "threads_cores", "old_default")
    reps: int = 2                   # idle runs per (command, setting); busy: one
    min_timeout: float = 120.0      # a busy run is stopped after max(this, 3x its idle median)
    idle_timeout: float = 900.0     # an idle run is stopped after this
    busy_warmup: float = 1.0        # seconds the busy process runs before the first busy command
    cores: int = field(default_factory=available_cores)
    smoke: bool = False

    @classmethod
    def smoke_config(cls) -> Config:
        """Seconds: a tiny eval (and the tiny training it needs), the default setting, one idle and one busy run."""
        return cls(commands=("eval",), settings=("default",), reps=1, min_timeout=120.0, busy_warmup=0.2,
                   smoke=True)


def command_args(name: str, out: Path, model: Path, smoke: bool) -> list[str]:
    """The wsr-bench arguments of command ``name`` writing under ``out`` (``model``: the eval's model folder)."""
    if name == "search":
        return ["search", "configs/demo.yaml", "--out", str(out), "--no-progress", "--set", "search.population=2",
                "--set", "search.search_steps=2"]
    if name == "train":
        return ["train", "configs/demo.yaml", "--model", "darts_v2", "--out", str(out), "--no-progress",
                "--set", "train.epochs=1", "--set", "train.eval_examples=0", *(_TINY if smoke else [])]
    if name == "eval":
        sizes = (["--eps", "0.03,0.1", "--steps", "2", "--n-examples", "16"] if smoke else
                 ["--eps", DEMO_EPS, "--steps", "10", "--n-examples", "200"])
        return ["eval", "--model", str(model), "--dataset", "digits", *sizes, "--batch-size", "256",
                "--no-progress", "--out", str(out / "entry.json")]
    raise KeyError(name)


_TINY = ["--set", "model.init_channels=2", "--set", "model.layers=3", "--set", "train.steps=1"]


def setting_args(name: str, cores: int) -> tuple[list[str], dict[str, str]]:
    """(global flags, environment additions) of a setting."""
    return {"default": ([], {}), "threads_1": (["--threads", "1"], {}),
            "threads_cores": (["--threads", str(cores)], {}),
            "old_default": ([], {"WSR_BENCH_THREADS": "torch"})}[name]


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in CLEARED}
    return {**env, **extra}


def cli() -> list[str]:
    """The console script beside this Python (as a user starts it), else ``python -m wsr_bench.cli``."""
    script = Path(sys.executable).with_name("wsr-bench")
    return [str(script)] if script.is_file() else [sys.executable, "-m", "wsr_bench.cli"]


def run_command(argv: list[str], env: dict[str, str], timeout: float) -> dict[str, Any]:
    """Run ``argv`` in its own session; wall seconds, children's CPU seconds, exit code, or a timeout (the whole
    process group is killed)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    load = load_average()
    start = time.perf_counter()
    proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    try:
        output, _ = proc.communicate(timeout=timeout)
        timed_out = False
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        output, _ = proc.communicate()
        timed_out = True
    except BaseException:  # interrupted (Ctrl-C, SIGTERM): the command's whole group goes too
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        raise
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    rec = {"wall_s": None if timed_out else round(wall, 2), "cpu_s": round(cpu, 2), "timed_out": timed_out,
           "timeout_s": round(timeout, 1), "returncode": proc.returncode, "load_1m_at_start": load}
    if not timed_out and proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({proc.returncode}):\n{output[-2000:]}")
    return rec


class BusyCore:
    """``python -c 'while True: pass'`` for the ``with`` block: one core kept busy; always killed at the end."""

    def __init__(self, warmup: float) -> None:
        self.warmup, self.proc = warmup, None

    def __enter__(self) -> BusyCore:
        self.proc = subprocess.Popen([sys.executable, "-c", BUSY_CODE], stdin=subprocess.DEVNULL,
                                     start_new_session=True)
        time.sleep(self.warmup)
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()


def one_run(cfg: Config, command: str, setting: str, condition: str, tmp: Path, model: Path, timeout: float,
            index: int) -> dict[str, Any]:
    flags, extra = setting_args(setting, cfg.cores)
    out = tmp / f"{command}_{setting}_{condition}_{index}"
    argv = cli() + flags + command_args(command, out, model, cfg.smoke)
    rec = run_command(argv, clean_env(**extra), timeout)
    rec.update(command=command, setting=setting, condition=condition,
               argv=" ".join(["wsr-bench", *argv[len(cli()):]]).replace(str(tmp), "TMP"), env=extra)
    shown = f"> {timeout:.0f} s (timed out)" if rec["timed_out"] else f"{rec['wall_s']:.1f} s"
    logger.info("%-6s %-14s %-5s %s (CPU %.1f s, load %.2f)", command, setting, condition, shown, rec["cpu_s"],
                rec["load_1m_at_start"])
    return rec


def median_wall(runs: list[dict[str, Any]]) -> float | None:
    walls = [r["wall_s"] for r in runs if not r["timed_out"]]
    return statistics.median(walls) if walls and len(walls) == len(runs) else None


def summarise(cfg: Config, runs: list[dict[str, Any]]) -> dict[str, Any]:
    """``{command: {setting: {idle_s, busy_s, busy_timed_out, busy_over_idle, ...}}}``."""
    out: dict[str, Any] = {}
    for command in cfg.commands:
        out[command] = {}
        for setting in cfg.settings:
            pick = [r for r in runs if r["command"] == command and r["setting"] == setting]
            idle = [r for r in pick if r["condition"] == "idle"]
            busy = [r for r in pick if r["condition"] == "busy"]
            s: dict[str, Any] = {"idle_s": median_wall(idle), "idle_runs": [r["wall_s"] for r in idle],
                                 "idle_cpu_s": statistics.median(r["cpu_s"] for r in idle) if idle else None,
                                 "busy_s": median_wall(busy), "busy_timed_out": any(r["timed_out"] for r in busy),
                                 "busy_timeout_s": max((r["timeout_s"] for r in busy), default=None)}
            s["busy_over_idle"] = (round(s["busy_s"] / s["idle_s"], 3) if s["busy_s"] and s["idle_s"] else None)
            if s["busy_timed_out"] and s["idle_s"]:
                s["busy_over_idle_at_least"] = round(s["busy_timeout_s"] / s["idle_s"], 1)
            out[command][setting] = s
    return out


def goals(cfg: Config, summary: dict[str, Any]) -> dict[str, Any]:
    """Per command: the default's busy/idle ratio (goal <= 1.3) and its idle time against the old default's (goal
    <= 1.10); None where a needed setting did not run."""
    g: dict[str, Any] = {}
    for command, by in summary.items():
        d, old = by.get("default"), by.get("old_default")
        ratio = d["busy_over_idle"] if d else None
        vs_old = (round(d["idle_s"] / old["idle_s"], 3) if d and old and d["idle_s"] and old["idle_s"] else None)
        g[command] = {"busy_over_idle": ratio, "busy_goal_met": None if ratio is None else ratio <= 1.3,
                      "idle_vs_old_default": vs_old,
                      "idle_goal_met": None if vs_old is None else vs_old <= 1.10}
    return g


def fmt_s(s: dict[str, Any], key: str) -> str:
    if key == "busy_s" and s["busy_timed_out"]:
        return f"> {s['busy_timeout_s']:.0f} (timed out)"
    return "-" if s[key] is None else f"{s[key]:.1f}"


def fmt_ratio(s: dict[str, Any]) -> str:
    if s["busy_timed_out"]:
        return f"> {s['busy_over_idle_at_least']:.1f}x" if s.get("busy_over_idle_at_least") else "-"
    return "-" if s["busy_over_idle"] is None else f"{s['busy_over_idle']:.2f}x"


def conclusion(report: dict[str, Any]) -> str:
    parts = []
    for command, g in report["goals"].items():
        bits = []
        if g["busy_over_idle"] is not None:
            bits.append(f"busy/idle {g['busy_over_idle']:.2f}x ({'met' if g['busy_goal_met'] else 'NOT met'}: "
                        "<= 1.3x)")
        else:
            bits.append("busy/idle not measured")
        if g["idle_vs_old_default"] is not None:
            verdict = "met" if g["idle_goal_met"] else "NOT met"
            bits.append(f"idle {g['idle_vs_old_default']:.2f}x the old default's ({verdict}: <= 1.10x)")
        parts.append(f"{command}: " + ", ".join(bits))
    old = [f"{c} {fmt_ratio(by['old_default'])}" for c, by in report["summary"].items() if "old_default" in by]
    text = "With the default (1 thread, OMP_WAIT_POLICY=PASSIVE): " + "; ".join(parts) + "."
    if old:
        text += " The old default (torch's own count, wait policy unset) beside the busy core, busy/idle: " + \
            ", ".join(old) + "."
    if report["config"]["smoke"]:
        text += " (Smoke run: toy sizes, the numbers mean nothing.)"
    return text


def markdown(report: dict[str, Any]) -> str:
    c, m = report["config"], report["machine"]
    lines = ["# Thread defaults: idle machine and one busy core" + (" (smoke run)" if c["smoke"] else ""), "",
             f"Machine: {m['cpu_count']} CPUs ({c['cores']} available to this process), {m['processor']}, "
             f"{m['platform']}, Python {m['python']}, torch {m['torch']} (its own thread count here: "
             f"{m['torch_own_threads']}); load average {m['load_start']} at the start, {m['load_end']} at the end. "
             f"Each command in a fresh process; idle: median of {c['reps']} run(s), busy: one run beside "
             f"`python -c '{BUSY_CODE}'`, stopped after max({c['min_timeout']:.0f} s, 3x its idle median).", "",
             "Settings: `default` = no flag (1 thread, OMP_WAIT_POLICY=PASSIVE); `threads_1` = `--threads 1`; "
             "`threads_cores` = `--threads <cores>` (PASSIVE); `old_default` = `WSR_BENCH_THREADS=torch` (torch's own "
             "count, wait policy unset: the code path before the default existed).", "",
             "| command | setting | idle s | busy s | busy / idle | idle CPU s |", "|---|---|---:|---:|---:|---:|"]
    for command, by in report["summary"].items():
        for setting, s in by.items():
            cpu = "-" if s["idle_cpu_s"] is None else f"{s['idle_cpu_s']:.1f}"
            lines.append(f"| {command} | {setting} | {fmt_s(s, 'idle_s')} | {fmt_s(s, 'busy_s')} | {fmt_ratio(s)} "
                         f"| {cpu} |")
    lines += ["", "Commands (TMP: a temporary folder; the eval's model trained once before the runs):", ""]
    lines += [f"- `{r['argv']}`" for r in report["runs"] if r["condition"] == "idle" and r["setting"] == "default"
              and r.get("index", 0) == 0]
    lines += ["", "## Reading", "", report["conclusion"], ""]
    return "\n".join(lines)


def torch_own_threads() -> int | None:
    """torch's thread count in a fresh process with the cleared environment (what ``old_default`` runs with)."""
    proc = subprocess.run([sys.executable, "-c", "import torch; print(torch.get_num_threads())"], cwd=ROOT,
                          env=clean_env(), capture_output=True, text=True, timeout=300)
    return int(proc.stdout.split()[-1]) if proc.returncode == 0 and proc.stdout.split() else None


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--smoke", action="store_true", help="seconds: a tiny eval, the default setting, a short busy "
                   "process (checks that the script runs; the numbers mean nothing); written to a temporary folder "
                   "unless --out is given")
    p.add_argument("--out", help="results JSON (a .md summary is written beside it); required except with --smoke")
    p.add_argument("--reps", type=int, default=Config.reps, help="idle runs per command and setting (median)")
    p.add_argument("--min-timeout", type=float, default=Config.min_timeout,
                   help="seconds: a busy run is stopped after max(this, 3x its idle median)")
    p.add_argument("--commands", help="comma list of search,train,eval (default: all)")
    p.add_argument("--settings", help="comma list of default,threads_1,threads_cores,old_default (default: all)")
    args = p.parse_args(argv)
    if not args.out and not args.smoke:
        p.error("--out is required (except with --smoke)")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # killed: stop the running command and the busy core
    cfg = Config.smoke_config() if args.smoke else Config(reps=args.reps, min_timeout=args.min_timeout)
    if args.commands:
        cfg = dataclasses.replace(cfg, commands=tuple(args.commands.split(",")))
    if args.settings:
        cfg = dataclasses.replace(cfg, settings=tuple(args.settings.split(",")))
    unknown = (set(cfg.commands) - {"search", "train", "eval"}) | (set(cfg.settings) - set(Config.settings))
    if unknown:
        p.error(f"unknown commands/settings: {sorted(unknown)}")
    load_start, t0 = load_average(), time.perf_counter()
    own = torch_own_threads()
    runs: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="threads_bench_") as tmp_name:
        tmp = Path(tmp_name)
        model = tmp / "setup" / "model"
        setup = None
        if "eval" in cfg.commands:  # the eval's model: one training, untimed for the comparison, at --threads 1
            argv = cli() + ["--threads", "1"] + command_args("train", tmp / "setup", model, cfg.smoke)
            setup = run_command(argv, clean_env(), cfg.idle_timeout)
            logger.info("setup: trained the eval's model in %.1f s", setup["wall_s"])
        for rep in range(cfg.reps):
            order = cfg.settings[rep % len(cfg.settings):] + cfg.settings[:rep % len(cfg.settings)]
            for setting in order:
                for command in cfg.commands:
                    rec = one_run(cfg, command, setting, "idle", tmp, model, cfg.idle_timeout, rep)
                    runs.append({**rec, "index": rep})
        with BusyCore(cfg.busy_warmup):
            for setting in cfg.settings:
                for command in cfg.commands:
                    idle = median_wall([r for r in runs if r["command"] == command and r["setting"] == setting
                                        and r["condition"] == "idle"])
                    timeout = max(cfg.min_timeout, 3 * idle) if idle else cfg.idle_timeout
                    runs.append({**one_run(cfg, command, setting, "busy", tmp, model, timeout, 0), "index": 0})
    report: dict[str, Any] = {"benchmark": "threads", "config": dataclasses.asdict(cfg),
                              "cleared_env": list(CLEARED), "setup": setup, "runs": runs}
    report["summary"] = summarise(cfg, runs)
    report["goals"] = goals(cfg, report["summary"])
    met = [v for g in report["goals"].values() for v in (g["busy_goal_met"], g["idle_goal_met"]) if v is not None]
    report["goal_met"] = bool(met) and all(met)
    report["machine"] = machine_record(load_start, torch_own_threads=own, available_cores=cfg.cores)
    report["wall_seconds"] = round(time.perf_counter() - t0, 1)
    report["conclusion"] = conclusion(report)
    publish(report, markdown(report), args.out, "threads")
    return 0


if __name__ == "__main__":
    sys.exit(main())
