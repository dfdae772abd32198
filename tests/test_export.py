"""Exports: every format written from small runs and read back (frames, size, not blank)."""

import threading

import imageio.v3 as iio
import numpy as np
import pytest
import pyvista as pv
from PIL import Image
from test_session import P2, field, tiny_surrogate

from crane_viz.cli import main
from crane_viz.engines import SpectralSolver
from crane_viz.errors import Cancelled
from crane_viz.io.compose import FrameStyle
from crane_viz.io.export import Trajectory, export, load_trajectory, write_movie
from crane_viz.live.recording import Recorder
from crane_viz.live.session import Session

FRAMES = 6


@pytest.fixture(scope="module")
def recorded():
    """A live-style recording of an untrained surrogate beside the spectral reference (2D, 32²)."""
    session = Session(tiny_surrogate(), field(size=32), P2, reference=SpectralSolver(P2, misfit=0.006),
                      misfit=0.006)
    rec = Recorder(attrs={"checkpoint": "tiny-2d", "mean": 0.5, "eta": 0.006})
    first = session.current()
    rec.add(first.index, first.time, {"surrogate": first.surrogate, "reference": first.reference})
    for frame in session.run(FRAMES - 1):
        rec.add(frame.index, frame.time, {"surrogate": frame.surrogate, "reference": frame.reference},
                frame.metrics)
    return rec.trajectory()


def not_blank(img: np.ndarray) -> bool:
    """Coloured pixels cover a good part of the image (the maps, not only the white canvas)."""
    return (np.abs(img[..., :3].astype(int) - 255).sum(-1) > 60).mean() > 0.3


def test_movies_snapshot_and_data_read_back(recorded, tmp_path):
    mp4 = export(recorded, tmp_path / "m.mp4", fps=10)
    frames = list(iio.imiter(mp4, plugin="FFMPEG"))
    assert len(frames) == FRAMES and not_blank(frames[-1])
    gif = export(recorded, tmp_path / "m.gif", stride=2)
    with Image.open(gif) as im:
        assert im.n_frames == 3 and im.size == frames[0].shape[1::-1]
    png = iio.imread(export(recorded, tmp_path / "s.png"))
    assert png.shape == frames[0].shape and not_blank(png)
    # three panels side by side: surrogate, reference, |Δφ|, each 256 px high
    assert png.shape[1] >= 3 * 256 and png.shape[0] >= 256
    back = load_trajectory(export(recorded, tmp_path / "d.h5"))
    np.testing.assert_array_equal(back.fields["reference"], recorded.fields["reference"])
    assert back.metrics["rmse"].shape == (FRAMES - 1,) and back.attrs["checkpoint"] == "tiny-2d"
    vti = pv.read(export(recorded, tmp_path / "f.vti", panel="reference", frame=2))
    assert vti.dimensions == (32, 32, 1)
    np.testing.assert_allclose(vti.point_data["phi"], recorded.fields["reference"][2].ravel(order="F"))
    assert not list(tmp_path.glob("*.part"))


def test_caption_names_settings_time_and_metrics(recorded):
    text = recorded.caption(FRAMES - 1)
    assert "tiny-2d" in text and f"frame {FRAMES - 1}" in text and "η = 0.60 %" in text
    assert "RMSE" in text and "⟨φ⟩ = 0.500" in text


def test_cancel_leaves_no_file(recorded, tmp_path):
    stop = threading.Event()
    with pytest.raises(Cancelled):
        write_movie(recorded, tmp_path / "c.mp4", progress=lambda done, total: stop.set(), cancel=stop)
    assert list(tmp_path.iterdir()) == []


def test_recorder_keeps_even_frames_within_budget():
    one = np.zeros((8, 8), np.float32)
    rec = Recorder(budget_bytes=10 * one.nbytes)
    for i in range(40):
        rec.add(i, float(i), {"surrogate": one + i})
    traj = rec.trajectory()
    assert rec.nbytes <= 10 * one.nbytes
    kept = traj.time.astype(int).tolist()
    assert kept[0] == 0 and kept[-1] >= 40 - rec.stride  # still spans the whole run
    assert len(set(np.diff(kept))) == 1  # evenly spaced
    np.testing.assert_array_equal(traj.fields["surrogate"][:, 0, 0], traj.time)


def test_export_cli_3d_cutaway_and_errors(tmp_path, capsys):
    run = tmp_path / "r3.h5"
    assert main(["simulate", "--dim", "3", "--size", "16", "--frames", "2", "--amplitude", "0.3",
                 "--no-png", "--out", str(run)]) == 0
    out = tmp_path / "cut.mp4"
    code = main(["export", str(run), "--out", str(out), "--view", "cutaway", "--height", "160"])
    assert code == 0, capsys.readouterr().err
    frames = list(iio.imiter(out, plugin="FFMPEG"))
    assert len(frames) == 3
    coloured = (np.abs(frames[-1].astype(int) - 255).sum(-1) > 60).mean()
    assert coloured > 0.1  # the rendered box, not a blank frame
    assert main(["export", str(run), "--out", str(tmp_path / "x.vti"), "--frame", "1"]) == 0
    assert pv.read(tmp_path / "x.vti").dimensions == (16, 16, 16)
    capsys.readouterr()
    assert main(["export", str(run), "--out", str(tmp_path / "y.gif"), "--stride", "0"]) == 2
    assert "stride must be at least 1" in capsys.readouterr().err
    assert main(["export", str(tmp_path / "none.h5"), "--out", str(tmp_path / "z.gif")]) == 2
    assert "none.h5: no such file" in capsys.readouterr().err
    assert main(["export", str(run), "--out", str(tmp_path / "y.gif"), "--cmap", "nope"]) == 2
    assert "unknown colour map" in capsys.readouterr().err


def test_cutaway_refuses_2d(recorded, tmp_path):
    with pytest.raises(ValueError, match="needs a 3D run"):
        write_movie(recorded, tmp_path / "x.gif", style=FrameStyle(view="cutaway"))
    assert list(tmp_path.iterdir()) == []


def test_trajectory_checks_frame_counts():
    with pytest.raises(ValueError, match="frame counts differ"):
        Trajectory({"surrogate": np.zeros((3, 4, 4))}, np.zeros(2))
