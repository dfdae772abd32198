"""crane_viz explorer: the CRNN surrogate live beside a reference solver.

`crane-viz serve` is the safe way to start it (this machine only, or `--classroom`); this file
is the entry point for `panel serve apps/explorer.py`. The app itself lives in `crane_viz.app`.
"""

import panel as pn
import torch

from crane_viz.app.explorer import create_app
from crane_viz.device import keep_freed_memory
from crane_viz.live.controller import APP_THREADS

if pn.state.served:
    torch.set_num_threads(APP_THREADS)  # on purpose: sessions and jobs share the cores (#16)
    keep_freed_memory()  # as `crane-viz serve` (the command line) does
    create_app().servable()
