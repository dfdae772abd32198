"""Learning curves: the papers' measures of a training run's epoch snapshots against training hours.

`train --snapshot-every N` keeps the checkpoint of every N-th epoch in `<run>/epochs/NNNN` with
its cumulative training hours; `learning_curve` evaluates each snapshot not evaluated yet (so an
interrupted or growing run is continued, not redone) into `<run>/curve/NNNN.json`, then writes
`<run>/learning_curve.json` and `<run>/learning_curve.png`: what more compute has bought so far.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

from ..analysis.evaluation import EvalSpec, evaluate
from ..errors import InputError
from ..io.files import atomic_path
from ..nn.checkpoint import load_checkpoint
from .loop import SNAPSHOTS

CURVE, SUMMARY, FIGURE = "curve", "learning_curve.json", "learning_curve.png"


def headline(summary: dict) -> dict:
    """The figures a learning curve tracks, from one `evaluate` summary (None where absent)."""
    acc = summary["accuracy"]
    snaps = acc.get("snapshots", {})
    at = acc.get("at_times", {})
    late = "100" if "100" in at else (max(at, key=float) if at else None)
    return {
        "mae_within_horizon": acc["mae_median_within_horizon"],
        "mae_at_end": acc["mae_median_at_end"],
        "interface_error": acc["interface_error_median_within_horizon"],
        "energy_rel_error_100": at[late]["energy"]["median"] if late else None,
        "length_rel_error_100": at[late]["length"]["median"] if late else None,
        "alignment_gap_100": snaps.get("100", {}).get("alignment_max_gap"),
        "max_energy_rise": acc.get("max_energy_rise"),
        "linear_response_error": summary.get("linear_response", {}).get("max_relative_error"),
        "phase_agreement": summary.get("phase", {}).get("agreement"),
        "stable_frames": acc["min_stable_frames"],
    }


def snapshots(run: Path) -> list[Path]:
    """The run's epoch snapshots, oldest first."""
    folder = run / SNAPSHOTS
    if not folder.is_dir():
        raise InputError(f"{run}: no {SNAPSHOTS}/ snapshots; train with --snapshot-every N")
    return sorted(p for p in folder.iterdir() if (p / "config.json").is_file())


def learning_curve(run: str | Path, spec: EvalSpec, *, protocol: str, device="cpu", every: int = 1,
                   progress: Callable[[str], None] | None = None) -> list[dict]:
    """Evaluate the snapshots not yet evaluated (every `every`-th, plus the newest); rows by epoch."""
    run = Path(run)
    note = progress or (lambda _: None)
    found = snapshots(run)
    chosen = [p for i, p in enumerate(found) if (i + 1) % every == 0 or p == found[-1]]
    (run / CURVE).mkdir(exist_ok=True)
    rows = []
    for path in chosen:
        target = run / CURVE / f"{path.name}.json"
        if target.is_file():
            saved = json.loads(target.read_text())
            if saved.get("spec") == spec.__dict__:
                rows.append(saved["row"])
                continue
        ckpt = load_checkpoint(path, device=device)
        note(f"epoch {path.name}")
        summary = evaluate(ckpt, spec, device, protocol=protocol)
        metrics = ckpt.config.get("metrics", {})
        row = {"epoch": metrics.get("epoch"), "hours": metrics.get("train_hours"),
               "val_loss": metrics.get("val_loss"), **headline(summary)}
        with atomic_path(target) as tmp:
            tmp.write_text(json.dumps({"spec": spec.__dict__, "row": row, "summary": summary}))
        rows.append(row)
    rows.sort(key=lambda r: r["epoch"])
    with atomic_path(run / SUMMARY) as tmp:
        tmp.write_text(json.dumps({"protocol": protocol, "spec": spec.__dict__, "rows": rows}, indent=1))
    figure(rows, run / FIGURE, title=f"{run.name}: {protocol} protocol", dim=load_checkpoint(found[-1]).dim)
    return rows


# per dimension: (row key, title, the paper's target or None); the 3D paper reports no MAE and
# plain 3D has no η, so its third panel is L(t) and its F/V target the 3D paper's 5.5 %
PANELS = {
    2: (("mae_within_horizon", "median MAE within horizon", 0.025),
        ("mae_at_end", "median MAE at the end", 0.09),
        ("alignment_gap_100", "alignment gap at 100 τ (max over η bins)", 0.1),
        ("energy_rel_error_100", "F/V rel. error at 100 τ", 0.05),
        ("linear_response_error", "single-mode growth max rel. error", None),
        ("max_energy_rise", "largest F/V rise (of F(0))", 0.001)),
    3: (("mae_within_horizon", "median MAE within horizon", None),
        ("mae_at_end", "median MAE at the end", None),
        ("length_rel_error_100", "L(t) rel. error at 100 τ", None),
        ("energy_rel_error_100", "F/V rel. error at 100 τ", 0.055),
        ("linear_response_error", "single-mode growth max rel. error", None),
        ("max_energy_rise", "largest F/V rise (of F(0))", 0.001)),
}


def figure(rows: list[dict], path: Path, title: str, dim: int = 2) -> Path:
    """One panel per tracked figure of a `dim`-D model against training hours, the paper's target dotted."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 3, figsize=(13, 6.5))
    hours = [r["hours"] for r in rows]
    for ax, (key, label, target) in zip(axes.flat, PANELS[dim]):
        values = [r.get(key) for r in rows]
        points = [(h, v) for h, v in zip(hours, values) if v is not None and h is not None]
        if points:
            ax.plot(*zip(*points), "o-", color="C3")
        if target is not None:
            ax.axhline(target, color="k", ls=":", lw=1, label="paper target")
            ax.legend(fontsize=8)
        ax.set_xlabel("training hours"), ax.set_title(label, fontsize=9)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)
    return path
