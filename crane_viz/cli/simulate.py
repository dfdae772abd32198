"""`crane-viz simulate`: one reference-solver run written to HDF5 plus a PNG of the last frame."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import h5py
import torch
from tqdm import tqdm

from ..engines import make_solver
from ..engines.base import BLOW_UP_RANGE, diverged, states
from ..errors import CraneVizError
from ..io.files import TrajectoryWriter, atomic_path, check_output_path, provenance, write_attrs
from ..io.render import save_png
from ..physics.initial import as_batch
from ..settings import SimulationSettings, resolve_device
from .common import add_param_options, given, warn


def add_parser(sub) -> None:
    p = sub.add_parser("simulate", help="run a reference solver and write run.h5 + a PNG",
                       description=__doc__)
    add_param_options(p, SimulationSettings)
    p.add_argument("--out", default="run.h5", help="output HDF5 file (default: run.h5); a PNG of the last frame goes beside it")
    p.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    p.add_argument("--no-png", action="store_true", help="do not write the PNG of the last frame")
    p.set_defaults(func=main)


def check_finite(phi: torch.Tensor, frame: int) -> None:
    """Stop with a clear reason when the solver diverged."""
    if diverged(phi).any():
        raise CraneVizError(f"the solver diverged at frame {frame} (φ not finite or outside "
                            f"{list(BLOW_UP_RANGE)}); use a smaller time step or the spectral solver")


def main(args: argparse.Namespace) -> int:
    settings = SimulationSettings(**given(args, SimulationSettings))
    for message in settings.check():
        warn(message)
    out = check_output_path(args.out, args.overwrite,
                            () if args.no_png else (Path(args.out).with_suffix(".png"),))
    preset, size = settings.physics, settings.grid_size
    device = resolve_device(settings.device)
    phi0 = settings.initial_field(size, preset.dim)
    if settings.init:
        settings.mean = float(phi0.mean())
    engine = make_solver(settings.solver_name, preset, misfit=settings.misfit)
    start = time.perf_counter()
    with atomic_path(out) as tmp, h5py.File(tmp, "w") as h5:
        writer = TrajectoryWriter(h5, (size,) * preset.dim, frames_hint=settings.frames + 1)
        frames = states(engine, as_batch([phi0], device=device), settings.frames)
        for frame, state in enumerate(tqdm(frames, total=settings.frames + 1, desc=f"{engine.name} "
                                           f"{size}^{preset.dim}", unit="frame", disable=None)):
            check_finite(state.phi, frame)
            writer.append(state.phi[0].cpu().numpy(), state.time)
        elapsed = time.perf_counter() - start
        write_attrs(h5, {**settings.describe(), **provenance(), "device": str(device),
                         "time_step": engine.time_step, "frame_time": engine.frame_time,
                         "steps_per_frame": engine.steps_per_frame, "wall_seconds": elapsed,
                         "physics": preset.to_dict()})
        h5.close()
    last = state.phi[0].cpu().numpy()
    print(f"wrote {out} ({settings.frames + 1} frames of {size}^{preset.dim}, "
          f"{elapsed / settings.frames * 1000:.1f} ms per frame on {device})")
    if not args.no_png:
        png = save_png(Path(out).with_suffix(".png"), last)
        print(f"wrote {png}")
    return 0
