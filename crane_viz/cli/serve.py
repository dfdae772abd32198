"""`crane-viz serve`: the explorer in a browser — on this machine only, unless --classroom.

By default the server listens on 127.0.0.1, so only this computer's browser reaches it (plain
`panel serve apps/explorer.py` listens on every network interface). `--classroom` listens on all
interfaces so that students' browsers on the same network can open it; training jobs (the only
part that starts processes and writes to the project folder) then stay with this computer's own
browser.
"""

from __future__ import annotations

import argparse

from ..errors import InputError


def add_parser(sub) -> None:
    p = sub.add_parser("serve", help="start the explorer (this machine only, or --classroom)",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--port", type=int, default=5006, help="TCP port. Range [1024, 65535]. Default: 5006.")
    p.add_argument("--classroom", action="store_true",
                   help="listen on every network interface so other machines can open the explorer; "
                        "training stays with this machine's own browser")
    p.add_argument("--show", action="store_true", help="open this machine's browser on the page")
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    if not 1024 <= args.port <= 65535:
        raise InputError(f"--port must lie in [1024, 65535], not {args.port}")
    try:
        from ..app.server import serve  # Panel is imported only when the app runs
    except ImportError as exc:
        raise InputError(f"the explorer needs the app extra ({exc.name} is not installed): "
                         "pip install -e \".[app]\"") from None

    where = "every network interface (classroom)" if args.classroom else "this machine only"
    print(f"crane_viz explorer on http://{'<this machine>' if args.classroom else '127.0.0.1'}:{args.port}/explorer "
          f"— {where}; Ctrl-C stops it", flush=True)
    serve(args.port, classroom=args.classroom, show=args.show)
    return 0
