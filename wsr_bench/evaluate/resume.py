"""Per-batch progress of a spectrum evaluation on disk, so that a killed evaluation resumes where it stopped.

An evaluation that writes the entry ``E.json`` keeps its progress in ``E.json.state/``::

    E.json.state/
        settings.json        what the progress belongs to: hashes of the model weights and of the images/labels
                             (exact bytes), n, eps, attacks, norm, steps, seed, batch size and every sweep option;
                             a resume must match it exactly
        clean/e000_b00003.pt the clean pass, batch 3: predictions and pass counts
        pgd/e002_b00001.pt   attack "pgd" at the third strength, batch 1: the batch's sample ids, which of them the
                             attack fooled (so their breaking eps), pass counts, verified examples and, for the
                             warm-started sweep, the samples' worst iterates and margins
        minnorm/e000_b00000.pt  the min-norm attack: per-sample radii
        autoattack.screen/, autoattack/, autoattack.b0/ ...   a chain swept downward or by bisection: its screen
                             (APGD-CE) at each eps, the whole chain at each eps, the chain in bisection round 0

Each batch file is written atomically (temporary sibling + rename, :mod:`wsr_bench.infra.atomic`) by the process that
ran the batch, so a SIGKILL at any moment leaves only whole files: a batch is either done or redone. The batches are
fixed by the settings (chunks of the samples still to attack, in index order), never by the number of processes,
so a state written by 4 processes resumes in 1 and vice versa (on one machine or a shared file system).
Writes are not fsync'ed: they survive a killed process, not a power cut.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import shutil
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from wsr_bench.infra.atomic import atomic_write_json, atomic_write_with

logger = logging.getLogger(__name__)

#: Version of the folder layout; a state of another version is refused on resume.
STATE_VERSION = 1
SETTINGS_FILE = "settings.json"
_BATCH_FILE = re.compile(r"e(\d{3})_b(\d{5})\.pt")


def state_dir_for(out: str | Path) -> Path:
    """The state folder of the entry ``out``: ``out`` + ``.state`` (``E.json`` -> ``E.json.state/``)."""
    out = Path(out)
    return out.with_name(out.name + ".state")


def check_no_stale_state(folder: str | Path, resume: bool) -> None:
    """Refuse to start over an existing state unless resuming (so nobody silently discards days of progress).

    Raises:
        FileExistsError: ``folder`` exists and ``resume`` is false (a one-line message naming it).
    """
    if not resume and Path(folder).exists():
        raise FileExistsError(f"{folder} holds the progress of an earlier evaluation; pass --resume to continue it, "
                              f"or delete the folder to start over")


def tensor_sha256(*tensors: torch.Tensor) -> str:
    """Hex SHA-256 of the tensors' dtypes, shapes and exact bytes (float bits, not rounded values)."""
    h = hashlib.sha256()
    for t in tensors:
        t = t.detach().cpu().contiguous()
        h.update(f"{t.dtype}{tuple(t.shape)}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def model_sha256(model: nn.Module) -> str:
    """Hex SHA-256 of a model's state dict (names, dtypes, shapes, exact bytes): the weights the state belongs to."""
    h = hashlib.sha256()
    for name, t in model.state_dict().items():
        h.update(name.encode())
        h.update(tensor_sha256(t).encode())
    return h.hexdigest()


class SweepState:
    """The batch files of one state folder, as seen when the evaluation started (``done`` is that snapshot).

    Batches finished during this run are not re-read: every process keeps them from the exchange of records.
    """

    def __init__(self, folder: str | Path, done: set[tuple[str, int, int]]) -> None:
        self.folder = Path(folder)
        self.done = set(done)

    def path(self, stage: str, eps_index: int, batch: int) -> Path:
        return self.folder / stage / f"e{eps_index:03d}_b{batch:05d}.pt"

    def load(self, stage: str, eps_index: int, batch: int) -> dict[str, Any] | None:
        """The record of a batch finished before this run started, else None."""
        if (stage, eps_index, batch) not in self.done:
            return None
        path = self.path(stage, eps_index, batch)
        try:
            return torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # noqa: BLE001 - any unreadable file is the same one-line error
            raise ValueError(f"cannot read the resume state file {path} ({exc}); delete it to redo that batch"
                             ) from None

    def save(self, stage: str, eps_index: int, batch: int, record: dict[str, Any]) -> None:
        """Write a finished batch's record atomically."""
        path = self.path(stage, eps_index, batch)
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_with(path, lambda tmp: torch.save(record, tmp))


def open_state(folder: str | Path, settings: dict[str, Any], resume: bool) -> SweepState:
    """Create the state folder for ``settings``, or (``resume``) check an existing one against them.

    Call it in one process (rank 0) before the others look at the folder; they get the returned ``done`` snapshot.

    Raises:
        FileExistsError: the folder exists and ``resume`` is false.
        ValueError: resuming a state made with other settings (naming the first differences), or an unreadable one.
    """
    folder = Path(folder)
    check_no_stale_state(folder, resume)
    wanted = json.loads(json.dumps({"state_version": STATE_VERSION, **settings}))
    if not (folder / SETTINGS_FILE).exists() and not any(folder.glob("*/*.pt")):  # new, or killed before settings
        if resume:
            logger.info("no resume state at %s: starting from the first batch", folder)
        folder.mkdir(parents=True, exist_ok=True)
        atomic_write_json(folder / SETTINGS_FILE, wanted)
        return SweepState(folder, set())
    try:
        stored = json.loads((folder / SETTINGS_FILE).read_text())
    except (OSError, ValueError) as exc:
        raise ValueError(f"cannot read {folder / SETTINGS_FILE} ({exc}); delete {folder} to start over") from None
    diff = _differences(stored, wanted)
    if diff:
        raise ValueError(f"cannot resume from {folder}: it was made with other settings ({'; '.join(diff[:3])}); "
                         f"rerun with the same settings, or delete the folder to start over")
    for tmp in folder.rglob(".*.tmp"):  # half-written files of a killed run
        tmp.unlink(missing_ok=True)
    done = set()
    for path in folder.glob("*/*.pt"):
        m = _BATCH_FILE.fullmatch(path.name)
        if m:
            done.add((path.parent.name, int(m.group(1)), int(m.group(2))))
    logger.info("resuming from %s: %d finished batches", folder, len(done))
    return SweepState(folder, done)


def _differences(stored: dict[str, Any], wanted: dict[str, Any]) -> list[str]:
    def show(v: Any) -> str:
        text = json.dumps(v)
        return text[:13] + "..." if len(text) > 16 and isinstance(v, str) else text

    keys = list(wanted) + [k for k in stored if k not in wanted]
    return [f"{k}: {show(stored.get(k))} in the state, {show(wanted.get(k))} now"
            for k in keys if stored.get(k) != wanted.get(k)]


def remove_state(folder: str | Path) -> None:
    """Delete a state folder (after its entry was written)."""
    folder = Path(folder)
    if folder.exists():
        shutil.rmtree(folder)
        logger.info("removed the resume state %s", folder)
