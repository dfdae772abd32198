"""Checkpoint round trip, lookup by name, atomic overwrite and every documented corruption case."""

import datetime
import hashlib
import json

import pytest
import torch

import crane_viz
from crane_viz.errors import CheckpointError
from crane_viz.nn.checkpoint import list_checkpoints, load_checkpoint, save_checkpoint
from crane_viz.nn.model import CRNN, get_config
from crane_viz.physics.presets import get_preset

P2 = get_preset("coherent-2d")
TRAINING = {"mean_range": [0.2, 0.8], "misfit_range": [0.0, 0.012], "grid": 16}


@pytest.fixture
def saved(tmp_path):
    model = CRNN(get_config("tiny-2d"))
    folder = save_checkpoint(tmp_path / "tiny", model, name="tiny", preset=P2, training=TRAINING,
                             dataset={"path": "d.h5"}, metrics={"val_loss": 0.1}, card="# tiny\n")
    return model, folder


def test_round_trip_is_bit_exact(saved):
    model, folder = saved
    ck = load_checkpoint(folder)
    loaded = ck.model.state_dict()
    assert loaded.keys() == model.state_dict().keys()
    for k, v in model.state_dict().items():
        assert torch.equal(v, loaded[k])
    phi, cond = torch.rand(1, 16, 16), torch.tensor([[0.006]])
    assert torch.equal(model(phi, None, cond)[0], ck.model(phi, None, cond)[0])
    assert not ck.model.training and ck.model_config == model.config
    assert ck.preset is P2 and ck.frame_time == 1.0 and ck.grid_scale == 1 and ck.dim == 2
    assert ck.conditions == ("misfit",) and ck.mean_range == (0.2, 0.8)
    assert ck.misfit_range == (0.0, 0.012) and ck.card.startswith("# tiny")


def test_config_contents(saved):
    model, folder = saved
    config = json.loads((folder / "config.json").read_text())
    assert config["format_version"] == 1 and config["crane_viz_version"] == crane_viz.__version__
    assert config["name"] == "tiny" and config["model"] == model.config.to_dict()
    assert config["preset"] == P2.to_dict() and config["frame_time"] == P2.frame_time
    assert config["grid_scale"] == 1 and config["training"] == TRAINING
    assert config["dataset"] == {"path": "d.h5"} and config["metrics"] == {"val_loss": 0.1}
    weights = (folder / "weights.safetensors").read_bytes()
    assert config["weights_sha256"] == hashlib.sha256(weights).hexdigest()
    created = datetime.datetime.fromisoformat(config["created"])
    assert created.utcoffset() == datetime.timedelta(0)
    assert not weights.startswith(b"\x80")  # not a pickle


def test_lookup_by_name(saved, monkeypatch):
    _, folder = saved
    monkeypatch.setenv("CRANE_VIZ_CHECKPOINTS", str(folder.parent))
    assert "tiny" in list_checkpoints()
    assert load_checkpoint("tiny").path == folder
    with pytest.raises(CheckpointError, match="'missing' not found"):
        load_checkpoint("missing")


def test_overwrite_only_when_asked(saved):
    model, folder = saved
    with pytest.raises(CheckpointError, match="exists"):
        save_checkpoint(folder, model, name="tiny", preset=P2)
    other = CRNN(get_config("tiny-3d"))
    save_checkpoint(folder, other, name="other", preset=get_preset("plain-3d"), overwrite=True)
    ck = load_checkpoint(folder)
    assert ck.name == "other" and ck.dim == 3 and ck.card == ""
    assert [p.name for p in folder.parent.iterdir()] == ["tiny"]  # no temporary folders left


def edit_config(folder, **changes):
    path = folder / "config.json"
    config = json.loads(path.read_text())
    for key, value in changes.items():
        outer, _, inner = key.partition(".")
        if inner:
            config[outer][inner] = value
        else:
            config[key] = value
    path.write_text(json.dumps(config))


def truncate_weights(folder):
    w = folder / "weights.safetensors"
    w.write_bytes(w.read_bytes()[:100])


@pytest.mark.parametrize("corrupt, file, message", [
    (lambda f: (f / "config.json").unlink(), "config.json", "missing checkpoint configuration"),
    (lambda f: (f / "weights.safetensors").unlink(), "weights.safetensors", "missing weights"),
    (lambda f: (f / "config.json").write_text("{not json"), "config.json", "not a readable JSON"),
    (lambda f: (f / "config.json").write_text("[1]"), "config.json", "not a readable JSON"),
    (lambda f: edit_config(f, format_version=2), "config.json", "format_version 2"),
    (lambda f: edit_config(f, **{"model.layers": 3}), "config.json", "unknown model configuration"),
    (lambda f: edit_config(f, **{"model.channels": 6}), "weights.safetensors", "do not match"),
    (lambda f: edit_config(f, weights_sha256="0" * 64), "weights.safetensors", "sha256"),
    (truncate_weights, "weights.safetensors", "sha256"),
])
def test_corrupt_checkpoints_raise_naming_the_file(saved, corrupt, file, message):
    _, folder = saved
    corrupt(folder)
    with pytest.raises(CheckpointError, match=message) as info:
        load_checkpoint(folder)
    assert file in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize("content", [None, b"\x80\x04K\x01."])  # truncated; a pickle
def test_unreadable_weights_without_recorded_hash(saved, content):
    _, folder = saved
    w = folder / "weights.safetensors"
    w.write_bytes(w.read_bytes()[:100] if content is None else content)
    edit_config(folder, weights_sha256=None)
    with pytest.raises(CheckpointError, match="not a readable safetensors") as info:
        load_checkpoint(folder)
    assert "weights.safetensors" in str(info.value)
