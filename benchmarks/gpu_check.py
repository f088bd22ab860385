"""The prepared GPU check: one script, about 8 minutes on one GPU, one results file.

1. ``tests``: the tests that take a device (``tests/test_memory_format.py``) run with ``WSR_BENCH_TEST_DEVICE=cuda``.
2. ``search``: one Wsr-NAS iteration at the official size (``configs/search_basic.yaml``: C=16, 8 cells, batch 64,
   PGD-7, M_a 11 x 64, VLE 500 passes, EWSS) on CIFAR-shaped data (random 32x32x3 images; the cost does not depend
   on their content), float32 and bf16 (``search.amp``), channels_last. Seconds per phase for ``train_images``
   D_t images and ``val_images`` D_v images, and the projected GPU-days of the paper's search (N = 100 warm-up and
   population architectures, T = 200 steps, D_t = D_v = 25,000 images; the paper reports 3.6 GPU-days).
3. ``training``: adversarial-training images/s of a paper-size WsrNet-Basic (C=45, 20 cells, CIFAR 32x32, PGD-7 at
   8/255, batch 128): contiguous float32, channels_last float32, channels_last bf16.
4. ``autoattack``: standard AutoAttack images/s on the same network at 8/255, labels set to its own predictions so
   that every image is attacked (an untrained network has no robust images to spend the chain on, so the images/s
   is that of the attacks each image reaches; passes/s, counted per sample, is the portable figure).

    python benchmarks/gpu_check.py --out gpu_check.json        # on the GPU machine (make gpu-check)
    python benchmarks/gpu_check.py --smoke                     # CPU, seconds: what the tests run
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import TensorDataset

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import load_average, machine_record, smoke_out  # noqa: E402

from wsr_bench.config import load_config  # noqa: E402
from wsr_bench.evaluate.counting import CountingModel  # noqa: E402
from wsr_bench.infra.atomic import atomic_write_json  # noqa: E402
from wsr_bench.infra.runtime import resolve_device, set_memory_format  # noqa: E402
from wsr_bench.models.catalog import create  # noqa: E402
from wsr_bench.search.engine import PHASES  # noqa: E402
from wsr_bench.search.wsr_nas import WsrSearch  # noqa: E402
from wsr_bench.train import LoopOptions, TrainRecipe, train_epoch  # noqa: E402

logger = logging.getLogger("gpu_check")
ROOT = Path(__file__).resolve().parents[1]
PAPER_GPU_DAYS = 3.6
FULL = {"population": 100, "search_steps": 200, "train_images": 25_000, "val_images": 25_000}


@dataclass(frozen=True)
class Config:
    run_tests: bool = True
    search_overrides: tuple[str, ...] = ()
    train_images: int = 3_200       # D_t images trained in the timed iteration (50 batches of 64)
    val_images: int = 1_024         # D_v images attacked and evaluated
    net: dict = dataclasses.field(default_factory=lambda: {"init_channels": 45, "layers": 20})  # wsrnet_basic
    train_batch: int = 128
    train_batches: int = 10
    aa_images: int = 256
    aa_attack: str = "autoattack"   # the smoke run takes 2 steps of APGD-CE instead (the same code path)
    aa_steps: int = 100
    image_size: int = 32


SMOKE = Config(run_tests=False, search_overrides=(
    "search.init_channels=4", "search.layers=3", "search.population=1", "search.ane.fill_batches=1",
    "search.ane.batch=4", "search.vle.passes=2", "search.vle.warmup_passes=2", "search.train_steps=1",
    "search.attack_steps=1", "data.batch_size=8", "data.eval_batch_size=16"),
    train_images=16, val_images=16, net={"init_channels": 4, "layers": 3}, train_batch=8, train_batches=1,
    aa_images=4, aa_attack="apgd-ce", aa_steps=2, image_size=16)


def cifar_shaped(n: int, size: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, size, size, generator=g), torch.randint(0, 10, (n,), generator=g)


def run_tests(device: str) -> dict[str, Any]:
    """``pytest tests/test_memory_format.py`` with the device tests on ``device``."""
    t0 = time.perf_counter()
    env = {**os.environ, "WSR_BENCH_TEST_DEVICE": device}
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:warnings", "tests/test_memory_format.py"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    tail = (proc.stdout + proc.stderr).strip().splitlines()[-15:]
    return {"device": device, "returncode": proc.returncode, "seconds": round(time.perf_counter() - t0, 1),
            "tail": tail}


def search_iteration(cfg: Config, device: str, amp: str, workdir: Path) -> dict[str, Any]:
    """One warm-up-free search iteration (after one untimed one) at the official size; phases and projection."""
    c = load_config(ROOT / "configs" / "search_basic.yaml",
                    ["data.name=synthetic", f"data.image_size={cfg.image_size}", f"search.amp={amp}",
                     "search.progress=false", *cfg.search_overrides])
    engine = WsrSearch(c, tempfile.mkdtemp(dir=workdir), device)
    engine.train_set = TensorDataset(*cifar_shaped(cfg.train_images, cfg.image_size, 1))
    engine.x_v, engine.y_v = (t.to(device) for t in cifar_shaped(cfg.val_images, cfg.image_size, 2))
    engine.iteration(engine.population[0], search=False)  # untimed: caches, cuDNN autotuning, M_v and M_a filled
    engine.vle_ready = True
    t0 = engine.now()
    record = engine.iteration(engine.sample_arch(), search=True)
    total = engine.now() - t0
    sec = {p: round(float(record["seconds"].get(p, 0.0)), 3) for p in PHASES}
    per_train = sec["adv_train"] / cfg.train_images
    per_val = (sec["noise_gen"] + record["ane_inference_seconds"] + sec["eval"]) / cfg.val_images
    fixed = sec["ane"] - record["ane_inference_seconds"]  # M_a fill (11 x 64 images) and estimator training
    population = FULL["train_images"] * per_train + FULL["val_images"] * per_val + fixed
    search = population + sec["vle_train"] + sec["arch_update"]
    projected = (FULL["population"] * FULL["train_images"] * per_train + FULL["population"] * population
                 + FULL["search_steps"] * search)
    return {"amp": amp, "memory_format": c.memory_format, "train_images": cfg.train_images,
            "val_images": cfg.val_images, "iteration_seconds": round(total, 3), "phase_seconds": sec,
            "ane_inference_seconds": round(record["ane_inference_seconds"], 3),
            "train_images_per_s": round(cfg.train_images / max(sec["adv_train"], 1e-9), 1),
            "projected_full_iteration_seconds": round(search, 1), "projected_gpu_days": round(projected / 86400, 3),
            "paper_gpu_days": PAPER_GPU_DAYS, "projection": "100 warm-up epochs + 100 population iterations + 200 "
            "search iterations, D_t = D_v = 25,000 images, from the per-image phase times above"}


def training_throughput(cfg: Config, device: str) -> list[dict[str, Any]]:
    """Adversarial-training images/s of WsrNet-Basic in three set-ups (each after one untimed batch)."""
    x, y = cifar_shaped(cfg.train_batch * cfg.train_batches, cfg.image_size, 3)
    data = [(x[i:i + cfg.train_batch], y[i:i + cfg.train_batch]) for i in range(0, len(y), cfg.train_batch)]
    recipe = TrainRecipe("pgd", eps=8 / 255, steps=7)
    rows = []
    for fmt, amp in (("contiguous", "none"), ("channels_last", "none"), ("channels_last", "bf16")):
        torch.manual_seed(0)
        model = set_memory_format(create("wsrnet_basic", num_classes=10, **cfg.net).to(device), fmt)
        opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
        options = LoopOptions(grad_clip=5.0, amp=amp)
        train_epoch(model, data[:1], opt, recipe, options, device=device)
        _sync(device)
        t0 = time.perf_counter()
        train_epoch(model, data, opt, recipe, options, device=device)
        _sync(device)
        seconds = time.perf_counter() - t0
        rows.append({"memory_format": fmt, "amp": amp, "images": len(y), "seconds": round(seconds, 3),
                     "images_per_s": round(len(y) / seconds, 1)})
    for r in rows:
        r["speedup"] = round(r["images_per_s"] / rows[0]["images_per_s"], 3)
    return rows


def autoattack_throughput(cfg: Config, device: str) -> dict[str, Any]:
    from wsr_bench.attacks.factory import build_attack

    torch.manual_seed(0)
    model = set_memory_format(create("wsrnet_basic", num_classes=10, **cfg.net).to(device), "channels_last").eval()
    x, _ = cifar_shaped(cfg.aa_images, cfg.image_size, 4)
    x = x.to(device)
    with torch.no_grad():
        y = model(x).argmax(1)
    counting = CountingModel(model)
    attack = build_attack(cfg.aa_attack, counting, 8 / 255, steps=cfg.aa_steps)
    _sync(device)
    t0 = time.perf_counter()
    adv = attack(x, y)
    _sync(device)
    seconds = time.perf_counter() - t0
    with torch.no_grad():
        robust = float((model(adv).argmax(1) == y).float().mean())
    return {"model": f"wsrnet_basic {cfg.net}", "attack": cfg.aa_attack, "eps": 8 / 255, "images": cfg.aa_images,
            "seconds": round(seconds, 2), "images_per_s": round(cfg.aa_images / seconds, 2),
            "passes": counting.count.to_dict(), "passes_per_s": round(counting.count.to_dict()["total"] / seconds, 1),
            "robust_fraction": robust}


def _sync(device: str) -> None:
    if str(device).startswith("cuda"):
        torch.cuda.synchronize()


def run(cfg: Config, device: str) -> dict[str, Any]:
    load_start = load_average()
    t0 = time.perf_counter()
    work = tempfile.TemporaryDirectory(prefix="gpu-check-")
    out: dict[str, Any] = {"benchmark": "gpu_check", "device": device,
                           "device_name": torch.cuda.get_device_name() if device.startswith("cuda") else "cpu",
                           "config": dataclasses.asdict(cfg)}
    if cfg.run_tests:
        logger.info("device tests on %s", device)
        out["tests"] = run_tests(device)
    logger.info("search iteration at the official size")
    with work:
        out["search"] = [search_iteration(cfg, device, amp, Path(work.name)) for amp in ("none", "bf16")]
    logger.info("training throughput")
    out["training"] = training_throughput(cfg, device)
    logger.info("AutoAttack throughput")
    out["autoattack"] = autoattack_throughput(cfg, device)
    out["wall_seconds"] = round(time.perf_counter() - t0, 1)
    out["machine"] = machine_record(load_start, device=device)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", help="results JSON (default: gpu_check.json, or a temporary folder with --smoke)")
    p.add_argument("--smoke", action="store_true", help="tiny sizes on the CPU, seconds (the tests run it)")
    p.add_argument("--device", help="default: cuda when available (the smoke run: cpu)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    device = args.device or ("cpu" if args.smoke else resolve_device("auto"))
    if not args.smoke and not device.startswith("cuda"):
        print("error: the GPU check needs a CUDA device (torch sees none); --smoke runs it on the CPU",
              file=sys.stderr)
        return 2
    out = Path(args.out or (smoke_out("gpu_check") if args.smoke else "gpu_check.json"))
    res = run(SMOKE if args.smoke else Config(), device)
    atomic_write_json(out, res)
    print(json.dumps({k: res[k] for k in ("search", "training", "autoattack")}, indent=1)[:4000])
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
