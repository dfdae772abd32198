"""Training jobs: `generate` + `train` run as a detached process whose whole state lives on disk.

The app (and `crane-viz jobs`) start, watch, cancel and resume jobs through `Project`; the work
itself is `worker.run_job`, run by `crane-viz train-job FOLDER` in its own process and session, so it
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
import os
import signal
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import InputError
from ..io.files import atomic_path, project_root
from ..nn.checkpoint import list_checkpoints
from .job_settings import JobBusy, TrainJobSettings
from .loop import LOG_FILE, read_log

ACTIVE = ("starting", "running")  # job states with a process (or one about to start)
START_GRACE_S = 60  # a job without a pid file this long after creation never started


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
        """Relaunch a cancelled or failed job; training continues where it stopped (a failed job:
        from its last finished epoch)."""
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
