"""Shared CLI plumbing: argparse options generated from param declarations, one-line errors."""

from __future__ import annotations

import argparse
import signal
import sys

import param

from ..errors import CraneVizError
from ..io.files import INTERRUPTED

EXIT_USAGE = 2


def _bounds_text(p: param.Parameter) -> str:
    bounds = getattr(p, "bounds", None)
    if not bounds or bounds == (None, None):
        return ""
    lo, hi = bounds
    inc = getattr(p, "inclusive_bounds", (True, True))
    if hi is None:
        return f" At least {lo}." if inc[0] else f" Above {lo}."
    if lo is None:
        return f" At most {hi}." if inc[1] else f" Below {hi}."
    return f" Range {'[' if inc[0] else '('}{lo}, {hi}{']' if inc[1] else ')'}."


def add_param_options(parser: argparse.ArgumentParser, cls: type[param.Parameterized],
                      names: list[str] | None = None) -> None:
    """Add one `--name` option per parameter of `cls`, typed and documented from its declaration.

    Defaults are left to the Parameterized class (options default to None = "not given").
    """
    for name, p in cls.param.objects("existing").items():
        if name == "name" or (names is not None and name not in names):
            continue
        flag = "--" + name.replace("_", "-")
        choices = [c for c in p.objects if c is not None] if isinstance(p, param.Selector) else []
        limits = f" One of: {', '.join(map(str, choices))}." if choices else _bounds_text(p)
        help_text = (p.doc or "") + limits + ("" if p.default is None else f" Default: {p.default}.")
        help_text = help_text.replace("%", "%%")
        if isinstance(p, param.Boolean):
            parser.add_argument(flag, dest=name, action="store_true", default=None, help=help_text)
        elif isinstance(p, param.Selector):
            # no argparse `choices`: the settings class refuses a bad value in one line naming the option
            kind = type(choices[0]) if choices and all(type(c) is type(choices[0]) for c in choices) else str
            parser.add_argument(flag, dest=name, type=kind, default=None, metavar=name.upper(), help=help_text)
        elif isinstance(p, param.Integer):
            parser.add_argument(flag, dest=name, type=int, default=None, help=help_text)
        elif isinstance(p, param.Number):
            parser.add_argument(flag, dest=name, type=float, default=None, help=help_text)
        else:
            parser.add_argument(flag, dest=name, type=str, default=None, help=help_text)


def given(args: argparse.Namespace, cls: type[param.Parameterized]) -> dict:
    """The parameters of `cls` the user actually passed on the command line."""
    names = set(cls.param.objects("existing")) - {"name"}
    return {k: v for k, v in vars(args).items() if k in names and v is not None}


def warn(message: str) -> None:
    print(f"crane-viz: warning: {message}", file=sys.stderr)


def fail(message: str) -> int:
    print(f"crane-viz: error: {message}", file=sys.stderr)
    return EXIT_USAGE


def _interrupt(signum, frame):
    """SIGINT and SIGTERM: remember it (so no atomic write commits afterwards, even where a
    library swallows the exception) and unwind like Ctrl-C."""
    INTERRUPTED.set()
    raise KeyboardInterrupt


def run_guarded(func, args) -> int:
    """Run a subcommand; user-facing errors become one line on stderr and exit status 2.

    SIGTERM is treated like Ctrl-C, so temporary files are removed on the way out either way.
    """
    previous = {sig: signal.signal(sig, _interrupt) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        code = func(args) or 0
        if INTERRUPTED.is_set():  # the interrupt was swallowed after the last write committed
            raise KeyboardInterrupt
        return code
    except CraneVizError as exc:
        return fail(str(exc))
    except KeyboardInterrupt:
        print("crane-viz: interrupted; no partial output was kept (resumable work keeps its .part)",
              file=sys.stderr)
        return 130
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        INTERRUPTED.clear()  # the flag speaks for this command only (library callers write after it)
