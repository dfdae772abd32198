"""Every command's bad inputs: one line naming the input and its bound, exit status 2, no file left.

One table per command (issue #17). Each case runs `crane-viz` in-process and must be refused before
any heavy work, so the whole table takes seconds.
"""

import json
import os
import resource
import shutil
import signal
from contextlib import contextmanager
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from crane_viz.cli import main
from crane_viz.nn.checkpoint import save_checkpoint
from crane_viz.nn.model import CRNN, get_config
from crane_viz.physics.presets import get_preset
from crane_viz.training.dataset import DatasetSpec, generate


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Hostile and broken inputs, made once."""
    d = tmp_path_factory.mktemp("bad")
    f = {"dir": d}
    if os.geteuid() == 0:  # root ignores permissions; /proc refuses new files to everyone
        f["readonly"] = Path("/proc")
    else:
        f["readonly"] = d / "readonly"
        f["readonly"].mkdir()
        f["readonly"].chmod(0o555)
    np.save(d / "ones.npy", np.ones((32, 32)))
    (d / "a_file").write_text("not a folder")
    (d / "text.txt").write_text("hello\n")
    # training states: garbage, truncated, wrongly structured
    (d / "garbage.pt").write_bytes(b"\x80\x04garbage" * 10)
    good = d / "good.pt"
    torch.save({"model": {}, "config": "{}"}, good)
    (d / "truncated.pt").write_bytes(good.read_bytes()[:40])
    torch.save({"something": 1}, d / "structure.pt")
    # datasets
    data = generate(DatasetSpec(sequences=3, frames=3, size=16, batch=3, seed=1), d / "data.h5")
    for name, change in (("intdtype", "int"), ("zero", "zero"), ("naneta", "naneta"), ("huge", "huge")):
        target = d / f"{name}.h5"
        shutil.copy(data, target)
        with h5py.File(target, "r+") as h5:
            if change == "int":
                phi = h5["phi"][()]
                del h5["phi"]
                h5["phi"] = (phi * 100).astype("int32")
            elif change == "zero":
                for key in ("phi", "mean", "eta", "amplitude", "seed", "done", "cells"):
                    shape = (0, *h5[key].shape[1:])
                    dtype = h5[key].dtype
                    del h5[key]
                    h5.create_dataset(key, shape=shape, dtype=dtype)
            elif change == "naneta":
                h5["eta"][0] = np.nan
            else:
                h5["phi"][0, 1, 0, 0] = 1e30
    f["data"] = data
    # run files for export
    for name, phi in (("flat.h5", np.zeros(10, "f4")), ("five.h5", np.zeros((2, 4, 4, 4, 4), "f4")),
                      ("noframes.h5", np.zeros((0, 16, 16), "f4")), ("text_phi.h5", np.array([b"abc", b"def"])),
                      ("notime.h5", np.zeros((3, 16, 16), "f4"))):
        with h5py.File(d / name, "w") as h5:
            h5["phi"] = phi
            if name != "notime.h5":
                h5["time"] = np.arange(len(phi), dtype="f8")
    with h5py.File(d / "good_run.h5", "w") as h5:
        h5["phi"] = np.random.default_rng(0).random((3, 16, 16)).astype("f4")
        h5["time"] = np.arange(3.0)
    (d / "corrupt.h5").write_bytes((d / "good_run.h5").read_bytes()[:2000])
    # phase-diagram inputs
    np.save(d / "fields.npy", np.full((2, 16, 16), 0.5))
    np.save(d / "objects.npy", np.array([{"a": 1}, None], dtype=object), allow_pickle=True)
    (d / "params.csv").write_text("mean,eta\n0.5,0.006\n0.4,0.002\n")
    (d / "short.csv").write_text("mean,eta\n0.5\n0.4,0.002\n")
    (d / "binary.csv").write_bytes(bytes(range(256)))
    # existing outputs and their companions
    (d / "keep.png").write_bytes(b"png")
    (d / "phase.json").write_text("{}")
    (d / "e.gif").write_bytes(b"gif")
    (d / "existing_dir").mkdir()
    (d / "folder.png").mkdir()
    (d / "resume_run").mkdir()
    (d / "resume_run" / "train_state.pt").write_bytes(b"not a state")
    (d / "cp.h5.part").write_bytes(b"not an hdf5 file")
    # hostile checkpoints: a valid tiny one, then each config damaged
    tiny = save_checkpoint(d / "ck" / "tiny", CRNN(get_config("tiny-2d")), name="tiny",
                           preset=get_preset("coherent-2d"))
    damage = {
        "scale0": lambda c: c.update(grid_scale=0),
        "scalestr": lambda c: c.update(grid_scale="two"),
        "dim7": lambda c: c["model"].update(dim=7),
        "eps0": lambda c: c["preset"].update(interface_width=0.0),
        "channels": lambda c: c["model"].update(channels=200_000),
        "tinystep": lambda c: c["preset"]["time_steps"].update(spectral=1e-9),
        "kernel": lambda c: c["model"].update(kernel=999),
    }
    for name, change in damage.items():
        target = d / "ck" / name
        shutil.copytree(tiny, target)
        config = json.loads((target / "config.json").read_text())
        change(config)
        (target / "config.json").write_text(json.dumps(config))
    nested = d / "ck" / "nested"
    shutil.copytree(tiny, nested)
    (nested / "config.json").write_text("[" * 100_000 + "]" * 100_000)
    f["ck"] = d / "ck"
    return f


@contextmanager
def bounded(seconds: int = 20, extra_bytes: int = 2 * 2**30):
    """Refusals must be quick and cheap: the case gets `seconds` and `extra_bytes` of address
    space beyond what the test process holds already."""
    def expire(*_):
        raise TimeoutError(f"not refused within {seconds} s")
    used = int(Path("/proc/self/statm").read_text().split()[0]) * resource.getpagesize()
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    resource.setrlimit(resource.RLIMIT_AS, (used + extra_bytes, hard))
    old = signal.signal(signal.SIGALRM, expire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


def run_bad(argv, capsys, message, files):
    """The command exits 2 with one stderr line containing `message`, and writes no file."""
    before = set(files["dir"].rglob("*"))
    with bounded():
        code = main([str(a) for a in argv])
    err = capsys.readouterr().err.strip()
    assert code == 2, f"exit {code}: {err}"
    lines = [line for line in err.splitlines() if not line.startswith("crane-viz: warning")]
    assert len(lines) == 1 and lines[0].startswith("crane-viz: error:"), err
    assert message in lines[0], lines[0]
    assert set(files["dir"].rglob("*")) == before, "a file was left behind"


def out(files, name):
    return files["dir"] / name


DEVICE_CASES = [(["--device", "foo"], "--device"), (["--device", "mps"], "--device")]

SIMULATE = [
    *DEVICE_CASES,
    (["--init", "{dir}/ones.npy"], "ones.npy"),
    (["--out", "{readonly}/x.h5"], "cannot write"),
    (["--out", "{dir}/existing_dir", "--overwrite"], "is a folder"),
    (["--out", "{dir}/keep.h5"], "keep.png"),
    (["--out", "{dir}/a_file/x.h5"], "a_file"),
    (["--size", "100000"], "--size"),
    (["--preset", "nope"], "--preset must be one of coherent-2d, plain-3d, plain-2d, coherent-3d, not 'nope'"),
]
RUN = [
    *DEVICE_CASES,
    (["--init", "{dir}/ones.npy", "--size", "32"], "ones.npy"),
    (["--size", "8192"], "8192"),
    (["--out", "{readonly}/x.h5"], "cannot write"),
    (["--out", "{dir}/existing_dir", "--overwrite"], "is a folder"),
    *[(["--checkpoint", f"{{ck}}/{name}", "--size", "16"], name)
      for name in ("scale0", "scalestr", "dim7", "eps0", "channels", "tinystep", "kernel", "nested")],
]
GENERATE = [
    *DEVICE_CASES,
    (["--seed", "-1"], "--seed"),
    (["--seed", str(2**70)], "--seed"),
    (["--eta-range", "0", "inf"], "--eta-range"),
    (["--eta-range", "0.5", "1"], "--eta-range"),
    (["--sequences", "0"], "--sequences"),
    (["--out", "{dir}/missing/d.h5"], "missing"),
    (["--out", "{dir}/cp.h5"], "cp.h5.part"),
    (["--out", "{readonly}/d.h5"], "cannot write"),
    (["--size", "100000"], "--size"),
    (["--preset", "plain-3d", "--size", "512"], "--size"),
    (["--amplitude-sigma", "-0.1"], "--amplitude-sigma"),
    (["--amplitude-sigma", "nan"], "--amplitude-sigma"),
]
TRAIN = [
    *DEVICE_CASES,
    (["--batch", "0"], "--batch"),
    (["--batch", "-1"], "--batch"),
    (["--epochs", "0"], "--epochs"),
    (["--grid-scale", "0"], "--grid-scale"),
    (["--grid-scale", "3"], "--grid-scale must be one of 1, 2, 4, not 3"),
    (["--frame-stride", "0"], "--frame-stride"),
    (["--grid-scale", "32"], "--grid-scale"),
    (["--lr", "-1"], "--lr"),
    (["--lr", "nan"], "--lr"),
    (["--lr", "1e6"], "--lr"),
    (["--out", "{readonly}/run"], "cannot write"),
    (["--out", "{dir}/resume_run", "--resume"], "train_state.pt"),
    (["--noise", "-1"], "--noise"),
    (["--grad-weight", "inf"], "--grad-weight must be a finite number"),
    (["--clip-norm", "inf"], "--clip-norm must be a finite number"),
    (["--val-fraction", "1"], "--val-fraction"),
    (["--model", "foo"], "--model"),
    (["--model", "tiny-3d"], "3D"),
    (["--data", "{dir}/intdtype.h5"], "intdtype.h5"),
    (["--data", "{dir}/zero.h5"], "zero.h5"),
    (["--data", "{dir}/naneta.h5"], "naneta.h5"),
    (["--data", "{dir}/huge.h5"], "huge.h5"),
    (["--data", "{dir}/text.txt"], "text.txt"),
    (["--out", "{dir}/a_file"], "a_file"),
    *[(["--init", f"{{dir}}/{name}.pt"], f"{name}.pt") for name in ("garbage", "truncated", "structure")],
]
EVALUATE = [
    *DEVICE_CASES,
    *[([f"--{key}", "0"], f"--{key}") for key in ("cases", "horizon", "extrapolate", "batch", "ensemble")],
    (["--seed", "-1"], "--seed"),
    (["--out", "{readonly}/ev"], "cannot write"),
    (["--out", "{dir}/a_file"], "a_file"),
]
STABILITY = [
    *DEVICE_CASES,
    (["--size", "4"], "--size"),
    (["--frames", "0"], "--frames"),
    (["--cases", "0"], "--cases"),
    (["--eta-percent", "9"], "--eta-percent"),
    (["--size", "256", "--cases", "256"], "--size 256"),
    (["--out", "{dir}/a_file"], "a_file"),
    (["--out", "{readonly}/st.json"], "cannot write"),
    (["--out", "{dir}"], "is a folder"),
]
PHASE = [
    *DEVICE_CASES,
    (["--checkpoint", "plain-3d"], "2D"),
    (["--init-fields", "{dir}/text.txt", "--params", "{dir}/params.csv"], "text.txt"),
    (["--init-fields", "{dir}/objects.npy", "--params", "{dir}/params.csv"], "objects.npy"),
    (["--init-fields", "{dir}/fields.npy", "--params", "{dir}/short.csv"], "short.csv"),
    (["--init-fields", "{dir}/fields.npy", "--params", "{dir}/binary.csv"], "binary.csv"),
    (["--init-fields", "{dir}/fields.npy"], "--params"),
    (["--out", "{dir}/phase.csv"], "phase.json"),
    (["--out", "{readonly}/p.csv"], "cannot write"),
    (["--scheduler", "tcp://127.0.0.1:9"], "scheduler"),
    (["--size", "2048", "--batch", "1024", "--points", "1024"], "--batch 1024 at --size 2048"),
]
EXPORT = [
    (["{dir}/good_run.h5", "--out", "{dir}/x.png", "--frame", "99"], "--frame"),
    (["{dir}/good_run.h5", "--out", "{dir}/x.png", "--frame", "-9"], "--frame"),
    (["{dir}/flat.h5", "--out", "{dir}/x.png"], "flat.h5"),
    (["{dir}/five.h5", "--out", "{dir}/x.png"], "five.h5"),
    (["{dir}/noframes.h5", "--out", "{dir}/x.png"], "noframes.h5"),
    (["{dir}/text_phi.h5", "--out", "{dir}/x.png"], "text_phi.h5"),
    (["{dir}/notime.h5", "--out", "{dir}/x.png"], "notime.h5"),
    (["{dir}/corrupt.h5", "--out", "{dir}/x.png"], "corrupt.h5"),
    (["{dir}/good_run.h5", "--out", "{dir}/e.png", "--format", "gif"], "e.gif"),
    (["{dir}/good_run.h5", "--out", "{readonly}/x.png"], "cannot write"),
    (["{dir}/good_run.h5", "--out", "{dir}/folder.png", "--overwrite"], "is a folder"),
]
JOBS = [
    (["show", "no-such-job"], "no-such-job"),
    (["cancel", "no-such-job"], "no-such-job"),
]

BASE = {
    "simulate": ["simulate", "--size", "16", "--frames", "2", "--out", "{dir}/s.h5"],
    "run": ["run", "--frames", "2", "--out", "{dir}/r.h5"],
    "generate": ["generate", "--sequences", "2", "--frames", "2", "--size", "16", "--out", "{dir}/g.h5"],
    "train": ["train", "--data", "{data}", "--out", "{dir}/t", "--model", "tiny-2d", "--epochs", "1"],
    "evaluate": ["evaluate", "coherent-2d", "--out", "{dir}/ev"],
    "stability": ["stability", "plain-3d", "--size", "8", "--frames", "2", "--out", "{dir}/st.json"],
    "phase-diagram": ["phase-diagram", "--points", "2", "--size", "16", "--horizon", "5", "--out", "{dir}/p.csv"],
    "export": ["export"],
    "jobs": ["jobs"],
}
TABLE = [(cmd, case) for cmd, cases in (("simulate", SIMULATE), ("run", RUN), ("generate", GENERATE),
                                         ("train", TRAIN), ("evaluate", EVALUATE), ("stability", STABILITY),
                                         ("phase-diagram", PHASE),
                                         ("export", EXPORT), ("jobs", JOBS)) for case in cases]


def fill(args, files):
    """The case's arguments with {dir}, {data}, {readonly} and {ck} filled in (argparse keeps the
    last of an option given twice, so a case overrides its command's base arguments)."""
    return [a.format(**files) for a in args]


@pytest.mark.parametrize("command, case", TABLE, ids=[f"{c}:{' '.join(a)}" for c, (a, _) in TABLE])
def test_bad_input_is_one_line_and_exit_2(command, case, files, capsys):
    args, message = case
    argv = fill([*BASE[command], *args], files)
    run_bad(argv, capsys, message.format(**files) if "{" in message else message, files)


@pytest.mark.slow
# export: an interrupt that lands in imageio-ffmpeg's teardown is swallowed there (the movie used to
# complete); the CLI remembers the signal and the atomic write refuses to commit
@pytest.mark.parametrize("make_args", [
    lambda d: ["simulate", "--size", "128", "--frames", "100000", "--no-png", "--out", str(d / "long.h5")],
    lambda d: ["export", str(d / "long_run.h5"), "--out", str(d / "movie.mp4"), "--height", "512"],
], ids=["simulate", "export"])
def test_sigterm_leaves_no_temporary_file(tmp_path, make_args):
    """SIGTERM while writing is handled like Ctrl-C: exit 130 and the hidden .part file removed."""
    import subprocess
    import sys
    import time

    with h5py.File(tmp_path / "long_run.h5", "w") as h5:
        h5["phi"] = np.random.default_rng(0).random((400, 64, 64)).astype("f4")
        h5["time"] = np.arange(400.0)
    before = set(tmp_path.iterdir())
    proc = subprocess.Popen([sys.executable, "-m", "crane_viz", *make_args(tmp_path)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 60
    while not list(tmp_path.glob(".*.part")) and time.time() < deadline and proc.poll() is None:
        time.sleep(0.1)
    assert list(tmp_path.glob(".*.part")), "the command never started writing"
    proc.terminate()
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert set(tmp_path.iterdir()) == before, "a temporary file was left behind"


def test_an_interrupt_swallowed_by_a_library_still_stops_the_write(tmp_path):
    """imageio-ffmpeg's teardown catches KeyboardInterrupt while ffmpeg finishes a movie, so a
    SIGTERM landing there used to let the export complete with exit 0; the CLI remembers the
    signal, the atomic write refuses to commit, and the command exits 130 without output."""
    import os
    import signal
    import time

    from crane_viz.cli.common import run_guarded
    from crane_viz.io.files import atomic_path

    out = tmp_path / "movie.mp4"

    def command(_):
        with atomic_path(out, private_folder=True) as tmp:
            tmp.write_bytes(b"frames")
            try:
                os.kill(os.getpid(), signal.SIGTERM)
                time.sleep(2)  # the handler runs here and raises
            except KeyboardInterrupt:
                pass  # swallowed, as in imageio-ffmpeg's teardown
        return 0

    assert run_guarded(command, None) == 130
    assert list(tmp_path.iterdir()) == []
    with atomic_path(out) as tmp:  # after the command, library writes commit again
        tmp.write_bytes(b"later")
    assert out.read_bytes() == b"later"
