"""Tiny trained models and data shared by the evaluation tests (cached per test session, CPU, seconds)."""

from __future__ import annotations

import contextlib
import functools

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from wsr_bench.data.datasets import get_digits
from wsr_bench.search_space.ops import Normalize


def tiny_cnn(in_chans: int = 3, num_classes: int = 10, seed: int = 0) -> nn.Module:
    """A small CNN for 8x8 digits with normalization inside."""
    torch.manual_seed(seed)
    return nn.Sequential(
        Normalize((0.3,) * in_chans, (0.4,) * in_chans),
        nn.Conv2d(in_chans, 16, 3, padding=1), nn.ReLU(),
        nn.Conv2d(16, 32, 3, stride=2, padding=1), nn.ReLU(),
        nn.Flatten(), nn.Linear(32 * 4 * 4, num_classes),
    )


@functools.cache
def digits(image_size: int = 8) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(x_train, y_train, x_test, y_test) of scikit-learn digits at ``image_size``, fixed split."""
    x, y = get_digits(image_size)
    perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))
    x, y = x[perm], y[perm]
    return x[:1400], y[:1400], x[1400:], y[1400:]


def handwritten_pgd(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, steps: int,
                    generator: torch.Generator | None = None) -> torch.Tensor:
    """Independent Linf PGD (Madry et al.): uniform start, sign steps of eps*2.5/steps, projection, clamp."""
    alpha = eps * 2.5 / steps
    delta = (torch.rand(x.shape, generator=generator) * 2 - 1) * eps
    adv = (x + delta).clamp(0, 1)
    for _ in range(steps):
        adv.requires_grad_(True)
        loss = F.cross_entropy(model(adv), y)
        (g,) = torch.autograd.grad(loss, adv)
        adv = torch.min(torch.max(adv.detach() + alpha * g.sign(), x - eps), x + eps).clamp(0, 1)
    return adv.detach()


def _train(model: nn.Module, adv_eps: float, epochs: int, seed: int) -> nn.Module:
    x, y, _, _ = digits()
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(epochs):
        for idx in torch.randperm(len(x), generator=gen).split(100):
            xb, yb = x[idx], y[idx]
            if adv_eps > 0:
                model.eval()
                xb = handwritten_pgd(model, xb, yb, adv_eps, steps=3, generator=gen)
            model.train()
            opt.zero_grad()
            F.cross_entropy(model(xb), yb).backward()
            opt.step()
    return model.eval()


@functools.cache
def trained_model(adv_eps: float = 0.0, epochs: int = 6, seed: int = 0) -> nn.Module:
    """A tiny CNN trained on digits (adversarially with PGD-3 at ``adv_eps`` when > 0); cached.

    Trains on one thread: these tiny ops gain nothing from two, and a busy 2-core machine loses a lot.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _train(tiny_cnn(seed=seed), adv_eps, epochs, seed)
    finally:
        torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def one_thread(_seed_and_threads):
    """Tiny models run fastest on one thread, and a busy 2-core CI box punishes two (imported by the eval tests)."""
    torch.set_num_threads(1)
    yield


@contextlib.contextmanager
def small_autoattack_budget(max_restarts: int | None = None):
    """Every pyautoattack ``AutoAttack`` built inside gets a small budget (Square 100 queries, 2 target classes, and at
    most ``max_restarts`` APGD/FAB restarts when given), set through its own attributes after its ``_set_version``:
    the per-eps baseline and the sweeps alike, so comparisons between them stay exact and fast."""
    from pyautoattack import AutoAttack

    original = AutoAttack._set_version

    def small(self, version="standard"):
        original(self, version)
        self.square.n_queries = 100
        self.apgd_targeted.n_target_classes = 2
        self.fab.n_target_classes = 2
        if max_restarts is not None:
            self.apgd.n_restarts = min(self.apgd.n_restarts, max_restarts)
            self.fab.n_restarts = min(self.fab.n_restarts, max_restarts)

    AutoAttack._set_version = small
    try:
        yield
    finally:
        AutoAttack._set_version = original
