"""Resumable and sharded ``wsr-bench eval``: SIGKILL + ``--resume`` and 2 processes under torchrun (gloo) give the
identical entry to one uninterrupted process; state errors are one-line errors.

All runs evaluate the same tiny trained ``wsrnet_basic`` with the same settings (APGD-CE, reseeded per batch, and
warm-started PGD, whose iterates travel through the state), so one in-process reference serves every comparison.
Entries are compared whole, except their wall time and date.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import timm
import torch
import torch.nn.functional as F
from _wsr_eval_fixtures import one_thread  # noqa: F401
from torch.utils.data import ConcatDataset

import wsr_bench.models as wm
from wsr_bench.cli import main
from wsr_bench.data.datasets import as_tensors, load_dataset

ARGS = ["--n-examples", "48", "--batch-size", "8", "--eps", "0.002,0.005,0.01,0.02", "--attack", "apgd-ce,pgd",
        "--steps", "6", "--warm-start-steps", "2", "--no-progress", "--no-sanity"]

WORKER = '''
import json, sys
from pathlib import Path

from wsr_bench.infra.distributed import cleanup, is_main_process, setup_distributed
from wsr_bench.evaluate.entry import evaluate_to_entry, load_eval_data
from wsr_bench.models import load_exported


def run(model_dir, out):
    """What ``wsr-bench run`` does per model: evaluate_to_entry with a resume state, rank 0 writes."""
    setup_distributed("cpu")
    x, y, _ = load_eval_data("digits", 32)
    entry = evaluate_to_entry(load_exported(model_dir), x, y, model_name="tiny", architecture="wsrnet_basic",
                              dataset="digits", eps=[0.005, 0.01], attack=["pgd"], steps=4, batch_size=8,
                              device="cpu", sanity=False, date="2025-01-01", state_dir=out + ".state", resume=True)
    if is_main_process():
        Path(out).write_text(json.dumps(entry.to_dict()))


if __name__ == "__main__":
    run(sys.argv[1], sys.argv[2])
    from wsr_bench.cli import main

    code = main(sys.argv[3:])  # then the real command, in the same launch and process group
    cleanup()
    sys.exit(code)
'''


def _env() -> dict[str, str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)
    return env


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    """A wsrnet_basic (C=4, 3 cells) trained for one epoch on digits (~80% clean), exported (seconds)."""
    splits = load_dataset("digits", image_size=16, seed=0)
    x, y = as_tensors(ConcatDataset([splits.train_t, splits.train_v]))
    torch.manual_seed(0)
    model = timm.create_model("wsrnet_basic", init_channels=4, layers=3, num_classes=10, mean=splits.mean,
                              std=splits.std)
    opt = torch.optim.Adam(model.parameters(), 3e-3)
    for _ in range(2):
        for idx in torch.randperm(len(x)).split(64):
            opt.zero_grad()
            F.cross_entropy(model(x[idx]), y[idx]).backward()
            opt.step()
    folder = tmp_path_factory.mktemp("resume") / "tiny"
    wm.export_model(model.eval(), folder)
    return folder


@pytest.fixture(scope="module")
def reference(model_dir) -> Path:
    """One uninterrupted single-process run, state kept."""
    out = model_dir.parent / "reference.json"
    assert main(["eval", "--model", str(model_dir), *ARGS, "--out", str(out), "--keep-state"]) == 0
    return out


def _comparable(path: Path) -> dict:
    entry = json.loads(Path(path).read_text())
    entry.pop("date")
    entry["evaluation"].pop("wall_time_s")
    return entry


def _n_batches(state: Path) -> int:
    return sum(1 for _ in state.glob("*/e*_b*.pt"))


def _kill_after(args: list[str], state: Path, n_batches: int, log: Path) -> None:
    """Start ``wsr-bench eval`` and SIGKILL it once ``n_batches`` batch files exist (it must still be running)."""
    with log.open("w") as err:
        proc = subprocess.Popen([sys.executable, "-m", "wsr_bench.cli", "--threads", "1", *args],
                                stdout=subprocess.DEVNULL, stderr=err, env=_env())
        deadline = time.monotonic() + 300
        while _n_batches(state) < n_batches:
            assert proc.poll() is None, f"ended ({proc.returncode}) before the kill:\n{log.read_text()[-2000:]}"
            assert time.monotonic() < deadline, "no progress within 300 s"
            time.sleep(0.005)
        os.kill(proc.pid, signal.SIGKILL)
        assert proc.wait() == -signal.SIGKILL


@pytest.mark.slow
def test_killed_twice_and_resumed_gives_the_identical_entry(model_dir, reference, tmp_path, capsys):
    out = tmp_path / "entry.json"
    state = tmp_path / "entry.json.state"
    args = ["eval", "--model", str(model_dir), *ARGS, "--out", str(out)]
    _kill_after(args, state, 3, tmp_path / "first.log")  # during the clean pass
    done = _n_batches(state)
    assert not out.exists() and (state / "settings.json").is_file()
    _kill_after(args + ["--resume"], state, done + 12, tmp_path / "second.log")  # during the attacks
    assert not out.exists() and _n_batches(state) < _n_batches(reference.with_name("reference.json.state"))
    code = main(args)
    assert code == 2 and "entry.json.state holds the progress" in capsys.readouterr().err
    assert main(args + ["--resume"]) == 0
    assert _comparable(out) == _comparable(reference)
    assert not state.exists()  # removed once the entry is written


def test_resume_with_other_settings_is_a_one_line_error(model_dir, reference, tmp_path, capsys):
    out = tmp_path / "entry.json"
    base = ["eval", "--model", str(model_dir), *ARGS, "--out", str(out), "--resume"]
    cases = [(["--steps", "4"], "steps: 6 in the state, 4 now"), (["--seed", "1"], "seed: 0 in the state, 1 now"),
             (["--eps", "0.002,0.005"], "eps: "), (["--n-examples", "40"], "n: 48 in the state, 40 now"),
             (["--attack", "pgd"], "attacks: "), (["--batch-size", "16"], "batch_size: 8 in the state, 16 now")]
    for extra, message in cases:
        shutil.copytree(reference.with_name("reference.json.state"), tmp_path / "entry.json.state")
        assert main(base + extra) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: cannot resume from") and message in err and len(err.splitlines()) == 1, err
        shutil.rmtree(tmp_path / "entry.json.state")
    other = tmp_path / "other"  # same architecture, other weights
    wm.export_model(timm.create_model("wsrnet_basic", init_channels=4, layers=3, num_classes=10), other)
    shutil.copytree(reference.with_name("reference.json.state"), tmp_path / "entry.json.state")
    assert main(["eval", "--model", str(other), *ARGS, "--out", str(out), "--resume"]) == 2
    err = capsys.readouterr().err
    assert "weights_sha256: " in err and "model: " in err and not out.exists()


def test_existing_state_needs_resume_and_keep_state_keeps_it(model_dir, reference, tmp_path, capsys):
    state = reference.with_name("reference.json.state")  # --keep-state kept it, with every batch
    assert (state / "settings.json").is_file() and _n_batches(state) > 6
    assert {p.name for p in state.iterdir()} == {"settings.json", "clean", "apgd-ce", "pgd"}
    out = tmp_path / "entry.json"
    (tmp_path / "entry.json.state").mkdir()
    assert main(["eval", "--model", str(model_dir), *ARGS, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err == f"error: {tmp_path / 'entry.json.state'} holds the progress of an earlier evaluation; pass " \
                  "--resume to continue it, or delete the folder to start over\n"
    assert main(["eval", "--model", str(model_dir), *ARGS, "--keep-state"]) == 2
    assert "need --out" in capsys.readouterr().err
    (tmp_path / "entry.json.state" / "settings.json").write_text("{not json")
    assert main(["eval", "--model", str(model_dir), *ARGS, "--out", str(out), "--resume"]) == 2
    assert capsys.readouterr().err.startswith(f"error: cannot read {tmp_path / 'entry.json.state' / 'settings.json'}")
    # a finished state resumes without running any batch again: same entry, batch files untouched
    shutil.rmtree(tmp_path / "entry.json.state")
    shutil.copytree(state, tmp_path / "entry.json.state")
    before = {p: p.stat().st_mtime_ns for p in (tmp_path / "entry.json.state").rglob("*")}
    assert main(["eval", "--model", str(model_dir), *ARGS, "--out", str(out), "--resume", "--keep-state"]) == 0
    assert _comparable(out) == _comparable(reference)
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "entry.json.state").rglob("*")} == before


@pytest.mark.slow
def test_two_processes_under_torchrun_give_the_identical_entry(model_dir, reference, tmp_path):
    script = tmp_path / "eval_worker.py"
    script.write_text(WORKER)
    out, api_out = tmp_path / "entry.json", tmp_path / "api.json"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(script),
           str(model_dir), str(api_out), "--threads", "1", "eval", "--model", str(model_dir), *ARGS, "--out",
           str(out), "--keep-state"]
    proc = subprocess.run(cmd, cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"torchrun failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    assert _comparable(out) == _comparable(reference)
    assert proc.stdout.count("wrote ") == 1  # rank 0 reports
    ranks = {torch.load(p, weights_only=True)["rank"] for p in (tmp_path / "entry.json.state").glob("*/*.pt")}
    assert ranks == {0, 1}  # both processes attacked a share
    # the pipeline's path (evaluate_to_entry, as `wsr-bench run` calls it) against the same call in one process
    spec = importlib.util.spec_from_file_location("eval_worker", script)
    worker = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(worker)
    worker.run(str(model_dir), str(tmp_path / "api_single.json"))
    sharded, single = (json.loads(p.read_text()) for p in (api_out, tmp_path / "api_single.json"))
    for entry in (sharded, single):
        entry["evaluation"].pop("wall_time_s")
    assert sharded == single
