"""Files written safely: temporary name then rename; HDF5 trajectories in the documented layout."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import threading
from contextlib import contextmanager
from pathlib import Path

import h5py
import numpy as np

from .. import __version__
from ..errors import InputError


def check_writable(folder: Path) -> None:
    """The folder exists, is a folder, and a file can be created in it (probed, not guessed:
    permissions alone do not tell for root or read-only mounts)."""
    if not folder.exists():
        raise InputError(f"folder {folder} does not exist")
    if not folder.is_dir():
        raise InputError(f"{folder} is a file, not a folder")
    try:
        fd, probe = tempfile.mkstemp(prefix=".crane_viz-probe.", dir=folder)
    except OSError as exc:
        raise InputError(f"cannot write into {folder} ({exc.strerror or exc})") from None
    os.close(fd)
    os.unlink(probe)


def check_output_path(path: str | Path, overwrite: bool, companions=()) -> Path:
    """`path` and each companion file written beside it (a PNG, a JSON summary) may be written:
    none is a folder, none is replaced unless `overwrite`, and the folder takes new files."""
    path = Path(path)
    for target in (path, *map(Path, companions)):
        if target.is_dir():
            raise InputError(f"{target} is a folder; give a file name")
        if target.exists() and not overwrite:
            raise InputError(f"{target} exists; pass --overwrite to replace it")
    check_writable(path.parent)
    return path


def check_output_folder(folder: str | Path, overwrite: bool, names=()) -> Path:
    """A folder to write `names` into: not a file, created where it may be, and none of the named
    files replaced unless `overwrite`."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise InputError(f"{folder} is a file, not a folder")
    existing = [n for n in names if (folder / n).exists()]
    if existing and not overwrite:
        raise InputError(f"{folder} already holds {', '.join(existing)}; pass --overwrite to replace them")
    parent = folder
    while not parent.exists():
        parent = parent.parent
    check_writable(parent)
    return folder


def project_root() -> Path:
    """The user's crane_viz folder (training jobs, trained checkpoints): $CRANE_VIZ_PROJECT, else
    $XDG_DATA_HOME/crane_viz (~/.local/share/crane_viz)."""
    if os.environ.get("CRANE_VIZ_PROJECT"):
        return Path(os.environ["CRANE_VIZ_PROJECT"])
    data_home = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(data_home) / "crane_viz"


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


FILE_MODE = 0o666 & ~_umask()  # what open() would give a new file (mkstemp makes it 0600)


# Set by the CLI when SIGINT or SIGTERM arrives. The handler also raises KeyboardInterrupt, but a
# library may swallow that (imageio-ffmpeg's teardown catches it while ffmpeg finishes a movie);
# an atomic write never commits once this is set, so an interrupted command leaves no output.
INTERRUPTED = threading.Event()


@contextmanager
def atomic_path(path: str | Path, *, private_folder: bool = False):
    """Yield a temporary sibling path; rename it to `path` on success, delete it on failure or
    after an interrupt (`INTERRUPTED`).

    With `private_folder` the temporary file lies in a hidden sibling folder that is removed
    afterwards: a child process still writing (ffmpeg, killed but not yet gone when an export is
    interrupted) then cannot recreate the file after the cleanup.
    """
    path = Path(path)
    if private_folder:
        folder = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent))
        tmp = folder / path.name
    else:
        fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
        os.close(fd)
        folder, tmp = None, Path(name)
    try:
        yield tmp
        if INTERRUPTED.is_set():
            raise KeyboardInterrupt  # interrupted inside code that swallowed the first one
        os.chmod(tmp, FILE_MODE)
        os.replace(tmp, path)
    finally:
        if folder is not None:
            shutil.rmtree(folder, ignore_errors=True)
        else:
            tmp.unlink(missing_ok=True)


def attr_value(value):
    """An HDF5-storable version of a setting (None → "", dicts and lists → JSON)."""
    if value is None:
        return ""
    if isinstance(value, (dict, list, tuple)):
        return json.dumps(value)
    return value


def write_attrs(node, attrs: dict) -> None:
    """Store every entry of `attrs` on an HDF5 file, group or dataset."""
    for key, value in attrs.items():
        node.attrs[key] = attr_value(value)


class TrajectoryWriter:
    """Appends frames to `<group>/phi` (frames × grid, float32) and `<group>/time` of an open file.

    `phi` carries the attribute layout = "frames,grid"; the initial frame is written first.
    """

    def __init__(self, h5: h5py.File, grid: tuple[int, ...], *, group: str = "", frames_hint: int = 16):
        node = h5.require_group(group) if group else h5
        chunk = (1, *grid)
        self.phi = node.create_dataset("phi", shape=(0, *grid), maxshape=(None, *grid),
                                       dtype="float32", chunks=chunk)
        self.phi.attrs["layout"] = "frames,grid"
        self.time = node.create_dataset("time", shape=(0,), maxshape=(None,), dtype="float64",
                                        chunks=(max(frames_hint, 1),))

    def append(self, phi: np.ndarray, time: float) -> None:
        n = self.phi.shape[0]
        self.phi.resize(n + 1, axis=0)
        self.phi[n] = np.asarray(phi, dtype=np.float32)
        self.time.resize(n + 1, axis=0)
        self.time[n] = time


def provenance() -> dict:
    """Attributes every crane_viz file carries."""
    import datetime

    return {"crane_viz_version": __version__,
            "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
