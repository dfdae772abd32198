"""Movies, snapshots and data from runs: MP4/GIF/PNG of the side-by-side maps, VTK `.vti`, HDF5.

A `Trajectory` is what gets exported: the surrogate's and/or the reference's frames (each on its
own grid), their times, per-frame metrics and the run's attributes. It comes from a `run.h5` or a
`simulate` file (`load_trajectory`) or from a live session (`Recorder`). Frames are composed as in
the explorer: surrogate, reference and |Δφ| side by side (2D maps or a 3D slice), or the papers'
φ ≥ 0.5 cutaway (3D, rendered off screen with PyVista), with a caption of the settings, the time
and the metrics. Every file is written under a temporary name and renamed when complete.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import h5py
import numpy as np
import torch

from ..engines.surrogate import downsample
from ..errors import Cancelled, CraneVizError, InputError
from .files import TrajectoryWriter, atomic_path, provenance, write_attrs
from .render import colorize, field_slice

FORMATS = ("mp4", "gif", "png", "vti", "h5")
VIEWS = ("slice", "cutaway")
PHI_CMAP, DIFF_CMAP, DIFF_MAX = "viridis", "magma", 0.5  # the explorer's colour scales
PANELS = ("surrogate", "reference")


@dataclass
class Trajectory:
    """Frames to export. `fields[name]` is (frames, *grid) on that engine's own grid."""

    fields: dict[str, np.ndarray]
    time: np.ndarray
    metrics: dict[str, np.ndarray] = field(default_factory=dict)
    attrs: dict = field(default_factory=dict)

    def __post_init__(self):
        if not self.fields:
            raise InputError("nothing to export: the run holds no frames")
        lengths = {len(v) for v in self.fields.values()} | {len(self.time)}
        if len(lengths) != 1:
            raise InputError(f"frame counts differ between fields and times: {sorted(lengths)}")

    @property
    def frames(self) -> int:
        return len(self.time)

    def frame_index(self, frame: int) -> int:
        """A frame number (negative counts from the end) checked against the run's frames."""
        if not -self.frames <= frame < self.frames:
            raise InputError(f"--frame must lie in [{-self.frames}, {self.frames - 1}] for this run of "
                             f"{self.frames} frames, not {frame}")
        return range(self.frames)[frame]

    @property
    def dim(self) -> int:
        return next(iter(self.fields.values())).ndim - 1

    def difference(self, i: int) -> np.ndarray | None:
        """|Δφ| of frame i on the coarser grid (the finer field average-pooled), or None."""
        if not all(k in self.fields for k in PANELS):
            return None
        sur, ref = self.fields["surrogate"][i], self.fields["reference"][i]
        coarse = downsample(torch.from_numpy(np.ascontiguousarray(ref))[None], ref.shape[0] // sur.shape[0])[0]
        return np.abs(coarse.numpy() - sur)

    def caption(self, i: int) -> str:
        """Settings, time and the frame's metrics in one line."""
        a = self.attrs
        numbers = self.metrics.get("frame")
        number = int(numbers[i - 1]) if numbers is not None and 0 < i <= len(numbers) else i
        parts = [str(a.get("checkpoint") or a.get("preset") or "run"), f"frame {number}",
                 f"t = {self.time[i]:g}"]
        if "mean" in a:
            parts.append(f"⟨φ⟩ = {float(a['mean']):.3f}")
        if a.get("eta") not in (None, "") and float(a["eta"]) > 0:
            parts.append(f"η = {100 * float(a['eta']):.2f} %")
        for key, label in (("rmse", "RMSE"), ("delta", "δ̄")):
            values = self.metrics.get(key)
            if values is not None and 0 < i <= len(values) and np.isfinite(values[i - 1]):
                parts.append(f"{label} {values[i - 1]:.3g}")
        return " · ".join(parts)


# ---------------------------------------------------------------------------- reading and writing
def load_trajectory(path: str | Path) -> Trajectory:
    """Read a `crane-viz run` or `crane-viz simulate` file; InputError naming the file otherwise."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    if not h5py.is_hdf5(path):
        raise InputError(f"{path}: not an HDF5 file")
    try:
        with h5py.File(path, "r") as f:
            attrs = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in f.attrs.items()}
            groups = {"reference": f} if "phi" in f else {k: f[k] for k in PANELS if k in f}
            if not groups:
                raise InputError(f"{path}: no 'phi' or 'surrogate/phi' dataset; not a crane_viz run file")
            fields = {k: _frames_of(path, g) for k, g in groups.items()}
            if "time" not in next(iter(groups.values())):
                raise InputError(f"{path}: no 'time' dataset beside phi; not a crane_viz run file")
            time = np.asarray(next(iter(groups.values()))["time"][()], dtype=np.float64)
            metrics = {k: v[()] for k, v in f["metrics"].items()} if "metrics" in f else {}
    except InputError:
        raise
    except (OSError, KeyError, ValueError, TypeError) as exc:
        raise InputError(f"{path}: unreadable run file ({exc.__class__.__name__}: {exc})") from None
    return Trajectory(fields, time, metrics, attrs)


def _frames_of(path: Path, group) -> np.ndarray:
    """A group's `phi` as float32 frames × grid, checked: real numbers, 2D or 3D frames, ≥ 1 frame."""
    phi = group["phi"]
    if phi.dtype.kind not in "fiu":
        raise InputError(f"{path}: phi holds {phi.dtype} values, not numbers")
    if phi.ndim not in (3, 4):
        raise InputError(f"{path}: phi must be frames × 2D or 3D grid, got shape {phi.shape}")
    if phi.shape[0] == 0:
        raise InputError(f"{path}: phi holds no frames")
    return phi[()].astype(np.float32, copy=False)


def write_h5(traj: Trajectory, path: str | Path) -> Path:
    """The trajectory in `crane-viz run`'s layout (groups per engine, `metrics/`, attributes)."""
    path = Path(path)
    with atomic_path(path) as tmp:
        with h5py.File(tmp, "w") as h5:
            for name, frames in traj.fields.items():
                writer = TrajectoryWriter(h5, frames.shape[1:], group=name, frames_hint=len(frames))
                for phi, t in zip(frames, traj.time):
                    writer.append(phi, t)
            group = h5.create_group("metrics")
            for key, values in traj.metrics.items():
                group.create_dataset(key, data=np.asarray(values))
            write_attrs(h5, {**traj.attrs, **provenance()})
    return path


def write_vti(traj: Trajectory, path: str | Path, *, frame: int = -1, panel: str | None = None) -> Path:
    """One frame as VTK ImageData (`.vti`, point data `phi`) for ParaView; 2D fields get nz = 1."""
    from vtkmodules.util.numpy_support import numpy_to_vtk
    from vtkmodules.vtkCommonDataModel import vtkImageData
    from vtkmodules.vtkIOXML import vtkXMLImageDataWriter

    phi = _panel(traj, panel)[traj.frame_index(frame)]
    grid = phi if phi.ndim == 3 else phi[..., None]
    image = vtkImageData()
    image.SetDimensions(*grid.shape)
    array = numpy_to_vtk(np.ascontiguousarray(grid.ravel(order="F"), dtype=np.float32), deep=True)
    array.SetName("phi")
    image.GetPointData().SetScalars(array)
    path = Path(path)
    with atomic_path(path) as tmp:
        writer = vtkXMLImageDataWriter()
        writer.SetFileName(str(tmp))
        writer.SetInputData(image)
        if not writer.Write():
            raise CraneVizError(f"{path}: VTK could not write the image")
    return path


def _panel(traj: Trajectory, panel: str | None) -> np.ndarray:
    if panel is None:
        return traj.fields.get("surrogate", traj.fields.get("reference"))
    if panel not in traj.fields:
        raise InputError(f"no {panel!r} frames in this run (it has {', '.join(traj.fields)})")
    return traj.fields[panel]


# ---------------------------------------------------------------------------- composing frames
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


def caption_font(size: int):
    """DejaVu Sans from matplotlib's own files: offline, and it has φ, η, Δ, δ̄ and ⟨ ⟩."""
    from matplotlib import font_manager
    from PIL import ImageFont

    return ImageFont.truetype(font_manager.findfont("DejaVu Sans"), size)


def _resize(rgb: np.ndarray, height: int) -> np.ndarray:
    """Nearest-neighbour resize to `height` rows (keeping the aspect), so grid cells stay crisp."""
    h, w = rgb.shape[:2]
    rows = (np.arange(height) * h // height)
    cols = (np.arange(round(w * height / h)) * h // height)
    return rgb[rows][:, cols]


def _block(n: int) -> int:
    """Round up to a multiple of 16: H.264 wants even sizes, and 16 avoids ffmpeg's rescaling."""
    return -(-n // 16) * 16


# ---------------------------------------------------------------------------- exports
ProgressFn = Callable[[int, int], None]


def frame_indices(traj: Trajectory, stride: int = 1) -> list[int]:
    """Every `stride`-th frame, the first included."""
    if stride < 1:
        raise InputError(f"frame stride must be at least 1, not {stride}")
    return list(range(0, traj.frames, stride))


def write_movie(traj: Trajectory, path: str | Path, *, fps: float = 12.0, stride: int = 1,
                style: FrameStyle | None = None, progress: ProgressFn | None = None,
                cancel: threading.Event | None = None) -> Path:
    """MP4 (H.264) or GIF, chosen by the suffix; `cancel` set → Cancelled and no file."""
    path = Path(path)
    fmt = path.suffix.lower().lstrip(".")
    if fmt not in ("mp4", "gif"):
        raise InputError(f"{path}: a movie must end in .mp4 or .gif")
    if not 0.5 <= fps <= 60:
        raise InputError(f"fps must be in [0.5, 60], not {fps}")
    indices = frame_indices(traj, stride)
    composer = FrameComposer(traj, style)
    try:
        with atomic_path(path, private_folder=True) as tmp:  # ffmpeg may outlive an interrupt
            if fmt == "mp4":
                _write_mp4(tmp, composer, indices, fps, progress, cancel)
            else:
                _write_gif(tmp, composer, indices, fps, progress, cancel)
    finally:
        composer.close()
    return path


def _frames(composer, indices, progress, cancel):
    for n, i in enumerate(indices):
        if cancel is not None and cancel.is_set():
            raise Cancelled("export cancelled; nothing was written")
        yield composer.compose(i)
        if progress:
            progress(n + 1, len(indices))


def _write_mp4(tmp: Path, composer, indices, fps, progress, cancel) -> None:
    import imageio_ffmpeg

    first = None
    writer = None
    try:
        for img in _frames(composer, indices, progress, cancel):
            if writer is None:
                first = img.shape
                writer = imageio_ffmpeg.write_frames(str(tmp), (img.shape[1], img.shape[0]), fps=fps,
                                                     codec="libx264", pix_fmt_out="yuv420p",
                                                     output_params=["-f", "mp4"], quality=8,
                                                     macro_block_size=16)
                writer.send(None)
            if img.shape != first:
                raise CraneVizError("frame sizes changed during the export")
            writer.send(np.ascontiguousarray(img))
    finally:
        if writer is not None:
            writer.close()


def _write_gif(tmp: Path, composer, indices, fps, progress, cancel) -> None:
    from PIL import Image

    images = [Image.fromarray(img) for img in _frames(composer, indices, progress, cancel)]
    images[0].save(tmp, format="GIF", save_all=True, append_images=images[1:],
                   duration=round(1000 / fps), loop=0, optimize=False)


def write_snapshot(traj: Trajectory, path: str | Path, *, frame: int = -1,
                   style: FrameStyle | None = None) -> Path:
    """PNG of one frame (default: the last) with panels, caption and colour bar."""
    import imageio.v3 as iio

    index = traj.frame_index(frame)
    composer = FrameComposer(traj, style)
    try:
        img = composer.compose(index)
    finally:
        composer.close()
    path = Path(path)
    with atomic_path(path) as tmp:
        iio.imwrite(tmp, img, extension=".png")
    return path


def export_target(path: str | Path, fmt: str | None = None) -> tuple[Path, str]:
    """The file an export writes and its format: `fmt`, else the suffix; the suffix follows it."""
    path = Path(path)
    fmt = (fmt or path.suffix.lstrip(".")).lower()
    if fmt not in FORMATS:
        raise InputError(f"unknown export format {fmt!r}; choose one of {', '.join(FORMATS)}")
    if path.suffix.lower() != "." + fmt:
        path = path.with_suffix("." + fmt)
    return path, fmt


def export(traj: Trajectory, path: str | Path, *, fmt: str | None = None, frame: int = -1,
           stride: int = 1, fps: float = 12.0, style: FrameStyle | None = None,
           panel: str | None = None, progress: ProgressFn | None = None,
           cancel: threading.Event | None = None) -> Path:
    """One entry point for every format (taken from the suffix unless `fmt` is given)."""
    path, fmt = export_target(path, fmt)
    if fmt in ("mp4", "gif"):
        return write_movie(traj, path, fps=fps, stride=stride, style=style, progress=progress,
                           cancel=cancel)
    if fmt == "png":
        return write_snapshot(traj, path, frame=frame, style=style)
    if fmt == "vti":
        return write_vti(traj, path, frame=frame, panel=panel)
    return write_h5(traj, path)


# ---------------------------------------------------------------------------- live recording
class Recorder:
    """Keeps a live session's frames for export within a memory budget.

    Every frame is kept until the budget is reached; then every other kept frame is dropped and
    only every `stride`-th new frame is kept (stride doubles each time), so a long run still
    exports evenly spaced frames from start to end.
    """

    def __init__(self, budget_bytes: int = 256 * 2**20, attrs: dict | None = None):
        self.budget, self.attrs = budget_bytes, dict(attrs or {})
        self._lock = threading.Lock()
        self.clear()

    def clear(self, attrs: dict | None = None) -> None:
        """Forget every frame (a new run starts), optionally with new attributes."""
        with self._lock:
            if attrs is not None:
                self.attrs = dict(attrs)
            self.fields: dict[str, list[np.ndarray]] = {}
            self.time: list[float] = []
            self.rows: list[dict] = []
            self.stride, self._seen = 1, 0

    def add(self, index: int, time: float, fields: dict[str, np.ndarray | None],
            metrics: dict | None = None) -> None:
        """Offer one frame; it is kept when it falls on the current stride."""
        with self._lock:
            self._seen += 1
            if (self._seen - 1) % self.stride:
                return
            for name, phi in fields.items():
                if phi is not None:
                    self.fields.setdefault(name, []).append(np.array(phi, dtype=np.float32))
            self.time.append(float(time))
            self.rows.append({"frame": float(index), **(metrics or {})})
            if self.nbytes > self.budget and len(self.time) > 2:
                self._thin()

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for frames in self.fields.values() for a in frames)

    def _thin(self) -> None:
        for name in self.fields:
            self.fields[name] = self.fields[name][::2]
        self.time, self.rows = self.time[::2], self.rows[::2]
        self.stride *= 2

    def trajectory(self) -> Trajectory:
        """A snapshot of what was recorded so far (copies; recording may go on)."""
        with self._lock:
            fields = {k: np.stack(v) for k, v in self.fields.items() if len(v) == len(self.time)}
            keys = sorted({k for r in self.rows for k in r})
            # metrics[k][j] belongs to frame j + 1, as in `crane-viz run` files
            metrics = {k: np.array([r.get(k, np.nan) for r in self.rows[1:]]) for k in keys}
            return Trajectory(fields, np.array(self.time), metrics,
                              {**self.attrs, "recorded_stride": self.stride})
