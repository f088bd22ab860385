"""Does the VLE rank architectures? The official head (2*sigmoid of the raw output) against wsr-bench's
standardised head, on a known loss landscape (parameter-free ops hurt, more at higher strength), with the official
VLE settings otherwise (LSTM 16, Adam 1e-3, weight decay 1e-3, batch 64, input noise 0.01, M_v = 100).

    python benchmarks/vle_heads.py            # writes benchmarks/results/vle_heads.{json,md} (about a minute)
    python benchmarks/vle_heads.py --smoke    # seconds: 5 passes, one seed, written to a temporary folder

Kendall tau between predicted and true loss at the highest strength on 64 unseen architectures; the same data,
seeds and passes for both heads.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import torch
from scipy.stats import kendalltau

from wsr_bench.estimators.val_loss import LossMemory, ValLossEstimator, train_vle
from wsr_bench.infra.atomic import atomic_write_text

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import smoke_out  # noqa: E402

E, K = 14, 8
RESULTS = Path(__file__).parent / "results"


def archs(n: int, seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.nn.functional.one_hot(torch.randint(0, K, (n, 2, E), generator=gen), K).float()


def losses(H: torch.Tensor) -> torch.Tensor:
    """Natural, eps_1, eps_2 losses in (0, 2): each parameter-free op of the normal cell costs a little."""
    bad = H[..., 0, :, :4].sum((-1, -2)) + 0.5 * H[..., 1, :, :4].sum((-1, -2))
    return torch.stack([1.0 + 0.05 * bad, 1.5 + 0.08 * bad, 2.0 + 0.1 * bad], dim=-1) / 2.5


def run(output: str, passes: int, seed: int) -> dict:
    torch.manual_seed(seed)
    train, test = archs(100, seed + 1), archs(64, seed + 2)
    mem = LossMemory(capacity=100)
    for H in train:
        mem.push(H, losses(H))
    vle = ValLossEstimator(E, K, num_outputs=3, hidden=16, output=output)
    opt = torch.optim.Adam(vle.parameters(), lr=1e-3, weight_decay=1e-3)
    gen = torch.Generator().manual_seed(seed)
    t0 = time.process_time()
    fit = train_vle(vle, mem, opt, passes=passes, batch_size=64, generator=gen, input_noise=0.01)
    with torch.no_grad():
        pred = vle(test)
    tau = float(kendalltau(pred[:, 2].numpy(), losses(test)[:, 2].numpy())[0])
    return {"output": output, "passes": passes, "seed": seed, "fit_loss": fit, "kendall_tau": tau,
            "cpu_seconds": time.process_time() - t0}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="seconds: both heads, 5 passes, seed 0 (checks that the "
                        "script runs; the numbers mean nothing); written to a temporary folder unless --out is given")
    parser.add_argument("--out", help="results JSON (a .md is written beside it; default "
                        "benchmarks/results/vle_heads.json)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    passes, seeds = ((5,), (0,)) if args.smoke else ((500,), (0, 1, 2))
    rows = [run(o, p, s) for o in ("bounded", "standardised") for p in passes for s in seeds]
    info = {"machine": platform.processor() or platform.machine(), "python": sys.version.split()[0],
            "torch": torch.__version__, "threads": 1}
    out = Path(args.out) if args.out else smoke_out("vle_heads") if args.smoke else RESULTS / "vle_heads.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out, json.dumps({"machine": info, "rows": rows}, indent=2) + "\n")
    lines = ["# VLE heads: does the estimator rank unseen architectures?", "",
             f"Machine: {info}. 100 training architectures, 64 unseen, official VLE settings otherwise.", "",
             "| head | passes | seed | fit loss | Kendall tau (highest strength) |", "|---|---|---|---|---|"]
    lines += [f"| {r['output']} | {r['passes']} | {r['seed']} | {r['fit_loss']:.4f} | {r['kendall_tau']:.3f} |"
              for r in rows]
    atomic_write_text(out.with_suffix(".md"), "\n".join(lines) + "\n")
    print("\n".join(lines))
    print(f"wrote {out} and {out.with_suffix('.md')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
