"""The CRNN as an evolution engine, interchangeable with the reference solvers."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .engines.base import State
from .model import CRNN
from .presets import Preset


def downsample(phi: torch.Tensor, factor: int) -> torch.Tensor:
    """(B, *grid) → grid / factor by average pooling, which keeps ⟨φ⟩ exactly.

    The 3D paper sampled every second point (nearest); averaging gives the same field for smooth
    data and does not change the mean composition, which the surrogate then conserves.
    """
    if factor == 1:
        return phi
    pool = F.avg_pool2d if phi.ndim == 3 else F.avg_pool3d
    return pool(phi.unsqueeze(1), factor).squeeze(1)


def upsample(phi: torch.Tensor, factor: int) -> torch.Tensor:
    """(B, *grid) → grid · factor by repetition (nearest), which keeps ⟨φ⟩ exactly."""
    for ax in range(1, phi.ndim):
        phi = phi.repeat_interleave(factor, dim=ax)
    return phi


def pick_device(device=None) -> torch.device:
    """CUDA when available (or asked for), CPU otherwise."""
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


class SurrogateEngine:
    """φ_{t+τ} = CRNN(φ_t, hidden, η): one recurrent step per frame τ (see `crane_viz.model`).

    Takes a `Checkpoint` (physics, τ and grid scale come from it) or a bare `CRNN` with
    keyword `preset`, `frame_time`, `grid_scale`. Fields are average-pooled to the model grid on
    `init_state` and returned on that grid. `misfit` (η, float or one value per batch element)
    feeds the model's "misfit" condition. `precision="bfloat16"` runs under bf16 autocast.
    """

    def __init__(self, checkpoint, *, misfit=None, preset: Preset | None = None,
                 frame_time: float | None = None, grid_scale: int | None = None, device=None,
                 name: str | None = None, precision: str = "float32"):
        if isinstance(checkpoint, CRNN):
            model, ckpt_name = checkpoint, "untrained"
        else:
            model, ckpt_name = checkpoint.model, checkpoint.name
            preset = preset or checkpoint.preset
            frame_time = frame_time or checkpoint.frame_time
            grid_scale = grid_scale or checkpoint.grid_scale
        if preset is None:
            raise ValueError("a bare CRNN needs preset=")
        self.device = pick_device(device)
        self.model = model.to(self.device).eval()
        self.preset = preset
        self.dim = model.config.dim
        self.frame_time = frame_time or preset.frame_time
        self.grid_scale = grid_scale or 1
        self.misfit = preset.misfit if misfit is None else misfit
        self.name = name or f"crnn:{ckpt_name}"
        self.precision = precision

    def _conditions(self, batch: int) -> torch.Tensor | None:
        names = self.model.config.conditions
        if not names:
            return None
        values = {"misfit": torch.as_tensor(self.misfit, dtype=torch.float32, device=self.device)}
        cols = [values[n].expand(batch) if values[n].ndim == 0 else values[n] for n in names]
        return torch.stack(cols, dim=1)

    def init_state(self, phi: torch.Tensor) -> State:
        return State(phi=downsample(phi.to(self.device), self.grid_scale))

    def step(self, state: State) -> State:
        cond = self._conditions(state.phi.shape[0])
        with torch.inference_mode(), torch.autocast(self.device.type, dtype=torch.bfloat16,
                                                    enabled=self.precision == "bfloat16"):
            phi, hidden = self.model(state.phi, state.hidden, cond)
        return state.advanced(phi.float(), self.frame_time, hidden)
