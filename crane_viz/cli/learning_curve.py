"""`crane-viz learning-curve RUN`: evaluate a training run's epoch snapshots against training hours."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..device import add_device_option
from ..errors import InputError
from ..nn.checkpoint import load_checkpoint
from ..settings import resolve_device
from ..training.learning_curve import FIGURE, SUMMARY, learning_curve, snapshots
from .evaluate import add_spec_options, spec_from_args


def add_parser(sub) -> None:
    p = sub.add_parser("learning-curve", help="evaluate a run's epoch snapshots (learning curve)",
                       description=__doc__)
    p.add_argument("run", help="training run folder (trained with --snapshot-every N)")
    add_spec_options(p)
    p.add_argument("--every", type=int, default=1, help="evaluate every N-th snapshot (and the newest). "
                   "At least 1. Default: 1.")
    add_device_option(p)
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    if args.every < 1:
        raise InputError(f"--every must be at least 1, not {args.every}")
    run = Path(args.run)
    device = resolve_device(args.device)
    spec, protocol = spec_from_args(args, load_checkpoint(snapshots(run)[0]))
    rows = learning_curve(run, spec, protocol=protocol, device=device, every=args.every,
                          progress=lambda s: print(f"evaluating {s}", flush=True))
    for r in rows:
        print(f"epoch {r['epoch']} ({r['hours']:.2f} h): MAE {r['mae_within_horizon']:.4f} within the "
              f"horizon, {r['mae_at_end']:.4f} at the end; alignment gap {r['alignment_gap_100']}; "
              f"growth error {r['linear_response_error']:.2f}")
    print(f"wrote {run / SUMMARY} and {run / FIGURE}")
    return 0
