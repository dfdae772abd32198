"""Named physical settings taken from the two papers, so users pick a case instead of constants."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

MAX_STEPS_PER_FRAME = 100_000  # inner solver steps per frame τ (the presets use 100 to 400)


@dataclass(frozen=True)
class Preset:
    """Physics constants and time stepping of one published setting (grid spacing 1, M = 1)."""

    name: str
    description: str
    dim: int  # space dimension, 2 or 3
    interface_width: float  # ε in w(φ) = (18/ε) φ²(1−φ)² and the (ε/2)|∇φ|² term
    frame_time: float  # τ: simulated time between two stored frames
    time_steps: dict = field(default_factory=dict)  # solver name -> inner step δt
    solver: str = "spectral"  # the reference solver the paper used
    size: int = 128  # the paper's grid points per side
    mobility: float = 1.0
    c11: float = 3.0e4  # cubic elastic constants (used only when the misfit η > 0)
    c12: float = 1.5e4
    c44: float = 3.0e4
    misfit: float = 0.0  # default misfit η as a fraction (0.006 = 0.6 %)
    misfit_range: tuple = (0.0, 0.0)  # the range of η the paper sampled
    mean_range: tuple = (0.2, 0.8)  # the range of ⟨φ⟩ the paper sampled
    frames: int = 100  # frames per training sequence in the paper

    def __post_init__(self):
        """Bounds that keep a preset (possibly read from a checkpoint's config) runnable."""
        if self.dim not in (2, 3):
            raise ValueError(f"dim must be 2 or 3, not {self.dim!r}")
        positive = {"interface_width": self.interface_width, "frame_time": self.frame_time,
                    "mobility": self.mobility, **{f"time step {k}": v for k, v in self.time_steps.items()}}
        for key, value in positive.items():
            if not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
                raise ValueError(f"{key} must be a positive finite number, not {value!r}")
        for key in ("c11", "c12", "c44", "misfit"):
            value = getattr(self, key)
            if not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ValueError(f"{key} must be a finite number, not {value!r}")
        for solver, step in self.time_steps.items():
            if self.frame_time / step > MAX_STEPS_PER_FRAME:
                raise ValueError(f"time step {solver} = {step} gives {self.frame_time / step:.3g} steps per "
                                 f"frame; at most {MAX_STEPS_PER_FRAME} are allowed")

    def time_step(self, solver: str) -> float:
        """Inner step δt of `solver` for this preset."""
        try:
            return self.time_steps[solver]
        except KeyError:
            raise ValueError(f"preset {self.name!r} has no time step for solver {solver!r}; "
                             f"choose one of {sorted(self.time_steps)}") from None

    def steps_per_frame(self, solver: str) -> int:
        """Number of inner steps δt in one frame τ."""
        return max(1, round(self.frame_time / self.time_step(solver)))

    def to_dict(self) -> dict:
        """Plain-JSON description (stored in checkpoints and HDF5 attributes)."""
        d = asdict(self)
        d["misfit_range"] = list(self.misfit_range)
        d["mean_range"] = list(self.mean_range)
        return d


PRESETS: dict[str, Preset] = {
    p.name: p
    for p in (
        Preset(
            name="coherent-2d",
            description="2D coherent spinodal with cubic elastic misfit (CRNN 2D paper, eq. 8)",
            dim=2, interface_width=5.0, frame_time=1.0,
            # spectral: the paper's δt; FD: explicit Euler needs δt < 2/σ_max ≈ 5e-3 at ε = 5
            time_steps={"spectral": 0.01, "fd": 0.002},
            solver="spectral", size=128, misfit=0.006, misfit_range=(0.0, 0.012),
            mean_range=(0.2, 0.8), frames=100,
        ),
        Preset(
            name="plain-3d",
            description="3D Cahn–Hilliard without elasticity (CRNN 3D paper, eq. 2)",
            dim=3, interface_width=3.0, frame_time=0.5,
            # FD: the paper's δt; spectral: bounded to δt ≈ 0.25, pointwise sane at ≤ 0.125
            time_steps={"fd": 1.25e-3, "spectral": 0.125},
            solver="fd", size=64, misfit=0.0, misfit_range=(0.0, 0.0),
            mean_range=(0.3, 0.7), frames=50,
        ),
        Preset(
            name="plain-2d",
            description="2D Cahn–Hilliard without elasticity, the coherent-2d constants at η = 0",
            dim=2, interface_width=5.0, frame_time=1.0,
            time_steps={"spectral": 0.01, "fd": 0.002},
            solver="spectral", size=128, misfit=0.0, misfit_range=(0.0, 0.0),
            mean_range=(0.2, 0.8), frames=100,
        ),
        Preset(
            name="coherent-3d",
            description="3D coherent spinodal: the 2D paper's elastic constants on the 3D grid",
            dim=3, interface_width=3.0, frame_time=0.5,
            time_steps={"fd": 1.25e-3, "spectral": 0.125},
            solver="spectral", size=64, misfit=0.006, misfit_range=(0.0, 0.012),
            mean_range=(0.3, 0.7), frames=50,
        ),
    )
}


def get_preset(name: str | Preset) -> Preset:
    """Look up a preset by name (a Preset passes through)."""
    if isinstance(name, Preset):
        return name
    try:
        return PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}") from None
