"""Held-out evaluation of a checkpoint with the papers' measures (`crane-viz evaluate`).

Cases are freshly generated with seeds disjoint from training (base 1 000 000 by default); the
surrogate and the preset's reference solver run them batched from the same initial fields.
`protocol_spec("paper", dim)` gives the papers' protocol: 2D at 128² over a 100-τ horizon and to
500 τ, 3D at 64³ against FD over 100 τ (fewer cases than the papers, to fit on a CPU).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Callable

import numpy as np
import torch

from ..engines import make_solver
from ..engines.base import diverged, side_by_side
from ..engines.surrogate import SurrogateEngine, downsample
from ..errors import InputError
from ..nn.checkpoint import Checkpoint
from ..physics.initial import as_batch, perlin_field
from ..physics.presets import get_preset
from ..settings import MAX_SEED, check_spec, spec_field
from ..training.dataset import DatasetSpec, sample_case
from . import metrics


@dataclass(frozen=True)
class EvalSpec:
    """What `evaluate` runs (the defaults: the quick protocol; PROTOCOLS holds the papers')."""

    cases: int = spec_field(32, "Held-out cases for MAE(t) and the interface measure.", (1, 10_000))
    size: int = spec_field(64, "Reference grid points per side.", (8, 1024))
    horizon: int = spec_field(40, "Training horizon in frames (the model card says which).", (1, 100_000))
    extrapolate: int = spec_field(5, "Evaluate up to this many horizons.", (1, 1000))
    ensemble: int = spec_field(16, "Cases of the ensemble F/V(t) test (2D: ⟨φ⟩ = 0.5, η = 0.6 %).", (1, 10_000))
    phase_points: int = spec_field(64, "Random (⟨φ⟩, η) points for phase classification (2D; 0: none).", (0, 100_000))
    phase_frames: int = spec_field(100, "Model frames after which the phase is classified (2D paper: 100 τ).", (1, 100_000))
    batch: int = spec_field(16, "Cases integrated together in one tensor.", (1, 4096))
    seed: int = spec_field(1_000_000, "Base seed of the held-out cases, disjoint from training seeds.", (0, MAX_SEED))

    def __post_init__(self):
        check_spec(self)


PROTOCOLS = {
    # the defaults above: a quick check at 64² on training-like cases
    ("quick", 2): {}, ("quick", 3): {},
    # 2D paper: 128², 100-frame training horizon, extrapolation to 500 τ, phase at 100 τ
    ("paper", 2): dict(cases=24, size=128, horizon=100, extrapolate=5, ensemble=12,
                       phase_points=100, phase_frames=100, batch=12),
    # 3D paper: 64³ against the FD reference over 100 τ (200 frames of τ = 0.5)
    ("paper", 3): dict(cases=4, size=64, horizon=200, extrapolate=1, ensemble=4,
                       phase_points=0, phase_frames=100, batch=4),
}
# times τ at which F/V and L(t) errors, RMSE, SSIM and the domains' alignment are reported
REPORT_TIMES = {2: (10, 50, 90, 100, 200, 500), 3: (5, 10, 25, 50, 90, 100)}
SNAPSHOT_TIMES = {2: (90, 100, 200), 3: (50, 90, 100)}  # RMSE, SSIM and alignment here
ETA_BINS = (0.0, 0.003, 0.006, 0.009, 0.0121)  # alignment reported per η bin (fractions)


def protocol_spec(name: str, dim: int, stride: int = 1, **overrides) -> EvalSpec:
    """The EvalSpec of a named protocol ("quick" or "paper") for a 2D or 3D checkpoint.

    The protocols count frames of the preset's τ; a model whose step is `stride` of them (trained
    with --frame-stride) runs the same simulated times in 1/stride as many frames. `overrides`
    are already in the model's frames.
    """
    if (name, dim) not in PROTOCOLS:
        raise InputError(f"--protocol must be one of {sorted({n for n, _ in PROTOCOLS})}, not {name!r}")
    base = {**asdict(EvalSpec()), **PROTOCOLS[(name, dim)]}
    for key in ("horizon", "phase_frames"):
        if key not in overrides and base[key] % stride:
            raise InputError(f"the {name} protocol's {key} ({base[key]} frames) is not a whole number of "
                             f"this model's {stride}-frame steps; give --{key.replace('_', '-')}")
        base[key] //= stride
    return EvalSpec(**{**base, **overrides})


def frame_stride_of(ckpt: Checkpoint) -> int:
    """Preset frames τ per model step (1 unless trained with --frame-stride)."""
    return max(1, round(ckpt.frame_time / get_preset(ckpt.preset.name).frame_time))


def run_pair(ckpt: Checkpoint, phi0: torch.Tensor, eta: torch.Tensor, frames: int, device,
             batch: int, every: Callable[[int, torch.Tensor, torch.Tensor], None]) -> None:
    """Run surrogate and reference from phi0 (B, *grid) in batches; `every(i0, sur, ref_c)` per frame.

    `sur` and `ref_c` are (b, *model grid); the reference is average-pooled to the model grid.
    """
    for i0 in range(0, phi0.shape[0], batch):
        p, e = phi0[i0:i0 + batch].to(device), eta[i0:i0 + batch].to(device)
        sur_engine = SurrogateEngine(ckpt, misfit=e, device=device)
        ref_engine = make_solver(ckpt.preset.solver, ckpt.preset, misfit=e)
        for s, r in side_by_side(sur_engine, ref_engine, p, frames):
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


def frame_at(time: float, frame_time: float) -> int:
    """Index (0-based, frame 1 first) of the frame at `time` in a rollout of step `frame_time`."""
    return int(round(time / frame_time)) - 1


def accuracy(ckpt: Checkpoint, spec: EvalSpec, device) -> dict:
    """Per-frame MAE, interface-measure, F/V and L(t) errors, mass drift, stable length and the
    largest free-energy rise over held-out cases; RMSE, SSIM and alignment at fixed times."""
    cases, phi0, eta = heldout_cases(ckpt, spec, spec.cases, spec.seed)
    frames = spec.horizon * spec.extrapolate
    dim, preset, tau = ckpt.dim, ckpt.preset, ckpt.frame_time
    series = {k: np.full((spec.cases, frames), np.nan)
              for k in ("mae", "interface_error", "f_sur", "f_ref", "l_sur", "l_ref")}
    snap_times = [t for t in SNAPSHOT_TIMES[dim] if 0 <= frame_at(t, tau) < frames]
    snap_frames = [frame_at(t, tau) for t in snap_times]
    snaps = {k: np.full((spec.cases, len(snap_times)), np.nan)
             for k in ("rmse", "ssim", "align_sur", "align_ref")}
    drift = np.zeros(spec.cases)
    stable = np.full(spec.cases, frames)
    mean0 = metrics.mean_composition(downsample(phi0, ckpt.grid_scale), dim).numpy()
    t = {"i": 0}

    def every(i0, sur, ref):
        k = t["i"] % frames
        b = slice(i0, i0 + sur.shape[0])
        e = eta[b].to(sur.device)
        series["mae"][b, k] = metrics.mae(ref, sur, dim).cpu().numpy()
        iref = metrics.interface_measure(ref, preset).cpu().numpy()
        isur = metrics.interface_measure(sur, preset).cpu().numpy()
        series["interface_error"][b, k] = np.abs(isur - iref) / np.maximum(iref, 1e-12)
        for name, field in (("sur", sur), ("ref", ref)):
            series[f"f_{name}"][b, k] = metrics.energy(field.double(), preset, e.double(),
                                                       spacing=ckpt.grid_scale)["total"].cpu().numpy()
            series[f"l_{name}"][b, k] = metrics.characteristic_length(field.double(), dim).cpu().numpy()
        drift[b] = np.maximum(drift[b], np.abs(metrics.mean_composition(sur, dim).cpu().numpy() - mean0[b]))
        bad = diverged(sur).cpu().numpy()
        stable[b] = np.where(bad & (stable[b] == frames), k, stable[b])
        if k in snap_frames:
            j = snap_frames.index(k)
            snaps["rmse"][b, j] = metrics.rmse(ref, sur, dim).cpu().numpy()
            snaps["ssim"][b, j] = metrics.ssim(ref, sur, dim).cpu().numpy()
            snaps["align_sur"][b, j] = metrics.axis_anisotropy(sur, dim).cpu().numpy()
            snaps["align_ref"][b, j] = metrics.axis_anisotropy(ref, dim).cpu().numpy()
        t["i"] += 1
    run_pair(ckpt, phi0, eta, frames, device, spec.batch, every)
    h = spec.horizon
    mae, ierr = series["mae"], series["interface_error"]
    out = {
        "frames": frames, "mae": quartiles(mae), "interface_error": quartiles(ierr),
        "mae_median_within_horizon": float(np.nanmedian(mae[:, :h])),
        "mae_median_at_horizon": float(np.nanmedian(mae[:, h - 1])),
        "mae_median_at_end": float(np.nanmedian(mae[:, -1])),
        "interface_error_median_within_horizon": float(np.nanmedian(ierr[:, :h])),
        "max_mass_drift": float(drift.max()), "min_stable_frames": int(stable.min()),
        "max_energy_rise": largest_energy_rise(series["f_sur"]),
        "reference_max_energy_rise": largest_energy_rise(series["f_ref"]),
        "at_times": at_times(series, dim, tau, frames),
        "snapshots": snapshot_summary(snaps, snap_times, eta.numpy()),
        "cases": [dict(c, eta=float(c["eta"])) for c in cases],
    }
    return out


def largest_energy_rise(f: np.ndarray) -> float:
    """max over cases and frames of (F(t) − min_{s ≤ t} F(s)) / |F(first frame)|.

    Cahn–Hilliard flow never raises F; anything above round-off is a surrogate error.
    """
    running_min = np.fmin.accumulate(f, axis=1)
    rise = (f - running_min) / np.abs(f[:, :1])
    return float(np.nanmax(rise)) if np.isfinite(rise).any() else float("nan")


def at_times(series: dict, dim: int, tau: float, frames: int) -> dict:
    """Relative F/V and L(t) errors |sur − ref| / ref (median, IQR over cases) at REPORT_TIMES."""
    out = {}
    for time in REPORT_TIMES[dim]:
        k = frame_at(time, tau)
        if not 0 <= k < frames:
            continue
        row = {}
        for key in ("f", "l"):
            rel = np.abs(series[f"{key}_sur"][:, k] - series[f"{key}_ref"][:, k]) / np.abs(series[f"{key}_ref"][:, k])
            q1, med, q3 = np.nanpercentile(rel, [25, 50, 75])
            row[{"f": "energy", "l": "length"}[key]] = {"q1": float(q1), "median": float(med), "q3": float(q3)}
        row["mae_median"] = float(np.nanmedian(series["mae"][:, k]))
        out[f"{time:g}"] = row
    return out


def snapshot_summary(snaps: dict, times: list, eta: np.ndarray) -> dict:
    """Median RMSE and SSIM, and the alignment of surrogate vs reference per η bin, per time."""
    out = {}
    for j, time in enumerate(times):
        bins = []
        for lo, hi in zip(ETA_BINS[:-1], ETA_BINS[1:]):
            inside = (eta >= lo) & (eta < hi)
            if not inside.any():
                continue
            sur, ref = snaps["align_sur"][inside, j], snaps["align_ref"][inside, j]
            bins.append({"eta": [lo, min(hi, 0.012)], "cases": int(inside.sum()),
                         "surrogate": float(np.nanmedian(sur)), "reference": float(np.nanmedian(ref)),
                         "gap": float(abs(np.nanmedian(sur) - np.nanmedian(ref)))})
        out[f"{time:g}"] = {"rmse_median": float(np.nanmedian(snaps["rmse"][:, j])),
                            "ssim_median": float(np.nanmedian(snaps["ssim"][:, j])),
                            "alignment": bins,
                            "alignment_max_gap": max((b["gap"] for b in bins), default=float("nan"))}
    return out


LINEAR_MODES = {2: {"<10>": (4, 0), "<11>": (3, 3)}, 3: {"<100>": (4, 0, 0), "<111>": (2, 2, 2)}}


def linear_response(ckpt: Checkpoint, device, size: int = 64, amplitude: float = 1e-3,
                    mean: float = 0.5, frames: int = 3) -> dict:
    """Growth per frame of small single modes (frames 2 → 3): surrogate vs reference.

    The dispersion relation σ(k, n, η) = −k²(w″(⟨φ⟩) + ε k² + η² trB(n)) decides which
    orientation wins the early, linear regime; a surrogate that grows the elastically hard
    direction like the soft one cannot align its domains. Modes: |k| ≈ 0.39 along an axis and
    ≈ 0.42 along a diagonal of a 64² (64³) box.
    """
    dim = ckpt.dim
    etas = (0.0, 0.006, 0.01) if ckpt.model_config.conditions else (0.0,)
    size = size if dim == 2 else size // 2
    modes = {name: tuple(w * size // 64 if dim == 2 else w * size // 32 for w in wave)
             for name, wave in LINEAR_MODES[dim].items()}
    grid = torch.meshgrid(*[torch.arange(size, dtype=torch.float64)] * dim, indexing="ij")
    rows = []
    for name, wave in modes.items():
        phase = sum(2 * math.pi * w * x / size for w, x in zip(wave, grid))
        field = (mean + amplitude * torch.cos(phase)).float()
        phi0 = field.expand(len(etas), *field.shape).contiguous()
        amps = {"surrogate": [], "reference": []}

        def every(i0, sur, ref, wave=wave, amps=amps):
            amps["surrogate"].append(metrics.mode_amplitude(sur, wave).cpu())
            amps["reference"].append(metrics.mode_amplitude(ref, wave).cpu())
        run_pair(ckpt, phi0, torch.tensor(etas, dtype=torch.float32), frames, device, len(etas), every)
        for i, e in enumerate(etas):
            growth = {k: float(v[-1][i] / v[-2][i]) for k, v in amps.items()}
            rows.append({"mode": name, "wave": list(wave), "k": float(2 * math.pi * math.sqrt(sum(w * w for w in wave)) / size),
                         "eta": e, **growth})
    return {"frames": frames, "amplitude": amplitude, "mean": mean, "modes": rows,
            "max_relative_error": max(abs(r["surrogate"] - r["reference"]) / r["reference"] for r in rows)}


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
    """Separated/homogeneous after `phase_frames` model frames for random (⟨φ⟩, η): surrogate vs reference."""
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
    return {"frames": spec.phase_frames, "time": spec.phase_frames * ckpt.frame_time,
            "agreement": float(agree.mean()),
            "points": [{"mean": float(m), "eta": float(e), "surrogate": bool(s), "reference": bool(r)}
                       for m, e, s, r in zip(means, etas, sep["surrogate"], sep["reference"])]}


def evaluate(ckpt: Checkpoint, spec: EvalSpec, device="cpu",
             progress: Callable[[str], None] | None = None, protocol: str = "custom") -> dict:
    """All measures; a JSON-ready summary (with the wall time and thread count it took)."""
    import time

    note = progress or (lambda _: None)
    started = time.perf_counter()
    out = {"checkpoint": ckpt.name, "dim": ckpt.dim, "protocol": protocol, "spec": asdict(spec),
           "frame_time": ckpt.frame_time, "grid_scale": ckpt.grid_scale}
    note("linear response of single modes")
    out["linear_response"] = linear_response(ckpt, device)
    note("held-out accuracy")
    out["accuracy"] = accuracy(ckpt, spec, device)
    note("ensemble free energy")
    out["ensemble"] = ensemble_energy(ckpt, spec, device)
    if ckpt.dim == 2 and spec.phase_points > 0:
        note("phase classification")
        out["phase"] = phase_agreement(ckpt, spec, device)
    out["wall_seconds"], out["threads"] = time.perf_counter() - started, torch.get_num_threads()
    return out


def figures(summary: dict, folder) -> list:
    """PNG figures of a summary: MAE(t), interface error(t), ensemble F/V(t), phase points."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ..io.files import atomic_path

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
    written.append(protocol_figure(summary, folder / "protocol.png"))
    if "phase" in summary:
        written.append(phase_figure(summary["phase"], folder / "phase.png"))
    return written


def protocol_figure(summary: dict, path):
    """F/V and L(t) relative errors at fixed times, alignment per η bin, single-mode growth."""
    import matplotlib.pyplot as plt

    from ..io.files import atomic_path

    acc, lin = summary["accuracy"], summary["linear_response"]
    fig, axes = plt.subplots(1, 3, figsize=(14, 3.8))
    times = [float(t) for t in acc["at_times"]]
    if times:
        for key, color in (("energy", "C3"), ("length", "C0")):
            rows = [acc["at_times"][t][key] for t in acc["at_times"]]
            med = np.array([r["median"] for r in rows])
            err = np.array([[r["median"] - r["q1"] for r in rows], [r["q3"] - r["median"] for r in rows]])
            axes[0].errorbar(times, 100 * med, yerr=100 * err, marker="o", color=color, capsize=3,
                             label={"energy": "F/V", "length": "L(t)"}[key])
        axes[0].axhline(5, color="k", ls=":", lw=1, label="5 % target")
        axes[0].set_xscale("log"), axes[0].set_xlabel("t"), axes[0].set_ylabel("relative error (%)")
        axes[0].legend(fontsize=8), axes[0].set_title("surrogate vs reference (median, IQR)", fontsize=9)
    else:
        axes[0].text(0.5, 0.5, "no report time within this rollout", ha="center", va="center",
                     transform=axes[0].transAxes)
    snaps = acc["snapshots"]
    if snaps:
        time = "100" if "100" in snaps else next(iter(snaps))
        bins = snaps[time]["alignment"]
        x = np.arange(len(bins))
        axes[1].bar(x - 0.2, [b["reference"] for b in bins], 0.4, color="C0", label="reference")
        axes[1].bar(x + 0.2, [b["surrogate"] for b in bins], 0.4, color="C3", label="surrogate")
        axes[1].set_xticks(x, [f"{100 * b['eta'][0]:.1f}–{100 * b['eta'][1]:.1f} %" for b in bins], fontsize=8)
        axes[1].set_ylabel("axis anisotropy of S(q)"), axes[1].set_xlabel("η")
        axes[1].set_title(f"domain alignment at {time} τ", fontsize=9), axes[1].legend(fontsize=8)
    else:
        axes[1].text(0.5, 0.5, "no alignment time within this rollout", ha="center", va="center",
                     transform=axes[1].transAxes)
    labels = [f"{r['mode']} η={100 * r['eta']:.1f}%" for r in lin["modes"]]
    x = np.arange(len(labels))
    axes[2].bar(x - 0.2, [r["reference"] for r in lin["modes"]], 0.4, color="C0", label="reference")
    axes[2].bar(x + 0.2, [r["surrogate"] for r in lin["modes"]], 0.4, color="C3", label="surrogate")
    axes[2].axhline(1, color="k", lw=0.8)
    axes[2].set_xticks(x, labels, rotation=30, ha="right", fontsize=7)
    axes[2].set_ylabel("growth per frame"), axes[2].legend(fontsize=8)
    axes[2].set_title("linear response of single modes", fontsize=9)
    fig.suptitle(f"{summary['checkpoint']}: {summary.get('protocol', 'quick')} protocol", fontsize=10)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    return path


def phase_figure(phase: dict, path):
    import matplotlib.pyplot as plt

    from ..io.files import atomic_path
    from ..physics.presets import get_preset

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

