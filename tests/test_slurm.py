"""The SLURM backend (wsr_bench.jobs.slurm) through submitit's local cluster: every stage is a submitit job that
submitit's own scheduling code starts as a process here; the resources come from the config's executor section; a
rerun skips what the jobs finished."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from _executor_stages import FailStage, WriteStage

from wsr_bench.config import ExecutorConfig, load_config
from wsr_bench.jobs import slurm
from wsr_bench.jobs.executor import StageFailure, resolve_executor, run_graph
from wsr_bench.jobs.stage import JobContext, StageLog

submitit = pytest.importorskip("submitit")
TESTS = Path(__file__).resolve().parent


@pytest.fixture
def local_cluster(monkeypatch):
    """Jobs on submitit's local cluster, able to import this package and the test stages, polled often."""
    monkeypatch.setenv(slurm.CLUSTER_VAR, "local")
    path = [str(TESTS), str(TESTS.parent), os.environ.get("PYTHONPATH", "")]
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(p for p in path if p))
    monkeypatch.setattr(slurm, "POLL_SECONDS", 0.2)


def test_stages_run_as_submitit_jobs_and_a_rerun_skips_what_they_finished(tmp_path, local_cluster):
    cfg = load_config(None, ["executor.kind=slurm", "executor.partition=cpu", "executor.timeout_min=5"])
    options, warning = resolve_executor(cfg.executor)
    assert options.kind == "slurm" and options.workers is None and warning is None
    stages = [WriteStage(name="a", path=tmp_path / "a", text="A"),
              WriteStage(name="b", path=tmp_path / "b", text="B"),
              WriteStage(name="c", needs=("a", "b"), path=tmp_path / "c", text="C"),
              FailStage(name="bad", path=tmp_path / "bad"),
              WriteStage(name="after-bad", needs=("bad",), path=tmp_path / "x", text="X")]
    ctx = JobContext(StageLog(tmp_path), "cpu", progress=False)
    with pytest.raises(StageFailure, match=r"^stage\(s\) failed: bad \(RuntimeError: bad broke\); not run, as they "
                                           r"need a failed stage: after-bad"):
        run_graph(stages, ctx, options)
    pids = {int((tmp_path / n).read_text().split()[1]) for n in "abc"}
    assert os.getpid() not in pids and len(pids) == 3  # one job (process) per stage
    assert sorted(r["stage"] for r in StageLog(tmp_path).records()) == ["a", "b", "c"]
    jobs = _job_folders(tmp_path)
    assert len(jobs) == 4 and all(list(j.glob("*_log.out")) for j in jobs)  # submitit's files, one folder per job
    # the rerun: a, b, c are skipped without a job; the failing stage is tried again
    ok = [s for s in stages if s.name in "abc"]
    assert [r.skipped for r in run_graph(ok, ctx, options)] == [True, True, True]
    assert len(_job_folders(tmp_path)) == 4


def _job_folders(out: Path) -> list[Path]:
    return [p for p in (out / "slurm").iterdir() if p.name.isdigit()]  # OUT/slurm/<job id>/


def test_each_job_gets_the_resources_of_the_executor_section(tmp_path, monkeypatch):
    section = ExecutorConfig(kind="slurm", partition="gpu", account="lab", cpus_per_stage=4, gpus_per_stage=1,
                             mem_gb=16, timeout_min=90)
    options, _ = resolve_executor(section)
    assert options.threads == 4  # the job's torch threads: its CPUs
    assert slurm.job_parameters(options, "wsr-bench:train:racl") == {
        "name": "wsr-bench:train:racl", "timeout_min": 90, "cpus_per_task": 4, "gpus_per_node": 1, "nodes": 1,
        "tasks_per_node": 1, "mem_gb": 16, "slurm_partition": "gpu", "slurm_account": "lab"}
    # submitit turns them into the #SBATCH lines of the job (a stand-in srun: there is no SLURM here)
    srun = tmp_path / "bin" / "srun"
    srun.parent.mkdir()
    srun.write_text("#!/bin/sh\n")
    srun.chmod(0o755)
    monkeypatch.setenv("PATH", f"{srun.parent}{os.pathsep}{os.environ['PATH']}")
    executor = submitit.AutoExecutor(folder=tmp_path / "jobs", cluster="slurm")
    executor.update_parameters(**slurm.job_parameters(options, "wsr-bench:train:racl"))
    script = executor._executor._make_submission_file_text("python -m stage", "uid")
    for line in ("#SBATCH --partition=gpu", "#SBATCH --account=lab", "#SBATCH --cpus-per-task=4",
                 "#SBATCH --gpus-per-node=1", "#SBATCH --mem=16GB", "#SBATCH --time=90",
                 "#SBATCH --job-name=wsr-bench:train:racl"):
        assert line in script, script


def test_slurm_without_sbatch_or_with_an_unknown_cluster_is_a_one_line_error(monkeypatch):
    monkeypatch.delenv(slurm.CLUSTER_VAR, raising=False)
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(ValueError, match=r"^--executor slurm: no sbatch on PATH \(run it on a SLURM login node"):
        slurm.cluster()
    monkeypatch.setenv(slurm.CLUSTER_VAR, "ray")
    with pytest.raises(ValueError, match="WSR_BENCH_SUBMITIT_CLUSTER must be slurm, local or debug, got 'ray'"):
        slurm.cluster()


def test_bad_executor_sections_are_config_errors():
    from wsr_bench.config import ConfigError

    for override, message in [("executor.kind=ray", "executor.kind must be one of local, slurm, got 'ray'"),
                              ("executor.workers=0", "executor.workers must be >= 1, got 0"),
                              ("executor.gpus_per_stage=-1", "executor.gpus_per_stage must be >= 0, got -1"),
                              ("executor.timeout_min=0", "executor.timeout_min must be >= 1, got 0")]:
        with pytest.raises(ConfigError, match=message):
            load_config(None, [override])
    assert sys.modules["submitit"] is submitit
