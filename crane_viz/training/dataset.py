"""Datasets of reference trajectories in one HDF5 file, generated in batches and resumable.

Layout: `phi` (sequences × frames × grid, float32, initial frame first), per-sequence `mean`,
`eta`, `amplitude`, `cells`, `seed`, and `done` (bool); attributes `preset`, `solver`, `frames`,
`size`, `settings` (JSON of the generation settings), `crane_viz_version`, `created`. While
incomplete the file is `<out>.part`; it is renamed to `<out>` when every sequence is done.
"""

from __future__ import annotations

import json
import os
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import h5py
import numpy as np
import torch

from ..engines import make_solver
from ..engines.base import BLOW_UP_RANGE, diverged, rollout
from ..errors import DatasetError, InputError
from ..io.files import check_output_path, provenance
from ..physics.initial import as_batch, perlin_field
from ..physics.presets import get_preset
from ..settings import MAX_MISFIT, MAX_SEED, check_grid, check_spec, spec_field


@dataclass(frozen=True)
class DatasetSpec:
    """What to generate. Sequence i uses seed `seed + i`, so held-out sets take a disjoint base."""

    preset: str = "coherent-2d"
    sequences: int = spec_field(64, "Trajectories to generate.", (1, 1_000_000))
    frames: int = spec_field(20, "Stored frames per trajectory, the initial one included.", (2, 100_000))
    size: int = spec_field(32, "Grid points per side.", (8, 8192))
    solver: str | None = None  # default: the preset's
    batch: int = spec_field(16, "Trajectories integrated together in one tensor.", (1, 4096))
    seed: int = spec_field(0, "Base seed; sequence i uses seed + i.", (0, MAX_SEED))
    amplitude_sigma: float = 0.1  # |N(0, σ)| Perlin amplitude (2D paper)
    mean_range: tuple[float, float] | None = None  # ⟨φ⟩ range (default: the preset's)
    misfit_range: tuple[float, float] | None = None  # η range as a fraction (default: the preset's)

    def __post_init__(self):
        check_spec(self)
        if self.seed > MAX_SEED - self.sequences + 1:
            raise InputError(f"--seed must be at most {MAX_SEED - self.sequences + 1} for {self.sequences} "
                             f"sequences (each takes seed + i ≤ {MAX_SEED}), not {self.seed}")
        for key, flag in (("mean_range", "--mean-range"), ("misfit_range", "--eta-range")):
            value = getattr(self, key)
            if value is not None:
                object.__setattr__(self, key, tuple(float(v) for v in value))
                lo, hi = getattr(self, key)
                if not lo <= hi:
                    raise InputError(f"{flag} must be LO HI with LO ≤ HI, not {value}")
        if self.mean_range is not None and not 0 < self.mean_range[0] <= self.mean_range[1] < 1:
            raise InputError(f"--mean-range must lie strictly between 0 and 1, not {self.mean_range}")
        if self.misfit_range is not None and not 0 <= self.misfit_range[0] <= self.misfit_range[1] <= MAX_MISFIT:
            raise InputError(f"--eta-range must lie within [0, {MAX_MISFIT}] (η as a fraction; "
                             f"{100 * MAX_MISFIT:g} %), not {self.misfit_range}")
        if not 0 <= self.amplitude_sigma <= 1:
            raise InputError(f"--amplitude-sigma must lie in [0, 1], not {self.amplitude_sigma}")
        check_grid(self.size, get_preset(self.preset).dim, batch=self.batch)


MEAN_RANGE_3D = (0.25, 0.75)  # 3D ⟨φ⟩: N(0.5, 0.1) clipped to this, bell shaped about 0.5


def sample_case(spec: DatasetSpec, index: int) -> dict:
    """The papers' sampling of one case: ⟨φ⟩, η, amplitude, Perlin cells and seed.

    2D: ⟨φ⟩ uniform in the range; 3D: normal about the range's middle (σ = a fifth of its width),
    clipped to it.
    """
    preset = get_preset(spec.preset)
    seed = spec.seed + index
    rng = np.random.default_rng([seed, 7919])
    if preset.dim == 2:
        mean = rng.uniform(*(spec.mean_range or preset.mean_range))
    else:
        lo, hi = spec.mean_range or MEAN_RANGE_3D
        mean = float(np.clip(rng.normal((lo + hi) / 2, (hi - lo) / 5), lo, hi))
    cells = int(rng.choice([2, 4, 8]))
    lo, hi = spec.misfit_range or preset.misfit_range
    eta = rng.uniform(lo, hi) if hi > lo else lo
    amplitude = max(abs(rng.normal(0.0, spec.amplitude_sigma)), 0.005)
    return {"mean": float(mean), "eta": float(eta), "amplitude": float(amplitude),
            "cells": min(cells, spec.size), "seed": seed}


def _create(path: Path, spec: DatasetSpec, dim: int) -> None:
    with h5py.File(path, "w") as f:
        s, t, n = spec.sequences, spec.frames, spec.size
        f.create_dataset("phi", shape=(s, t, *(n,) * dim), dtype="float32",
                         chunks=(1, t, *(n,) * dim))
        for key in ("mean", "eta", "amplitude"):
            f.create_dataset(key, shape=(s,), dtype="float64")
        for key in ("cells", "seed"):
            f.create_dataset(key, shape=(s,), dtype="int64")
        f.create_dataset("done", shape=(s,), dtype=bool)
        f.attrs.update({"preset": spec.preset, "solver": spec.solver or get_preset(spec.preset).solver,
                        "frames": t, "size": n, "settings": json.dumps(asdict(spec)), **provenance()})


def generate(spec: DatasetSpec, out: str | Path, *, overwrite: bool = False,
             progress: Callable[[int, int], None] | None = None, device="cpu",
             workers: int = 1) -> Path:
    """Write (or continue) the dataset at `out`; `progress(done, total)` after each batch.

    `workers` > 1 integrates batches in that many processes (one thread each); the cases do not
    depend on it, since every case is fixed by its own seed (fields agree to float32 rounding).
    """
    out = check_output_path(out, overwrite)
    part = out.with_name(out.name + ".part")
    preset = get_preset(spec.preset)
    if part.exists():
        try:
            with h5py.File(part, "r") as f:
                saved = json.loads(f.attrs["settings"])
        except (OSError, KeyError, ValueError) as exc:
            raise InputError(f"{part}: an unreadable interrupted run ({exc.__class__.__name__}); "
                             "delete it to start again") from None
        if saved != json.loads(json.dumps(asdict(spec))):
            raise InputError(f"{part} holds an interrupted run with other settings; delete it "
                             "or repeat the same settings to continue it")
    else:
        _create(part, spec, preset.dim)
    solver_name = spec.solver or preset.solver
    with h5py.File(part, "r+") as f:
        todo = [i for i in range(spec.sequences) if not f["done"][i]]
        done = spec.sequences - len(todo)
        if progress:
            progress(done, spec.sequences)
        batches = [todo[k:k + spec.batch] for k in range(0, len(todo), spec.batch)]
        for idx, cases, traj in _run_batches(batches, spec, solver_name, device, workers):
            _store(f, idx, cases, traj)
            done += len(idx)
            if progress:
                progress(done, spec.sequences)
    os.replace(part, out)
    return out


def _simulate_indices(spec: DatasetSpec, solver_name: str, idx: list[int], device):
    cases = [sample_case(spec, i) for i in idx]
    return idx, cases, simulate_batch(cases, spec, solver_name, device)


def _single_thread() -> None:
    torch.set_num_threads(1)


def _run_batches(batches, spec, solver_name, device, workers):
    """Yield (indices, cases, trajectories) per batch, in this process or in a process pool."""
    if workers <= 1 or str(device).startswith("cuda"):
        for idx in batches:
            yield _simulate_indices(spec, solver_name, idx, device)
        return
    with ProcessPoolExecutor(workers, initializer=_single_thread) as pool:
        futures = [pool.submit(_simulate_indices, spec, solver_name, idx, "cpu") for idx in batches]
        for fut in as_completed(futures):
            yield fut.result()


def _store(f: h5py.File, idx: list[int], cases: list[dict], traj: np.ndarray) -> None:
    for j, i in enumerate(idx):
        f["phi"][i] = traj[j]
        for key in ("mean", "eta", "amplitude", "cells", "seed"):
            f[key][i] = cases[j][key]
        f["done"][i] = True
    f.flush()


def simulate_batch(cases: list[dict], spec: DatasetSpec, solver_name: str, device) -> np.ndarray:
    """Integrate several cases together (η one per batch element) → (B, frames, *grid)."""
    preset = get_preset(spec.preset)
    fields = [perlin_field(spec.size, preset.dim, mean=c["mean"], amplitude=c["amplitude"],
                           cells=c["cells"], seed=c["seed"]) for c in cases]
    eta = torch.tensor([c["eta"] for c in cases], dtype=torch.float32, device=device)
    engine = make_solver(solver_name, preset, misfit=eta)
    traj, _ = rollout(engine, as_batch(fields, device=device), spec.frames - 1)
    if not torch.isfinite(traj).all():
        raise DatasetError(f"the {solver_name} solver diverged while generating seeds "
                           f"{[c['seed'] for c in cases]}")
    return traj.cpu().numpy()


@dataclass
class Dataset:
    """A loaded dataset: trajectories (S, T, *grid) float32, per-sequence η and ⟨φ⟩, attributes."""

    path: Path
    phi: torch.Tensor
    eta: torch.Tensor
    mean: torch.Tensor
    attrs: dict

    @property
    def preset(self):
        return get_preset(self.attrs["preset"])


REQUIRED = ("phi", "mean", "eta", "amplitude", "seed", "done")


def load_dataset(path: str | Path) -> Dataset:
    """Open and validate a dataset; DatasetError naming the file on any problem."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: no such dataset file")
    if not h5py.is_hdf5(path):
        raise DatasetError(f"{path}: not an HDF5 file")
    try:
        with h5py.File(path, "r") as f:
            missing = [k for k in REQUIRED if k not in f]
            if missing:
                raise DatasetError(f"{path}: missing datasets {missing}; not a crane_viz dataset")
            s = f["phi"].shape[0]
            if s == 0 or f["phi"].ndim < 2 or f["phi"].shape[1] < 2:
                raise DatasetError(f"{path}: needs at least one sequence of at least 2 frames, "
                                   f"phi has shape {f['phi'].shape}")
            if f["phi"].dtype.kind != "f":
                raise DatasetError(f"{path}: phi must hold floating-point values, not {f['phi'].dtype}")
            if any(f[k].shape != (s,) for k in REQUIRED[1:]):
                raise DatasetError(f"{path}: per-sequence datasets do not match {s} sequences")
            if not f["done"][()].all():
                raise DatasetError(f"{path}: incomplete ({int(f['done'][()].sum())}/{s} sequences)")
            attrs = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in f.attrs.items()}
            preset = get_preset(attrs.get("preset", ""))
            if f["phi"].ndim != 2 + preset.dim:
                raise DatasetError(f"{path}: phi has shape {f['phi'].shape}, expected "
                                   f"sequences × frames × {preset.dim}D grid")
            phi = torch.from_numpy(f["phi"][()])
            eta = torch.from_numpy(f["eta"][()]).float()
            mean = torch.from_numpy(f["mean"][()]).float()
    except DatasetError:
        raise
    except (OSError, KeyError, ValueError) as exc:
        raise DatasetError(f"{path}: unreadable dataset ({exc})") from None
    if not torch.isfinite(phi).all():
        raise DatasetError(f"{path}: contains NaN or infinite values")
    if diverged(phi.flatten(0, 1)).any():
        lo, hi = BLOW_UP_RANGE
        raise DatasetError(f"{path}: phi has values outside [{lo}, {hi}] (largest |φ| "
                           f"{float(phi.abs().max()):.3g}); not a Cahn–Hilliard trajectory")
    if not (torch.isfinite(eta).all() and (eta >= 0).all() and (eta <= MAX_MISFIT).all()):
        raise DatasetError(f"{path}: eta must be finite and within [0, {MAX_MISFIT}] for every sequence")
    return Dataset(path, phi, eta, mean, attrs)
