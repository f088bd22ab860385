"""Estimators that make Wsr-NAS cheap: AN-Estimators for adversarial noise (``noise``) and the validation-loss
estimator of EWSS (``val_loss``, imported from its module)."""

from wsr_bench.estimators.anchors import pgd_noise
from wsr_bench.estimators.noise import ESTIMATORS, NoiseEstimator, NoiseMemory, build_estimator, train_estimator

__all__ = ["ESTIMATORS", "NoiseEstimator", "NoiseMemory", "build_estimator", "pgd_noise", "train_estimator"]
