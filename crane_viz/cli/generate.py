"""`crane-viz generate`: a dataset of reference trajectories (HDF5), resumable after interruption."""

from __future__ import annotations

import argparse
from dataclasses import fields

from tqdm import tqdm

from ..device import add_device_option
from ..physics.presets import PRESETS
from ..settings import resolve_device, spec_help
from ..training.dataset import DatasetSpec, generate


def add_parser(sub) -> None:
    p = sub.add_parser("generate", help="generate a training/evaluation dataset", description=__doc__)
    d = DatasetSpec()
    p.add_argument("--preset", choices=sorted(PRESETS), default=d.preset, help=f"physics preset (default {d.preset})")
    spec = {f.name: f for f in fields(DatasetSpec)}
    for key in ("sequences", "frames", "size"):
        p.add_argument(f"--{key}", type=int, default=spec[key].default, help=spec_help(spec[key]))
    p.add_argument("--solver", choices=["spectral", "fd"], default=None, help="default: the preset's")
    p.add_argument("--mean-range", type=float, nargs=2, metavar=("LO", "HI"), default=None,
                   help="⟨φ⟩ range (default: the preset's; 3D draws a bell shape about its middle)")
    p.add_argument("--eta-range", dest="misfit_range", type=float, nargs=2, metavar=("LO", "HI"), default=None,
                   help="η range as fractions, e.g. 0 0.012 (default: the preset's)")
    p.add_argument("--amplitude-sigma", type=float, default=d.amplitude_sigma,
                   help=f"σ of the Perlin amplitude |N(0, σ)| (at least 0.005), in [0, 1] (default "
                        f"{d.amplitude_sigma:g}, the 2D paper's); small values give data of the linear regime")
    for key in ("batch", "seed"):
        p.add_argument(f"--{key}", type=int, default=spec[key].default, help=spec_help(spec[key]))
    add_device_option(p)
    p.add_argument("--workers", type=int, default=1, help="processes integrating batches in parallel (CPU)")
    p.add_argument("--out", default="data.h5", help="output HDF5 file (default data.h5)")
    p.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    spec = DatasetSpec(**{f.name: getattr(args, f.name) for f in fields(DatasetSpec) if hasattr(args, f.name)})
    bar = tqdm(total=spec.sequences, unit="seq", desc=f"generate {spec.preset}", disable=None)

    def progress(done, total):
        bar.n = done
        bar.refresh()
    out = generate(spec, args.out, overwrite=args.overwrite, progress=progress,
                   device=resolve_device(args.device), workers=args.workers)
    bar.close()
    print(f"wrote {out} ({spec.sequences} sequences × {spec.frames} frames of {spec.size}^"
          f"{PRESETS[spec.preset].dim})")
    return 0
