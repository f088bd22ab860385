"""Shared test set-up: quiet warnings from third-party imports, deterministic CPU threads."""

import warnings

import pytest
import torch

warnings.filterwarnings("ignore", category=FutureWarning)
torch.set_num_threads(1)  # tiny models: one thread is fastest and immune to oversubscription (module fixtures too)


@pytest.fixture(autouse=True)
def _seed_and_threads():
    torch.manual_seed(0)
    torch.set_num_threads(1)  # tiny models: one thread is fastest, and immune to oversubscription
    yield
