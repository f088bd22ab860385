"""Read and write leaderboard entries as JSON files (atomic writes; one clear error per bad file)."""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

from wsr_bench.infra.atomic import atomic_write_text
from wsr_bench.leaderboard.schema import LeaderboardEntry, SchemaError

logger = logging.getLogger(__name__)


def check_writable(path: str | Path, force: bool = False) -> Path:
    """Refuse to overwrite ``path`` unless ``force`` (call it before a long evaluation, not after).

    Raises:
        FileExistsError: ``path`` exists and ``force`` is False.
    """
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{path} is a directory, expected a .json file path")
    if path.exists() and not force:
        raise FileExistsError(f"{path} already exists; pass --force to overwrite it")
    return path


def entry_json(entry: LeaderboardEntry) -> str:
    """The entry as indented JSON, except that each per-sample list (``samples.indices``, ``samples.break_eps``)
    stays on one line: 10,000 images make two long lines instead of 20,000 short ones."""
    d = entry.to_dict()
    samples = d.pop("samples")
    text = json.dumps(d, indent=2, allow_nan=False)
    if samples is None:
        block = "null"
    else:
        fields = [f"    {json.dumps(k)}: {json.dumps(v, allow_nan=False, separators=(',', ':'))}"
                  for k, v in samples.items()]
        block = "{\n" + ",\n".join(fields) + "\n  }"
    return text[: -len("\n}")] + f',\n  "samples": {block}\n}}\n'


def save_entry(entry: LeaderboardEntry, path: str | Path, force: bool = False) -> Path:
    """Write ``entry`` to ``path`` atomically (as :func:`entry_json`); refuses an existing file unless ``force``."""
    path = check_writable(path, force)
    atomic_write_text(path, entry_json(entry))
    logger.info("wrote leaderboard entry %s", path)
    return path


def load_entry(path: str | Path) -> LeaderboardEntry:
    """Read one entry.

    Raises:
        FileNotFoundError: no such file.
        ValueError: invalid JSON or schema (the message names the file).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"leaderboard entry {path} not found")
    try:
        return LeaderboardEntry.from_dict(json.loads(path.read_text()))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: invalid JSON ({exc})") from None
    except (SchemaError, TypeError) as exc:
        raise ValueError(f"{path}: {exc}") from None


def load_entries_with_paths(root: str | Path) -> list[tuple[Path, LeaderboardEntry]]:
    """All entries under ``root/entries/**/*.json`` with their files (sorted by path).

    Raises:
        FileNotFoundError: ``root`` does not exist.
        ValueError: a malformed entry (the message names the file).
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"leaderboard folder {root} does not exist")
    return [(p, load_entry(p)) for p in sorted((root / "entries").glob("**/*.json"))]


def load_entries(root: str | Path) -> list[LeaderboardEntry]:
    """All entries under ``root/entries/**/*.json`` (sorted by path)."""
    return [entry for _, entry in load_entries_with_paths(root)]


def slug(text: str) -> str:
    """File-name-safe version of a model name (``robustbench:Carmon2019`` -> ``robustbench-Carmon2019``)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-.") or "model"


def entry_path(root: str | Path, entry: LeaderboardEntry) -> Path:
    """Canonical location ``root/entries/<dataset>/<threat_model>/<model>.json``."""
    return Path(root) / "entries" / slug(entry.dataset) / slug(entry.threat_model) / f"{slug(entry.model)}.json"
