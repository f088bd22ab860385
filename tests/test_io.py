"""Atomic writes: whole files or nothing, readable modes, no temporary files left behind."""

import json
import stat

import pytest

from wsr_bench.infra.atomic import atomic_write_json, atomic_write_report, atomic_write_text


def test_new_result_files_are_world_readable_and_existing_modes_are_kept(tmp_path):
    path = tmp_path / "entry.json"
    atomic_write_json(path, {"a": 1})
    assert stat.S_IMODE(path.stat().st_mode) == 0o644  # not mkstemp's 0600
    path.chmod(0o600)
    atomic_write_text(path, "x")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and path.read_text() == "x"


def test_a_refused_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "r.json"
    atomic_write_json(path, {"acc": 0.5})
    with pytest.raises(ValueError):
        atomic_write_json(path, {"acc": float("nan")})
    assert json.loads(path.read_text()) == {"acc": 0.5}
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]


def test_report_writes_json_and_markdown_beside_it(tmp_path):
    atomic_write_report(tmp_path / "res" / "bench.json", {"speedup": 3.1}, "# bench\n")
    assert json.loads((tmp_path / "res" / "bench.json").read_text()) == {"speedup": 3.1}
    assert (tmp_path / "res" / "bench.md").read_text() == "# bench\n"
