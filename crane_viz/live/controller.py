"""GUI-free live runs for the explorer app: settings with bounds, and a worker-thread controller.

`ExplorerSettings` declares every control once (bounds, soft bounds, docs); the app renders them
as widgets and syncs them to the URL. `LiveRun` builds a `Session` from them and advances it in
a background thread, handing batches of frames to a callback; it never touches the GUI itself.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import threading
import uuid
from functools import lru_cache
from pathlib import Path

import numpy as np
import param
import torch

from ..device import compute_thread
from ..engines import make_solver
from ..engines.surrogate import SurrogateEngine, pick_device
from ..errors import Cancelled, InputError
from ..io.export import Trajectory, export
from ..nn.checkpoint import list_checkpoints, load_checkpoint
from ..nn.model import CRNN, get_config
from ..physics.initial import check_field, perlin_field
from ..physics.presets import get_preset
from ..settings import DEFAULT_CHECKPOINT, INIT_KINDS, InitialConditionSettings
from .background import BackgroundJob, unexpected
from .recording import Recorder
from .session import Frame, Session

UNTRAINED = {"untrained small-2d": ("small-2d", "coherent-2d"), "untrained small-3d": ("small-3d", "plain-3d")}
SIZES = [32, 64, 96, 128, 192, 256]
MAX_SIDE = {2: max(SIZES), 3: 96}  # the largest grid a browser session runs, per dimension


def model_choices() -> list[str]:
    """Shipped/trained checkpoints first; untrained registry models as a fallback for demos."""
    return [*list_checkpoints(), *UNTRAINED]


@lru_cache(maxsize=8)
def _checkpoint(name: str):
    return load_checkpoint(name)


def surrogate_for(model: str, misfit: float, device) -> SurrogateEngine:
    """The engine for a model choice (a checkpoint name, or an untrained registry model)."""
    if model in UNTRAINED:
        config, preset = UNTRAINED[model]
        torch.manual_seed(0)
        return SurrogateEngine(CRNN(get_config(config)), preset=get_preset(preset), misfit=misfit,
                               device=device, name=f"crnn:{model}")
    return SurrogateEngine(_checkpoint(model), misfit=misfit, device=device)


def model_info(model: str) -> dict:
    """dim, preset, training ranges and grid scale of a model choice."""
    if model in UNTRAINED:
        config, preset = UNTRAINED[model]
        return {"dim": get_config(config).dim, "preset": get_preset(preset), "training": None,
                "grid_scale": 1, "conditioned": bool(get_config(config).conditions)}
    ck = _checkpoint(model)
    return {"dim": ck.dim, "preset": ck.preset, "training": ck.training, "grid_scale": ck.grid_scale,
            "conditioned": bool(ck.model_config.conditions)}


class ExplorerSettings(InitialConditionSettings):
    """The explorer's controls; the same bounds as the CLI's."""

    model = param.Selector(default=None, objects=[], check_on_set=True,
                           doc="Surrogate: a checkpoint (2D or 3D follows from it).")
    eta_percent = param.Number(0.6, bounds=(0.0, 5.0), softbounds=(0.0, 1.2),
                               doc="Elastic misfit η in percent (η-conditioned models); the papers used 0–1.2 %.")
    size = param.Selector(default=64, objects=SIZES, doc="Grid points per side of the reference grid.")
    init_kind = param.Selector(default="perlin", objects=[*INIT_KINDS, "upload"],
                               doc="Initial condition; 'upload' uses the last uploaded .npy or image.")
    reference = param.Selector(default="spectral", objects=["none", "spectral", "fd"],
                               doc="Reference solver run beside the surrogate.")
    frames_per_update = param.Integer(1, bounds=(1, 20), doc="Frames computed between two screen updates "
                                      "(at least; more join an update while the page is busy).")
    updates_per_second = param.Integer(12, bounds=(1, 60), doc="Most screen updates per second while "
                                       "playing; frames made in between join the next update, so a "
                                       "browser on the same cores leaves them to the simulation.")

    def __init__(self, **params):
        choices = model_choices()
        self.param.model.objects = choices
        params.setdefault("model", DEFAULT_CHECKPOINT if DEFAULT_CHECKPOINT in choices else choices[0])
        super().__init__(**params)


APP_THREADS = max(1, (os.cpu_count() or 2) // 2)  # torch threads of the server process: half the cores,
# so two sessions (or a session and a training job) do not oversubscribe them


class FrameTimes:
    """Rolling medians of the engines' milliseconds per frame (the last `window` frames), so one
    slow frame or a busy moment does not swing the status line."""

    def __init__(self, window: int = 25):
        self.window = window
        self.rows: dict[str, list[float]] = {}

    def add(self, metrics: dict) -> dict[str, float]:
        """Record one frame's `surrogate_ms` and `reference_ms`; the current medians (NaN if none)."""
        out = {}
        for key in ("surrogate_ms", "reference_ms"):
            values = self.rows.setdefault(key, [])
            if np.isfinite(metrics.get(key, np.nan)):
                values.append(float(metrics[key]))
                del values[:-self.window]
            out[key] = float(np.median(values)) if values else float("nan")
        return out

    def clear(self) -> None:
        self.rows.clear()


def load_note() -> str:
    """'machine busy: …' when the 1-minute load exceeds the cores (timings then read slow), else ''."""
    cores = os.cpu_count() or 1
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    return f"machine busy (load {load:.1f} on {cores} cores): timings read slow" if load > cores else ""


def gui_wording(message) -> str:
    """A settings message as the app shows it: "--cells must be …" → "cells must be …"."""
    return re.sub(r"--([a-z][a-z0-9-]*)", lambda m: m.group(1).replace("-", " "), str(message))


def may_train(remote_ip: str | None, classroom: bool) -> bool:
    """Whether a browser at `remote_ip` may start training jobs: always on a private server,
    only from this machine (a loopback address) in classroom mode."""
    import ipaddress

    if not classroom:
        return True
    try:
        return remote_ip is not None and ipaddress.ip_address(remote_ip.split("%")[0]).is_loopback
    except ValueError:
        return False


def apply_each(settings: param.Parameterized, values: dict) -> list[str]:
    """Set each value on its own; returns "name=value" for those the settings refuse.

    A shared link's values are applied this way, so one bad value (an unknown model, a path, a
    size out of bounds) leaves the others in force and is reported instead of breaking the page.
    """
    refused = []
    for key, value in values.items():
        try:
            settings.param.update({key: value})
        except Exception:  # param raises ValueError or TypeError; anything else is refused too
            refused.append(f"{key}={value!r}")
    return refused


class LiveRun:
    """One browser session's simulation: play/pause/step/reset on a worker thread.

    `on_frames(frames, generation)` receives each batch of new frames (called from the worker
    thread) with the generation of the session that made them: `reset` starts a new generation,
    so a view can drop a batch that arrives after it was reset; `on_state(message)` receives
    status and warning text.
    """

    def __init__(self, settings: ExplorerSettings, on_frames, on_state=lambda msg: None):
        self.settings = settings
        self.on_frames, self.on_state = on_frames, on_state
        self.device = pick_device()
        self.uploaded: np.ndarray | None = None
        self._lock = threading.RLock()
        self.generation = 0  # incremented by reset(); frames carry the one they were made in
        self._playing = threading.Event()
        self._closed = False
        self._thread: threading.Thread | None = None
        self.session: Session | None = None
        self.recorder = Recorder()
        self.reset()

    # ---------------------------------------------------------------- building
    @property
    def info(self) -> dict:
        return model_info(self.settings.model)

    @property
    def misfit(self) -> float:
        return self.settings.eta_percent / 100 if self.info["conditioned"] else 0.0

    def initial_field(self) -> np.ndarray:
        s, dim = self.settings, self.info["dim"]
        size = min(s.size, MAX_SIDE[dim])
        if s.init_kind == "upload":
            if self.uploaded is None:
                raise ValueError("no field uploaded yet: upload a .npy or an image first")
            return check_field(self.uploaded, "upload", dim=dim)
        if s.init_kind == "perlin":
            return perlin_field(size, dim, mean=s.mean, amplitude=s.amplitude, cells=s.lattice_cells(size),
                                seed=s.seed, octaves=s.octaves)
        return s.initial_field(size, dim)

    def build_session(self) -> Session:
        """A new session from the current settings (the live one, or a separate export run)."""
        info = self.info
        preset = info["preset"]
        surrogate = surrogate_for(self.settings.model, self.misfit, self.device)
        ref = self.settings.reference
        reference = None if ref == "none" else make_solver(ref, preset, misfit=self.misfit)
        return Session(surrogate, self.initial_field(), preset, reference=reference,
                       misfit=self.misfit, training=info["training"], device=self.device)

    def export_attrs(self) -> dict:
        """The settings a movie caption and an exported file carry."""
        s = self.settings
        return {"checkpoint": s.model, "preset": self.info["preset"].name, "mean": s.mean,
                "eta": self.misfit, "amplitude": s.amplitude, "cells": s.cells, "seed": s.seed,
                "size": s.size, "init_kind": s.init_kind, "reference": s.reference,
                "device": str(self.device)}

    def reset(self) -> None:
        """Rebuild the session from the current settings (stops playing, restarts recording)."""
        self.pause()
        with self._lock:
            self.generation += 1
            self.session = self.build_session()
            self.recorder.clear(self.export_attrs())
            record_frame(self.recorder, self.session.current())
        self.on_state(self.describe())

    def set_upload(self, field: np.ndarray) -> None:
        """Validate and keep an uploaded field (raises InputError with the reason): the same
        bounds as the grid selector's, so an upload cannot start a bigger session."""
        dim = self.info["dim"]
        field = check_field(field, "upload", dim=dim)
        if field.shape[0] > MAX_SIDE[dim]:
            raise InputError(f"upload: {field.shape[0]} points per side; the explorer runs at most "
                             f"{MAX_SIDE[dim]} in {dim}D")
        self.uploaded = field

    def describe(self) -> str:
        s = self.session
        parts = [f"device {self.device.type.upper()}", f"comparison grid {'×'.join(map(str, s.comparison_grid))}"]
        if s.reference is not None and self.info["dim"] == 3 and s.reference.name == "spectral":
            parts.append("3D spectral reference: compare statistically, not pointwise")
        dim = self.info["dim"]
        if self.settings.size > MAX_SIDE[dim]:
            parts.append(f"{dim}D runs at most {MAX_SIDE[dim]} points per side here, not {self.settings.size}")
        notes = s.notes() + ([s.stop_reason] if s.stop_reason else [])
        return " · ".join(parts + s.warnings + notes)

    # ---------------------------------------------------------------- control
    @property
    def playing(self) -> bool:
        return self._playing.is_set()

    def play(self) -> None:
        if self._closed or (self.session and self.session.stopped):
            return
        self._playing.set()
        if self._thread is None or not self._thread.is_alive():
            self._thread = compute_thread(self._loop, "crane-viz-live")
            self._thread.start()

    def pause(self) -> None:
        self._playing.clear()

    def step(self) -> list[Frame]:
        """Advance `frames_per_update` frames now (when paused) and report them."""
        with self._lock:
            generation = self.generation
            frames = [f for f in (self.session.step() for _ in range(self.settings.frames_per_update)) if f]
        self._report(frames, generation)
        return frames

    def paint(self, x: float, y: float, radius: float, amount: float) -> None:
        """Add (amount > 0) or remove material in a disc at grid point (x, y), mass-conserving (2D)."""
        with self._lock:
            n = self.session.phi0.shape[0]
            i, j = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
            di = (i - y + n / 2) % n - n / 2
            dj = (j - x + n / 2) % n - n / 2
            disc = (np.hypot(di, dj) <= radius).astype(float) * amount
            self.session.edit(disc)

    def close(self, timeout: float = 10.0) -> bool:
        """Stop the worker for good (the browser tab closed) and wait for it to finish its frame;
        nothing is reported after this. True when the worker has ended within `timeout`."""
        self._closed = True
        self.pause()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)
            return not self._thread.is_alive()
        return True

    def _report(self, frames: list[Frame], generation: int) -> None:
        with self._lock:
            if self._closed or generation != self.generation:  # tab closed, or session reset since
                return
            for frame in frames:
                record_frame(self.recorder, frame)
        if frames:
            self.on_frames(frames, generation)
        if self.session.stopped:
            self.pause()
            self.on_state(self.describe())

    def _loop(self) -> None:
        """The worker: frames until paused, closed or stopped; a failure pauses the run and is
        reported through `on_state` (and the log), never a thread that dies silently."""
        try:
            while self._playing.is_set() and not self._closed:
                self.step()
                if self.session.stopped:
                    break
        except Exception as exc:  # noqa: BLE001  (reported, not swallowed)
            self.pause()
            self.on_state(f"⚠ {unexpected(exc, 'the live run')}")


def record_frame(recorder: Recorder, frame: Frame) -> None:
    """Offer a session frame (fields and metrics) to a recorder."""
    recorder.add(frame.index, frame.time, {"surrogate": frame.surrogate, "reference": frame.reference},
                 frame.metrics)


def record_run(session: Session, frames: int, attrs: dict, *, progress=None,
               cancel: threading.Event | None = None) -> Trajectory:
    """Run a fresh session for `frames` frames and return everything as a trajectory."""
    recorder = Recorder(budget_bytes=2**62, attrs=attrs)
    record_frame(recorder, session.current())
    for frame in session.run(frames):
        if cancel is not None and cancel.is_set():
            raise Cancelled("export cancelled; nothing was written")
        record_frame(recorder, frame)
        if progress:
            progress(frame.index, frames)
    return recorder.trajectory()


def export_root() -> Path:
    """Where the app writes exports: $CRANE_VIZ_EXPORTS or a folder in the system temp dir."""
    return Path(os.environ.get("CRANE_VIZ_EXPORTS") or Path(tempfile.gettempdir()) / "crane_viz_exports")


class ExportJob(BackgroundJob):
    """Exports of one browser session, one at a time, on a worker thread, in its own folder.

    File names are made here (never taken from the browser), so nothing is written outside
    `folder`. `start(...)` reports `on_progress(done, total, stage)` and finally `on_done(path,
    error)` from the worker thread; `cancel()` stops it and nothing is kept.
    """

    def __init__(self, folder: Path | None = None):
        super().__init__()
        self.folder = folder or export_root() / uuid.uuid4().hex[:12]

    def path_for(self, stem: str, fmt: str) -> Path:
        self.folder.mkdir(parents=True, exist_ok=True)
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in stem)
        return self.folder / f"{safe}.{fmt}"

    def write(self, traj: Trajectory, stem: str, fmt: str, **kwargs) -> Path:
        """A quick export now, in the calling thread (snapshots, data, .vti)."""
        return export(traj, self.path_for(stem, fmt), fmt=fmt, **kwargs)

    def start(self, make_trajectory, stem: str, fmt: str, *, on_progress, on_done, **kwargs) -> bool:
        """Begin a movie export in the background; False when one is already running."""
        def work(cancel):
            traj = make_trajectory(lambda d, t: on_progress(d, t, "running"), cancel)
            return export(traj, self.path_for(stem, fmt), fmt=fmt, cancel=cancel,
                          progress=lambda d, t: on_progress(d, t, "encoding"), **kwargs)
        return self.launch(work, on_done, "crane-viz-export")

    def close(self) -> None:
        """The browser tab closed: stop any export and remove this tab's files."""
        self.cancel()
        self.wait(10)
        shutil.rmtree(self.folder, ignore_errors=True)
