"""The papers' evaluation protocol: its measures checked against derived facts, on tiny settings."""

import json
import math

import numpy as np
import pytest
import torch

from crane_viz.analysis import metrics
from crane_viz.analysis.evaluation import largest_energy_rise, linear_response, protocol_spec
from crane_viz.cli import main
from crane_viz.errors import InputError
from crane_viz.nn.checkpoint import load_checkpoint, save_checkpoint
from crane_viz.nn.model import CRNN, get_config
from crane_viz.physics.equations import d2w, tr_b
from crane_viz.physics.presets import get_preset


def stripes(size: int, wave: tuple[int, int], amplitude: float = 0.4) -> torch.Tensor:
    x = torch.arange(size, dtype=torch.float64)
    phase = 2 * math.pi * (wave[0] * x[:, None] + wave[1] * x[None, :]) / size
    return (0.5 + amplitude * torch.cos(phase))[None]


def test_axis_anisotropy_reads_axes_diagonals_and_isotropy():
    """+1 for ⟨10⟩ stripes, −1 for ⟨11⟩ stripes, ≈ 0 (within 0.05) for white noise."""
    assert metrics.axis_anisotropy(stripes(64, (4, 0)), 2).item() == pytest.approx(1.0)
    assert metrics.axis_anisotropy(stripes(64, (0, 5)), 2).item() == pytest.approx(1.0)
    assert metrics.axis_anisotropy(stripes(64, (3, 3)), 2).item() == pytest.approx(-1.0)
    noise = torch.rand(8, 128, 128, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    assert metrics.axis_anisotropy(noise, 2).abs().max() < 0.05


def test_ssim_and_mode_amplitude():
    a = stripes(32, (2, 0))
    assert metrics.ssim(a, a, 2).item() == pytest.approx(1.0)
    noisy = [a + s * torch.randn(a.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
             for s in (0.01, 0.1, 0.3)]
    values = [metrics.ssim(a, b, 2).item() for b in noisy]
    assert 1 > values[0] > values[1] > values[2] > 0
    # a cosine of amplitude A puts A/2 into each of ±k
    assert metrics.mode_amplitude(a, (2, 0)).item() == pytest.approx(0.2)
    assert metrics.mode_amplitude(a, (-2, 0)).item() == pytest.approx(0.2)
    assert metrics.mode_amplitude(a, (0, 2)).item() == pytest.approx(0.0, abs=1e-12)


def test_largest_energy_rise():
    falling = np.array([[1.0, 0.9, 0.8, 0.8]])
    assert largest_energy_rise(falling) == 0.0
    bumpy = np.array([[1.0, 0.5, 0.6, 0.4], [2.0, 1.0, 1.0, 1.0]])
    assert largest_energy_rise(bumpy) == pytest.approx(0.1)  # 0.6 − 0.5 over F(0) = 1


def test_linear_response_reference_follows_the_dispersion_relation(tmp_path):
    """The reference's growth per frame of each single mode is exp(σ τ) with
    σ = −k²(w″(⟨φ⟩) + ε k² + η² trB(n)) to 0.5 %: the harness measures what the issue says."""
    preset = get_preset("coherent-2d")
    save_checkpoint(tmp_path / "tiny", CRNN(get_config("tiny-2d")), name="tiny", preset=preset)
    out = linear_response(load_checkpoint(tmp_path / "tiny"), "cpu")
    assert len(out["modes"]) == 6
    for row in out["modes"]:
        wave = torch.tensor(row["wave"], dtype=torch.float64)
        n = wave / wave.norm()
        k = row["k"]
        trb = float(tr_b(n[None], preset.c11, preset.c12, preset.c44)[0])
        sigma = -k**2 * (float(d2w(torch.tensor(0.5), 5.0)) + 5.0 * k**2 + row["eta"] ** 2 * trb)
        assert row["reference"] == pytest.approx(math.exp(sigma), rel=5e-3), row
    by = {(r["mode"], r["eta"]): r["reference"] for r in out["modes"]}
    assert by[("<11>", 0.01)] < 1 < by[("<10>", 0.01)]  # elasticity damps the hard direction


def test_protocol_specs_and_bounds():
    paper = protocol_spec("paper", 2)
    assert (paper.size, paper.horizon, paper.extrapolate) == (128, 100, 5)
    paper3 = protocol_spec("paper", 3)
    assert paper3.size == 64 and paper3.horizon * 0.5 >= 100
    assert protocol_spec("paper", 2, cases=3).cases == 3
    with pytest.raises(InputError, match="--protocol"):
        protocol_spec("kind", 2)
    for key in ("cases", "horizon", "extrapolate", "batch", "ensemble"):
        with pytest.raises(InputError, match=f"--{key}"):
            protocol_spec("quick", 2, **{key: 0})
    with pytest.raises(InputError, match="--seed"):
        protocol_spec("quick", 2, seed=-1)
    coarse = protocol_spec("paper", 2, stride=5)  # a model stepping 5 τ: the same simulated times
    assert (coarse.horizon, coarse.phase_frames, coarse.size) == (20, 20, 128)
    assert protocol_spec("paper", 2, stride=3, horizon=30, phase_frames=33).horizon == 30
    with pytest.raises(InputError, match="--horizon"):
        protocol_spec("paper", 2, stride=3)


def test_evaluate_paper_protocol_cli_on_tiny_settings(tmp_path, capsys):
    """`evaluate --protocol paper` with tiny overrides writes every measure and figure, adds its
    section to a copy of the shipped card (keeping the rest, replacing an earlier section), and an
    existing output needs --overwrite (refused before any work)."""
    import shutil

    from crane_viz.analysis.modelcard import PROTOCOL_HEADING, write_protocol_section
    from crane_viz.nn.checkpoint import REPO_CHECKPOINTS

    shutil.copytree(REPO_CHECKPOINTS / "coherent-2d", tmp_path / "ck")
    before = (tmp_path / "ck" / "MODEL_CARD.md").read_text().split(PROTOCOL_HEADING)[0].rstrip("\n")
    args = ["evaluate", str(tmp_path / "ck"), "--paper-card", "--protocol", "paper", "--cases", "4", "--size", "16",
            "--horizon", "50", "--extrapolate", "2", "--ensemble", "2", "--phase-points", "3",
            "--phase-frames", "5", "--batch", "4", "--out", str(tmp_path / "ev")]
    assert main(args) == 0, capsys.readouterr().err
    printed = capsys.readouterr().out
    assert "domain alignment at 90 τ" in printed and "single-mode growth" in printed
    summary = json.loads((tmp_path / "ev" / "summary.json").read_text())
    assert summary["protocol"].startswith("paper (with") and summary["dim"] == 2
    acc = summary["accuracy"]
    assert set(acc["at_times"]) == {"10", "50", "90", "100"} and set(acc["snapshots"]) == {"90", "100"}
    snap = acc["snapshots"]["90"]
    assert 0 < snap["ssim_median"] <= 1 and sum(b["cases"] for b in snap["alignment"]) == 4
    assert acc["reference_max_energy_rise"] < 1e-3 and acc["max_energy_rise"] >= 0
    assert (tmp_path / "ev" / "protocol.png").stat().st_size > 10_000
    card = (tmp_path / "ck" / "MODEL_CARD.md").read_text()
    assert card.startswith(before) and card.count(PROTOCOL_HEADING) == 1
    assert "| domain alignment at 90 τ" in card and (tmp_path / "ck" / "paper-protocol.png").is_file()
    write_protocol_section(load_checkpoint(tmp_path / "ck"), summary, "again")
    again = (tmp_path / "ck" / "MODEL_CARD.md").read_text()
    assert again.count(PROTOCOL_HEADING) == 1 and "`again`" in again and again.startswith(before)
    assert main(args) == 2 and "--overwrite" in capsys.readouterr().err


def test_learning_curve_evaluates_each_snapshot_once(tmp_path, capsys):
    """Two epoch snapshots give two rows with their training hours; a second call reuses them."""
    from crane_viz.training.dataset import DatasetSpec, generate
    from crane_viz.training.loop import TrainConfig, train

    data = generate(DatasetSpec(sequences=4, frames=4, size=16, batch=4, seed=3), tmp_path / "d.h5")
    train(data, tmp_path / "run", TrainConfig(model="tiny-2d", epochs=2, batch=2, snapshot_every=1))
    args = ["learning-curve", str(tmp_path / "run"), "--cases", "2", "--size", "16", "--horizon", "3",
            "--extrapolate", "1", "--ensemble", "2", "--phase-points", "2", "--phase-frames", "2",
            "--batch", "2"]
    assert main(args) == 0, capsys.readouterr().err
    curve = json.loads((tmp_path / "run" / "learning_curve.json").read_text())
    rows = curve["rows"]
    assert [r["epoch"] for r in rows] == [1, 2] and 0 < rows[0]["hours"] < rows[1]["hours"]
    assert all(0 < r["mae_within_horizon"] < 1 and r["linear_response_error"] >= 0 for r in rows)
    assert (tmp_path / "run" / "learning_curve.png").stat().st_size > 10_000
    saved = {p: p.stat().st_mtime_ns for p in (tmp_path / "run" / "curve").iterdir()}
    assert main(args) == 0
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "run" / "curve").iterdir()} == saved
    assert main(["learning-curve", str(tmp_path)]) == 2
    assert "--snapshot-every" in capsys.readouterr().err


def test_stability_command_reports_a_sane_model_and_catches_a_diverging_one(tmp_path, capsys):
    """`crane-viz stability` on the shipped plain-3d (8³, 20 frames): rows at the asked frames,
    printed in order as they are made (a run of hours shows its state in a log), fields in range,
    mass to round-off, F/V falling; the same checkpoint with weights scaled ×50 leaves the range,
    diverges, and the rollout stops there instead of running on."""
    import dataclasses

    from crane_viz.analysis.stability import long_rollout
    from crane_viz.settings import StabilitySettings

    out = tmp_path / "st.json"
    assert main(["stability", "plain-3d", "--size", "8", "--frames", "20", "--report-every", "10",
                 "--device", "cpu", "--out", str(out)]) == 0
    good = json.loads(out.read_text())
    assert [r["frame"] for r in good["rows"]] == [0, 10, 20]
    printed = capsys.readouterr().out
    assert printed.index("frame 0 ") < printed.index("frame 10 ") < printed.index("frame 20 ") < printed.index("wrote")
    events = []
    long_rollout(load_checkpoint("plain-3d"), StabilitySettings(size=8, frames=12, report_every=5),
                 progress=lambda done, total: events.append(done), on_row=lambda row: events.append(f"row {row['frame']}"))
    assert events.index("row 5") == events.index(5) - 1 and events.index("row 10") < events.index(11)
    assert good["first_frame_out_of_range"] == good["first_frame_diverged"] == [-1] * 4
    assert max(r["max_mass_drift"] for r in good["rows"]) < 1e-6
    assert all(np.array(good["rows"][-1]["f_over_v"]) < np.array(good["rows"][0]["f_over_v"]))

    ckpt = load_checkpoint("plain-3d")
    wild = CRNN(ckpt.model_config)
    wild.load_state_dict({k: 50 * v for k, v in ckpt.model.state_dict().items()})
    bad = long_rollout(dataclasses.replace(ckpt, model=wild.eval()),
                       StabilitySettings(size=8, frames=500, report_every=100))
    assert all(0 < f for f in bad["first_frame_diverged"])
    assert all(0 < a <= b for a, b in zip(bad["first_frame_out_of_range"], bad["first_frame_diverged"]))
    assert bad["frames_run"] == max(bad["first_frame_diverged"]) < 500
