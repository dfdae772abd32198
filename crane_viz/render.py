"""Colour-mapped images of fields (PNG snapshots, movie frames), no GUI toolkit needed."""

from __future__ import annotations

from pathlib import Path

import numpy as np

DEFAULT_CMAP = "viridis"


def colorize(field: np.ndarray, *, cmap: str = DEFAULT_CMAP, vmin: float = 0.0,
             vmax: float = 1.0) -> np.ndarray:
    """(H, W) field → (H, W, 3) uint8 RGB with a matplotlib colour map on [vmin, vmax]."""
    from matplotlib import colormaps

    lut = (colormaps[cmap](np.linspace(0, 1, 256))[:, :3] * 255).astype(np.uint8)
    x = (np.asarray(field, dtype=np.float64) - vmin) / max(vmax - vmin, 1e-12)
    idx = np.clip(np.nan_to_num(x, nan=0.0) * 255, 0, 255).astype(np.uint8)
    return lut[idx]


def field_slice(field: np.ndarray, *, axis: int = 0, index: int | None = None) -> np.ndarray:
    """A 2D view of a 2D or 3D field: the field itself, or the slice `index` (default middle) normal to `axis`."""
    field = np.asarray(field)
    if field.ndim == 2:
        return field
    index = field.shape[axis] // 2 if index is None else index
    return np.take(field, index, axis=axis)


def upscale(rgb: np.ndarray, min_side: int = 256) -> np.ndarray:
    """Nearest-neighbour enlargement of small images so pixels stay crisp."""
    factor = max(1, -(-min_side // min(rgb.shape[:2])))
    return np.repeat(np.repeat(rgb, factor, axis=0), factor, axis=1)


def save_png(path: str | Path, field: np.ndarray, **kwargs) -> Path:
    """Write a colour-mapped PNG of a 2D field (3D: its middle slice), written atomically."""
    import imageio.v3 as iio

    from .io import atomic_path

    path = Path(path)
    rgb = upscale(colorize(field_slice(field), **kwargs))
    with atomic_path(path) as tmp:
        iio.imwrite(tmp, rgb, extension=".png")
    return path
