"""Free-energy pieces of the Cahn–Hilliard model with coherent cubic elasticity (physics.md §1–2).

All functions are batched (batch dimension first, then `dim` spatial axes), differentiable, and
run on whatever device and dtype the input tensor has. Grid spacing is 1; fields are periodic.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import torch
import torch.nn.functional as F

from .presets import Preset

SPINODAL_LOW = (3 - math.sqrt(3)) / 6  # w''(φ) < 0 on (SPINODAL_LOW, SPINODAL_HIGH), any ε
SPINODAL_HIGH = (3 + math.sqrt(3)) / 6


def w(phi: torch.Tensor, eps: float) -> torch.Tensor:
    """Double-well density w(φ) = (18/ε) φ²(1−φ)²."""
    return (18.0 / eps) * phi**2 * (1 - phi) ** 2


def dw(phi: torch.Tensor, eps: float, out: torch.Tensor | None = None) -> torch.Tensor:
    """w'(φ) = (36/ε) φ(1−φ)(1−2φ); with `out`, computed into it as (36/ε)(φ²(2φ − 3) + φ),
    the same polynomial, for the FD solver's buffer-reusing loop."""
    if out is None:
        return (36.0 / eps) * phi * (1 - phi) * (1 - 2 * phi)
    return torch.mul(phi, phi, out=out).mul_(2 * phi - 3).add_(phi).mul_(36.0 / eps)


def d2w(phi, eps: float):
    """w''(φ) = (36/ε)(1 − 6φ + 6φ²); negative inside the spinodal."""
    return (36.0 / eps) * (1 - 6 * phi + 6 * phi**2)


def spatial_dims(dim: int) -> tuple[int, ...]:
    """The trailing axes that hold space in a (batch, *grid) tensor."""
    return tuple(range(-dim, 0))


def spatial_mean(x: torch.Tensor, dim: int) -> torch.Tensor:
    """Mean over the spatial axes, keeping the batch axis."""
    return x.mean(dim=spatial_dims(dim))


def per_batch(value, like: torch.Tensor, dim: int) -> torch.Tensor:
    """Broadcast a scalar or a (B,) tensor against a (B, *grid) or (B, *spectrum) tensor."""
    t = torch.as_tensor(value, dtype=like.real.dtype if like.is_complex() else like.dtype,
                        device=like.device)
    return t.reshape(-1, *([1] * dim)) if t.ndim == 1 else t


# --------------------------------------------------------------------------- finite differences

def periodic_laplacian(phi: torch.Tensor, dim: int, out: torch.Tensor | None = None) -> torch.Tensor:
    """(2d+1)-point Laplacian of a (B, *grid) field via one circular pad and shifted slices,
    accumulated in place (into `out` when given: the FD solver's hot loop reuses its buffers
    instead of allocating a tensor per neighbour)."""
    p = F.pad(phi.unsqueeze(1), [1, 1] * dim, mode="circular").squeeze(1)
    inner = (slice(None),) + (slice(1, -1),) * dim
    out = torch.mul(p[inner], -2 * dim, out=out) if out is not None else p[inner] * (-2 * dim)
    for ax in range(dim):
        for lo, hi in ((0, -2), (2, None)):
            idx = list(inner)
            idx[1 + ax] = slice(lo, hi)
            out.add_(p[tuple(idx)])
    return out


def chemical_potential_fd(phi: torch.Tensor, eps: float, dim: int, spacing: float = 1.0) -> torch.Tensor:
    """μ = w'(φ) − ε∇²_h φ with the (2d+1)-point Laplacian on a grid `spacing` apart: the FD
    solver's chemical potential (without elasticity), and the 3D model's "chemical" input feature."""
    return dw(phi, eps) - (eps / spacing ** 2) * periodic_laplacian(phi, dim)


def grad_sq_fd(phi: torch.Tensor, dim: int) -> torch.Tensor:
    """|∇φ|² from forward differences, the form whose variation is the FD Laplacian."""
    return sum((torch.roll(phi, -1, ax) - phi) ** 2 for ax in spatial_dims(dim))


# --------------------------------------------------------------------------- spectral operators

@dataclass(frozen=True)
class SpectralGrid:
    """Wave-number tables on an rfft half-spectrum of a periodic grid."""

    q2: torch.Tensor  # |q|², shape of rfftn output
    unit: tuple  # components of n = q/|q| (0 at q = 0)
    weights: torch.Tensor  # multiplicity of each rfft coefficient in the full spectrum
    npoints: int


@lru_cache(maxsize=32)
@torch.inference_mode(False)  # cached for later autograd use too: never an inference tensor
def spectral_grid(shape: tuple[int, ...], dtype: torch.dtype, device: torch.device) -> SpectralGrid:
    """Precompute q², n and Parseval weights for a periodic grid of `shape` (spacing 1)."""
    axes = []
    for i, n in enumerate(shape):
        if i == len(shape) - 1:
            k = torch.fft.rfftfreq(n, d=1.0, dtype=torch.float64, device=device)
        else:
            k = torch.fft.fftfreq(n, d=1.0, dtype=torch.float64, device=device)
        axes.append(2 * math.pi * k)
    qs = torch.meshgrid(*axes, indexing="ij")
    q2 = sum(q**2 for q in qs)
    qn = torch.sqrt(q2)
    safe = torch.where(qn > 0, qn, torch.ones_like(qn))
    unit = tuple(torch.where(qn > 0, q / safe, torch.zeros_like(q)).to(dtype) for q in qs)
    nl = shape[-1]
    wts = torch.full((nl // 2 + 1,), 2.0, dtype=torch.float64, device=device)
    wts[0] = 1.0
    if nl % 2 == 0:
        wts[-1] = 1.0
    weights = wts.expand(q2.shape).to(dtype)
    return SpectralGrid(q2.to(dtype), unit, weights, math.prod(shape))


def cubic_stiffness_inverse_green(n: torch.Tensor, c11: float, c12: float, c44: float) -> torch.Tensor:
    """Ω⁻¹_ik(n) = C_ijkl n_j n_l for a cubic crystal; n has shape (..., d), result (..., d, d)."""
    d = n.shape[-1]
    n2 = n**2
    total = n2.sum(-1, keepdim=True)
    diag = c11 * n2 + c44 * (total - n2)
    off = (c12 + c44) * n.unsqueeze(-1) * n.unsqueeze(-2)
    eye = torch.eye(d, dtype=n.dtype, device=n.device)
    return off * (1 - eye) + torch.diag_embed(diag)


def tr_b(n: torch.Tensor, c11: float, c12: float, c44: float) -> torch.Tensor:
    """Khachaturyan's trB(n) = s (d − s nᵀΩ(n)n), s = C11 + (d−1)C12, for unit vectors n (..., d)."""
    d = n.shape[-1]
    s = c11 + (d - 1) * c12
    omega_inv = cubic_stiffness_inverse_green(n, c11, c12, c44)
    x = torch.linalg.solve(omega_inv, n.unsqueeze(-1)).squeeze(-1)
    return s * (d - s * (n * x).sum(-1))


@lru_cache(maxsize=32)
@torch.inference_mode(False)  # cached for later autograd use too: never an inference tensor
def elastic_kernel(shape: tuple[int, ...], c11: float, c12: float, c44: float,
                   dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """trB(q/|q|) on the rfft half-spectrum of `shape`, with trB(q = 0) = 0."""
    g = spectral_grid(shape, torch.float64, device)
    n = torch.stack(g.unit, dim=-1)
    zero = g.q2 == 0
    n = torch.where(zero.unsqueeze(-1), torch.ones_like(n) / math.sqrt(len(shape)), n)
    trb = tr_b(n, c11, c12, c44)
    return torch.where(zero, torch.zeros_like(trb), trb).to(dtype)


def preset_elastic_kernel(preset: Preset, shape, dtype, device) -> torch.Tensor:
    """trB table for a preset's elastic constants."""
    return elastic_kernel(tuple(shape), preset.c11, preset.c12, preset.c44, dtype,
                          torch.device(device))


def spectral_mean_square(field_hat: torch.Tensor, grid: SpectralGrid, dim: int,
                         multiplier: torch.Tensor | None = None) -> torch.Tensor:
    """⟨x²⟩ (optionally Σ m(q)|x̂|²/N²) from an rfftn spectrum, by Parseval."""
    power = field_hat.real**2 + field_hat.imag**2
    if multiplier is not None:
        power = power * multiplier
    return (power * grid.weights).sum(dim=spatial_dims(dim)) / grid.npoints**2


def grad_sq_mean_spectral(phi: torch.Tensor, dim: int) -> torch.Tensor:
    """⟨|∇φ|²⟩ with exact spectral derivatives."""
    grid = spectral_grid(tuple(phi.shape[-dim:]), phi.dtype, phi.device)
    phi_hat = torch.fft.rfftn(phi, dim=spatial_dims(dim))
    return spectral_mean_square(phi_hat, grid, dim, grid.q2)


def elastic_potential(phi: torch.Tensor, misfit, preset: Preset, dim: int) -> torch.Tensor:
    """μ_el = η² IFFT[trB(n) θ̂], θ = φ − ⟨φ⟩ (trB(0) = 0 removes the mean)."""
    return elastic_potential_of(phi, misfit, (preset.c11, preset.c12, preset.c44), dim)


def elastic_potential_of(phi: torch.Tensor, misfit, constants: tuple, dim: int) -> torch.Tensor:
    """`elastic_potential` for cubic elastic constants (C11, C12, C44) given directly."""
    shape = tuple(phi.shape[-dim:])
    trb = elastic_kernel(shape, *constants, phi.dtype, phi.device)
    phi_hat = torch.fft.rfftn(phi, dim=spatial_dims(dim))
    eta2 = per_batch(misfit, phi, dim) ** 2
    return torch.fft.irfftn(eta2 * trb * phi_hat, s=shape, dim=spatial_dims(dim))


def elastic_energy_mean(phi: torch.Tensor, misfit, preset: Preset, dim: int) -> torch.Tensor:
    """⟨ρ⟩ = ½ η² Σ_q trB(n)|θ̂|² / N² (Parseval)."""
    shape = tuple(phi.shape[-dim:])
    grid = spectral_grid(shape, phi.dtype, phi.device)
    trb = preset_elastic_kernel(preset, shape, phi.dtype, phi.device)
    phi_hat = torch.fft.rfftn(phi, dim=spatial_dims(dim))
    eta = torch.as_tensor(misfit, dtype=phi.dtype, device=phi.device)
    return 0.5 * eta**2 * spectral_mean_square(phi_hat, grid, dim, trb)


def _any_misfit(misfit) -> bool:
    return bool(torch.as_tensor(misfit).abs().max() > 0)


def free_energy(phi: torch.Tensor, preset: Preset, misfit=0.0, *,
                gradient: str = "spectral", spacing: float = 1.0) -> dict[str, torch.Tensor]:
    """F/V and its parts, each of shape (B,).

    bulk = ⟨w⟩, gradient = ⟨(ε/2)|∇φ|²⟩, interface = bulk + gradient, elastic = ⟨ρ⟩,
    total = interface + elastic. `gradient` picks spectral or forward-difference derivatives;
    `spacing` is the grid spacing in the preset's units (2 for a field downsampled by 2), which
    scales |∇φ|² by 1/spacing² and leaves ⟨w⟩ and ⟨ρ⟩ (which depends on q/|q| only) unchanged.
    """
    dim, eps = preset.dim, preset.interface_width
    bulk = spatial_mean(w(phi, eps), dim)
    if gradient == "fd":
        gsq = spatial_mean(grad_sq_fd(phi, dim), dim)
    elif gradient == "spectral":
        gsq = grad_sq_mean_spectral(phi, dim)
    else:
        raise ValueError(f"gradient must be 'spectral' or 'fd', not {gradient!r}")
    grad = 0.5 * eps * gsq / spacing**2
    if _any_misfit(misfit):
        elastic = elastic_energy_mean(phi, misfit, preset, dim)
    else:
        elastic = torch.zeros_like(bulk)
    interface = bulk + grad
    return {"total": interface + elastic, "interface": interface, "bulk": bulk,
            "gradient": grad, "elastic": elastic}


def min_tr_b(preset: Preset) -> float:
    """min over directions of trB for the preset's constants (⟨10⟩ / ⟨100⟩ for Zener ratio > 1)."""
    dirs = _directions(preset.dim)
    return float(tr_b(dirs, preset.c11, preset.c12, preset.c44).min())


def _directions(dim: int, samples: int = 181) -> torch.Tensor:
    """Unit vectors covering the half circle (2D) or a hemisphere (3D), including the axes and diagonals."""
    if dim == 2:
        a = torch.linspace(0, math.pi, samples, dtype=torch.float64)
        return torch.stack([torch.cos(a), torch.sin(a)], -1)
    th = torch.linspace(0, math.pi / 2, samples // 2 + 1, dtype=torch.float64)
    ph = torch.linspace(0, 2 * math.pi, samples, dtype=torch.float64)
    t, p = torch.meshgrid(th, ph, indexing="ij")
    n = torch.stack([torch.sin(t) * torch.cos(p), torch.sin(t) * torch.sin(p), torch.cos(t)], -1)
    diag = torch.full((1, 3), 1 / math.sqrt(3), dtype=torch.float64)
    return torch.cat([n.reshape(-1, 3), diag])


def spinodal_misfit(mean, preset: Preset):
    """Largest misfit η for which a uniform ⟨φ⟩ is linearly unstable: w'' + η² min trB < 0.

    Returns 0 outside the chemical spinodal. Accepts floats or arrays (numpy or torch).
    """
    t = torch.as_tensor(mean, dtype=torch.float64)
    curv = d2w(t, preset.interface_width)
    eta = torch.sqrt(torch.clamp(-curv, min=0) / min_tr_b(preset))
    return float(eta) if eta.ndim == 0 else eta.numpy()
