"""Run settings declared once, with bounds and docs, shared by the CLI, the app and scripts.

`SimulationSettings` is a `param.Parameterized`: the CLI builds its options from these
declarations and the app shows them as widgets. Construction checks each bound; `check()` adds the
checks that involve several settings and returns warnings for values outside the papers' ranges.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import field, fields

import numpy as np
import param

from .device import DEVICE_HELP, resolve_device  # noqa: F401  (resolve_device re-exported for the CLI)
from .errors import InputError
from .physics.initial import cells_for_length, composition_gradient, load_field, perlin_field, slab, sphere
from .physics.presets import PRESETS, Preset, get_preset

MAX_SIZE_3D = 256  # 3D grids above 256³ are refused: hours per frame on CPU, GBs per field
PAPER_MAX_MISFIT = 0.012  # the 2D paper's largest η; larger values are accepted with a warning
MAX_MISFIT = 0.05  # the largest η any command or the app accepts (5 %)
MAX_SEED = 2**32 - 1  # seeds of the initial noise
INIT_KINDS = ("perlin", "sphere", "slab", "gradient")
WORK_ARRAYS = 24  # float32 fields of grid size an engine step keeps alive, for the memory check


# the shipped 2D model with the best figures in the papers' protocol (its card): the explorer's
# first choice and the CLI's default checkpoint
DEFAULT_CHECKPOINT = "coherent-2d-elastic"
# the shipped sweep model: 5 τ per step and flip-averaged, it answers a 500-point sweep at 128² to
# 100 τ in 7–8 min of one CPU thread at 99 % agreement with the reference (its card)
DEFAULT_SWEEP_CHECKPOINT = "coherent-2d-coarse5"


def default_preset_for(dim: int | None) -> str:
    """The paper preset of a dimension: coherent-2d in 2D, plain-3d in 3D."""
    return "plain-3d" if dim == 3 else "coherent-2d"


def available_memory_bytes() -> int:
    """Physical memory of this machine (the bound of the largest grid we accept)."""
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


ACTIVATION_ARRAYS = 12  # grid-sized arrays per hidden channel a CRNN step keeps alive (gates, tanh)


def check_grid(size: int, dim: int, *, arrays: float = WORK_ARRAYS, batch: int = 1) -> None:
    """Refuse a grid that does not fit: 3D above MAX_SIZE_3D³, or `batch` × `arrays` float32
    fields of size^dim above half this machine's memory. The message gives the largest side."""
    if dim == 3 and size > MAX_SIZE_3D:
        raise InputError(f"--size: 3D grids are limited to {MAX_SIZE_3D}³, not {size}³")
    per_point = arrays * 4 * batch
    need = per_point * size**dim
    allowed = available_memory_bytes() // 2
    if need > allowed:
        limit = int((allowed / per_point) ** (1 / dim))
        what = f"{batch} × {size}^{dim}" if batch > 1 else f"a {size}^{dim} grid"
        raise InputError(f"--size {size}: {what} needs about {need / 2**30:.1f} GiB; this machine "
                         f"allows at most {limit} points per side")


class Settings(param.Parameterized):
    """Base of every settings class: a bound violated on construction is an InputError."""

    def __init__(self, **params):
        """Bounds are checked on construction; a violation is an InputError naming the bound.

        A number given as ±inf is refused too: param lets it through wherever a bound is open.
        """
        try:
            super().__init__(**params)
        except ValueError as exc:
            raise InputError(_plain(str(exc))) from None
        for name, value in params.items():
            if isinstance(value, float) and not math.isfinite(value):
                raise InputError(f"--{name.replace('_', '-')} must be a finite number, not {value}")

    def describe(self) -> dict:
        """Every setting as plain values (for JSON summaries and HDF5 attributes)."""
        return {k: v for k, v in self.param.values().items() if k != "name"}


class InitialConditionSettings(Settings):
    """How the initial field is made: Perlin noise about ⟨φ⟩ (the papers), a shape, or a file."""

    mean = param.Number(0.5, bounds=(0.0, 1.0), inclusive_bounds=(False, False),
                        softbounds=(0.2, 0.8), doc="Mean composition ⟨φ⟩, strictly between 0 and 1.")
    amplitude = param.Number(0.1, bounds=(0.0, None), softbounds=(0.0, 0.5),
                             doc="Peak deviation max|φ − ⟨φ⟩| of the initial noise (≥ 0).")
    cells = param.Integer(8, bounds=(1, None), softbounds=(1, 64),
                          doc="Perlin lattice cells per side; correlation length = size / cells.")
    correlation_length = param.Number(None, bounds=(1.0, None), allow_None=True,
                                      doc="Perlin feature size in grid points; overrides --cells "
                                          "(cells = round(size / length)).")
    octaves = param.Integer(1, bounds=(1, 6), doc="Perlin octaves (each doubles the cells, half weight).")
    seed = param.Integer(0, bounds=(0, MAX_SEED), doc="Random seed of the initial noise.")
    init_kind = param.Selector(default="perlin", objects=list(INIT_KINDS),
                               doc="Initial condition: Perlin noise, sphere, slab or a composition gradient.")
    init = param.String(default=None, allow_None=True,
                        doc="Path of a .npy, .h5 or greyscale image field; overrides the generated one.")

    def lattice_cells(self, size: int) -> int:
        """Perlin cells per side on a grid of `size`, from --correlation-length when given."""
        if self.correlation_length is not None:
            return cells_for_length(size, self.correlation_length)
        return min(self.cells, size)

    def initial_field(self, size: int, dim: int) -> np.ndarray:
        """The initial field (float64, (size,)*dim) these settings describe."""
        if self.init:
            return load_field(self.init, dim=dim, size=size)
        cells = self.lattice_cells(size)
        if self.init_kind == "perlin":
            return perlin_field(size, dim, mean=self.mean, amplitude=self.amplitude,
                                cells=cells, seed=self.seed, octaves=self.octaves)
        if self.init_kind == "gradient":
            return composition_gradient(size, dim, mean=self.mean, contrast=max(self.amplitude, 1e-3),
                                        noise=0.1 * self.amplitude, cells=cells, seed=self.seed)
        if self.init_kind == "sphere":
            ball = math.pi if dim == 2 else 4 * math.pi / 3
            shape = sphere(size, dim, radius=min((self.mean / ball) ** (1 / dim) * size, 0.45 * size))
        else:
            shape = slab(size, dim, thickness=self.mean * size)
        return shape - shape.mean() + self.mean  # volume fraction ≈ ⟨φ⟩, made exact by a shift

    def _check_cells(self, size: int) -> None:
        if not self.init and self.correlation_length is None and self.cells > size:
            raise InputError(f"--cells must be at most the grid size {size}, not {self.cells}")


class EvolutionSettings(InitialConditionSettings):
    """What every evolution run shares, declared once: grid, η, length and device."""

    size = param.Integer(None, bounds=(8, 8192), allow_None=True,
                         doc="Grid points per side (the reference's grid beside a surrogate; default: the "
                             "preset's; 3D at most 256).")
    eta = param.Number(None, bounds=(0.0, MAX_MISFIT), softbounds=(0.0, PAPER_MAX_MISFIT), allow_None=True,
                       doc="Elastic misfit η as a fraction (0.006 = 0.6 %), between 0 and 0.05 "
                           "(default: the preset's).")
    frames = param.Integer(100, bounds=(1, 100_000), doc="Frames τ to run after the initial one.")
    device = param.String(default="auto", doc=DEVICE_HELP)


class SimulationSettings(EvolutionSettings):
    """One reference-solver run: preset physics, grid, solver, initial condition and length."""

    preset = param.Selector(default=None, objects=[None, *PRESETS], allow_None=True,
                            doc="Physics preset named after a paper's setting (default follows --dim).")
    dim = param.Integer(None, bounds=(2, 3), allow_None=True,
                        doc="Space dimension, 2 or 3 (default: the preset's).")
    solver = param.Selector(default=None, objects=[None, "spectral", "fd"], allow_None=True,
                            doc="Reference solver: semi-implicit spectral or explicit finite differences "
                                "(default: the preset's).")

    # ---- resolved values: preset defaults fill whatever was left unset
    @property
    def physics(self) -> Preset:
        return get_preset(self.preset or default_preset_for(self.dim))

    @property
    def grid_size(self) -> int:
        return self.size or self.physics.size

    @property
    def misfit(self) -> float:
        return self.physics.misfit if self.eta is None else self.eta

    @property
    def solver_name(self) -> str:
        return self.solver or self.physics.solver

    def check(self) -> list[str]:
        """Cross-setting checks (raise InputError); returns warnings to show the user."""
        preset = self.physics
        if self.dim is not None and self.dim != preset.dim:
            raise InputError(f"--dim {self.dim} does not match preset {preset.name!r}, which is "
                             f"{preset.dim}D; drop --dim or pick a {self.dim}D preset")
        size, dim = self.grid_size, preset.dim
        check_grid(size, dim)
        self._check_cells(size)
        resolve_device(self.device)
        warnings = []
        if self.misfit > PAPER_MAX_MISFIT:
            warnings.append(f"η = {self.misfit:.4f} lies beyond the papers' range [0, {PAPER_MAX_MISFIT}]"
                            " (accepted; results are extrapolation)")
        if self.misfit > 0 and preset.misfit_range == (0.0, 0.0):
            warnings.append(f"preset {preset.name!r} is elastically inert in the paper; η = "
                            f"{self.misfit} adds cubic elasticity with the 2D paper's constants")
        return warnings

    def describe(self) -> dict:
        """Every resolved setting as plain values (stored as HDF5 attributes)."""
        return {"preset": self.physics.name, "dim": self.physics.dim, "size": self.grid_size,
                "solver": self.solver_name, "mean": self.mean, "eta": self.misfit,
                "amplitude": self.amplitude, "cells": self.cells, "octaves": self.octaves,
                "seed": self.seed, "init_kind": self.init_kind, "init": self.init or "",
                "frames": self.frames}


SELECTOR_REFUSAL = re.compile(r"does not accept (.+); valid options include: '\[(.*)\]'")


def _plain(message: str) -> str:
    """Turn param's "Number parameter 'SimulationSettings.mean' must …" into "--mean must …",
    and its selector refusal into "must be one of a, b, not 'x'" (without the internal None)."""
    refusal = SELECTOR_REFUSAL.search(message)
    if refusal:
        options = [o for o in refusal.group(2).split(", ") if o != "None"]
        message = message[:refusal.start()] + f"must be one of {', '.join(options)}, not {refusal.group(1)}"
    for kind in ("Number", "Integer", "Selector", "String", "Boolean"):
        message = message.replace(f"{kind} parameter ", "")
    if message.startswith("'") and "." in message.split("'")[1]:
        name = message.split("'")[1].split(".")[-1]
        message = f"--{name.replace('_', '-')}" + message.split("'", 2)[2]
    return message.rstrip(".")


class RunSettings(EvolutionSettings):
    """A surrogate run beside an optional reference: the physics come from the checkpoint."""

    checkpoint = param.String(default=DEFAULT_CHECKPOINT,
                              doc="Shipped checkpoint name or path of a checkpoint folder.")
    reference = param.Selector(default="spectral", objects=["none", "spectral", "fd"],
                               doc="Reference solver run beside the surrogate, or none.")

    def check(self, preset: Preset, grid_scale: int, channels: int = 0) -> list[str]:
        """Checks against the checkpoint's preset and size (`channels` hidden channels); returns
        warnings."""
        size = self.size or preset.size
        if size % grid_scale:
            raise InputError(f"--size must be a multiple of the checkpoint's grid scale {grid_scale}, "
                             f"not {size}")
        model_arrays = ACTIVATION_ARRAYS * channels / grid_scale**preset.dim
        check_grid(size, preset.dim, arrays=WORK_ARRAYS + model_arrays)
        self._check_cells(size)
        resolve_device(self.device)
        misfit = preset.misfit if self.eta is None else self.eta
        return [f"η = {misfit:.4f} lies beyond the papers' range [0, {PAPER_MAX_MISFIT}]"] \
            if misfit > PAPER_MAX_MISFIT else []


class SweepSettings(Settings):
    """A phase-diagram sweep: (⟨φ⟩, η) points, their initial noise, horizon and grid."""

    points = param.Integer(500, bounds=(1, 100_000), doc="Number of (⟨φ⟩, η) points.")
    layout = param.Selector(default="random", objects=["random", "grid"],
                            doc="Uniform random points, or a regular grid of about that many.")
    mean_min = param.Number(0.2, bounds=(0.0, 1.0), inclusive_bounds=(False, False), doc="Smallest ⟨φ⟩.")
    mean_max = param.Number(0.8, bounds=(0.0, 1.0), inclusive_bounds=(False, False), doc="Largest ⟨φ⟩.")
    eta_max_percent = param.Number(1.2, bounds=(0.0, 5.0), softbounds=(0.0, 2.0),
                                   doc="Largest misfit η in percent (points span 0 to this).")
    amplitude = param.Number(0.05, bounds=(0.0, 0.5), doc="Peak Perlin deviation max|φ − ⟨φ⟩| of every point.")
    cells = param.Integer(8, bounds=(1, 256), doc="Perlin lattice cells per side.")
    seed = param.Integer(0, bounds=(0, 2**31 - 1), doc="Seed of the point positions; point i's noise uses seed + i.")
    horizon = param.Integer(100, bounds=(1, 10_000), doc="Simulated time τ before the outcome is read "
                                                             "(a whole number of the model's frames).")
    size = param.Integer(128, bounds=(8, 2048), doc="Grid points per side.")
    batch = param.Integer(50, bounds=(1, 1024), doc="Points integrated together in one tensor.")
    threshold = param.Number(0.05, bounds=(0.0, 1.0), doc="Separated when max φ − min φ exceeds this.")
    reference = param.Selector(default="none", objects=["none", "spectral", "fd"],
                               doc="Also run a reference solver on the same points, for agreement.")

    def check(self) -> None:
        if self.mean_min >= self.mean_max:
            raise InputError(f"--mean-min ({self.mean_min}) must be below --mean-max ({self.mean_max})")
        if self.cells > self.size:
            raise InputError(f"--cells must be at most the grid size {self.size}, not {self.cells}")
        # one batch of points is integrated at once: fields, solver work arrays and the activations
        # of a paper-size model (24 channels) for every point of the batch
        per_point = (WORK_ARRAYS + ACTIVATION_ARRAYS * 24) * 4 * self.size**2
        allowed = available_memory_bytes() // 2
        if per_point * self.batch > allowed:
            fits = max(allowed // per_point, 0)
            raise InputError(f"--batch {self.batch} at --size {self.size} needs about "
                             f"{per_point * self.batch / 2**30:.1f} GiB; this machine holds at most "
                             f"{fits} points of {self.size}² per batch (lower --batch or --size)")



class StabilitySettings(Settings):
    """Long free rollouts of a surrogate alone (`crane-viz stability`): bounded, mass-conserving,
    still lowering its free energy after thousands of frames (the 3D paper: 10⁴ steps)?"""

    size = param.Integer(16, bounds=(8, 256), doc="Grid points per side of the reference grid.")
    frames = param.Integer(10_000, bounds=(1, 10_000_000), doc="Model frames to roll out.")
    cases = param.Integer(4, bounds=(1, 256), doc="Cases, run as one batch; case i has ⟨φ⟩ = "
                                                  "0.5, 0.4, 0.6, 0.45 (i mod 4).")
    report_every = param.Integer(1000, bounds=(1, 10_000_000), doc="Frames between reported rows.")
    amplitude = param.Number(0.1, bounds=(0.0, 0.5),
                             doc="Peak Perlin deviation max|φ − ⟨φ⟩| (cells: size / 8).")
    eta_percent = param.Number(0.6, bounds=(0.0, 5.0),
                               doc="Misfit η in percent for η-conditioned models (others run their preset's).")
    seed = param.Integer(2_000_000, bounds=(0, 2**31 - 1),
                         doc="Case i's noise uses seed + i (held out: training seeds are far below).")

    def check(self, dim: int, grid_scale: int, channels: int) -> None:
        """The grid must suit the checkpoint (`channels` hidden channels) and fit in memory."""
        if self.size % grid_scale:
            raise InputError(f"--size must be a multiple of the checkpoint's grid scale {grid_scale}, "
                             f"not {self.size}")
        model_arrays = ACTIVATION_ARRAYS * channels / grid_scale**dim
        check_grid(self.size, dim, arrays=WORK_ARRAYS + model_arrays, batch=self.cases)


def spec_field(default, doc: str, bounds: tuple | None = None):
    """A dataclass field with its doc and (integer) bounds declared once, for `check_spec` and
    `spec_help` (the plain-dataclass specs: datasets, evaluations)."""
    return field(default=default, metadata={"doc": doc, "bounds": bounds})


def check_spec(spec) -> None:
    """InputError naming the option for any field of `spec` outside its declared bounds."""
    for f in fields(spec):
        bounds, value = f.metadata.get("bounds"), getattr(spec, f.name)
        if bounds is None:
            continue
        low, high = bounds
        if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
            raise InputError(f"--{f.name.replace('_', '-')} must be an integer in [{low}, {high}], not {value!r}")


def spec_help(f, default=None) -> str:
    """--help text of a spec field: its doc, bounds and default."""
    bounds = f.metadata.get("bounds")
    text = f.metadata.get("doc", "") + (f" Range [{bounds[0]}, {bounds[1]}]." if bounds else "")
    text += f" Default: {f.default if default is None else default}."
    return text.replace("%", "%%")
