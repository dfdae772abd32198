"""The live 3D cutaway as a browser-rendered mesh: the server extracts it, the browser draws it.

PyVista's off-screen (software OpenGL) rendering of PNGs set the 3D pace (1–3 frames/s) and the
picture could only be turned when paused. Here the server only contours (`cutaway_arrays`) and
sends the triangles as binary columns; vtk.js draws them with WebGL and turns the camera while
the run plays. Movies and snapshots still use PyVista, so exports look the same.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import param
from panel.custom import JSComponent


class LiveCutaway(JSComponent):
    """One engine's φ ≥ 0.5 cutaway; views with the same `group` share one camera."""

    points = param.DataFrame(default=None, doc="x, y, z (box units) and the colour value per point")
    polys = param.DataFrame(default=None, doc="triangles in VTK's cell layout, one column 'cells'")
    caption = param.String(default="", doc="text in the view's corner")
    group = param.String(default="cutaway", constant=True, doc="views that turn together")

    _esm = Path(__file__).with_name("cutaway.js")

    def show(self, arrays: dict[str, np.ndarray], caption: str) -> None:
        """Send a mesh from `crane_viz.io.render3d.cutaway_arrays` (and its caption)."""
        xyz = arrays["points"]
        self.param.update(points=pd.DataFrame({"x": xyz[:, 0], "y": xyz[:, 1], "z": xyz[:, 2],
                                               "value": arrays["value"]}),
                          polys=pd.DataFrame({"cells": arrays["polys"]}), caption=caption)
