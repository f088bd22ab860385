"""The stage graph executor (wsr_bench.jobs.executor): independent stages in worker processes, the same results as
one after another (a tiny `wsr-bench run` with 1 and 2 workers), resume, failures that stop only their dependents,
and bad input as one-line errors."""

from __future__ import annotations

import json
import os
import sys

import pytest
from _executor_stages import FailStage, WriteStage
from test_pipeline import TINY

from wsr_bench.cli import main
from wsr_bench.config import ExecutorConfig
from wsr_bench.jobs.executor import (
    ExecutorOptions,
    StageFailure,
    default_workers,
    ordering,
    resolve_executor,
    run_graph,
)
from wsr_bench.jobs.stage import JobContext, StageLog


def _log(folder):
    return [(r["stage"], r["skipped"]) for r in StageLog(folder).records()]


def _ctx(folder):
    return JobContext(StageLog(folder), "cpu", progress=False)


def test_independent_stages_run_in_worker_processes_and_the_parent_logs_them(tmp_path):
    a = WriteStage(name="a", path=tmp_path / "a", text="A")
    b = WriteStage(name="b", path=tmp_path / "b", text="B")
    c = WriteStage(name="c", needs=("a", "b"), path=tmp_path / "c", text="C")
    records = run_graph([a, b, c], _ctx(tmp_path), ExecutorOptions(workers=2))
    assert [r.stage for r in records] == ["a", "b", "c"] and not any(r.skipped for r in records)
    pids = {int(p.read_text().split()[1]) for p in (a.path, b.path, c.path)}
    assert os.getpid() not in pids  # every stage ran in a worker
    assert sorted(_log(tmp_path)) == [("a", False), ("b", False), ("c", False)]
    assert [r.skipped for r in run_graph([a, b, c], _ctx(tmp_path), ExecutorOptions(workers=2))] == [True] * 3


@pytest.mark.parametrize("workers", [1, 2])
def test_a_failed_stage_stops_its_dependents_and_lets_the_others_finish(tmp_path, workers):
    stages = [FailStage(name="bad", path=tmp_path / "bad"),
              WriteStage(name="child", needs=("bad",), path=tmp_path / "child", text="x"),
              WriteStage(name="grandchild", needs=("child",), path=tmp_path / "grandchild", text="x"),
              WriteStage(name="other", path=tmp_path / "other", text="x")]
    with pytest.raises(StageFailure) as exc:
        run_graph(stages, _ctx(tmp_path), ExecutorOptions(workers=workers))
    assert str(exc.value).startswith("stage(s) failed: bad (RuntimeError: bad broke); not run, as they need a "
                                     "failed stage: child, grandchild")
    assert "\n" not in str(exc.value)
    assert exc.value.failed == {"bad": "RuntimeError: bad broke"} and exc.value.blocked == ["child", "grandchild"]
    assert (tmp_path / "other").is_file() and not (tmp_path / "child").exists()
    assert _log(tmp_path) == [("other", False)]  # only what finished


def test_stages_that_write_the_same_output_run_one_after_the_other(tmp_path):
    first = WriteStage(name="search:a", path=tmp_path / "genotype.json", text="g")
    second = WriteStage(name="search:b", path=tmp_path / "genotype.json", text="g")
    other = WriteStage(name="other", path=tmp_path / "o", text="o")
    assert ordering([first, other, second]) == {"search:a": set(), "other": set(), "search:b": {"search:a"}}
    records = run_graph([first, other, second], _ctx(tmp_path), ExecutorOptions(workers=2))
    assert [r.skipped for r in records] == [False, False, True]  # the second found the first's output


def test_defaults_and_warnings():
    assert default_workers(1, cores=2) == 2 and default_workers(2, cores=2) == 1 and default_workers(4, cores=2) == 1
    options, warning = resolve_executor(ExecutorConfig(), workers=1, threads=1)
    assert options == ExecutorOptions("local", 1, 1, ExecutorConfig()) and warning is None
    options, warning = resolve_executor(ExecutorConfig(workers=3), threads=1)
    assert options.workers == 3
    _, warning = resolve_executor(ExecutorConfig(), workers=os.cpu_count() + 1, threads=1)
    assert warning.startswith(f"warning: {os.cpu_count() + 1} workers x 1 thread(s) on ")


def _run_cli(tmp_path, out, *extra):
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text("name: tiny\nseed: 0\ndevice: cpu\n")
    args = ["--threads", "1", "run", str(cfg), "--out", str(out), "--no-progress", *extra]
    for item in TINY:
        args += ["--set", item]
    return main(args)


def _results(out):
    """What a run must reproduce: the genotype, the weights and every entry's numbers (no timestamps, no timings)."""
    entries = {}
    for path in sorted((out / "leaderboard" / "entries").rglob("*.json")):
        e = json.loads(path.read_text())
        entries[path.name] = (e["clean_accuracy"], e["curves"], e["auc"], e["samples"], e["avg_robust_accuracy"])
    weights = {p.relative_to(out).as_posix(): p.read_bytes() for p in out.rglob("model.safetensors")}
    return (out / "genotype.json").read_text(), weights, entries


@pytest.mark.slow
def test_one_and_two_workers_give_identical_results_and_resume_alike(tmp_path, capsys):
    assert _run_cli(tmp_path, tmp_path / "one", "--workers", "1") == 0
    table_one = capsys.readouterr().out.split("\ndone in")[0]
    assert _run_cli(tmp_path, tmp_path / "two", "--workers", "2") == 0
    table_two = capsys.readouterr().out.split("\ndone in")[0]
    assert table_one == table_two
    one, two = _results(tmp_path / "one"), _results(tmp_path / "two")
    assert one == two and len(two[1]) == 3 and len(two[2]) == 2
    log = _log(tmp_path / "two")
    assert sorted(log) == sorted((s, False) for s in ("search", "train:wsrnet", "train:racl", "model", "eval:wsrnet",
                                                      "eval:racl", "leaderboard"))
    # a killed job: racl's exported model and its entry gone (its training checkpoint left): the rerun skips the
    # rest, resumes the training from its checkpoint and evaluates again, to the same numbers
    two_dir = tmp_path / "two"
    for path in (two_dir / "train" / "racl" / "model").iterdir():
        path.unlink()
    next((two_dir / "leaderboard" / "entries").rglob("racl.json")).unlink()
    assert _run_cli(tmp_path, two_dir, "--workers", "2") == 0
    rerun = dict(_log(two_dir)[len(log):])
    assert rerun == {"search": True, "train:wsrnet": True, "model": True, "eval:wsrnet": True, "train:racl": False,
                     "eval:racl": False, "leaderboard": False}
    assert _results(two_dir) == one


@pytest.mark.parametrize(("args", "message"), [
    (["--workers", "0"], "error: --workers must be >= 1, got 0\n"),
    (["--workers", "-2"], "error: --workers must be >= 1, got -2\n"),
])
def test_bad_workers_are_one_line_errors_and_write_nothing(tmp_path, capsys, args, message):
    assert _run_cli(tmp_path, tmp_path / "out", *args) == 2
    assert capsys.readouterr().err == message
    assert not (tmp_path / "out").exists()


def test_slurm_without_submitit_names_the_extra(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "submitit", None)  # import submitit raises ImportError
    assert _run_cli(tmp_path, tmp_path / "out", "--executor", "slurm") == 2
    err = capsys.readouterr().err
    assert err == "error: --executor slurm needs submitit, which is not installed: pip install 'wsr-bench[slurm]'\n"
    assert not (tmp_path / "out").exists()


def test_more_workers_than_cores_warns_and_a_failed_stage_is_one_line(tmp_path, capsys, monkeypatch):
    import wsr_bench.jobs.run

    seen = {}

    def fake(cfg, out, **kwargs):
        seen.update(kwargs)
        raise StageFailure({"train:racl": "RuntimeError: out of memory"}, ["eval:racl", "leaderboard"])

    monkeypatch.setattr(wsr_bench.jobs.run, "run_pipeline", fake)
    many = os.cpu_count() + 2
    assert _run_cli(tmp_path, tmp_path / "out", "--workers", str(many)) == 2
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith(f"warning: {many} workers x 1 thread(s) on ")
    assert err[1] == ("error: stage(s) failed: train:racl (RuntimeError: out of memory); not run, as they need a "
                      "failed stage: eval:racl, leaderboard (a rerun continues from what the others left)")
    assert len(err) == 2 and seen["executor"].workers == many and seen["executor"].kind == "local"


@pytest.mark.slow
def test_a_zoo_built_by_workers_is_published_and_loadable_here(tmp_path):
    """The tag is published by a worker process; the build's own process loads it through timm afterwards, as after
    a build in one process."""
    import timm
    from test_zoo import one_model_zoo

    from wsr_bench.jobs.zoo import build_zoo
    from wsr_bench.models import pretrained

    try:
        built = build_zoo(one_model_zoo(tmp_path), tmp_path / "run", progress=False, autoattack=False,
                          executor=ExecutorOptions(workers=2))
        assert not built[0].skipped and built[0].pgd_entry.is_file()
        sha = pretrained.read_manifest(tmp_path / "weights")["darts_v2.tiny_pgd"]["sha256"]
        assert json.loads(built[0].pgd_entry.read_text())["evaluation"]["weights_sha256"] == sha
        assert timm.create_model("darts_v2.tiny_pgd", pretrained=True) is not None
        assert {s for s, _ in _log(tmp_path / "run")} == {"train:darts_v2.tiny_pgd", "publish:darts_v2.tiny_pgd",
                                                            "eval:darts_v2.tiny_pgd:pgd2",
                                                            "publish:darts_v2.tiny_pgd:pgd2",
                                                            "leaderboard:darts_v2.tiny_pgd:pgd2"}
    finally:
        pretrained.register_published(pretrained.default_weights_dir())
