"""Metric functions against hand-computable cases."""

import math

import numpy as np
import pytest
import torch

from crane_viz.analysis import metrics
from crane_viz.physics.presets import get_preset

P2 = get_preset("coherent-2d")


def stripes(size=64, period=16, axis=0):
    x = np.arange(size)
    prof = 0.5 + 0.5 * np.sign(np.sin(2 * np.pi * x / period) + 1e-9)
    return np.broadcast_to(prof[:, None] if axis == 0 else prof[None, :], (size, size)).copy()


def test_rmse_mae_delta():
    a = torch.zeros(2, 8, 8, dtype=torch.float64)
    b = a.clone()
    b[0] += 0.1
    torch.testing.assert_close(metrics.rmse(a, b, 2), torch.tensor([0.1, 0.0], dtype=torch.float64))
    torch.testing.assert_close(metrics.mae(a, b, 2), torch.tensor([0.1, 0.0], dtype=torch.float64))
    ref = torch.tensor(stripes(16, 8))[None]
    shifted = torch.roll(ref, 1, 1)
    # a shift by one grid point of sharp stripes: Σ(Δφ)² = Σ|∇φ|², so δ̄ = 1 grid unit
    assert float(metrics.interface_displacement(ref, shifted, 2)) == pytest.approx(1.0, rel=1e-12)


def test_spread_and_separation_flag():
    phi = torch.full((2, 8, 8), 0.5)
    phi[1, 0, 0] = 0.6
    assert metrics.phase_separated(phi, 2).tolist() == [False, True]
    assert float(metrics.spread(phi, 2)[1]) == pytest.approx(0.1, abs=1e-6)


def test_mass_drift_and_interface_measure():
    phi = torch.rand(1, 16, 16, dtype=torch.float64)
    assert float(metrics.mass_drift(phi, phi, 2)) == 0.0
    uniform = torch.full((1, 16, 16), 0.5, dtype=torch.float64)
    assert float(metrics.interface_measure(uniform, P2)) == pytest.approx(2 * 18 / 5 / 16)


def test_characteristic_length_of_a_single_mode():
    """A pure cosine of wavelength 16 gives L = 16 exactly."""
    x = torch.arange(64, dtype=torch.float64)
    phi = (0.5 + 0.1 * torch.cos(2 * math.pi * x / 16))[:, None].expand(64, 64)[None]
    assert float(metrics.characteristic_length(phi, 2)) == pytest.approx(16.0, rel=1e-9)


def test_isotropy_degree_separates_aligned_from_diagonal():
    """Axis-aligned stripes: I ≈ 0; 45° stripes: I ≫ 1; a disc is in between."""
    aligned = stripes(64, 16)
    i, j = np.meshgrid(np.arange(64), np.arange(64), indexing="ij")
    diagonal = 0.5 + 0.5 * np.tanh(3 * np.sin(2 * np.pi * (i + j) / 16))
    assert metrics.isotropy_degree(aligned) < 0.05
    assert metrics.isotropy_degree(diagonal) > 2.0
    r = np.hypot(i - 32, j - 32)
    disc = 0.5 + 0.5 * np.tanh((20 - r) / 2)
    assert 0.5 < metrics.isotropy_degree(disc) < 2.0


def test_boundary_fractal_dimension():
    """A straight boundary has D_b = 1; a random field's boundary is rougher (D_b > 1.3)."""
    assert metrics.boundary_fractal_dimension(stripes(128, 64)) == pytest.approx(1.0, abs=0.02)
    rng = np.random.default_rng(0)
    assert metrics.boundary_fractal_dimension(rng.random((128, 128))) > 1.3
    assert math.isnan(metrics.boundary_fractal_dimension(np.zeros((32, 32))))


def test_spinodal_line_shape():
    means, eta = metrics.spinodal_line(P2)
    assert eta.max() == pytest.approx(0.012649, rel=1e-4)
    assert means[np.argmax(eta)] == pytest.approx(0.5)
    outside = (means < 0.2113) | (means > 0.7887)
    assert (eta[outside] == 0).all() and (eta[~outside][1:-1] > 0).all()
