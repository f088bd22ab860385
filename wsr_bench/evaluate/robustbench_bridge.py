"""RobustBench zoo models, offline: ``robustbench:<Name>`` loads from a local checkpoint or fails in one line.

``robustbench.utils.load_model`` downloads a missing checkpoint from Google Drive; here we check the expected file
(``<model_dir>/<dataset>/<threat_model>/<Name>.pt``, or ``<Name>.pt_m<i>.pt`` for ensembles) first and never let
it download. Importing robustbench needs ``autoattack``, which :mod:`wsr_bench._compat` provides.
"""

from __future__ import annotations

import difflib
import logging
import pickle
from pathlib import Path

import torch.nn as nn

import wsr_bench._compat  # noqa: F401  (robustbench imports `autoattack`)

logger = logging.getLogger(__name__)

PREFIX = "robustbench:"
#: our dataset names -> RobustBench's BenchmarkDataset values.
DATASET_NAMES = {"cifar10": "cifar10", "cifar100": "cifar100", "imagenet": "imagenet"}


def is_robustbench_spec(spec: str) -> bool:
    """True for ``robustbench:<Name>`` model specs."""
    return str(spec).startswith(PREFIX)


def _zoo(dataset: str, threat_model: str):
    from robustbench.model_zoo import model_dicts
    from robustbench.model_zoo.enums import BenchmarkDataset, ThreatModel

    if dataset not in DATASET_NAMES:
        raise ValueError(f"RobustBench has no {dataset!r} models: use --dataset one of {', '.join(DATASET_NAMES)}")
    try:
        ds, tm = BenchmarkDataset(DATASET_NAMES[dataset]), ThreatModel(threat_model)
    except ValueError:
        raise ValueError(f"unknown RobustBench threat model {threat_model!r}: expected Linf, L2 or "
                         "corruptions") from None
    return ds, tm, model_dicts[ds].get(tm, {})


def expected_checkpoints(name: str, model_dir: str | Path, dataset: str = "cifar10",
                         threat_model: str = "Linf") -> list[Path]:
    """The checkpoint file(s) ``robustbench.utils.load_model`` reads for ``name``.

    Raises:
        ValueError: unknown dataset/threat model, or a name RobustBench does not list (with close matches).
    """
    ds, tm, models = _zoo(dataset, threat_model)
    if name not in models:
        close = difflib.get_close_matches(name, list(models), n=3, cutoff=0.5)
        hint = (f"; did you mean {', '.join(close)}?" if close
                else f" ({len(models)} models listed for {ds.value}/{tm.value})")
        raise ValueError(f"unknown RobustBench model {name!r} for {ds.value}/{tm.value}{hint}")
    gdrive = models[name]["gdrive_id"]
    base = Path(model_dir) / ds.value / tm.value / f"{name}.pt"
    if gdrive is None or (ds.value == "imagenet" and "Standard" in name):
        raise ValueError(f"RobustBench model {name!r} loads its weights from timm/torchvision hubs, which needs a "
                         "download; not supported offline")
    if isinstance(gdrive, list):
        return [Path(f"{base}_m{i}.pt") for i in range(len(gdrive))]
    return [base]


def load_robustbench_model(name: str, model_dir: str | Path = "models", dataset: str = "cifar10",
                           threat_model: str = "Linf") -> nn.Module:
    """Load a RobustBench zoo model from local checkpoint files, in eval mode, without any download.

    Args:
        name: RobustBench model name (e.g. ``Carmon2019Unlabeled``), with or without the ``robustbench:`` prefix.
        model_dir: RobustBench's ``model_dir`` (checkpoints under ``<dataset>/<threat_model>/``).
        dataset: cifar10, cifar100 or imagenet.
        threat_model: Linf, L2 or corruptions.

    Raises:
        ValueError: unknown name/dataset/threat model.
        FileNotFoundError: the checkpoint is missing (the message names the expected file).
        WeightsFileError: the checkpoint is unreadable (empty, truncated, not a torch file, refused pickle).
    """
    name = name.removeprefix(PREFIX)
    files = expected_checkpoints(name, model_dir, dataset, threat_model)
    missing = [f for f in files if not f.is_file()]
    if missing:
        raise FileNotFoundError(f"RobustBench checkpoint for {name} not found: expected {missing[0]} "
                                "(download it once with robustbench or pass --model-dir)")
    from robustbench.utils import load_model

    logger.info("loading RobustBench model %s from %s", name, files[0])
    try:  # its deprecation notices (torch.load's weights_only on torch 2.4/2.5) are the CLI's to filter
        model = load_model(name, model_dir=str(model_dir), dataset=DATASET_NAMES[dataset], threat_model=threat_model)
    except (pickle.UnpicklingError, EOFError, RuntimeError) as exc:
        from wsr_bench.models.weights import WeightsFileError, load_error_reason

        marker = "Unsupported" if isinstance(exc, pickle.UnpicklingError) else "failed"
        raise WeightsFileError(f"RobustBench checkpoint {files[0]} could not be loaded "
                               f"({load_error_reason(exc, marker)}); delete it and download it again") from None
    return model.eval()
