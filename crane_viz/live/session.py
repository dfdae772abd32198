"""A surrogate and an optional reference engine run side by side from one initial condition.

The session advances both engines one frame τ at a time and reports, for every frame, both fields
and the metrics that compare them. It knows nothing about the app: the app, the CLI and tests all
drive it the same way (`step()`, or iterate `run(n)`), and several sessions are independent.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import torch

from ..analysis import metrics
from ..device import resolve_device
from ..engines.base import BLOW_UP_RANGE, Engine, State, diverged
from ..engines.surrogate import downsample
from ..physics.presets import Preset

# a rise of the surrogate's F/V above its running minimum by this fraction of F(0) is noted: Cahn–
# Hilliard flow never raises F, so the model has left the physics there (plain-3d at 64³ after 2000 τ)
ENERGY_RISE_NOTE = 0.01


@dataclass
class Frame:
    """One frame of a session: both fields (numpy, each engine's own grid) and the metrics."""

    index: int
    time: float
    surrogate: np.ndarray
    reference: np.ndarray | None
    metrics: dict[str, float]


@dataclass
class Session:
    """Pairs `surrogate` with an optional `reference` engine from the field `phi0` (numpy, grid).

    Comparison happens on the surrogate's grid: a reference on a finer grid is average-pooled
    down to it (recorded in `comparison_grid`). `training` is the checkpoint's training block
    (mean_range, misfit_range, grid, frames) used to warn about extrapolation: once per reset
    for the ranges, and from the frame the run passes the training data's time span on.
    """

    surrogate: Engine
    phi0: np.ndarray
    preset: Preset
    reference: Engine | None = None
    misfit: float = 0.0
    training: dict | None = None
    device: torch.device | None = None
    dtype: torch.dtype = torch.float32
    warnings: list[str] = field(default_factory=list)
    stop_reason: str | None = None
    paused: bool = False

    def __post_init__(self):
        self.device = resolve_device(self.device)
        if self.reference is not None and abs(self.reference.frame_time - self.surrogate.frame_time) > 1e-12:
            raise ValueError(f"frame times differ: surrogate τ = {self.surrogate.frame_time}, "
                             f"reference τ = {self.reference.frame_time}")
        self.dim = self.preset.dim
        self.reset(self.phi0)

    # ------------------------------------------------------------------ control
    def reset(self, phi0: np.ndarray | None = None) -> None:
        """Start again from `phi0` (default: the current initial field)."""
        if phi0 is not None:
            self.phi0 = np.asarray(phi0, dtype=np.float64)
        full = torch.as_tensor(self.phi0, dtype=self.dtype, device=self.device)[None]
        self._sur = self.surrogate.init_state(full)
        self._ref = self.reference.init_state(full) if self.reference is not None else None
        self._mean0_sur = metrics.mean_composition(self._sur.phi, self.dim)
        self._mean0_ref = metrics.mean_composition(full, self.dim)
        self.stop_reason = None
        self.warnings = self._range_warnings()
        self.history: list[dict[str, float]] = []
        self._energy0 = self._energy_min = self._surrogate_energy()
        self.energy_rise, self.energy_rise_frame = 0.0, 0

    @property
    def scale(self) -> int:
        """Reference grid points per surrogate grid point along each axis."""
        return self.surrogate.grid_scale

    @property
    def comparison_grid(self) -> tuple[int, ...]:
        return tuple(self._sur.phi.shape[1:])

    @property
    def frame(self) -> int:
        return self._sur.frame

    @property
    def stopped(self) -> bool:
        return self.stop_reason is not None

    def pause(self) -> None:
        self.paused = True

    def resume(self) -> None:
        self.paused = False

    def edit(self, delta: np.ndarray) -> None:
        """Add a zero-mean perturbation (full grid) to both engines' current fields and go on.

        The mean is removed first, so mass stays exactly conserved; the surrogate receives it
        at its own grid.
        """
        d = torch.as_tensor(delta - delta.mean(), dtype=self.dtype, device=self.device)[None]
        self._sur = State(phi=self._sur.phi + downsample(d, self.scale), time=self._sur.time,
                          frame=self._sur.frame, hidden=self._sur.hidden)
        if self._ref is not None:
            self._ref = State(phi=self._ref.phi + d, time=self._ref.time, frame=self._ref.frame,
                              hidden=self._ref.hidden)
        self._energy_min = self._surrogate_energy()  # the edit's change of F is the user's, not the model's

    def current(self) -> Frame:
        """The current frame (fields and the metrics measured so far), without stepping."""
        return Frame(self._sur.frame, self._sur.time, self._sur.phi[0].cpu().numpy(),
                     None if self._ref is None else self._ref.phi[0].cpu().numpy(),
                     self.history[-1] if self.history else {})

    # ------------------------------------------------------------------ stepping
    def step(self) -> Frame | None:
        """Advance both engines one frame; None (with `stop_reason` set) once stopped."""
        if self.stopped:
            return None
        # the reference steps on its own thread meanwhile (torch releases the GIL): a frame costs
        # the slower engine's time, not the sum, where a core is free
        pending = None if self._ref is None else self._reference_thread().submit(_timed, self.reference.step, self._ref)
        self._sur, sur_ms = _timed(self.surrogate.step, self._sur)
        if pending is not None:
            self._ref, ref_ms = pending.result()
        for label, state in (("surrogate", self._sur), ("reference", self._ref)):
            if state is not None and bool(diverged(state.phi).any()):
                self.stop_reason = (f"{label} blew up at frame {state.frame} (φ not finite or "
                                    f"outside {BLOW_UP_RANGE}); stopped")
                return None
        values = self.measure()
        self._track_energy(values["surrogate_energy_total"])
        values["surrogate_ms"] = sur_ms
        values["reference_ms"] = ref_ms if self._ref is not None else float("nan")
        self.history.append(values)
        return Frame(self._sur.frame, self._sur.time, self._sur.phi[0].cpu().numpy(),
                     None if self._ref is None else self._ref.phi[0].cpu().numpy(), values)

    def _reference_thread(self) -> ThreadPoolExecutor:
        """This session's one reference worker (its thread ends when the session is dropped)."""
        if getattr(self, "_pool", None) is None:
            # with this thread's torch thread count (a new thread would take every core: see
            # crane_viz.device.compute_thread)
            self._pool = ThreadPoolExecutor(1, thread_name_prefix="crane-viz-reference",
                                            initializer=torch.set_num_threads,
                                            initargs=(torch.get_num_threads(),))
        return self._pool

    def run(self, frames: int | None = None):
        """Yield frames until `frames` are done, the session is paused, or it stops."""
        done = 0
        while (frames is None or done < frames) and not self.paused:
            frame = self.step()
            if frame is None:
                return
            done += 1
            yield frame

    def measure(self) -> dict[str, float]:
        """The metrics of the current frame (the definitions in `crane_viz.analysis.metrics`)."""
        sur = self._sur.phi
        out = {"frame": float(self._sur.frame), "time": float(self._sur.time)}
        out.update(_energy("surrogate", sur, self.preset, self.misfit, self.scale))
        out["surrogate_mass_drift"] = float(metrics.mean_composition(sur, self.dim) - self._mean0_sur)
        out["surrogate_spread"] = float(metrics.spread(sur, self.dim))
        if self._ref is None:
            return out
        ref = self._ref.phi
        out.update(_energy("reference", ref, self.preset, self.misfit, 1))
        out["reference_mass_drift"] = float(metrics.mean_composition(ref, self.dim) - self._mean0_ref)
        out["reference_spread"] = float(metrics.spread(ref, self.dim))
        ref_c = downsample(ref, self.scale)
        out["rmse"] = float(metrics.rmse(ref_c, sur, self.dim))
        out["mae"] = float(metrics.mae(ref_c, sur, self.dim))
        out["delta"] = float(metrics.interface_displacement(ref_c, sur, self.dim)) * self.scale
        return out

    def _surrogate_energy(self) -> float:
        return _energy("surrogate", self._sur.phi, self.preset, self.misfit, self.scale)["surrogate_energy_total"]

    def _track_energy(self, energy: float) -> None:
        """The largest rise of the surrogate's F/V above its running minimum, in units of |F(0)|
        (`analysis.evaluation.largest_energy_rise`, frame by frame), and the frame it was seen."""
        self._energy_min = min(self._energy_min, energy)
        rise = (energy - self._energy_min) / max(abs(self._energy0), 1e-30)
        if rise > self.energy_rise:
            self.energy_rise, self.energy_rise_frame = rise, self._sur.frame

    def energy_note(self) -> str | None:
        """Once the surrogate's F/V has risen by more than ENERGY_RISE_NOTE of F(0): a picture that
        may still look plausible is no longer Cahn–Hilliard flow."""
        if self.energy_rise <= ENERGY_RISE_NOTE:
            return None
        return (f"the surrogate's F/V rose by {100 * self.energy_rise:.1f} % of F(0) (largest at frame "
                f"{self.energy_rise_frame}); Cahn–Hilliard flow never raises F, so it has left the physics")

    def notes(self) -> list[str]:
        """What the run has shown since its start that a user should read beside the picture: past
        the training sequences' span, or a free-energy rise (the status line, `run`'s warnings)."""
        return [note for note in (self.horizon_note(), self.energy_note()) if note]

    @property
    def training_span(self) -> float | None:
        """τ covered by the sequences of the surrogate's last training stage (None: unknown)."""
        frames = (self.training or {}).get("frames")
        return (frames - 1) * self.surrogate.frame_time if frames else None

    def horizon_note(self) -> str | None:
        """Past the training data's time span the surrogate extrapolates in time: a model can look
        right until then and drift or blow up afterwards (coherent-2d-coarse5 near 230–300 τ)."""
        span = self.training_span
        if span is None or self._sur.time <= span + 1e-9:
            return None
        return (f"t = {self._sur.time:g} τ is past the {span:g} τ of this model's training sequences: "
                f"it extrapolates in time")

    def _range_warnings(self) -> list[str]:
        """Warnings (once per reset) when ⟨φ⟩, η or the grid lie outside the training ranges."""
        if not self.training:
            return []
        found = []
        mean = float(self.phi0.mean())
        lo, hi = self.training.get("mean_range", (0.0, 1.0))
        if not _inside(mean, lo, hi):
            found.append(f"⟨φ⟩ = {mean:.3f} is outside the training range [{lo:.3f}, {hi:.3f}]")
        lo, hi = self.training.get("misfit_range", (0.0, 0.0))
        if not _inside(self.misfit, lo, hi):
            found.append(f"η = {100 * self.misfit:.2f} % is outside the training range "
                         f"[{100 * lo:.2f}, {100 * hi:.2f}] %")
        grid = self.training.get("grid")
        side = self.comparison_grid[0]
        if grid and not grid / 4 <= side <= grid * 8:
            found.append(f"grid {side} (model grid) is far from the training grid {grid}")
        return found


def _timed(step, state: State) -> tuple[State, float]:
    """One engine step and its milliseconds."""
    t0 = time.perf_counter()
    out = step(state)
    return out, (time.perf_counter() - t0) * 1e3


def _inside(value: float, lo: float, hi: float) -> bool:
    """Within a training range recorded as the smallest and largest value sampled, with 2 % of its
    width to spare: η = 0 is inside a range sampled from U(0, 1.2 %) whose smallest draw was 0.002 %."""
    spare = 0.02 * (hi - lo) + 1e-12
    return lo - spare <= value <= hi + spare


def _energy(label: str, phi: torch.Tensor, preset: Preset, misfit: float, spacing: int) -> dict:
    parts = metrics.energy(phi, preset, misfit, spacing=spacing)
    return {f"{label}_energy_{k}": float(v) for k, v in parts.items()}
