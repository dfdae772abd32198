"""`crane-viz simulate`: the documented HDF5 layout, PNG, and one-line errors with exit code 2."""

import subprocess
import sys

import h5py
import numpy as np
import pytest

from crane_viz.cli import main


def run(capsys, *argv):
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_simulate_writes_documented_file(tmp_path, capsys):
    out = tmp_path / "run.h5"
    code, stdout, _ = run(capsys, "simulate", "--size", "32", "--frames", "3", "--eta", "0.006",
                          "--mean", "0.45", "--seed", "5", "--out", str(out))
    assert code == 0 and "wrote" in stdout
    with h5py.File(out) as f:
        assert f["phi"].shape == (4, 32, 32) and f["phi"].dtype == np.float32
        assert f["phi"].attrs["layout"] == "frames,grid"
        np.testing.assert_allclose(f["time"][()], [0, 1, 2, 3])
        attrs = dict(f.attrs)
        assert attrs["preset"] == "coherent-2d" and attrs["solver"] == "spectral"
        assert attrs["eta"] == 0.006 and attrs["seed"] == 5 and attrs["size"] == 32
        assert "crane_viz_version" in attrs and attrs["steps_per_frame"] == 100
        assert abs(f["phi"][0].mean() - 0.45) < 1e-6 and abs(f["phi"][-1].mean() - 0.45) < 1e-6
    assert (tmp_path / "run.png").stat().st_size > 0
    assert not list(tmp_path.glob("*.part"))


def test_simulate_3d_fd_and_init_file(tmp_path, capsys):
    init = tmp_path / "init.npy"
    rng = np.random.default_rng(0)
    np.save(init, 0.4 + 0.05 * rng.standard_normal((12, 12, 12)))
    out = tmp_path / "r3.h5"
    code, _, err = run(capsys, "simulate", "--dim", "3", "--size", "12", "--frames", "1",
                       "--init", str(init), "--no-png", "--out", str(out))
    assert code == 0, err
    with h5py.File(out) as f:
        assert f["phi"].shape == (2, 12, 12, 12) and f.attrs["solver"] == "fd"
        assert f.attrs["preset"] == "plain-3d"
        assert f.attrs["mean"] == pytest.approx(float(np.load(init).mean()))
    assert not (tmp_path / "r3.png").exists()


@pytest.mark.parametrize("argv, needle", [
    (["--mean", "1.2"], "--mean must be less than 1"),
    (["--mean", "0"], "--mean must be greater than 0"),
    (["--amplitude", "-0.1"], "--amplitude must be at least 0"),
    (["--eta", "0.06"], "--eta must be at most 0.05"),
    (["--size", "4"], "--size must be at least 8"),
    (["--dim", "3", "--size", "300"], "limited to 256"),
    (["--dim", "3", "--preset", "coherent-2d"], "does not match preset"),
    (["--size", "16", "--cells", "32"], "--cells must be at most"),
    (["--device", "cuda:0"] if not __import__("torch").cuda.is_available() else ["--size", "9000"],
     "no CUDA GPU" if not __import__("torch").cuda.is_available() else "--size"),
])
def test_bad_input_is_one_line_exit_2(tmp_path, capsys, argv, needle):
    code, _, err = run(capsys, "simulate", "--frames", "1", "--out", str(tmp_path / "x.h5"), *argv)
    assert code == 2
    assert needle in err and err.count("\n") == 1 and "Traceback" not in err
    assert not (tmp_path / "x.h5").exists()


def test_bad_init_files_and_existing_output(tmp_path, capsys):
    np.save(tmp_path / "nan.npy", np.full((16, 16), np.nan))
    code, _, err = run(capsys, "simulate", "--init", str(tmp_path / "nan.npy"), "--size", "16",
                       "--out", str(tmp_path / "a.h5"))
    assert code == 2 and "NaN" in err
    np.save(tmp_path / "wrong.npy", np.zeros((16, 16)))
    code, _, err = run(capsys, "simulate", "--init", str(tmp_path / "wrong.npy"), "--size", "32",
                       "--out", str(tmp_path / "a.h5"))
    assert code == 2 and "expected 32 points" in err
    (tmp_path / "a.h5").write_text("keep me")
    code, _, err = run(capsys, "simulate", "--size", "16", "--frames", "1", "--out", str(tmp_path / "a.h5"))
    assert code == 2 and "--overwrite" in err
    assert (tmp_path / "a.h5").read_text() == "keep me"
    code, _, _ = run(capsys, "simulate", "--size", "16", "--frames", "1", "--overwrite",
                     "--out", str(tmp_path / "a.h5"))
    assert code == 0 and h5py.is_hdf5(tmp_path / "a.h5")


def test_warning_beyond_paper_range(tmp_path, capsys):
    code, _, err = run(capsys, "simulate", "--size", "16", "--frames", "1", "--eta", "0.02",
                       "--no-png", "--out", str(tmp_path / "w.h5"))
    assert code == 0 and "warning" in err and "0.012" in err


def test_console_script_help():
    """The installed entry point answers (README's commands rely on it)."""
    res = subprocess.run([sys.executable, "-m", "crane_viz", "simulate", "--help"],
                         capture_output=True, text=True, check=True)
    text = " ".join(res.stdout.split())
    assert "--eta ETA" in text and "Range [0.0, 0.05]" in text and "At least 0.0" in text
