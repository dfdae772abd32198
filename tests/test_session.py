"""The side-by-side session and `crane-viz run`, with an untrained model (trained ones: test_shipped)."""

import json

import h5py
import numpy as np
import pytest
import torch

from crane_viz.analysis import metrics
from crane_viz.cli import main
from crane_viz.engines import SpectralSolver
from crane_viz.engines.base import State
from crane_viz.engines.surrogate import SurrogateEngine, downsample
from crane_viz.live.session import Session
from crane_viz.nn.checkpoint import save_checkpoint
from crane_viz.nn.model import CRNN, get_config
from crane_viz.physics.initial import perlin_field
from crane_viz.physics.presets import get_preset

P2 = get_preset("coherent-2d")


def tiny_surrogate(grid_scale=1, preset=P2, name="tiny-2d"):
    model = CRNN(get_config(name))
    return SurrogateEngine(model, preset=preset, misfit=0.006, grid_scale=grid_scale,
                           frame_time=preset.frame_time, device="cpu")


def field(size=16, dim=2, mean=0.5):
    return perlin_field(size, dim, mean=mean, amplitude=0.1, cells=4, seed=1)


def test_session_runs_pauses_resumes_and_metrics_match_functions():
    phi0 = field()
    s = Session(tiny_surrogate(), phi0, P2, reference=SpectralSolver(P2, misfit=0.006),
                misfit=0.006, device=torch.device("cpu"))
    frames = []
    for f in s.run(5):
        frames.append(f)
        if len(frames) == 2:
            s.pause()
    assert len(frames) == 2 and s.paused
    s.resume()
    frames += list(s.run(2))
    assert [f.index for f in frames] == [1, 2, 3, 4]
    last = frames[-1]
    sur = torch.tensor(last.surrogate)[None]
    ref = torch.tensor(last.reference)[None]
    m = last.metrics
    assert m["rmse"] == pytest.approx(float(metrics.rmse(ref, sur, 2)), rel=1e-6)
    assert m["mae"] == pytest.approx(float(metrics.mae(ref, sur, 2)), rel=1e-6)
    assert m["delta"] == pytest.approx(float(metrics.interface_displacement(ref, sur, 2)), rel=1e-5)
    e = metrics.energy(ref.double(), P2, 0.006)
    assert m["reference_energy_total"] == pytest.approx(float(e["total"]), rel=1e-5)
    assert m["reference_energy_elastic"] > 0
    assert abs(m["surrogate_mass_drift"]) < 1e-6 and abs(m["reference_mass_drift"]) < 1e-6
    assert m["surrogate_ms"] > 0 and m["reference_ms"] > 0 and len(s.history) == 4


def test_half_resolution_surrogate_compared_on_its_grid():
    phi0 = field(16)
    s = Session(tiny_surrogate(grid_scale=2), phi0, P2, reference=SpectralSolver(P2, misfit=0.006),
                misfit=0.006, device=torch.device("cpu"))
    f = s.step()
    assert f.surrogate.shape == (8, 8) and f.reference.shape == (16, 16)
    assert s.comparison_grid == (8, 8)
    ref_c = downsample(torch.tensor(f.reference)[None], 2)
    assert f.metrics["rmse"] == pytest.approx(float(metrics.rmse(ref_c, torch.tensor(f.surrogate)[None], 2)),
                                              rel=1e-6)


class NaNEngine:
    """An engine that diverges on its second step."""

    name, dim, frame_time, grid_scale = "nan", 2, 1.0, 1

    def init_state(self, phi):
        return State(phi=phi)

    def step(self, state):
        phi = state.phi * (float("nan") if state.frame >= 1 else 1.0)
        return state.advanced(phi, self.frame_time)


def test_blow_up_stops_with_reason():
    s = Session(NaNEngine(), field(), P2, device=torch.device("cpu"))
    frames = list(s.run(10))
    assert len(frames) == 1 and s.stopped
    assert "surrogate blew up at frame 2" in s.stop_reason
    assert s.step() is None


def test_training_range_warnings_and_edit_conserves_mass():
    s = Session(tiny_surrogate(), field(mean=0.9), P2, misfit=0.02, device=torch.device("cpu"),
                reference=SpectralSolver(P2, misfit=0.02),
                training={"mean_range": [0.2, 0.8], "misfit_range": [0.0, 0.012], "grid": 64})
    text = " ".join(s.warnings)
    assert "⟨φ⟩ = 0.900 is outside the training range [0.200, 0.800]" in text and "η = 2.00 %" in text
    # a range recorded from samples of U(0, 1.2 %): η = 0 and ⟨φ⟩ at its edge are inside (#16)
    sampled = {"mean_range": [0.20628, 0.79813], "misfit_range": [0.00002, 0.01165], "grid": 16}
    edge = Session(tiny_surrogate(), field(mean=0.2), P2, misfit=0.0, device=torch.device("cpu"), training=sampled)
    assert edge.warnings == []
    s.step()
    bump = np.zeros((16, 16))
    bump[4:7, 4:7] = 0.3
    before = s.measure()
    s.edit(bump)
    after = s.measure()
    assert after["rmse"] == pytest.approx(before["rmse"], abs=1e-6)  # same edit on both
    assert abs(after["surrogate_mass_drift"] - before["surrogate_mass_drift"]) < 1e-6
    assert abs(after["reference_mass_drift"] - before["reference_mass_drift"]) < 1e-6


def test_horizon_note_from_the_frame_past_the_training_sequences():
    """A model trained on 3-frame sequences (2 τ) is noted as extrapolating from t = 3 on (the
    explorer's status line: test_live); a model without a training block gets none."""
    s = Session(tiny_surrogate(), field(), P2, misfit=0.006, device=torch.device("cpu"),
                training={"mean_range": [0.2, 0.8], "misfit_range": [0.0, 0.012], "grid": 16, "frames": 3})
    assert s.training_span == pytest.approx(2.0)
    notes = []
    for _ in range(3):
        assert s.step() is not None, s.stop_reason
        notes.append(s.horizon_note())
    assert notes[:2] == [None, None]
    assert notes[2] == "t = 3 τ is past the 2 τ of this model's training sequences: it extrapolates in time"
    s.reset(s.phi0)
    assert s.horizon_note() is None
    bare = Session(tiny_surrogate(), field(), P2, misfit=0.006, device=torch.device("cpu"))
    bare.step()
    assert bare.training_span is None and bare.horizon_note() is None


class Replay:
    """An engine that steps through given fields (a model whose output is known)."""

    name, dim, frame_time, grid_scale = "replay", 2, 1.0, 1

    def __init__(self, fields):
        self.fields = fields

    def init_state(self, phi):
        return State(phi=phi, time=0.0, frame=0, hidden=None)

    def step(self, state):
        phi = torch.as_tensor(self.fields[state.frame], dtype=state.phi.dtype)[None]
        return State(phi=phi, time=state.time + 1, frame=state.frame + 1, hidden=None)


def test_energy_note_once_the_surrogate_raises_the_free_energy():
    """A surrogate that goes from a coarsened field back to the mixed start raises F/V: noted with
    the rise in units of F(0) and its frame; the reference solver's own rollout never is, nor is a
    rise the user's edit made."""
    phi0 = field()
    spectral = SpectralSolver(P2, misfit=0.006)
    state = spectral.init_state(torch.as_tensor(phi0)[None])
    for _ in range(10):
        state = spectral.step(state)
    later = state.phi[0].numpy()
    s = Session(Replay([later, phi0]), phi0, P2, misfit=0.006, device=torch.device("cpu"))
    f = [s.measure()["surrogate_energy_total"]]
    s.step()
    f.append(s.history[-1]["surrogate_energy_total"])
    assert f[1] < f[0] and s.energy_note() is None
    s.step()
    assert s.energy_rise == pytest.approx((f[0] - f[1]) / f[0], rel=1e-4) and s.energy_rise > 0.01
    assert s.energy_note().startswith(f"the surrogate's F/V rose by {100 * s.energy_rise:.1f} % of F(0) "
                                      f"(largest at frame 2)")
    s.reset()
    assert s.energy_note() is None

    physical = Session(SpectralSolver(P2, misfit=0.006), phi0, P2, misfit=0.006, device=torch.device("cpu"))
    for _ in range(3):
        physical.step()
    physical.edit(np.asarray(phi0) - physical.current().surrogate)  # back to the start: F jumps up
    for _ in range(3):
        physical.step()
    assert physical.energy_rise < 1e-6 and physical.energy_note() is None


def test_run_cli_warns_and_records_a_free_energy_rise(tmp_path, monkeypatch, capsys):
    """`crane-viz run` says on stderr and in the file's `warnings` when the surrogate raised F/V."""
    import crane_viz.cli.run as run_cli

    real = run_cli.build_session

    def replayed(settings):
        session, ckpt = real(settings)
        state = session.reference.init_state(torch.as_tensor(session.phi0)[None])
        for _ in range(10):
            state = session.reference.step(state)
        session.surrogate = Replay([state.phi[0].numpy(), session.phi0])
        session.reset()
        return session, ckpt

    monkeypatch.setattr(run_cli, "build_session", replayed)
    out = tmp_path / "run.h5"
    assert main(["run", "--checkpoint", "coherent-2d", "--reference", "spectral", "--size", "32",
                 "--frames", "2", "--out", str(out)]) == 0
    err = capsys.readouterr().err
    assert "Cahn–Hilliard flow never raises F" in err
    with h5py.File(out) as f:
        assert any("Cahn–Hilliard flow never raises F" in w for w in json.loads(f.attrs["warnings"]))


def test_run_cli_writes_documented_file(tmp_path, monkeypatch, capsys):
    model = CRNN(get_config("tiny-2d"))
    save_checkpoint(tmp_path / "ckpts" / "tiny", model, name="tiny", preset=P2,
                    training={"mean_range": [0.2, 0.8], "misfit_range": [0.0, 0.012], "grid": 16})
    monkeypatch.setenv("CRANE_VIZ_CHECKPOINTS", str(tmp_path / "ckpts"))
    out = tmp_path / "run.h5"
    code = main(["run", "--checkpoint", "tiny", "--reference", "spectral", "--size", "16",
                 "--frames", "3", "--eta", "0.004", "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    with h5py.File(out) as f:
        assert f["surrogate/phi"].shape == (4, 16, 16) and f["reference/phi"].shape == (4, 16, 16)
        np.testing.assert_allclose(f["surrogate/time"][()], [0, 1, 2, 3])
        assert f["metrics/rmse"].shape == (3,) and "reference_energy_total" in f["metrics"]
        assert f.attrs["checkpoint"] == "tiny" and len(f.attrs["config_sha256"]) == 64
        assert f.attrs["eta"] == 0.004 and f.attrs["reference"] == "spectral"
    code = main(["run", "--checkpoint", "nope", "--out", str(tmp_path / "x.h5")])
    assert code == 2 and "nope" in capsys.readouterr().err
