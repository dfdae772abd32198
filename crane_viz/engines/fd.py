"""Explicit finite-difference Cahn–Hilliard solver (the 3D paper's ground truth, eq. 2)."""

from __future__ import annotations

import torch

from ..physics.equations import dw, elastic_potential, periodic_laplacian
from ..physics.presets import Preset, get_preset
from .base import State


class FiniteDifferenceSolver:
    """∂φ/∂t = M∇²_h(w'(φ) − ε∇²_h φ + μ_el), forward Euler with the (2d+1)-point Laplacian ∇²_h

        φ(t+δt) = φ + δt M ∇²_h(w'(φ) − ε ∇²_h φ + μ_el(φ)).

    μ_el (only when η > 0) comes from the Fourier-space elastic solution, added explicitly.
    Stable for δt below about 2 / (|∇²_h|max (ε|∇²_h|max + max w'')).
    """

    name = "fd"
    grid_scale = 1

    def __init__(self, preset: Preset | str, *, misfit=None, time_step: float | None = None,
                 steps_per_frame: int | None = None):
        self.preset = get_preset(preset)
        self.dim = self.preset.dim
        self.misfit = self.preset.misfit if misfit is None else misfit
        self.time_step = time_step or self.preset.time_step("fd")
        self.steps_per_frame = steps_per_frame or max(1, round(self.preset.frame_time / self.time_step))
        self.frame_time = self.time_step * self.steps_per_frame
        self._elastic = bool(torch.as_tensor(self.misfit).abs().max() > 0)

    def init_state(self, phi: torch.Tensor) -> State:
        return State(phi=phi)

    def step(self, state: State) -> State:
        return state.advanced(self._frame_in_place(state.phi.clone()), self.frame_time)

    def _frame_in_place(self, phi: torch.Tensor) -> torch.Tensor:
        """One frame of Euler steps on `phi` (overwritten) with two reused buffers: the class's
        formula up to float round-off, 2.9–3.2× faster for batches at 32³–64³ (1.15× for one case) than a new
        tensor per operation."""
        eps, dim = self.preset.interface_width, self.dim
        dt_m = self.time_step * self.preset.mobility
        lap, mu = torch.empty_like(phi), torch.empty_like(phi)
        for _ in range(self.steps_per_frame):
            periodic_laplacian(phi, dim, out=lap)
            dw(phi, eps, out=mu).add_(lap, alpha=-eps)
            if self._elastic:
                mu.add_(elastic_potential(phi, self.misfit, self.preset, dim))
            phi.add_(periodic_laplacian(mu, dim, out=lap), alpha=dt_m)
        return phi
