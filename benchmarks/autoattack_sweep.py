"""AutoAttack over a 12-point spectrum: per-eps AutoAttack vs the upward, downward and bisect sweeps, same run.

On the embedded digits data (16x16) the script trains, for each seed, two tiny CNNs (8/16/16 channels,
normalisation inside): a standard one and a PGD-5 adversarially trained one (eps 0.1). On the first ``--n-test``
test images it then measures, at the 12 strengths 0.01 ... 0.25 (the paper's 0.03/0.10/0.17/0.25 among them):

* ``per-eps``   the baseline: pyautoattack's ``AutoAttack(version="standard")`` run separately at every eps on all
                images (``run_standard_evaluation``), which is what a user would otherwise do, with the image-keyed
                random starts of :mod:`wsr_bench.attacks.starts` that ``evaluate_spectrum`` uses too (so a verdict
                cannot change with the batch an image is attacked in); ``--upstream-baseline`` runs it once more
                with pyautoattack's own batch-position starts, to show that keying changes nothing but the draws;
* ``upward``, ``downward``, ``bisect``: ``evaluate_spectrum(attack="autoattack", sweep=...)``
                (:mod:`wsr_bench.evaluate.sweeps` says what each one assumes).

For each: wall time, process CPU time (the machine is shared; CPU time is the steadier figure), forward+backward
passes (counted per sample by wrapping the model), and the per-sample agreement with the baseline: for every image
and eps, is it counted correct by both? A difference where the sweep says *correct* and per-eps AutoAttack says
*fooled* is the one that matters (a higher accuracy than the baseline); the other way round is either the nested-
ball inference (an example at a smaller eps also fools the model at this one, which per-eps AutoAttack cannot know)
or, in runs before image-keyed starts, another random start. Every differing (image, eps) is listed.

``--square-queries`` / ``--targets`` reduce AutoAttack's Square budget and the target classes of APGD-T and FAB-T,
through pyautoattack's own attributes, for the baseline and every sweep alike (the committed run does, to fit the
machine; a second run keeps the standard settings on fewer images). ``--sweeps`` and ``--sweeps-seed1`` choose the
sweeps run for the first seed and for the others.

    python benchmarks/autoattack_sweep.py --quick --out /tmp/aa_sweep.json                 # 3 min: 1 model, 3 eps
    python benchmarks/autoattack_sweep.py --smoke           # seconds: toy sizes, written to a temporary folder
    python benchmarks/autoattack_sweep.py --dataset fashion_mnist --train-limit 10000 --n-test 1000 \\
        --square-queries 1000 --targets 3 --sweeps downward,bisect --sweeps-seed1 downward --upstream-baseline \\
        --out benchmarks/results/autoattack_sweep_fashion.json                             # committed, 50 min
    python benchmarks/autoattack_sweep.py --dataset fashion_mnist --train-limit 10000 --n-test 200 \\
        --models adversarial --seeds 0 --sweeps downward \\
        --out benchmarks/results/autoattack_sweep_fashion_standard.json                    # standard AA, 8 min
    for s in 0 1; do python benchmarks/autoattack_sweep.py --dataset fashion_mnist --train-limit 10000 \\
        --n-test 1000 --seeds $s --sweeps downward --out /tmp/aa_seed$s.json & done; wait  # standard AA, 26 min
    python benchmarks/autoattack_sweep.py --merge /tmp/aa_seed0.json /tmp/aa_seed1.json \\
        --out benchmarks/results/autoattack_sweep_fashion_standard_1000.json              # one page of both seeds

``--menu plus,l1,rand`` measures the rest of AutoAttack's menu the same way (issue 35), one variant per line of
:data:`MENU`: ``plus`` (Linf), standard AutoAttack under ``L1`` and ``rand`` (EOT over 20 passes) on a randomised
model (:class:`RandomSineGradient` in front of the adversarially trained CNN). Each variant's downward sweep is
compared, image by image, with pyautoattack's AutoAttack of that version and norm run separately at every eps on the
same model and images; for ``rand`` the model's randomness differs between the two, so the differing verdicts are
tested with the exact McNemar test, beside a rerun of per-eps ``rand`` with another attack seed (the same test between
two runs of the same evaluation). ``--menu-only`` runs only the menu and adds it to an existing ``--out`` as
``menu`` (the other sections and their machine record are kept as they were measured):

    python benchmarks/autoattack_sweep.py --menu plus,l1,rand --menu-only --menu-n-test 48 \
        --square-queries 1000 --targets 3 --out benchmarks/results/autoattack_sweep.json   # committed menu

Writes FILE.json (``config``, ``machine``, ``runs.<model>_seed<s>.{clean_accuracy, baseline, sweeps.<name>}``,
``summary``, ``conclusion``; a merged file also ``parts``; with ``--menu`` also ``menu``) and FILE.md beside it.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import ConcatDataset

from wsr_bench.attacks.factory import build_pgd
from wsr_bench.data.datasets import as_tensors, load_dataset
from wsr_bench.epsilon import eps_label
from wsr_bench.evaluate import CountingModel, evaluate_spectrum
from wsr_bench.infra.atomic import atomic_write_report
from wsr_bench.rules import SWEEPS
from wsr_bench.search_space.ops import Normalize

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import load_average, machine_record, publish  # noqa: E402

logger = logging.getLogger("autoattack_sweep")

#: 0.01 to 0.25 with the paper's four strengths among them (as ``spectrum_cost.py --eps dense12``).
DENSE_EPS = (0.01, 0.02, 0.03, 0.05, 0.07, 0.10, 0.12, 0.14, 0.17, 0.20, 0.22, 0.25)
MODELS = {"standard": False, "adversarial": True}  # name -> adversarially trained


@dataclass
class Config:
    """Benchmark settings (``--quick``: one model, 3 eps, 24 images)."""

    n_test: int = 100
    dataset: str = "digits"                    # or fashion_mnist (16x16; 10,000 test images, so n_test can be large)
    train_limit: int | None = None             # training images (None: all of D_t + D_v)
    eps: tuple[float, ...] = DENSE_EPS
    seeds: tuple[int, ...] = (0, 1)
    models: tuple[str, ...] = tuple(MODELS)
    sweeps: tuple[str, ...] = SWEEPS           # for the first seed
    sweeps_other_seeds: tuple[str, ...] = ("downward",)
    repeat_baseline: bool = False              # per-eps AutoAttack again with another attack seed: its noise floor
    upstream_baseline: bool = False            # per-eps AutoAttack again with pyautoattack's own (batch) starts
    keyed_starts: bool = True                  # baseline with image-keyed starts (False in runs before they existed)
    epochs: int = 6
    adv_eps: float = 0.1
    adv_steps: int = 5
    batch_size: int = 128
    square_queries: int = 5000                 # standard AutoAttack: 5000
    targets: int = 9                           # standard AutoAttack: 9 target classes for APGD-T and FAB-T
    threads: int = 1
    smoke: bool = False
    menu: tuple[str, ...] = ()                 # variants of MENU to measure (plus, l1, rand)
    menu_n_test: int = 48                      # test images of the menu's comparisons

    def smoke_config(self) -> Config:
        """Seconds: both models one epoch on 64 training images, seed 0, every sweep and the upstream-starts rerun on
        8 test images at 3 eps, Square 20 queries, 1 target class, APGD 10 iterations, and the menu on 4 images at 2
        eps (its numbers mean nothing; it checks that the script runs)."""
        return dataclasses.replace(self, n_test=8, train_limit=64, epochs=1, eps=(0.03, 0.10, 0.17), seeds=(0,),
                                   models=tuple(MODELS), sweeps=SWEEPS, upstream_baseline=True, square_queries=20,
                                   targets=1, smoke=True, menu=tuple(MENU), menu_n_test=4)


def tiny_cnn(mean, std, num_classes: int = 10, in_chans: int = 3) -> nn.Module:
    """Three conv layers (8/16/16 channels) for 16x16 inputs, normalisation inside (inputs in [0,1])."""
    return nn.Sequential(Normalize(mean, std), nn.Conv2d(in_chans, 8, 3, padding=1), nn.ReLU(),
                         nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.ReLU(),
                         nn.Conv2d(16, 16, 3, stride=2, padding=1), nn.ReLU(),
                         nn.Flatten(), nn.Linear(16 * 4 * 4, num_classes))


def train(x, y, mean, std, cfg: Config, adversarial: bool, seed: int) -> nn.Module:
    """Adam, batches of 64, ``cfg.epochs`` epochs; adversarially: PGD-k examples (uniform start, step eps*2.5/k) with
    eps ramped up linearly over the first half of the epochs (at once, this tiny CNN collapses to chance)."""
    torch.manual_seed(seed)
    model = tiny_cnn(mean, std, in_chans=x.shape[1])
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    gen = torch.Generator().manual_seed(seed)
    for epoch in range(cfg.epochs):
        eps = cfg.adv_eps * min(1.0, (epoch + 1) / max(1, cfg.epochs // 2))
        for idx in torch.randperm(len(x), generator=gen).split(64):
            xb, yb = x[idx], y[idx]
            if adversarial:  # eval mode, uniform start drawn from gen
                xb = build_pgd(model, eps, cfg.adv_steps, seed=gen)(xb, yb)
            model.train()
            opt.zero_grad()
            F.cross_entropy(model(xb), yb).backward()
            opt.step()
    return model.eval()


class RandomSineGradient(nn.Module):
    """A randomised input layer (the ``rand`` variant's defence): ``x + a * s * sin(k x) / k``, a fresh random sign
    ``s`` per pixel and forward pass (a = 4, k = 1000).

    The output moves by at most a / k = 0.004, so predictions barely change, but the Jacobian ``1 + a s cos(k x)``
    flips the sign of most pixels' gradient at random in a single pass: single-sample attacks are misled, while the
    average over AutoAttack rand's 20 passes (EOT) shrinks the random part about 4.5-fold.
    """

    def __init__(self, amplitude: float = 4.0, frequency: float = 1000.0) -> None:
        super().__init__()
        self.amplitude, self.frequency = amplitude, frequency

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        sign = torch.randint(0, 2, x.shape, device=x.device).to(x.dtype) * 2 - 1
        return x + self.amplitude * sign * torch.sin(self.frequency * x) / self.frequency


@dataclass(frozen=True)
class MenuVariant:
    """One part of AutoAttack's menu beyond standard Linf: its version, norm, strengths and model."""

    version: str
    norm: str
    eps: tuple[float, ...]
    randomised: bool = False   # RandomSineGradient in front of the model (rand's use case)


#: The menu measured by ``--menu``: L1 strengths are sums over the 256 pixel values of a 16x16 digit.
MENU = {
    "plus": MenuVariant("plus", "Linf", (0.02, 0.05, 0.10, 0.17, 0.25)),
    "l1": MenuVariant("standard", "L1", (1.0, 2.0, 4.0, 8.0, 12.0)),
    "rand": MenuVariant("rand", "Linf", (0.02, 0.05, 0.10, 0.17, 0.25), randomised=True),
}


def set_autoattack_budget(square_queries: int, targets: int, apgd_iters: int | None = None) -> None:
    """Make every ``AutoAttack`` of this process use these budgets (baseline and sweeps alike), through
    pyautoattack's own attributes, set right after its ``_set_version``; ``apgd_iters`` (smoke runs only) also cuts
    APGD's 100 iterations, which rand's EOT multiplies by 20."""
    from pyautoattack import AutoAttack

    original = getattr(AutoAttack, "_wsr_original_set_version", AutoAttack._set_version)

    def set_version(self, version="standard"):
        original(self, version)
        self.square.n_queries = square_queries
        self.apgd_targeted.n_target_classes = targets
        self.fab.n_target_classes = targets
        if apgd_iters is not None:
            for apgd in (self.apgd, self.apgd_targeted):
                apgd.n_iter = apgd.n_iter_orig = apgd_iters

    AutoAttack._wsr_original_set_version = original
    AutoAttack._set_version = set_version


#: Calls of ``AutoAttack.run_standard_evaluation`` (whole chains) and the process CPU time spent inside them.
CHAIN_CALLS = {"calls": 0, "cpu_s": 0.0}


def count_chain_calls() -> None:
    """Count every AutoAttack chain run of this process (baseline and sweeps) in :data:`CHAIN_CALLS`."""
    from pyautoattack import AutoAttack

    original = AutoAttack.run_standard_evaluation

    def counted(self, *args, **kwargs):
        start = time.process_time()
        try:
            return original(self, *args, **kwargs)
        finally:
            CHAIN_CALLS["calls"] += 1
            CHAIN_CALLS["cpu_s"] += time.process_time() - start

    AutoAttack.run_standard_evaluation = counted


def per_eps_autoattack(model, x, y, cfg: Config, seed: int, keyed: bool = True, variant: MenuVariant | None = None
                       ) -> dict[str, Any]:
    """The baseline: AutoAttack separately at every eps on all images; per-sample correctness per eps.
    ``keyed``: with image-keyed random starts (as the sweeps), else pyautoattack's own batch-position starts;
    ``variant``: its version, norm and strengths (default: standard, Linf, ``cfg.eps``)."""
    from pyautoattack import AutoAttack

    from wsr_bench.attacks.starts import key_autoattack_starts

    version, norm, eps = (variant.version, variant.norm, variant.eps) if variant else ("standard", "Linf", cfg.eps)
    counting = CountingModel(model)
    correct, rows = [], []
    calls = CHAIN_CALLS["calls"]
    for e in eps:
        before, wall, cpu = counting.count.copy(), time.perf_counter(), time.process_time()
        adversary = AutoAttack(counting, device="cpu", eps=e, norm=norm, seed=seed, version=version)
        if keyed:
            key_autoattack_starts(adversary)
        adversary.logger.setLevel(logging.WARNING)
        x_adv, _ = adversary.run_standard_evaluation(x, y, batch_size=cfg.batch_size)
        with torch.no_grad():
            ok = model(x_adv).argmax(1) == y
        correct.append(ok)
        rows.append({"eps": e, "wall_s": round(time.perf_counter() - wall, 2),
                     "cpu_s": round(time.process_time() - cpu, 2), "passes": (counting.count - before).total,
                     "accuracy": int(ok.sum()) / len(y), "robust": int(ok.sum())})
        logger.info("per-eps AutoAttack eps=%s: acc %.3f, %.1fs", eps_label(e), rows[-1]["accuracy"],
                    rows[-1]["wall_s"])
    raw = torch.stack(correct, 1)  # (n, K)
    nested = raw.cumprod(1).bool()  # fooled at a smaller eps -> fooled here too (nested balls)
    return {"wall_s": round(sum(r["wall_s"] for r in rows), 2), "cpu_s": round(sum(r["cpu_s"] for r in rows), 2),
            "passes": sum(r["passes"] for r in rows), "chain_calls": CHAIN_CALLS["calls"] - calls, "per_eps": rows,
            "cost_fit": cost_fit(rows),
            "accuracy": [c / len(y) for c in raw.sum(0).tolist()],
            "accuracy_nested": [c / len(y) for c in nested.sum(0).tolist()], "_raw": raw, "_nested": nested}


def run_sweep(model, x, y, cfg: Config, seed: int, sweep: str, baseline: dict[str, Any]) -> dict[str, Any]:
    """One sweep, timed, and compared image by image with the per-eps baseline."""
    wall, cpu, calls, chain_cpu = time.perf_counter(), time.process_time(), CHAIN_CALLS["calls"], CHAIN_CALLS["cpu_s"]
    res = evaluate_spectrum(model, x, y, eps=list(cfg.eps), attack="autoattack", sweep=sweep, device="cpu",
                            batch_size=cfg.batch_size, seed=seed)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    eps = torch.tensor(cfg.eps, dtype=res.break_eps.dtype)
    correct = res.break_eps[:, None] > eps[None, :]
    out = {"wall_s": round(wall, 2), "cpu_s": round(cpu, 2), "passes": res.passes.total,
           "passes_per_attack": {k: v.total for k, v in res.passes_per_attack.items()},
           "accuracy": [res.robust_accuracy[e] for e in cfg.eps],
           "time_ratio": round(wall / baseline["wall_s"], 3), "cpu_ratio": round(cpu / baseline["cpu_s"], 3),
           "pass_ratio": round(res.passes.total / baseline["passes"], 3),
           "chain_calls": CHAIN_CALLS["calls"] - calls, "chain_cpu_s": round(CHAIN_CALLS["cpu_s"] - chain_cpu, 2),
           "inferred": {c: "".join(res.evidence).count(c) for c in "abr"}}
    out["vs_per_eps"] = agreement(correct, baseline["_raw"], res, cfg.eps)
    out["vs_per_eps_nested"] = agreement(correct, baseline["_nested"], res, cfg.eps, list_samples=False)
    logger.info("%s: %.1fs wall (%.2fx), %d passes (%.2fx), differs from per-eps on %d (higher %d)", sweep, wall,
                out["time_ratio"], res.passes.total, out["pass_ratio"], out["vs_per_eps"]["differ"],
                out["vs_per_eps"]["higher"])
    return out


#: attack seed offset of the repeated baseline (``--repeat-baseline``)
REPEAT_SEED_OFFSET = 1000


def repeat_baseline(model, x, y, cfg: Config, seed: int, baseline: dict[str, Any], upstream: bool = False
                    ) -> dict[str, Any]:
    """Per-eps AutoAttack once more, with attack seed ``seed + 1000`` (how many (image, eps) verdicts AutoAttack's
    own randomness changes, the noise floor against which a sweep's differences are read) or, ``upstream``, with the
    same seed and pyautoattack's own batch-position random starts instead of image-keyed ones."""
    again = per_eps_autoattack(model, x, y, cfg, seed if upstream else seed + REPEAT_SEED_OFFSET, keyed=not upstream)
    raw, base = again.pop("_raw"), baseline["_raw"]
    again.pop("_nested")
    higher, lower = raw & ~base, ~raw & base
    again["vs_per_eps"] = {"pairs": int(raw.numel()), "differ": int((higher | lower).sum()),
                           "higher": int(higher.sum()), "lower": int(lower.sum()),
                           "identical_curve": bool((raw.sum(0) == base.sum(0)).all()),
                           "never_higher_accuracy": bool((raw.sum(0) <= base.sum(0)).all()),
                           "samples": [{"index": i, "eps": cfg.eps[k], "repeat_says": "correct" if bool(raw[i, k])
                                        else "fooled"} for i, k in (higher | lower).nonzero().tolist()]}
    logger.info("per-eps AutoAttack, %s: differs from the baseline on %d (higher %d)",
                "upstream starts" if upstream else f"attack seed {seed + REPEAT_SEED_OFFSET}",
                again["vs_per_eps"]["differ"], again["vs_per_eps"]["higher"])
    return again


def cost_fit(rows: list[dict[str, Any]]) -> dict[str, float] | None:
    """Least-squares ``cpu = fixed + per_robust * robust`` over the per-eps AutoAttack calls that left survivors:
    the fixed cost of one chain call (its iterations, whatever the batch) and the cost of one image it cannot break."""
    pts = [(r["robust"], r["cpu_s"]) for r in rows if r["robust"] > 0]
    if len(pts) < 3:
        return None
    n = len(pts)
    mx, my = sum(p[0] for p in pts) / n, sum(p[1] for p in pts) / n
    var = sum((p[0] - mx) ** 2 for p in pts)
    slope = sum((p[0] - mx) * (p[1] - my) for p in pts) / var if var else 0.0
    return {"fixed_s": round(my - slope * mx, 3), "per_robust_s": round(slope, 4)}


def projected_ratio(sweep: dict[str, Any], baseline: dict[str, Any], scale: float) -> float | None:
    """CPU ratio with ``scale`` times the images, if every chain call keeps its fixed cost and everything else grows
    with the images: a projection from :func:`cost_fit`, not a measurement. Fixed: per-eps calls that left no
    survivor (whole) and ``fixed_s`` of the others; for the sweep ``fixed_s`` per chain call (its screen is counted
    as growing, which is conservative)."""
    fit = baseline.get("cost_fit")
    if not fit or fit["fixed_s"] <= 0:
        return None
    fixed_b = sum(fit["fixed_s"] if r["robust"] else r["cpu_s"] for r in baseline["per_eps"])
    fixed_s = sweep["chain_calls"] * fit["fixed_s"]
    grown_s = fixed_s + max(0.0, sweep["cpu_s"] - fixed_s) * scale
    grown_b = fixed_b + max(0.0, baseline["cpu_s"] - fixed_b) * scale
    return round(grown_s / grown_b, 3)


def add_projections(runs: dict[str, Any]) -> None:
    """Each sweep's projected CPU ratio at 10x the images (see :func:`projected_ratio`)."""
    for r in runs.values():
        for v in r["sweeps"].values():
            v["cpu_ratio_projected_10x_images"] = projected_ratio(v, r["baseline"], 10.0)


def agreement(correct: torch.Tensor, base: torch.Tensor, res, eps, list_samples: bool = True) -> dict[str, Any]:
    """Per (image, eps): same verdict? ``higher``: the sweep says correct where the baseline was fooled."""
    higher, lower = correct & ~base, ~correct & base
    out = {"pairs": int(correct.numel()), "differ": int((higher | lower).sum()), "higher": int(higher.sum()),
           "lower": int(lower.sum()), "identical_curve": bool((correct.sum(0) == base.sum(0)).all()),
           "never_higher_accuracy": bool((correct.sum(0) <= base.sum(0)).all())}
    if list_samples:
        out["samples"] = [{"index": i, "eps": eps[k], "sweep_says": "correct" if bool(correct[i, k]) else "fooled",
                           "evidence": res.evidence[i][k], "break_attack": res.break_attack[i]}
                          for i, k in (higher | lower).nonzero().tolist()]
    return out


def bench(cfg: Config) -> dict[str, Any]:
    splits = load_dataset(cfg.dataset, image_size=16, seed=0)
    x_tr, y_tr = as_tensors(ConcatDataset([splits.train_t, splits.train_v]), cfg.train_limit)
    x, y = as_tensors(splits.test, cfg.n_test)
    runs: dict[str, Any] = {}
    for seed in cfg.seeds:
        for name in cfg.models:
            t = time.perf_counter()
            model = train(x_tr, y_tr, splits.mean, splits.std, cfg, MODELS[name], seed)
            with torch.no_grad():
                clean = float((model(x).argmax(1) == y).float().mean())
            logger.info("%s seed %d: trained in %.1fs, clean %.3f", name, seed, time.perf_counter() - t, clean)
            baseline = per_eps_autoattack(model, x, y, cfg, seed)
            sweeps = cfg.sweeps if seed == cfg.seeds[0] else cfg.sweeps_other_seeds
            result = {"clean_accuracy": clean, "baseline": baseline,
                      "sweeps": {s: run_sweep(model, x, y, cfg, seed, s, baseline) for s in sweeps}}
            if cfg.repeat_baseline:
                result["baseline_repeat"] = repeat_baseline(model, x, y, cfg, seed, baseline)
            if cfg.upstream_baseline and seed == cfg.seeds[0]:
                result["baseline_upstream"] = repeat_baseline(model, x, y, cfg, seed, baseline, upstream=True)
            for key in ("_raw", "_nested"):
                baseline.pop(key)
            runs[f"{name}_seed{seed}"] = result
    return runs


def bench_menu(cfg: Config) -> dict[str, Any]:
    """The ``--menu`` variants on the first ``cfg.menu_n_test`` test images, against the adversarially trained CNN
    of seed 0 (behind :class:`RandomSineGradient` for ``rand``): per-eps AutoAttack of the variant's version and
    norm vs its downward sweep, image by image, and (``rand``) per-eps rand again with another attack seed."""
    splits = load_dataset(cfg.dataset, image_size=16, seed=0)
    x_tr, y_tr = as_tensors(ConcatDataset([splits.train_t, splits.train_v]), cfg.train_limit)
    x, y = as_tensors(splits.test, cfg.menu_n_test)
    model = train(x_tr, y_tr, splits.mean, splits.std, cfg, True, 0)
    out: dict[str, Any] = {}
    for name in cfg.menu:
        variant = MENU[name]
        if cfg.smoke:  # two strengths are enough to check that it runs
            variant = dataclasses.replace(variant, eps=variant.eps[2:4])
        target = nn.Sequential(RandomSineGradient(), model).eval() if variant.randomised else model
        torch.manual_seed(0)  # the randomised model's clean pass
        with torch.no_grad():
            clean = float((target(x).argmax(1) == y).float().mean())
        baseline = per_eps_autoattack(target, x, y, cfg, 0, variant=variant)
        out[name] = {**dataclasses.asdict(variant), "n_test": len(y), "clean_accuracy": clean,
                     "baseline": baseline, "sweep": menu_sweep(target, x, y, cfg, variant, baseline)}
        if variant.randomised:
            again = per_eps_autoattack(target, x, y, cfg, REPEAT_SEED_OFFSET, variant=variant)
            again["vs_per_eps"] = paired_test(again["_raw"], baseline["_raw"])
            out[name]["baseline_repeat"] = {k: v for k, v in again.items() if not k.startswith("_")}
        for key in ("_raw", "_nested"):
            baseline.pop(key)
        logger.info("menu %s: %d of %d verdicts differ, CPU %.2fx", name, out[name]["sweep"]["vs_per_eps"]["differ"],
                    out[name]["sweep"]["vs_per_eps"]["pairs"], out[name]["sweep"]["cpu_ratio"])
    return out


def menu_sweep(model, x, y, cfg: Config, variant: MenuVariant, baseline: dict[str, Any]) -> dict[str, Any]:
    """The variant's downward sweep (``evaluate_spectrum``), timed and compared with the per-eps baseline."""
    wall, cpu = time.perf_counter(), time.process_time()
    res = evaluate_spectrum(model, x, y, eps=list(variant.eps), attack="autoattack", aa_version=variant.version,
                            threat_model=variant.norm, sweep="downward", device="cpu", batch_size=cfg.batch_size,
                            seed=0)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    correct = res.break_eps[:, None] > torch.tensor(variant.eps, dtype=res.break_eps.dtype)[None, :]
    return {"wall_s": round(wall, 2), "cpu_s": round(cpu, 2), "passes": res.passes.total,
            "accuracy": [res.robust_accuracy[e] for e in variant.eps],
            "time_ratio": round(wall / baseline["wall_s"], 3), "cpu_ratio": round(cpu / baseline["cpu_s"], 3),
            "pass_ratio": round(res.passes.total / baseline["passes"], 3),
            "inferred": {c: "".join(res.evidence).count(c) for c in "abr"},
            "vs_per_eps": agreement(correct, baseline["_raw"], res, variant.eps) | paired_test(correct,
                                                                                             baseline["_raw"]),
            "vs_per_eps_nested": agreement(correct, baseline["_nested"], res, variant.eps, list_samples=False)}


def paired_test(correct: torch.Tensor, base: torch.Tensor) -> dict[str, Any]:
    """Exact McNemar test of two evaluations' (image, eps) verdicts on the same images: over all pairs (which are
    not independent across the eps of one image, so read it as a summary) and at each eps, where it is exact."""
    from wsr_bench.leaderboard.stats import mcnemar_exact

    higher, lower = correct & ~base, ~correct & base
    per_eps = [{"higher": int(h), "lower": int(lo), "p": round(mcnemar_exact(int(h), int(lo)), 4)}
               for h, lo in zip(higher.sum(0).tolist(), lower.sum(0).tolist(), strict=True)]
    return {"pairs": int(correct.numel()), "differ": int((higher | lower).sum()), "higher": int(higher.sum()),
            "lower": int(lower.sum()), "mcnemar_p": round(mcnemar_exact(int(higher.sum()), int(lower.sum())), 4),
            "mcnemar_p_min_per_eps": min((r["p"] for r in per_eps), default=1.0), "per_eps": per_eps}


def summarize(runs: dict[str, Any]) -> dict[str, Any]:
    """Per sweep over all runs: worst and mean ratios, whether every curve was identical / never higher."""
    out: dict[str, Any] = {}
    names = sorted({s for r in runs.values() for s in r["sweeps"]}, key=SWEEPS.index)
    for s in names:
        rs = [r["sweeps"][s] for r in runs.values() if s in r["sweeps"]]
        out[s] = {"runs": len(rs),
                  **{f"{k}_max": max(r[k] for r in rs) for k in ("time_ratio", "cpu_ratio", "pass_ratio")},
                  **{f"{k}_mean": round(sum(r[k] for r in rs) / len(rs), 3)
                     for k in ("time_ratio", "cpu_ratio", "pass_ratio")},
                  "cpu_ratio_projected_10x_images_max": max((r.get("cpu_ratio_projected_10x_images") or 0.0
                                                             for r in rs), default=None),
                  "identical_curves": all(r["vs_per_eps"]["identical_curve"] for r in rs),
                  "identical_runs": sum(r["vs_per_eps"]["identical_curve"] for r in rs),
                  "never_higher": all(r["vs_per_eps"]["never_higher_accuracy"] for r in rs),
                  "pairs_differ": sum(r["vs_per_eps"]["differ"] for r in rs),
                  "pairs_higher": sum(r["vs_per_eps"]["higher"] for r in rs),
                  "pairs": sum(r["vs_per_eps"]["pairs"] for r in rs)}
    return out


#: reruns of the baseline -> how they were rerun (in the conclusion and the tables)
REPEATS = {"baseline_repeat": f"with attack seed +{REPEAT_SEED_OFFSET} (its noise floor)",
           "baseline_upstream": "with pyautoattack's own batch-position random starts"}


def conclusion(report: dict[str, Any]) -> str:
    """Which sweep to make the default: the fastest (mean CPU ratio over the runs where every sweep ran) among those
    that never reported a higher accuracy than per-eps AutoAttack at any eps of any run."""
    summary, runs = report["summary"], report["runs"]
    common = [r for r in runs.values() if set(summary) <= set(r["sweeps"])]
    speed = {s: sum(r["sweeps"][s]["cpu_ratio"] for r in common) / max(1, len(common)) for s in summary}
    parts = [f"{s}: CPU time {v['cpu_ratio_mean']:.2f}x per-eps AutoAttack on average (worst {v['cpu_ratio_max']:.2f}x;"
             f" wall {v['time_ratio_mean']:.2f}x), passes {v['pass_ratio_mean']:.2f}x, curve identical in "
             f"{v['identical_runs']} of {v['runs']} runs, never higher: {'yes' if v['never_higher'] else 'NO'}, "
             f"{v['pairs_differ']} of {v['pairs']} (image, eps) verdicts differ ({v['pairs_higher']} of them "
             f"higher)" for s, v in summary.items()]
    for key, what in REPEATS.items():
        repeats = [r[key]["vs_per_eps"] for r in runs.values() if key in r]
        if repeats:
            parts.append(f"per-eps AutoAttack itself, rerun {what}: curve identical in "
                         f"{sum(a['identical_curve'] for a in repeats)} of {len(repeats)} runs, "
                         f"{sum(a['differ'] for a in repeats)} of {sum(a['pairs'] for a in repeats)} verdicts differ "
                         f"({sum(a['higher'] for a in repeats)} of them higher)")
    ok = [s for s, v in summary.items() if v["never_higher"]]
    if not ok:
        return "; ".join(parts) + ". Every sweep reported a higher accuracy than per-eps AutoAttack somewhere."
    fastest = min(ok, key=speed.get)
    best = summary[fastest]
    met = {k: "met" if best[f"{k}_ratio_max"] <= 0.35 else "NOT met" for k in ("pass", "cpu", "time")}
    return ("; ".join(parts) + f". The fastest sweep that never reported a higher accuracy than per-eps AutoAttack "
            f"(CPU time averaged over the {len(common)} runs where every sweep ran): {fastest}. Its 0.35x goal: "
            f"{met['pass']} in passes (worst run {best['pass_ratio_max']:.2f}x), {met['cpu']} in CPU time (worst "
            f"{best['cpu_ratio_max']:.2f}x), {met['time']} in wall time (worst {best['time_ratio_max']:.2f}x).")


RERUN_LABEL = {"baseline_repeat": f"attack seed +{REPEAT_SEED_OFFSET}", "baseline_upstream": "upstream starts"}


def markdown(report: dict[str, Any]) -> str:
    cfg, mach = report["config"], report["machine"]
    labels = [eps_label(e) for e in cfg["eps"]]
    standard = cfg["square_queries"] == 5000 and cfg["targets"] == 9
    budget = ("standard AutoAttack (APGD-CE, APGD-T and FAB-T with 9 target classes, Square with 5000 queries)"
              if standard else
              f"AutoAttack standard with a reduced budget, the SAME for the baseline and every sweep: Square "
              f"{cfg['square_queries']} queries (standard: 5000), APGD-T and FAB-T {cfg['targets']} target classes "
              f"(standard: 9); APGD-CE unchanged (100 iterations)")
    lines = ["# AutoAttack over a 12-point spectrum: per-eps vs upward / downward / bisect sweeps"
             + (" (smoke run)" if cfg.get("smoke") else ""), "",
             f"Machine: {mach['cpu_count']}-core CPU ({mach['platform']}), torch {mach['torch']}, {cfg['threads']} "
             f"thread; load average {mach['load_start']} at start, {mach['load_end']} at end (other jobs shared the "
             "machine: CPU time is the steadier cost figure, pass counts are exact). Total run "
             f"{report['total_wall_s'] / 60:.1f} min"
             + (f" ({len(report['parts'])} processes side by side, one core each: seeds "
                + " / ".join(",".join(map(str, part["seeds"])) for part in report["parts"]) + ")."
                if report.get("parts") else "."),
             f"Data: {cfg.get('dataset', 'digits')} 16x16, "
             + (f"{cfg['train_limit']:,} training images, " if cfg.get("train_limit") else "")
             + f"first {cfg['n_test']} test images; tiny CNNs (8/16/16 channels), standard and "
             f"PGD-{cfg['adv_steps']} adversarially trained (eps {cfg['adv_eps']}, ramped up over the first half), "
             f"{cfg['epochs']} epochs, seeds "
             f"{', '.join(map(str, cfg['seeds']))}. Attack: {budget}; attack seed = model seed.",
             "Eps: " + ", ".join(labels) + ".", "",
             "Per-eps = pyautoattack's `run_standard_evaluation` at each eps on all images"
             + (", with the image-keyed random starts of `wsr_bench.attacks.starts` that the sweeps use too (an "
                "image's start no longer depends on its batch)" if cfg.get("keyed_starts") else
                ", with pyautoattack's own random starts (drawn by an image's place in its batch), as the sweeps "
                "of this run had too")
             + ". Differences count (image, eps) verdicts against it; *higher* = the sweep counts the image correct "
             "where per-eps AutoAttack fooled it.", ""]
    for rname, r in report["runs"].items():
        b = r["baseline"]
        lines += [f"## {rname} (clean {100 * r['clean_accuracy']:.0f}%)", "",
                  "| run | wall s | CPU s | CPU x per-eps | passes | passes x per-eps | chain calls | same curve | "
                  "verdicts differ (higher / lower) | inferred robust (r) | CPU x, 10x images (projected) |",
                  "|---|---:|---:|---:|---:|---:|---:|---|---|---:|---:|",
                  f"| per-eps AutoAttack | {b['wall_s']:.0f} | {b['cpu_s']:.0f} | 1.00 | {b['passes']:,} | 1.00 | "
                  f"{b['chain_calls']} | | | | |"]
        reruns = {key: r[key] for key in REPEATS if key in r}
        for key, rep in reruns.items():
            a = rep["vs_per_eps"]
            lines.append(f"| per-eps AutoAttack, {RERUN_LABEL[key]} | {rep['wall_s']:.0f} | "
                         f"{rep['cpu_s']:.0f} | {rep['cpu_s'] / b['cpu_s']:.2f} | {rep['passes']:,} | "
                         f"{rep['passes'] / b['passes']:.2f} | {rep['chain_calls']} | "
                         f"{'yes' if a['identical_curve'] else 'NO'} | {a['differ']} ({a['higher']} / {a['lower']}) "
                         "| | |")
        for s, v in r["sweeps"].items():
            a, proj = v["vs_per_eps"], v.get("cpu_ratio_projected_10x_images")
            lines.append(f"| {s} | {v['wall_s']:.0f} | {v['cpu_s']:.0f} | {v['cpu_ratio']:.2f} | {v['passes']:,} | "
                         f"{v['pass_ratio']:.2f} | {v['chain_calls']} | {'yes' if a['identical_curve'] else 'NO'} | "
                         f"{a['differ']} ({a['higher']} / {a['lower']}) | {v['inferred']['r']} | "
                         f"{'-' if proj is None else f'{proj:.2f}'} |")
        n = cfg["n_test"]
        held = {s: round(sum(v["accuracy"]) * n) - v["inferred"]["r"] for s, v in r["sweeps"].items()}
        lines += ["", "Whole-chain runs that an image withstood (where AutoAttack's cost lies): per-eps "
                  f"{round(sum(b['accuracy']) * n):,} (an image robust at k strengths counts k), "
                  + ", ".join(f"{s} {h:,}" for s, h in held.items())
                  + f". Images robust at the smallest strength: {round(b['accuracy'][0] * n):,}; a sweep whose curve "
                  "is identical must run the whole chain on each of them at least once, where it holds"
                  + (f": at least {b['accuracy'][0] / sum(b['accuracy']):.2f}x of per-eps AutoAttack's whole-chain "
                     "runs." if sum(b["accuracy"]) else ".")]
        fit = b.get("cost_fit")
        if fit:
            lines += [f"Per-eps calls fit CPU = {fit['fixed_s']:.2f} s + {fit['per_robust_s']:.3f} s x (images "
                          "the chain cannot break): the fixed part is the chain's iterations on a batch of any size."]
        lines += ["", "| accuracy % at | " + " | ".join(labels) + " |", "|---|" + "---:|" * len(labels),
                  "| per-eps AutoAttack | " + " | ".join(f"{100 * a:.1f}" for a in b["accuracy"]) + " |"]
        if b["accuracy_nested"] != b["accuracy"]:
            lines.append("| per-eps, nested | " + " | ".join(f"{100 * a:.1f}" for a in b["accuracy_nested"]) + " |")
        for key, rep in reruns.items():
            lines.append(f"| per-eps, {RERUN_LABEL[key]} | " + " | ".join(f"{100 * a:.1f}" for a in rep["accuracy"])
                         + " |")
        for s, v in r["sweeps"].items():
            lines.append(f"| {s} | " + " | ".join(f"{100 * a:.1f}" for a in v["accuracy"]) + " |")
        diffs = [(s, d) for s, v in r["sweeps"].items() for d in v["vs_per_eps"]["samples"]]
        listed = "; ".join(f"{s}: image {d['index']} at {eps_label(d['eps'])} {d['sweep_says']} (evidence "
                           f"{d['evidence']}, broken by {d['break_attack']})" for s, d in diffs)
        lines += ["", f"Differing verdicts: {listed}." if diffs else "No verdict differs.", ""]
    lines += ["## Summary", "", "| sweep | runs | CPU x per-eps (mean / worst) | wall x (mean / worst) | passes x "
              "(mean) | CPU x at 10x images, projected (worst) | curve identical in | verdicts differ (higher) |",
              "|---|---:|---|---|---:|---:|---|---|"]
    for s, v in report["summary"].items():
        lines.append(f"| {s} | {v['runs']} | {v['cpu_ratio_mean']:.2f} / {v['cpu_ratio_max']:.2f} | "
                     f"{v['time_ratio_mean']:.2f} / {v['time_ratio_max']:.2f} | {v['pass_ratio_mean']:.2f} | "
                     f"{v['cpu_ratio_projected_10x_images_max']:.2f} | "
                     f"{v['identical_runs']} of {v['runs']} | {v['pairs_differ']} of {v['pairs']} "
                     f"({v['pairs_higher']}) |")
    lines += ["", report["conclusion"], ""]
    if report.get("menu"):
        lines += menu_markdown(report["menu"])
    return "\n".join(lines)


def menu_markdown(menu: dict[str, Any]) -> list[str]:
    """The ``--menu`` section: its own machine record, one table row per variant, and its conclusion."""
    mach, cfg = menu["machine"], menu["config"]
    lines = ["## AutoAttack's menu over the spectrum: plus, standard L1, rand (downward sweep vs per-eps)", "",
             f"Measured {menu['date']} on a {mach['cpu_count']}-core CPU ({mach['platform']}), torch {mach['torch']}, "
             f"1 thread, load average {mach['load_start']} at start and {mach['load_end']} at end (other jobs shared "
             f"the machine: CPU time is the steadier figure); {menu['total_wall_s'] / 60:.1f} min in all. Model: the "
             f"PGD-{cfg['adv_steps']} adversarially trained CNN of seed 0 ({cfg['dataset']} 16x16), for rand behind "
             "`RandomSineGradient` (a random-sign sine layer: forward moves at most 0.004, single-pass gradients "
             f"mostly random). Images: the first {cfg['menu_n_test']} test images. Budget, the same for per-eps and "
             f"the sweep: Square {cfg['square_queries']} queries, APGD-T/FAB-T {cfg['targets']} target classes, "
             "everything else as pyautoattack's version sets it (plus: 5 restarts of APGD-CE, APGD-DLR and FAB; "
             "L1: APGD with 5 restarts and the 3-2-1x eps schedule; rand: APGD-CE and APGD-DLR with EOT 20). "
             "Per-eps = pyautoattack's `run_standard_evaluation` of that version and norm at each eps on all "
             "images, with the image-keyed starts; the sweep = `evaluate_spectrum(attack='autoattack', "
             "aa_version=..., threat_model=..., sweep='downward')`.", "",
             "| variant | eps | clean % | (image, eps) pairs | verdicts differ (higher / lower) | McNemar p (all / "
             "min per eps) | CPU x per-eps | passes x per-eps | per-eps CPU s | sweep CPU s |",
             "|---|---|---:|---:|---|---|---:|---:|---:|---:|"]
    for name, v in menu["variants"].items():
        a, sw, b = v["sweep"]["vs_per_eps"], v["sweep"], v["baseline"]
        lines.append(f"| {name} ({v['version']}, {v['norm']}) | {', '.join(eps_label(e) for e in v['eps'])} | "
                     f"{100 * v['clean_accuracy']:.0f} | {a['pairs']} | {a['differ']} ({a['higher']} / {a['lower']}) "
                     f"| {a['mcnemar_p']:.3g} / {a['mcnemar_p_min_per_eps']:.3g} | {sw['cpu_ratio']:.2f} | "
                     f"{sw['pass_ratio']:.2f} | {b['cpu_s']:.0f} | {sw['cpu_s']:.0f} |")
        rep = v.get("baseline_repeat")
        if rep:
            r = rep["vs_per_eps"]
            lines.append(f"| {name}: per-eps again, attack seed {REPEAT_SEED_OFFSET} | | | {r['pairs']} | "
                         f"{r['differ']} ({r['higher']} / {r['lower']}) | {r['mcnemar_p']:.3g} / "
                         f"{r['mcnemar_p_min_per_eps']:.3g} | {rep['cpu_s'] / b['cpu_s']:.2f} | "
                         f"{rep['passes'] / b['passes']:.2f} | | |")
    lines += ["", "| accuracy % at each eps | per-eps | downward sweep |", "|---|---|---|"]
    for name, v in menu["variants"].items():
        lines.append(f"| {name} | {' / '.join(f'{100 * a:.1f}' for a in v['baseline']['accuracy'])} | "
                     f"{' / '.join(f'{100 * a:.1f}' for a in v['sweep']['accuracy'])} |")
    diffs = [(n, d) for n, v in menu["variants"].items() for d in v["sweep"]["vs_per_eps"]["samples"]]
    listed = "; ".join(f"{n}: image {d['index']} at {eps_label(d['eps'])} {d['sweep_says']} (evidence "
                       f"{d['evidence']}, broken by {d['break_attack']})" for n, d in diffs)
    lines += ["", f"Differing verdicts: {listed}." if diffs else "No verdict differs.", "", menu["conclusion"], ""]
    return lines


def menu_conclusion(variants: dict[str, Any]) -> str:
    """One sentence per variant: compared and differing pairs, McNemar where the model is randomised, cost."""
    parts = []
    for name, v in variants.items():
        a, sw = v["sweep"]["vs_per_eps"], v["sweep"]
        test = (f", McNemar p = {a['mcnemar_p']:.3g} (smallest per eps {a['mcnemar_p_min_per_eps']:.3g}); per-eps "
                f"rand against itself with another attack seed: {v['baseline_repeat']['vs_per_eps']['differ']} "
                f"differ, p = {v['baseline_repeat']['vs_per_eps']['mcnemar_p']:.3g}" if v.get("baseline_repeat")
                else "")
        parts.append(f"{name} ({v['version']}, {v['norm']}): {a['differ']} of {a['pairs']} (image, eps) verdicts "
                     f"differ from per-eps AutoAttack ({a['higher']} higher){test}; CPU {sw['cpu_ratio']:.2f}x, passes "
                     f"{sw['pass_ratio']:.2f}x")
    return "; ".join(parts) + "."


def merge_reports(paths: list[str]) -> dict[str, Any]:
    """One report from the result files of runs with the same settings made side by side (e.g. one process per
    seed, each on its own core): their runs together, the seeds of all, the longest total time, each part's
    machine record kept under ``parts``. Runs of the same name, or settings that differ beyond the seeds and the
    sweeps, are a one-line error."""
    import json

    reports = [json.loads(Path(p).read_text()) for p in paths]
    free = ("seeds", "sweeps", "sweeps_other_seeds")
    settings = [{k: v for k, v in r["config"].items() if k not in free} for r in reports]
    if any(s != settings[0] for s in settings[1:]) or any(r.get("quick") or r["config"].get("smoke") for r in reports):
        raise SystemExit(f"cannot merge {', '.join(paths)}: their settings differ (beyond seeds and sweeps)")
    runs: dict[str, Any] = {}
    for path, r in zip(paths, reports, strict=True):
        if set(runs) & set(r["runs"]):
            raise SystemExit(f"cannot merge {path}: it repeats run {sorted(set(runs) & set(r['runs']))[0]!r}")
        runs.update(r["runs"])
    first = reports[0]
    seeds = sorted({s for r in reports for s in r["config"]["seeds"]})
    machine = {**first["machine"], "load_start": max(r["machine"]["load_start"] for r in reports),
               "load_end": max(r["machine"]["load_end"] for r in reports)}
    return {**first, "config": {**first["config"], "seeds": seeds}, "runs": runs, "machine": machine,
            "total_wall_s": max(r["total_wall_s"] for r in reports),
            "parts": [{"file": Path(p).name, "seeds": r["config"]["seeds"], "total_wall_s": r["total_wall_s"],
                       "machine": r["machine"]} for p, r in zip(paths, reports, strict=True)]}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--smoke", action="store_true", help="seconds: toy sizes (checks that the script runs; the numbers "
                   "mean nothing); written to a temporary folder unless --out is given")
    p.add_argument("--out", help="results JSON (a .md summary is written beside it); required except with --smoke")
    p.add_argument("--quick", action="store_true", help="one model, seed 0, 3 eps, 24 images (a smoke run)")
    p.add_argument("--n-test", type=int, default=Config.n_test)
    p.add_argument("--dataset", default=Config.dataset, choices=("digits", "fashion_mnist"))
    p.add_argument("--train-limit", type=int, default=None, help="training images (default: all)")
    p.add_argument("--seeds", default="0,1", help="comma list of model (and attack) seeds")
    p.add_argument("--models", default=",".join(MODELS), help="comma list of " + ", ".join(MODELS))
    p.add_argument("--sweeps", default=",".join(SWEEPS), help="sweeps for the first seed")
    p.add_argument("--sweeps-seed1", default="downward", help="sweeps for the other seeds")
    p.add_argument("--square-queries", type=int, default=Config.square_queries, help="Square budget (standard 5000)")
    p.add_argument("--targets", type=int, default=Config.targets, help="APGD-T/FAB-T targets (standard 9)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--repeat-baseline", action="store_true",
                   help=f"run per-eps AutoAttack again with attack seed +{REPEAT_SEED_OFFSET} (its own noise floor)")
    p.add_argument("--upstream-baseline", action="store_true",
                   help="first seed: run per-eps AutoAttack again with pyautoattack's own batch-position starts")
    p.add_argument("--menu", default="", help="comma list of " + ", ".join(MENU) + ": also measure these parts of "
                   "AutoAttack's menu (version/norm) against per-eps AutoAttack")
    p.add_argument("--menu-only", action="store_true", help="run only --menu and add it to the existing --out as "
                   "'menu', keeping its other sections")
    p.add_argument("--menu-n-test", type=int, default=Config.menu_n_test, help="test images of the menu")
    p.add_argument("--render", action="store_true", help="only rewrite FILE.md from --out")
    p.add_argument("--merge", nargs="+", metavar="PART", help="write --out from these result files (same settings, "
                   "e.g. one process per seed run side by side) instead of running")
    args = p.parse_args(argv)
    if not args.out and (args.render or args.merge or not args.smoke):
        p.error("--out is required (except with --smoke)")
    if args.render or args.merge:
        import json

        report = merge_reports(args.merge) if args.merge else json.loads(Path(args.out).read_text())
        add_projections(report["runs"])
        report["summary"] = summarize(report["runs"])
        report["conclusion"] = conclusion(report)
        atomic_write_report(args.out, report, markdown(report))
        return 0
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    logging.getLogger("auto-attack").setLevel(logging.ERROR)  # its per-call notes would drown the progress lines
    split = lambda text: tuple(t for t in text.split(",") if t)  # noqa: E731
    cfg = Config(n_test=args.n_test, dataset=args.dataset, train_limit=args.train_limit,
                 seeds=tuple(int(s) for s in split(args.seeds)), models=split(args.models),
                 sweeps=split(args.sweeps), sweeps_other_seeds=split(args.sweeps_seed1),
                 square_queries=args.square_queries, targets=args.targets, threads=args.threads,
                 repeat_baseline=args.repeat_baseline, upstream_baseline=args.upstream_baseline,
                 menu=split(args.menu), menu_n_test=args.menu_n_test)
    if args.quick:
        cfg = dataclasses.replace(cfg, n_test=24, eps=(0.03, 0.10, 0.17), seeds=(0,), models=("adversarial",))
    if args.smoke:
        cfg = cfg.smoke_config()
    bad = [m for m in cfg.models if m not in MODELS] + [s for s in cfg.sweeps + cfg.sweeps_other_seeds
                                                        if s not in SWEEPS] + [m for m in cfg.menu if m not in MENU]
    if bad:
        raise SystemExit(f"unknown model, sweep or menu variant {bad[0]!r}: models {', '.join(MODELS)}; sweeps "
                         f"{', '.join(SWEEPS)}; menu {', '.join(MENU)}")
    if args.menu_only and (not cfg.menu or not Path(args.out).is_file()):
        raise SystemExit("--menu-only adds the menu to an existing result: give --menu and an existing --out")
    torch.set_num_threads(cfg.threads)
    count_chain_calls()
    if (cfg.square_queries, cfg.targets) != (5000, 9) or cfg.smoke:
        set_autoattack_budget(cfg.square_queries, cfg.targets, apgd_iters=10 if cfg.smoke else None)
    if args.menu_only:
        import json

        report = json.loads(Path(args.out).read_text())
        report["menu"] = run_menu(cfg)
        publish(report, markdown(report), args.out, "autoattack_sweep")
        return 0
    load_start, start = load_average(), time.perf_counter()
    report: dict[str, Any] = {"benchmark": "autoattack_sweep", "config": dataclasses.asdict(cfg), "quick": args.quick}
    report["runs"] = bench(cfg)
    report["total_wall_s"] = round(time.perf_counter() - start, 1)
    report["machine"] = machine_record(load_start)
    add_projections(report["runs"])
    report["summary"] = summarize(report["runs"])
    report["conclusion"] = conclusion(report)
    if cfg.menu:
        report["menu"] = run_menu(cfg)
    publish(report, markdown(report), args.out, "autoattack_sweep")
    return 0


def run_menu(cfg: Config) -> dict[str, Any]:
    """The ``menu`` section of a report: the variants' measurements with their own settings, machine record, date
    and conclusion (so it can be added to a report measured at another time)."""
    import datetime

    load_start, start = load_average(), time.perf_counter()
    variants = bench_menu(cfg)
    return {"config": dataclasses.asdict(cfg), "date": datetime.date.today().isoformat(), "variants": variants,
            "total_wall_s": round(time.perf_counter() - start, 1), "machine": machine_record(load_start),
            "conclusion": menu_conclusion(variants)}


if __name__ == "__main__":
    sys.exit(main())
