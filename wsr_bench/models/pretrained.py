"""Published pretrained weights: a manifest of ``<architecture>.<tag>`` names, each a timm pretrained tag.

The weights ship as package data in ``wsr_bench/weights/`` (or the folder named by the environment variable
``WSR_BENCH_WEIGHTS_DIR``, read at import): one ``<architecture>.<tag>.safetensors`` file per tag and a
``manifest.json`` that lists them::

    {
      "format": "wsr-bench-weights/1",
      "tags": {
        "wsrnet_basic.fmnist_pgd": {
          "architecture": "wsrnet_basic",      # a registered timm model of wsr-bench (or the generic "wsrnet")
          "tag": "fmnist_pgd",                  # the pretrained tag (no ".")
          "file": "wsrnet_basic.fmnist_pgd.safetensors",   # a plain name inside the weights folder
          "sha256": "<64 hex digits of the file>",
          "model_args": {                       # what create_model needs beyond num_classes / in_chans:
            "init_channels": 16, "layers": 8, "stem": "cifar",      # DARTS networks (C, cells, stem)
            "mean": [0.286], "std": [0.353],     # the normalisation inside the model (dataset statistics)
            "genotype": {...}                   # the generic "wsrnet" only: a Genotype dict
          },                                    # ("width" instead of C and cells for preact_resnet18)
          "num_classes": 10,
          "input_size": [1, 28, 28],            # channels, height, width of the training images
          "dataset": "fashion_mnist",
          "recipe": "PGD-7 (eps 0.1), 30 epochs, ...",      # how it was trained (text)
          "license": "mit",
          "entry": "leaderboard/entries/fashion_mnist/linf/wsrnet_basic.fmnist_pgd.json",  # from the repo root
          "clean_accuracy": 0.84,               # from that entry (null until it is evaluated)
          "avg_robust_accuracy": 0.41,          # mean over the paper's spectrum 0.03 / 0.10 / 0.17 / 0.25
          "evaluation": "AutoAttack, first 1,000 test images",   # which evaluation the two numbers come from
          "params": 123456                      # parameter count
        }
      }
    }

An absent manifest means no tags. Registration with timm: every tag of the manifest becomes a pretrained cfg of its
architecture (``file`` = the weights' path, ``num_classes``/``input_size`` from the manifest, ``mean``/``std`` zeros
and ones because inputs are [0,1] images and the model normalises inside, ``license``, ``notes`` = recipe and
leaderboard entry), so that::

    timm.list_pretrained("*fmnist*")
    timm.create_model("wsrnet_basic.fmnist_pgd", pretrained=True)   # offline: the manifest's model_args, the file

work with no overlay. Publishing a tag (writing its weights and manifest record) is a job's stage,
:func:`wsr_bench.jobs.publishing.publish_weights`; this module reads, checks and registers. The architectures'
modules (``wsrnet.py``, ``preact_resnet.py``) put the tags in their ``generate_default_cfgs`` dicts through
:func:`generate_cfgs` (the ``untrained`` tag stays each architecture's default, so a plain name keeps its
behaviour); :func:`register_published` re-registers every tag from another folder's manifest later (tests, a zoo
build that just published one). Before a tag's weights are loaded, the file is checked against the manifest: a
missing file is a ``FileNotFoundError``, a damaged one (sha256 mismatch or unreadable) a
:class:`~wsr_bench.models.weights.WeightsFileError`, each one line naming the file and the tag.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import re
from collections import deque
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from wsr_bench.infra.atomic import atomic_write_json
from wsr_bench.models.weights import WeightsFileError

__all__ = ["DEFAULT_TAG", "ENV_VAR", "FORMAT", "MANIFEST_NAME", "NOT_RECORDED", "active_weights_dir", "check_name",
           "default_weights_dir", "file_sha256", "generate_cfgs", "is_published", "package_weights_dir",
           "published_image_size", "published_tags", "read_manifest", "register_published",
           "registered_architectures", "resolve_create", "split_name", "valid_tag", "verify_weights", "weights_path",
           "weights_size", "write_manifest"]

FORMAT = "wsr-bench-weights/1"
MANIFEST_NAME = "manifest.json"
#: environment variable naming another weights folder (read when wsr-bench's models are first imported).
ENV_VAR = "WSR_BENCH_WEIGHTS_DIR"
#: the tag every architecture defaults to (no weights): ``timm.create_model("wsrnet_basic")`` resolves to it.
DEFAULT_TAG = "untrained"

_TAG_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")
_REQUIRED = ("architecture", "tag", "file", "sha256", "model_args", "num_classes", "input_size")
#: model arguments that are not recorded in a manifest (create_model's num_classes/in_chans come from the cfg; the
#: training-only ones do not change the weights).
NOT_RECORDED = ("num_classes", "in_chans", "drop_path_rate", "auxiliary")

_state: dict[str, Any] = {"dir": None, "tags": None}
#: architecture -> its default (untrained) cfg dict, filled by :func:`generate_cfgs` as the modules register.
_BASE_CFGS: dict[str, dict[str, Any]] = {}


# ------------------------------------------------------------------------------------------------ the manifest
def package_weights_dir() -> Path:
    """The weights folder shipped inside the package (``wsr_bench/weights``)."""
    return Path(__file__).resolve().parents[1] / "weights"


def default_weights_dir() -> Path:
    """``$WSR_BENCH_WEIGHTS_DIR`` when set, else :func:`package_weights_dir`."""
    env = os.environ.get(ENV_VAR, "").strip()
    return Path(env).expanduser() if env else package_weights_dir()


def active_weights_dir() -> Path:
    """The folder whose manifest is registered with timm now (:func:`register_published` changes it)."""
    if _state["dir"] is None:
        _state["dir"] = default_weights_dir()
    return _state["dir"]


def read_manifest(weights_dir: str | Path | None = None) -> dict[str, dict[str, Any]]:
    """The tags of ``weights_dir``'s manifest (default: the active folder), read now: ``{name: record}``.

    Raises:
        ValueError: a malformed manifest (one line naming the file).
    """
    folder = Path(weights_dir) if weights_dir is not None else active_weights_dir()
    return _load_manifest(folder)["tags"]


def published_tags() -> dict[str, dict[str, Any]]:
    """``{"<architecture>.<tag>": record}`` of the active folder's manifest (read once; an absent one: ``{}``)."""
    if _state["tags"] is None:
        _state["tags"] = read_manifest(active_weights_dir())
    return copy.deepcopy(_state["tags"])


def _published() -> dict[str, dict[str, Any]]:
    """The cached records themselves (read-only use inside this module)."""
    if _state["tags"] is None:
        published_tags()
    return _state["tags"]


def _load_manifest(folder: Path) -> dict[str, Any]:
    path = folder / MANIFEST_NAME
    if not path.is_file():
        return {"format": FORMAT, "tags": {}}
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"weights manifest {path} is unreadable: {exc}") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT or not isinstance(data.get("tags"), dict):
        raise ValueError(f"weights manifest {path} is malformed: expected {{'format': '{FORMAT}', 'tags': {{...}}}}")
    for name, record in data["tags"].items():
        missing = [k for k in _REQUIRED if not isinstance(record, dict) or k not in record]
        if missing:
            raise ValueError(f"weights manifest {path}: tag {name!r} lacks {', '.join(missing)}")
        if name != f"{record['architecture']}.{record['tag']}" or not _TAG_RE.match(str(record["tag"])):
            raise ValueError(f"weights manifest {path}: tag {name!r} does not match its architecture "
                             f"{record['architecture']!r} and tag {record['tag']!r}")
        file = str(record["file"])
        if Path(file).name != file or file in ("", ".", ".."):
            raise ValueError(f"weights manifest {path}: tag {name!r} names file {file!r}; expected a plain file name "
                             "inside the weights folder")
        size = record["input_size"]
        if not (isinstance(size, list) and len(size) == 3 and all(isinstance(v, int) and v > 0 for v in size)):
            raise ValueError(f"weights manifest {path}: tag {name!r} has input_size {size!r}; expected [C, H, W]")
    return data


# ------------------------------------------------------------------------------------------------ names
def split_name(name: str) -> tuple[str, str | None]:
    """``"wsrnet_basic.fmnist_pgd"`` -> ``("wsrnet_basic", "fmnist_pgd")``; ``"racl"`` -> ``("racl", None)``."""
    arch, _, tag = str(name).partition(".")
    return arch, (tag or None)


def is_published(name: str) -> bool:
    """Whether ``name`` is ``<architecture>.<tag>`` of a published tag (in the active manifest)."""
    return str(name) in _published()


def _tags_of(arch: str) -> list[str]:
    return [n for n, r in _published().items() if r["architecture"] == arch]


def _unknown_tag(arch: str, tag: str) -> ValueError:
    tags = _tags_of(arch)
    listed = ", ".join(tags) if tags else "none"
    return ValueError(f"unknown pretrained tag {tag!r} of {arch} ({arch}.{tag}); published tags of {arch}: {listed}")


def check_name(name: str) -> tuple[str, str | None]:
    """Split ``name`` and refuse a tag that is neither published nor ``untrained`` (one-line ``ValueError`` listing
    the architecture's published tags). Does not check that the architecture exists."""
    arch, tag = split_name(name)
    if tag is not None and tag != DEFAULT_TAG and f"{arch}.{tag}" not in _published():
        raise _unknown_tag(arch, tag)
    return arch, tag


def weights_path(name: str, *, weights_dir: str | Path | None = None) -> Path:
    """The weights file of the published tag ``name`` (in ``weights_dir``, default the active folder)."""
    if weights_dir is not None:
        tags = read_manifest(weights_dir)
        if name not in tags:
            raise ValueError(f"{name!r} is not published in {Path(weights_dir) / MANIFEST_NAME}")
        return Path(weights_dir) / tags[name]["file"]
    arch, tag = split_name(name)
    record = _published().get(str(name))
    if record is None:
        raise _unknown_tag(arch, tag or "")
    return active_weights_dir() / record["file"]


def weights_size(weights_dir: str | Path | None = None) -> int:
    """Total bytes of the weights files a manifest lists (those present)."""
    folder = Path(weights_dir) if weights_dir is not None else active_weights_dir()
    files = {r["file"] for r in read_manifest(folder).values()}
    return sum((folder / f).stat().st_size for f in files if (folder / f).is_file())


def published_image_size(name: str) -> int | None:
    """The image side a published tag was trained at (its ``input_size``), else None."""
    record = _published().get(str(name))
    return int(record["input_size"][-1]) if record else None


# ------------------------------------------------------------------------------------------------ checks
def file_sha256(path: str | Path) -> str:
    """The sha256 of a file (hex), read in blocks."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verify_weights(name: str) -> Path:
    """The published tag's weights file, checked against the manifest before anything loads it.

    Raises:
        FileNotFoundError: the file is missing.
        WeightsFileError: the file is damaged (sha256 differs from the manifest's) or unreadable.
    """
    path = weights_path(name)
    expected = str(_published()[name]["sha256"])
    if not path.exists():
        raise FileNotFoundError(f"weights file {path} of pretrained tag {name} is missing (listed in "
                                f"{active_weights_dir() / MANIFEST_NAME}); reinstall wsr-bench or republish the tag")
    try:
        actual = file_sha256(path)
    except OSError as exc:
        raise WeightsFileError(f"weights file {path} of pretrained tag {name} is unreadable: "
                               f"{exc.strerror or type(exc).__name__}") from None
    if actual != expected:
        raise WeightsFileError(f"weights file {path} of pretrained tag {name} is damaged: sha256 {actual} differs "
                               f"from the manifest's {expected}")
    return path


def resolve_create(variant: str, pretrained: bool, kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """The keyword arguments an architecture's timm entry point builds with, for the tag timm passes it.

    ``timm.create_model("wsrnet_basic.fmnist_pgd")`` calls the entry point with ``pretrained_cfg="fmnist_pgd"``:
    a published tag's ``model_args`` become defaults (explicit keyword arguments still win). An unknown tag is a
    one-line ``ValueError``; with ``pretrained`` the weights must come from a published tag (whose file is checked
    here: :func:`verify_weights`) or from a local file (``pretrained_cfg_overlay=dict(file=...)`` or a
    ``pretrained_cfg`` dict with ``file``).
    """
    kwargs = dict(kwargs)
    tag = kwargs.get("pretrained_cfg")
    record = None
    if isinstance(tag, str):
        check_name(f"{variant}.{tag}")
        record = _published().get(f"{variant}.{tag}")
        if record is not None:
            args = copy.deepcopy(record["model_args"])
            for key in ("mean", "std"):
                if key in args:
                    args[key] = tuple(args[key])
            kwargs = {**args, **kwargs}
    if pretrained:
        overlay = kwargs.get("pretrained_cfg_overlay") or {}
        cfg = kwargs.get("pretrained_cfg")
        if overlay.get("file") or (isinstance(cfg, dict) and cfg.get("file")):
            return kwargs
        if record is not None:
            verify_weights(f"{variant}.{tag}")
            return kwargs
        tags = _tags_of(variant)
        if tags:
            raise ValueError(f"{variant}: pretrained=True needs a published tag ({', '.join(tags)}) or local weights: "
                             "pretrained_cfg_overlay=dict(file='model.safetensors')")
        raise ValueError(f"{variant}: no published weights are bundled; pass local ones with "
                         "pretrained_cfg_overlay=dict(file='model.safetensors')")
    return kwargs


# ------------------------------------------------------------------------------------------------ timm registration
def _tag_cfg(base: Mapping[str, Any], record: Mapping[str, Any], folder: Path) -> dict[str, Any]:
    """The pretrained cfg of a published tag: its architecture's default cfg with the tag's file, sizes and notes."""
    c, h, w = (int(v) for v in record["input_size"])
    args = record.get("model_args", {})
    cfg = dict(base)
    base_size = base.get("input_size")
    pool = base.get("pool_size")
    if pool and base_size:  # the final maps scale with the input: DARTS 8x8 at 32 -> 7x7 at 28, ResNet 4x4 -> 4x4
        pool = tuple(-(-p * s // b) for p, s, b in zip(pool, (h, w), base_size[1:], strict=True))
    notes = [str(record.get("recipe") or "")]
    if record.get("entry"):
        notes.append(f"leaderboard entry: {record['entry']}")
    accuracy = ""
    if record.get("clean_accuracy") is not None and record.get("avg_robust_accuracy") is not None:
        accuracy = (f"; clean accuracy {record['clean_accuracy']:.4f}, average robust accuracy "
                    f"{record['avg_robust_accuracy']:.4f}")
    cfg.update(
        file=str(folder / record["file"]), num_classes=int(record["num_classes"]), input_size=(c, h, w),
        pool_size=pool, mean=(0.0,) * c, std=(1.0,) * c, license=record.get("license") or base.get("license"),
        notes=tuple(n for n in notes if n),
        description=f"{record.get('dataset', '?')} {c}x{h}x{w}: inputs in [0,1]; the model normalises inside with "
                    f"the dataset mean/std {tuple(args.get('mean', ()))}/{tuple(args.get('std', ()))}{accuracy}")
    return cfg


def _published_cfgs(arch: str, folder: Path, records: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    base = _BASE_CFGS[arch]
    return {name: _tag_cfg(base, r, folder) for name, r in records.items() if r["architecture"] == arch}


def generate_cfgs(cfgs: Mapping[str, dict[str, Any]]) -> dict[str, Any]:
    """timm's ``generate_default_cfgs`` of ``cfgs`` (``"<arch>.untrained": cfg`` entries) plus every published tag
    of those architectures, with ``untrained`` kept first (the default) in each."""
    from timm.models import generate_default_cfgs

    full = dict(cfgs)
    for name, cfg in cfgs.items():
        arch, tag = split_name(name)
        if tag == DEFAULT_TAG:
            _BASE_CFGS[arch] = dict(cfg)
            full.update(_published_cfgs(arch, active_weights_dir(), _published()))
    out = generate_default_cfgs(full)
    for default in out.values():
        if DEFAULT_TAG in default.tags:
            default.tags.remove(DEFAULT_TAG)
            default.tags.appendleft(DEFAULT_TAG)
    return out


def register_published(manifest_dir: str | Path | None = None) -> list[str]:
    """Make ``manifest_dir``'s manifest (default: :func:`default_weights_dir`) the active one and (re)register its
    tags with timm, replacing the tags registered before; returns the names registered.

    Uses timm 1.0's registry tables (``timm.models._registry``), as ``register_model`` fills them.
    """
    from timm.models import _registry as reg
    from timm.models._pretrained import PretrainedCfg

    folder = Path(manifest_dir) if manifest_dir is not None else default_weights_dir()
    records = read_manifest(folder)  # raises before anything changes
    _state["dir"], _state["tags"] = folder, records
    names = []
    for arch in _BASE_CFGS:
        default = reg._model_default_cfgs.get(arch)
        if default is None:  # its module has not finished registering; generate_cfgs will pick the tags up
            continue
        for tag in [t for t in default.tags if t != DEFAULT_TAG]:
            name = f"{arch}.{tag}"
            default.cfgs.pop(tag, None)
            reg._model_pretrained_cfgs.pop(name, None)
            reg._model_has_pretrained.discard(name)
            if name in reg._model_with_tags[arch]:
                reg._model_with_tags[arch].remove(name)
        default.tags = deque(t for t in default.tags if t == DEFAULT_TAG)
        default.is_pretrained = False
        for name, cfg in _published_cfgs(arch, folder, records).items():
            tag = split_name(name)[1]
            pc = replace(PretrainedCfg(**cfg), architecture=arch, tag=tag)
            default.cfgs[tag] = pc
            default.tags.append(tag)
            default.is_pretrained = True
            reg._model_pretrained_cfgs[name] = pc
            reg._model_has_pretrained.add(name)
            reg._model_with_tags[arch].append(name)
            names.append(name)
    return sorted(names)


# ------------------------------------------------------------------------------------------------ for publishers
def valid_tag(tag: str) -> bool:
    """Whether ``tag`` may name a published tag (letters, digits, ``_``, ``-``; not ``untrained``)."""
    return bool(_TAG_RE.match(str(tag))) and tag != DEFAULT_TAG


def registered_architectures() -> list[str]:
    """The architectures whose modules registered with timm through :func:`generate_cfgs` (those a tag may name)."""
    return sorted(_BASE_CFGS)


def write_manifest(folder: str | Path, tags: Mapping[str, Mapping[str, Any]]) -> None:
    """Write ``folder/manifest.json`` with ``tags`` atomically (the publisher, :mod:`wsr_bench.jobs.publishing`,
    builds the records; :func:`read_manifest` checks them on the way back in)."""
    atomic_write_json(Path(folder) / MANIFEST_NAME, {"format": FORMAT, "tags": dict(tags)})
