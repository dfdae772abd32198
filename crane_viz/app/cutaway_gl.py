"""The live 3D cutaway as a browser-rendered mesh: the server extracts it, the browser draws it.

PyVista's off-screen (software OpenGL) rendering of PNGs set the 3D pace (1–3 frames/s) and the
picture could only be turned when paused. Here the server only contours (`cutaway_arrays`) and
sends the triangles as binary columns; vtk.js draws them with WebGL and turns the camera while
the run plays. Movies and snapshots still use PyVista, so exports look the same.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import param
from panel.custom import JSComponent


class LiveCutaway(JSComponent):
    """One engine's φ ≥ 0.5 cutaway; views with the same `group` share one camera.

    The mesh travels as three numpy arrays, which Bokeh sends as binary buffers of their own dtype
    (a DataFrame parameter added an index column to every table: about twice the bytes)."""

    xyz = param.Array(default=None, doc="interleaved x, y, z of every point (float32, box units)")
    value = param.Array(default=None, doc="the colour value of every point (float32, φ in [0, 1])")
    polys = param.Array(default=None, doc="triangles in VTK's cell layout [3, a, b, c, …] (int32)")
    caption = param.String(default="", doc="text in the view's corner")
    group = param.String(default="cutaway", constant=True, doc="views that turn together")

    _esm = Path(__file__).with_name("cutaway.js")

    def show(self, arrays: dict[str, np.ndarray], caption: str) -> None:
        """Send a mesh from `crane_viz.io.render3d.cutaway_arrays` (and its caption)."""
        self.param.update(xyz=np.ascontiguousarray(arrays["points"], dtype=np.float32).reshape(-1),
                          value=np.asarray(arrays["value"], dtype=np.float32),
                          polys=np.asarray(arrays["polys"], dtype=np.int32), caption=caption)
