"""Initial conditions: periodic Perlin noise, sphere, slab, composition gradient, and files.

Generators return float64 numpy arrays of shape (size,)*dim; `as_batch` turns a list of them into
a (B, *grid) tensor for the engines.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import h5py
import numpy as np
import torch

from ..errors import InputError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".gif"}


def _fade(t: np.ndarray) -> np.ndarray:
    """Perlin's quintic fade 6t⁵ − 15t⁴ + 10t³ (C² continuous across cell faces)."""
    return t * t * t * (t * (t * 6 - 15) + 10)


def _unit_gradients(rng: np.random.Generator, cells: int, dim: int) -> np.ndarray:
    """Random unit vectors on a periodic lattice of cells^dim points."""
    g = rng.standard_normal((cells,) * dim + (dim,))
    return g / np.linalg.norm(g, axis=-1, keepdims=True)


def perlin_octave(size: int, dim: int, cells: int, rng: np.random.Generator) -> np.ndarray:
    """One octave of gradient noise, periodic on a grid of `size` points with `cells` lattice cells."""
    grads = _unit_gradients(rng, cells, dim)
    pos = np.arange(size) * (cells / size)
    base = np.floor(pos).astype(np.int64)
    frac = pos - base
    coords = np.meshgrid(*([frac] * dim), indexing="ij")
    index = np.meshgrid(*([base] * dim), indexing="ij")
    out = np.zeros((size,) * dim)
    for corner in itertools.product((0, 1), repeat=dim):
        g = grads[tuple((index[a] + corner[a]) % cells for a in range(dim))]
        dot = sum(g[..., a] * (coords[a] - corner[a]) for a in range(dim))
        weight = np.prod([_fade(coords[a]) if corner[a] else _fade(1 - coords[a])
                          for a in range(dim)], axis=0)
        out += weight * dot
    return out


def perlin_noise(size: int, dim: int, cells: int, *, seed: int, octaves: int = 1,
                 persistence: float = 0.5) -> np.ndarray:
    """Periodic fractal Perlin noise: octave k has cells·2^k lattice cells and weight persistence^k."""
    if cells < 1 or cells > size:
        raise InputError(f"cells must be between 1 and the grid size {size}, not {cells}")
    rng = np.random.default_rng(seed)
    out = np.zeros((size,) * dim)
    for k in range(octaves):
        c = cells * 2**k
        if c > size:
            break
        out += persistence**k * perlin_octave(size, dim, c, rng)
    return out


def normalise(field: np.ndarray, mean: float, amplitude: float) -> np.ndarray:
    """Shift and scale to an exact mean ⟨φ⟩ and peak deviation max|φ − ⟨φ⟩| = amplitude."""
    dev = field - field.mean()
    peak = np.abs(dev).max()
    scale = amplitude / peak if peak > 0 else 0.0
    return mean + dev * scale


def cells_for_length(size: int, correlation_length: float) -> int:
    """Lattice cells per side that give features of about `correlation_length` grid points."""
    return int(min(size, max(1, round(size / correlation_length))))


def perlin_field(size: int, dim: int, *, mean: float, amplitude: float, cells: int, seed: int,
                 octaves: int = 1) -> np.ndarray:
    """The papers' initial condition: Perlin noise about a uniform composition ⟨φ⟩."""
    return normalise(perlin_noise(size, dim, cells, seed=seed, octaves=octaves), mean, amplitude)


def _grid(size: int, dim: int) -> list[np.ndarray]:
    x = np.arange(size, dtype=np.float64)
    return np.meshgrid(*([x] * dim), indexing="ij")


def _periodic_offset(x: np.ndarray, centre: float, size: int) -> np.ndarray:
    d = x - centre
    return d - size * np.round(d / size)


def sphere(size: int, dim: int, *, radius: float, width: float = 2.0, inside: float = 1.0,
           outside: float = 0.0, centre: tuple[float, ...] | None = None) -> np.ndarray:
    """A disc (2D) or ball (3D) with a tanh interface of `width`, periodic distance from the centre."""
    centre = centre or (size / 2,) * dim
    r = np.sqrt(sum(_periodic_offset(x, c, size) ** 2 for x, c in zip(_grid(size, dim), centre)))
    return outside + (inside - outside) * 0.5 * (1 - np.tanh((r - radius) / width))


def slab(size: int, dim: int, *, thickness: float, axis: int = 0, width: float = 2.0,
         inside: float = 1.0, outside: float = 0.0) -> np.ndarray:
    """A layer of `thickness` across the box, normal to `axis`, centred, with tanh interfaces."""
    x = _grid(size, dim)[axis]
    d = np.abs(_periodic_offset(x, size / 2, size))
    return outside + (inside - outside) * 0.5 * (1 - np.tanh((d - thickness / 2) / width))


def composition_gradient(size: int, dim: int, *, mean: float, contrast: float,
                         noise: float = 0.0, cells: int = 8, seed: int = 0) -> np.ndarray:
    """Smooth periodic composition, higher in the centre and lower at the edges (2D paper, Fig. 7c).

    ⟨φ⟩ is exact; `contrast` is the peak deviation of the smooth profile, `noise` that of the
    Perlin fluctuations added on top.
    """
    bump = np.prod([np.sin(np.pi * x / size) ** 2 for x in _grid(size, dim)], axis=0)
    field = normalise(bump, 0.0, contrast)
    if noise > 0:
        field = field + normalise(perlin_noise(size, dim, cells, seed=seed), 0.0, noise)
    return field - field.mean() + mean


def as_batch(fields, dtype=torch.float32, device="cpu") -> torch.Tensor:
    """Stack fields (numpy or torch, each (size,)*dim) into a (B, *grid) tensor."""
    return torch.stack([torch.as_tensor(np.asarray(f)) for f in fields]).to(dtype=dtype, device=device)


# --------------------------------------------------------------------------- files

def _read_h5(path: Path, frame: int, dim: int | None) -> np.ndarray:
    """Dataset `phi` of a crane_viz file; a trajectory (attribute layout = "frames,grid", or one
    more axis than `dim`) gives its frame `frame`."""
    import h5py

    with h5py.File(path, "r") as f:
        for key in ("phi", "surrogate/phi", "reference/phi"):
            if key in f:
                data = f[key]
                break
        else:
            raise InputError(f"{path}: no dataset 'phi' (nor 'surrogate/phi') in this HDF5 file")
        trajectory = data.attrs.get("layout") == "frames,grid" or (
            dim is not None and data.ndim == dim + 1)
        arr = np.asarray(data[frame] if trajectory else data[()])
    return arr


def _read_image(path: Path) -> np.ndarray:
    import imageio.v3 as iio

    img = np.asarray(iio.imread(path))
    if img.ndim == 3:
        img = img[..., :3].mean(axis=-1) if img.shape[-1] >= 3 else img[..., 0]
    top = np.iinfo(img.dtype).max if np.issubdtype(img.dtype, np.integer) else max(img.max(), 1.0)
    return img.astype(np.float64) / top


def _peek_side(path: Path, suffix: str) -> int:
    """The largest grid side a field file declares, read from its header without decoding it."""
    if suffix == ".npy":
        return max(np.load(path, mmap_mode="r", allow_pickle=False).shape[-2:], default=0)
    if suffix in (".h5", ".hdf5"):
        with h5py.File(path, "r") as f:
            return max(f["phi"].shape[-2:], default=0) if "phi" in f else 0
    from PIL import Image

    with Image.open(path) as img:
        return max(img.size)


def load_field(path: str | Path, *, dim: int | None = None, size: int | None = None,
               frame: int = -1, max_side: int | None = None) -> np.ndarray:
    """Read an initial field from .npy, .h5 (dataset `phi`, frame `frame`) or a greyscale image.

    Checks that it is real, finite, square/cubic, of dimension `dim` and side `size` when given,
    and raises InputError naming the file and the failed check otherwise. `max_side` is checked
    from the file's header before anything is decoded (a small PNG can hold a huge image).
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    suffix = path.suffix.lower()
    try:
        if max_side is not None and suffix in (".npy", ".h5", ".hdf5", *IMAGE_SUFFIXES):
            side = _peek_side(path, suffix)
            if side > max_side:
                raise InputError(f"{path}: {side} points per side; at most {max_side} are allowed here")
        if suffix == ".npy":
            arr = np.load(path, allow_pickle=False)
        elif suffix in (".h5", ".hdf5"):
            arr = _read_h5(path, frame, dim)
        elif suffix in IMAGE_SUFFIXES:
            arr = _read_image(path)
        else:
            raise InputError(f"{path}: unsupported file type {suffix!r}; use .npy, .h5 or an image "
                             f"({', '.join(sorted(IMAGE_SUFFIXES))})")
    except InputError:
        raise
    except Exception as exc:  # unreadable file of a known type: report it, not a traceback
        raise InputError(f"{path}: could not be read ({exc.__class__.__name__}: {exc})") from exc
    return check_field(arr, str(path), dim=dim, size=size)


def check_field(arr: np.ndarray, name: str, *, dim: int | None = None,
                size: int | None = None) -> np.ndarray:
    """Validate an initial field (see `load_field`) and return it as float64."""
    arr = np.asarray(arr)
    if arr.dtype.kind not in "fiu":
        raise InputError(f"{name}: dtype {arr.dtype} is not a real number type")
    if arr.ndim not in (2, 3):
        raise InputError(f"{name}: a field must be 2D or 3D, this one has shape {arr.shape}")
    if dim is not None and arr.ndim != dim:
        raise InputError(f"{name}: expected a {dim}D field, got shape {arr.shape}")
    if len(set(arr.shape)) != 1:
        raise InputError(f"{name}: the grid must be square/cubic, got shape {arr.shape}")
    if size is not None and arr.shape[0] != size:
        raise InputError(f"{name}: expected {size} points per side, got {arr.shape[0]}")
    if arr.shape[0] < 8:
        raise InputError(f"{name}: at least 8 points per side are needed, got {arr.shape[0]}")
    arr = arr.astype(np.float64)
    if not np.isfinite(arr).all():
        raise InputError(f"{name}: contains NaN or infinite values")
    mean = float(arr.mean())
    if not 0 < mean < 1:
        raise InputError(f"{name}: its mean composition ⟨φ⟩ = {mean:.4g} must lie strictly between "
                         "0 and 1 (a uniform phase has nothing to decompose)")
    return arr
