"""Phase-diagram sweep throughput: points per minute of the surrogate and the reference, same run.

Usage: python benchmarks/bench_phase.py [--checkpoint coherent-2d [other ...]] [--points 50]
       [--size 128] [--horizon 100] [--batch 50] [--reference spectral]

Every engine integrates the same random (⟨φ⟩, η) points in batches (the reference once, beside
the first checkpoint); the script prints points per minute of each, each surrogate's speed over
the reference's, and the agreement of its separated/homogeneous outcomes with the reference's —
so a faster model (e.g. a coarse-step one) is judged on speed and agreement in the same run.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch

from crane_viz.analysis.phase import outcome, run_sweep
from crane_viz.device import keep_freed_memory
from crane_viz.settings import SweepSettings


def sweep(settings: SweepSettings, checkpoint: str, out: Path) -> tuple[dict, dict]:
    """The sweep's summary and its rows by point index."""
    rows: list[dict] = []
    summary = run_sweep(settings, checkpoint, out, on_rows=rows.extend)
    return summary, {r["index"]: r for r in rows}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", nargs="+", default=["coherent-2d"])
    ap.add_argument("--points", type=int, default=50)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--horizon", type=int, default=100)
    ap.add_argument("--batch", type=int, default=50)
    ap.add_argument("--reference", default="spectral", choices=["spectral", "fd"])
    args = ap.parse_args()
    keep_freed_memory()  # as the command-line tools do
    runs = {}
    with tempfile.TemporaryDirectory() as tmp:
        for i, name in enumerate(args.checkpoint):
            s = SweepSettings(points=args.points, size=args.size, horizon=args.horizon, batch=args.batch,
                              reference=args.reference if i == 0 else "none")  # the reference runs once
            runs[name] = sweep(s, name, Path(tmp) / f"{i}.csv")
    first, ref_rows = runs[args.checkpoint[0]]
    ref_rate = first["points_per_minute"]["reference"]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; {args.points} points at "
          f"{args.size}², {args.horizon} τ, batch {args.batch}")
    print("| engine | points/min | seconds | ÷ reference speed | agreement with reference |")
    print("|---|---|---|---|---|")
    for name, (summary, rows) in runs.items():
        agree = sum(outcome(r) == outcome(ref_rows[k], "reference") for k, r in rows.items()) / len(rows)
        rate = summary["points_per_minute"]["surrogate"]
        print(f"| {name} | {rate:.1f} | {summary['seconds']['surrogate']:.1f} | {rate / ref_rate:.2f} | "
              f"{100 * agree:.1f} % |")
    print(f"| reference ({args.reference}) | {ref_rate:.1f} | {first['seconds']['reference']:.1f} | 1 | — |")


if __name__ == "__main__":
    main()
