"""Dataset generation and curriculum training end to end on tiny cases."""

import json
import math
import os
import signal

import h5py
import numpy as np
import pytest
import torch

from crane_viz.cli import main
from crane_viz.errors import DatasetError, InputError, TrainingDiverged
from crane_viz.nn.checkpoint import load_checkpoint
from crane_viz.nn.model import get_config
from crane_viz.training.dataset import DatasetSpec, generate, load_dataset
from crane_viz.training.loop import (
    VARIANCE_FLOOR,
    TrainConfig,
    augment,
    curriculum_horizon,
    energy_rise,
    frame_weights,
    train,
    window_of,
)

SPEC = DatasetSpec(sequences=6, frames=5, size=16, batch=3, seed=100)
CFG = TrainConfig(model="tiny-2d", epochs=2, ramp=1, batch=3, seed=3)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return generate(SPEC, tmp_path_factory.mktemp("d") / "data.h5")


def uninterrupted_and_resumed(data, tmp_path, cfg):
    """Training states after `cfg.epochs` epochs in one go ("full") and after 1 epoch then a resume."""
    train(data, tmp_path / "full", cfg)
    train(data, tmp_path / "part", TrainConfig(**{**cfg.to_dict(), "epochs": 1}))
    state = torch.load(tmp_path / "part" / "train_state.pt", weights_only=True)
    state["config"] = json.dumps(cfg.to_dict())
    torch.save(state, tmp_path / "part" / "train_state.pt")
    train(data, tmp_path / "part", cfg, resume=True)
    return (torch.load(tmp_path / "full" / "train_state.pt", weights_only=True),
            torch.load(tmp_path / "part" / "train_state.pt", weights_only=True))


def test_dataset_layout(data):
    d = load_dataset(data)
    assert d.phi.shape == (6, 5, 16, 16) and d.attrs["preset"] == "coherent-2d"
    assert ((d.eta >= 0) & (d.eta <= 0.012)).all() and ((d.mean >= 0.2) & (d.mean <= 0.8)).all()
    torch.testing.assert_close(d.phi.mean(dim=(2, 3)), d.mean[:, None].expand(6, 5), atol=2e-6, rtol=0)
    with h5py.File(data) as f:
        assert f["seed"][()].tolist() == list(range(100, 106)) and f["done"][()].all()


def test_parallel_workers_give_the_same_data(data, tmp_path):
    """Two worker processes write the same cases as one process (each case is fixed by its seed).

    Parameters match exactly; fields match to float32 rounding, because reductions inside the FFT
    may be summed in another order when the thread count differs (seen in CI: 1 vs 2 threads).
    """
    other = generate(SPEC, tmp_path / "par.h5", workers=2)
    a, b = load_dataset(data), load_dataset(other)
    assert torch.equal(a.eta, b.eta) and torch.equal(a.mean, b.mean)
    torch.testing.assert_close(a.phi, b.phi, rtol=0, atol=1e-6)


def test_curriculum_horizon():
    assert curriculum_horizon(0, 10, 100) == 99  # predict only the last frame
    assert curriculum_horizon(10, 10, 100) == 1  # roll out everything from the initial frame
    assert curriculum_horizon(50, 10, 100) == 1
    assert curriculum_horizon(5, 10, 100) == 50
    values = [curriculum_horizon(e, 10, 100) for e in range(12)]
    assert values == sorted(values, reverse=True)
    assert curriculum_horizon(0, 0, 5) == 1


def test_augmentation_preserves_mass_and_z2():
    gen = torch.Generator().manual_seed(0)
    seq = torch.rand(2, 3, 8, 8, dtype=torch.float64)
    means = seq.mean(dim=(2, 3))
    seen_flip = False
    for _ in range(20):
        out = augment(seq, gen)
        m = out.mean(dim=(2, 3))
        same = torch.allclose(m, means, atol=1e-12)
        flipped = torch.allclose(m, 1 - means, atol=1e-12)
        assert same or flipped
        seen_flip |= flipped
        assert torch.allclose(out.flatten(2).sort(-1).values,
                              (seq if same else 1 - seq).flatten(2).sort(-1).values)
    assert seen_flip
    vol = torch.rand(1, 2, 4, 4, 4, dtype=torch.float64)
    vm = vol.mean(dim=(2, 3, 4))
    for _ in range(10):
        m = augment(vol, gen).mean(dim=(2, 3, 4))
        assert torch.allclose(m, vm, atol=1e-12) or torch.allclose(m, 1 - vm, atol=1e-12)


def test_generate_train_checkpoint_end_to_end(data, tmp_path, capsys):
    code = main(["train", "--data", str(data), "--out", str(tmp_path / "run"), "--model", "tiny-2d",
                 "--epochs", "2", "--ramp", "1", "--batch", "3", "--name", "tiny"])
    printed = capsys.readouterr()
    assert code == 0, printed.err
    log = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in log] == [1, 2] and [r["given"] for r in log] == [4, 1]
    # without a terminal (a nohup log) each epoch shows its first and last batch and its losses
    lines = printed.out.splitlines()
    assert lines[:3] == ["batch 1/2 of epoch 1/2", "batch 2/2 of epoch 1/2", lines[2]]
    assert lines[2].startswith("epoch 1/2: train loss") and "batch 1/2 of epoch 2/2" in lines
    # resumed after its first epoch, a run counts on from the second
    (tmp_path / "run" / "log.jsonl").write_text(json.dumps(log[0]) + "\n")
    state = torch.load(tmp_path / "run" / "train_state.pt", weights_only=True)
    state["epoch"] = 1
    torch.save(state, tmp_path / "run" / "train_state.pt")
    assert main(["train", "--data", str(data), "--out", str(tmp_path / "run"), "--model", "tiny-2d",
                 "--epochs", "2", "--ramp", "1", "--batch", "3", "--name", "tiny", "--resume"]) == 0
    assert capsys.readouterr().out.splitlines()[0] == "batch 1/2 of epoch 2/2"
    ck = load_checkpoint(tmp_path / "run" / "best")
    assert ck.name == "tiny" and ck.config["training"]["grid"] == 16
    assert ck.config["dataset"]["sequences"] == 6 and len(ck.config["dataset"]["sha256"]) == 64


def test_resume_is_exact(data, tmp_path):
    train(data, tmp_path / "full", CFG)
    train(data, tmp_path / "part", TrainConfig(**{**CFG.to_dict(), "epochs": 1}))
    state = torch.load(tmp_path / "part" / "train_state.pt", weights_only=True)
    assert state["epoch"] == 1
    # continue the interrupted run to the full length: rewrite its config, then resume
    state["config"] = json.dumps(CFG.to_dict())
    torch.save(state, tmp_path / "part" / "train_state.pt")
    train(data, tmp_path / "part", CFG, resume=True)
    a = torch.load(tmp_path / "full" / "train_state.pt", weights_only=True)["model"]
    b = torch.load(tmp_path / "part" / "train_state.pt", weights_only=True)["model"]
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=1e-6)


def test_an_interrupt_inside_an_epoch_saves_there_and_resumes_exactly(data, tmp_path):
    """SIGINT after the first batch of epoch 1 saves the state there (the finished epoch count stays
    0); the resume runs the epoch's remaining batches, not all of them again, and ends with the
    weights, averaged weights and logged losses of an uninterrupted run."""
    cfg = TrainConfig(**{**CFG.to_dict(), "batch": 2, "ema": 0.9, "noise": 0.01})
    train(data, tmp_path / "full", cfg)
    batches = []

    def interrupt_once(i, n):
        batches.append(i)
        if len(batches) == 1:
            os.kill(os.getpid(), signal.SIGINT)
    record = train(data, tmp_path / "part", cfg, on_batch=interrupt_once)
    assert record["interrupted"] and record["epoch"] == 0 and record["batches"] == 1 and record["of"] > 1
    state = torch.load(tmp_path / "part" / "train_state.pt", weights_only=True)
    assert state["epoch"] == 0 and state["unfinished"]["done"] == 2
    batches.clear()
    train(data, tmp_path / "part", cfg, resume=True, on_batch=lambda i, n: batches.append(i))
    assert batches[0] == 2  # epoch 1 went on with its second batch
    a, b = (torch.load(tmp_path / run / "train_state.pt", weights_only=True) for run in ("full", "part"))
    assert "unfinished" not in b
    for part in ("model", "ema"):
        for k in a[part]:
            torch.testing.assert_close(a[part][k], b[part][k], rtol=0, atol=1e-6)
    logs = [[json.loads(line) for line in (tmp_path / run / "log.jsonl").read_text().splitlines()]
            for run in ("full", "part")]
    assert [r["train_loss"] for r in logs[0]] == pytest.approx([r["train_loss"] for r in logs[1]], rel=1e-5)


def test_generate_resumes_and_keeps_finished_sequences(tmp_path):
    spec = DatasetSpec(sequences=4, frames=3, size=16, batch=2, seed=7)
    out = tmp_path / "d.h5"
    calls = []

    def stop_after_first_batch(done, total):
        calls.append(done)
        if done == 2:
            raise KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt):
        generate(spec, out, progress=stop_after_first_batch)
    part = tmp_path / "d.h5.part"
    assert part.exists() and not out.exists()
    with h5py.File(part) as f:
        assert f["done"][()].tolist() == [True, True, False, False]
        kept = f["phi"][0].copy()
    resumed = []
    generate(spec, out, progress=lambda d, t: resumed.append(d))
    assert resumed[0] == 2 and resumed[-1] == 4
    with h5py.File(out) as f:
        assert (f["phi"][0] == kept).all() and f["done"][()].all()
    with pytest.raises(KeyboardInterrupt):
        generate(spec, tmp_path / "e.h5", progress=stop_after_first_batch)
    other = DatasetSpec(sequences=4, frames=4, size=16, batch=2, seed=7)
    with pytest.raises(InputError, match="other settings"):
        generate(other, tmp_path / "e.h5")


def test_generate_samples_the_given_ranges_and_resumes_with_them(tmp_path):
    spec = DatasetSpec(sequences=6, frames=2, size=8, batch=3, mean_range=(0.40, 0.45),
                       misfit_range=(0.002, 0.003))
    out = tmp_path / "ranges.h5"

    def stop(done, total):
        if done == 3:
            raise KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt):
        generate(spec, out, progress=stop)
    generate(spec, out)  # the .part's JSON settings (lists) match the spec's tuples
    data = load_dataset(out)
    assert ((data.mean >= 0.40) & (data.mean <= 0.45)).all()
    assert ((data.eta >= 0.002) & (data.eta <= 0.003)).all()
    with pytest.raises(InputError, match="--mean-range"):
        DatasetSpec(mean_range=(0.5, 0.4))


@pytest.mark.parametrize("damage, message", [
    (lambda p: p.write_bytes(b"garbage"), "not an HDF5"),
    (lambda p: h5py.File(p, "w").close(), "missing datasets"),
])
def test_corrupt_dataset_is_reported(tmp_path, damage, message):
    p = tmp_path / "bad.h5"
    damage(p)
    with pytest.raises(DatasetError, match=message) as info:
        load_dataset(p)
    assert "bad.h5" in str(info.value)


def test_evaluate_end_to_end(data, tmp_path, capsys):
    """generate → train 2 epochs → evaluate writes a summary with finite measures and figures."""
    train(data, tmp_path / "run", CFG, name="tiny")
    log = tmp_path / "run" / "log.jsonl"
    rows = [json.loads(line) for line in log.read_text().splitlines()]
    assert rows[-1]["threads"] == torch.get_num_threads() and rows[-1]["device"] == "cpu"
    log.write_text("".join(json.dumps({**r, "threads": 7}) + "\n" for r in rows))  # as if trained on 7
    out = tmp_path / "eval"
    notes = tmp_path / "notes.md"
    notes.write_text("## History\nTrained in two stages.\n")
    code = main(["evaluate", str(tmp_path / "run" / "best"), "--cases", "3", "--size", "16",
                 "--horizon", "3", "--extrapolate", "2", "--ensemble", "3", "--phase-points", "4",
                 "--phase-frames", "3", "--batch", "2", "--out", str(out), "--card", "--notes", str(notes),
                 "--log", str(tmp_path / "run" / "log.jsonl")])
    assert code == 0, capsys.readouterr().err
    card = (tmp_path / "run" / "best" / "MODEL_CARD.md").read_text()
    assert "| median MAE within the horizon |" in card and card.rstrip().endswith("Trained in two stages.")
    assert "2 epochs" in card and (tmp_path / "run" / "best" / "evaluation.png").exists()
    assert "(7 torch thread(s), CPU only)" in card  # the training's thread count, not the evaluation's
    summary = json.loads((out / "summary.json").read_text())
    acc = summary["accuracy"]
    assert acc["frames"] == 6 and len(acc["mae"]["median"]) == 6
    assert 0 < acc["mae_median_within_horizon"] < 1 and acc["max_mass_drift"] < 1e-5
    assert 0 <= summary["phase"]["agreement"] <= 1 and len(summary["phase"]["points"]) == 4
    assert (out / "evaluation.png").stat().st_size > 10_000 and (out / "phase.png").exists()


def test_windows_and_fine_tuning_from_a_checkpoint(data, tmp_path):
    """--window trains on random runs of frames; --init starts from a checkpoint's weights."""
    gen = torch.Generator().manual_seed(0)
    seq = torch.arange(2 * 5, dtype=torch.float32).reshape(2, 5, 1, 1).expand(2, 5, 2, 2)
    win = window_of(seq, 3, gen)
    assert win.shape == (2, 3, 2, 2)
    assert all(torch.equal(w[1:, 0, 0] - w[:-1, 0, 0], torch.ones(2)) for w in win)  # consecutive
    first = train(data, tmp_path / "a", TrainConfig(model="tiny-2d", epochs=1, batch=3, window=3))
    assert first["given"] == 2  # the curriculum runs over the window's 3 frames
    tuned = TrainConfig(model="tiny-2d", epochs=1, batch=3, lr=1e-12, init=str(tmp_path / "a" / "best"))
    train(data, tmp_path / "b", tuned)
    a = load_checkpoint(tmp_path / "a" / "best").model.state_dict()
    b = torch.load(tmp_path / "b" / "train_state.pt", weights_only=True)["model"]
    for k in a:  # a vanishing learning rate keeps the initial weights
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=1e-6)
    from_state = TrainConfig(model="tiny-2d", epochs=1, batch=3, lr=1e-12,
                             init=str(tmp_path / "b" / "train_state.pt"))
    train(data, tmp_path / "d", from_state)
    d = torch.load(tmp_path / "d" / "train_state.pt", weights_only=True)["model"]
    for k in a:  # a run's last training state works as a starting point too
        torch.testing.assert_close(a[k], d[k], rtol=0, atol=1e-6)
    with pytest.raises(ValueError, match="architecture"):
        train(data, tmp_path / "c", TrainConfig(model="small-2d", epochs=1, init=str(tmp_path / "a" / "best")))


def test_max_frames_and_keeping_the_last_epoch(data, tmp_path):
    """--max-frames trains on the first frames only; --keep last checkpoints the latest epoch
    even when its validation loss is not the lowest."""
    cfg = TrainConfig(model="tiny-2d", epochs=3, ramp=0, batch=3, lr=0.5, max_frames=3, keep="last", seed=3)
    record = train(data, tmp_path / "run", cfg)
    assert record["horizon"] == 2 and record["given"] == 1  # 3 frames: predict 2 from the first
    log = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    ck = load_checkpoint(tmp_path / "run" / "best")
    assert ck.config["metrics"]["epoch"] == 3 and ck.training["frames"] == 3
    last = torch.load(tmp_path / "run" / "train_state.pt", weights_only=True)["model"]
    for k, v in ck.model.state_dict().items():
        torch.testing.assert_close(v, last[k], rtol=0, atol=0)
    assert sum(bool(r.get("best")) for r in log) >= 1  # "best" still marks the improvements only
    with pytest.raises(InputError, match="--keep"):
        train(data, tmp_path / "bad", TrainConfig(model="tiny-2d", epochs=1, keep="first"))
    with pytest.raises(InputError, match="--max-frames"):
        train(data, tmp_path / "bad2", TrainConfig(model="tiny-2d", epochs=1, max_frames=1))


def test_frame_stride_makes_a_coarse_step_model_that_sweeps_in_its_own_frames(data, tmp_path):
    """--frame-stride 2 trains on frames 0, 2, 4 and saves τ = 2: the sweep's reference, built from
    the checkpoint's preset, then steps 2 τ per frame too (its outcome equals 1-τ steps to the same
    time), and a horizon that is not a whole number of model frames is refused."""
    from crane_viz.analysis import metrics
    from crane_viz.analysis.evaluation import frame_stride_of, protocol_spec
    from crane_viz.analysis.phase import Point, classify_chunk, initial_fields, run_sweep
    from crane_viz.engines import make_solver
    from crane_viz.engines.base import advance
    from crane_viz.physics.presets import get_preset
    from crane_viz.settings import SweepSettings

    record = train(data, tmp_path / "run", TrainConfig(model="tiny-2d", epochs=1, ramp=0, batch=3,
                                                       frame_stride=2, seed=3))
    assert record["horizon"] == 2  # 3 strided frames: predict 2 from the first
    ck = load_checkpoint(tmp_path / "run" / "best")
    base = get_preset("coherent-2d")
    assert ck.frame_time == ck.preset.frame_time == 2 * base.frame_time and ck.training["frames"] == 3
    assert frame_stride_of(ck) == 2 and protocol_spec("quick", 2, frame_stride_of(ck)).horizon == 20
    s = SweepSettings(points=2, size=16, cells=4, horizon=4, batch=2, reference="spectral")
    points = [Point(index=i, mean=0.5, eta=0.006 * i, amplitude=0.05, seed=7 + i) for i in range(2)]
    rows, _ = classify_chunk(points, s, str(ck.path))
    one_tau = make_solver("spectral", base, misfit=torch.tensor([0.0, 0.006]))
    final = advance(one_tau, initial_fields(points, s), 4).phi
    np.testing.assert_allclose([r["reference_spread"] for r in rows], metrics.spread(final, 2).numpy(),
                               rtol=1e-4)
    with pytest.raises(InputError, match="multiple of 2"):
        run_sweep(SweepSettings(points=2, size=16, cells=4, horizon=3, batch=2), str(ck.path),
                  tmp_path / "pd.csv")
    with pytest.raises(InputError, match="--frame-stride 5"):
        train(data, tmp_path / "bad", TrainConfig(model="tiny-2d", epochs=1, frame_stride=5))


def test_variance_frame_weights_lift_the_linear_regime():
    """A frame with 100× smaller deviations gets ≈ 100× the weight (above the 1e-4 floor)."""
    small = 0.5 + 0.05 * torch.randn(1, 16, 16, generator=torch.Generator().manual_seed(0))
    large = 0.5 + 0.5 * (small - 0.5) / 0.05 * 0.5
    frames = torch.cat([small, large])
    assert torch.equal(frame_weights(frames, "uniform"), torch.ones(2))
    w = frame_weights(frames, "variance")
    ratio = (large.var() + VARIANCE_FLOOR) / (small.var() + VARIANCE_FLOOR)
    torch.testing.assert_close(w[0] / w[1], ratio, rtol=1e-5, atol=0)
    torch.testing.assert_close(w.mean(), torch.tensor(1.0))


def test_increment_weights_make_doing_nothing_cost_the_same_in_every_frame():
    """Weights ∝ 1/(mean-square true change): a frame changing 10× more weighs 100× less, so the
    loss of returning the input is the same for slow and fast frames."""
    base = 0.5 + 0.05 * torch.randn(1, 16, 16, generator=torch.Generator().manual_seed(0))
    step = 0.01 * torch.randn(1, 16, 16, generator=torch.Generator().manual_seed(1))
    previous = torch.cat([base, base])
    target = torch.cat([base + step, base + 10 * step])
    w = frame_weights(target, "increment", previous)
    change = ((target - previous) ** 2).flatten(1).mean(1)
    torch.testing.assert_close(w[0] / w[1], (change[1] + 1e-8) / (change[0] + 1e-8), rtol=1e-5, atol=0)
    cost = w * change  # the weighted error of predicting `previous`
    torch.testing.assert_close(cost[0], cost[1], rtol=1e-3, atol=0)


def test_energy_rise_is_zero_for_cahn_hilliard_steps_and_positive_for_roughening():
    """The reference solver's frame lowers F/V (no rise); adding noise raises it."""
    from crane_viz.engines import make_solver
    from crane_viz.physics.initial import perlin_field
    from crane_viz.physics.presets import get_preset

    preset = get_preset("coherent-2d")
    eta = torch.tensor([0.006, 0.01])
    phi0 = torch.stack([torch.as_tensor(perlin_field(32, 2, mean=m, amplitude=0.1, cells=4, seed=s),
                                        dtype=torch.float32) for m, s in ((0.5, 1), (0.4, 2))])
    solver = make_solver("spectral", preset, misfit=eta)
    state = solver.init_state(phi0)
    for _ in range(3):
        state = solver.step(state)
    after = solver.step(state).phi
    assert energy_rise(state.phi[:, None], after[:, None], eta, preset) == 0
    noisy = after + 0.05 * torch.randn(after.shape, generator=torch.Generator().manual_seed(1))
    assert energy_rise(state.phi[:, None], noisy[:, None], eta, preset) > 0.01


def test_the_rise_penalty_measures_half_resolution_fields_in_the_fine_grids_units():
    """A 32³ FD state average-pooled to 16³ (--grid-scale 2) has the fine field's F/V to 3 % when
    its gradient term counts spacing 2 (measured 1.7 %), and twice it without (measured +109 %)."""
    from crane_viz.engines import make_solver
    from crane_viz.engines.surrogate import downsample
    from crane_viz.physics.initial import perlin_field
    from crane_viz.physics.presets import get_preset
    from crane_viz.training.loop import model_energy

    preset, eta = get_preset("plain-3d"), torch.zeros(1)
    phi0 = torch.as_tensor(perlin_field(32, 3, mean=0.5, amplitude=0.1, cells=4, seed=1), dtype=torch.float32)
    solver = make_solver("fd", preset)
    state = solver.init_state(phi0[None])
    for _ in range(20):
        state = solver.step(state)
    fine, coarse = model_energy(state.phi, eta, preset), downsample(state.phi, 2)
    assert float(model_energy(coarse, eta, preset, 2) / fine) == pytest.approx(1, abs=0.03)
    assert float(model_energy(coarse, eta, preset, 1) / fine) > 1.5


def test_a_chemical_model_must_match_the_grid_scale():
    """The μ channel's ε and spacing must be the data's on the model grid; the message names the
    model that fits."""
    from crane_viz.physics.presets import get_preset
    from crane_viz.training.loop import check_model_grid

    preset = get_preset("plain-3d")
    check_model_grid(get_config("small-3d-chemical-half"), TrainConfig(model="small-3d-chemical-half",
                                                                        grid_scale=2), preset)
    with pytest.raises(InputError, match="use small-3d-chemical-half"):
        check_model_grid(get_config("small-3d-chemical"), TrainConfig(model="small-3d-chemical", grid_scale=2),
                         preset)
    with pytest.raises(InputError, match="is 3D but the dataset is 2D"):
        check_model_grid(get_config("small-3d"), TrainConfig(model="small-3d"), get_preset("coherent-2d"))


def test_campaign_options_resume_exactly_and_keep_snapshots(data, tmp_path):
    """EMA, cosine schedule, variance weights, the rise penalty, frame-0 windows and snapshots:
    an interrupted run resumed gives the same weights (raw and averaged) as an uninterrupted one."""
    cfg = TrainConfig(model="tiny-2d", epochs=2, ramp=1, batch=3, seed=5, window=3, first_window=0.5,
                      frame_weight="variance", rise_weight=10.0, ema=0.9, schedule="cosine",
                      snapshot_every=1)
    a, b = uninterrupted_and_resumed(data, tmp_path, cfg)
    for part in ("model", "ema"):
        for k in a[part]:
            torch.testing.assert_close(a[part][k], b[part][k], rtol=0, atol=1e-6)
    assert not torch.equal(a["model"]["head.4.weight"], a["ema"]["head.4.weight"])
    snap = load_checkpoint(tmp_path / "full" / "epochs" / "0002")
    for k, v in snap.model.state_dict().items():  # the snapshot holds the averaged weights
        torch.testing.assert_close(v, a["ema"][k], rtol=0, atol=0)
    log = [json.loads(line) for line in (tmp_path / "full" / "log.jsonl").read_text().splitlines()]
    assert [r["lr"] for r in log] == [pytest.approx(2e-3), pytest.approx(1e-4)]
    assert 0 < log[0]["hours"] < log[1]["hours"] and snap.config["metrics"]["train_hours"] == log[1]["hours"]


def test_a_non_finite_loss_stops_training_and_saves_nothing(data, tmp_path, capsys):
    """Random weights of size 1e20 make the first prediction overflow float32: training stops with
    a message, exit status 2, and no checkpoint is written."""
    from crane_viz.nn.checkpoint import save_checkpoint
    from crane_viz.nn.model import CRNN, get_config
    from crane_viz.physics.presets import get_preset

    model = CRNN(get_config("tiny-2d"))
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(1e20 * torch.randn(p.shape, generator=gen))
    save_checkpoint(tmp_path / "huge", model, name="huge", preset=get_preset("coherent-2d"))
    noisy = TrainConfig(model="tiny-2d", epochs=1, batch=3, noise=1.0, init=str(tmp_path / "huge"))
    with pytest.raises(TrainingDiverged, match="loss became (nan|inf)"):
        train(data, tmp_path / "nan", noisy)
    assert not (tmp_path / "nan" / "best").exists()
    code = main(["train", "--data", str(data), "--out", str(tmp_path / "nan2"), "--model", "tiny-2d",
                 "--epochs", "1", "--batch", "3", "--noise", "1", "--init", str(tmp_path / "huge")])
    assert code == 2 and "training diverged" in capsys.readouterr().err
    assert not (tmp_path / "nan2" / "best").exists()
    # near-uniform inputs keep its one-step loss finite, but its free rollouts overflow: no epoch
    # has a finite validation loss, and the run says so instead of "done"
    quiet = TrainConfig(model="tiny-2d", epochs=1, batch=3, init=str(tmp_path / "huge"))
    with pytest.raises(TrainingDiverged, match="no epoch reached a finite validation loss"):
        train(data, tmp_path / "inf", quiet)
    assert not (tmp_path / "inf" / "best").exists()
    for bad, message in ((dict(frame_weight="loud"), "--frame-weight"), (dict(ema=1.0), "--ema"),
                         (dict(schedule="step"), "--schedule"), (dict(first_window=2.0), "--first-window")):
        with pytest.raises(InputError, match=message):
            train(data, tmp_path / "bad", TrainConfig(model="tiny-2d", epochs=1, **bad))


@pytest.mark.parametrize("dim", [2, 3])
def test_widened_kernels_compute_the_same_function(dim):
    """A small-kernel CRNN's weights zero-padded into a larger kernel give the same rollout
    (to round-off), so fine-tuning with a larger receptive field starts from what was learnt."""
    from dataclasses import replace

    from crane_viz.nn.model import CRNN, get_config
    from crane_viz.training.loop import can_widen, widen

    torch.manual_seed(dim)
    source = CRNN(get_config(f"tiny-{dim}d"))
    target = CRNN(replace(source.config, kernel=5))
    assert can_widen(source.config, target.config) and not can_widen(target.config, source.config)
    target.load_state_dict(widen(source.state_dict(), target))
    assert target.cells[0].x_gates[0].weight.shape[2:] == (5,) * dim
    phi = torch.rand(2, *(12,) * dim)
    cond = torch.tensor([[0.006], [0.01]]) if dim == 2 else None
    a = b = phi
    ha = hb = None
    for _ in range(4):
        a, ha = source(a, ha, cond)
        b, hb = target(b, hb, cond)
    torch.testing.assert_close(a, b, rtol=0, atol=1e-5)  # float32 round-off


def test_added_elastic_feature_starts_as_the_same_function():
    """Taking over a model without the elastic input channel gives the new channel zero weights:
    the rollout is unchanged until training moves them, and they do receive gradient."""
    from dataclasses import replace

    from crane_viz.nn.model import CRNN, get_config
    from crane_viz.training.loop import can_widen, widen

    torch.manual_seed(0)
    source = CRNN(get_config("tiny-2d"))
    config = replace(source.config, kernel=5, features=("elastic",), elastic=(3e4, 1.5e4, 3e4))
    assert can_widen(source.config, config)
    assert not can_widen(source.config, replace(config, conditions=(), condition_scales=(),
                                                features=(), elastic=()))
    target = CRNN(config)
    target.load_state_dict(widen(source.state_dict(), target))
    assert target.cells[0].x_cand[0].weight.shape[1] == 3
    phi, cond = 0.5 + 0.1 * torch.randn(2, 16, 16), torch.tensor([[0.012], [0.006]])
    a, ha = source(phi, None, cond)
    b, hb = target(phi, None, cond)
    torch.testing.assert_close(a, b, rtol=0, atol=1e-5)
    b.square().sum().backward()
    assert target.cells[0].x_cand[0].weight.grad[:, 2].abs().sum() > 0


def test_added_chemical_feature_starts_as_the_same_function():
    """small-3d into small-3d-chemical (how the shipped plain-3d began): the added μ channel
    starts at zero weight, so two recurrent steps are the smaller model's; a different ε is refused."""
    from dataclasses import replace

    from crane_viz.nn.model import CRNN, get_config
    from crane_viz.training.loop import can_widen, widen

    torch.manual_seed(0)
    source, config = CRNN(get_config("small-3d")), get_config("small-3d-chemical")
    assert can_widen(source.config, config) and not can_widen(config, source.config)
    target = CRNN(config)
    target.load_state_dict(widen(source.state_dict(), target))
    phi = 0.5 + 0.05 * torch.randn(1, 12, 12, 12)
    a, ha = source(phi)
    b, hb = target(phi)
    a, _ = source(a, ha)
    b, _ = target(b, hb)
    torch.testing.assert_close(a, b, rtol=0, atol=1e-6)
    assert not can_widen(config, replace(config, interface_width=5.0))


def test_fine_tuning_widens_a_shipped_checkpoint():
    """--init coherent-2d into medium-2d (5×5 kernels) is accepted and preserves the function; a
    checkpoint with a larger kernel than the model trained is refused, naming both."""
    from crane_viz.nn.model import CRNN, get_config
    from crane_viz.training.loop import initial_weights

    small = load_checkpoint("coherent-2d").model
    medium = CRNN(get_config("medium-2d"))
    medium.load_state_dict(initial_weights("coherent-2d", get_config("medium-2d")))
    phi, cond = torch.rand(1, 16, 16), torch.tensor([[0.01]])
    # equal to float32 round-off (the convolutions sum 25 instead of 9 taps per channel, in another
    # order); a misplaced kernel would differ by ~10⁻¹
    torch.testing.assert_close(small(phi, None, cond)[0], medium(phi, None, cond)[0], rtol=0, atol=1e-5)
    with pytest.raises(ValueError, match="only a smaller kernel or added input features"):
        initial_weights("coherent-2d", get_config("tiny-2d"))


def test_fine_tuning_a_checkpoint_into_its_flip_averaged_model_keeps_the_weights():
    """--init coherent-2d-elastic into small-2d-elastic-sym takes the weights as they are, so the
    new model starts as the flip average ½[f(φ) + 1 − f(1 − φ)] of the shipped one."""
    from crane_viz.nn.model import CRNN, get_config
    from crane_viz.training.loop import initial_weights

    plain = load_checkpoint("coherent-2d-elastic").model
    sym = CRNN(get_config("small-2d-elastic-sym"))
    sym.load_state_dict(initial_weights("coherent-2d-elastic", get_config("small-2d-elastic-sym")))
    phi, cond = 0.5 + 0.1 * torch.rand(1, 16, 16), torch.tensor([[0.01]])
    with torch.inference_mode():
        expected = 0.5 * (plain(phi, None, cond)[0] + 1 - plain(1 - phi, None, cond)[0])
        # float32 round-off of one batch of 2 against two of 1 (2·10⁻⁶ seen); other weights: ~10⁻²
        torch.testing.assert_close(sym(phi, None, cond)[0], expected, rtol=0, atol=1e-5)


def test_pixel_horizon_scores_pointwise_errors_only_up_to_its_frame():
    """--pixel-horizon N: an error in a window's frames after N costs nothing pointwise (only the
    F/V term sees it), one at or before N costs what it did; `first_frame` shifts the count."""
    from crane_viz.physics.presets import get_preset
    from crane_viz.training.loop import composite_loss

    preset = get_preset("coherent-2d")
    seq = 0.5 + 0.1 * torch.rand(2, 5, 8, 8, generator=torch.Generator().manual_seed(0))
    eta = torch.full((2,), 0.006)
    late, early = seq[:, 1:].clone(), seq[:, 1:].clone()
    late[:, 3] += 0.05   # frame 4 of the window
    early[:, 1] += 0.05  # frame 2
    cfg = TrainConfig(model="tiny-2d", pixel_horizon=3, frame_weight="uniform")
    everything = TrainConfig(model="tiny-2d", frame_weight="uniform")
    assert composite_loss(late, seq, eta, preset, cfg) == 0
    assert composite_loss(early, seq, eta, preset, cfg) == pytest.approx(
        float(composite_loss(early, seq, eta, preset, everything)), rel=1e-6)
    assert composite_loss(early, seq, eta, preset, cfg, first_frame=3) == 0  # frame 2 is now frame 4
    assert composite_loss(late, seq, eta, preset, everything) > 0
    with_energy = TrainConfig(model="tiny-2d", pixel_horizon=3, frame_weight="uniform", energy_weight=150)
    assert composite_loss(late, seq, eta, preset, with_energy) > 0


def test_random_pushforward_depth_draws_every_window_length_and_trains(data, tmp_path):
    """--pushforward-depth random: each batch's window is N+1 … --window frames long (each length
    drawn, nothing else), so the N scored frames start anywhere in the window's span; fixed keeps
    --window."""
    from crane_viz.training.loop import window_length

    gen = torch.Generator().manual_seed(0)
    cfg = TrainConfig(model="tiny-2d", window=6, pushforward=2, pushforward_depth="random")
    lengths = [window_length(cfg, gen) for _ in range(400)]
    assert set(lengths) == {3, 4, 5, 6}
    assert all(abs(lengths.count(n) / 400 - 0.25) < 0.08 for n in (3, 4, 5, 6))
    assert window_length(TrainConfig(model="tiny-2d", window=6, pushforward=2), gen) == 6
    log = TrainConfig(model="tiny-2d", window=500, pushforward=30, pushforward_depth="log")
    lengths = np.array([window_length(log, gen) for _ in range(4000)])
    assert lengths.min() >= 31 and lengths.max() <= 500
    # log-uniform on [31, 501): P(length <= 130) = ln(131/31) / ln(501/31) = 0.52 (uniform: 0.21)
    assert abs((lengths <= 130).mean() - math.log(131 / 31) / math.log(501 / 31)) < 0.03
    record = train(data, tmp_path / "pfr", TrainConfig(model="tiny-2d", epochs=1, batch=3, window=4,
                                                       pushforward=1, pushforward_depth="random"))
    assert math.isfinite(record["val_loss"])


def test_pushforward_scores_only_the_last_frames_and_older_runs_resume(data, tmp_path):
    """--pushforward N: the steps before the last N run without gradient, the loss sees only the
    last N frames; a run saved before an option existed resumes with that option's default."""
    from crane_viz.nn.model import CRNN, get_config
    from crane_viz.training.loop import unroll

    torch.manual_seed(0)
    model = CRNN(get_config("tiny-2d"))
    seq = torch.rand(2, 6, 8, 8)
    preds = unroll(model, seq, 1, torch.zeros(2, 1), 0.0, None, detached=3)
    (preds[:, :3] ** 2).sum().backward(retain_graph=True)  # the detached frames carry no gradient to the weights
    assert all(p.grad is None or not p.grad.any() for p in model.parameters())
    (preds[:, 3:] ** 2).sum().backward()  # (a plain sum is conserved: zero gradient)
    assert any(p.grad is not None and p.grad.any() for p in model.parameters())
    cfg = TrainConfig(model="tiny-2d", epochs=1, batch=3, window=4, pushforward=1)
    record = train(data, tmp_path / "pf", cfg)
    assert math.isfinite(record["val_loss"])
    state = torch.load(tmp_path / "pf" / "train_state.pt", weights_only=True)
    settings = json.loads(state["config"])
    del settings["pushforward"]  # as saved before the option existed
    state["config"] = json.dumps(settings)
    torch.save(state, tmp_path / "pf" / "train_state.pt")
    again = TrainConfig(model="tiny-2d", epochs=2, batch=3, window=4)
    with pytest.raises(InputError, match="other settings"):
        train(data, tmp_path / "pf", again, resume=True)  # epochs differ: still refused
    old = TrainConfig(model="tiny-2d", epochs=1, batch=3, window=4)
    state["config"] = json.dumps({**settings, "epochs": 1})
    torch.save(state, tmp_path / "pf" / "train_state.pt")
    assert train(data, tmp_path / "pf", old, resume=True) == {}  # nothing left to do, but accepted


def test_mix_data_adds_a_linear_regime_loss_and_resumes_exactly(data, tmp_path):
    """--mix-data: every batch also rolls out small-amplitude sequences from frame 0 and scores
    them; the extra draws come from the run's generator, so an interrupted run resumes to the same
    weights; the log and the checkpoint's provenance name the second dataset; mismatches are
    refused naming the option."""
    mix = generate(DatasetSpec(sequences=4, frames=4, size=16, batch=4, seed=900, amplitude_sigma=0.01),
                   tmp_path / "small.h5")
    cfg = TrainConfig(model="tiny-2d", epochs=2, ramp=1, batch=3, seed=7, window=3, mix_data=str(mix),
                      mix_frames=3, mix_weight=2.0)
    a, b = uninterrupted_and_resumed(data, tmp_path, cfg)
    for k in a["model"]:
        torch.testing.assert_close(a["model"][k], b["model"][k], rtol=0, atol=1e-6)
    train(data, tmp_path / "plain", TrainConfig(**{**cfg.to_dict(), "mix_data": ""}))
    plain = torch.load(tmp_path / "plain" / "train_state.pt", weights_only=True)
    assert not torch.equal(plain["model"]["head.4.weight"], a["model"]["head.4.weight"])
    log = [json.loads(line) for line in (tmp_path / "full" / "log.jsonl").read_text().splitlines()]
    assert all(math.isfinite(r["mix_loss"]) and r["mix_loss"] > 0 for r in log)
    ckpt = load_checkpoint(tmp_path / "full" / "best")
    assert ckpt.config["dataset"]["mix"]["sequences"] == 4
    with pytest.raises(InputError, match="--mix-frames 4 needs 5"):
        train(data, tmp_path / "long", TrainConfig(**{**cfg.to_dict(), "mix_frames": 4}))
    other = generate(DatasetSpec(preset="plain-2d", sequences=1, frames=2, size=16, batch=1, seed=1),
                     tmp_path / "plain2d.h5")
    with pytest.raises(InputError, match="--mix-data .* holds preset 'plain-2d'"):
        train(data, tmp_path / "other", TrainConfig(**{**cfg.to_dict(), "mix_data": str(other)}))


def test_linear_regime_loss_is_relative_so_small_fields_count():
    """A model that changes nothing scores 1 on any data, small-amplitude or developed, and one
    that grows the right mode 10 % too fast per frame scores far less, at either amplitude."""
    from types import SimpleNamespace

    from crane_viz.training.loop import linear_regime_loss

    torch.manual_seed(0)
    base = 0.5 + torch.randn(4, 1, 8, 8)
    growth = torch.linspace(0, 1, 5).view(1, 5, 1, 1)
    for amplitude in (0.01, 0.2):
        seq = 0.5 + amplitude * (base - 0.5) * torch.exp(growth)  # (4, 5, 8, 8), a growing mode
        mix = SimpleNamespace(phi=seq, eta=torch.zeros(4))
        cfg = TrainConfig(model="tiny-2d", batch=4)

        def frozen(phi, hidden, cond):
            return phi, hidden
        def fast(phi, hidden, cond):
            return 0.5 + (phi - 0.5) * math.exp(0.25 * 1.1), hidden
        frozen.config = fast.config = SimpleNamespace(conditions=())
        loss = [linear_regime_loss(m, mix, cfg, torch.Generator().manual_seed(0), "cpu").item()
                for m in (frozen, fast)]
        assert loss[0] == pytest.approx(1.0, rel=1e-3)
        assert 0.005 < loss[1] < 0.05


def test_beyond_rolls_past_the_data_scoring_only_energy_rises(data, tmp_path):
    """--beyond N: windows of up to --window + N frames; frames past the data's last one (padded
    with copies of it) cost nothing pointwise or in F/V, but a rise of F/V there is still
    penalised; training with it runs; without --pushforward or a rise weight it is refused."""
    from crane_viz.physics.presets import get_preset
    from crane_viz.training.loop import composite_loss, past_the_data, window_length

    gen = torch.Generator().manual_seed(0)
    cfg = TrainConfig(model="tiny-2d", window=4, pushforward=2, pushforward_depth="random", beyond=3,
                      rise_weight=1.0)
    assert {window_length(cfg, gen) for _ in range(300)} == {3, 4, 5, 6, 7}
    assert window_length(TrainConfig(**{**cfg.to_dict(), "pushforward_depth": "fixed"}), gen) == 7
    seq = 0.5 + 0.1 * torch.rand(2, 3, 8, 8, generator=gen)
    padded = past_the_data(seq, 5)
    assert padded.shape == (2, 5, 8, 8) and torch.equal(padded[:, 3], seq[:, 2]) and torch.equal(padded[:, 4], seq[:, 2])
    assert past_the_data(seq, 2) is seq
    preset, eta = get_preset("coherent-2d"), torch.full((2,), 0.006)
    scoring = TrainConfig(model="tiny-2d", frame_weight="uniform", energy_weight=150)
    wrong_late = padded[:, 1:].clone()
    wrong_late[:, 3] += 0.05  # frame 4: past the data (known = 3 frames)
    assert composite_loss(wrong_late, padded, eta, preset, scoring, known=3) == 0
    assert composite_loss(wrong_late, padded, eta, preset, scoring) > 0
    wrong_early = padded[:, 1:].clone()
    wrong_early[:, 1] += 0.05  # frame 2: has a reference
    assert composite_loss(wrong_early, padded, eta, preset, scoring, known=3) > 0
    rough = padded[:, 1:].clone()
    rough[:, 3] += 0.2 * torch.randn(2, 8, 8, generator=gen)  # F/V rises from frame 3 to 4
    rough[:, 3] += 0.5 - rough[:, 3].mean(dim=(1, 2), keepdim=True)
    rising = TrainConfig(**{**scoring.to_dict(), "energy_weight": 0, "rise_weight": 1.0})
    assert composite_loss(rough, padded, eta, preset, rising, inputs=padded[:, :-1], known=3) > 0
    record = train(data, tmp_path / "beyond", TrainConfig(model="tiny-2d", epochs=1, batch=3, window=4,
                                                          pushforward=1, rise_weight=1.0, beyond=4,
                                                          pushforward_depth="random"))
    assert math.isfinite(record["val_loss"])
    for bad in ({"pushforward": 0}, {"rise_weight": 0.0}):
        with pytest.raises(InputError, match="--beyond needs"):
            TrainConfig(**{**cfg.to_dict(), **bad})
