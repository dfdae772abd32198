"""Composing export frames: surrogate, reference and |Δφ| panels (2D maps, a 3D slice or the
3D cutaway) with a caption, as the explorer shows them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from ..errors import InputError
from .render import caption_font, colorize, field_slice

if TYPE_CHECKING:
    from .export import Trajectory

VIEWS = ("slice", "cutaway")
PHI_CMAP, DIFF_CMAP, DIFF_MAX = "viridis", "magma", 0.5  # the explorer's colour scales
PANELS = ("surrogate", "reference")


@dataclass
class FrameStyle:
    """How a frame looks: view, slice, colour map, panel height in pixels."""

    view: str = "slice"  # "slice" (2D maps / 3D slice) or "cutaway" (3D)
    axis: int = 2  # 3D slice normal (0, 1, 2 = x, y, z)
    index: float = 0.5  # slice position as a fraction of the box
    cmap: str = PHI_CMAP
    height: int = 256  # pixels per panel

    def __post_init__(self):
        if self.view not in VIEWS:
            raise InputError(f"view must be one of {VIEWS}, not {self.view!r}")
        if self.axis not in (0, 1, 2):
            raise InputError(f"axis must be 0, 1 or 2, not {self.axis}")
        if not 0.0 <= self.index <= 1.0:
            raise InputError(f"slice position must be in [0, 1], not {self.index}")
        if not 64 <= self.height <= 2048:
            raise InputError(f"panel height must be in [64, 2048] pixels, not {self.height}")
        from matplotlib import colormaps

        if self.cmap not in colormaps:
            raise InputError(f"unknown colour map {self.cmap!r} (any matplotlib name, e.g. viridis)")


class FrameComposer:
    """Turns frame i of a trajectory into one RGB image: labelled panels above a caption strip."""

    def __init__(self, traj: Trajectory, style: FrameStyle | None = None):
        self.traj, self.style = traj, style or FrameStyle()
        if self.style.view == "cutaway" and traj.dim != 3:
            raise InputError("the cutaway view needs a 3D run; use the slice view for 2D")
        self._renderers: dict = {}
        self.font = caption_font(max(12, self.style.height // 18))

    def panels(self, i: int) -> list[tuple[str, np.ndarray]]:
        """(label, RGB image) of each panel of frame i."""
        s, out = self.style, []
        for name in PANELS:
            if name in self.traj.fields:
                out.append((f"{name} φ", self._image(name, self.traj.fields[name][i])))
        diff = self.traj.difference(i)
        if diff is not None:
            rgb = colorize(self._slice(diff), cmap=DIFF_CMAP, vmin=0.0, vmax=DIFF_MAX)
            out.append(("|Δφ|", _resize(rgb, s.height)))
        return out

    def _slice(self, field: np.ndarray) -> np.ndarray:
        index = round(self.style.index * (field.shape[0] - 1)) if field.ndim == 3 else None
        return np.asarray(field_slice(field, axis=self.style.axis, index=index)).T[::-1]

    def _image(self, name: str, field: np.ndarray) -> np.ndarray:
        s = self.style
        if s.view == "cutaway":
            if name not in self._renderers:
                from .render3d import CutawayRenderer

                self._renderers[name] = CutawayRenderer(window_size=(round(s.height * 1.15), s.height),
                                                        cmap=s.cmap)
            return self._renderers[name].render(field)
        return _resize(colorize(self._slice(field), cmap=s.cmap), s.height)

    def compose(self, i: int) -> np.ndarray:
        """The full frame: panels with labels, and the caption with a φ colour bar."""
        from PIL import Image, ImageDraw

        panels = self.panels(i)
        gap, label_h = 8, self.font.size + 8
        width = sum(p.shape[1] for _, p in panels) + gap * (len(panels) + 1)
        caption_h = 2 * self.font.size + 22
        height = label_h + self.style.height + caption_h
        canvas = Image.new("RGB", (_block(width), _block(height)), "white")
        draw = ImageDraw.Draw(canvas)
        x = gap
        for label, img in panels:
            draw.text((x, 4), label, fill="black", font=self.font)
            canvas.paste(Image.fromarray(img), (x, label_h))
            x += img.shape[1] + gap
        y = label_h + self.style.height + 6
        draw.text((gap, y), self.traj.caption(i), fill="black", font=self.font)
        x = self._colour_bar(canvas, draw, gap, y + self.font.size + 6, "φ", self.style.cmap, 1.0)
        if len(panels) == 3:
            self._colour_bar(canvas, draw, x + 24, y + self.font.size + 6, "|Δφ|", DIFF_CMAP, DIFF_MAX)
        return np.asarray(canvas)

    def _colour_bar(self, canvas, draw, x: int, y: int, label: str, cmap: str, vmax: float) -> int:
        """Draw "label 0 [bar] vmax" at (x, y); returns the x where it ends."""
        from PIL import Image

        bar_w, bar_h = 160, max(8, self.font.size // 2)
        bar = colorize(np.tile(np.linspace(0, vmax, bar_w), (bar_h, 1)), cmap=cmap, vmax=vmax)
        draw.text((x, y - 2), f"{label} 0", fill="black", font=self.font)
        x0 = x + int(draw.textlength(f"{label} 0 ", font=self.font))
        canvas.paste(Image.fromarray(bar), (x0, y + 2))
        end = x0 + bar_w + 4
        draw.text((end, y - 2), f"{vmax:g}", fill="black", font=self.font)
        return end + int(draw.textlength(f"{vmax:g}", font=self.font))

    def close(self) -> None:
        for renderer in self._renderers.values():
            renderer.close()
        self._renderers.clear()


def _resize(rgb: np.ndarray, height: int) -> np.ndarray:
    """Nearest-neighbour resize to `height` rows (keeping the aspect), so grid cells stay crisp."""
    h, w = rgb.shape[:2]
    rows = (np.arange(height) * h // height)
    cols = (np.arange(round(w * height / h)) * h // height)
    return rgb[rows][:, cols]


def _block(n: int) -> int:
    """Round up to a multiple of 16: H.264 wants even sizes, and 16 avoids ffmpeg's rescaling."""
    return -(-n // 16) * 16
