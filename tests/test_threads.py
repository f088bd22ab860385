"""CPU thread defaults (``wsr_bench.infra.threads``): the command line gives torch 1 thread and OpenMP the passive wait
policy unless the user chose otherwise; the Python entry points apply the same default once per process and keep a
count the caller set; bad counts are one-line errors, too many threads a one-line warning."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import wsr_bench.infra.threads as threads
from wsr_bench import cli
from wsr_bench.infra.distributed import joined_process_group

REPO = Path(__file__).resolve().parents[1]
CLEARED = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OMP_WAIT_POLICY", "WSR_BENCH_THREADS")

# a fresh interpreter runs the CLI (a command that imports torch, then fails on the missing config) and reports what
# torch and the environment say afterwards
_REPORT = """
import json, os, sys
import wsr_bench.cli as cli
light = "torch" not in sys.modules
rc = cli.main(sys.argv[1:] + ["train", "no-such-config.yaml", "--out", "unused"])
import torch
import wsr_bench.infra.threads as threads
print(json.dumps({"rc": rc, "light": light, "threads": torch.get_num_threads(),
                  "policy": os.environ.get("OMP_WAIT_POLICY"), "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
                  "in_default_counts": torch.get_num_threads() in threads._torch_default_counts()}))
"""


def _report(*args: str, **env: str) -> dict:
    full = {k: v for k, v in os.environ.items() if k not in CLEARED}
    full.update(PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]), **env)
    proc = subprocess.run([sys.executable, "-c", _REPORT, *args], capture_output=True, text=True, env=full,
                          cwd=REPO, timeout=120)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["rc"] == 2 and report["light"], report  # the missing config; nothing loaded torch before main
    return report


def test_cli_default_is_one_thread_with_passive_waits():
    report = _report()
    assert report["threads"] == 1
    assert report["policy"] == "PASSIVE"
    assert report["omp_num_threads"] == "1"  # how the default reaches torch without importing it early


def test_cli_keeps_the_users_wait_policy_and_thread_variables():
    report = _report(OMP_WAIT_POLICY="ACTIVE", OMP_NUM_THREADS="2")
    assert (report["threads"], report["policy"], report["omp_num_threads"]) == (2, "ACTIVE", "2")


def test_wsr_bench_threads_torch_is_the_old_behaviour():
    """``WSR_BENCH_THREADS=torch``: no count, no wait policy (what benchmarks/threads.py runs as the old default);
    torch's own count is one of the counts the API treats as torch's start-up count."""
    report = _report(WSR_BENCH_THREADS="torch")
    assert report["policy"] is None and report["omp_num_threads"] is None
    assert report["in_default_counts"], report


@pytest.fixture
def fresh(monkeypatch):
    """A process where no count has been chosen yet, with none of the thread variables set; torch's count is
    restored afterwards."""
    monkeypatch.setattr(threads, "_settled", False)
    for var in CLEARED:  # set, then delete: monkeypatch restores the original even after the code writes it
        monkeypatch.setenv(var, "")
        monkeypatch.delenv(var)
    before = torch.get_num_threads()
    yield monkeypatch
    torch.set_num_threads(before)


def _main(capsys, *argv: str) -> tuple[int, list[str]]:
    rc = cli.main([*argv, "train", "no-such-config.yaml", "--out", "unused"])
    return rc, capsys.readouterr().err.strip().splitlines()


@pytest.mark.parametrize("value", ["0", "-2"])
def test_cli_threads_below_one_is_a_one_line_error(fresh, capsys, value):
    rc, err = _main(capsys, "--threads", value)
    assert rc == 2 and err == ["error: --threads must be >= 1"]


def test_cli_bad_environment_value_is_a_one_line_error(fresh, capsys):
    fresh.setenv("WSR_BENCH_THREADS", "many")
    rc, err = _main(capsys)
    assert rc == 2 and err == ["error: WSR_BENCH_THREADS must be a positive integer or 'torch', got 'many'"]


def test_cli_more_threads_than_cores_warns_in_one_line(fresh, capsys):
    n = threads.available_cores() + 1
    rc, err = _main(capsys, "--threads", str(n))
    assert torch.get_num_threads() == n
    assert rc == 2 and len(err) == 2 and err[1].startswith("error:"), err  # the warning, then the missing config
    assert err[0].startswith(f"warning: {n} torch threads on {n - 1} available CPU core(s)")
    assert ">16x slower beside one busy core on 2 cores" in err[0] and "docs/performance.md" in err[0]
    rc, err = _main(capsys, "--threads", str(n - 1))
    assert torch.get_num_threads() == n - 1 and not any("warning" in line for line in err)


def test_cli_flag_and_environment_set_the_count_in_process(fresh, capsys):
    """With torch already imported (cli.main called from Python) the count goes through torch.set_num_threads."""
    torch.set_num_threads(3)
    _main(capsys)
    assert torch.get_num_threads() == 1
    fresh.setenv("WSR_BENCH_THREADS", "2")
    _main(capsys)
    assert torch.get_num_threads() == 2
    _main(capsys, "--threads", "1")  # the flag wins over the variable
    assert torch.get_num_threads() == 1
    assert "OMP_NUM_THREADS" not in os.environ and "OMP_WAIT_POLICY" not in os.environ  # torch was loaded: no env


def test_wait_policy_is_left_alone_once_torch_is_loaded_or_when_set(fresh):
    assert threads.set_wait_policy() is None  # torch is imported in this process
    fresh.delitem(sys.modules, "torch")
    assert threads.set_wait_policy() == "PASSIVE" and os.environ["OMP_WAIT_POLICY"] == "PASSIVE"
    fresh.setenv("OMP_WAIT_POLICY", "ACTIVE")
    assert threads.set_wait_policy() is None and os.environ["OMP_WAIT_POLICY"] == "ACTIVE"
    fresh.delenv("OMP_WAIT_POLICY")
    fresh.setenv("WSR_BENCH_THREADS", "torch")
    assert threads.set_wait_policy() is None and "OMP_WAIT_POLICY" not in os.environ


def test_resolution_order(fresh):
    assert threads.resolve_threads() == (1, "default")
    fresh.setenv("MKL_NUM_THREADS", "4")
    assert threads.resolve_threads() == (None, "MKL_NUM_THREADS")
    fresh.setenv("WSR_BENCH_THREADS", "3")
    assert threads.resolve_threads() == (3, "WSR_BENCH_THREADS")
    assert threads.resolve_threads(2) == (2, "--threads")
    fresh.setenv("WSR_BENCH_THREADS", "Torch")
    assert threads.resolve_threads() == (None, "WSR_BENCH_THREADS")
    with pytest.raises(ValueError, match="--threads must be >= 1"):
        threads.resolve_threads(0)


def test_api_default_applies_once_to_torchs_own_count(fresh):
    fresh.setattr(threads, "_torch_default_counts", lambda: {5})  # as if torch had started with 5 threads
    torch.set_num_threads(5)
    assert threads.apply_default_threads() == 1 and torch.get_num_threads() == 1
    torch.set_num_threads(5)
    assert threads.apply_default_threads() is None and torch.get_num_threads() == 5  # once per process


def test_api_default_keeps_a_count_the_caller_set(fresh):
    fresh.setattr(threads, "_torch_default_counts", lambda: {5})
    torch.set_num_threads(3)  # not torch's start-up count: the caller's
    assert threads.apply_default_threads() is None and torch.get_num_threads() == 3


@pytest.mark.parametrize("env, expected", [({"WSR_BENCH_THREADS": "2"}, 2), ({"OMP_NUM_THREADS": "4"}, 5),
                                           ({"WSR_BENCH_THREADS": "torch"}, 5)])
def test_api_default_follows_the_environment(fresh, env, expected):
    fresh.setattr(threads, "_torch_default_counts", lambda: {5})
    for k, v in env.items():
        fresh.setenv(k, v)
    torch.set_num_threads(5)
    threads.apply_default_threads()
    assert torch.get_num_threads() == expected


def test_set_threads_is_kept_by_the_entry_points(fresh):
    fresh.setattr(threads, "_torch_default_counts", lambda: {2})
    threads.set_threads(2)
    with joined_process_group("cpu"):
        assert torch.get_num_threads() == 2
    with pytest.raises(ValueError):
        threads.set_threads(0)


def test_entry_points_apply_the_default(fresh, tmp_path):
    """run_search, run_training, run_eval and run_pipeline enter joined_process_group; evaluate_spectrum and
    train_model (callable on their own) apply the default themselves."""
    from wsr_bench.evaluate import evaluate_spectrum
    from wsr_bench.train import driver

    fresh.setattr(threads, "_torch_default_counts", lambda: {5})
    torch.set_num_threads(5)
    with joined_process_group("cpu"):
        assert torch.get_num_threads() == 1

    fresh.setattr(threads, "_settled", False)
    torch.set_num_threads(5)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 3))
    x, y = torch.rand(4, 1, 2, 2), torch.tensor([0, 1, 2, 0])
    evaluate_spectrum(model, x, y, eps=[0.03], attack="fgsm", device="cpu", memory_format="contiguous")
    assert torch.get_num_threads() == 1

    calls = []
    fresh.setattr(driver, "apply_default_threads", lambda: calls.append(1))
    with pytest.raises(Exception):  # noqa: B017  (no real model: only the first line matters)
        driver.train_model(None, None, None, tmp_path / "out")
    assert calls == [1]
