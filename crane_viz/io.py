"""Files written safely: temporary name then rename; HDF5 trajectories in the documented layout."""

from __future__ import annotations

import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path

import h5py
import numpy as np

from . import __version__
from .errors import InputError


def check_output_path(path: str | Path, overwrite: bool) -> Path:
    """Refuse to replace an existing file unless `overwrite`; the folder must exist."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise InputError(f"{path} exists; pass --overwrite to replace it")
    if not path.parent.exists():
        raise InputError(f"{path.parent} does not exist")
    return path


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


@contextmanager
def atomic_path(path: str | Path):
    """Yield a temporary sibling path; rename it to `path` on success, delete it on failure."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp)
    try:
        yield tmp
        os.chmod(tmp, FILE_MODE)
        os.replace(tmp, path)
    finally:
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
