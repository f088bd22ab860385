"""The SLURM backend of :mod:`wsr_bench.jobs.executor`: every stage is one submitit job (``sbatch`` under the hood)
with the resources of the config's ``executor`` section, submitted as soon as the stages it needs have finished.

submitit (an optional extra: ``pip install 'wsr-bench[slurm]'``) pickles the stage and its :class:`ContextSpec`,
submits a job that unpickles them on a compute node, and brings back the stage's outcome; the job runs in the
submitting directory, with ``cpus_per_stage`` torch threads. Its files and logs go to ``executor.folder`` (default
``OUT/slurm/``). The parent (the ``wsr-bench`` command) stays on the login node, polls the jobs, and writes
``OUT/stages.jsonl``. Stop it and rerun: stages whose outputs check out are skipped and the others resume from their
own checkpoints (cancel the jobs still running first, ``scancel --name 'wsr-bench:*'``, so that no stage runs twice).

``WSR_BENCH_SUBMITIT_CLUSTER`` picks submitit's cluster instead of ``slurm``: ``local`` runs every job as a local
process through submitit's own scheduling code (the tests use it), ``debug`` runs them in this process.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from pathlib import Path
from typing import Any

from wsr_bench.jobs.stage import Stage
from wsr_bench.jobs.worker import (
    SLURM_EXTRA,
    ContextSpec,
    ExecutorOptions,
    Outcome,
    init_worker,
    one_line,
    run_in_worker,
)

logger = logging.getLogger(__name__)

#: the environment variable that sends the jobs to another submitit cluster (``local``, ``debug``) instead of slurm
CLUSTER_VAR = "WSR_BENCH_SUBMITIT_CLUSTER"
#: seconds between two looks at the running jobs (submitit asks squeue at most once per its own interval)
POLL_SECONDS = 2.0


def require_submitit() -> Any:
    """The submitit module, or a one-line ``ValueError`` naming the extra to install."""
    try:
        import submitit
    except ImportError:
        raise ValueError(f"--executor slurm needs submitit, which is not installed: {SLURM_EXTRA}") from None
    return submitit


def cluster() -> str:
    """The submitit cluster the jobs go to: ``slurm``, or :data:`CLUSTER_VAR`'s ``local`` / ``debug``."""
    name = os.environ.get(CLUSTER_VAR, "").strip() or "slurm"
    if name not in ("slurm", "local", "debug"):
        raise ValueError(f"{CLUSTER_VAR} must be slurm, local or debug, got {name!r}")
    if name == "slurm" and shutil.which("sbatch") is None:
        raise ValueError("--executor slurm: no sbatch on PATH (run it on a SLURM login node; "
                         f"{CLUSTER_VAR}=local runs the stages as local submitit jobs)")
    return name


def job_parameters(options: ExecutorOptions, name: str) -> dict[str, Any]:
    """submitit's parameters for one stage's job, from the config's ``executor`` section."""
    r = options.resources
    params: dict[str, Any] = {"name": name, "timeout_min": r.timeout_min, "cpus_per_task": r.cpus_per_stage,
                              "gpus_per_node": r.gpus_per_stage, "nodes": 1, "tasks_per_node": 1}
    if r.mem_gb is not None:
        params["mem_gb"] = r.mem_gb
    if r.partition:
        params["slurm_partition"] = r.partition
    if r.account:
        params["slurm_account"] = r.account
    return params


def run_remote(stage: Stage, spec: ContextSpec, threads: int, log_level: int, cwd: str) -> Outcome:
    """One stage's job: in the submitting directory, with ``threads`` torch threads, in a fresh context."""
    os.chdir(cwd)
    init_worker(threads, log_level)
    return run_in_worker(stage, spec)


class SlurmBackend:
    """Stages as submitit jobs; ``options.workers`` caps the jobs in flight (None: every ready stage)."""

    def __init__(self, options: ExecutorOptions, spec: ContextSpec):
        submitit = require_submitit()
        r = options.resources
        if r is None:
            raise ValueError("the slurm executor needs the config's executor section")
        self.options, self.spec = options, spec
        self.capacity = options.workers or 1_000_000
        folder = Path(r.folder) if r.folder else spec.folder / "slurm"
        self.executor = submitit.AutoExecutor(folder=folder / "%j", cluster=cluster())
        self.level = logging.getLogger("wsr_bench").getEffectiveLevel()

    def submit(self, stage: Stage) -> Any:
        self.executor.update_parameters(**job_parameters(self.options, f"wsr-bench:{stage.name}"))
        job = self.executor.submit(run_remote, stage, self.spec, self.options.threads, self.level, os.getcwd())
        logger.info("stage %s: submitted as job %s", stage.name, job.job_id)
        return job

    def wait(self, handles: list[Any]) -> list[Any]:
        while True:
            done = [job for job in handles if job.done()]
            if done:
                return done
            time.sleep(POLL_SECONDS)

    def outcome(self, handle: Any) -> Outcome:
        try:
            return handle.result()
        except Exception as exc:  # the job failed outside the stage (timeout, node failure, cancelled)
            return Outcome(None, f"job {handle.job_id}: {one_line(exc)}", str(exc))

    def close(self) -> None:
        pass  # jobs still running go on; a rerun skips what they finish
