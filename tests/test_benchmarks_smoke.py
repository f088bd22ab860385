"""Every benchmark script runs end to end in its ``--smoke`` mode (toy sizes, seconds) and writes the results JSON
its real runs write, with the same top-level keys. The scripts are found by a glob over ``benchmarks/*.py``, so a
new benchmark is tested as soon as it exists, and one without a smoke mode or without known result keys fails."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BENCHMARKS = ROOT / "benchmarks"
RESULTS = BENCHMARKS / "results"
#: every benchmark script (``_common.py`` and other ``_*.py`` helpers are not scripts)
SCRIPTS = sorted(p.name for p in BENCHMARKS.glob("*.py") if not p.name.startswith("_"))
#: the top-level keys of each script's results JSON, as in its committed ``benchmarks/results/*.json`` (leaving out
#: the keys only some modes write: autoattack_sweep's ``parts`` of ``--merge``, search_quality's ``finding``, which
#: it carries over from an earlier result file; gpu_check's ``tests``, which its smoke run skips); throughput.py's and
#: gpu_check.py's as their ``run`` returns them. A script missing here is checked against
#: ``benchmarks/results/<name>.json`` when that is committed.
KEYS = {
    "ane_fidelity.py": {"ablations", "clean_acc", "config", "details", "estimators", "machine", "paper_table5",
                        "pgd_acc", "pgd_ms_per_noise"},
    "autoattack_sweep.py": {"benchmark", "conclusion", "config", "machine", "menu", "quick", "runs", "summary",
                            "total_wall_s"},
    "demo_workers.py": {"benchmark", "conclusion", "config", "goal_met", "identical", "identical_results", "machine",
                        "projection", "runs", "speedup"},
    "eval_resume_cost.py": {"benchmark", "conclusion", "config", "goal_met_side_by_side", "goal_met_state_code",
                            "machine", "model", "settings"},
    "search_cost.py": {"clock", "cpu_seconds", "extra_runs", "goals", "machine", "marginal_seconds_per_strength",
                       "naive", "paper", "quick", "ratio_wsr_to_naive", "settings", "vle_rank_correlation",
                       "vle_rank_correlation_detail", "wall_seconds", "wsr"},
    # plain --smoke runs the --power pipeline: quick mode's keys and the power keys
    "search_quality.py": {"found_percentile", "machine", "models", "per_image_scores", "quick", "search_wall_seconds",
                          "searches", "settings", "spectrum", "summary", "wall_seconds", "seed_noise", "mde_points",
                          "mde", "seed_agreement", "oneshot_kendall_tau", "cost", "phase_seconds"},
    "search_signal.py": {"calibrated", "controls", "fidelity", "finetune", "machine", "official", "planted", "recipe",
                         "scale", "smoke", "target", "wall_seconds"},
    "spectrum_cost.py": {"benchmark", "conclusion", "config", "eps", "eps_label", "machine", "models", "n_test",
                         "quick"},
    "threads.py": {"benchmark", "cleared_env", "conclusion", "config", "goal_met", "goals", "machine", "runs",
                   "setup", "summary", "wall_seconds"},
    "train_cost.py": {"anchor", "benchmark", "config", "machine", "n_test", "n_train", "recipes"},
    "vle_heads.py": {"machine", "rows"},
    "throughput.py": {"amp_training", "benchmark", "config", "goals", "machine", "rows", "verdicts",
                      "wall_seconds"},
    "gpu_check.py": {"autoattack", "benchmark", "config", "device", "device_name", "machine", "search", "training",
                     "wall_seconds"},
}
#: scripts that write only the JSON (every other one writes a Markdown summary beside it)
JSON_ONLY = {"gpu_check.py"}
TIMEOUT = 300  # seconds per script; a smoke run takes 5-15 s on one idle core


def expected_keys(script: str) -> set[str] | None:
    """The keys a script's results must hold: from :data:`KEYS`, else from its committed result (None: unknown)."""
    if script in KEYS:
        return KEYS[script]
    committed = RESULTS / script.replace(".py", ".json")
    return set(json.loads(committed.read_text())) if committed.is_file() else None


def run_smoke(script: str, *args: str) -> subprocess.CompletedProcess:
    """``python benchmarks/<script> --smoke ARGS`` from the repository root, one thread."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, str(BENCHMARKS / script), "--smoke", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=TIMEOUT)


def results_state(script: str) -> dict[str, int]:
    """Name and modification time of the script's files in ``benchmarks/results/`` (``<name>*``)."""
    return {p.name: p.stat().st_mtime_ns for p in RESULTS.glob(script.replace(".py", "*"))}


def test_every_benchmark_script_has_a_smoke_test():
    """The smoke test below is parametrised over every script in benchmarks/; each declares ``--smoke`` and has
    known result keys (add them to KEYS, or commit a result, when adding a benchmark)."""
    scripts = sorted(p.name for p in BENCHMARKS.glob("*.py") if not p.name.startswith("_"))
    assert {"search_cost.py", "spectrum_cost.py", "vle_heads.py"} <= set(scripts)
    assert (BENCHMARKS / "_common.py").is_file() and "_common.py" not in scripts  # a helper, not a benchmark
    mark = next(m for m in test_smoke_run_writes_its_results.pytestmark if m.name == "parametrize")
    assert sorted(mark.args[1]) == scripts, "the smoke test does not cover every benchmark script"
    no_flag = [s for s in scripts if '"--smoke"' not in (BENCHMARKS / s).read_text()]
    assert not no_flag, f"benchmarks without a --smoke mode: {no_flag}"
    unknown = [s for s in scripts if expected_keys(s) is None]
    assert not unknown, (f"no expected result keys for {unknown}: add them to KEYS in {Path(__file__).name} (or "
                         "commit the script's benchmarks/results/<name>.json)")


@pytest.mark.slow
@pytest.mark.parametrize("script", SCRIPTS)
def test_smoke_run_writes_its_results(script, tmp_path):
    before = results_state(script)
    out = tmp_path / script.replace(".py", ".json")
    proc = run_smoke(script, "--out", str(out))
    assert proc.returncode == 0, f"{script} --smoke failed ({proc.returncode}):\n{proc.stderr[-4000:]}"
    result = json.loads(out.read_text())
    assert isinstance(result, dict) and result
    missing = (expected_keys(script) or set()) - set(result)
    assert not missing, f"{script} --smoke result lacks {sorted(missing)}"
    if script not in JSON_ONLY:
        assert out.with_suffix(".md").read_text().strip(), "no Markdown summary beside the JSON"
    assert results_state(script) == before, "a smoke run changed benchmarks/results/"


@pytest.mark.slow
def test_smoke_without_out_writes_to_a_temporary_folder():
    """Without ``--out`` a smoke run writes to a fresh temporary folder, never over a committed result (vle_heads
    writes benchmarks/results/ by default otherwise)."""
    before = results_state("vle_heads.py")
    assert before, "benchmarks/results/vle_heads.json is committed"
    proc = run_smoke("vle_heads.py")
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert results_state("vle_heads.py") == before
    wrote = [line for line in proc.stdout.splitlines() if line.startswith("wrote ")]
    assert wrote, proc.stdout[-2000:]
    path = Path(wrote[-1].split()[1])
    try:
        assert RESULTS.resolve() not in path.resolve().parents
        assert "rows" in json.loads(path.read_text())
    finally:
        for p in (path, path.with_suffix(".md")):
            p.unlink(missing_ok=True)
        path.parent.rmdir()
