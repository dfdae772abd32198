"""The job process (`crane-viz train-job FOLDER`): generate the dataset if needed, train, publish
the checkpoint; every outcome lands in status.json."""

from __future__ import annotations

import os
import shutil
import signal
import threading
import time
import traceback
from pathlib import Path

import torch

from ..errors import Cancelled, CraneVizError, InputError
from ..io.files import atomic_path
from ..nn.checkpoint import CARD, load_checkpoint
from ..settings import resolve_device
from .dataset import generate
from .job_settings import TrainJobSettings
from .jobs import Job, Project, Reporter, _now
from .loop import STATE_FILE, train


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
            raise Cancelled("cancelled; resume continues where it stopped")
        record = _train(job, settings, data, report, resume)
        if record.get("interrupted") or stop.is_set():
            raise Cancelled("cancelled; resume continues where it stopped")
        report.update(phase="publishing")
        target = publish(job, settings, Project(job.folder.parents[1]).checkpoints)
        report.update(state="finished", phase="done", checkpoint=str(target), finished=_now())
        return 0
    except Cancelled:
        report.update(state="cancelled", phase="stopped", finished=_now())
        print("cancelled; resume continues where it stopped", flush=True)
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
            raise Cancelled("cancelled; resume continues where it stopped")
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
