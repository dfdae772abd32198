"""CRNN registry: shapes, exact mass conservation, parameter counts, purity."""

import pytest
import torch

from crane_viz.engines import SpectralSolver, rollout
from crane_viz.initial import perlin_field
from crane_viz.model import CRNN, REGISTRY, CRNNConfig, count_parameters, get_config
from crane_viz.presets import get_preset
from crane_viz.surrogate import SurrogateEngine, downsample, upsample


def inputs(config, batch=2, size=None):
    size = size or (16 if config.dim == 2 else 8)
    phi = 0.5 + 0.05 * torch.randn(batch, *(size,) * config.dim)
    cond = torch.rand(batch, len(config.conditions)) * 0.012 if config.conditions else None
    return phi, cond


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_registry_entry_conserves_mass_over_50_steps(name):
    """⟨φ⟩ kept to 1e-6 relative over 50 recurrent steps of an untrained model."""
    config = get_config(name)
    model = CRNN(config).eval()
    phi, cond = inputs(config, size=8 if config.dim == 3 else 16)
    mean0 = phi.double().mean(dim=tuple(range(1, phi.ndim)))
    hidden = None
    with torch.no_grad():
        for _ in range(50):
            phi, hidden = model(phi, hidden, cond)
    assert phi.shape == (2, *(phi.shape[1],) * config.dim)
    assert len(hidden) == config.blocks and hidden[0].shape[1] == config.channels
    mean = phi.double().mean(dim=tuple(range(1, phi.ndim)))
    assert ((mean - mean0).abs() / mean0).max() < 1e-6
    assert torch.isfinite(phi).all()


@pytest.mark.parametrize("name, paper", [("paper-3d", 2.9e4), ("paper-2d", 1.5e5)])
def test_parameter_counts_match_papers(name, paper):
    assert abs(count_parameters(CRNN(get_config(name))) / paper - 1) < 0.05


def test_forward_is_pure_and_conditions_checked():
    config = get_config("tiny-2d")
    model = CRNN(config)
    phi, cond = inputs(config)
    a, ha = model(phi, None, cond)
    b, hb = model(phi, None, cond)
    assert torch.equal(a, b) and all(torch.equal(x, y) for x, y in zip(ha, hb))
    other, _ = model(phi, None, cond + 0.005)
    assert not torch.equal(a, other)  # η does reach the network
    with pytest.raises(ValueError, match="conditions"):
        model(phi, None, None)
    with pytest.raises(ValueError, match="no conditioning"):
        CRNN(get_config("tiny-3d"))(torch.rand(1, 8, 8, 8), None, torch.ones(1, 1))


def test_config_validation_and_round_trip():
    c = get_config("paper-2d")
    assert CRNNConfig.from_dict(c.to_dict()) == c
    with pytest.raises(ValueError):
        CRNNConfig(kernel=4)
    with pytest.raises(ValueError, match="unknown model"):
        get_config("nope")


def test_surrogate_engine_is_interchangeable_with_solver():
    preset = get_preset("coherent-2d")
    phi0 = torch.tensor(perlin_field(16, 2, mean=0.4, amplitude=0.1, cells=4, seed=0),
                        dtype=torch.float32)[None].repeat(2, 1, 1)
    eta = torch.tensor([0.0, 0.01])
    for engine in (SpectralSolver(preset, misfit=eta),
                   SurrogateEngine(CRNN(get_config("tiny-2d")), preset=preset, misfit=eta, device="cpu")):
        traj, times = rollout(engine, phi0, 3)
        assert traj.shape == (2, 4, 16, 16) and times.tolist() == [0, 1, 2, 3]
    half = SurrogateEngine(CRNN(get_config("tiny-2d")), preset=preset, grid_scale=2, device="cpu")
    traj, _ = rollout(half, phi0, 2)
    assert traj.shape == (2, 3, 8, 8)
    assert abs(float(traj[:, -1].mean() - phi0.mean())) < 1e-6


def test_down_and_up_sampling_keep_the_mean():
    phi = torch.rand(2, 8, 8, 8, dtype=torch.float64)
    assert downsample(phi, 2).shape == (2, 4, 4, 4)
    torch.testing.assert_close(downsample(phi, 2).mean(), phi.mean())
    torch.testing.assert_close(downsample(upsample(phi, 2), 2), phi)
