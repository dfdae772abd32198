"""Shared fixtures: float64 by default for physics checks, tiny grids."""

import pytest
import torch


@pytest.fixture(autouse=True)
def _deterministic():
    torch.manual_seed(0)
    yield
