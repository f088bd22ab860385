"""Adversarial attacks: :mod:`~wsr_bench.attacks.factory` turns ``(name, eps, norm, steps, ...)`` into an attack
callable (torchattacks, pyautoattack and the minimum-norm attacks behind one signature), and
:mod:`~wsr_bench.attacks.starts` keys pyautoattack's random starts by the image instead of its place in a batch.

The evaluation (:mod:`wsr_bench.evaluate`) and the search's strength estimators use these; the attacks themselves know
nothing of leaderboards or jobs. The most used names are re-exported here.
"""

from wsr_bench.attacks.factory import ATTACK_NAMES, RANDOM_STARTS, build_attack, build_pgd

__all__ = ["ATTACK_NAMES", "RANDOM_STARTS", "build_attack", "build_pgd"]
