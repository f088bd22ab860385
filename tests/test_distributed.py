"""DDP through torchrun on 2 CPU processes (gloo) equals a single process with the same global batch.

The equality run uses a BatchNorm-free network (per-rank BN statistics would differ; SyncBatchNorm needs CUDA) and
PGD without random start (each rank draws its own random start): then the ranks' strided shares of each global
batch, equal per-rank means and DDP's gradient averaging give the single process's update up to float rounding.
"""

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from torch.utils.data import TensorDataset

from wsr_bench.infra.distributed import (
    DistInfo,
    all_reduce_stats,
    is_main_process,
    joined_process_group,
    set_epoch,
    setup_distributed,
    shard_loader,
    unwrap_model,
    wrap_ddp,
)

WORKER = '''
import json, sys
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import TensorDataset

from wsr_bench.data.datasets import get_synthetic
from wsr_bench.infra.distributed import (cleanup, is_main_process, set_epoch, setup_distributed, shard_loader,
                                   unwrap_model, wrap_ddp)
from wsr_bench.search_space.ops import Normalize
from wsr_bench.train import TrainRecipe, eval_epoch, train_epoch


def trades_with_aux_head():
    """TRADES (two forwards through DDP before one backward) with DARTS' auxiliary head (through TrainView), BN
    model: the ranks' weights must stay identical. Returns every rank's parameter checksum."""
    import timm

    import wsr_bench.models  # noqa: F401
    from wsr_bench.infra.distributed import all_gather_object

    torch.manual_seed(0)
    model = timm.create_model("darts_v2", init_channels=4, layers=3, num_classes=10, auxiliary=True)
    net = wrap_ddp(model)
    x, y = get_synthetic(n=16, image_size=32, seed=2)
    loader = shard_loader(TensorDataset(x, y), batch_size_global=8, seed=0)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    train_epoch(net, loader, opt, TrainRecipe("trades", eps=0.03, steps=2), aux_weight=0.4)
    return all_gather_object(float(sum(p.detach().double().sum() for p in model.parameters())))


def run(out):
    torch.set_num_threads(1)
    info = setup_distributed("cpu")
    torch.manual_seed(0)
    model = nn.Sequential(Normalize((0.5,) * 3, (0.25,) * 3), nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(),
                          nn.Conv2d(8, 8, 3, stride=2, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2),
                          nn.Flatten(), nn.Linear(32, 10))
    init = {k: v.clone() for k, v in model.state_dict().items()}
    net = wrap_ddp(model)
    x, y = get_synthetic(n=96, image_size=8, seed=1)
    loader = shard_loader(TensorDataset(x[:64], y[:64]), batch_size_global=16, seed=3, shuffle=True)
    opt = torch.optim.SGD(unwrap_model(net).parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    recipe = TrainRecipe("pgd", eps=0.05, steps=3, random_start=False)
    for epoch in range(2):
        set_epoch(loader, epoch)
        stats = train_epoch(net, loader, opt, recipe, grad_clip=1.0)
    test = shard_loader(TensorDataset(x[64:], y[64:]), batch_size_global=8, shuffle=False)
    ev = eval_epoch(net, test, attack=TrainRecipe(eps=0.05, steps=2, random_start=False))
    sync = trades_with_aux_head()
    if is_main_process():
        Path(out).mkdir(parents=True, exist_ok=True)
        torch.save(unwrap_model(net).state_dict(), Path(out) / "weights.pt")
        torch.save(init, Path(out) / "init.pt")
        (Path(out) / "stats.json").write_text(json.dumps({"train": stats, "eval": ev, "world": info.world_size,
                                                          "sync": sync}))


if __name__ == "__main__":
    run(sys.argv[1])
    code = 0
    if len(sys.argv) > 2:  # then the real command in the same launch and process group (saves a torchrun start-up)
        from wsr_bench.cli import main

        code = main(sys.argv[2:])
    cleanup()
    sys.exit(code)
'''


def _torchrun(args: list[str], cwd: Path, timeout: int = 240, check: bool = True) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", *args]
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0 or not check, \
        f"torchrun failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


@pytest.fixture(scope="module")
def launched(tmp_path_factory):
    """One 2-process torchrun launch: the equality experiment, then ``wsr-bench train`` on a tiny config."""
    tmp = tmp_path_factory.mktemp("ddp")
    script = tmp / "ddp_worker.py"
    script.write_text(WORKER)
    cfg = tmp / "tiny.yaml"
    cfg.write_text(yaml.safe_dump({"device": "cpu", "data": {"name": "synthetic", "batch_size": 64},
                                   "model": {"init_channels": 4, "layers": 3},
                                   "train": {"epochs": 2, "steps": 1, "eval_examples": 16, "eval_steps": 1}}))
    proc = _torchrun([str(script), str(tmp / "ddp"), "train", str(cfg), "--out", str(tmp / "run"), "--model",
                      "darts_v2", "--no-progress"], cwd=tmp)
    return tmp, script, proc


@pytest.mark.slow
def test_ddp_on_two_cpu_processes_equals_one_process(launched):
    tmp, script, _ = launched
    spec = importlib.util.spec_from_file_location("ddp_worker", script)
    worker = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(worker)
    threads = torch.get_num_threads()
    worker.run(tmp / "single")  # same code, no torchrun: one process, same global batch
    torch.set_num_threads(threads)
    ddp, single = (torch.load(tmp / d / "weights.pt", weights_only=True) for d in ("ddp", "single"))
    for key in single:
        assert torch.allclose(ddp[key], single[key], rtol=1e-4, atol=1e-5), key
    init = torch.load(tmp / "ddp" / "init.pt", weights_only=True)
    assert all(not torch.allclose(init[k], ddp[k]) for k in init if k.endswith("weight"))  # training moved them
    s_ddp, s_one = (json.loads((tmp / d / "stats.json").read_text()) for d in ("ddp", "single"))
    assert (s_ddp["world"], s_one["world"]) == (2, 1)
    assert s_ddp["train"]["n"] == s_one["train"]["n"] == 64 and s_ddp["eval"]["n"] == s_one["eval"]["n"] == 32
    assert s_ddp["train"]["steps"] == s_one["train"]["steps"] == 4
    assert len(s_ddp["sync"]) == 2 and s_ddp["sync"][0] == s_ddp["sync"][1]
    for part, key in (("train", "loss"), ("train", "acc"), ("eval", "loss"), ("eval", "acc")):
        assert s_ddp[part][key] == pytest.approx(s_one[part][key], rel=1e-4, abs=1e-5), (part, key)


@pytest.mark.slow
def test_wsr_bench_train_under_torchrun_writes_once_from_rank_zero(launched):
    tmp, _, proc = launched
    out = tmp / "run"
    assert proc.stdout.count("trained darts_v2") == 1 and "2 process(es)" in proc.stdout
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [1, 2] and records[-1]["train_n"] == 206  # 205 images, 103 per rank
    assert len((out / "train.log").read_text().splitlines()) == 2
    assert sorted(p.name for p in out.iterdir()) == ["checkpoint.pt", "config.yaml", "metrics.jsonl", "model",
                                                     "train.log"]
    state = torch.load(out / "checkpoint.pt", weights_only=True)
    assert state["world_size"] == 2 and len(state["rng"]) == 2
    assert not torch.equal(state["rng"][0]["torch"], state["rng"][1]["torch"])  # each rank has its own stream


def test_single_process_helpers_are_identities(monkeypatch):
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(key, raising=False)
    assert setup_distributed("cpu") == DistInfo(rank=0, world_size=1, local_rank=0, device="cpu")
    assert is_main_process()
    stats = {"loss": 0.5, "acc": 0.25, "n": 8, "seconds": 1.0, "name": "x"}
    assert all_reduce_stats(stats) == stats
    model = torch.nn.Linear(2, 2)
    assert wrap_ddp(model) is model and unwrap_model(model) is model
    monkeypatch.setenv("WORLD_SIZE", "two")
    with pytest.raises(ValueError, match="WORLD_SIZE='two' must be an integer"):
        setup_distributed("cpu")


def test_joined_process_group_leaves_only_a_group_it_joined(monkeypatch, tmp_path):
    import torch.distributed as dist

    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(key, raising=False)
    with joined_process_group("cpu") as info:
        assert info == DistInfo(rank=0, world_size=1, local_rank=0, device="cpu")
    assert not dist.is_initialized()
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        with pytest.raises(RuntimeError, match="boom"), joined_process_group("cpu"):
            raise RuntimeError("boom")
        with joined_process_group("cpu"):
            pass
        assert dist.is_initialized()  # the caller's group (a pipeline's, a test worker's) is kept
    finally:
        dist.destroy_process_group()


FAILING_RANK = '''
from wsr_bench.infra.distributed import get_rank, joined_process_group

with joined_process_group("cpu"):
    if get_rank() == 1:
        raise SystemExit("rank 1 failed on purpose")
print("rank 0 reached the end of its block")
'''


@pytest.mark.slow
def test_a_failing_rank_does_not_leave_its_peer_waiting_at_the_exit_barrier(tmp_path):
    """Rank 0 ends its block normally and waits for its peer at ``cleanup``'s barrier; rank 1 raises and leaves
    without waiting. The launch must fail at once with rank 1's error, not hang until gloo's 30-minute timeout."""
    script = tmp_path / "failing.py"
    script.write_text(FAILING_RANK)
    proc = _torchrun([str(script)], cwd=tmp_path, timeout=120, check=False)
    assert proc.returncode != 0 and "rank 1 failed on purpose" in proc.stderr, proc.stderr[-3000:]


@pytest.mark.slow
def test_wsr_bench_search_under_torchrun_reports_once(tmp_path):
    """The search leaves its process group when it ends; the CLI must still know which rank reports."""
    from test_search import TINY

    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(yaml.safe_dump(TINY))
    proc = _torchrun(["-m", "wsr_bench.cli", "search", str(cfg), "--out", str(tmp_path / "run"), "--no-progress",
                      "--device", "cpu"], cwd=tmp_path)
    assert proc.stdout.count("wsr search (") == 1, proc.stdout
    assert (tmp_path / "run" / "genotype.json").is_file()


def test_shard_loader_orders_by_seed_and_epoch():
    ds = TensorDataset(torch.arange(20).float(), torch.arange(20))
    loader = shard_loader(ds, batch_size_global=5, seed=7)
    first = torch.cat([y for _, y in loader])
    assert sorted(first.tolist()) == list(range(20)) and torch.equal(first, torch.cat([y for _, y in loader]))
    set_epoch(loader, 1)
    assert not torch.equal(first, torch.cat([y for _, y in loader]))
    assert torch.equal(torch.cat([y for _, y in shard_loader(ds, 4, shuffle=False)]), torch.arange(20))
    with pytest.raises(ValueError, match="positive multiple of the world size"):
        shard_loader(ds, batch_size_global=0)
    with pytest.raises(ValueError, match="empty dataset"):
        shard_loader(TensorDataset(torch.zeros(0)), batch_size_global=2)


GLOO_THREADS_AFTER_CLEANUP = '''
import os, torch
from wsr_bench.infra.distributed import all_gather_object, cleanup, get_rank, setup_distributed

setup_distributed("cpu")
net = torch.nn.Linear(3, 2)
opt = torch.optim.SGD(net.parameters(), lr=0.1)
net(torch.rand(4, 3)).sum().backward()
opt.step()  # the optimizers import torch._dynamo lazily, here inside the group
all_gather_object({"rank": get_rank(), "x": torch.arange(3)})
cleanup()
names = [open(f"/proc/self/task/{t}/comm").read().strip() for t in os.listdir("/proc/self/task")]
print(f"rank {os.environ['RANK']} gloo threads after cleanup: {names.count('pt_gloo_runloop')}", flush=True)
'''


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="reads thread names from Linux's /proc")
def test_cleanup_ends_the_gloo_worker_threads(tmp_path):
    """After ``cleanup`` no gloo worker thread may be left: one alive at interpreter shutdown can abort the process
    (``terminate called without an active exception``) while it frees a finished collective's Python tensors."""
    script = tmp_path / "threads.py"
    script.write_text(GLOO_THREADS_AFTER_CLEANUP)
    proc = _torchrun([str(script)], cwd=tmp_path, timeout=120)
    for rank in (0, 1):
        assert f"rank {rank} gloo threads after cleanup: 0" in proc.stdout, proc.stdout + proc.stderr[-2000:]
