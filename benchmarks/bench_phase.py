"""Phase-diagram sweep throughput: points per minute of the surrogate and the reference, same run.

Usage: python benchmarks/bench_phase.py [--checkpoint coherent-2d] [--points 50] [--size 128]
       [--horizon 100] [--batch 50] [--reference spectral]

Both engines integrate the same random (⟨φ⟩, η) points in batches; the script prints points per
minute of each, their ratio, and the agreement of the separated/homogeneous outcomes.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch

from crane_viz.analysis.phase import run_sweep
from crane_viz.settings import SweepSettings


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", default="coherent-2d")
    ap.add_argument("--points", type=int, default=50)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--horizon", type=int, default=100)
    ap.add_argument("--batch", type=int, default=50)
    ap.add_argument("--reference", default="spectral", choices=["spectral", "fd"])
    args = ap.parse_args()
    settings = SweepSettings(points=args.points, size=args.size, horizon=args.horizon, batch=args.batch,
                             reference=args.reference)
    with tempfile.TemporaryDirectory() as tmp:
        summary = run_sweep(settings, args.checkpoint, Path(tmp) / "bench.csv")
    rate = summary["points_per_minute"]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; {args.points} points at "
          f"{args.size}², {args.horizon} τ, batch {args.batch}")
    print("| engine | points/min | seconds |")
    print("|---|---|---|")
    for engine in ("surrogate", "reference"):
        print(f"| {engine} ({args.checkpoint if engine == 'surrogate' else args.reference}) | "
              f"{rate[engine]:.1f} | {summary['seconds'][engine]:.1f} |")
    print(f"surrogate ÷ reference speed: {rate['surrogate'] / rate['reference']:.2f}; "
          f"agreement {100 * summary['agreement']:.1f} %")


if __name__ == "__main__":
    main()
