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

    from .files import atomic_path

    path = Path(path)
    rgb = upscale(colorize(field_slice(field), **kwargs))
    with atomic_path(path) as tmp:
        iio.imwrite(tmp, rgb, extension=".png")
    return path


def comparison_sheet(rows: list[tuple[str, list[np.ndarray]]], titles: list[str], *, cell: int = 112,
                     cmap: str = DEFAULT_CMAP, vmin: float = 0.0, vmax: float = 1.0,
                     corner: str = "") -> np.ndarray:
    """A labelled grid of φ maps: one row per (label, fields) pair, one column per title.

    Used for the training preview (reference frames above the surrogate's rollout). 3D fields
    show their middle slice; `corner` is written above the row labels (e.g. the colour range).
    """
    from PIL import Image, ImageDraw


    font = caption_font(13)
    left, top, gap = 96, 22, 4
    width = left + len(titles) * (cell + gap)
    height = top + len(rows) * (cell + gap)
    sheet = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(sheet)
    draw.text((4, 3), corner, fill="black", font=font)
    for j, title in enumerate(titles):
        draw.text((left + j * (cell + gap) + 4, 3), title, fill="black", font=font)
    for i, (label, fields) in enumerate(rows):
        y = top + i * (cell + gap)
        draw.text((4, y + cell // 2 - 8), label, fill="black", font=font)
        for j, field in enumerate(fields):
            rgb = colorize(np.asarray(field_slice(field)).T[::-1], cmap=cmap, vmin=vmin, vmax=vmax)
            tile = Image.fromarray(rgb).resize((cell, cell), Image.NEAREST)
            sheet.paste(tile, (left + j * (cell + gap), y))
    return np.asarray(sheet)


def caption_font(size: int):
    """DejaVu Sans from matplotlib's own files: offline, and it has φ, η, Δ, δ̄ and ⟨ ⟩."""
    from matplotlib import font_manager
    from PIL import ImageFont

    return ImageFont.truetype(font_manager.findfont("DejaVu Sans"), size)
