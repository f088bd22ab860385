"""Sanity checks: three deliberately masked models are each flagged; an honest model is not."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
from _wsr_eval_fixtures import digits, one_thread, trained_model  # noqa: F401

from wsr_bench.evaluate import evaluate_spectrum, run_sanity_checks
from wsr_bench.evaluate.sanity import CHECK_NAMES, _check_fgsm, _check_monotone, _check_square

EPS = [0.03, 0.10, 0.17, 0.25]


class Quantize(nn.Module):
    """Rounds inputs to 8 grey levels: the forward still works, every input gradient is exactly zero."""

    def forward(self, x):
        return torch.round(x * 8) / 8


class InputNoise(nn.Module):
    """Adds fresh Gaussian noise on every call: a randomised forward pass."""

    def forward(self, x):
        return (x + 0.05 * torch.randn_like(x)).clamp(0, 1)


@pytest.fixture(scope="module")
def data():
    _, _, x, y = digits()
    return x[:48], y[:48]


@pytest.fixture(scope="module")
def honest():
    return trained_model()


def _report(model, data):
    x, y = data
    return run_sanity_checks(model, x, y, eps=EPS, n_examples=48, device="cpu")


def test_honest_model_passes_every_check(honest, data):
    report = _report(honest, data)
    assert [c.name for c in report.checks] == list(CHECK_NAMES)
    assert report.passed, report.to_dict()
    assert report.probe["pgd_chance"] <= 0.2


def test_zero_gradient_model_is_flagged(honest, data):
    report = _report(nn.Sequential(Quantize(), honest), data)
    assert "nonzero_gradients" in report.flags
    # the masking is also visible from the outside: black-box Square beats PGD, PGD cannot reach chance
    assert "square_not_stronger_than_white_box" in report.flags
    assert "chance_at_large_eps" in report.flags


def test_softmax_output_model_is_flagged(honest, data):
    report = _report(nn.Sequential(honest, nn.Softmax(dim=1)), data)
    assert report.flags == ["logits_not_probabilities"]


def test_randomised_model_is_flagged(honest, data):
    report = _report(nn.Sequential(InputNoise(), honest), data)
    assert "deterministic_forward" in report.flags


def test_report_rides_along_with_the_spectrum_result(honest, data):
    x, y = data
    res = evaluate_spectrum(nn.Sequential(honest, nn.Softmax(dim=1)), x, y, eps=EPS, steps=5, device="cpu",
                            sanity=True)
    assert res.sanity is not None and res.sanity.flags == ["logits_not_probabilities"]
    assert res.to_dict()["sanity"]["flags"] == ["logits_not_probabilities"]


def test_curve_checks_fail_on_suspicious_numbers():
    probe = {"eps": [0.1, 0.2], "clean": 0.9, "pgd": {0.1: 0.4, 0.2: 0.6}, "fgsm": {0.1: 0.2, 0.2: 0.6},
             "square": 0.1, "white_box_at_square_eps": 0.4, "square_eps": 0.1}
    assert not _check_monotone(probe, None, tol=0.03).passed  # rises from 0.4 to 0.6
    assert not _check_fgsm(probe, tol=0.03).passed  # FGSM 0.2 < PGD 0.4
    assert not _check_square(probe, margin=0.002).passed  # Square 0.1 < white box 0.4

    class Raw:
        clean_accuracy = 0.9
        raw_accuracy = {"pgd": {0.1: 0.3, 0.2: 0.5}}

    good = dict(probe, pgd={0.1: 0.4, 0.2: 0.1})
    check = _check_monotone(good, Raw(), tol=0.03)
    assert not check.passed and "attack-all" in check.message
