"""`crane-viz run`: a CRNN checkpoint beside an optional reference solver, written to HDF5."""

from __future__ import annotations

import argparse
import hashlib
import json

import h5py
from tqdm import tqdm

from ..engines import make_solver
from ..engines.surrogate import SurrogateEngine
from ..io.files import TrajectoryWriter, atomic_path, check_output_path, provenance, write_attrs
from ..live.session import Session
from ..nn.checkpoint import load_checkpoint
from ..settings import RunSettings, resolve_device
from .common import add_param_options, given, warn


def add_parser(sub) -> None:
    p = sub.add_parser("run", help="run a surrogate checkpoint beside a reference solver",
                       description=__doc__)
    add_param_options(p, RunSettings)
    p.add_argument("--out", default="run.h5", help="output HDF5 file (default: run.h5)")
    p.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    p.set_defaults(func=main)


def config_hash(config: dict) -> str:
    """sha256 of the checkpoint configuration in canonical JSON."""
    return hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()


def build_session(settings: RunSettings) -> tuple[Session, object]:
    """Load the checkpoint, make the initial field and engines, and pair them in a Session."""
    device = resolve_device(settings.device)
    ckpt = load_checkpoint(settings.checkpoint)
    preset = ckpt.preset
    for message in settings.check(preset, ckpt.grid_scale, ckpt.model_config.channels * ckpt.model_config.batch_factor):
        warn(message)
    size = settings.size or preset.size
    phi0 = settings.initial_field(size, preset.dim)
    if settings.init:
        settings.mean = float(phi0.mean())
    misfit = preset.misfit if settings.eta is None else settings.eta
    surrogate = SurrogateEngine(ckpt, misfit=misfit, device=device)
    reference = None if settings.reference == "none" else make_solver(settings.reference, preset,
                                                                       misfit=misfit)
    session = Session(surrogate, phi0, preset, reference=reference, misfit=misfit,
                      training=ckpt.config.get("training"), device=device)
    return session, ckpt


def main(args: argparse.Namespace) -> int:
    settings = RunSettings(**given(args, RunSettings))
    out = check_output_path(args.out, args.overwrite)
    session, ckpt = build_session(settings)
    for message in session.warnings:
        warn(message)
    frames = settings.frames
    with atomic_path(out) as tmp, h5py.File(tmp, "w") as h5:
        sur = TrajectoryWriter(h5, session.comparison_grid, group="surrogate", frames_hint=frames + 1)
        sur.append(session.current().surrogate, 0.0)
        ref = None
        if session.reference is not None:
            ref = TrajectoryWriter(h5, session.phi0.shape, group="reference", frames_hint=frames + 1)
            ref.append(session.phi0, 0.0)
        bar = tqdm(session.run(frames), total=frames, unit="frame", desc=ckpt.name, disable=None)
        for frame in bar:
            sur.append(frame.surrogate, frame.time)
            if ref is not None:
                ref.append(frame.reference, frame.time)
            m = frame.metrics
            bar.set_postfix_str(f"surrogate {m['surrogate_ms']:.0f} ms, reference "
                                f"{m['reference_ms']:.0f} ms")
        group = h5.create_group("metrics")
        for key in (session.history[0] if session.history else {}):
            group.create_dataset(key, data=[row[key] for row in session.history])
        chosen = settings.describe()
        notes = session.notes()
        write_attrs(h5, {**chosen, "checkpoint": ckpt.name,
                         "checkpoint_path": str(ckpt.path), "config_sha256": config_hash(ckpt.config),
                         "preset": ckpt.preset.name, "size": int(session.phi0.shape[0]),
                         "eta": session.misfit, "comparison_grid": list(session.comparison_grid),
                         "grid_scale": session.scale, "device": str(session.device),
                         "stop_reason": session.stop_reason or "", "warnings": session.warnings + notes,
                         **provenance()})
        h5.close()
    done = len(session.history)
    print(f"wrote {out} ({done} frames; surrogate on {session.comparison_grid}, "
          f"reference {settings.reference})")
    for message in notes + ([session.stop_reason] if session.stop_reason else []):
        warn(message)
    return 0
