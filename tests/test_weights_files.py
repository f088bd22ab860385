"""Unreadable weights files are one-line errors with exit code 2, never tracebacks (issue 11, item 5).

Each bad file (not safetensors, truncated, empty, a directory, a pickle that ``weights_only`` refuses, something
other than a state dict) goes through ``load_state_dict_file``, through ``wsr-bench eval --checkpoint``, through an
exported model folder and through the RobustBench loader.
"""

from __future__ import annotations

import argparse
import os
import pickle
import shutil

import pytest
import timm
import torch
from _wsr_eval_fixtures import one_thread  # noqa: F401
from safetensors.torch import save_file

import wsr_bench.models as wm
from wsr_bench.cli import main
from wsr_bench.models import WeightsFileError, load_exported, load_state_dict_file


def _good_safetensors(path):
    save_file({"w": torch.zeros(64, 8)}, str(path))
    return path.read_bytes()


def _good_torch(path):
    torch.save({"w": torch.zeros(64, 8)}, path)
    return path.read_bytes()


def make_bad(tmp_path, kind: str):
    """One bad weights file (or directory) of the given kind; returns its path."""
    if kind == "not-safetensors":
        path = tmp_path / "garbage.safetensors"
        path.write_bytes(os.urandom(2000))
    elif kind == "text-as-safetensors":
        path = tmp_path / "notes.safetensors"
        path.write_text("these are not weights\n" * 50)
    elif kind == "truncated-safetensors":
        data = _good_safetensors(tmp_path / "full.safetensors")
        path = tmp_path / "truncated.safetensors"
        path.write_bytes(data[: len(data) // 2])
    elif kind == "empty-safetensors":
        path = tmp_path / "empty.safetensors"
        path.write_bytes(b"")
    elif kind == "truncated-torch":
        data = _good_torch(tmp_path / "full.pt")
        path = tmp_path / "truncated.pt"
        path.write_bytes(data[: len(data) // 2])
    elif kind == "empty-torch":
        path = tmp_path / "empty.pt"
        path.write_bytes(b"")
    elif kind == "refused-pickle":
        path = tmp_path / "namespace.pt"
        torch.save({"w": torch.zeros(2), "args": argparse.Namespace(lr=0.1)}, path)
    elif kind == "plain-pickle":
        path = tmp_path / "plain.pkl"
        path.write_bytes(pickle.dumps({"w": [1, 2, 3]}, protocol=4))
    elif kind == "not-a-dict":
        path = tmp_path / "list.pt"
        torch.save([torch.zeros(2)], path)
    elif kind == "non-tensor-values":
        path = tmp_path / "numbers.pt"
        torch.save({"w": torch.zeros(2), "epoch": 3}, path)
    elif kind == "directory":
        path = tmp_path / "weights.safetensors"
        path.mkdir()
    else:
        raise AssertionError(kind)
    return path


BAD = {
    "not-safetensors": "is not a readable safetensors file",
    "text-as-safetensors": "is not a readable safetensors file",
    "truncated-safetensors": "is not a readable safetensors file",
    "empty-safetensors": "is empty",
    "truncated-torch": "truncated or not a torch checkpoint",
    "empty-torch": "is empty",
    "refused-pickle": "weights_only loading refuses (Unsupported global: GLOBAL argparse.Namespace",
    "plain-pickle": "is not a torch checkpoint or safetensors file",
    "not-a-dict": "holds a list, not a state dict",
    "non-tensor-values": "'epoch' holds a int, not a tensor",
    "directory": "is a directory",
}


@pytest.mark.parametrize("kind", sorted(BAD))
def test_load_state_dict_file_names_the_problem(tmp_path, kind):
    path = make_bad(tmp_path, kind)
    with pytest.raises(WeightsFileError, match=BAD[kind].replace("(", r"\(")) as info:
        load_state_dict_file(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)
    with pytest.raises(FileNotFoundError, match="weights file not found"):
        load_state_dict_file(tmp_path / "missing.safetensors")


@pytest.mark.parametrize("kind", sorted(BAD))
def test_eval_with_a_bad_checkpoint_is_a_one_line_error(tmp_path, capsys, kind):
    path = make_bad(tmp_path, kind)
    code = main(["eval", "--model", "darts_v2", "--checkpoint", str(path), "--n-examples", "2", "--eps", "0.03",
                 "--steps", "1", "--no-progress", "--no-sanity", "--out", str(tmp_path / "entry.json")])
    err = capsys.readouterr().err
    expected = "is a directory" if kind == "directory" else BAD[kind]
    assert code == 2, err
    assert err.startswith("error: ") and err.count("\n") == 1 and expected in err and "Traceback" not in err
    assert not (tmp_path / "entry.json").exists()


@pytest.mark.parametrize("kind", ["not-safetensors", "truncated-safetensors", "empty-safetensors"])
def test_an_exported_folder_with_bad_weights_is_a_one_line_error(tmp_path, capsys, kind):
    folder = tmp_path / "model"
    wm.export_model(timm.create_model("wsrnet_basic", init_channels=4, layers=3, num_classes=10), folder)
    shutil.copyfile(make_bad(tmp_path, kind), folder / "model.safetensors")
    with pytest.raises(WeightsFileError, match=BAD[kind]):
        load_exported(folder)
    code = main(["eval", "--model", str(folder), "--n-examples", "2", "--eps", "0.03", "--steps", "1",
                 "--no-progress", "--no-sanity"])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: ") and err.count("\n") == 1 and BAD[kind] in err


@pytest.mark.parametrize("kind", ["truncated-torch", "refused-pickle", "empty-torch"])
def test_a_bad_robustbench_checkpoint_is_a_clear_error(tmp_path, kind):
    from wsr_bench.evaluate.robustbench_bridge import load_robustbench_model

    target = tmp_path / "cifar10" / "Linf" / "Standard.pt"
    target.parent.mkdir(parents=True)
    shutil.copyfile(make_bad(tmp_path, kind), target)
    with pytest.raises(WeightsFileError, match=f"RobustBench checkpoint {target} could not be loaded"):
        load_robustbench_model("Standard", tmp_path, "cifar10", "Linf")
