"""Long free rollouts of a surrogate alone: does it stay in range, conserve mass and keep lowering
its free energy for thousands of frames (the 3D paper's 10⁴ steps)? No reference runs beside it,
so the cost is the model's alone: 10⁴ frames of 4 cases at 16³ take minutes on one core."""

from __future__ import annotations

import time
from typing import Callable

import numpy as np
import torch

from ..engines.base import diverged, states
from ..engines.surrogate import SurrogateEngine
from ..nn.checkpoint import Checkpoint
from ..physics.initial import as_batch, perlin_field
from ..settings import StabilitySettings
from . import metrics
from .evaluation import largest_energy_rise

MEANS = (0.5, 0.4, 0.6, 0.45)  # ⟨φ⟩ of case i is MEANS[i % 4]
# the reference solvers' fields stay within about [−0.05, 1.05]; beyond this band a surrogate has
# left the physics although it has not diverged (engines.base.BLOW_UP_RANGE) yet
SANE_RANGE = (-0.25, 1.25)


def case_means(settings: StabilitySettings) -> list[float]:
    """⟨φ⟩ of each case."""
    return [MEANS[i % len(MEANS)] for i in range(settings.cases)]


def initial_fields(settings: StabilitySettings, dim: int) -> torch.Tensor:
    """(B, *grid) Perlin fields of the held-out cases."""
    return as_batch([perlin_field(settings.size, dim, mean=m, amplitude=settings.amplitude,
                                  cells=max(1, settings.size // 8), seed=settings.seed + i)
                     for i, m in enumerate(case_means(settings))])


def _first(frames: np.ndarray, hit: np.ndarray, frame: int) -> np.ndarray:
    """Record `frame` where `hit` is true for the first time (−1 = never)."""
    return np.where(hit & (frames < 0), frame, frames)


def long_rollout(ckpt: Checkpoint, settings: StabilitySettings, device="cpu",
                 progress: Callable[[int, int], None] | None = None,
                 on_row: Callable[[dict], None] | None = None) -> dict:
    """Roll `settings.cases` cases out for `settings.frames` frames; rows of per-case extremes,
    F/V and mass drift every `report_every` frames (each also handed to `on_row` as it is made,
    so a run of hours shows its state in a log), the first frame each case left SANE_RANGE or
    diverged, and the largest rise of F/V over all frames (`largest_energy_rise`).
    Stops early once every case has diverged."""
    phi0 = initial_fields(settings, ckpt.dim)
    eta = settings.eta_percent / 100 if "misfit" in ckpt.conditions else ckpt.preset.misfit
    engine = SurrogateEngine(ckpt, misfit=eta, device=device)
    dim, scale = ckpt.dim, ckpt.grid_scale
    eta_cases = torch.full((settings.cases,), eta, dtype=torch.float64, device=engine.device)
    left, blew = np.full(settings.cases, -1), np.full(settings.cases, -1)
    rows, energy, mass0, started = [], [], None, time.perf_counter()
    for frame, state in enumerate(states(engine, phi0, settings.frames)):
        phi = state.phi
        flat = phi.flatten(1)
        high, low = flat.max(1).values.cpu().numpy(), flat.min(1).values.cpu().numpy()
        left = _first(left, (low < SANE_RANGE[0]) | (high > SANE_RANGE[1]), frame)
        blew = _first(blew, diverged(phi).cpu().numpy(), frame)
        mass = metrics.mean_composition(phi, dim).cpu().numpy()
        mass0 = mass if mass0 is None else mass0
        energy.append(metrics.energy(phi.double(), ckpt.preset, eta_cases, spacing=scale)["total"].cpu().numpy())
        done = frame == settings.frames or (blew >= 0).all()
        if frame % settings.report_every == 0 or done:
            rows.append({"frame": frame, "time": float(state.time), "max": high.tolist(), "min": low.tolist(),
                         "f_over_v": energy[-1].tolist(), "max_mass_drift": float(np.abs(mass - mass0).max()),
                         "seconds": time.perf_counter() - started})
            if on_row is not None:
                on_row(rows[-1])
        if progress is not None:
            progress(frame, settings.frames)
        if done:
            break
    return {"checkpoint": ckpt.name, "settings": settings.describe(), "means": case_means(settings),
            "sane_range": list(SANE_RANGE), "frames_run": rows[-1]["frame"],
            "first_frame_out_of_range": left.tolist(), "first_frame_diverged": blew.tolist(),
            "largest_energy_rise": largest_energy_rise(np.array(energy).T), "rows": rows}

