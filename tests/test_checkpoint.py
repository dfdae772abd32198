"""Checkpoint round trip and every documented corruption case."""

import json

import pytest
import torch

from crane_viz.checkpoint import list_checkpoints, load_checkpoint, save_checkpoint
from crane_viz.errors import CheckpointError
from crane_viz.model import CRNN, get_config
from crane_viz.presets import get_preset

P2 = get_preset("coherent-2d")


@pytest.fixture
def saved(tmp_path):
    torch.manual_seed(1)
    model = CRNN(get_config("tiny-2d"))
    folder = save_checkpoint(tmp_path / "tiny", model, name="tiny", preset=P2,
                             training={"mean_range": [0.2, 0.8], "misfit_range": [0, 0.012], "grid": 16},
                             metrics={"val_loss": 0.1}, card="# tiny\n")
    return model, folder


def test_round_trip_is_bit_exact(saved):
    model, folder = saved
    ck = load_checkpoint(folder)
    for k, v in model.state_dict().items():
        assert torch.equal(v, ck.model.state_dict()[k])
    phi = torch.rand(1, 16, 16)
    cond = torch.tensor([[0.006]])
    assert torch.equal(model(phi, None, cond)[0], ck.model(phi, None, cond)[0])
    assert ck.preset is P2 and ck.frame_time == 1.0 and ck.grid_scale == 1 and ck.dim == 2
    assert ck.config["training"]["grid"] == 16 and ck.card.startswith("# tiny")
    assert len(ck.config["weights_sha256"]) == 64


def test_lookup_by_name(saved, monkeypatch):
    _, folder = saved
    monkeypatch.setenv("CRANE_VIZ_CHECKPOINTS", str(folder.parent))
    assert "tiny" in list_checkpoints()
    assert load_checkpoint("tiny").path == folder
    with pytest.raises(CheckpointError, match="'missing' not found"):
        load_checkpoint("missing")


def test_refuses_to_overwrite(saved):
    model, folder = saved
    with pytest.raises(CheckpointError, match="exists"):
        save_checkpoint(folder, model, name="tiny", preset=P2)


def edit_config(folder, **changes):
    path = folder / "config.json"
    config = json.loads(path.read_text())
    for key, value in changes.items():
        if "." in key:
            outer, inner = key.split(".")
            config[outer][inner] = value
        else:
            config[key] = value
    path.write_text(json.dumps(config))


@pytest.mark.parametrize("corrupt, file, message", [
    (lambda f: (f / "config.json").unlink(), "config.json", "missing checkpoint configuration"),
    (lambda f: (f / "weights.safetensors").unlink(), "weights.safetensors", "missing weights"),
    (lambda f: (f / "config.json").write_text("{not json"), "config.json", "not a readable JSON"),
    (lambda f: edit_config(f, format_version=2), "config.json", "format_version 2"),
    (lambda f: edit_config(f, **{"model.layers": 3}), "config.json", "unknown model configuration"),
    (lambda f: edit_config(f, **{"model.channels": 6}), "weights.safetensors", "do not match"),
    (lambda f: edit_config(f, weights_sha256="0" * 64), "weights.safetensors", "sha256"),
])
def test_corrupt_checkpoints_raise_naming_the_file(saved, corrupt, file, message):
    _, folder = saved
    corrupt(folder)
    with pytest.raises(CheckpointError, match=message) as info:
        load_checkpoint(folder)
    assert file in str(info.value)


def test_truncated_weights(saved):
    _, folder = saved
    w = folder / "weights.safetensors"
    w.write_bytes(w.read_bytes()[:100])
    edit_config(folder, weights_sha256=None)
    with pytest.raises(CheckpointError, match="not a readable safetensors") as info:
        load_checkpoint(folder)
    assert "weights.safetensors" in str(info.value)
