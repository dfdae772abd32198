"""Phase-diagram sweeps: many (⟨φ⟩, η) cases, batched, classified as separated or homogeneous.

The 2D paper's test: run each case to the horizon and call it phase-separated when
max φ − min φ > 0.05; with a reference solver on the same points, report the agreement. Points are
integrated `batch` at a time in one tensor (η one value per batch element). Results go to a CSV
written as `<out>.part` while running (rows appended per finished chunk, so an interrupted sweep
resumes where it stopped) and renamed when complete, plus `<out stem>.json` (settings, agreement,
timings) and a PNG figure. `scheduler="local"` or an address runs the chunks on a Dask cluster.
"""

from __future__ import annotations

import csv
import json
import math
import os
import threading
import time
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from ..engines import make_solver
from ..engines.base import advance, diverged
from ..engines.surrogate import SurrogateEngine
from ..errors import Cancelled, InputError
from ..io.files import atomic_path, provenance
from ..live.background import BackgroundJob
from ..nn.checkpoint import load_checkpoint
from ..physics.initial import as_batch, perlin_field
from ..settings import SweepSettings
from . import metrics

BASE = ["index", "mean", "eta", "amplitude", "seed"]
# Surrogate cases per pass on CPU: at 128² one step of a batch of 8–20 cost 1.4–1.7× more per
# case than a batch of 1–2 (activations no longer fit in cache; 1 thread, coherent-2d), so a
# chunk runs two at a time there; a GPU takes the whole chunk at once.
CPU_PASS = 2
SURROGATE = ["surrogate_separated", "surrogate_spread"]
REFERENCE = ["reference_separated", "reference_spread"]


@dataclass(frozen=True)
class Point:
    """One case of a sweep. `field` is a user-supplied initial field (None: Perlin from `seed`)."""

    index: int
    mean: float
    eta: float
    amplitude: float
    seed: int
    field: np.ndarray | None = None

    def row(self) -> dict:
        return {"index": self.index, "mean": self.mean, "eta": self.eta, "amplitude": self.amplitude,
                "seed": self.seed}


def sample_points(s: SweepSettings) -> list[Point]:
    """Random (uniform) or grid points in [mean_min, mean_max] × [0, η_max]; noise seed = seed + i."""
    s.check()
    eta_max = s.eta_max_percent / 100
    if s.layout == "grid":
        side = max(1, round(math.sqrt(s.points)))
        means = np.repeat(np.linspace(s.mean_min, s.mean_max, side), side)
        etas = np.tile(np.linspace(0.0, eta_max, side), side)
    else:
        rng = np.random.default_rng([s.seed, 4243])
        means = rng.uniform(s.mean_min, s.mean_max, s.points)
        etas = rng.uniform(0.0, eta_max, s.points)
    return [Point(i, float(m), float(e), s.amplitude, s.seed + i) for i, (m, e) in enumerate(zip(means, etas))]


def points_from_files(fields_path: str | Path, params_path: str | Path) -> list[Point]:
    """User cases: B × N × N initial fields (.npy) and a CSV with columns `mean, eta` per field.

    The CSV's ⟨φ⟩ must match each field's own mean (the flow conserves it), to 1e-3.
    """
    try:
        fields = np.load(fields_path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        raise InputError(f"{fields_path}: not a readable .npy array of numbers ({exc})") from None
    if fields.dtype.kind not in "fiu":
        raise InputError(f"{fields_path}: holds {fields.dtype} values, not numbers")
    if fields.ndim != 3 or fields.shape[1] != fields.shape[2]:
        raise InputError(f"{fields_path}: need B × N × N fields, got shape {fields.shape}")
    if not np.isfinite(fields).all():
        raise InputError(f"{fields_path}: fields contain NaN or infinity")
    try:
        with open(params_path, newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise InputError(f"{params_path}: not a readable CSV text file ({exc.__class__.__name__})") from None
    if not rows or not {"mean", "eta"} <= set(rows[0]):
        raise InputError(f"{params_path}: need a header with columns 'mean' and 'eta'")
    if len(rows) != len(fields):
        raise InputError(f"{params_path}: {len(rows)} rows for {len(fields)} fields")
    points = []
    for i, (phi, row) in enumerate(zip(fields, rows)):
        try:
            mean, eta = float(row["mean"]), float(row["eta"])
        except (TypeError, ValueError):
            raise InputError(f"{params_path}: row {i + 1} needs numbers in both 'mean' and 'eta', "
                             f"got {row.get('mean')!r}, {row.get('eta')!r}") from None
        if abs(phi.mean() - mean) > 1e-3:
            raise InputError(f"{params_path}: row {i + 1} gives mean {mean} but field {i} has mean "
                             f"{phi.mean():.4f}")
        if not 0.0 <= eta <= 0.05:
            raise InputError(f"{params_path}: row {i + 1}: eta must be in [0, 0.05] (a fraction), not {eta}")
        points.append(Point(i, mean, eta, float(np.abs(phi - mean).max()), -1, phi.astype(np.float64)))
    return points


@lru_cache(maxsize=4)
def _checkpoint(name: str):
    return load_checkpoint(name)


def initial_fields(points: list[Point], s: SweepSettings) -> torch.Tensor:
    """(B, N, N) initial fields of a chunk: the user's, or Perlin noise with each point's seed."""
    fields = [p.field if p.field is not None else
              perlin_field(s.size, 2, mean=p.mean, amplitude=p.amplitude, cells=min(s.cells, s.size),
                           seed=p.seed) for p in points]
    return as_batch(fields)


def horizon_frames(horizon: float, frame_time: float) -> int:
    """Frames of τ = `frame_time` that reach `horizon` τ; a coarse-step model must land on it."""
    frames = round(horizon / frame_time)
    if frames < 1 or abs(frames * frame_time - horizon) > 1e-6 * horizon:
        raise InputError(f"--horizon {horizon:g} τ is not a whole number of this model's {frame_time:g}-τ "
                         f"frames; choose a multiple of {frame_time:g}")
    return frames


def classify_chunk(points: list[Point], s: SweepSettings, checkpoint: str, device="cpu",
                   thumbnails: bool = False) -> tuple[list[dict], dict]:
    """Rows (with spreads and outcomes) of a chunk of points, and the seconds each engine took.

    `thumbnails` adds a small PNG data URL of each surrogate final field under "thumbnail".
    """
    ckpt = _checkpoint(checkpoint)
    frames = horizon_frames(s.horizon, ckpt.frame_time)
    phi0 = initial_fields(points, s).to(device)
    eta = torch.tensor([p.eta for p in points], dtype=torch.float32).to(device)
    seconds = {}
    # cases per pass: on CPU the surrogate takes CPU_PASS at a time, everything else the whole chunk
    engines = {"surrogate": lambda i, j: SurrogateEngine(ckpt, misfit=eta[i:j], device=device)}
    if s.reference != "none":
        engines["reference"] = lambda i, j: make_solver(s.reference, ckpt.preset, misfit=eta[i:j])
    sizes = {"surrogate": CPU_PASS if phi0.device.type == "cpu" else len(points), "reference": len(points)}
    rows = [p.row() for p in points]
    for label, engine in engines.items():
        size = sizes[label]
        t0 = time.perf_counter()
        with torch.inference_mode():
            final = torch.cat([advance(engine(i, i + size), phi0[i:i + size], frames).phi
                               for i in range(0, len(points), size)])
        seconds[label] = time.perf_counter() - t0
        spread = metrics.spread(final, 2).cpu().numpy().reshape(-1)
        bad = diverged(final).cpu().numpy()
        for row, value, blown in zip(rows, spread, bad):
            row[f"{label}_spread"] = float("nan") if blown else float(value)
            row[f"{label}_separated"] = int(not blown and value > s.threshold)
        if thumbnails and label == "surrogate":
            for row, phi in zip(rows, final.cpu().numpy()):
                row["thumbnail"] = thumbnail(phi)
    return rows, seconds


def outcome(row: dict, label: str = "surrogate") -> str:
    """"separated", "homogeneous" or "diverged" (the engine blew up: no outcome to read)."""
    if not np.isfinite(row[f"{label}_spread"]):
        return "diverged"
    return "separated" if row[f"{label}_separated"] else "homogeneous"


def thumbnail(phi: np.ndarray, side: int = 64) -> str:
    """A PNG data URL of a 2D field (viridis on [0, 1]), at most `side` pixels per side."""
    import base64
    import io

    import imageio.v3 as iio

    from ..io.render import colorize

    step = max(1, phi.shape[0] // side)
    buf = io.BytesIO()
    iio.imwrite(buf, colorize(np.nan_to_num(phi[::step, ::step].T[::-1])), extension=".png")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def columns(s: SweepSettings) -> list[str]:
    return BASE + SURROGATE + (REFERENCE if s.reference != "none" else [])


def _read_rows(path: Path) -> list[dict]:
    """Finished rows of an interrupted sweep; a torn last row (the write that was cut off) is
    dropped and recomputed, a damaged row before it is an InputError naming the file."""
    with open(path, newline="", encoding="utf-8", errors="replace") as f:
        raw = list(csv.DictReader(f))
    rows = []
    for i, row in enumerate(raw):
        try:
            rows.append({k: (int(v) if k in ("index", "seed") or k.endswith("_separated") else float(v))
                         for k, v in row.items()})
        except (TypeError, ValueError):
            if i == len(raw) - 1:
                break
            raise InputError(f"{path}: row {i + 2} is damaged; delete the file to start the sweep again") from None
    return rows


def check_scheduler(address: str, timeout: float = 5.0) -> None:
    """A Dask scheduler answers at `address` (tcp://host:port) within `timeout` seconds."""
    import socket
    from urllib.parse import urlparse

    url = urlparse(address if "://" in address else f"tcp://{address}")
    try:
        with socket.create_connection((url.hostname, url.port or 8786), timeout=timeout):
            pass
    except (OSError, ValueError) as exc:
        raise InputError(f"--scheduler {address}: no Dask scheduler answered within {timeout:g} s "
                         f"({exc.__class__.__name__})") from None


def _settings_key(s: SweepSettings, checkpoint: str, n_points: int, user: bool) -> dict:
    return {**s.describe(), "checkpoint": checkpoint, "n_points": n_points, "user_fields": user}


def run_sweep(s: SweepSettings, checkpoint: str, out: str | Path, *, points: list[Point] | None = None,
              overwrite: bool = False, scheduler: str | None = None, device="cpu", thumbnails: bool = False,
              progress: Callable[[int, int], None] | None = None,
              on_rows: Callable[[list[dict]], None] | None = None,
              cancel: threading.Event | None = None) -> dict:
    """Run (or resume) a sweep into `out` (.csv); returns the summary also saved as JSON.

    `points` defaults to `sample_points(s)`. `on_rows` receives each finished chunk's rows as they
    complete; `cancel` stops after the current chunk (finished rows stay in `<out>.part`).
    """
    out = Path(out)
    part, meta = out.with_name(out.name + ".part"), out.with_name(out.name + ".part.json")
    if out.exists() and not overwrite:
        raise InputError(f"{out} exists; pass --overwrite to replace it")
    if _checkpoint(checkpoint).dim != 2:
        raise InputError(f"--checkpoint {checkpoint} is a {_checkpoint(checkpoint).dim}D model; phase "
                         "diagrams classify 2D (⟨φ⟩, η) cases, so use a 2D checkpoint")
    horizon_frames(s.horizon, _checkpoint(checkpoint).frame_time)  # a clear message before any work
    if scheduler not in (None, "local"):
        check_scheduler(scheduler)
    user = points is not None
    points = sample_points(s) if points is None else points
    s.check()
    key = _settings_key(s, checkpoint, len(points), user)
    done_rows = _resume(part, meta, key)
    finished = {r["index"] for r in done_rows}
    todo = [p for p in points if p.index not in finished]
    chunks = [todo[i:i + s.batch] for i in range(0, len(todo), s.batch)]
    seconds = {"surrogate": 0.0, "reference": 0.0}
    if progress:
        progress(len(done_rows), len(points))
    if done_rows and on_rows:
        on_rows(done_rows)
    with open(part, "a", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns(s), extrasaction="ignore")
        if not done_rows:
            writer.writeheader()
        for rows, took in _chunks(chunks, s, checkpoint, device, scheduler, cancel, thumbnails):
            writer.writerows(rows)
            f.flush()
            os.fsync(f.fileno())
            done_rows += rows
            for k, v in took.items():
                seconds[k] += v
            if on_rows:
                on_rows(rows)
            if progress:
                progress(len(done_rows), len(points))
    done_rows.sort(key=lambda r: r["index"])
    summary = summarise(done_rows, s, checkpoint, seconds, computed=sum(len(c) for c in chunks))
    with atomic_path(out) as tmp, open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns(s), extrasaction="ignore")
        writer.writeheader()
        writer.writerows(done_rows)
    with atomic_path(out.with_suffix(".json")) as tmp:
        tmp.write_text(json.dumps(summary, indent=2))
    figure(done_rows, s, summary, out.with_suffix(".png"), _checkpoint(checkpoint).preset)
    part.unlink()
    meta.unlink(missing_ok=True)
    return summary


def _resume(part: Path, meta: Path, key: dict) -> list[dict]:
    """Rows already in an interrupted sweep's .part file (same settings only), else start it."""
    if part.exists() and meta.exists():
        if json.loads(meta.read_text()) != key:
            raise InputError(f"{part} holds an interrupted sweep with other settings; delete it or "
                             "repeat the same settings to continue it")
        return _read_rows(part)
    part.unlink(missing_ok=True)
    with atomic_path(meta) as tmp:
        tmp.write_text(json.dumps(key))
    return []


def _chunks(chunks, s, checkpoint, device, scheduler, cancel, thumbnails):
    """(rows, seconds) per chunk as they finish: in this process, or on a Dask cluster."""
    if scheduler is None:
        for chunk in chunks:
            if cancel is not None and cancel.is_set():
                raise Cancelled("sweep cancelled; finished points are kept, run it again to resume")
            yield classify_chunk(chunk, s, checkpoint, device, thumbnails)
        return
    from distributed import Client, LocalCluster, as_completed

    cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                           dashboard_address=None) if scheduler == "local" else None
    try:
        with Client(cluster if cluster is not None else scheduler) as client:
            path = str(_checkpoint(checkpoint).path)
            futures = [client.submit(classify_chunk, chunk, s, path, "cpu", thumbnails, pure=False)
                       for chunk in chunks]
            for future in as_completed(futures):
                if cancel is not None and cancel.is_set():
                    client.cancel(futures)
                    raise Cancelled("sweep cancelled; finished points are kept, run it again to resume")
                yield future.result()
    finally:
        if cluster is not None:
            cluster.close()


def summarise(rows: list[dict], s: SweepSettings, checkpoint: str, seconds: dict, computed: int) -> dict:
    """Counts, agreement with the reference, and points per minute of each engine."""
    summary = {"checkpoint": checkpoint, "settings": s.describe(), "points": len(rows),
               "surrogate_separated": int(sum(r["surrogate_separated"] for r in rows)),
               "surrogate_diverged": int(sum(not np.isfinite(r["surrogate_spread"]) for r in rows)),
               "computed_points": computed, "seconds": seconds, **provenance()}
    if computed:
        summary["points_per_minute"] = {k: 60 * computed / v for k, v in seconds.items() if v > 0}
    if s.reference != "none" and rows:
        agree = sum(outcome(r) == outcome(r, "reference") for r in rows)  # diverged never agrees
        summary["agreement"] = agree / len(rows)
        summary["reference_separated"] = int(sum(r["reference_separated"] for r in rows))
    return summary


def figure(rows: list[dict], s: SweepSettings, summary: dict, path: Path, preset) -> Path:
    """PNG: the analytic spinodal line and the points, filled when separated, crossed on disagreement."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    means, eta_max = metrics.spinodal_line(preset)
    fig, ax = plt.subplots(figsize=(6.4, 4.8), dpi=120)
    ax.plot(means, 100 * eta_max, "k-", lw=1.5, label="analytic spinodal η_max(⟨φ⟩)")
    m = np.array([r["mean"] for r in rows])
    e = 100 * np.array([r["eta"] for r in rows])
    kinds = np.array([outcome(r) for r in rows])
    sep, homo, blown = kinds == "separated", kinds == "homogeneous", kinds == "diverged"
    ax.scatter(m[sep], e[sep], s=14, c="#d62728", label="surrogate: separated")
    ax.scatter(m[homo], e[homo], s=14, facecolors="none", edgecolors="#1f77b4", label="surrogate: homogeneous")
    if blown.any():
        ax.scatter(m[blown], e[blown], s=30, marker="s", c="#7f7f7f", label="surrogate: diverged")
    title = f"{summary['checkpoint']}: {len(rows)} points, {s.size}², {s.horizon} τ, amplitude {s.amplitude:g}"
    if "agreement" in summary:
        wrong = np.array([outcome(r) != outcome(r, "reference") for r in rows], dtype=bool)
        ax.scatter(m[wrong], e[wrong], s=40, marker="x", c="k", label=f"disagrees with {s.reference}")
        title += f"\nagreement with {s.reference}: {100 * summary['agreement']:.1f} %"
    ax.set(xlabel="⟨φ⟩", ylabel="η (%)", title=title, xlim=(0, 1), ylim=(0, max(1.4, e.max() * 1.05 if len(e) else 1.4)))
    ax.legend(fontsize=7, loc="upper right")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return path


class SweepJob(BackgroundJob):
    """One sweep at a time on a worker thread (the app's Phase diagram tab), files in `folder`."""

    def __init__(self, folder: Path):
        super().__init__()
        self.folder = Path(folder)
        self.count = 0

    def start(self, s: SweepSettings, checkpoint: str, *, on_rows, on_progress, on_done) -> bool:
        """Begin a sweep; False when one is running. `on_done(summary, error)` at the end."""
        if self.running:
            return False
        self.folder.mkdir(parents=True, exist_ok=True)
        self.count += 1
        out = self.folder / f"sweep-{self.count}.csv"

        def work(cancel):
            return run_sweep(s, checkpoint, out, overwrite=True, thumbnails=True, on_rows=on_rows,
                             progress=on_progress, cancel=cancel)
        return self.launch(work, on_done, "crane-viz-sweep")
