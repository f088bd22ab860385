"""Infrastructure every layer above may use, and which knows nothing of networks, attacks or leaderboards: atomic
file writes (:mod:`~wsr_bench.infra.atomic`), CPU threads, run-time choices (device, seeds, memory layout,
precision), the files of a run folder, training checkpoints and ``torchrun`` process groups.

Nothing here imports another part of ``wsr_bench`` except :mod:`wsr_bench.rules` (the names of the run-time choices),
so any module may import it without closing an import cycle. This ``__init__`` is empty on purpose: importing one
helper must not load the others (``infra.atomic`` is torch-free, ``infra.checkpoint`` is not).
"""
