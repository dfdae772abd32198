"""Derived facts of physics.md §6, each with the tolerance it is checked to."""

import math

import pytest
import torch

from crane_viz.engines import FiniteDifferenceSolver, SpectralSolver, rollout
from crane_viz.physics.equations import SPINODAL_HIGH, SPINODAL_LOW, d2w, dw, free_energy, min_tr_b, spinodal_misfit, tr_b, w
from crane_viz.physics.initial import as_batch, perlin_field
from crane_viz.physics.presets import PRESETS, get_preset

COHERENT = get_preset("coherent-2d")
C = dict(c11=3.0e4, c12=1.5e4, c44=3.0e4)
F64 = torch.float64


def unit(*v):
    t = torch.tensor(v, dtype=F64)
    return t / t.norm()


def test_chemical_spinodal_limits():
    """w'' < 0 exactly on ((3 − √3)/6, (3 + √3)/6) for any ε."""
    assert SPINODAL_LOW == pytest.approx(0.2113, abs=1e-4)
    assert SPINODAL_HIGH == pytest.approx(0.7887, abs=1e-4)
    for eps in (1.0, 3.0, 5.0):
        assert abs(d2w(SPINODAL_LOW, eps)) < 1e-12
        assert abs(d2w(SPINODAL_HIGH, eps)) < 1e-12
        assert d2w(0.5, eps) < 0 < d2w(0.2, eps)


def test_double_well_derivatives_match_autograd():
    phi = torch.linspace(-0.2, 1.2, 57, dtype=F64, requires_grad=True)
    (g,) = torch.autograd.grad(w(phi, 5.0).sum(), phi, create_graph=True)
    (h,) = torch.autograd.grad(g.sum(), phi)
    torch.testing.assert_close(g, dw(phi, 5.0), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(h, d2w(phi, 5.0), rtol=1e-12, atol=1e-12)


def test_trb_extremes_2d():
    """min trB = 22 500 along ⟨10⟩, max = 51 428.57 along ⟨11⟩ (to 1e-6 relative)."""
    assert float(tr_b(unit(1, 0), **C)) == pytest.approx(22500, rel=1e-9)
    assert float(tr_b(unit(0, 1), **C)) == pytest.approx(22500, rel=1e-9)
    assert float(tr_b(unit(1, 1), **C)) == pytest.approx(51428.5714, rel=1e-6)
    a = torch.linspace(0, math.pi, 721, dtype=F64)
    all_dirs = tr_b(torch.stack([a.cos(), a.sin()], -1), **C)
    assert float(all_dirs.min()) == pytest.approx(22500, rel=1e-9)
    assert float(all_dirs.max()) == pytest.approx(51428.5714, rel=1e-6)


def test_trb_extremes_3d():
    """min trB = 60 000 along ⟨100⟩, max = 120 000 along ⟨111⟩."""
    assert float(tr_b(unit(1, 0, 0), **C)) == pytest.approx(60000, rel=1e-9)
    assert float(tr_b(unit(1, 1, 1), **C)) == pytest.approx(120000, rel=1e-9)
    n = torch.nn.functional.normalize(torch.randn(5000, 3, dtype=F64), dim=-1)
    vals = tr_b(n, **C)
    assert 60000 - 1e-6 <= float(vals.min()) and float(vals.max()) <= 120000 + 1e-6


@pytest.mark.parametrize("mean, eta_percent", [(0.5, 1.265), (0.4, 1.187), (0.3, 0.912)])
def test_largest_unstable_misfit(mean, eta_percent):
    """w'' + η² min trB < 0 gives η_max(0.5, 0.4, 0.3) = 1.265, 1.187, 0.912 % (to 0.001 %)."""
    assert min_tr_b(COHERENT) == pytest.approx(22500, rel=1e-6)
    assert 100 * spinodal_misfit(mean, COHERENT) == pytest.approx(eta_percent, abs=1e-3)
    assert spinodal_misfit(0.15, COHERENT) == 0.0


def growth_rate(preset, q2, phi0, eta, trb):
    """σ(q) = −M q² (w''(φ0) + ε q² + η² trB(n))."""
    return -preset.mobility * q2 * (d2w(phi0, preset.interface_width)
                                    + preset.interface_width * q2 + eta**2 * trb)


def single_mode(size, dim, mode, phi0, amp=1e-5):
    x = torch.arange(size, dtype=F64)
    field = phi0 + amp * torch.cos(2 * math.pi * mode * x / size)
    return field.reshape(size, *([1] * (dim - 1))).expand((size,) * dim).clone().unsqueeze(0)


def measured_rate(engine, phi, frames, mode):
    """ln(amplitude ratio)/time of the Fourier mode `mode` along axis 0."""
    def amplitude(p):
        return torch.fft.fft(p[0].reshape(p.shape[1], -1)[:, 0])[mode].abs()
    traj, times = rollout(engine, phi, frames)
    return float(torch.log(amplitude(traj[:, -1]) / amplitude(traj[:, 0])) / times[-1])


@pytest.mark.parametrize("solver_cls", [SpectralSolver, FiniteDifferenceSolver])
@pytest.mark.parametrize("dim, eta", [(2, 0.0), (2, 0.006), (3, 0.0), (3, 0.004)])
def test_single_mode_linear_growth(solver_cls, dim, eta):
    """Both schemes reproduce σ(q) of a small single mode about φ0 = 0.5 to 3 %.

    The mode lies along ⟨10⟩/⟨100⟩ (trB = 22 500 in 2D, 60 000 in 3D). The FD scheme is checked
    against the continuum σ, which its discrete Laplacian matches to 0.7 % at this long wavelength.
    """
    preset = get_preset("coherent-2d") if dim == 2 else get_preset("coherent-3d")
    size, mode = (64, 4) if dim == 2 else (32, 2)
    engine = solver_cls(preset, misfit=eta, time_step=0.01 if solver_cls is SpectralSolver else None)
    q2 = (2 * math.pi * mode / size) ** 2
    trb = 22500.0 if dim == 2 else 60000.0
    expected = growth_rate(preset, q2, 0.5, eta, trb)
    assert expected > 0.1
    got = measured_rate(engine, single_mode(size, dim, mode, 0.5), 2, mode)
    assert got == pytest.approx(expected, rel=0.03)


def test_misfit_stabilises_mode_beyond_spinodal():
    """Above η_max(0.5) the most unstable ⟨10⟩ mode decays (σ < 0), below it grows."""
    preset, size, mode = COHERENT, 64, 4
    for eta, sign in ((0.011, 1), (0.0135, -1)):
        engine = SpectralSolver(preset, misfit=eta)
        rate = measured_rate(engine, single_mode(size, 2, mode, 0.5), 2, mode)
        assert math.copysign(1, rate) == sign


def perlin_batch(size, dim, mean=0.5, amplitude=0.1, seeds=(1, 2)):
    return as_batch([perlin_field(size, dim, mean=mean, amplitude=amplitude, cells=4, seed=s)
                     for s in seeds], dtype=F64)


@pytest.mark.parametrize("solver_cls", [SpectralSolver, FiniteDifferenceSolver])
@pytest.mark.parametrize("preset_name", ["coherent-2d", "plain-3d"])
def test_mass_conserved_to_round_off(solver_cls, preset_name):
    """|⟨φ⟩(t) − ⟨φ⟩(0)| < 1e-13 in float64 over several frames (bulk of phase separation)."""
    preset = get_preset(preset_name)
    size = 32 if preset.dim == 2 else 12
    phi0 = perlin_batch(size, preset.dim)
    frames = 10 if preset.dim == 2 else 3
    traj, _ = rollout(solver_cls(preset, misfit=0.008 if preset.dim == 2 else 0.0), phi0, frames)
    means = traj.mean(dim=tuple(range(2, traj.ndim)))
    assert (means - means[:, :1]).abs().max() < 1e-13
    assert traj[:, -1].std() > traj[:, 0].std()  # it did evolve


@pytest.mark.parametrize("solver_cls, gradient", [(SpectralSolver, "spectral"),
                                                  (FiniteDifferenceSolver, "fd")])
@pytest.mark.parametrize("eta", [0.0, 0.008])
def test_energy_never_increases(solver_cls, gradient, eta):
    """F/V (with the scheme's own gradient form) is non-increasing frame to frame, to 1e-10."""
    phi0 = perlin_batch(32, 2, mean=0.45)
    traj, _ = rollout(solver_cls(COHERENT, misfit=eta), phi0, 25)
    f = torch.stack([free_energy(traj[:, i], COHERENT, eta, gradient=gradient)["total"]
                     for i in range(traj.shape[1])], dim=1)
    assert (f[:, 1:] - f[:, :-1]).max() < 1e-10
    assert (f[:, -1] < f[:, 0] - 0.01).all()  # and it did relax


def test_fd_and_spectral_energy_agree_on_smooth_field():
    """F/V with spectral and FD gradients agree to 2 % on a smooth (long-wavelength) field."""
    phi = as_batch([perlin_field(64, 2, mean=0.5, amplitude=0.4, cells=2, seed=3)], dtype=F64)
    for eta in (0.0, 0.006):
        fs = free_energy(phi, COHERENT, eta, gradient="spectral")
        ff = free_energy(phi, COHERENT, eta, gradient="fd")
        assert float(ff["gradient"]) == pytest.approx(float(fs["gradient"]), rel=0.02)
        assert float(ff["total"]) == pytest.approx(float(fs["total"]), rel=0.02)


def test_fd_and_spectral_trajectories_agree_on_smooth_field():
    """Both solvers evolve a smooth field alike: RMSE < 2e-3 after 5 τ (2D, 64², η = 0.6 %)."""
    phi0 = as_batch([perlin_field(64, 2, mean=0.5, amplitude=0.2, cells=2, seed=4)], dtype=F64)
    a, _ = rollout(SpectralSolver(COHERENT, misfit=0.006), phi0, 5)
    b, _ = rollout(FiniteDifferenceSolver(COHERENT, misfit=0.006), phi0, 5)
    assert float(torch.sqrt(((a[:, -1] - b[:, -1]) ** 2).mean())) < 2e-3


@pytest.mark.parametrize("preset, misfit", [("plain-3d", 0.0), ("coherent-2d", [0.006, 0.0])])
def test_fd_frame_is_the_textbook_euler_formula(preset, misfit):
    """The solver's buffer-reusing frame equals φ ← φ + δt M ∇²_h(w'(φ) − ε∇²_h φ + μ_el) written
    out of place, to float64 round-off (1e-12 over a frame of 400–500 steps), and leaves the
    state it was given untouched."""
    from crane_viz.engines.base import State
    from crane_viz.physics.equations import chemical_potential_fd, elastic_potential, periodic_laplacian

    p = get_preset(preset)
    phi0 = as_batch([perlin_field(16, p.dim, mean=m, amplitude=0.2, cells=2, seed=s)
                     for m, s in ((0.5, 1), (0.4, 2))], dtype=F64)
    solver = FiniteDifferenceSolver(p, misfit=torch.tensor(misfit, dtype=F64))
    state = State(phi=phi0.clone())
    fast = solver.step(state).phi
    assert torch.equal(state.phi, phi0)
    phi = phi0
    for _ in range(solver.steps_per_frame):
        mu = chemical_potential_fd(phi, p.interface_width, p.dim)
        if preset == "coherent-2d":
            mu = mu + elastic_potential(phi, solver.misfit, p, p.dim)
        phi = phi + solver.time_step * p.mobility * periodic_laplacian(mu, p.dim)
    torch.testing.assert_close(fast, phi, rtol=0, atol=1e-12)
    assert (fast - phi0).abs().max() > 1e-3  # the frame did evolve the field
    torch.testing.assert_close(dw(phi0, 3.0, out=torch.empty_like(phi0)), dw(phi0, 3.0), rtol=0, atol=1e-13)


def test_elastic_energy_matches_real_space_sum():
    """⟨ρ⟩ by Parseval on the rfft half-spectrum equals ½⟨θ μ_el⟩ computed in real space."""
    from crane_viz.physics.equations import elastic_energy_mean, elastic_potential

    phi = perlin_batch(32, 2)
    eta = 0.01
    rho = elastic_energy_mean(phi, eta, COHERENT, 2)
    theta = phi - phi.mean(dim=(-2, -1), keepdim=True)
    direct = 0.5 * (theta * elastic_potential(phi, eta, COHERENT, 2)).mean(dim=(-2, -1))
    torch.testing.assert_close(rho, direct, rtol=1e-10, atol=0)


def test_per_batch_misfit_equals_separate_runs():
    """A (B,) misfit tensor gives the same frames as B separate runs."""
    phi0 = perlin_batch(32, 2)
    etas = torch.tensor([0.0, 0.01], dtype=F64)
    together, _ = rollout(SpectralSolver(COHERENT, misfit=etas), phi0, 3)
    for i, eta in enumerate(etas.tolist()):
        alone, _ = rollout(SpectralSolver(COHERENT, misfit=eta), phi0[i:i + 1], 3)
        torch.testing.assert_close(together[i:i + 1], alone, rtol=1e-12, atol=1e-12)


def test_presets_are_consistent():
    for preset in PRESETS.values():
        for solver in preset.time_steps:
            assert preset.steps_per_frame(solver) * preset.time_step(solver) == pytest.approx(
                preset.frame_time)
    assert COHERENT.steps_per_frame("spectral") == 100
    assert get_preset("plain-3d").steps_per_frame("fd") == 400


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("solver_cls", [SpectralSolver, FiniteDifferenceSolver])
def test_solvers_run_on_cuda_unchanged(solver_cls):
    phi0 = perlin_batch(32, 2)
    cpu, _ = rollout(solver_cls(COHERENT), phi0, 2)
    gpu, _ = rollout(solver_cls(COHERENT), phi0.cuda(), 2)
    assert gpu.device.type == "cuda"
    torch.testing.assert_close(gpu.cpu(), cpu, rtol=1e-9, atol=1e-9)


def test_one_divergence_rule():
    """diverged() flags a field with NaN, ±inf or a value outside [−1, 2]; nothing else."""
    from crane_viz.engines.base import diverged

    fields = torch.full((6, 4, 4), 0.5)
    fields[1, 0, 0] = float("nan")
    fields[2, 1, 1] = float("inf")
    fields[3, 2, 2] = -1.01
    fields[4, 3, 3] = 2.01
    fields[5] = torch.linspace(-1.0, 2.0, 16).reshape(4, 4)  # the band's edges are inside
    assert diverged(fields).tolist() == [False, True, True, True, True, False]
