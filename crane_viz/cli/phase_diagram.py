"""`crane-viz phase-diagram`: classify many (⟨φ⟩, η) cases with a surrogate (and a reference).

Writes OUT (CSV, one row per point), OUT's .json summary (agreement, points per minute) and a PNG
figure with the analytic spinodal line. Interrupted sweeps resume: run the same command again.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from tqdm import tqdm

from ..analysis.phase import points_from_files, run_sweep
from ..device import add_device_option
from ..errors import InputError
from ..io.files import check_output_path
from ..settings import DEFAULT_SWEEP_CHECKPOINT, SweepSettings, resolve_device
from .common import add_param_options, given


def add_parser(sub) -> None:
    p = sub.add_parser("phase-diagram", help="sweep (⟨φ⟩, η) points and classify the outcome",
                       description=__doc__)
    p.add_argument("--checkpoint", default=DEFAULT_SWEEP_CHECKPOINT,
                   help="η-conditioned 2D checkpoint, name or folder (default: the sweep model "
                        f"{DEFAULT_SWEEP_CHECKPOINT}, 5 τ per step: --horizon in multiples of 5)")
    add_param_options(p, SweepSettings)
    p.add_argument("--init-fields", default=None, help="B × N × N initial fields (.npy) instead of Perlin points")
    p.add_argument("--params", default=None, help="CSV with columns mean, eta (one row per --init-fields field)")
    p.add_argument("--dask", action="store_true", help="run the chunks on a local Dask cluster")
    p.add_argument("--scheduler", default=None, help="address of an existing Dask scheduler (implies --dask)")
    add_device_option(p)
    p.add_argument("--out", default="phase.csv", help="output CSV (default: phase.csv)")
    p.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    settings = SweepSettings(**given(args, SweepSettings))
    if (args.init_fields is None) != (args.params is None):
        raise InputError("--init-fields and --params go together")
    points = None
    if args.init_fields:
        points = points_from_files(args.init_fields, args.params)
        settings.size = int(points[0].field.shape[0])
    out = Path(args.out)
    check_output_path(out, args.overwrite, (out.with_suffix(".json"), out.with_suffix(".png")))
    scheduler = args.scheduler or ("local" if args.dask else None)
    bar = tqdm(unit="point", desc="phase diagram", disable=None)

    def progress(done, total):
        bar.total = total
        bar.n = done
        bar.refresh()

    summary = run_sweep(settings, args.checkpoint, args.out, points=points, overwrite=args.overwrite,
                        scheduler=scheduler, device=resolve_device(args.device), progress=progress)
    bar.close()
    line = (f"wrote {args.out}: {summary['points']} points, {summary['surrogate_separated']} separated "
            f"by the surrogate")
    if "agreement" in summary:
        line += f"; agreement with {settings.reference}: {100 * summary['agreement']:.1f} %"
    for engine, rate in summary.get("points_per_minute", {}).items():
        line += f"; {engine} {rate:.1f} points/min"
    print(line)
    return 0
