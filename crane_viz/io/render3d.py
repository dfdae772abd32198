"""Off-screen PyVista rendering of 3D fields: the papers' φ ≥ 0.5 cutaway view.

Lower half of the box: the full field on its outer faces. Upper half: only the φ ≥ 0.5 region —
the φ = 0.5 isosurface plus the box faces clipped to φ ≥ 0.5. Rendering uses EGL with Mesa's
software renderer when there is no display (set before pyvista is imported).
"""

from __future__ import annotations

import os

import numpy as np

os.environ.setdefault("VTK_DEFAULT_OPENGL_WINDOW", "vtkEGLRenderWindow")

LEVEL = 0.5


def periodic_image(field: np.ndarray):
    """pv.ImageData of the field padded by one wrapped layer so the periodic box closes."""
    import pyvista as pv

    padded = np.pad(np.asarray(field, dtype=np.float32), [(0, 1)] * 3, mode="wrap")
    grid = pv.ImageData(dimensions=padded.shape)
    grid.point_data["phi"] = padded.ravel(order="F")
    return grid


def cutaway_meshes(field: np.ndarray, level: float = LEVEL):
    """(lower half outer surface, upper isosurface, upper faces clipped to φ ≥ level)."""
    grid = periodic_image(field)
    nx, ny, nz = grid.dimensions
    mid = nz // 2
    lower = grid.extract_subset((0, nx - 1, 0, ny - 1, 0, mid)).extract_surface(algorithm=None)
    upper = grid.extract_subset((0, nx - 1, 0, ny - 1, mid, nz - 1))
    iso = upper.contour([level], scalars="phi")
    faces = upper.extract_surface(algorithm=None).clip_scalar(scalars="phi", value=level, invert=False)
    return lower, iso, faces


def cutaway_arrays(field: np.ndarray, level: float = LEVEL) -> dict[str, np.ndarray]:
    """The cutaway as one triangle mesh for a browser (WebGL) to draw: `points` (N, 3) float32 in
    box units [0, 1]³, per-point `value` (N,) float32 for the φ colour map (φ on the box faces,
    1 on the isosurface: the palette's top, the colour the PNG renderer gives it) and `polys`
    (4M,) int32 in VTK's cell layout [3, a, b, c, 3, …]."""
    import pyvista as pv

    lower, iso, faces = cutaway_meshes(field, level)
    parts = [m for m in (lower, faces) if m.n_points]
    if iso.n_points:
        iso = iso.copy()
        iso.point_data["phi"] = np.ones(iso.n_points, dtype=np.float32)
        parts.append(iso)
    if not parts:
        return {"points": np.zeros((0, 3), np.float32), "value": np.zeros(0, np.float32),
                "polys": np.zeros(0, np.int32)}
    mesh = pv.merge(parts, merge_points=False).extract_surface(algorithm=None).triangulate()
    return {"points": np.asarray(mesh.points, dtype=np.float32) / field.shape[0],
            "value": np.asarray(mesh.point_data["phi"], dtype=np.float32),
            "polys": np.asarray(mesh.faces, dtype=np.int32)}


class CutawayRenderer:
    """Reusable off-screen plotter: `render(field) -> (H, W, 3) uint8` image of the cutaway."""

    def __init__(self, window_size=(480, 420), cmap: str = "viridis", clim=(0.0, 1.0),
                 title: str | None = None):
        import pyvista as pv

        self.plotter = pv.Plotter(off_screen=True, window_size=list(window_size))
        self.cmap, self.clim, self.title = cmap, clim, title
        self.plotter.set_background("white")

    def render(self, field: np.ndarray, caption: str | None = None) -> np.ndarray:
        """The cutaway of `field` as an (H, W, 3) uint8 image."""
        self.draw(field, caption)
        self.plotter.render()
        return np.asarray(self.plotter.screenshot(return_img=True))[..., :3]

    def draw(self, field: np.ndarray, caption: str | None = None) -> None:
        """Put the cutaway of `field` into the plotter's scene (for screenshots or a live VTK view)."""
        p = self.plotter
        p.clear()
        lower, iso, faces = cutaway_meshes(field)
        style = dict(scalars="phi", cmap=self.cmap, clim=self.clim, show_scalar_bar=False)
        if lower.n_points:
            p.add_mesh(lower, **style)
        if faces.n_points:
            p.add_mesh(faces, **style)
        if iso.n_points:
            p.add_mesh(iso, color="#fde725", smooth_shading=True, specular=0.3)
        p.add_mesh(periodic_image(field).outline(), color="black", line_width=1)
        text = " — ".join(t for t in (self.title, caption) if t)
        if text:
            p.add_text(text, font_size=10, color="black", position="upper_left")
        p.camera_position = "iso"
        p.camera.azimuth = 20
        p.reset_camera()

    def close(self) -> None:
        self.plotter.close()


def render_cutaway(field: np.ndarray, **kwargs) -> np.ndarray:
    """One-off cutaway image of a 3D field (opens and closes its own plotter)."""
    caption = kwargs.pop("caption", None)
    renderer = CutawayRenderer(**kwargs)
    try:
        return renderer.render(field, caption)
    finally:
        renderer.close()
