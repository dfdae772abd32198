"""CRNN registry: shapes, exact mass conservation, parameter counts, purity; the surrogate engine."""

import pytest
import torch

from crane_viz.engines import SpectralSolver, rollout
from crane_viz.engines.surrogate import SurrogateEngine, downsample, upsample
from crane_viz.nn import model as model_module
from crane_viz.nn.model import CRNN, REGISTRY, CRNNConfig, PhysicsUpdate, count_parameters, get_config
from crane_viz.physics.equations import periodic_laplacian
from crane_viz.physics.initial import perlin_field
from crane_viz.physics.presets import get_preset

P2 = get_preset("coherent-2d")


def inputs(config, batch=2):
    """φ near 0.5 with noise on a 16² / 8³ grid, and η in [0, 1.2 %] when the model needs it."""
    size = 16 if config.dim == 2 else 8
    phi = 0.5 + 0.05 * torch.randn(batch, *(size,) * config.dim)
    cond = torch.rand(batch, len(config.conditions)) * 0.012 if config.conditions else None
    return phi, cond


def spatial_mean(phi):
    return phi.double().mean(dim=tuple(range(1, phi.ndim)))


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_registry_entry_conserves_mass_over_50_steps(name):
    """Shapes right, hidden states carried, ⟨φ⟩ kept to 1e-6 relative over 50 untrained steps."""
    config = get_config(name)
    model = CRNN(config)
    phi, cond = inputs(config, batch=1)
    mean0 = spatial_mean(phi)
    with torch.inference_mode():
        first, hidden = model(phi, None, cond)
        assert first.shape == phi.shape
        assert len(hidden) == config.blocks
        assert all(h.shape == (config.batch_factor, config.channels, *phi.shape[1:]) for h in hidden)
        carried, _ = model(first, hidden, cond)
        assert not torch.equal(carried, model(first, None, cond)[0])  # memory changes the step
        phi = first
        for _ in range(49):
            phi, hidden = model(phi, hidden, cond)
    assert torch.isfinite(phi).all()
    assert ((spatial_mean(phi) - mean0).abs() / mean0).max() < 1e-6


@pytest.mark.parametrize("name, paper", [("paper-3d", 2.9e4), ("paper-2d", 1.5e5)])
def test_parameter_counts_match_papers(name, paper):
    assert abs(count_parameters(CRNN(get_config(name))) / paper - 1) < 0.05


@pytest.mark.parametrize("dim", [2, 3])
def test_physics_layer_is_fixed_central_difference_and_laplacian(dim):
    """Stencils are buffers (not trained, not saved) and equal the periodic difference formulas."""
    u = torch.randn(2, dim, *(6,) * dim, dtype=torch.float64)
    phi = torch.rand(2, *(6,) * dim, dtype=torch.float64)
    flux, potential = PhysicsUpdate(dim, "flux").double(), PhysicsUpdate(dim, "potential").double()
    div = sum(torch.roll(u[:, a], -1, a + 1) - torch.roll(u[:, a], 1, a + 1) for a in range(dim))
    torch.testing.assert_close(flux(phi, u), phi + div)
    torch.testing.assert_close(potential(phi, u[:, :1]), phi + periodic_laplacian(u[:, 0], dim))
    model = CRNN(get_config(f"tiny-{dim}d"))
    assert not any("stencil" in n for n, _ in model.named_parameters())
    assert not any("stencil" in k for k in model.state_dict())


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
    with pytest.raises(ValueError, match="hidden states"):
        model(phi, ha[:1], cond)


def test_config_validation_and_round_trip():
    c = get_config("paper-2d")
    assert CRNNConfig.from_dict(c.to_dict()) == c
    with pytest.raises(ValueError, match="unknown model configuration keys"):
        CRNNConfig.from_dict({**c.to_dict(), "layers": 3})
    with pytest.raises(ValueError, match="odd"):
        CRNNConfig(kernel=4)
    with pytest.raises(ValueError, match="unknown model"):
        get_config("nope")
    e = get_config("small-2d-elastic")
    assert CRNNConfig.from_dict(e.to_dict()) == e and "features" not in c.to_dict()
    with pytest.raises(ValueError, match="misfit condition"):
        CRNNConfig(features=("elastic",), elastic=(3e4, 1.5e4, 3e4))
    with pytest.raises(ValueError, match="features must be among"):
        CRNNConfig(features=("strain",))
    chem = get_config("small-3d-chemical")
    assert CRNNConfig.from_dict(chem.to_dict()) == chem and "interface_width" not in e.to_dict()
    with pytest.raises(ValueError, match="interface width"):
        CRNNConfig(dim=3, head="flux", features=("chemical",))


def test_chemical_feature_is_the_fd_chemical_potential_of_a_single_mode():
    """On φ = ½ + a cos(k·x) with small a the feature is the linearised μ = (w''(½) + ε k_h²) a cos(k·x),
    k_h² = 2 − 2cos(2π·3/n) the 7-point Laplacian's symbol (w''(½) < 0: long waves lower μ where φ
    is high, so they grow). |μ| ≈ 5·10⁻³; the bound 5·10⁻⁶ is float32 rounding of ½ + θ (≈ 3·10⁻⁸)
    times the stencil's weight ε·12 ≈ 36, plus the neglected 24a³; a wrong ε or stencil is off by ≥ 10⁻⁴."""
    from crane_viz.nn.model import chemical_feature
    from crane_viz.physics.equations import d2w

    n, a, eps = 16, 1e-3, 3.0
    x = torch.arange(n, dtype=torch.float32).reshape(1, 1, n)
    theta = a * torch.cos(2 * torch.pi * 3 * x / n).expand(1, n, n, n)
    mu = chemical_feature(0.5 + theta, eps)
    k2 = 2 - 2 * torch.cos(torch.tensor(2 * torch.pi * 3 / n))
    expected = (d2w(0.5, eps) + eps * k2) * theta
    torch.testing.assert_close(mu, expected, rtol=0, atol=5e-6)
    chemical = CRNN(get_config("small-3d-chemical"))
    assert chemical.cells[0].x_cand[0].weight.shape[1] == 2  # φ and μ


def test_half_resolution_chemical_feature_is_the_fine_fields_chemical_potential():
    """small-3d-chemical-half sees fields average-pooled by 2 (--grid-scale 2); its μ channel must
    be the solver's μ of the fine field, pooled the same way. On ½ + 10⁻³ cos(2π·2x/32) the two
    differ only by the Laplacian symbols of the two grids (0.3 %); without the spacing (ε∇² of the
    coarse grid taken as the fine one's) they differ by 23 %."""
    from crane_viz.engines.surrogate import downsample
    from crane_viz.nn.model import chemical_feature

    half = get_config("small-3d-chemical-half")
    assert CRNNConfig.from_dict(half.to_dict()) == half and "spacing" not in get_config("small-3d-chemical").to_dict()
    n = 32
    x = torch.arange(n, dtype=torch.float64).reshape(1, 1, n)
    phi = (0.5 + 1e-3 * torch.cos(2 * torch.pi * 2 * x / n)).expand(1, n, n, n)
    fine = downsample(chemical_feature(phi, half.interface_width), 2)
    for spacing, low, high in ((half.spacing, 0, 0.01), (1, 0.2, 0.3)):
        coarse = chemical_feature(downsample(phi, 2), half.interface_width, spacing)
        assert low <= float((coarse - fine).abs().max() / fine.abs().max()) <= high
    with pytest.raises(ValueError, match="spacing"):
        CRNNConfig(dim=3, head="flux", spacing=2)


@pytest.mark.parametrize("wave, direction", [((3, 0), "<10>"), ((0, 3), "<01>"), ((3, 3), "<11>")])
def test_elastic_feature_is_the_elastic_potential_of_a_single_mode(wave, direction):
    """On θ = a cos(k·x) the elastic potential is η² trB(k/|k|) θ (physics.md §2): the feature
    carries Khachaturyan's anisotropy, soft along ⟨10⟩/⟨01⟩ and 2.29× harder along ⟨11⟩ for the
    coherent-2d constants (trB 22 500 vs 51 429), and is zero at η = 0."""
    from crane_viz.nn.model import elastic_feature
    from crane_viz.physics.equations import tr_b

    n = 32
    y, x = torch.meshgrid(torch.arange(n), torch.arange(n), indexing="ij")
    theta = 0.01 * torch.cos(2 * torch.pi * (wave[1] * y + wave[0] * x) / n)
    phi = (0.5 + theta)[None].repeat(2, 1, 1)
    constants = (P2.c11, P2.c12, P2.c44)
    mu = elastic_feature(phi, torch.tensor([0.01, 0.0]), constants)
    unit = torch.tensor(wave, dtype=torch.float64) / torch.tensor(wave, dtype=torch.float64).norm()
    expected = 0.01**2 * tr_b(unit, *constants).item() * theta
    torch.testing.assert_close(mu[0], expected, rtol=0, atol=1e-6)  # |μ| ≤ 5·10⁻³
    assert mu[1].abs().max() == 0
    ratio = tr_b(torch.tensor([0.5**0.5, 0.5**0.5]), *constants) / tr_b(torch.tensor([1.0, 0.0]), *constants)
    assert abs(ratio.item() - 51428.57 / 22500) < 1e-4, direction


def field(batch=2, size=16):
    phi = perlin_field(size, 2, mean=0.4, amplitude=0.1, cells=4, seed=0)
    return torch.tensor(phi, dtype=torch.float32)[None].repeat(batch, 1, 1)


def test_surrogate_engine_is_interchangeable_with_solver():
    phi0 = field()
    eta = torch.tensor([0.0, 0.01])
    for engine in (SpectralSolver(P2, misfit=eta),
                   SurrogateEngine(CRNN(get_config("tiny-2d")), preset=P2, misfit=eta, device="cpu")):
        traj, times = rollout(engine, phi0, 3)
        assert traj.shape == (2, 4, 16, 16) and times.tolist() == [0, 1, 2, 3]
        assert not torch.equal(traj[0, -1], traj[1, -1])  # per-batch η reaches each element


def test_surrogate_grid_scale_halves_grid_and_keeps_mean():
    phi0 = field() + 0.02 * torch.randn(2, 16, 16)  # generic: sampling every 2nd point shifts ⟨φ⟩
    half = SurrogateEngine(CRNN(get_config("tiny-2d")), preset=P2, grid_scale=2, device="cpu")
    traj, _ = rollout(half, phi0, 2)
    assert traj.shape == (2, 3, 8, 8)
    torch.testing.assert_close(spatial_mean(traj[:, -1]), spatial_mean(phi0), rtol=1e-6, atol=0)


def test_surrogate_misfit_shape_checked_and_bfloat16_conserves():
    phi0 = field(batch=3)
    with pytest.raises(ValueError, match="one value per batch element"):
        rollout(SurrogateEngine(CRNN(get_config("tiny-2d")), preset=P2, misfit=torch.zeros(2),
                                device="cpu"), phi0, 1)
    bf16 = SurrogateEngine(CRNN(get_config("tiny-2d")), preset=P2, device="cpu", precision="bfloat16")
    traj, _ = rollout(bf16, phi0, 5)
    assert traj.dtype == torch.float32
    torch.testing.assert_close(spatial_mean(traj[:, -1]), spatial_mean(phi0), rtol=1e-6, atol=0)


def test_down_and_up_sampling_keep_the_mean():
    phi = torch.rand(2, 8, 8, 8, dtype=torch.float64)
    assert downsample(phi, 2).shape == (2, 4, 4, 4)
    torch.testing.assert_close(downsample(phi, 2).mean(), phi.mean())
    torch.testing.assert_close(downsample(upsample(phi, 2), 2), phi)
    with pytest.raises(ValueError, match="divisible"):
        downsample(torch.rand(1, 9, 9), 2)


def test_the_package_example_runs_and_the_api_resolves():
    """The ten-line example in crane_viz's docstring (and README) runs as written, and every name
    in __all__ resolves."""
    import crane_viz

    example = crane_viz.__doc__.split("::", 1)[1]
    code = "\n".join(line[4:] for line in example.splitlines())
    scope = {}
    exec(compile(code, "crane_viz example", "exec"), scope)
    assert 0 < scope["mae"] < 0.2 and scope["f_over_v"] > 0
    for name in crane_viz.__all__:
        assert getattr(crane_viz, name) is not None


def test_cpu_tanh_is_torch_tanh_and_keeps_gradients():
    """The model's CPU tanh (2σ(2x) − 1, for speed) is tanh to float32 round-off, saturates
    without overflow, and differentiates like tanh."""
    x = torch.linspace(-60, 60, 200_001, requires_grad=True)
    y = model_module.tanh(x)
    assert (y - torch.tanh(x)).abs().max().item() < 3e-7
    assert y.min().item() == -1.0 and y.max().item() == 1.0
    (grad,) = torch.autograd.grad(y.sum(), x)
    exact = 1 - torch.tanh(x.detach().double()) ** 2
    assert (grad.double() - exact).abs().max().item() < 1e-6  # a few float32 ε of a slope ≤ 1


@pytest.mark.parametrize("dim, kernel", [(2, 3), (3, 3), (3, 1), (3, 5)])
def test_periodic_conv_is_torchs_circular_convolution_with_its_gradients(dim, kernel):
    """The model's convolution (oneDNN called directly for 3D float32 on CPU) computes what
    nn.ConvNd with padding_mode="circular" computes, forward and backward, to float32 round-off."""
    from crane_viz.nn.model import _conv

    torch.manual_seed(kernel)
    ours = _conv(dim, 3, 4, kernel)
    ref = (torch.nn.Conv2d if dim == 2 else torch.nn.Conv3d)(3, 4, kernel, padding=kernel // 2,
                                                            padding_mode="circular")
    ref.load_state_dict(ours.state_dict())
    x = torch.randn(1, 3, *(10,) * dim, requires_grad=True)
    a, b = ours(x), ref(x)
    torch.testing.assert_close(a, b, rtol=0, atol=1e-5)
    ga = torch.autograd.grad(a.square().sum(), [x, ours.weight])
    gb = torch.autograd.grad(b.square().sum(), [x, ref.weight])
    for u, v in zip(ga, gb):
        torch.testing.assert_close(u, v, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("name", ["small-2d-elastic", "small-3d-chemical"])
def test_inference_path_is_the_training_path_and_leaves_its_inputs_alone(name):
    """Without autograd the cells and activations overwrite their own temporaries (for speed);
    the step must still be the graph-recording step to float32 round-off, over several steps
    with a warm hidden state, and must not touch φ, the hidden states or the conditions. The two
    differ by ≤ 1.3·10⁻⁶ here (the cell's last line is written as c + z(h − c)): 5·10⁻⁶ bounds
    float32 round-off amplified by the output stencil, far below a step's change."""
    torch.manual_seed(3)
    model = CRNN(get_config(name)).eval()
    for p in model.parameters():
        p.data.normal_(0, 0.1)  # random weights, every gate active, steps of 0.004–0.02 in φ
    phi, cond = inputs(model.config)
    phi_fast, hidden_fast = phi, None
    phi_graph, hidden_graph = phi.clone().requires_grad_(), None
    for _ in range(4):
        given = [phi_fast, *(hidden_fast or ()), *(() if cond is None else (cond,))]
        copies = [t.clone() for t in given]
        with torch.no_grad():
            phi_fast, new_fast = model(phi_fast, hidden_fast, cond)
        assert all(torch.equal(t, c) for t, c in zip(given, copies))
        hidden_fast = new_fast
        phi_graph, hidden_graph = model(phi_graph, hidden_graph, cond)
        torch.testing.assert_close(phi_fast, phi_graph.detach(), rtol=0, atol=5e-6)
        for a, b in zip(hidden_fast, hidden_graph):
            torch.testing.assert_close(a, b.detach(), rtol=0, atol=5e-6)
    assert phi_graph.requires_grad  # the graph path still records a graph


@pytest.mark.parametrize("name", ["small-2d-elastic", "small-3d-chemical"])
def test_flip_averaged_model_is_equivariant_under_phi_to_one_minus_phi(name):
    """`symmetric=True` makes the step exactly equivariant: f(1 − φ) = 1 − f(φ) over 5 recurrent
    steps (float64, round-off), mass kept, and the configuration round-trips. The same weights
    without it break the symmetry by > 10⁻³ (untrained weights), so the check can fail."""
    torch.manual_seed(0)
    plain_config = get_config(name)
    config = CRNNConfig.from_dict({**plain_config.to_dict(), "symmetric": True})
    assert CRNNConfig.from_dict(config.to_dict()) == config and "symmetric" not in plain_config.to_dict()
    assert (config.batch_factor, plain_config.batch_factor) == (2, 1)
    symmetric = CRNN(config).double()
    plain = CRNN(plain_config).double()
    plain.load_state_dict(symmetric.state_dict())
    phi, cond = inputs(config)
    phi = phi.double()

    def rollout_of(model, x):
        hidden, frames = None, []
        with torch.inference_mode():
            for _ in range(5):
                x, hidden = model(x, hidden, cond)
                frames.append(x)
        return torch.stack(frames)

    for model, low, high in ((symmetric, 0, 1e-12), (plain, 1e-3, 1)):
        gap = float((rollout_of(model, 1 - phi) - (1 - rollout_of(model, phi))).abs().max())
        assert low <= gap <= high, (model.config.symmetric, gap)
    torch.testing.assert_close(spatial_mean(rollout_of(symmetric, phi)[-1]), spatial_mean(phi), rtol=0, atol=1e-12)


def test_cached_physics_tables_made_during_inference_serve_training_too():
    """The spectral grid and trB tables are cached; made first under inference_mode (the explorer
    playing) they must still serve a training loss with autograd (its Training tab, same process)."""
    from crane_viz.physics.equations import elastic_kernel, grad_sq_mean_spectral, spectral_grid

    spectral_grid.cache_clear(), elastic_kernel.cache_clear()
    with torch.inference_mode():
        grad_sq_mean_spectral(torch.rand(1, 12, 12), 2)  # a shape no other test caches first
    phi = torch.rand(1, 12, 12, requires_grad=True)
    grad_sq_mean_spectral(phi, 2).sum().backward()
    assert phi.grad is not None and torch.isfinite(phi.grad).all()
