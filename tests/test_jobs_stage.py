"""The stage protocol of ``wsr_bench.jobs``: a done stage skips itself, every stage is timed into one JSONL log, a
list must put each stage after those it needs, and the stages of a job are plain objects that pickle."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest
from _executor_stages import WriteStage

from wsr_bench.config import load_config
from wsr_bench.jobs.stage import JobContext, StageLog, check_order, run_stages


def test_a_done_stage_skips_itself_and_every_stage_is_logged(tmp_path):
    ctx = JobContext(StageLog(tmp_path), "cpu", progress=False)
    stages = [WriteStage(name="a", path=tmp_path / "a.txt", text="A"),
              WriteStage(name="b", needs=("a",), path=tmp_path / "b.txt", text="B")]
    assert [r.skipped for r in run_stages(stages, ctx)] == [False, False]
    (tmp_path / "b.txt").write_text("stale")  # an output that does not check out is made again
    assert [r.skipped for r in run_stages(stages, ctx)] == [True, False]
    log = [json.loads(line) for line in (tmp_path / "stages.jsonl").read_text().splitlines()]
    assert [(r["stage"], r["skipped"]) for r in log] == [("a", False), ("b", False), ("a", True), ("b", False)]
    assert set(log[0]) == {"stage", "skipped", "seconds", "cpu_seconds", "time"}
    assert StageLog(tmp_path).records() == log


def test_a_stage_must_come_after_the_stages_it_needs(tmp_path):
    a = WriteStage(name="a", path=tmp_path / "a", text="")
    b = WriteStage(name="b", needs=("a",), path=tmp_path / "b", text="")
    check_order([a, b])
    with pytest.raises(ValueError, match="stage 'b' needs a, which do not come before it"):
        check_order([b, a])
    with pytest.raises(ValueError, match="stage 'a' appears twice"):
        check_order([a, a])


def test_the_stages_of_run_and_zoo_are_plain_and_pickle(tmp_path):
    from wsr_bench.jobs.run import run_stages_of
    from wsr_bench.jobs.zoo import member_stages

    cfg = load_config(None, ["run.baselines=[racl]"])
    stages = run_stages_of(cfg, tmp_path)
    assert [s.name for s in stages] == ["search", "train:wsrnet", "train:racl", "model", "eval:wsrnet", "eval:racl",
                                        "leaderboard"]
    check_order(stages)
    assert pickle.loads(pickle.dumps(stages)) == stages
    zoo = load_config(Path(__file__).resolve().parents[1] / "configs" / "zoo_fashion.yaml")
    for member in zoo.zoo.models:
        found = member_stages(zoo, member, tmp_path, 10_000)
        check_order(found)
        assert pickle.loads(pickle.dumps(found)) == found
