"""Held-out evaluation of a checkpoint with the papers' measures (`crane-viz evaluate`).

Cases are freshly generated with seeds disjoint from training (base 1 000 000 by default); the
surrogate and the preset's reference solver run them batched from the same initial fields.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Callable

import numpy as np
import torch

from . import metrics
from .checkpoint import Checkpoint
from .dataset import DatasetSpec, sample_case
from .engines import make_solver
from .initial import as_batch, perlin_field
from .surrogate import SurrogateEngine, downsample


@dataclass(frozen=True)
class EvalSpec:
    cases: int = 32  # held-out cases for MAE(t) and the interface measure
    size: int = 64  # reference grid side
    horizon: int = 40  # training horizon in frames (the model card says which)
    extrapolate: int = 5  # evaluate up to extrapolate × horizon
    ensemble: int = 16  # cases of the ensemble F/V(t) test (2D: ⟨φ⟩ = 0.5, η = 0.6 %)
    phase_points: int = 64  # random (⟨φ⟩, η) points for phase classification (2D)
    phase_frames: int = 100  # frames τ at which the phase is classified (2D paper: 100 τ)
    batch: int = 16
    seed: int = 1_000_000  # base seed, disjoint from training seeds


def run_pair(ckpt: Checkpoint, phi0: torch.Tensor, eta: torch.Tensor, frames: int, device,
             batch: int, every: Callable[[int, torch.Tensor, torch.Tensor], None]) -> None:
    """Run surrogate and reference from phi0 (B, *grid) in batches; `every(i0, sur, ref_c)` per frame.

    `sur` and `ref_c` are (b, *model grid); the reference is average-pooled to the model grid.
    """
    for i0 in range(0, phi0.shape[0], batch):
        p, e = phi0[i0:i0 + batch].to(device), eta[i0:i0 + batch].to(device)
        sur_engine = SurrogateEngine(ckpt, misfit=e, device=device)
        ref_engine = make_solver(ckpt.preset.solver, ckpt.preset, misfit=e)
        s, r = sur_engine.init_state(p), ref_engine.init_state(p)
        for _ in range(frames):
            s, r = sur_engine.step(s), ref_engine.step(r)
            every(i0, s.phi, downsample(r.phi, ckpt.grid_scale))


def quartiles(x: np.ndarray, axis=0) -> dict:
    q1, med, q3 = np.nanpercentile(x, [25, 50, 75], axis=axis)
    return {"q1": q1.tolist(), "median": med.tolist(), "q3": q3.tolist()}


def heldout_cases(ckpt: Checkpoint, spec: EvalSpec, count: int, seed: int):
    """Initial fields and η of `count` held-out cases sampled as in the training data."""
    dspec = DatasetSpec(preset=ckpt.preset.name, size=spec.size, seed=seed)
    cases = [sample_case(dspec, i) for i in range(count)]
    fields = [perlin_field(spec.size, ckpt.dim, mean=c["mean"], amplitude=c["amplitude"],
                           cells=min(c["cells"], spec.size), seed=c["seed"]) for c in cases]
    return cases, as_batch(fields), torch.tensor([c["eta"] for c in cases])


def accuracy(ckpt: Checkpoint, spec: EvalSpec, device) -> dict:
    """MAE(t), interface-measure error, mass drift and stable length over held-out cases."""
    cases, phi0, eta = heldout_cases(ckpt, spec, spec.cases, spec.seed)
    frames = spec.horizon * spec.extrapolate
    dim, preset = ckpt.dim, ckpt.preset
    mae = np.full((spec.cases, frames), np.nan)
    ierr = np.full((spec.cases, frames), np.nan)
    drift = np.zeros(spec.cases)
    stable = np.full(spec.cases, frames)
    mean0 = metrics.mean_composition(downsample(phi0, ckpt.grid_scale), dim).numpy()
    t = {"i": 0}

    def every(i0, sur, ref):
        k = t["i"] % frames
        b = slice(i0, i0 + sur.shape[0])
        mae[b, k] = metrics.mae(ref, sur, dim).cpu().numpy()
        iref = metrics.interface_measure(ref, preset).cpu().numpy()
        isur = metrics.interface_measure(sur, preset).cpu().numpy()
        ierr[b, k] = np.abs(isur - iref) / np.maximum(iref, 1e-12)
        drift[b] = np.maximum(drift[b], np.abs(metrics.mean_composition(sur, dim).cpu().numpy() - mean0[b]))
        bad = (~torch.isfinite(sur).flatten(1).all(1) | (sur.flatten(1).abs().max(1).values > 2)).cpu().numpy()
        stable[b] = np.where(bad & (stable[b] == frames), k, stable[b])
        t["i"] += 1
    run_pair(ckpt, phi0, eta, frames, device, spec.batch, every)
    h = spec.horizon
    return {
        "frames": frames, "mae": quartiles(mae), "interface_error": quartiles(ierr),
        "mae_median_within_horizon": float(np.nanmedian(mae[:, :h])),
        "mae_median_at_horizon": float(np.nanmedian(mae[:, h - 1])),
        "mae_median_at_end": float(np.nanmedian(mae[:, -1])),
        "interface_error_median_within_horizon": float(np.nanmedian(ierr[:, :h])),
        "max_mass_drift": float(drift.max()), "min_stable_frames": int(stable.min()),
        "cases": [dict(c, eta=float(c["eta"])) for c in cases],
    }


def ensemble_energy(ckpt: Checkpoint, spec: EvalSpec, device) -> dict:
    """F/V(t) of surrogate vs reference over an ensemble (2D: ⟨φ⟩ = 0.5, η = 0.6 %)."""
    frames = spec.horizon * spec.extrapolate
    eta_value = 0.006 if ckpt.dim == 2 and ckpt.model_config.conditions else 0.0
    fields = [perlin_field(spec.size, ckpt.dim, mean=0.5, amplitude=0.1, cells=4,
                           seed=spec.seed + 500_000 + i) for i in range(spec.ensemble)]
    phi0 = as_batch(fields)
    eta = torch.full((spec.ensemble,), eta_value)
    f_sur = np.zeros((spec.ensemble, frames))
    f_ref = np.zeros((spec.ensemble, frames))
    t = {"i": 0}

    def every(i0, sur, ref):
        k = t["i"] % frames
        b = slice(i0, i0 + sur.shape[0])
        e = eta[b].to(sur.device)
        f_sur[b, k] = metrics.energy(sur.double(), ckpt.preset, e, spacing=ckpt.grid_scale)["total"].cpu().numpy()
        f_ref[b, k] = metrics.energy(ref.double(), ckpt.preset, e, spacing=ckpt.grid_scale)["total"].cpu().numpy()
        t["i"] += 1
    run_pair(ckpt, phi0, eta, frames, device, spec.batch, every)
    qs, qr = quartiles(f_sur), quartiles(f_ref)
    ms, mr = np.array(qs["median"]), np.array(qr["median"])
    inside = (ms >= np.array(qr["q1"])) & (ms <= np.array(qr["q3"])) & \
             (mr >= np.array(qs["q1"])) & (mr <= np.array(qs["q3"]))
    rel = np.abs(ms - mr) / np.abs(mr)
    out = {"eta": eta_value, "surrogate": qs, "reference": qr,
           "medians_within_iqr_fraction": float(inside.mean()),
           "frames_medians_within_iqr": int(np.argmin(inside)) if not inside.all() else frames,
           "median_relative_error_max": float(rel.max())}
    if ckpt.dim == 3:
        late = slice(frames // 3, frames)
        tt = (np.arange(frames) + 1.0) * ckpt.frame_time
        out["coarsening_exponent_surrogate"] = float(np.polyfit(np.log(tt[late]), np.log(ms[late]), 1)[0])
        out["coarsening_exponent_reference"] = float(np.polyfit(np.log(tt[late]), np.log(mr[late]), 1)[0])
    return out


def phase_agreement(ckpt: Checkpoint, spec: EvalSpec, device) -> dict:
    """Separated/homogeneous at `phase_frames` τ for random (⟨φ⟩, η): surrogate vs reference."""
    rng = np.random.default_rng(spec.seed + 900_000)
    n = spec.phase_points
    means = rng.uniform(0.2, 0.8, n)
    lo, hi = ckpt.training.get("misfit_range", [0.0, 0.012])
    etas = rng.uniform(lo, hi, n)
    fields = [perlin_field(spec.size, ckpt.dim, mean=m, amplitude=0.1, cells=4,
                           seed=spec.seed + 700_000 + i) for i, m in enumerate(means)]
    sep = {"surrogate": np.zeros(n, bool), "reference": np.zeros(n, bool)}
    t = {"i": 0}

    def every(i0, sur, ref):
        if t["i"] % spec.phase_frames == spec.phase_frames - 1:
            b = slice(i0, i0 + sur.shape[0])
            sep["surrogate"][b] = metrics.phase_separated(sur, ckpt.dim).cpu().numpy()
            sep["reference"][b] = metrics.phase_separated(ref, ckpt.dim).cpu().numpy()
        t["i"] += 1
    run_pair(ckpt, as_batch(fields), torch.tensor(etas, dtype=torch.float32), spec.phase_frames,
             device, spec.batch, every)
    agree = sep["surrogate"] == sep["reference"]
    return {"frames": spec.phase_frames, "agreement": float(agree.mean()),
            "points": [{"mean": float(m), "eta": float(e), "surrogate": bool(s), "reference": bool(r)}
                       for m, e, s, r in zip(means, etas, sep["surrogate"], sep["reference"])]}


def evaluate(ckpt: Checkpoint, spec: EvalSpec, device="cpu",
             progress: Callable[[str], None] | None = None) -> dict:
    """All measures; a JSON-ready summary."""
    note = progress or (lambda _: None)
    out = {"checkpoint": ckpt.name, "spec": asdict(spec), "frame_time": ckpt.frame_time,
           "grid_scale": ckpt.grid_scale}
    note("held-out accuracy")
    out["accuracy"] = accuracy(ckpt, spec, device)
    note("ensemble free energy")
    out["ensemble"] = ensemble_energy(ckpt, spec, device)
    if ckpt.dim == 2 and spec.phase_points > 0:
        note("phase classification")
        out["phase"] = phase_agreement(ckpt, spec, device)
    return out


def figures(summary: dict, folder) -> list:
    """PNG figures of a summary: MAE(t), interface error(t), ensemble F/V(t), phase points."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .io import atomic_path

    written = []
    acc = summary["accuracy"]
    t = np.arange(1, acc["frames"] + 1) * summary["frame_time"]
    horizon = summary["spec"]["horizon"] * summary["frame_time"]
    fig, axes = plt.subplots(1, 3, figsize=(14, 3.8))
    for ax, key, label in ((axes[0], "mae", "MAE"), (axes[1], "interface_error", "interface measure rel. error")):
        q = acc[key]
        ax.plot(t, q["median"], color="C3", label="median")
        ax.fill_between(t, q["q1"], q["q3"], color="C3", alpha=0.25, label="IQR")
        ax.axvline(horizon, color="k", ls=":", lw=1, label="training horizon")
        ax.set_xlabel("t"), ax.set_ylabel(label), ax.legend(fontsize=8)
    ens = summary["ensemble"]
    for name, color in (("surrogate", "C3"), ("reference", "C0")):
        q = ens[name]
        axes[2].plot(t, q["median"], color=color, label=name)
        axes[2].fill_between(t, q["q1"], q["q3"], color=color, alpha=0.25)
    axes[2].set_xscale("log"), axes[2].set_yscale("log")
    axes[2].set_xlabel("t"), axes[2].set_ylabel("F/V"), axes[2].legend(fontsize=8)
    axes[2].set_title(f"ensemble, η = {100 * ens['eta']:.1f} %", fontsize=9)
    fig.suptitle(f"{summary['checkpoint']}: held-out evaluation", fontsize=10)
    fig.tight_layout()
    path = folder / "evaluation.png"
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    written.append(path)
    if "phase" in summary:
        written.append(phase_figure(summary["phase"], folder / "phase.png"))
    return written


def phase_figure(phase: dict, path):
    import matplotlib.pyplot as plt

    from .io import atomic_path
    from .presets import get_preset

    fig, ax = plt.subplots(figsize=(5, 4))
    means, line = metrics.spinodal_line(get_preset("coherent-2d"))
    ax.plot(means, 100 * line, "k-", lw=1, label="analytic spinodal")
    for p in phase["points"]:
        marker = "o" if p["surrogate"] == p["reference"] else "x"
        color = "C3" if p["surrogate"] else "C0"
        ax.plot(p["mean"], 100 * p["eta"], marker, color=color, ms=5, mfc="none" if marker == "o" else None)
    ax.set_xlabel("⟨φ⟩"), ax.set_ylabel("η (%)")
    ax.set_title(f"phase at {phase['frames']} τ: agreement {100 * phase['agreement']:.1f} % "
                 "(red separated, × disagree)", fontsize=8)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    return path

