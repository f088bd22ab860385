"""Generic checkpoints: atomic save, weights_only load with clear errors, RNG state round trips."""

import random

import numpy as np
import pytest
import torch

from wsr_bench.infra.checkpoint import CheckpointError, get_rng_state, load_checkpoint, save_checkpoint, set_rng_state


def _draws() -> tuple:
    return random.random(), float(np.random.rand()), torch.rand(3).tolist(), torch.randn(2).tolist()


def test_rng_state_round_trip_through_a_file(tmp_path):
    random.seed(1)
    np.random.seed(2)
    torch.manual_seed(3)
    np.random.randn()  # leave a cached Gaussian in NumPy's state
    save_checkpoint(tmp_path / "ck.pt", {"rng": get_rng_state()})
    expected = _draws()
    assert _draws() != expected  # the generators moved on
    set_rng_state(load_checkpoint(tmp_path / "ck.pt")["rng"])
    assert _draws() == expected


def test_save_load_nested_state_and_no_temp_files(tmp_path):
    model = torch.nn.Linear(3, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model(torch.ones(1, 3)).sum().backward()
    opt.step()
    state = {"model": model.state_dict(), "optimizer": opt.state_dict(), "epoch": 4, "history": [{"loss": 0.5}],
             "name": "x", "nothing": None, "shape": (2, 3)}
    path = save_checkpoint(tmp_path / "sub" / "checkpoint.pt", state)
    back = load_checkpoint(path)
    assert back["epoch"] == 4 and back["history"] == [{"loss": 0.5}] and back["shape"] == (2, 3)
    assert torch.equal(back["model"]["weight"], model.weight.detach())
    opt2 = torch.optim.SGD(torch.nn.Linear(3, 2).parameters(), lr=0.1, momentum=0.9)
    opt2.load_state_dict(back["optimizer"])
    assert sorted(p.name for p in (tmp_path / "sub").iterdir()) == ["checkpoint.pt"]


def test_overwrite_is_atomic_and_a_failed_write_keeps_the_old_file(tmp_path):
    path = tmp_path / "ck.pt"
    save_checkpoint(path, {"epoch": 1})
    with pytest.raises(TypeError):
        save_checkpoint(path, ["not", "a", "dict"])
    with pytest.raises(Exception):  # noqa: B017 - torch.save of a lambda fails mid-write
        save_checkpoint(path, {"epoch": 2, "bad": lambda: 0})
    assert load_checkpoint(path) == {"epoch": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["ck.pt"]


class _Custom:
    pass


def test_unsafe_corrupt_missing_and_non_dict_checkpoints_are_refused(tmp_path):
    torch.save({"obj": _Custom()}, tmp_path / "unsafe.pt")
    with pytest.raises(CheckpointError, match="not plain data.*_Custom"):
        load_checkpoint(tmp_path / "unsafe.pt")
    save_checkpoint(tmp_path / "good.pt", {"w": torch.zeros(100)})
    (tmp_path / "cut.pt").write_bytes((tmp_path / "good.pt").read_bytes()[:200])
    with pytest.raises(CheckpointError, match="unreadable or corrupt"):
        load_checkpoint(tmp_path / "cut.pt")
    with pytest.raises(FileNotFoundError, match="not found"):
        load_checkpoint(tmp_path / "missing.pt")
    torch.save([1, 2], tmp_path / "list.pt")
    with pytest.raises(CheckpointError, match="expected a dict"):
        load_checkpoint(tmp_path / "list.pt")
    assert issubclass(CheckpointError, ValueError)


def test_malformed_rng_state_is_a_clear_error():
    with pytest.raises(CheckpointError, match="RNG state is malformed"):
        set_rng_state({"python": (3, (1, 2), None)})
