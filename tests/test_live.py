"""The explorer's GUI-free controller: play/pause on a worker thread, reset, paint, uploads."""

import time

import numpy as np
import pytest
import torch

from crane_viz.errors import InputError
from crane_viz.live.controller import ExplorerSettings, LiveRun


def make(**kw):
    got = []
    settings = ExplorerSettings(model="untrained small-2d", size=32, **kw)
    return LiveRun(settings, lambda frames, generation: got.extend(frames)), got


def test_play_pause_in_background_thread():
    live, got = make()
    live.play()
    deadline = time.time() + 20
    while len(got) < 3 and time.time() < deadline:
        time.sleep(0.05)
    live.pause()
    live._thread.join(20)  # the worker finishes the frame in hand, then leaves its loop
    assert not live._thread.is_alive()
    n = len(got)
    time.sleep(0.3)
    assert n >= 3 and len(got) == n  # it ran, and it stopped when paused
    assert [f.index for f in got] == list(range(1, n + 1))
    live.close()
    live.play()
    assert not live.playing


def test_step_reset_and_settings_bounds():
    live, got = make(eta_percent=0.8)
    live.step()
    assert got[-1].index == 1 and got[-1].reference is not None
    live.settings.reference = "none"
    live.reset()
    live.step()
    assert got[-1].index == 1 and got[-1].reference is None
    with pytest.raises(InputError, match="eta-percent must be at most 5"):
        ExplorerSettings(eta_percent=7)


def test_paint_conserves_mass_in_both_engines():
    live, got = make()
    live.step()
    before = live.session.measure()
    live.paint(10, 12, radius=3, amount=0.3)
    after = live.session.measure()
    assert abs(after["surrogate_mass_drift"] - before["surrogate_mass_drift"]) < 1e-6
    assert abs(after["reference_mass_drift"] - before["reference_mass_drift"]) < 1e-6
    assert after["reference_spread"] > before["reference_spread"]


def test_upload_validation():
    live, _ = make()
    with pytest.raises(InputError, match="NaN"):
        live.set_upload(np.full((32, 32), np.nan))
    with pytest.raises(InputError, match="at most 256"):  # the grid selector's bound holds (#16)
        live.set_upload(np.full((512, 512), 0.5))
    live.set_upload(np.full((32, 32), 0.4) + 0.01 * np.random.default_rng(0).random((32, 32)))
    live.settings.init_kind = "upload"
    live.reset()
    assert abs(live.session.phi0.mean() - 0.405) < 0.01


def test_recording_and_background_export(tmp_path):
    """Live frames are recorded; a movie of a new run is made in the background, one at a time."""
    import threading

    from crane_viz.io.export import load_trajectory
    from crane_viz.live.controller import ExportJob, record_run

    live, _ = make()
    for _ in range(3):
        live.step()
    traj = live.recorder.trajectory()
    assert traj.frames == 4 and set(traj.fields) == {"surrogate", "reference"}
    assert traj.attrs["checkpoint"] == "untrained small-2d" and traj.metrics["rmse"].shape == (3,)
    job = ExportJob(tmp_path / "exports")
    data = load_trajectory(job.write(traj, "../escape", "h5"))
    assert data.frames == 4 and list((tmp_path / "exports").iterdir())  # inside its own folder
    done, gate = [], threading.Event()

    def slow_run(progress, cancel):
        gate.wait(10)
        return record_run(live.build_session(), 5, live.export_attrs(), progress=progress, cancel=cancel)

    assert job.start(slow_run, "movie", "gif", on_progress=lambda *a: None,
                     on_done=lambda path, err: done.append((path, err)))
    assert not job.start(slow_run, "movie", "gif", on_progress=print, on_done=print)  # busy
    gate.set()
    job.wait(60)
    path, err = done[0]
    assert err is None and path.parent == tmp_path / "exports" and path.suffix == ".gif"
    gate.clear()
    assert job.start(slow_run, "movie2", "mp4", on_progress=lambda *a: None,
                     on_done=lambda path, err: done.append((path, err)))
    job.cancel()
    gate.set()
    job.wait(60)
    assert done[1][0] is None and "cancelled" in done[1][1]
    assert not (tmp_path / "exports" / "movie2.mp4").exists()
    job.close()
    assert not (tmp_path / "exports").exists()


def test_unexpected_failures_are_reported_and_logged(caplog):
    """A MemoryError in a background job or in the live loop reaches the user and the log (#16)."""
    import threading

    from crane_viz.live.background import BackgroundJob

    done = []
    job = BackgroundJob()
    job.launch(lambda cancel: (_ for _ in ()).throw(MemoryError("no room")), lambda r, e: done.append(e), "sweep")
    job.wait(10)
    assert done == ["sweep failed: MemoryError: no room (the server log has the details)"]
    assert "MemoryError: no room" in caplog.text  # with its traceback

    live, _ = make()
    states, failed = [], threading.Event()
    live.on_state = lambda message: (states.append(message), failed.set())

    def broken():
        raise RuntimeError("torch broke")
    live.session.step = broken
    live.play()
    assert failed.wait(10) and "the live run failed: RuntimeError: torch broke" in states[-1]
    assert not live.playing


def test_frames_from_before_a_reset_are_dropped():
    """A batch computed before a reset reaches neither the view nor the recording (#16 item 12:
    the plots' time axis read [15, 1, 2, 3, …] after a setting changed while playing)."""
    live, got = make()
    old = live.generation
    with live._lock:  # the worker has computed a frame of the old session...
        frames = [live.session.step()]
    live.reset()  # ...then a setting changes
    live._report(frames, old)  # ...and the worker reports it
    assert got == [] and len(live.recorder.time) == 1  # only the new session's initial frame
    fresh = live.step()
    assert got == fresh and fresh[0].index == 1


def test_a_3d_size_beyond_the_cap_is_said_not_silently_shrunk():
    """#16 item 14: the cap holds and the status line says so."""
    settings = ExplorerSettings(model="untrained small-3d", size=256, reference="none")
    live = LiveRun(settings, lambda frames, generation: None)
    assert live.session.phi0.shape == (96, 96, 96)
    assert "3D runs at most 96 points per side here, not 256" in live.describe()


def test_the_status_line_says_when_a_shipped_model_runs_past_its_training_sequences():
    """coherent-2d-coarse5 was trained on 100 τ (20 steps of 5 τ) and leaves the sane range near
    230–300 τ: from step 21 on the explorer's status line says it extrapolates."""
    settings = ExplorerSettings(model="coherent-2d-coarse5", size=32, reference="none",
                                frames_per_update=20)
    live = LiveRun(settings, lambda frames, generation: None)
    live.step()
    assert live.session.current().time == 100 and "extrapolates" not in live.describe()
    live.settings.frames_per_update = 1
    live.step()
    assert "t = 105 τ is past the 100 τ of this model's training sequences" in live.describe()
    live.close()


def test_the_status_line_says_when_the_surrogate_raises_the_free_energy():
    """A surrogate whose F/V rises (here one that jumps back from a coarsened field to the mixed
    start: test_session) is flagged on the status line, where a user reads the run's warnings."""
    from test_session import Replay

    from crane_viz.engines import SpectralSolver

    settings = ExplorerSettings(model="untrained small-2d", size=32, reference="none", frames_per_update=1)
    live = LiveRun(settings, lambda frames, generation: None)
    s = live.session
    solver = SpectralSolver(s.preset, misfit=s.misfit)
    state = solver.init_state(torch.as_tensor(s.phi0)[None])
    for _ in range(10):
        state = solver.step(state)
    s.surrogate = Replay([state.phi[0].numpy(), s.phi0])
    s.reset()
    live.step()
    assert "F/V rose" not in live.describe()
    live.step()
    assert "Cahn–Hilliard flow never raises F, so it has left the physics" in live.describe()
    live.close()


def test_frame_times_are_rolling_medians():
    """One slow frame does not swing the status line's timings (#16 item 4)."""
    from crane_viz.live.controller import FrameTimes

    times = FrameTimes(window=5)
    for ms in (10, 11, 12, 900, 10):
        out = times.add({"surrogate_ms": ms, "reference_ms": float("nan")})
    assert out["surrogate_ms"] == 11 and np.isnan(out["reference_ms"])
    for ms in (20, 20, 20, 20, 20):
        out = times.add({"surrogate_ms": ms, "reference_ms": 5})
    assert out == {"surrogate_ms": 20, "reference_ms": 5}  # only the last 5 frames count


def test_close_joins_the_worker_and_reports_nothing_after():
    """Closing a playing session ends its worker thread and no frame reaches the (torn down) view
    afterwards (#16 item 7)."""
    live, got = make()
    live.play()
    deadline = time.time() + 20
    while not got and time.time() < deadline:
        time.sleep(0.05)
    assert got
    assert live.close(timeout=20) and not live._thread.is_alive()
    seen = len(got)
    time.sleep(0.3)
    live.step()  # a late call (a stray click) reports nothing either
    assert len(got) == seen


def test_compute_threads_take_the_callers_torch_thread_count(monkeypatch):
    """The live worker and the reference's thread set torch's thread count to their creator's: a
    new thread otherwise takes every core (a 128² spectral step ran ~100× slower unpinned beside
    a busy core)."""
    import threading

    import torch

    calls = []
    real = torch.set_num_threads
    monkeypatch.setattr(torch, "get_num_threads", lambda: 1)
    monkeypatch.setattr(torch, "set_num_threads",
                        lambda n: (calls.append((threading.current_thread().name, n)), real(n)))
    got = []
    live = LiveRun(ExplorerSettings(model="untrained small-2d", size=32, reference="spectral"),
                   lambda frames, generation: got.extend(frames))
    live.play()
    deadline = time.time() + 20
    while len(got) < 2 and time.time() < deadline:
        time.sleep(0.05)
    live.close(timeout=20)
    names = {name.split("_")[0]: n for name, n in calls}
    assert names == {"crane-viz-live": 1, "crane-viz-reference": 1}, calls


def test_freed_memory_is_kept_on_glibc():
    """glibc accepts the heap settings that keep a model step's freed tensors for reuse (the
    command-line tools and the app call it; elsewhere it declines without an error)."""
    import platform

    from crane_viz.device import keep_freed_memory

    assert keep_freed_memory() is (platform.libc_ver()[0] == "glibc")
