"""Epsilon-spectrum evaluation: robust accuracy as a curve over perturbation strength, with sanity checks,
pass counting, RobustBench models and the step from a result to a leaderboard entry."""

from wsr_bench.evaluate.counting import CountingModel, PassCount
from wsr_bench.evaluate.entry import evaluate_to_entry, result_to_entry
from wsr_bench.evaluate.model_loading import LoadedModel, load_eval_model
from wsr_bench.evaluate.options import EntryLabels, EvalRuntime, SpectrumOptions
from wsr_bench.evaluate.robustbench_bridge import load_robustbench_model
from wsr_bench.evaluate.sanity import SanityCheck, SanityProbe, SanityReport, run_sanity_checks
from wsr_bench.evaluate.spectrum import AdversarialExampleError, SpectrumResult, evaluate_spectrum, verify_adversarial

__all__ = [
    "AdversarialExampleError", "CountingModel", "EntryLabels", "EvalRuntime", "LoadedModel", "PassCount",
    "SanityCheck", "SanityProbe", "SanityReport",
    "SpectrumOptions", "SpectrumResult", "evaluate_spectrum", "evaluate_to_entry", "load_eval_model",
    "load_robustbench_model", "result_to_entry", "run_sanity_checks", "verify_adversarial",
]
