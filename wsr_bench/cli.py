"""The ``wsr-bench`` command line: the only argparse in the package. It parses, calls the API, prints.

Subcommands each have an ``_add_<name>_parser(sub)`` and a ``_cmd_<name>(args) -> int``; ``_PARSERS`` lists them.
Expected errors (``ValueError``, ``FileNotFoundError``, a job's ``StageFailure``, ``KeyboardInterrupt``) become one
line ``error: ...`` and exit code 2, never a traceback.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

from wsr_bench import __version__
from wsr_bench.epsilon import PAPER_SPECTRUM, parse_eps_list
from wsr_bench.infra.threads import configure_cli
from wsr_bench.jobs.executor import StageFailure
from wsr_bench.rules import MEMORY_FORMATS

logger = logging.getLogger("wsr_bench")

#: Deprecation notices our dependencies print about their own code, which a user cannot act on: (category,
#: message pattern). Silenced here, at the command line's entry, and nowhere else (the library leaves the
#: caller's warning filters alone).
THIRD_PARTY_WARNINGS: tuple[tuple[type[Warning], str], ...] = (
    (FutureWarning, r"`torch\.jit\.interface` is deprecated"),            # torch, through timm's imports
    (UserWarning, r"pkg_resources is deprecated as an API"),               # robustbench.loaders
    (DeprecationWarning, r"Importing from timm\.models\.\w+ is deprecated"),  # robustbench's old timm imports
    (FutureWarning, r"You are using `torch\.load` with `weights_only=False`"),  # robustbench's load_model, torch 2.4-5
)
#: The paper's spectrum as ``--eps`` takes it: "0.03,0.10,0.17,0.25".
PAPER_EPS = ",".join(f"{e:.2f}" for e in PAPER_SPECTRUM)


# ---------------------------------------------------------------------------------------------------- models
def _add_models_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("models", help="list every registered model with parameter count and source, and the "
                                      "published pretrained tags")
    p.add_argument("--num-classes", type=int, default=10, help="classifier outputs used for the count")
    p.set_defaults(func=_cmd_models)


def _cmd_models(args: argparse.Namespace) -> int:
    from wsr_bench.models.catalog import model_table, published_table

    rows = model_table(num_classes=args.num_classes)
    width = max(len(r["name"]) for r in rows)
    size = max(len(r["size"]) for r in rows)
    print(f"{'model':<{width}}  {'size':<{size}} {'params(M)':>9} {'paper(M)':>8}  source")
    for r in rows:
        paper = "-" if r["paper_params_m"] is None else f"{r['paper_params_m']:.1f}"
        print(f"{r['name']:<{width}}  {r['size']:<{size}} {r['params_m']:>9.3f} {paper:>8}  {r['source']}")
    tags, total = published_table()
    print(f"\npublished pretrained tags: {len(tags)}, weights {total / 1e6:.2f} MB in all "
          "(timm.create_model(tag, pretrained=True))")
    if tags:
        name_w = max(len("tag"), *(len(t["name"]) for t in tags))
        data_w = max(len("dataset"), *(len(str(t["dataset"])) for t in tags))
        print(f"{'tag':<{name_w}}  {'params(M)':>9}  {'dataset':<{data_w}}  {'clean(%)':>8} {'avg rob(%)':>10}  "
              "evaluated with / recipe")
        for t in tags:
            params = "-" if t["params"] is None else f"{t['params'] / 1e6:.3f}"
            clean, rob = (("-" if v is None else f"{100 * v:.2f}") for v in (t["clean_accuracy"],
                                                                               t["avg_robust_accuracy"]))
            print(f"{t['name']:<{name_w}}  {params:>9}  {t['dataset']!s:<{data_w}}  {clean:>8} {rob:>10}  "
                  f"{t['evaluation'] or '-'} / {t['recipe']}")
    return 0


# ---------------------------------------------------------------------------------------------------- export
def _add_export_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="export a model (timm name or genotype.json + weights) as "
                                      "model.safetensors + config.json")
    p.add_argument("model", help="registered model name (wsrnet_basic, racl, ...) or path to a genotype.json")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--weights", help="state dict to load first (.safetensors, or a torch file read weights_only)")
    p.add_argument("--init-channels", type=int, help="override C")
    p.add_argument("--layers", type=int, help="override the number of cells")
    p.add_argument("--width", type=int, help="base channels of preact_resnet18 (64: the standard network)")
    p.add_argument("--num-classes", type=int, default=10)
    p.add_argument("--force", action="store_true", help="overwrite an existing export")
    p.set_defaults(func=_cmd_export)


def _cmd_export(args: argparse.Namespace) -> int:
    from pathlib import Path

    from wsr_bench.models.catalog import create

    out = Path(args.out)
    if (out / "model.safetensors").exists() and not args.force:
        raise ValueError(f"{out} already holds an exported model; pass --force to overwrite")
    from wsr_bench.models import NON_DARTS_MODELS, export_model, load_state_dict_file

    darts_sizing = args.init_channels is not None or args.layers is not None
    if args.model.split(".")[0] in NON_DARTS_MODELS and darts_sizing:
        raise ValueError(f"{args.model} is not a DARTS network: size it with --width, not --init-channels/--layers")
    model = create(args.model, init_channels=args.init_channels, layers=args.layers, width=args.width,
                   num_classes=args.num_classes)
    if args.weights:
        model.load_state_dict(load_state_dict_file(args.weights))
    export_model(model, out)
    n = sum(p.numel() for p in model.parameters())
    print(f"exported {model.pretrained_cfg['architecture']} ({n / 1e6:.3f}M params) to {out}/")
    return 0


# ---------------------------------------------------------------------------------------------------- train
#: What ``run`` and ``zoo`` say instead of taking ``--resume``: their folder is always continued.
ALWAYS_CONTINUES = "a rerun with the same --out continues what the folder holds (no --resume needed)"


def _add_common_options(p: argparse.ArgumentParser, resume: str | None) -> None:
    """The flags every subcommand that runs models (train, search, run, zoo, eval) shares, spelled and documented
    once: ``--device``, ``--memory-format``, ``--no-progress``, and ``--resume`` where a run is continued only when
    asked (``resume`` names what it continues from; ``None`` for run and zoo, which always continue)."""
    p.add_argument("--device", help="cpu | cuda | cuda:N (default: cuda when available, or the config's device key)")
    p.add_argument("--memory-format", choices=MEMORY_FORMATS,
                   help="layout of the networks and images: channels_last (about 1.8x faster) or contiguous "
                        "(default: channels_last, or the config's memory_format key)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars (logs and the summary stay)")
    if resume is not None:
        p.add_argument("--resume", action="store_true",
                       help=f"continue an interrupted run with the same settings from {resume}")


def _add_job_options(p: argparse.ArgumentParser, example: str, resume: str | None) -> None:
    """``--set`` plus the common flags, for the subcommands that read an experiment config (train, search, run,
    zoo)."""
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help=f"config override, e.g. --set {example} (repeatable)")
    _add_common_options(p, resume)


def _config_overrides(args: argparse.Namespace) -> list[str]:
    """The ``--set`` overrides plus the ones the common flags stand for: ``--memory-format``, and ``--no-progress``
    as ``search.progress=false`` for the subcommands whose search reads it from the config (search, zoo; ``run``
    passes ``progress`` to the pipeline)."""
    extra = [f"memory_format={args.memory_format}"] if getattr(args, "memory_format", None) else []
    if getattr(args, "no_progress", False) and getattr(args, "command", None) in ("search", "zoo"):
        extra.append("search.progress=false")
    return list(args.overrides) + extra


def _add_executor_options(p: argparse.ArgumentParser) -> None:
    """``--workers`` and ``--executor``, for the jobs made of stages (run, zoo): wsr_bench.jobs.executor."""
    p.add_argument("--workers", type=int, metavar="N",
                   help="stages at once, each in its own process with its own --threads (default: the config's "
                        "executor.workers, else cores // threads per stage; 1: one after another in this process)")
    p.add_argument("--executor", choices=("local", "slurm"),
                   help="local: worker processes on this machine; slurm: one submitit job per stage with the "
                        "resources of the config's executor section (pip install 'wsr-bench[slurm]'; docs/cluster.md)"
                        " (default: the config's executor.kind, local)")


def _executor_options(args: argparse.Namespace, cfg):
    """The job's executor from the config and the flags; prints the more-workers-than-cores warning."""
    from wsr_bench.jobs.executor import resolve_executor

    options, warning = resolve_executor(cfg.executor, kind=args.executor, workers=args.workers, threads=args.threads)
    if warning:
        print(warning, file=sys.stderr)
    return options


def _add_train_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="adversarially train a model (PGD-k, TRADES, FGSM-RS, multi-strength); "
                                     "DDP under torchrun")
    p.add_argument("config", help="experiment YAML (train/data/model sections), e.g. configs/retrain_pgd7.yaml")
    p.add_argument("--out", required=True, help="run folder (checkpoint.pt, metrics.jsonl, train.log, model/)")
    p.add_argument("--model", help="registered model name or a genotype.json (default: OUT/genotype.json when "
                                   "present, else wsrnet_basic)")
    _add_job_options(p, "train.epochs=2", resume="OUT/checkpoint.pt")
    p.set_defaults(func=_cmd_train)


def _cmd_train(args: argparse.Namespace) -> int:
    from wsr_bench.config import load_config
    from wsr_bench.train import run_training

    cfg = load_config(args.config, _config_overrides(args))
    s = run_training(cfg, args.out, model_name=args.model, resume=args.resume, device=args.device,
                     progress=not args.no_progress)
    if s.rank != 0:
        return 0
    f = s.final or {}
    print(f"trained {s.model} ({s.params / 1e6:.3f}M params) with {s.recipe} for {s.epochs} epochs "
          f"(from epoch {s.start_epoch}, {s.world_size} process(es)) in {s.seconds:.1f}s")
    if "clean_acc" in f:
        robust = f"  PGD-{f['eval_steps']}@{f['eval_eps']:g} {f['robust_acc']:.4f}" if "robust_acc" in f else ""
        print(f"test (first {f['eval_n']} images): clean {f['clean_acc']:.4f}{robust}")
    print(f"run folder: {s.out_dir}/ (config.yaml, checkpoint.pt, metrics.jsonl, train.log, model/)")
    return 0


# ---------------------------------------------------------------------------------------------------- search
def _add_search_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("search", help="search an architecture: Wsr-NAS (AN-Estimator + EWSS) or the naive "
                                      "multi-strength baseline, as the config's search.method says")
    p.add_argument("config", help="experiment YAML (data/search sections), e.g. configs/demo.yaml")
    p.add_argument("--out", required=True, help="run folder (genotype.json, arch_weights.safetensors, metrics.jsonl, "
                                                "search.log, arch_weights.png, checkpoint.pt)")
    _add_job_options(p, "search.search_steps=2", resume="OUT/checkpoint.pt")
    p.set_defaults(func=_cmd_search)


def _cmd_search(args: argparse.Namespace) -> int:
    from wsr_bench.config import load_config
    from wsr_bench.search import run_search

    cfg = load_config(args.config, _config_overrides(args))
    genotype = run_search(cfg, args.out, resume=args.resume, device=args.device)
    if os.environ.get("RANK", "0") != "0":  # under torchrun rank 0 reports (the search has left its group)
        return 0
    s = cfg.search
    print(f"{s.method} search ({s.n1} PGD + {s.n2} estimated strengths, {s.population} warm-up architectures, "
          f"{s.search_steps} search steps) -> {args.out}/genotype.json")
    for kind, edges in (("normal", genotype.normal), ("reduce", genotype.reduce)):
        print(f"  {kind:<6} " + "  ".join(f"{op}<-{src}" for op, src in edges))
    _report_collapse(Path(args.out) / "search_report.json")
    return 0


def _report_collapse(path: Path) -> None:
    """Print the search's collapse check, and a one-line warning on stderr when a derived cell is at least half
    parameter-free."""
    import json

    from wsr_bench.search.diagnostics import collapse_warning, describe_report

    report = json.loads(path.read_text())
    print(f"  {describe_report(report)} ({path.name})")
    warning = collapse_warning(report)
    if warning:
        print(warning, file=sys.stderr)


# ---------------------------------------------------------------------------------------------------- run
def _add_run_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("run", help="the whole job: search -> WsrNet -> adversarial training -> spectrum "
                                   "evaluation of it and the baselines -> leaderboard; always continues where it "
                                   "stopped (finished stages are skipped, search and training resume)",
                       description=f"The whole job of a config; {ALWAYS_CONTINUES}.")
    p.add_argument("config", help="experiment YAML (e.g. configs/demo.yaml)")
    p.add_argument("--out", required=True, help=f"run folder; {ALWAYS_CONTINUES}")
    _add_executor_options(p)
    _add_job_options(p, "train.epochs=2", resume=None)
    p.set_defaults(func=_cmd_run)


def _cmd_run(args: argparse.Namespace) -> int:
    import time

    from wsr_bench.config import load_config
    from wsr_bench.jobs.run import run_pipeline
    from wsr_bench.leaderboard.entry_files import load_entries

    t0 = time.perf_counter()
    cfg = load_config(args.config, _config_overrides(args))
    res = run_pipeline(cfg, args.out, device=args.device, progress=not args.no_progress,
                       executor=_executor_options(args, cfg))
    if os.environ.get("RANK", "0") != "0":  # under torchrun rank 0 reports
        return 0
    entries = sorted(load_entries(res.leaderboard), key=lambda e: -(e.avg_robust_accuracy or 0.0))
    eps = entries[0].worst_case.eps if entries else []
    print(f"\n{'model':<12} {'clean':>6} " + " ".join(f"{e:>6.3f}" for e in eps) + f" {'avg':>6}")
    for e in entries:
        acc = [e.worst_case.at(v) for v in eps]
        avg = "-" if e.avg_robust_accuracy is None else f"{e.avg_robust_accuracy:.1%}"
        print(f"{e.model:<12} {e.clean_accuracy:>6.1%} " + " ".join("     -" if a is None else f"{a:>6.1%}"
                                                                   for a in acc) + f" {avg:>6}")
    print(f"\ndone in {time.perf_counter() - t0:.0f}s. Look at:\n  {res.genotype}\n  {res.model_dir}/\n"
          f"  {res.leaderboard}/README.md, index.html, curves.png")
    return 0


# ---------------------------------------------------------------------------------------------------- zoo
def _add_zoo_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("zoo", help="train, evaluate (AutoAttack + PGD over the spectrum) and publish as timm "
                                   "pretrained tags every model of the config's zoo section; always continues "
                                   "where it stopped (published models are skipped, the others resume)",
                       description=f"Build the published zoo of a config; {ALWAYS_CONTINUES}, and models published "
                                   "already are skipped.")
    p.add_argument("config", help="experiment YAML with a zoo section, e.g. configs/zoo_fashion.yaml")
    p.add_argument("--out", default="runs/zoo", help="run folder of the searches, trainings and evaluation states "
                                                     f"(default: runs/zoo); {ALWAYS_CONTINUES}")
    p.add_argument("--only", help="comma list of models to build (<architecture>.<tag> or architecture); another "
                                  "process may build the others side by side")
    p.add_argument("--cost", action="store_true", help="print the measured cost of the build so far (OUT/stages.jsonl)")
    p.add_argument("--summary", action="store_true", help="print the table of the zoo as its committed entries "
                                                          "stand (published models and their accuracies); no build")
    p.add_argument("--write-summary", action="append", metavar="FILE", default=None,
                   help="fill the <!-- zoo-table --> ... <!-- /zoo-table --> block of this Markdown file with that "
                        "table (repeatable; e.g. README.md); no build")
    p.add_argument("--no-autoattack", action="store_true",
                   help="train, publish and PGD-evaluate only; a later run without it adds the AutoAttack entries "
                        "(the expensive part on a CPU)")
    _add_executor_options(p)
    _add_job_options(p, "train.epochs=2", resume=None)
    p.set_defaults(func=_cmd_zoo)


def _cmd_zoo(args: argparse.Namespace) -> int:
    from wsr_bench.config import load_config
    from wsr_bench.jobs.zoo import build_zoo, zoo_cost
    from wsr_bench.jobs.zoo_summary import write_summary, zoo_summary

    if args.cost:
        cost = zoo_cost(args.out)
        for name, c in cost["models"].items():
            print(f"{name:<28} {c['cpu_seconds'] / 3600:6.2f} CPU-h  {c['wall_seconds'] / 3600:6.2f} h wall")
        print(f"{'total':<28} {cost['cpu_seconds'] / 3600:6.2f} CPU-h  {cost['wall_seconds'] / 3600:6.2f} h wall")
        return 0
    cfg = load_config(args.config, _config_overrides(args))
    if args.summary or args.write_summary:
        if args.summary:
            print(zoo_summary(cfg))
        for path in args.write_summary or ():
            print(f"{path}: {'updated' if write_summary(cfg, path) else 'unchanged'}")
        return 0
    only = [n.strip() for n in args.only.split(",") if n.strip()] if args.only else None
    stages = build_zoo(cfg, args.out, only=only, device=args.device, progress=not args.no_progress,
                       autoattack=not args.no_autoattack, executor=_executor_options(args, cfg))
    for s in stages:
        state = "published before" if s.skipped else f"built in {s.cpu_seconds / 3600:.2f} CPU-h"
        print(f"{s.name:<28} {state}  ({s.aa_entry}, {s.pgd_entry})")
    print(f"leaderboard: {cfg.zoo.leaderboard}/README.md; weights: wsr-bench models")
    return 0


# ---------------------------------------------------------------------------------------------------- eval
def _add_eval_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("eval", help="robust accuracy over an eps spectrum; writes a leaderboard entry")
    p.add_argument("--model", required=True, help="timm name (wsrnet_basic, ...), robustbench:<Name>, or an "
                                                  "exported model folder")
    p.add_argument("--checkpoint", help="weights to load (.safetensors, or a torch file read weights_only)")
    p.add_argument("--model-dir", default="models", help="RobustBench checkpoint root (<dir>/<dataset>/<threat>/)")
    p.add_argument("--dataset", default="digits",
                   help="digits (default), fashion_mnist, synthetic, cifar10, cifar100, svhn")
    p.add_argument("--data-root", default="data", help="folder of local datasets")
    p.add_argument("--image-size", type=int, metavar="S",
                   help="image side for digits/fashion_mnist/synthetic (default: the size an exported model folder "
                        "records, else the dataset's own: digits 16, fashion_mnist 28)")
    p.add_argument("--eps", default=PAPER_EPS, help="comma list on the [0,1] scale, e.g. 0.03,8/255 (L2 and L1: "
                                                    "norms of the whole image's change)")
    p.add_argument("--attack", default="pgd", help="pgd, fgsm, apgd-ce, apgd-t, fab-t, square, autoattack, "
                                                   "minnorm, or a comma list (worst case per sample)")
    p.add_argument("--threat-model", default="Linf",
                   help="Linf (default), L2 or L1 (L1 eps sum |delta| over every pixel, e.g. 12 on CIFAR-10; PGD and "
                        "FGSM have no L1 version)")
    p.add_argument("--aa-version", default="standard", metavar="VERSION",
                   help="AutoAttack's version for --attack autoattack, as pyautoattack spells it: standard (default), "
                        "plus (more restarts, APGD-DLR and FAB too) or rand (APGD-CE and APGD-DLR with EOT over 20 "
                        "passes, for randomised models)")
    p.add_argument("--steps", type=int, default=20, help="PGD/APGD iterations (PGD step eps*2.5/steps)")
    p.add_argument("--n-examples", type=int, default=256, help="first N test images")
    p.add_argument("--out", help="leaderboard entry JSON to write (refused if it exists, unless --force)")
    p.add_argument("--force", action="store_true", help="overwrite --out")
    p.add_argument("--name", help="display name in the leaderboard (default: the model spec)")
    p.add_argument("--recipe", default="", help="training recipe recorded in the entry")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-sanity", action="store_true", help="skip the sanity checks")
    p.add_argument("--attack-all", action="store_true",
                   help="attack every sample at every eps (the naive sweep; default: only the samples still standing)")
    p.add_argument("--sweep", metavar="NAME",
                   help="how autoattack (a chain) walks the eps: downward (default: one chain run per sample at the "
                        "largest eps its APGD-CE screen cannot break), bisect, or upward (the chain at every eps up "
                        "to the break); other attacks always sweep upward")
    p.add_argument("--warm-start-steps", type=int, metavar="K",
                   help="PGD (Linf): after the first eps continue each survivor from its worst iterate for K steps "
                        "instead of a cold restart (K=4: about 3x fewer passes; benchmarks/results/spectrum_cost.md)")
    _add_common_options(p, resume="OUT.state/ (its per-batch progress; needs --out)")
    p.add_argument("--keep-state", action="store_true", help="keep OUT.state/ after the entry is written")
    p.set_defaults(func=_cmd_eval)


def _cmd_eval(args: argparse.Namespace) -> int:
    from wsr_bench.evaluate import EvalRuntime, SpectrumOptions
    from wsr_bench.jobs.eval import EvalTarget, run_eval

    eps = parse_eps_list(args.eps, threat_model=None)  # floats from here to the attack; the bound: the options'
    options = SpectrumOptions(eps=eps, attack=args.attack, threat_model=args.threat_model, aa_version=args.aa_version,
                              steps=args.steps,
                              batch_size=args.batch_size, seed=args.seed, attack_all=args.attack_all,
                              sweep=args.sweep, warm_start_steps=args.warm_start_steps, resume=args.resume,
                              flag_names=True)
    target = EvalTarget(model=args.model, dataset=args.dataset, n_examples=args.n_examples,
                        image_size=args.image_size, data_root=args.data_root, checkpoint=args.checkpoint,
                        model_dir=args.model_dir, name=args.name, recipe=args.recipe, out=args.out, force=args.force,
                        keep_state=args.keep_state)
    runtime = EvalRuntime(device=args.device, memory_format=args.memory_format or "channels_last",
                          sanity=not args.no_sanity, progress=not args.no_progress)
    entry = run_eval(target, options, runtime=runtime)
    if os.environ.get("RANK", "0") != "0":  # under torchrun every rank evaluated its share; rank 0 wrote and reports
        return 0
    _print_curves(entry)
    avg = "n/a" if entry.avg_robust_accuracy is None else f"{100 * entry.avg_robust_accuracy:.1f}%"
    print(f"avg over {PAPER_EPS.replace(',', '/')}: {avg}   AUC: {100 * (entry.auc or 0):.1f}%   "
          f"passes: {entry.evaluation['passes']['total']}")
    inferred = entry.evaluation.get("inferred", {})
    print(f"sweep: {entry.evaluation.get('sweep')}; per sample and eps: {inferred.get('attacked', 0)} attacked, "
          f"{inferred.get('broken_inferred', 0)} broken by a smaller eps, "
          f"{inferred.get('robust_inferred', 0)} robust by a larger eps (screened)")
    print("sanity: " + ("ok" if not entry.flags else "FLAGGED " + ", ".join(entry.flags)))
    for check in entry.evaluation.get("sanity_checks", []):
        if not check["passed"]:
            print(f"  {check['name']}: {check['message']}")
    if args.out:
        print(f"wrote {args.out}")
    return 0


def _print_curves(entry) -> None:
    """The entry's curves as a table: accuracy and, under it, the 95% Clopper-Pearson interval of every point."""
    lo, hi = entry.clean_accuracy_ci
    print(f"{entry.model} on {entry.dataset} ({entry.threat_model}, n={entry.n_examples}): "
          f"clean {100 * entry.clean_accuracy:.1f}% [95% CI {100 * lo:.1f}-{100 * hi:.1f}]")
    width = max([12] + [len(name) + 1 for name in entry.curves])
    print(f"{'attack':<{width}}" + "".join(f"{lab:>9}" for lab in entry.worst_case.eps_label))
    for name, curve in entry.curves.items():
        print(f"{name:<{width}}" + "".join(f"{100 * a:>8.1f}%" for a in curve.accuracy))
        print(f"{'  95% CI':<{width}}" + "".join(f"{f'{100 * a:.0f}-{100 * b:.0f}':>9}"
                                               for a, b in zip(curve.ci_low, curve.ci_high, strict=True)))


# ---------------------------------------------------------------------------------------------------- leaderboard
def _add_leaderboard_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("leaderboard", help="render the leaderboard (README.md, index.html, curves.png, CSV)")
    lsub = p.add_subparsers(dest="leaderboard_command", metavar="ACTION", required=True)
    b = lsub.add_parser("build", help="read ROOT/entries/**/*.json and write ROOT/README.md, index.html, "
                                      "curves.png, leaderboard.csv")
    b.add_argument("root", nargs="?", default="leaderboard", help="leaderboard folder (default: leaderboard)")
    b.add_argument("--reference-top", type=int, default=10, help="RobustBench rows per dataset/threat model")
    b.set_defaults(func=_cmd_leaderboard_build)
    c = lsub.add_parser("compare", help="paired comparison of two entries on the same images: accuracies, "
                                        "difference, exact McNemar p-value (raw and Holm) per eps, and the whole "
                                        "curve (AUC, paper's average: bootstrap CI, sign-flip permutation test)")
    c.add_argument("a", metavar="A.json", help="first leaderboard entry")
    c.add_argument("b", metavar="B.json", help="second leaderboard entry (evaluated on the same images)")
    c.add_argument("--shared-images", action="store_true",
                   help="pair entries of one dataset split on the images both hold, by index (e.g. AutoAttack on "
                        "the first 1,000 test images against PGD-20 on all 10,000)")
    c.set_defaults(func=_cmd_leaderboard_compare)
    shot = lsub.add_parser("screenshot", help="render ROOT/index.html in headless Chromium to a PNG (e.g. "
                                              "docs/demo_leaderboard.png from runs/demo/leaderboard)")
    shot.add_argument("root", help="leaderboard folder holding index.html (or the HTML file itself)")
    shot.add_argument("--out", required=True, help="PNG to write")
    shot.add_argument("--width", type=int, default=1280, help="window width in pixels")
    shot.add_argument("--height", type=int, default=1100, help="window height in pixels")
    shot.set_defaults(func=_cmd_leaderboard_screenshot)


def _cmd_leaderboard_build(args: argparse.Namespace) -> int:
    from wsr_bench.leaderboard import build_leaderboard

    res = build_leaderboard(args.root, reference_top=args.reference_top)
    print(f"{res.n_entries} entries, {res.n_references} RobustBench rows -> {res.readme}, {res.index}, "
          f"{res.curves}, {res.csv}")
    return 0


def _cmd_leaderboard_compare(args: argparse.Namespace) -> int:
    from wsr_bench.leaderboard.compare import compare_entries, format_comparison, whole_curve_entries
    from wsr_bench.leaderboard.entry_files import load_entry

    a, b = load_entry(args.a), load_entry(args.b)
    names = (args.a, args.b)
    rows = compare_entries(a, b, names, shared_images=args.shared_images)
    print(format_comparison(a, b, rows, names, whole_curve_entries(a, b, names, shared_images=args.shared_images)))
    return 0


def _cmd_leaderboard_screenshot(args: argparse.Namespace) -> int:
    from pathlib import Path

    from wsr_bench.leaderboard.browser import BrowserError, screenshot

    page = Path(args.root) / "index.html" if Path(args.root).is_dir() else Path(args.root)
    try:
        out = screenshot(page, args.out, width=args.width, height=args.height)
    except BrowserError as exc:
        raise ValueError(str(exc)) from None
    print(f"wrote {out} ({args.width}x{args.height}) from {page}")
    return 0


_PARSERS: tuple[Callable[[argparse._SubParsersAction], None], ...] = (
    _add_models_parser,
    _add_export_parser,
    _add_train_parser,
    _add_search_parser,
    _add_run_parser,
    _add_zoo_parser,
    _add_eval_parser,
    _add_leaderboard_parser,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="wsr-bench", description="Wide-spectrum adversarial robustness: Wsr-NAS search, WsrNets as timm "
                                      "models, epsilon-spectrum evaluation and leaderboards.")
    parser.add_argument("--version", action="version", version=f"wsr-bench {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument("--threads", type=int, default=None,
                        help="CPU threads for torch (default: $WSR_BENCH_THREADS, else $OMP_NUM_THREADS, else 1; "
                             "see docs/performance.md)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for add in _PARSERS:
        add(sub)
    return parser


def silence_third_party_warnings() -> None:
    """Ignore :data:`THIRD_PARTY_WARNINGS` (matched on category and message) for the rest of this process."""
    for category, message in THIRD_PARTY_WARNINGS:
        warnings.filterwarnings("ignore", message=message, category=category)


def main(argv: Sequence[str] | None = None) -> int:
    silence_third_party_warnings()
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    try:
        warning = configure_cli(args.threads)  # before any command imports torch (OMP_WAIT_POLICY)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if warning:
        print(warning, file=sys.stderr)
    try:
        return int(args.func(args) or 0)
    except (ValueError, FileNotFoundError, NotADirectoryError, FileExistsError, KeyError, StageFailure) as exc:
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        print(f"error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
