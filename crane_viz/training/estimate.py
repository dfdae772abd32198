"""What a training job will cost, timed on this machine now (bounded: at most a 64² / 32³ probe, scaled)."""

from __future__ import annotations

import math
import time
from contextlib import contextmanager
from pathlib import Path

import torch

from ..nn.model import CRNN, get_config
from ..physics.presets import get_preset
from ..settings import resolve_device
from .dataset import DatasetSpec, simulate_batch
from .job_settings import TrainJobSettings
from .loop import split, unroll


def estimate(settings: TrainJobSettings, repeats: int = 3) -> dict:
    """Dataset size and time, from solver and training steps timed on this machine now.

    Each cost is the fastest of `repeats` timed steps (after a warm-up), so a busy moment does not
    inflate it, timed with the job's thread count. Returns bytes, generate_s (0 for an existing
    dataset), epoch_steps (batched model steps per epoch), epoch_s and total_s.
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
    frames = settings.trained_frames(frames)
    length = frames if settings.window <= 1 else min(settings.window, frames)
    n_val = len(split(sequences, settings.val_fraction, torch.Generator())[1])
    train_batches = math.ceil((sequences - n_val) / batch)
    # a validation step (no gradient) costs about a third of a training step
    epoch_steps = train_batches * (length - 1) + math.ceil(n_val / batch) * (frames - 1) / 3
    epoch_s = epoch_steps * per_step
    return {"bytes": int(bytes_), "generate_s": generate_s, "epoch_s": epoch_s, "epoch_steps": epoch_steps,
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
