"""Shared fixtures: float64 by default for physics checks, tiny grids; a private project folder."""

import os
import tempfile

import pytest
import torch

# training jobs and their checkpoints go to a throw-away project, never the user's own
os.environ["CRANE_VIZ_PROJECT"] = tempfile.mkdtemp(prefix="crane-viz-project-")


@pytest.fixture(autouse=True)
def _deterministic():
    torch.manual_seed(0)
    yield
