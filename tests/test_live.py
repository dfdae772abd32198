"""The explorer's GUI-free controller: play/pause on a worker thread, reset, paint, uploads."""

import time

import numpy as np
import pytest

from crane_viz.errors import InputError
from crane_viz.live import ExplorerSettings, LiveRun


def make(**kw):
    got = []
    settings = ExplorerSettings(model="untrained small-2d", size=32, **kw)
    return LiveRun(settings, got.extend), got


def test_play_pause_in_background_thread():
    live, got = make()
    live.play()
    deadline = time.time() + 20
    while len(got) < 3 and time.time() < deadline:
        time.sleep(0.05)
    live.pause()
    time.sleep(0.3)
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
    live.set_upload(np.full((32, 32), 0.4) + 0.01 * np.random.default_rng(0).random((32, 32)))
    live.settings.init_kind = "upload"
    live.reset()
    assert abs(live.session.phi0.mean() - 0.405) < 0.01
