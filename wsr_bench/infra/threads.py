"""CPU threads: one torch thread per process by default, and OpenMP threads that sleep instead of spin.

wsr-bench's networks are small (C=4-8, a few cells, 16x16-28x28 images): a second intra-op thread buys little, and
OpenMP's idle threads spin while they wait, so a thread the OS has descheduled stalls every parallel region. On the
2-core development machine a tiny search took 24 s with torch's own count (2 threads) on an idle machine and more
than 400 s (>16x) beside one process keeping a core busy; with 1 thread it took 24.8 s either way, with 2 threads
and ``OMP_WAIT_POLICY=PASSIVE`` 31.9 s beside the busy core (docs/performance.md, ``benchmarks/threads.py``).

The command line (``wsr-bench``) picks the torch thread count in this order:

1. ``--threads N``;
2. ``WSR_BENCH_THREADS=N``; ``WSR_BENCH_THREADS=torch`` leaves both the count and the wait policy to torch and
   OpenMP (the behaviour before this default existed);
3. ``OMP_NUM_THREADS`` or ``MKL_NUM_THREADS`` set in the environment: torch follows it and wsr-bench changes nothing;
4. otherwise :data:`DEFAULT_THREADS` (1).

Before torch loads it also sets ``OMP_WAIT_POLICY=PASSIVE`` unless the environment sets ``OMP_WAIT_POLICY`` (or
``WSR_BENCH_THREADS=torch``): OpenMP reads it once, when torch's OpenMP runtime loads, so it only takes effect when
set before ``import torch``. More threads than available cores (CPU affinity) prints a one-line warning.

The Python entry points (``run_search``, ``run_training``, ``train_model``, ``run_eval``, ``evaluate_spectrum``,
``evaluate_to_entry``, ``run_pipeline``, ``build_zoo``) call :func:`apply_default_threads`: once per process, the
first call sets the same default (steps 2-4), except that a count the caller set with ``torch.set_num_threads``
beforehand is kept. torch does not say whether its count was set, so a count other than torch's own start-up count
(the machine's core count: logical, physical or within the CPU affinity) counts as the caller's; to keep exactly
that count, call :func:`set_threads` (or set ``WSR_BENCH_THREADS``) instead. After the first call nothing is changed
again. The wait policy cannot be changed once torch is imported: export ``OMP_WAIT_POLICY=PASSIVE`` before starting
Python to get it in a script.

This module imports no torch at import time (``import wsr_bench`` stays light).
"""

from __future__ import annotations

import logging
import os
import sys

logger = logging.getLogger(__name__)

__all__ = ["DEFAULT_THREADS", "ENV_VAR", "TORCH_CHOICE", "apply_default_threads", "available_cores",
           "configure_cli", "env_threads", "oversubscription_warning", "resolve_threads", "set_threads",
           "set_wait_policy"]

#: torch threads per process when nobody asked for a count
DEFAULT_THREADS = 1
#: the environment variable that changes the default (a positive integer, or :data:`TORCH_CHOICE`)
ENV_VAR = "WSR_BENCH_THREADS"
#: ``WSR_BENCH_THREADS=torch``: torch's own thread count and OpenMP's own wait policy (the behaviour before)
TORCH_CHOICE = "torch"
#: the environment variables torch takes its own count from; when one is set, the default leaves torch alone
TORCH_COUNT_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")
WAIT_POLICY_VAR = "OMP_WAIT_POLICY"

_settled = False  # the process's count has been chosen (by the CLI, set_threads or apply_default_threads)


def available_cores() -> int:
    """CPU cores this process may run on (its CPU affinity where the OS reports one, else ``os.cpu_count()``)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def oversubscription_warning(n: int, cores: int | None = None) -> str | None:
    """The one-line warning for ``n`` threads on more than the available cores, or None."""
    cores = available_cores() if cores is None else cores
    if n <= cores:
        return None
    return (f"warning: {n} torch threads on {cores} available CPU core(s): OpenMP threads then wait for each other "
            f"(measured: >16x slower beside one busy core on 2 cores), see docs/performance.md")


def env_threads() -> int | str | None:
    """``WSR_BENCH_THREADS``: a positive count, :data:`TORCH_CHOICE`, or None when unset or empty; anything else is
    a ``ValueError``."""
    raw = os.environ.get(ENV_VAR, "").strip()
    if not raw:
        return None
    if raw.lower() == TORCH_CHOICE:
        return TORCH_CHOICE
    try:
        n = int(raw)
    except ValueError:
        n = 0
    if n < 1:
        raise ValueError(f"{ENV_VAR} must be a positive integer or '{TORCH_CHOICE}', got {raw!r}")
    return n


def resolve_threads(flag: int | None = None) -> tuple[int | None, str]:
    """``(count, source)`` by the rules of this module: ``flag`` (``--threads``), then ``WSR_BENCH_THREADS``, then
    ``OMP_NUM_THREADS``/``MKL_NUM_THREADS`` (count None: torch follows them), then :data:`DEFAULT_THREADS`.
    ``source`` is ``--threads``, ``WSR_BENCH_THREADS``, the variable's name or ``default``; count None means: leave
    torch's count alone. A count below 1 is a ``ValueError``."""
    if flag is not None:
        if flag < 1:
            raise ValueError("--threads must be >= 1")
        return flag, "--threads"
    choice = env_threads()
    if choice == TORCH_CHOICE:
        return None, ENV_VAR
    if choice is not None:
        return int(choice), ENV_VAR
    for var in TORCH_COUNT_VARS:
        if os.environ.get(var, "").strip():
            return None, var
    return DEFAULT_THREADS, "default"


def set_wait_policy() -> str | None:
    """Set ``OMP_WAIT_POLICY=PASSIVE`` in ``os.environ`` unless it is set already, ``WSR_BENCH_THREADS=torch``, or
    torch is already imported (OpenMP has read its environment then, and the variable would only leak into child
    processes). Returns the value set, or None."""
    if "torch" in sys.modules or os.environ.get(WAIT_POLICY_VAR, "").strip():
        return None
    if os.environ.get(ENV_VAR, "").strip().lower() == TORCH_CHOICE:
        return None
    os.environ[WAIT_POLICY_VAR] = "PASSIVE"
    return "PASSIVE"


def configure_cli(flag: int | None) -> str | None:
    """What ``wsr-bench`` does before running a command: the wait policy, then the thread count of
    :func:`resolve_threads`. Returns the oversubscription warning (for stderr) or None; raises ``ValueError`` for a
    bad ``--threads`` or ``WSR_BENCH_THREADS``.

    The package default goes in as ``OMP_NUM_THREADS`` when torch is not imported yet (so a command that never
    loads torch, e.g. ``leaderboard build``, does not load it for this); an explicit count, or any count once torch
    is loaded, goes through ``torch.set_num_threads``."""
    global _settled
    count, source = resolve_threads(flag)  # validate before changing anything
    set_wait_policy()
    _settled = True
    if count is None:
        return None
    if source == "default" and "torch" not in sys.modules:
        os.environ[TORCH_COUNT_VARS[0]] = str(count)  # exact: no MKL_NUM_THREADS is set (resolve_threads)
        return None
    import torch

    torch.set_num_threads(count)
    return oversubscription_warning(count)


def set_threads(n: int) -> None:
    """``torch.set_num_threads(n)``, kept by the entry points (:func:`apply_default_threads` changes nothing after
    it); logs the oversubscription warning when ``n`` exceeds the available cores."""
    global _settled
    if n < 1:
        raise ValueError(f"threads must be >= 1, got {n}")
    import torch

    torch.set_num_threads(n)
    _settled = True
    warning = oversubscription_warning(n)
    if warning:
        logger.warning(warning.removeprefix("warning: "))


def _torch_default_counts() -> set[int]:
    """The counts torch may start with when no variable sets it: the logical CPU count, the CPUs in the affinity
    mask, and the physical cores among them (from /proc/cpuinfo where it says)."""
    counts = {os.cpu_count() or 1, available_cores()}
    try:
        cpus = os.sched_getaffinity(0)
        cores, cpu = set(), None
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            pkg = None
            for line in f:
                key, _, value = line.partition(":")
                key = key.strip()
                if key == "processor":
                    cpu, pkg = int(value), None
                elif key == "physical id":
                    pkg = value.strip()
                elif key == "core id" and cpu in cpus:
                    cores.add((pkg, value.strip()))
        if cores:
            counts.add(len(cores))
    except (AttributeError, OSError, ValueError):
        pass
    return counts


def apply_default_threads() -> int | None:
    """Once per process, the package default for the Python entry points (see the module's docstring): returns
    the count it set, or None when it left torch alone (a later call, ``WSR_BENCH_THREADS=torch``,
    ``OMP_NUM_THREADS``/``MKL_NUM_THREADS`` set, or a count the caller set). ``WSR_BENCH_THREADS`` that is not a
    positive integer or ``torch`` is a ``ValueError``."""
    global _settled
    if _settled:
        return None
    count, source = resolve_threads()
    _settled = True
    if count is None:
        return None
    import torch

    if source == "default" and torch.get_num_threads() not in _torch_default_counts():
        return None  # the caller's own torch.set_num_threads
    if torch.get_num_threads() != count:
        torch.set_num_threads(count)
        logger.info("using %d CPU thread(s) for torch (%s; see wsr_bench.infra.threads)", count,
                    "the package default" if source == "default" else source)
    if source != "default":
        warning = oversubscription_warning(count)
        if warning:
            logger.warning(warning.removeprefix("warning: "))
    return count
