"""Adversarial training: recipes (PGD-k, TRADES, FGSM-RS, multi-strength, clean), one ``train_epoch`` and one
``eval_epoch`` (reused by the search), and the retraining driver with checkpoints, exact resume and DDP::

    from wsr_bench.train import TrainRecipe, train_epoch, eval_epoch, adversarial_examples

``recipes`` (what a step learns from), ``loop`` (the two epoch functions), ``augment`` (crop/flip/cutout),
``driver`` (``train_model`` / ``run_training``: optimizer, schedule, checkpoints, metrics, export).
"""

from wsr_bench.train.driver import (
    ResumeError,
    TrainFolder,
    TrainingDivergedError,
    TrainSummary,
    build_model,
    build_optimizer,
    build_scheduler,
    default_model_name,
    model_identity,
    run_training,
    train_model,
)
from wsr_bench.train.loop import EpochRuntime, LoopOptions, NonFiniteLossError, eval_epoch, train_epoch
from wsr_bench.train.recipes import RECIPES, TrainRecipe, adversarial_examples, attack_batch, recipe_loss

__all__ = ["RECIPES", "EpochRuntime", "LoopOptions", "NonFiniteLossError", "ResumeError", "TrainFolder", "TrainRecipe",
           "TrainSummary",
           "TrainingDivergedError", "adversarial_examples", "attack_batch",
           "build_model", "build_optimizer", "build_scheduler", "default_model_name", "eval_epoch", "model_identity",
           "recipe_loss", "run_training", "train_epoch", "train_model"]
