"""Images: colour mapping, PNG snapshots, and the off-screen 3D cutaway (pixel checks)."""

import imageio.v3 as iio
import numpy as np

from crane_viz.io.render import colorize, save_png
from crane_viz.io.render3d import cutaway_arrays, cutaway_meshes, render_cutaway
from crane_viz.physics.initial import perlin_field, sphere


def test_colorize_and_png(tmp_path):
    f = np.linspace(0, 1, 64).reshape(8, 8)
    rgb = colorize(f)
    assert rgb.shape == (8, 8, 3) and rgb.dtype == np.uint8
    assert not np.array_equal(rgb[0, 0], rgb[-1, -1])
    path = save_png(tmp_path / "a.png", perlin_field(16, 3, mean=0.5, amplitude=0.3, cells=2, seed=0))
    img = iio.imread(path)
    assert img.shape[0] >= 256 and img.std() > 10  # the middle slice, enlarged, not blank


def test_cutaway_halves():
    """Lower half: whole outer faces; upper half: only φ ≥ 0.5 faces and the φ = 0.5 surface."""
    ball = sphere(16, 3, radius=5)
    lower, iso, faces = cutaway_meshes(ball)
    assert lower.n_points > 0 and iso.n_points > 0
    assert lower.bounds[5] <= 8.0 + 1e-6 and iso.bounds[4] >= 8.0 - 1e-6
    assert faces.n_points == 0 or float(np.min(faces.point_data["phi"])) >= 0.5 - 1e-6


def test_cutaway_renders_off_screen():
    img = render_cutaway(perlin_field(16, 3, mean=0.5, amplitude=0.3, cells=2, seed=1),
                         window_size=(200, 180), caption="t = 0")
    assert img.shape == (180, 200, 3)
    coloured = (np.abs(img.astype(int) - 255).sum(-1) > 60).mean()
    assert coloured > 0.15  # the box covers a good part of the frame, not a blank image


def test_cutaway_arrays_are_one_closed_triangle_mesh_in_box_units():
    """The mesh the browser draws: triangles only, every index a point, points in [0, 1]³, the
    isosurface at the palette's top (1) and the box faces at their φ (≥ 0.5 in the upper half)."""
    n = 24
    i, j, k = np.meshgrid(*(np.arange(n),) * 3, indexing="ij")
    r = np.sqrt((i - n / 2) ** 2 + (j - n / 2) ** 2 + (k - n / 2 - 3) ** 2)
    ball = 0.5 + 0.5 * np.tanh((7 - r) / 1.5)  # a ball crossing the cut plane
    mesh = cutaway_arrays(ball)
    cells = mesh["polys"].reshape(-1, 4)
    assert (cells[:, 0] == 3).all() and len(cells) > 100
    assert cells[:, 1:].min() >= 0 and cells[:, 1:].max() < len(mesh["points"])
    assert mesh["points"].dtype == np.float32 and mesh["polys"].dtype == np.int32
    assert mesh["points"].min() >= 0 and mesh["points"].max() <= 1
    upper = mesh["points"][:, 2] > 0.55
    assert np.isclose(mesh["value"][upper], 1.0).mean() > 0.5  # mostly isosurface above the cut
    assert (mesh["value"][upper] >= 0.5 - 1e-6).all()  # only φ ≥ 0.5 is drawn above the cut
    empty = cutaway_arrays(np.zeros((8, 8, 8)))
    assert len(empty["points"]) > 0 and (empty["value"] < 0.5).all()  # only the lower half's faces
