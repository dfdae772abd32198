"""`crane-viz stability CHECKPOINT`: long free rollouts of the surrogate alone (no reference):
per-case extremes, F/V and mass drift every --report-every frames, the first frame each case left
the sane range or diverged, and the largest free-energy rise. Writes --out (JSON)."""

from __future__ import annotations

import argparse
import json
import sys

from tqdm import tqdm

from ..analysis.stability import SANE_RANGE, long_rollout
from ..device import add_device_option
from ..io.files import atomic_path, check_output_path
from ..nn.checkpoint import load_checkpoint
from ..settings import StabilitySettings, resolve_device
from .common import add_param_options, given


def add_parser(sub) -> None:
    p = sub.add_parser("stability", help="long free rollouts of a surrogate: bounded? mass? energy?",
                       description=__doc__)
    p.add_argument("checkpoint", help="checkpoint name or folder")
    add_param_options(p, StabilitySettings)
    add_device_option(p)
    p.add_argument("--out", default="stability.json", help="output JSON (default: stability.json)")
    p.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    p.set_defaults(func=main)


def _fmt(values) -> str:
    return "[" + ", ".join(f"{v:.3f}" for v in values) + "]"


def main(args: argparse.Namespace) -> int:
    settings = StabilitySettings(**given(args, StabilitySettings))
    check_output_path(args.out, args.overwrite, ())
    device = resolve_device(args.device)
    ckpt = load_checkpoint(args.checkpoint, device=device)
    settings.check(ckpt.dim, ckpt.grid_scale, ckpt.model_config.channels * ckpt.model_config.batch_factor)
    bar = tqdm(total=settings.frames, unit="frame", desc="stability", disable=None)

    def progress(done, total):
        if done % 50 == 0 or done == total:
            bar.n = done
            bar.refresh()

    def report(row):
        bar.write(f"frame {row['frame']} (t = {row['time']:g}): max φ {_fmt(row['max'])}, min φ {_fmt(row['min'])}, "
                  f"F/V {_fmt(row['f_over_v'])}, mass drift {row['max_mass_drift']:.1e} ({row['seconds']:.0f} s)")
        sys.stdout.flush()

    summary = long_rollout(ckpt, settings, device, progress, report)
    bar.close()
    print(f"first frame outside {SANE_RANGE}: {summary['first_frame_out_of_range']} (−1: never); "
          f"diverged: {summary['first_frame_diverged']}; largest F/V rise "
          f"{100 * summary['largest_energy_rise']:.3g} % of F(0)")
    with atomic_path(args.out) as tmp:
        tmp.write_text(json.dumps(summary, indent=1))
    print(f"wrote {args.out}")
    return 0
