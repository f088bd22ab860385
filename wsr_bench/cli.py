"""The ``wsr-bench`` command line: the only argparse in the package. It parses, calls the API, prints.

Subcommands each have an ``_add_<name>_parser(sub)`` and a ``_cmd_<name>(args) -> int``; ``_PARSERS`` lists them.
Expected errors (``ValueError``, ``FileNotFoundError``, ``KeyboardInterrupt``) become one line ``error: ...`` and
exit code 2, never a traceback.
"""

from __future__ import annotations

import argparse
import logging
import sys
import warnings
from collections.abc import Callable, Sequence

from wsr_bench import __version__

logger = logging.getLogger("wsr_bench")


# ---------------------------------------------------------------------------------------------------- models
def _add_models_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("models", help="list every registered model with parameter count and source")
    p.add_argument("--num-classes", type=int, default=10, help="classifier outputs used for the count")
    p.set_defaults(func=_cmd_models)


def _cmd_models(args: argparse.Namespace) -> int:
    from wsr_bench.models.catalog import model_table

    rows = model_table(num_classes=args.num_classes)
    width = max(len(r["name"]) for r in rows)
    print(f"{'model':<{width}}  {'C':>3} {'L':>3} {'params(M)':>9} {'paper(M)':>8}  source")
    for r in rows:
        paper = "-" if r["paper_params_m"] is None else f"{r['paper_params_m']:.1f}"
        print(f"{r['name']:<{width}}  {r['init_channels']:>3} {r['layers']:>3} {r['params_m']:>9.3f} {paper:>8}  "
              f"{r['source']}")
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
    p.add_argument("--num-classes", type=int, default=10)
    p.add_argument("--force", action="store_true", help="overwrite an existing export")
    p.set_defaults(func=_cmd_export)


def _cmd_export(args: argparse.Namespace) -> int:
    from pathlib import Path

    from wsr_bench.models.catalog import create

    out = Path(args.out)
    if (out / "model.safetensors").exists() and not args.force:
        raise ValueError(f"{out} already holds an exported model; pass --force to overwrite")
    from wsr_bench.models import export_model, load_state_dict_file

    model = create(args.model, init_channels=args.init_channels, layers=args.layers, num_classes=args.num_classes)
    if args.weights:
        model.load_state_dict(load_state_dict_file(args.weights))
    export_model(model, out)
    n = sum(p.numel() for p in model.parameters())
    print(f"exported {model.pretrained_cfg['architecture']} ({n / 1e6:.3f}M params) to {out}/")
    return 0


_PARSERS: tuple[Callable[[argparse._SubParsersAction], None], ...] = (
    _add_models_parser,
    _add_export_parser,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="wsr-bench", description="Wide-spectrum adversarial robustness: Wsr-NAS search, WsrNets as timm "
                                      "models, epsilon-spectrum evaluation and leaderboards.")
    parser.add_argument("--version", action="version", version=f"wsr-bench {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for add in _PARSERS:
        add(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    warnings.filterwarnings("ignore", message=".*torch.jit.interface.*", category=FutureWarning)
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    try:
        return int(args.func(args) or 0)
    except (ValueError, FileNotFoundError, NotADirectoryError, FileExistsError, KeyError) as exc:
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        print(f"error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
