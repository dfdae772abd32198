"""Background training jobs: real `crane-viz train-job` processes on tiny data (4 sequences × 8
frames at 16²), started, cancelled, resumed, killed and raced through `Project`."""

import json
import os
import signal
import threading
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

from crane_viz.errors import DatasetError, InputError
from crane_viz.nn.checkpoint import list_checkpoints, load_checkpoint
from crane_viz.training.dataset import DatasetSpec, generate
from crane_viz.training.estimate import estimate
from crane_viz.training.job_settings import JobBusy, TrainJobSettings
from crane_viz.training.jobs import Project

TINY = dict(sequences=4, frames=8, size=16, model="tiny-2d", batch=4, threads=1, preview_every=1)


@pytest.fixture
def project(tmp_path, monkeypatch):
    monkeypatch.setenv("CRANE_VIZ_PROJECT", str(tmp_path))
    p = Project(tmp_path)
    yield p
    for job in p.jobs():
        p.cancel(job.id)
        p.wait(job.id, timeout=30)


def wait_for(predicate, timeout=60.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError("condition not met in time")


def test_tiny_job_finishes_with_loss_curve_preview_and_listed_checkpoint(project):
    job = project.start(TrainJobSettings(checkpoint_name="tiny-job", epochs=3, **TINY))
    status = project.wait(job.id, timeout=120)
    assert status.state == "finished", status.reason + job.tail()
    log = job.log()
    assert [r["epoch"] for r in log] == [1, 2, 3]
    assert all(r["train_loss"] > 0 and r["val_loss"] > 0 for r in log)
    assert job.preview.stat().st_size > 0 and status.info["preview_epoch"] == 3
    assert "tiny-job" in list_checkpoints()
    ckpt = load_checkpoint("tiny-job")
    assert ckpt.training["frames"] == 8 and ckpt.config["metrics"]["val_loss"] == min(r["val_loss"] for r in log)
    card = (ckpt.path / "MODEL_CARD.md").read_text()
    assert "| 3 |" in card and "crane-viz evaluate tiny-job" in card


def test_a_finished_job_leaves_no_zombie_even_when_nobody_polls_it(project):
    """The job's status is read from its file only (never polled through the project), and its
    process is gone — reaped — shortly after it finishes (#16)."""
    job = project.start(TrainJobSettings(checkpoint_name="unwatched", epochs=1, **TINY))
    pid = int((job.folder / "pid").read_text())
    wait_for(lambda: json.loads((job.folder / "status.json").read_text()).get("state") == "finished", 120)

    # a reaped child disappears from /proc; a zombie stays there in state "Z"
    wait_for(lambda: not Path(f"/proc/{pid}").exists(), timeout=10)


def test_cancel_keeps_a_state_that_resume_continues_from(project):
    job = project.start(TrainJobSettings(checkpoint_name="resumable", epochs=2000, **TINY))
    wait_for(lambda: len(job.log()) >= 2)
    assert project.cancel(job.id)
    status = project.wait(job.id, timeout=60)
    assert status.state == "cancelled" and (job.run_dir / "train_state.pt").is_file()
    saved = len(job.log())
    assert [r["epoch"] for r in job.log()] == list(range(1, saved + 1))

    project.resume(job.id)
    wait_for(lambda: len(job.log()) >= saved + 2)
    project.cancel(job.id)
    assert project.wait(job.id, timeout=60).state == "cancelled"
    epochs = [r["epoch"] for r in job.log()]
    assert epochs == list(range(1, len(epochs) + 1))  # saved + 1 follows saved: nothing redone or skipped
    assert [h["resume"] for h in job.status().info["history"]] == [False, True]


def test_cancel_during_generation_keeps_finished_sequences_for_the_resume(project):
    settings = TrainJobSettings(checkpoint_name="gen-cancel", epochs=1, **{**TINY, "sequences": 160, "frames": 60,
                                                                            "size": 32})
    job = project.start(settings)
    wait_for(lambda: job.status().info.get("generated", 0) >= 16)  # the first batch of 16 is stored
    project.cancel(job.id)
    assert project.wait(job.id, timeout=60).state == "cancelled"
    part = job.folder / "data.h5.part"
    with h5py.File(part) as f:
        kept = int(f["done"][()].sum())
    assert 16 <= kept < 160 and not (job.folder / "data.h5").exists()
    project.resume(job.id)
    status = project.wait(job.id, timeout=300)
    assert status.state == "finished", status.reason
    assert job.output.read_text().count("dataset ") == 1  # generated once, continued from the .part


def test_a_killed_job_is_reported_failed_with_its_last_output(project):
    job = project.start(TrainJobSettings(checkpoint_name="killed", epochs=2000, **TINY))
    wait_for(lambda: len(job.log()) >= 1)
    os.kill(job.pid(), signal.SIGKILL)
    status = wait_for(lambda: (s := job.status()).state == "failed" and s)
    assert "killed by signal 9" in status.reason
    assert "epoch 1/2000" in status.reason  # the output's last lines come with it
    assert status.resumable


def test_two_concurrent_starts_give_one_job(project):
    barrier, results = threading.Barrier(2), []

    def start(name):
        barrier.wait()
        try:
            results.append(project.start(TrainJobSettings(checkpoint_name=name, epochs=2000, **TINY)))
        except JobBusy as exc:
            results.append(exc)
    threads = [threading.Thread(target=start, args=(n,)) for n in ("first", "second")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    jobs = [r for r in results if not isinstance(r, Exception)]
    refused = [r for r in results if isinstance(r, JobBusy)]
    assert len(jobs) == 1 and len(refused) == 1 and len(project.jobs()) == 1
    assert "one job per project" in str(refused[0])


def test_a_job_failing_inside_reports_the_reason(project, tmp_path):
    data = generate(DatasetSpec(sequences=2, frames=3, size=8), tmp_path / "nan.h5")
    with h5py.File(data, "r+") as f:
        f["phi"][0, 1, 0, 0] = np.nan
    job = project.start(TrainJobSettings(checkpoint_name="bad-data", dataset=str(data), epochs=2, **TINY))
    status = project.wait(job.id, timeout=120)
    assert status.state == "failed" and "contains NaN" in status.reason


def test_a_file_that_is_no_dataset_is_refused_before_starting(project, tmp_path):
    bad = tmp_path / "bad.h5"
    bad.write_bytes(b"not hdf5 at all")
    with pytest.raises(DatasetError, match="not a crane_viz dataset"):
        project.start(TrainJobSettings(checkpoint_name="bad", dataset=str(bad), **TINY))


def test_bad_settings_name_the_setting(project):
    with pytest.raises(InputError, match="--sequences"):
        TrainJobSettings(sequences=1)
    with pytest.raises(InputError, match="--checkpoint-name"):
        project.start(TrainJobSettings(checkpoint_name="no spaces", **TINY))
    with pytest.raises(InputError, match="--eta-max-percent"):
        project.start(TrainJobSettings(checkpoint_name="x", preset="plain-3d", **{**TINY, "model": "tiny-3d"}))
    with pytest.raises(InputError, match="--frame-stride 8 leaves one frame"):  # 8 frames: 0 only
        project.start(TrainJobSettings(checkpoint_name="x", frame_stride=8, **TINY))
    with pytest.raises(InputError, match="--frame-stride 3 leaves one frame"):  # the first 3 frames: 0 only
        project.start(TrainJobSettings(checkpoint_name="x", frame_stride=3, max_frames=3, **TINY))
    with pytest.raises(InputError, match="exists"):
        project.start(TrainJobSettings(checkpoint_name="coherent-2d", **TINY))
    assert project.jobs() == []


def test_a_mix_dataset_of_another_preset_or_too_short_is_refused_before_starting(project, tmp_path):
    other = generate(DatasetSpec(preset="plain-2d", sequences=1, frames=4, size=16, batch=1, seed=1),
                     tmp_path / "plain.h5")
    with pytest.raises(InputError, match="--mix-data .*none.h5: no such file"):
        project.start(TrainJobSettings(checkpoint_name="x", mix_data=str(tmp_path / "none.h5"), **TINY))
    with pytest.raises(InputError, match="holds preset 'plain-2d', but the training data hold 'coherent-2d'"):
        project.start(TrainJobSettings(checkpoint_name="x", mix_data=str(other), **TINY))
    with pytest.raises(InputError, match="--mix-frames 10 needs 11"):
        project.start(TrainJobSettings(checkpoint_name="x", mix_data=str(other), **{**TINY, "preset": "plain-2d"}))
    assert project.jobs() == []


def test_estimate_counts_the_dataset_and_times_the_steps():
    est = estimate(TrainJobSettings(epochs=10, **TINY))
    assert est["bytes"] == 4 * 8 * 16 * 16 * 4
    assert est["generate_s"] > 0 and est["epoch_s"] > 0
    assert est["total_s"] == pytest.approx(est["generate_s"] + 10 * est["epoch_s"])


def test_the_estimate_counts_the_frames_trained_on():
    """Every 2nd of the first 7 frames: 4 frames trained on, the same as a 4-frame dataset."""
    assert TrainJobSettings(frames=9, max_frames=7, frame_stride=2).trained_frames(9) == 4
    assert TrainJobSettings(frames=9, frame_stride=3).trained_frames(9) == 3
    # 4 sequences: 3 train in one batch, 1 validates (a validation step counts a third)
    strided = estimate(TrainJobSettings(**{**TINY, "frames": 31, "frame_stride": 10}), repeats=1)
    plain = estimate(TrainJobSettings(**{**TINY, "frames": 31}), repeats=1)
    assert strided["epoch_steps"] == 3 + 3 / 3 and plain["epoch_steps"] == 30 + 30 / 3


def test_estimating_a_huge_job_is_quick_and_small():
    """A 3D job at 192³ is timed at 32³ and scaled: seconds and well under 1 GiB more memory, and
    it says so; the request of #16 item 1 (256³) is refused at once, since its data batch would
    not fit this machine."""
    import resource

    from crane_viz.training.estimate import describe_estimate

    with pytest.raises(InputError, match="--size 256"):
        estimate(TrainJobSettings(preset="plain-3d", model="small-3d", size=256, eta_max_percent=0.0,
                                  sequences=8, frames=8, threads=1))
    settings = TrainJobSettings(preset="plain-3d", model="small-3d", size=192, eta_max_percent=0.0,
                                sequences=8, frames=8, threads=1)
    used = int(Path("/proc/self/statm").read_text().split()[0]) * resource.getpagesize()
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    resource.setrlimit(resource.RLIMIT_AS, (used + 2**30, hard))
    try:
        started = time.monotonic()
        est = estimate(settings, repeats=1)
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))
    assert time.monotonic() - started < 30
    assert est["timed_side"] == 32 and est["side"] == 192 and est["epoch_s"] > 0
    assert "at 32 points per side and scaled to 192" in describe_estimate(est)
