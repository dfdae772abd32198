"""Training jobs: `generate` + `train` run as a detached process whose whole state lives on disk.

The app (and `crane-viz jobs`) start, watch, cancel and resume jobs through `Project`; the work
itself is `run_job`, run by `crane-viz train-job FOLDER` in its own process and session, so it
survives a closed browser tab or a restarted server, and calls the same `generate()` and
`train()` as the CLI commands. A project folder (`crane_viz.io.files.project_root()`) holds:

    .lock                     start/resume take it: one job at a time per project
    jobs/<id>/job.json        what to do: TrainJobSettings
    jobs/<id>/status.json     written by the job: state, phase, progress, reason
    jobs/<id>/pid             written by the launcher
    jobs/<id>/output.log      the job's stdout and stderr
    jobs/<id>/data.h5         the generated dataset (unless an existing one was picked)
    jobs/<id>/run/            the training run: log.jsonl, train_state.pt, best/
    jobs/<id>/preview.png     latest validation rollout, reference above surrogate
    checkpoints/<name>/       finished models (on the checkpoint search path)
"""

from __future__ import annotations

import datetime
import fcntl
import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import traceback
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import param
import torch

from ..errors import Cancelled, CraneVizError, DatasetError, InputError
from ..io.files import atomic_path, project_root
from ..nn.checkpoint import CARD, list_checkpoints, load_checkpoint, resolve
from ..nn.model import CRNN, REGISTRY, get_config
from ..physics.presets import PRESETS, get_preset
from ..settings import PAPER_MAX_MISFIT, resolve_device
from .dataset import DatasetSpec, generate, simulate_batch
from .loop import LOG_FILE, STATE_FILE, TrainConfig, read_log, train, unroll

ACTIVE = ("starting", "running")
STATES = (*ACTIVE, "finished", "failed", "cancelled")
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
START_GRACE_S = 60  # a job without a pid file this long after creation never started


class JobBusy(CraneVizError):
    """Another job of the project is running."""


class TrainJobSettings(TrainConfig):
    """A training job: the dataset to generate (or use) and, inherited from `TrainConfig` (one
    declaration), the model and the curriculum."""

    checkpoint_name = param.String("my-model", doc="Name of the checkpoint the job produces "
                                                   "(letters, digits, - _ .).")
    dataset = param.String("", doc="Existing dataset (.h5 from crane-viz generate); empty: generate one "
                                   "with the settings below.")
    preset = param.Selector(default="coherent-2d", objects=list(PRESETS), doc="Physics preset of the generated data.")
    sequences = param.Integer(32, bounds=(2, 100_000), doc="Trajectories to generate (a fifth validates).")
    frames = param.Integer(20, bounds=(3, 10_000), doc="Stored frames per trajectory, the initial one included.")
    size = param.Integer(32, bounds=(8, 256), doc="Grid points per side of the generated data.")
    mean_min = param.Number(0.2, bounds=(0.0, 1.0), inclusive_bounds=(False, False), doc="Smallest ⟨φ⟩ sampled.")
    mean_max = param.Number(0.8, bounds=(0.0, 1.0), inclusive_bounds=(False, False), doc="Largest ⟨φ⟩ sampled.")
    eta_min_percent = param.Number(0.0, bounds=(0.0, 5.0), doc="Smallest misfit η sampled, in percent.")
    eta_max_percent = param.Number(1.2, bounds=(0.0, 5.0), softbounds=(0.0, 100 * PAPER_MAX_MISFIT),
                                   doc="Largest misfit η sampled, in percent (0 for a model without the η channel).")
    data_seed = param.Integer(0, bounds=(0, 2**31 - 1), doc="Base seed of the generated cases.")
    init = param.String("", doc="Checkpoint to fine-tune (its architecture replaces `model`); empty: start afresh.")
    preview_every = param.Integer(2, bounds=(1, 10_000), doc="Epochs between validation rollout previews.")
    threads = param.Integer(max(1, (os.cpu_count() or 2) - 1), bounds=(1, 256),
                            doc="CPU threads of the job (leave one core to the app).")

    def check(self) -> None:
        """Cross-setting checks; InputError naming the setting."""
        if not NAME.match(self.checkpoint_name):
            raise InputError(f"--checkpoint-name {self.checkpoint_name!r}: use 1–64 letters, digits, "
                             "'-', '_' or '.'")
        if self.mean_min > self.mean_max:
            raise InputError(f"--mean-min ({self.mean_min}) must not exceed --mean-max ({self.mean_max})")
        if self.eta_min_percent > self.eta_max_percent:
            raise InputError(f"--eta-min-percent ({self.eta_min_percent}) must not exceed "
                             f"--eta-max-percent ({self.eta_max_percent})")
        if self.dataset and not Path(self.dataset).is_file():
            raise InputError(f"--dataset {self.dataset}: no such file")
        if self.init:
            resolve(self.init)
        cfg, dim = get_config(self.architecture()), self.data_dim()
        if cfg.dim != dim:
            raise InputError(f"model {self.architecture()!r} is {cfg.dim}D but the data are {dim}D")
        if not cfg.conditions and self.eta_max_percent > 0 and not self.dataset:
            raise InputError(f"model {self.architecture()!r} has no η channel: set --eta-max-percent to 0")
        size = self.data_shape()[2]
        if size % self.grid_scale:
            raise InputError(f"the grid size {size} must be a multiple of --grid-scale {self.grid_scale}")

    def architecture(self) -> str:
        """The registry name trained: the fine-tuned checkpoint's when `init` is set."""
        if not self.init:
            return self.model
        cfg = load_checkpoint(self.init).model_config
        for name, registered in REGISTRY.items():
            if registered == cfg:
                return name
        raise InputError(f"--init {self.init}: its architecture is not in the model registry")

    def data_dim(self) -> int:
        return self.data_shape()[3]

    def data_shape(self) -> tuple[int, int, int, int]:
        """(sequences, frames, size, dim) of the chosen dataset, or of the one to generate."""
        if not self.dataset:
            return self.sequences, self.frames, self.size, get_preset(self.preset).dim
        import h5py

        try:
            with h5py.File(self.dataset, "r") as f:
                dim = get_preset(str(f.attrs["preset"])).dim
                shape = f["phi"].shape
        except (OSError, KeyError, ValueError):
            raise DatasetError(f"--dataset {self.dataset}: not a crane_viz dataset (an HDF5 file "
                               "from crane-viz generate)") from None
        return shape[0], shape[1], shape[2], dim

    def dataset_spec(self) -> DatasetSpec:
        return DatasetSpec(preset=self.preset, sequences=self.sequences, frames=self.frames, size=self.size,
                           batch=min(16, self.sequences), seed=self.data_seed,
                           mean_range=(self.mean_min, self.mean_max),
                           misfit_range=(self.eta_min_percent / 100, self.eta_max_percent / 100))

    def train_config(self) -> TrainConfig:
        """The training part of these settings, with the architecture and checkpoint resolved."""
        values = {k: getattr(self, k) for k in TrainConfig.param if k != "name"}
        return TrainConfig(**{**values, "model": self.architecture(),
                              "init": str(resolve(self.init)) if self.init else ""})

    def describe(self) -> dict:
        return {k: v for k, v in self.param.values().items() if k != "name"}


# ---------------------------------------------------------------- cost estimate (measured here)

def estimate(settings: TrainJobSettings, repeats: int = 3) -> dict:
    """Dataset size and time, from solver and training steps timed on this machine now.

    Each cost is the fastest of `repeats` timed steps (after a warm-up), so a busy moment does not
    inflate it, timed with the job's thread count. Returns bytes, generate_s (0 for an existing
    dataset), epoch_s and total_s.
    """
    settings.check()
    with torch_threads(settings.threads):
        return _estimate(settings, repeats)


@contextmanager
def torch_threads(n: int):
    """Run the block with n intra-op threads (process-wide), then restore the previous count."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


PROBE_SIDE = {2: 64, 3: 32}  # the largest grid an estimate times; beyond it the cost is scaled


def _estimate(settings: TrainJobSettings, repeats: int) -> dict:
    """Timed at min(grid, PROBE_SIDE) points per side and scaled by the number of grid points, so
    an estimate costs seconds and megabytes whatever grid it is asked about."""
    device = resolve_device("auto")
    sequences, frames, n, dim = settings.data_shape()
    probe_n = min(n, PROBE_SIDE[dim])
    scale = (n / probe_n) ** dim
    generate_s = 0.0
    if settings.dataset:
        bytes_ = Path(settings.dataset).stat().st_size
    else:
        preset = get_preset(settings.preset)
        bytes_ = sequences * frames * n**dim * 4
        spec = settings.dataset_spec()
        cases = [{"mean": 0.5, "eta": settings.eta_max_percent / 100, "amplitude": 0.1, "cells": min(4, probe_n),
                  "seed": i} for i in range(spec.batch)]
        probe = DatasetSpec(**{**spec.__dict__, "frames": 2, "size": probe_n})
        per_frame = scale * fastest(lambda: simulate_batch(cases, probe, preset.solver, device), repeats)
        generate_s = math.ceil(spec.sequences / spec.batch) * (frames - 1) * per_frame
    cfg = get_config(settings.architecture())
    grid = max(probe_n // settings.grid_scale, 4)
    batch = min(settings.batch, sequences)
    model = CRNN(cfg).to(device)
    seq = torch.rand(batch, 2, *(grid,) * cfg.dim, device=device)
    cond = torch.zeros(batch, 1, device=device) if cfg.conditions else None
    per_step = scale * fastest(lambda: unroll(model, seq, 1, cond, 0.0, None).mean().backward(), repeats)
    length = frames if settings.window <= 1 else min(settings.window, frames)
    n_val = max(1, round(sequences * 0.2))
    train_batches = math.ceil((sequences - n_val) / batch)
    epoch_s = train_batches * (length - 1) * per_step + math.ceil(n_val / batch) * (frames - 1) * per_step / 3
    return {"bytes": int(bytes_), "generate_s": generate_s, "epoch_s": epoch_s,
            "total_s": generate_s + settings.epochs * epoch_s, "threads": torch.get_num_threads(),
            "timed_side": probe_n, "side": n}


def fastest(work, repeats: int) -> float:
    """Seconds of the fastest of `repeats` calls of `work`, after one warm-up call."""
    work()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        work()
        times.append(time.perf_counter() - t0)
    return min(times)


def describe_estimate(est: dict) -> str:
    scaled = (f", at {est['timed_side']} points per side and scaled to {est['side']}"
              if est.get("timed_side", est.get("side")) != est.get("side") else "")
    return (f"dataset {est['bytes'] / 2**20:.1f} MB · generation ≈ {duration(est['generate_s'])} · "
            f"≈ {duration(est['epoch_s'])} per epoch · total ≈ {duration(est['total_s'])} "
            f"(timed here with {est['threads']} thread{'s' if est['threads'] > 1 else ''}{scaled})")


def duration(seconds: float) -> str:
    """1.2 s, 45 s, 12 min, 3.4 h."""
    if not math.isfinite(seconds):
        return "?"
    if seconds < 10:
        return f"{seconds:.1f} s"
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


# ---------------------------------------------------------------- job folders and their state

def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def write_json(path: Path, data: dict) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=1) + "\n")


def read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


_CHILDREN: dict[int, subprocess.Popen] = {}  # processes this one launched, polled to reap them


def _alive(pid: int, folder: Path) -> tuple[bool, str]:
    """Whether the job process `pid` of `folder` still runs; else how it ended, when known."""
    proc = _CHILDREN.get(pid)
    if proc is not None:
        code = proc.poll()
        if code is None:
            return True, ""
        return False, f"exit status {code}" if code >= 0 else f"killed by signal {-code}"
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        if not Path("/proc/self").exists():  # no procfs: a signal-0 probe is the best we have
            try:
                os.kill(pid, 0)
                return True, ""
            except OSError:
                return False, ""
        return False, ""
    zombie = stat.rsplit(")", 1)[-1].split()[0] == "Z"
    return (str(folder.resolve()) in cmdline and not zombie), ""


@dataclass
class JobStatus:
    """A job as a reader sees it: state, settings, progress fields and, when it failed, why."""

    id: str
    folder: Path
    state: str
    settings: dict
    info: dict = field(default_factory=dict)  # the job's status.json
    reason: str = ""

    @property
    def active(self) -> bool:
        return self.state in ACTIVE

    @property
    def resumable(self) -> bool:
        return self.state in ("cancelled", "failed")

    def summary(self) -> str:
        """One line for lists: name, state, epoch."""
        i = self.info
        epoch = f", epoch {i['epoch']}/{i['epochs']}" if "epoch" in i else ""
        return f"{self.settings.get('checkpoint_name', self.id)} — {self.state}{epoch} ({self.id})"


class Job:
    """One job folder; every read goes to disk, so any process sees the same job."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self.id = self.folder.name

    @property
    def run_dir(self) -> Path:
        return self.folder / "run"

    @property
    def preview(self) -> Path:
        return self.folder / "preview.png"

    @property
    def output(self) -> Path:
        return self.folder / "output.log"

    @property
    def name(self) -> str:
        """The checkpoint name the job produces."""
        return read_json(self.folder / "job.json").get("checkpoint_name", self.id)

    def settings(self) -> TrainJobSettings:
        values = read_json(self.folder / "job.json")
        return TrainJobSettings(**values)

    def pid(self) -> int | None:
        try:
            return int((self.folder / "pid").read_text())
        except (OSError, ValueError):
            return None

    def log(self) -> list[dict]:
        """Per-epoch records of the training run (log.jsonl)."""
        return read_log(self.run_dir / LOG_FILE)

    def tail(self, lines: int = 15) -> str:
        try:
            text = self.output.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.rstrip().splitlines()[-lines:])

    def status(self) -> JobStatus:
        """The state on disk, corrected when the process is gone without saying so (a crash)."""
        info = read_json(self.folder / "status.json")
        settings = read_json(self.folder / "job.json")
        state = info.get("state", "starting")
        reason = info.get("reason", "")
        if state in ACTIVE:
            pid = self.pid()
            if pid is None:
                started = info.get("created_unix", self.folder.stat().st_mtime)
                if time.time() - started > START_GRACE_S:
                    state, reason = "failed", "the job process never started"
            else:
                alive, how = _alive(pid, self.folder)
                if not alive and how == f"killed by signal {int(signal.SIGTERM)}":
                    state, reason = "cancelled", "stopped before it could report (SIGTERM)"
                elif not alive:
                    state = "failed"
                    reason = (f"the job process ended without reporting ({how or 'killed or crashed'}); "
                              f"last output:\n{self.tail()}")
        return JobStatus(self.id, self.folder, state, settings, info, reason)


class Reporter:
    """The job process's side of status.json: merge fields and write atomically (throttled)."""

    def __init__(self, folder: Path):
        self.path = Path(folder) / "status.json"
        self.data = read_json(self.path)
        self._last = 0.0

    def update(self, force: bool = True, **fields) -> None:
        self.data.update(fields, updated=_now())
        if force or time.monotonic() - self._last > 0.5:
            write_json(self.path, self.data)
            self._last = time.monotonic()


class Project:
    """The jobs of one project folder: list, start, cancel, resume (one running job at a time)."""

    def __init__(self, root: str | Path | None = None):
        self.root = Path(root) if root else project_root()
        self.jobs_dir = self.root / "jobs"
        self.checkpoints = self.root / "checkpoints"

    @contextmanager
    def _locked(self):
        """Serialises start/resume across threads and processes (flock on .lock)."""
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / ".lock", "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def jobs(self) -> list[Job]:
        """All jobs, newest first."""
        if not self.jobs_dir.is_dir():
            return []
        return [Job(p) for p in sorted(self.jobs_dir.iterdir(), reverse=True) if (p / "job.json").is_file()]

    def job(self, job_id: str) -> Job:
        folder = self.jobs_dir / job_id
        if not (folder / "job.json").is_file():
            raise InputError(f"no training job {job_id!r} in {self.jobs_dir}")
        return Job(folder)

    def active(self) -> JobStatus | None:
        for job in self.jobs():
            status = job.status()
            if status.active:
                return status
        return None

    def _refuse_if_busy(self) -> None:
        running = self.active()
        if running is not None:
            raise JobBusy(f"training job {running.settings.get('checkpoint_name')!r} ({running.id}) is "
                          f"{running.state}; "
                          "cancel it or wait for it to finish — one job per project at a time")

    def start(self, settings: TrainJobSettings) -> Job:
        """Create a job folder and launch its process; JobBusy while another job runs."""
        settings.check()
        with self._locked():
            self._refuse_if_busy()
            name = settings.checkpoint_name
            if name in list_checkpoints() or (self.checkpoints / name).exists():
                raise InputError(f"--checkpoint-name {name!r}: a checkpoint of that name exists; pick another")
            if any(j.name == name for j in self.jobs()):
                raise InputError(f"--checkpoint-name {name!r}: an earlier job of this project has that "
                                 "name; resume it or pick another")
            stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
            folder = self.jobs_dir / f"{stamp}-{name}"
            folder.mkdir(parents=True)
            write_json(folder / "job.json", settings.describe())
            write_json(folder / "status.json", {"state": "starting", "created": _now(),
                                                "created_unix": time.time(), "history": []})
            self._launch(folder, resume=False)
        return Job(folder)

    def resume(self, job_id: str) -> Job:
        """Relaunch a cancelled or failed job; training continues from its last finished epoch."""
        job = self.job(job_id)
        with self._locked():
            self._refuse_if_busy()
            status = job.status()
            if not status.resumable:
                raise InputError(f"job {job_id} is {status.state}; only cancelled or failed jobs resume")
            Reporter(job.folder).update(state="starting", reason="", created_unix=time.time())
            self._launch(job.folder, resume=True)
        return job

    def cancel(self, job_id: str) -> bool:
        """Ask the job to stop (SIGTERM): it finishes the current batch and keeps the last epoch."""
        job = self.job(job_id)
        pid = job.pid()
        if pid is None or not job.status().active:
            return False
        try:
            os.killpg(pid, signal.SIGTERM)
        except ProcessLookupError:
            return False
        return True

    def wait(self, job_id: str, timeout: float = 60.0, poll: float = 0.1) -> JobStatus:
        """Block until the job is no longer active (or the timeout passes); its status."""
        end = time.monotonic() + timeout
        status = self.job(job_id).status()
        while status.active and time.monotonic() < end:
            time.sleep(poll)
            status = self.job(job_id).status()
        return status

    def _launch(self, folder: Path, resume: bool) -> None:
        cmd = [sys.executable, "-m", "crane_viz", "train-job", str(folder.resolve())]
        if resume:
            cmd.append("--resume")
        env = {**os.environ, "CRANE_VIZ_PROJECT": str(self.root.resolve()), "PYTHONUNBUFFERED": "1"}
        with open(folder / "output.log", "a") as out:
            out.write(f"\n=== {_now()} {'resume' if resume else 'start'}: {' '.join(cmd)}\n")
            out.flush()
            proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    env=env, start_new_session=True)
        _CHILDREN[proc.pid] = proc
        # reap it when it ends, whether or not anyone polls its status (no zombie processes)
        threading.Thread(target=proc.wait, name=f"crane-viz-reap-{proc.pid}", daemon=True).start()
        (folder / "pid").write_text(str(proc.pid))


# ---------------------------------------------------------------- the job process

def run_job(folder: str | Path, resume: bool = False) -> int:
    """The job process: generate the dataset if needed, train, publish the checkpoint.

    Returns the process exit status (0 finished, 130 cancelled, 1 failed); every outcome is
    written to status.json before returning.
    """
    job = Job(Path(folder))
    report = Reporter(job.folder)
    stop = threading.Event()
    handlers = {s: signal.signal(s, lambda *_: stop.set()) for s in (signal.SIGTERM, signal.SIGINT)}
    history = report.data.get("history", [])
    report.update(state="running", phase="starting", pid=os.getpid(), reason="",
                  history=[*history, {"started": _now(), "resume": resume}])
    try:
        settings = job.settings()
        torch.set_num_threads(settings.threads)
        data = Path(settings.dataset) if settings.dataset else job.folder / "data.h5"
        if not data.is_file():
            _generate(settings, data, report, stop)
        if stop.is_set():
            raise Cancelled("cancelled; resume continues from the last finished epoch")
        record = _train(job, settings, data, report, resume)
        if record.get("interrupted") or stop.is_set():
            raise Cancelled("cancelled; resume continues from the last finished epoch")
        report.update(phase="publishing")
        target = publish(job, settings, Project(job.folder.parents[1]).checkpoints)
        report.update(state="finished", phase="done", checkpoint=str(target), finished=_now())
        return 0
    except Cancelled:
        report.update(state="cancelled", phase="stopped", finished=_now())
        print("cancelled; resume continues from the last finished epoch", flush=True)
        return 130
    except Exception as exc:  # the job must report every failure before it exits
        traceback.print_exc()
        message = str(exc) if isinstance(exc, CraneVizError) else f"{type(exc).__name__}: {exc}"
        report.update(state="failed", phase="stopped", reason=message, finished=_now())
        return 1
    finally:
        for sig, handler in handlers.items():
            signal.signal(sig, handler)


def _generate(settings: TrainJobSettings, data: Path, report: Reporter, stop: threading.Event) -> None:
    spec = settings.dataset_spec()
    report.update(phase="generating", generated=0, sequences=spec.sequences)
    started = time.monotonic()

    def progress(done, total):
        elapsed = time.monotonic() - started
        report.update(force=done == total, generated=done, sequences=total,
                      eta_s=elapsed / done * (total - done) if done else None)
        if stop.is_set():
            raise Cancelled("cancelled; resume continues from the last finished epoch")
    generate(spec, data, progress=progress, device=resolve_device("auto"))
    report.update(generate_s=time.monotonic() - started)
    print(f"dataset {data}: {spec.sequences} sequences × {spec.frames} frames of {spec.size}", flush=True)


def _train(job: Job, settings: TrainJobSettings, data: Path, report: Reporter, resume: bool) -> dict:
    cfg = settings.train_config()
    continuing = resume and (job.run_dir / STATE_FILE).is_file()
    done = len(job.log()) if continuing else 0
    report.update(phase="training", epoch=done, epochs=cfg.epochs)
    started, first = time.monotonic(), done
    epoch_start = [time.monotonic()]

    def remaining(epoch_fraction: float) -> float | None:
        elapsed, progressed = time.monotonic() - started, epoch_fraction - first
        return elapsed / progressed * (cfg.epochs - epoch_fraction) if progressed > 0 else None

    def on_batch(i, n):
        epoch = report.data.get("epoch", 0)
        report.update(force=False, batch=i, batches=n, eta_s=remaining(epoch + i / n))

    def on_epoch(record):
        epoch_start[0] = time.monotonic()
        report.update(epoch=record["epoch"], horizon=record["horizon"], train_loss=record["train_loss"],
                      val_loss=record["val_loss"], batch=0, eta_s=remaining(record["epoch"]))
        print(f"epoch {record['epoch']}/{cfg.epochs}: train {record['train_loss']:.3e} "
              f"val {record['val_loss']:.3e} horizon {record['horizon']}", flush=True)

    def on_preview(epoch, truth, pred):
        write_preview(job.preview, epoch, truth, pred)
        report.update(preview_epoch=epoch)

    return train(data, job.run_dir, cfg, name=settings.checkpoint_name, resume=continuing,
                 device=resolve_device("auto"), on_epoch=on_epoch, on_batch=on_batch,
                 on_preview=on_preview, preview_every=settings.preview_every)


def write_preview(path: Path, epoch: int, truth: torch.Tensor, pred: torch.Tensor, columns: int = 5) -> None:
    """preview.png: reference frames above the surrogate's free rollout, at `columns` times.

    The colour scale spans the reference frames shown (early frames deviate little from ⟨φ⟩);
    the sheet's corner states it.
    """
    import imageio.v3 as iio

    from ..io.render import comparison_sheet

    frames = truth.shape[0]
    picks = sorted({round(k * (frames - 1) / (columns - 1)) for k in range(columns)} - {0})
    titles = [f"frame {t}" for t in picks]
    shown = truth[picks]
    lo, hi = float(shown.min()), float(shown.max())
    rows = [("reference", [truth[t].numpy() for t in picks]),
            (f"epoch {epoch}", [pred[t - 1].numpy() for t in picks])]
    sheet = comparison_sheet(rows, titles, vmin=lo, vmax=max(hi, lo + 1e-3), corner=f"φ {lo:.2f}–{hi:.2f}")
    with atomic_path(path) as tmp:
        iio.imwrite(tmp, sheet, extension=".png")


def publish(job: Job, settings: TrainJobSettings, checkpoints: Path) -> Path:
    """Copy the run's best checkpoint to <project>/checkpoints/<name> with a training model card."""
    from ..analysis.modelcard import render_training_card

    target = checkpoints / settings.checkpoint_name
    if target.exists():
        raise InputError(f"{target} exists; the job's checkpoint stays in {job.run_dir / 'best'}")
    checkpoints.mkdir(parents=True, exist_ok=True)
    tmp = checkpoints / f".{settings.checkpoint_name}.publishing"
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(job.run_dir / "best", tmp)
    card = render_training_card(load_checkpoint(tmp), job.log(), settings.describe(), job.folder)
    (tmp / CARD).write_text(card)
    os.replace(tmp, target)
    return target
