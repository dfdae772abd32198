"""Each shipped checkpoint still performs: fixed cases against the reference, in seconds.

Per case, the MAE after `frames` frames (on the model grid) must stay under a stated bound: the
MAE measured when the checkpoint was shipped, plus 25 % (so a changed stencil, solver, loader or
initial condition fails). Over all cases, the surrogate must also be closer to the reference than
a stated fraction of the "nothing happens" baseline (φ₀ against the reference): half (measured
ratios: 3D 0.34–0.35 since the 2026-12-06 plain-3d, whose predecessor's 0.63 needed three quarters).
"""

from pathlib import Path

import pytest
import torch

from crane_viz.analysis import metrics
from crane_viz.engines import make_solver
from crane_viz.engines.base import side_by_side
from crane_viz.engines.surrogate import SurrogateEngine, downsample
from crane_viz.nn.checkpoint import list_checkpoints, load_checkpoint
from crane_viz.physics.initial import as_batch, perlin_field

SHIPPED = Path(__file__).resolve().parents[1] / "checkpoints"
# name: (reference grid, frames, Perlin amplitude and cells, [(mean, eta, seed, MAE bound)], baseline fraction)
# bounds: measured with this file's cases (coherent-2d 2026-11-25: 0.152, 0.041; coherent-2d-elastic
# 2026-12-07, stage 9: 0.0212, 0.0314; plain-3d 2026-12-07, stage 9: 0.1392, 0.0735), × 1.25
CASES = {
    "coherent-2d": (32, 20, (0.1, 4), [(0.5, 0.006, 11, 0.19), (0.42, 0.002, 12, 0.051)], 0.5),
    "coherent-2d-elastic": (32, 20, (0.1, 4), [(0.5, 0.006, 11, 0.027), (0.42, 0.002, 12, 0.039)], 0.5),
    # stage 8 flip-averaged and fine-tuned (2026-12-07: 0.0213, 0.0276, × 1.25)
    "coherent-2d-elastic-sym": (32, 20, (0.1, 4), [(0.5, 0.006, 11, 0.027), (0.42, 0.002, 12, 0.035)], 0.5),
    "plain-3d": (16, 20, (0.1, 4), [(0.5, 0.0, 21, 0.174), (0.42, 0.0, 22, 0.092)], 0.5),
    # the reference at 32³, the model on 16³ (2026-12-07, stage D: 0.0955, 0.0923, × 1.25)
    "plain-3d-half": (32, 20, (0.1, 4), [(0.5, 0.0, 21, 0.119), (0.42, 0.0, 22, 0.115)], 0.5),
    # 20 frames of 5 τ = the 100 τ of the sweeps it is made for (flip-averaged 2026-12-07: 0.0615,
    # 0.1613, × 1.25; one pass 2026-12-06: 0.0522, 0.1619)
    "coherent-2d-coarse5": (32, 20, (0.1, 4), [(0.5, 0.006, 11, 0.077), (0.42, 0.002, 12, 0.202)], 0.5),
}


def test_every_shipped_checkpoint_is_tested():
    shipped = {p.name for p in SHIPPED.iterdir() if (p / "config.json").is_file()}
    assert shipped == set(CASES) and set(CASES) <= set(list_checkpoints())


@pytest.mark.parametrize("name", sorted(CASES))
def test_shipped_checkpoint_beats_stated_mae(name):
    grid, frames, (amplitude, cells), cases, fraction = CASES[name]
    ckpt = load_checkpoint(SHIPPED / name)
    phi0 = as_batch([perlin_field(grid, ckpt.dim, mean=m, amplitude=amplitude, cells=cells, seed=s)
                     for m, _, s, _ in cases])
    eta = torch.tensor([e for _, e, _, _ in cases])
    sur_engine = SurrogateEngine(ckpt, misfit=eta, device="cpu")
    ref_engine = make_solver(ckpt.preset.solver, ckpt.preset, misfit=eta)
    *_, (s, r) = side_by_side(sur_engine, ref_engine, phi0, frames)
    ref = downsample(r.phi, ckpt.grid_scale)
    mae = metrics.mae(ref, s.phi, ckpt.dim)
    baseline = metrics.mae(ref, downsample(phi0, ckpt.grid_scale), ckpt.dim)
    bounds = torch.tensor([b for *_, b in cases])
    assert (mae < bounds).all(), f"MAE {mae.tolist()} above the stated {bounds.tolist()}"
    assert mae.mean() < fraction * baseline.mean(), f"MAE {mae.tolist()} vs no-evolution {baseline.tolist()}"
    drift = (s.phi.mean(dim=tuple(range(1, 1 + ckpt.dim))) - phi0.mean(dim=tuple(range(1, 1 + ckpt.dim))))
    assert drift.abs().max() < 1e-5  # the conserving output layer


def test_run_with_the_shipped_2d_checkpoint_writes_the_documented_file(tmp_path, capsys):
    import h5py

    from crane_viz.cli import main

    out = tmp_path / "run.h5"
    code = main(["run", "--checkpoint", "coherent-2d", "--reference", "spectral", "--size", "32",
                 "--frames", "3", "--eta", "0.006", "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    with h5py.File(out) as f:
        assert f["surrogate/phi"].shape == (4, 32, 32) and f["reference/phi"].shape == (4, 32, 32)
        assert f.attrs["checkpoint"] == "coherent-2d" and f["metrics/rmse"].shape == (3,)
        assert f.attrs["stop_reason"] == "" and float(f["metrics/rmse"][-1]) < 0.2


# single-mode growth per frame (evaluation.linear_response, 64² / 32³ at ⟨φ⟩ = 0.5, amplitude 1e-3),
# measured when these checkpoints were evaluated in the papers' protocol (2D 2026-11-25, 3D
# 2026-12-07). They are far from the reference's σ(k, n, η) (coherent-2d grows ⟨11⟩ at η = 1 % by
# 1.072 where the reference damps it to 0.661; plain-3d grows both modes by ≈ 1.9 where FD gives
# 2.9–3.4, its predecessors by ≈ 1.15 and 1.67): reaching the reference is issue #13's work.
# This test keeps a change of loader, stencil or conditioning from
# altering the shipped dispersion unnoticed (±2 %).
GROWTH = {
    "coherent-2d": {("<10>", 0.0): 1.514, ("<10>", 0.006): 1.277, ("<10>", 0.01): 1.070,
                    ("<11>", 0.0): 1.573, ("<11>", 0.006): 1.309, ("<11>", 0.01): 1.072},
    # the elastic input more than halves the ⟨11⟩ error at η = 1 % (stage 9, 2026-12-07 evening: 0.830
    # against the reference's 0.661; stage 8 0.841)
    "coherent-2d-elastic": {("<10>", 0.0): 1.529, ("<10>", 0.006): 1.360, ("<10>", 0.01): 1.107,
                            ("<11>", 0.0): 1.582, ("<11>", 0.006): 1.208, ("<11>", 0.01): 0.830},
    # flip averaging leaves the single modes about ⟨φ⟩ = ½ where they were (2026-12-07)
    "coherent-2d-elastic-sym": {("<10>", 0.0): 1.507, ("<10>", 0.006): 1.348, ("<10>", 0.01): 1.107,
                                ("<11>", 0.0): 1.558, ("<11>", 0.006): 1.204, ("<11>", 0.01): 0.843},
    # stage 9 (2026-12-07): the small-amplitude data moved both from stage 8's 1.672 / 1.633
    "plain-3d": {("<100>", 0.0): 1.969, ("<111>", 0.0): 1.915},
    "plain-3d-half": {("<100>", 0.0): 1.470, ("<111>", 0.0): 1.564},
    # growth per 5-τ frame (reference: 5.45, 4.59, 1.56, 4.35, 2.14, 0.124); the flip average keeps them
    "coherent-2d-coarse5": {("<10>", 0.0): 2.800, ("<10>", 0.006): 2.629, ("<10>", 0.01): 1.597,
                            ("<11>", 0.0): 2.934, ("<11>", 0.006): 1.740, ("<11>", 0.01): 2.203},
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_shipped_single_mode_growth_is_the_one_measured(name):
    from crane_viz.analysis.evaluation import linear_response

    out = linear_response(load_checkpoint(SHIPPED / name), "cpu")
    measured = {(r["mode"], r["eta"]): r["surrogate"] for r in out["modes"]}
    assert set(measured) == set(GROWTH[name])
    for key, expected in GROWTH[name].items():
        assert measured[key] == pytest.approx(expected, rel=0.02), key
