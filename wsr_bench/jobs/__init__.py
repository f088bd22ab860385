"""Jobs: the commands that run the pieces below end to end, written as stages (:mod:`~wsr_bench.jobs.stage`).

Each stage's output file is its hand-off and a stage skips itself when that output exists and checks out:
search -> ``genotype.json`` (:mod:`~wsr_bench.jobs.searching`), train -> ``model/``
(:mod:`~wsr_bench.jobs.training`), evaluate -> a leaderboard entry with its resume state
(:mod:`~wsr_bench.jobs.evaluating`), publish -> weights and manifest (:mod:`~wsr_bench.jobs.publishing`), and the
leaderboard pages (:mod:`~wsr_bench.jobs.reporting`). The recipes: ``wsr-bench run`` (:mod:`~wsr_bench.jobs.run`),
``wsr-bench zoo`` (:mod:`~wsr_bench.jobs.zoo`, its summary table :mod:`~wsr_bench.jobs.zoo_summary`) and
``wsr-bench eval`` (:mod:`~wsr_bench.jobs.eval`). ``run`` and ``zoo`` hand their stages to the graph executor
(:mod:`~wsr_bench.jobs.executor`: worker processes, or SLURM jobs through :mod:`~wsr_bench.jobs.slurm`). Nothing below
this layer imports it; only the CLI does.

This ``__init__`` imports nothing, so that ``wsr-bench zoo --summary`` stays light.
"""
