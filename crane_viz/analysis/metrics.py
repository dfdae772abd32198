"""Pure metric functions of frames (physics.md §5). Batched torch inputs (B, *grid) give (B,) outputs.

`dim` is always the number of spatial axes (the trailing ones).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from ..physics.equations import free_energy, grad_sq_fd, spatial_dims, spatial_mean, spinodal_misfit, w
from ..physics.presets import Preset

SEPARATION_THRESHOLD = 0.05  # phase-separated ⇔ max φ − min φ above this (2D paper)


def rmse(phi: torch.Tensor, phi_hat: torch.Tensor, dim: int) -> torch.Tensor:
    """sqrt⟨(φ − φ̂)²⟩."""
    return torch.sqrt(spatial_mean((phi - phi_hat) ** 2, dim))


def mae(phi: torch.Tensor, phi_hat: torch.Tensor, dim: int) -> torch.Tensor:
    """⟨|φ − φ̂|⟩."""
    return spatial_mean((phi - phi_hat).abs(), dim)


def interface_displacement(phi_ref: torch.Tensor, phi_hat: torch.Tensor, dim: int) -> torch.Tensor:
    """δ̄ = sqrt(∫(φ − φ̂)² / ∫|∇φ|²): mean interface displacement in grid units (φ = reference)."""
    num = ((phi_ref - phi_hat) ** 2).sum(dim=spatial_dims(dim))
    den = grad_sq_fd(phi_ref, dim).sum(dim=spatial_dims(dim))
    return torch.sqrt(num / den.clamp_min(torch.finfo(phi_ref.dtype).tiny))


def energy(phi: torch.Tensor, preset: Preset, misfit=0.0, *, gradient: str = "spectral",
           spacing: float = 1.0):
    """F/V with its parts (see `physics.equations.free_energy`)."""
    return free_energy(phi, preset, misfit, gradient=gradient, spacing=spacing)


def interface_measure(phi: torch.Tensor, preset: Preset) -> torch.Tensor:
    """2⟨w(φ)⟩, proportional to the interface length/area (2D paper)."""
    return 2 * spatial_mean(w(phi, preset.interface_width), preset.dim)


def mean_composition(phi: torch.Tensor, dim: int) -> torch.Tensor:
    """⟨φ⟩ accumulated in float64 so that drift measurements see round-off, not summation error."""
    return spatial_mean(phi.double(), dim)


def mass_drift(phi: torch.Tensor, phi0: torch.Tensor, dim: int) -> torch.Tensor:
    """⟨φ⟩ − ⟨φ₀⟩."""
    return mean_composition(phi, dim) - mean_composition(phi0, dim)


def spread(phi: torch.Tensor, dim: int) -> torch.Tensor:
    """max φ − min φ over the domain."""
    flat = phi.flatten(start_dim=phi.ndim - dim)
    return flat.max(-1).values - flat.min(-1).values


def phase_separated(phi: torch.Tensor, dim: int, threshold: float = SEPARATION_THRESHOLD) -> torch.Tensor:
    """True where max φ − min φ exceeds `threshold`."""
    return spread(phi, dim) > threshold


def structure_factor(phi: torch.Tensor, dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Circularly averaged S(q) of θ = φ − ⟨φ⟩: (q bin centres, S of shape (B, bins))."""
    shape = tuple(phi.shape[-dim:])
    theta = phi - phi.mean(dim=spatial_dims(dim), keepdim=True)
    power = torch.fft.fftn(theta, dim=spatial_dims(dim)).abs() ** 2
    qs = torch.meshgrid(*[2 * math.pi * torch.fft.fftfreq(n, dtype=phi.dtype, device=phi.device)
                          for n in shape], indexing="ij")
    q = torch.sqrt(sum(k**2 for k in qs)).flatten()
    dq = 2 * math.pi / min(shape)
    bins = torch.round(q / dq).long()
    nbins = int(bins.max()) + 1
    flat = power.flatten(start_dim=phi.ndim - dim)
    total = torch.zeros(flat.shape[0], nbins, dtype=flat.dtype, device=flat.device)
    total.index_add_(1, bins, flat)
    count = torch.bincount(bins, minlength=nbins).to(flat.dtype)
    centres = torch.arange(nbins, dtype=phi.dtype, device=phi.device) * dq
    return centres, total / count.clamp_min(1)


def characteristic_length(phi: torch.Tensor, dim: int) -> torch.Tensor:
    """L = 2π / ⟨q⟩_S, with ⟨q⟩_S the S(q)-weighted mean wave number (q = 0 excluded)."""
    q, s = structure_factor(phi, dim)
    q, s = q[1:], s[:, 1:]
    qmean = (q * s).sum(-1) / s.sum(-1).clamp_min(torch.finfo(s.dtype).tiny)
    return 2 * math.pi / qmean


# --------------------------------------------------------------------------- morphology (2D)

def _orientation_histograms(img: np.ndarray, cell: int, bins: int) -> np.ndarray:
    """Per-cell histograms of unsigned gradient orientation weighted by magnitude.

    Bins are centred on multiples of 180°/bins, so bin 0 holds the ⟨10⟩ horizontal direction and
    bin bins/2 the vertical one.
    """
    gy = (np.roll(img, -1, 0) - np.roll(img, 1, 0)) / 2
    gx = (np.roll(img, -1, 1) - np.roll(img, 1, 1)) / 2
    mag = np.hypot(gx, gy)
    ang = np.degrees(np.arctan2(gy, gx)) % 180.0
    width = 180.0 / bins
    idx = np.floor((ang + width / 2) / width).astype(int) % bins
    ny, nx = img.shape[0] // cell, img.shape[1] // cell
    hist = np.zeros((ny, nx, bins))
    cy = (np.arange(ny * cell) // cell)[:, None]
    cx = (np.arange(nx * cell) // cell)[None, :]
    np.add.at(hist, (np.broadcast_to(cy, (ny * cell, nx * cell)),
                     np.broadcast_to(cx, (ny * cell, nx * cell)),
                     idx[: ny * cell, : nx * cell]), mag[: ny * cell, : nx * cell])
    return hist


def orientation_magnitudes(img: np.ndarray, *, cell: int = 4, block: int = 2,
                           bins: int = 10) -> np.ndarray:
    """HOG descriptor averaged over the image: mean block-normalised magnitude per orientation bin."""
    hist = _orientation_histograms(np.asarray(img, dtype=np.float64), cell, bins)
    ny, nx = hist.shape[:2]
    blocks = []
    for i in range(ny - block + 1):
        for j in range(nx - block + 1):
            b = hist[i:i + block, j:j + block].reshape(-1, bins)
            norm = np.sqrt((b**2).sum() + 1e-12)
            blocks.append(b / norm)
    return np.concatenate(blocks).mean(axis=0)


def isotropy_degree(img: np.ndarray, *, cell: int = 4, block: int = 2, bins: int = 10) -> float:
    """I = ⟨M non-axial⟩ / ⟨M along ⟨10⟩⟩ from the HOG (2D paper, Fig. 5d).

    ≈ 1 for isotropic patterns, < 1 for domains aligned with the ⟨10⟩ axes.
    """
    m = orientation_magnitudes(img, cell=cell, block=block, bins=bins)
    axial = [0, bins // 2]
    non_axial = [k for k in range(bins) if k not in axial]
    return float(m[non_axial].mean() / max(m[axial].mean(), 1e-300))


def boundary_pixels(img: np.ndarray, level: float = 0.5) -> np.ndarray:
    """Pixels on the φ = level contour: inside pixels with an outside periodic neighbour."""
    inside = np.asarray(img) >= level
    edge = np.zeros_like(inside)
    for ax in (0, 1):
        for s in (1, -1):
            edge |= inside & ~np.roll(inside, s, ax)
    return edge


def boundary_fractal_dimension(img: np.ndarray, level: float = 0.5) -> float:
    """D_b: minus the slope of log N(L) vs log L, N = boxes of side L holding boundary pixels.

    Box sides are powers of two from 2 to a quarter of the image. NaN when there is no boundary.
    """
    edge = boundary_pixels(img, level)
    n = min(edge.shape)
    if not edge.any():
        return float("nan")
    sizes, counts = [], []
    box = 2
    while box <= n // 4:
        m = n // box
        e = edge[: m * box, : m * box].reshape(m, box, m, box)
        counts.append(int(e.any(axis=(1, 3)).sum()))
        sizes.append(box)
        box *= 2
    slope = np.polyfit(np.log(sizes), np.log(counts), 1)[0]
    return float(-slope)


def spinodal_line(preset: Preset, means=None):
    """(⟨φ⟩ values, η_max(⟨φ⟩)) of the analytic spinodal for the phase diagram (physics.md §6)."""
    means = np.linspace(0.0, 1.0, 401) if means is None else np.asarray(means, dtype=np.float64)
    return means, spinodal_misfit(means, preset)


# --------------------------------------------------------------------------- alignment, similarity

def axis_anisotropy(phi: torch.Tensor, dim: int) -> torch.Tensor:
    """(P_axes − P_diagonals) / (P_axes + P_diagonals) of the structure factor |θ̂(q)|².

    A wave vector counts as axial when it lies within 22.5° of a ⟨10⟩ (⟨100⟩) axis, else as
    diagonal; q = 0 and the spectrum's corners beyond the Nyquist disc (all diagonal) are left
    out, so the two sectors have equal area. ≈ 0 for isotropic patterns, → 1 for domains aligned with the
    axes (the coherent spinodal at large η), → −1 for diagonal ones.
    """
    shape = tuple(phi.shape[-dim:])
    theta = phi - phi.mean(dim=spatial_dims(dim), keepdim=True)
    power = torch.fft.fftn(theta.double(), dim=spatial_dims(dim)).abs().flatten(-dim) ** 2
    qs = torch.meshgrid(*[torch.fft.fftfreq(n, dtype=torch.float64, device=phi.device) for n in shape],
                        indexing="ij")
    q = torch.stack([k.flatten() for k in qs])
    norm = q.norm(dim=0)
    cos_axis = q.abs().max(dim=0).values / norm.clamp_min(1e-300)  # cosine to the nearest axis
    inside = (norm > 0) & (norm <= 0.5)
    axial = (cos_axis >= math.cos(math.radians(22.5))) & inside
    diagonal = ~axial & inside
    pa, pd = (power * axial).sum(-1), (power * diagonal).sum(-1)
    return ((pa - pd) / (pa + pd).clamp_min(1e-300)).to(phi.dtype)


def _gaussian_blur(x: torch.Tensor, dim: int, sigma: float = 1.5, radius: int = 5) -> torch.Tensor:
    """Separable periodic Gaussian filter of (B, *grid) along each spatial axis."""
    offsets = torch.arange(-radius, radius + 1, dtype=x.dtype, device=x.device)
    weights = torch.exp(-0.5 * (offsets / sigma) ** 2)
    weights = weights / weights.sum()
    for ax in spatial_dims(dim):
        x = sum(wgt * torch.roll(x, int(o), ax) for o, wgt in zip(offsets.tolist(), weights))
    return x


def ssim(phi: torch.Tensor, phi_hat: torch.Tensor, dim: int, data_range: float = 1.0) -> torch.Tensor:
    """Mean structural similarity (Wang et al. 2004: Gaussian window σ = 1.5, K1 = 0.01,
    K2 = 0.03) with periodic boundaries; 1 for identical fields."""
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    a, b = phi.double(), phi_hat.double()
    mu_a, mu_b = _gaussian_blur(a, dim), _gaussian_blur(b, dim)
    var_a = _gaussian_blur(a * a, dim) - mu_a**2
    var_b = _gaussian_blur(b * b, dim) - mu_b**2
    cov = _gaussian_blur(a * b, dim) - mu_a * mu_b
    s = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))
    return spatial_mean(s, dim).to(phi.dtype)


def mode_amplitude(phi: torch.Tensor, wave: tuple[int, ...]) -> torch.Tensor:
    """|θ̂(k)| / N of the Fourier mode with integer wave numbers `wave` (k = 2π wave / size)."""
    dim = len(wave)
    spectrum = torch.fft.fftn(phi.double(), dim=spatial_dims(dim))
    index = (Ellipsis, *(w % n for w, n in zip(wave, phi.shape[-dim:])))
    return (spectrum[index].abs() / math.prod(phi.shape[-dim:])).to(phi.dtype)
