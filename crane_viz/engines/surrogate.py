"""The CRNN as an evolution engine, interchangeable with the reference solvers."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..device import resolve_device
from ..nn.checkpoint import Checkpoint
from ..nn.model import CRNN
from ..physics.presets import Preset
from .base import State

KNOWN_CONDITIONS = ("misfit",)
PRECISIONS = {"float32": None, "bfloat16": torch.bfloat16}


def downsample(phi: torch.Tensor, factor: int) -> torch.Tensor:
    """(B, *grid) → grid / factor by average pooling, which keeps ⟨φ⟩ exactly.

    The 3D paper sampled every second point (nearest); averaging gives nearly the same field for
    data resolved on the coarse grid, but unlike sampling it does not change the mean
    composition, which the surrogate then conserves — so both runs share one ⟨φ⟩.
    """
    if factor == 1:
        return phi
    if any(n % factor for n in phi.shape[1:]):
        raise ValueError(f"grid {tuple(phi.shape[1:])} is not divisible by the grid scale {factor}")
    pool = F.avg_pool2d if phi.ndim == 3 else F.avg_pool3d
    return pool(phi.unsqueeze(1), factor).squeeze(1)


def upsample(phi: torch.Tensor, factor: int) -> torch.Tensor:
    """(B, *grid) → grid · factor by repetition (nearest), which keeps ⟨φ⟩ exactly."""
    for ax in range(1, phi.ndim):
        phi = phi.repeat_interleave(factor, dim=ax)
    return phi


def pick_device(device=None) -> torch.device:
    """CUDA when available (None or "auto"), else the device asked for (see `resolve_device`)."""
    return resolve_device(device)


class SurrogateEngine:
    """φ_{t+τ} = CRNN(φ_t, hidden, η): one recurrent step per frame τ (see `crane_viz.nn.model`).

    Takes a `Checkpoint` (physics, τ and grid scale come from it unless given) or a bare `CRNN`
    with keyword `preset` (required), `frame_time` (default the preset's τ) and `grid_scale`
    (default 1). Fields are moved to the engine's device, average-pooled to the model grid on
    `init_state` and returned on that grid. `misfit` (η as a fraction, a float or one value per
    batch element; default the preset's) feeds the model's "misfit" condition and is ignored by
    unconditioned models. `precision="bfloat16"` runs the network under bf16 autocast; the
    conserving output layer stays in float32.
    """

    def __init__(self, checkpoint: Checkpoint | CRNN, *, misfit=None, preset: Preset | None = None,
                 frame_time: float | None = None, grid_scale: int | None = None, device=None,
                 name: str | None = None, precision: str = "float32"):
        if isinstance(checkpoint, CRNN):
            model, label = checkpoint, "untrained"
        else:
            model, label = checkpoint.model, checkpoint.name
            preset = checkpoint.preset if preset is None else preset
            frame_time = checkpoint.frame_time if frame_time is None else frame_time
            grid_scale = checkpoint.grid_scale if grid_scale is None else grid_scale
        if preset is None:
            raise ValueError("a bare CRNN needs preset=")
        unknown = set(model.config.conditions) - set(KNOWN_CONDITIONS)
        if unknown:
            raise ValueError(f"unsupported model conditions {sorted(unknown)}; known: {KNOWN_CONDITIONS}")
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {sorted(PRECISIONS)}, not {precision!r}")
        self.device = pick_device(device)
        self.model = model.to(self.device).eval()
        self.dtype = next(model.parameters()).dtype
        self.preset = preset
        self.dim = model.config.dim
        self.frame_time = preset.frame_time if frame_time is None else frame_time
        self.grid_scale = 1 if grid_scale is None else int(grid_scale)
        self.misfit = preset.misfit if misfit is None else misfit
        self.name = name or f"crnn:{label}"
        self.precision = precision

    def _conditions(self, batch: int) -> torch.Tensor | None:
        """(batch, P) condition values in the model's order, None for unconditioned models."""
        if not self.model.config.conditions:
            return None
        eta = torch.as_tensor(self.misfit, dtype=self.dtype, device=self.device)
        if eta.ndim == 0:
            eta = eta.expand(batch)
        elif tuple(eta.shape) != (batch,):
            raise ValueError(f"misfit must be a scalar or one value per batch element ({batch}), "
                             f"got shape {tuple(eta.shape)}")
        values = {"misfit": eta}
        return torch.stack([values[n] for n in self.model.config.conditions], dim=1)

    def init_state(self, phi: torch.Tensor) -> State:
        """The model-grid state of a (B, *grid) field, with zero hidden states."""
        phi = phi.to(device=self.device, dtype=self.dtype)
        return State(phi=downsample(phi, self.grid_scale))

    def step(self, state: State) -> State:
        """One frame τ: one recurrent model step (no gradients)."""
        cond = self._conditions(state.phi.shape[0])
        low = PRECISIONS[self.precision]
        with torch.inference_mode(), torch.autocast(self.device.type, dtype=low, enabled=low is not None):
            phi, hidden = self.model(state.phi, state.hidden, cond)
        return state.advanced(phi, self.frame_time, hidden)
