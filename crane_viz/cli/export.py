"""`crane-viz export`: a run.h5 or simulate output → MP4, GIF, PNG snapshot or VTK .vti."""

from __future__ import annotations

import argparse

from tqdm import tqdm

from ..io.compose import VIEWS, FrameStyle
from ..io.export import FORMATS, export, export_target, load_trajectory
from ..io.files import check_output_path


def add_parser(sub) -> None:
    p = sub.add_parser("export", help="turn a run file into a movie, a snapshot or a .vti",
                       description=__doc__)
    p.add_argument("run", help="a crane-viz run or simulate output (.h5)")
    p.add_argument("--out", required=True, help="output file; its suffix picks the format "
                   f"({', '.join(FORMATS)}) unless --format is given")
    p.add_argument("--format", choices=FORMATS, default=None, help="output format (default: from --out)")
    p.add_argument("--frame", type=int, default=-1, help="frame for png/vti (default: the last, -1)")
    p.add_argument("--stride", type=int, default=1, help="movies: every N-th frame. At least 1. Default: 1.")
    p.add_argument("--fps", type=float, default=12.0, help="movies: frames per second. Range [0.5, 60]. Default: 12.")
    p.add_argument("--height", type=int, default=256, help="pixels per panel. Range [64, 2048]. Default: 256.")
    p.add_argument("--cmap", default="viridis", help="matplotlib colour map of φ. Default: viridis.")
    p.add_argument("--view", choices=VIEWS, default="slice",
                   help="slice: 2D maps or a 3D slice; cutaway: the 3D φ ≥ 0.5 cutaway. Default: slice.")
    p.add_argument("--axis", choices=["x", "y", "z"], default="z", help="3D slice normal. Default: z.")
    p.add_argument("--position", type=float, default=0.5,
                   help="3D slice position as a fraction of the box. Range [0, 1]. Default: 0.5.")
    p.add_argument("--panel", choices=["surrogate", "reference"], default=None,
                   help="vti: which engine's field (default: the surrogate when present)")
    p.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    traj = load_trajectory(args.run)
    style = FrameStyle(view=args.view, axis="xyz".index(args.axis), index=args.position,
                       cmap=args.cmap, height=args.height)
    out = check_output_path(export_target(args.out, args.format)[0], args.overwrite)
    with tqdm(total=traj.frames, unit="frame", desc="export", disable=None) as bar:
        def progress(done, total):
            bar.total = total
            bar.n = done
            bar.refresh()

        path = export(traj, out, fmt=args.format, frame=args.frame, stride=args.stride, fps=args.fps,
                      style=style, panel=args.panel, progress=progress)
    print(f"wrote {path}")
    return 0
