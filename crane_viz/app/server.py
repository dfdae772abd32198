"""Serving the explorer: on this machine only by default, or to a classroom network."""

from __future__ import annotations

import os

import panel as pn
import torch

from ..live.controller import APP_THREADS
from .common import CLASSROOM_ENV
from .explorer import create_app


def serve(port: int, classroom: bool = False, show: bool = False) -> None:
    """Run the explorer until interrupted; loopback only unless `classroom`.

    The torch thread count is set on purpose before any session starts: sessions, their
    reference engines and training jobs share the machine's cores (#16 item 4).
    """
    torch.set_num_threads(APP_THREADS)
    address = "0.0.0.0" if classroom else "127.0.0.1"
    origins = ["*"] if classroom else [f"127.0.0.1:{port}", f"localhost:{port}"]
    os.environ[CLASSROOM_ENV] = "1" if classroom else ""
    pn.serve({"explorer": create_app}, port=port, address=address, websocket_origin=origins,
             show=show, title="crane_viz explorer")
