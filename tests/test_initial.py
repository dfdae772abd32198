"""Initial conditions: Perlin periodicity, exact mean and amplitude, shapes, file loading."""

import h5py
import imageio.v3 as iio
import numpy as np
import pytest

from crane_viz.errors import InputError
from crane_viz.physics.initial import (
    cells_for_length,
    composition_gradient,
    load_field,
    perlin_field,
    perlin_noise,
    slab,
    sphere,
)


@pytest.mark.parametrize("dim, size, cells", [(2, 64, 8), (2, 48, 5), (3, 16, 4)])
def test_perlin_is_periodic(dim, size, cells):
    """Tiling the noise continues it smoothly: the wrap-around jump is no larger than inner jumps."""
    n = perlin_noise(size, dim, cells, seed=3, octaves=2)
    for ax in range(dim):
        inner = np.abs(np.diff(n, axis=ax)).max()
        wrap = np.abs(np.take(n, 0, axis=ax) - np.take(n, -1, axis=ax)).max()
        assert wrap <= inner * 1.0000001


@pytest.mark.parametrize("mean, amp", [(0.5, 0.1), (0.3, 0.02), (0.77, 0.3)])
def test_perlin_field_exact_mean_and_amplitude(mean, amp):
    """⟨φ⟩ and max|φ − ⟨φ⟩| hit the request to 1e-12."""
    f = perlin_field(64, 2, mean=mean, amplitude=amp, cells=8, seed=1)
    assert abs(f.mean() - mean) < 1e-12
    assert abs(np.abs(f - f.mean()).max() - amp) < 1e-12


def test_seed_reproducible_and_distinct():
    a = perlin_field(32, 2, mean=0.5, amplitude=0.1, cells=4, seed=1)
    assert np.array_equal(a, perlin_field(32, 2, mean=0.5, amplitude=0.1, cells=4, seed=1))
    assert not np.allclose(a, perlin_field(32, 2, mean=0.5, amplitude=0.1, cells=4, seed=2))


def test_correlation_length_maps_to_cells():
    assert cells_for_length(128, 16) == 8
    assert cells_for_length(64, 1000) == 1
    assert cells_for_length(16, 0.5) == 16


def test_shapes_and_gradient():
    s = sphere(32, 3, radius=8)
    assert s.shape == (32, 32, 32) and s[16, 16, 16] > 0.99 and s[0, 0, 0] < 0.01
    sl = slab(32, 2, thickness=10)
    assert sl[16, 0] > 0.99 and sl[0, 0] < 0.01
    g = composition_gradient(64, 2, mean=0.4, contrast=0.1, noise=0.01, seed=2)
    assert abs(g.mean() - 0.4) < 1e-12
    assert g[32, 32] > g.mean() > g[0, 0]  # higher in the centre, lower at the edges


def test_load_npy_h5_image(tmp_path):
    f = perlin_field(16, 2, mean=0.5, amplitude=0.1, cells=4, seed=0)
    np.save(tmp_path / "a.npy", f)
    assert np.array_equal(load_field(tmp_path / "a.npy", dim=2), f)
    with h5py.File(tmp_path / "a.h5", "w") as h5:
        d = h5.create_dataset("phi", data=np.stack([f, f + 0.1]).astype("float32"))
        d.attrs["layout"] = "frames,grid"
    np.testing.assert_allclose(load_field(tmp_path / "a.h5"), f + 0.1, atol=1e-6)
    np.testing.assert_allclose(load_field(tmp_path / "a.h5", frame=0), f, atol=1e-6)
    img = (np.linspace(0, 255, 16 * 16).reshape(16, 16)).astype(np.uint8)
    iio.imwrite(tmp_path / "a.png", img)
    loaded = load_field(tmp_path / "a.png")
    assert loaded.min() == 0.0 and loaded.max() == 1.0


@pytest.mark.parametrize("content, message", [
    (np.zeros((16, 8)), "square"),
    (np.zeros((16,)), "2D or 3D"),
    (np.full((16, 16), np.nan), "NaN"),
    (np.zeros((16, 16), dtype=complex), "dtype"),
    (np.zeros((4, 4)), "at least 8"),
])
def test_bad_fields_are_refused_with_reason(tmp_path, content, message):
    np.save(tmp_path / "bad.npy", content)
    with pytest.raises(InputError, match=message) as info:
        load_field(tmp_path / "bad.npy")
    assert "bad.npy" in str(info.value)


def test_wrong_dimension_and_missing_file(tmp_path):
    np.save(tmp_path / "f.npy", np.zeros((16, 16)))
    with pytest.raises(InputError, match="3D"):
        load_field(tmp_path / "f.npy", dim=3)
    with pytest.raises(InputError, match="no such file"):
        load_field(tmp_path / "missing.npy")
    (tmp_path / "x.txt").write_text("hi")
    with pytest.raises(InputError, match="unsupported"):
        load_field(tmp_path / "x.txt")
    (tmp_path / "broken.npy").write_bytes(b"not numpy")
    with pytest.raises(InputError, match="could not be read"):
        load_field(tmp_path / "broken.npy")


def test_max_side_is_checked_before_decoding(tmp_path):
    """A tiny, highly compressible 4096² PNG is refused from its header (#16 item 3)."""
    import imageio.v3 as iio

    png = tmp_path / "huge.png"
    iio.imwrite(png, np.zeros((4096, 4096), dtype=np.uint8))
    assert png.stat().st_size < 100_000
    with pytest.raises(InputError, match="4096 points per side; at most 256"):
        load_field(png, max_side=256)
    npy = tmp_path / "big.npy"
    np.save(npy, np.full((300, 300), 0.5))
    with pytest.raises(InputError, match="300 points per side"):
        load_field(npy, max_side=256)
    assert load_field(npy, max_side=300).shape == (300, 300)
