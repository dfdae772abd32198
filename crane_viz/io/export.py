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
from .compose import PANELS, FrameComposer, FrameStyle
from .files import TrajectoryWriter, atomic_path, provenance, write_attrs

FORMATS = ("mp4", "gif", "png", "vti", "h5")


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
