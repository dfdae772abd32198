"""Model cards written from a checkpoint's config and a `crane-viz evaluate` summary."""

from __future__ import annotations

import json
import platform
from pathlib import Path

import torch

from ..nn.checkpoint import Checkpoint
from ..nn.model import count_parameters

PAPER_2D = {  # crnn-coherent-spinodal-2d (128², 100 τ training sequences, 24 ch 5×5)
    "mae_within": "≤ 0.025", "mae_end": "≤ 0.09 (at 5× horizon)", "interface": "< 2 %",
    "phase": "98.2 % (500 points, 100 τ)", "ensemble": "medians within IQRs up to 9× horizon",
    "drift": "exact by construction", "stable": "≥ 5× horizon (500 τ)",
}
PAPER_3D = {  # crnn-3d-cahn-hilliard (64³ FD data, model at 32³, 10 ch 3³)
    "mae_within": "not reported", "mae_end": "not reported", "interface": "not reported",
    "phase": "—", "ensemble": "F/V rel. error < 5.5 %", "drift": "float round-off",
    "stable": "≥ 10⁴ steps, coarsens to layers",
}


def protocol_rows(summary: dict, dim: int) -> list[tuple[str, str, str]]:
    """(measure, value, target) rows of the measures users see: F/V and L(t) errors, alignment,
    free-energy rise, RMSE/SSIM at fixed times and the single-mode growth."""
    acc, rows = summary["accuracy"], []
    if "at_times" not in acc:
        return rows
    target = "within 5 %" if dim == 2 else "within 5.5 %"
    for time, row in acc["at_times"].items():
        rows.append((f"F/V and L(t) rel. error at {time} τ (median [IQR])",
                     " / ".join(f"{100 * row[k]['median']:.1f} % [{100 * row[k]['q1']:.1f}, {100 * row[k]['q3']:.1f}]"
                                for k in ("energy", "length")), target))
    for time, snap in acc["snapshots"].items():
        rows.append((f"RMSE / SSIM at {time} τ (median)", f"{snap['rmse_median']:.3f} / {snap['ssim_median']:.3f}", "—"))
        if dim == 2 and snap["alignment"]:
            bins = "; ".join(f"{100 * b['eta'][0]:.1f}–{100 * b['eta'][1]:.1f} %: {b['surrogate']:+.2f} vs {b['reference']:+.2f}"
                             for b in snap["alignment"])
            rows.append((f"domain alignment at {time} τ, surrogate vs reference per η bin", bins,
                         "within 0.1 in every bin"))
    rows.append(("largest free-energy rise along a rollout (of F(0); reference)",
                 f"{100 * acc['max_energy_rise']:.2f} % ({100 * acc['reference_max_energy_rise']:.2f} %)", "≤ 0.1 %"))
    lin = summary.get("linear_response")
    if lin:
        grow = "; ".join(f"{r['mode']} η={100 * r['eta']:.1f} %: {r['surrogate']:.3f} vs {r['reference']:.3f}"
                         for r in lin["modes"])
        rows.append((f"single-mode growth per frame, surrogate vs reference (max rel. error "
                     f"{100 * lin['max_relative_error']:.0f} %)", grow, "σ(k, n, η) of the reference"))
    return rows


def protocol_lines(summary: dict) -> list[str]:
    """The protocol rows as plain lines for the terminal."""
    return [f"{a}: {b} (target {c})" for a, b, c in protocol_rows(summary, summary["dim"])]


def training_summary(log_path: Path | None) -> dict:
    """Epochs, wall time and the best epoch from a run's log.jsonl (empty when absent)."""
    from ..training.loop import read_log

    rows = read_log(log_path) if log_path is not None else []
    if not rows:
        return {}
    best = min(rows, key=lambda r: r["val_loss"])
    return {"epochs": rows[-1]["epoch"], "wall_seconds": sum(r["seconds"] for r in rows),
            "threads": rows[-1].get("threads"), "device": rows[-1].get("device"),
            "best_epoch": best["epoch"], "best_val_loss": best["val_loss"]}


def evaluation_rows(ckpt: Checkpoint, summary: dict) -> list[tuple[str, str, str]]:
    """(measure, this checkpoint, paper) rows of an `evaluate` summary."""
    acc, ens, spec = summary["accuracy"], summary["ensemble"], summary["spec"]
    paper = PAPER_2D if ckpt.dim == 2 else PAPER_3D
    rows = [
        ("median MAE within the horizon", f"{acc['mae_median_within_horizon']:.4f}", paper["mae_within"]),
        (f"median MAE at {spec['extrapolate']}× horizon", f"{acc['mae_median_at_end']:.4f}", paper["mae_end"]),
        ("interface measure rel. error (median, within horizon)",
         f"{100 * acc['interface_error_median_within_horizon']:.2f} %", paper["interface"]),
        ("ensemble F/V: medians within each other's IQR",
         f"{100 * ens['medians_within_iqr_fraction']:.0f} % of frames (first miss at frame "
         f"{ens['frames_medians_within_iqr']}); max median rel. error {100 * ens['median_relative_error_max']:.1f} %",
         paper["ensemble"]),
        ("max mass drift (change of ⟨φ⟩)", f"{acc['max_mass_drift']:.1e}", paper["drift"]),
        ("stable rollout (all held-out cases)", f"≥ {acc['min_stable_frames']} frames", paper["stable"]),
    ]
    if "phase" in summary:
        phase = summary["phase"]  # "time" is absent from summaries of 1-τ models written before it
        rows.append((f"phase agreement at {phase.get('time', phase['frames']):g} τ ({len(phase['points'])} points)",
                     f"{100 * summary['phase']['agreement']:.1f} %", paper["phase"]))
    if "coarsening_exponent_reference" in ens:
        rows.append(("late-time exponent of F/V(t) (surrogate / reference)",
                     f"{ens['coarsening_exponent_surrogate']:.3f} / {ens['coarsening_exponent_reference']:.3f}",
                     "−1/3"))
    return rows + protocol_rows(summary, ckpt.dim)


def training_hardware(log: dict) -> str:
    """What the training log says it ran on (logs before 2026-11-25 did not record it)."""
    if log.get("threads") is None:
        return "threads not recorded in the training log"
    where = "CPU only" if log.get("device") == "cpu" else log.get("device")
    return f"{log['threads']} torch thread(s), {where}"


def render_card(ckpt: Checkpoint, summary: dict, log: dict, command: str, notes: str = "") -> str:
    """Markdown model card: data, sizes, training, hardware, evaluation table beside the paper's."""
    cfg, tr, ds = ckpt.model_config, ckpt.training, ckpt.config.get("dataset", {})
    ens, spec = summary["ensemble"], summary["spec"]
    horizon = spec["horizon"]
    table = "\n".join(f"| {a} | {b} | {c} |" for a, b, c in evaluation_rows(ckpt, summary))
    hours = log.get("wall_seconds", float("nan")) / 3600
    means = tr.get("mean_range", ["?", "?"])
    etas = [100 * e for e in tr.get("misfit_range", [0, 0])]
    digest = str(ds.get("sha256"))[:16]
    machine = f"{platform.processor() or platform.machine()} ({training_hardware(log)})"
    best = f"{log.get('best_val_loss', float('nan')):.4g} at epoch {log.get('best_epoch', '?')}"
    protocol = summary.get("protocol", "quick")
    wall = summary.get("wall_seconds")
    took = f", {wall / 60:.0f} min with {summary.get('threads')} threads" if wall else ""
    return f"""# {ckpt.name}

CRNN surrogate of the `{ckpt.preset.name}` preset ({ckpt.preset.description}).

## Model
- architecture: `{json.dumps(cfg.to_dict())}` — {count_parameters(ckpt.model):,} parameters
- frame τ = {ckpt.frame_time}; grid scale {ckpt.grid_scale} (the model runs on fields average-pooled by {ckpt.grid_scale})
- training ranges: ⟨φ⟩ ∈ [{means[0]:.3f}, {means[1]:.3f}],
  η ∈ [{etas[0]:.3f}, {etas[1]:.3f}] %, model grid {tr.get('grid')}^{ckpt.dim}, {tr.get('frames')} frames per sequence

## Data and training
- dataset: {ds.get('sequences')} sequences × {ds.get('frames')} frames at {ds.get('size')} points per side,
  solver `{ds.get('solver')}`, generated by `crane-viz generate` (settings: `{ds.get('settings')}`), sha256 `{digest}…`
- training settings: `{json.dumps(tr.get('config', {}))}`
- {log.get('epochs', '?')} epochs, best validation loss {best},
  wall time {hours:.2f} h on {machine}, torch {torch.__version__}

## Evaluation (held-out seeds from {spec['seed']}, disjoint from training)

Produced by `{command}` (protocol `{protocol}`: {spec['cases']} cases at {spec['size']} points per side,
horizon {horizon} frames, to {horizon * spec['extrapolate']} frames, ensemble of {spec['ensemble']} at ⟨φ⟩ = 0.5,
η = {100 * ens['eta']:.1f} %{took}). The papers' figures are for their
larger models, grids and datasets; ours come from a CPU-sized model and dataset.

| measure | this checkpoint | paper |
|---|---|---|
{table}

![evaluation](evaluation.png)
{"![protocol](protocol.png)" if "linear_response" in summary else ""}
{notes}"""


PROTOCOL_HEADING = "## The papers' protocol"


def protocol_section(ckpt: Checkpoint, summary: dict, command: str) -> str:
    """The card section of an `evaluate --protocol paper` run, figures named paper-*.png."""
    spec = summary["spec"]
    table = "\n".join(f"| {a} | {b} | {c} |" for a, b, c in evaluation_rows(ckpt, summary))
    wall = summary.get("wall_seconds")
    took = f"; {wall / 60:.0f} min with {summary.get('threads')} thread(s)" if wall else ""
    return f"""{PROTOCOL_HEADING}

`{command}` — {spec['cases']} held-out cases at {spec['size']} points per side against the
`{ckpt.preset.solver}` reference, horizon {spec['horizon']} frames ({spec['horizon'] * ckpt.frame_time:g} τ),
rollouts to {spec['horizon'] * spec['extrapolate']} frames, ensemble of {spec['ensemble']}, phase points
{spec['phase_points']}{took}. Targets are the papers' figures (issue #13); fewer cases than the papers.

| measure | this checkpoint | paper / target |
|---|---|---|
{table}

![papers' protocol](paper-evaluation.png)
![papers' protocol, what users see](paper-protocol.png)
"""


def write_protocol_section(ckpt: Checkpoint, summary: dict, command: str) -> Path:
    """Add the papers'-protocol section to MODEL_CARD.md, replacing an earlier one."""
    from ..io.files import atomic_path

    path = ckpt.path / "MODEL_CARD.md"
    card = path.read_text() if path.is_file() else f"# {ckpt.name}\n"
    section = protocol_section(ckpt, summary, command)
    if PROTOCOL_HEADING in card:
        start = card.index(PROTOCOL_HEADING)
        end = card.find("\n## ", start + len(PROTOCOL_HEADING))
        card = card[:start] + section + (card[end + 1:] if end >= 0 else "")
    else:
        card = card.rstrip("\n") + "\n\n" + section
    with atomic_path(path) as tmp:
        tmp.write_text(card)
    return path


def write_card(ckpt: Checkpoint, summary: dict, log_path: Path | None, command: str, notes: str = "") -> Path:
    """Write MODEL_CARD.md into the checkpoint folder (the card is not part of the weights hash)."""
    from ..io.files import atomic_path

    path = ckpt.path / "MODEL_CARD.md"
    with atomic_path(path) as tmp:
        tmp.write_text(render_card(ckpt, summary, training_summary(log_path), command, notes))
    return path


def render_training_card(ckpt: Checkpoint, rows: list[dict], settings: dict, job_folder: Path) -> str:
    """Model card of a checkpoint made by a training job: data, settings, loss history, hardware.

    It carries no held-out evaluation; the card says how to add one with `crane-viz evaluate`.
    """
    cfg, tr, ds = ckpt.model_config, ckpt.training, ckpt.config.get("dataset", {})
    log = {"epochs": rows[-1]["epoch"], "wall_seconds": sum(r["seconds"] for r in rows)} if rows else {}
    best = min(rows, key=lambda r: r["val_loss"]) if rows else {}
    shown = rows if len(rows) <= 12 else [*rows[:3], *rows[-9:]]
    table = "\n".join(f"| {r['epoch']} | {r['horizon']} | {r['train_loss']:.4g} | {r['val_loss']:.4g} | "
                      f"{r['seconds']:.1f} |" for r in shown)
    return f"""# {ckpt.name}

CRNN surrogate of the `{ckpt.preset.name}` preset ({ckpt.preset.description}), trained by a training
job of the explorer (`crane-viz train-job {job_folder}`).

## Model
- architecture: `{json.dumps(cfg.to_dict())}` — {count_parameters(ckpt.model):,} parameters
- frame τ = {ckpt.frame_time}; grid scale {ckpt.grid_scale}
- training data span ⟨φ⟩ ∈ [{tr['mean_range'][0]:.3f}, {tr['mean_range'][1]:.3f}],
  η ∈ [{100 * tr['misfit_range'][0]:.3f}, {100 * tr['misfit_range'][1]:.3f}] %, model grid {tr.get('grid')}^{ckpt.dim},
  {tr.get('frames')} frames per sequence

## Data and training
- dataset: {ds.get('sequences')} sequences × {ds.get('frames')} frames at {ds.get('size')} points per side,
  solver `{ds.get('solver')}`, `{ds.get('path')}` (sha256 `{str(ds.get('sha256'))[:16]}…`)
- job settings: `{json.dumps(settings)}`
- {log.get('epochs', 0)} epochs in {log.get('wall_seconds', 0.0) / 60:.1f} min on
  {platform.processor() or platform.machine()} (torch {torch.__version__}); best validation loss
  {best.get('val_loss', float('nan')):.4g} at epoch {best.get('epoch', '?')} (the checkpoint keeps that epoch)

| epoch | rollout frames | train loss | validation loss | seconds |
|---|---|---|---|---|
{table}

## Evaluation
Not evaluated on held-out cases yet: `crane-viz evaluate {ckpt.name} --card` adds the papers'
measures (MAE over and beyond the horizon, interface error, ensemble F/V, phase agreement).
"""
