"""Self-describing checkpoints: a folder with safetensors weights, config.json and a model card.

Weights load without executing code (safetensors). config.json holds the architecture, the
physics preset, τ, the grid scale, the training ranges, dataset provenance and validation
metrics, so the app rebuilds the model without importing training code.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from . import __version__
from .errors import CheckpointError
from .model import CRNN, CRNNConfig
from .presets import PRESETS, Preset

FORMAT_VERSION = 1
WEIGHTS, CONFIG, CARD = "weights.safetensors", "config.json", "MODEL_CARD.md"
REPO_CHECKPOINTS = Path(__file__).resolve().parents[1] / "checkpoints"


def search_path() -> list[Path]:
    """Where checkpoint names are looked up: $CRANE_VIZ_CHECKPOINTS, <repo>/checkpoints, ./checkpoints."""
    env = [Path(p) for p in os.environ.get("CRANE_VIZ_CHECKPOINTS", "").split(os.pathsep) if p]
    return [*env, REPO_CHECKPOINTS, Path.cwd() / "checkpoints"]


def list_checkpoints() -> list[str]:
    """Names of the checkpoints found on the search path (first occurrence wins)."""
    names: list[str] = []
    for root in search_path():
        if root.is_dir():
            for folder in sorted(root.iterdir()):
                if (folder / CONFIG).is_file() and folder.name not in names:
                    names.append(folder.name)
    return names


def resolve(name_or_path: str | Path) -> Path:
    """A checkpoint folder from a path or a name on the search path."""
    path = Path(name_or_path)
    if path.is_dir():
        return path
    for root in search_path():
        if (root / str(name_or_path)).is_dir():
            return root / str(name_or_path)
    raise CheckpointError(f"checkpoint {str(name_or_path)!r} not found (looked in "
                          f"{', '.join(str(p) for p in search_path())}); known: "
                          f"{', '.join(list_checkpoints()) or 'none'}")


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def preset_from_dict(d: dict) -> Preset:
    """The named preset when the stored constants equal it, else a Preset rebuilt from them."""
    known = PRESETS.get(d.get("name"))
    if known is not None and known.to_dict() == d:
        return known
    d = dict(d)
    d["misfit_range"], d["mean_range"] = tuple(d["misfit_range"]), tuple(d["mean_range"])
    return Preset(**d)


@dataclass
class Checkpoint:
    """A loaded checkpoint: its folder, config dict, architecture, physics and model (eval mode)."""

    path: Path
    config: dict
    model_config: CRNNConfig
    preset: Preset
    model: CRNN

    @property
    def name(self) -> str:
        return self.config["name"]

    @property
    def frame_time(self) -> float:
        return float(self.config["frame_time"])

    @property
    def grid_scale(self) -> int:
        return int(self.config["grid_scale"])

    @property
    def dim(self) -> int:
        return self.model_config.dim

    @property
    def training(self) -> dict:
        return self.config.get("training") or {}

    @property
    def card(self) -> str:
        card = self.path / CARD
        return card.read_text() if card.is_file() else ""


def save_checkpoint(folder: str | Path, model: CRNN, *, name: str, preset: Preset,
                    grid_scale: int = 1, training: dict | None = None, dataset: dict | None = None,
                    metrics: dict | None = None, card: str | None = None,
                    overwrite: bool = False) -> Path:
    """Write a checkpoint folder atomically (temporary sibling folder, then rename)."""
    folder = Path(folder)
    if folder.exists() and not overwrite:
        raise CheckpointError(f"{folder} exists; pass overwrite=True to replace it")
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
        save_file(tensors, str(tmp / WEIGHTS))
        config = {
            "format_version": FORMAT_VERSION, "crane_viz_version": __version__, "name": name,
            "model": model.config.to_dict(), "preset": preset.to_dict(),
            "frame_time": preset.frame_time, "grid_scale": grid_scale,
            "training": training or {}, "dataset": dataset or {}, "metrics": metrics or {},
            "weights_sha256": sha256(tmp / WEIGHTS),
            "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        }
        (tmp / CONFIG).write_text(json.dumps(config, indent=2) + "\n")
        if card:
            (tmp / CARD).write_text(card)
        if folder.exists():
            shutil.rmtree(folder)
        os.replace(tmp, folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return folder


def read_config(folder: Path) -> dict:
    path = folder / CONFIG
    if not path.is_file():
        raise CheckpointError(f"{path}: missing checkpoint configuration")
    try:
        config = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{path}: not a readable JSON configuration ({exc})") from None
    if config.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(f"{path}: format_version {config.get('format_version')!r} is not "
                              f"supported (this crane_viz {__version__} reads {FORMAT_VERSION})")
    for key in ("name", "model", "preset", "frame_time", "grid_scale"):
        if key not in config:
            raise CheckpointError(f"{path}: missing key {key!r}")
    return config


def load_checkpoint(name_or_path: str | Path, *, device: str | torch.device = "cpu") -> Checkpoint:
    """Load and verify a checkpoint by folder path or name (see `search_path`)."""
    folder = resolve(name_or_path)
    config = read_config(folder)
    cfg_path = folder / CONFIG
    try:
        model_config = CRNNConfig.from_dict(config["model"])
        preset = preset_from_dict(config["preset"])
    except (CheckpointError, TypeError, ValueError, KeyError) as exc:
        raise CheckpointError(f"{cfg_path}: invalid model or preset description ({exc})") from None
    weights = folder / WEIGHTS
    if not weights.is_file():
        raise CheckpointError(f"{weights}: missing weights file")
    if config.get("weights_sha256") and sha256(weights) != config["weights_sha256"]:
        raise CheckpointError(f"{weights}: sha256 differs from the one recorded in {CONFIG} "
                              "(file changed or truncated)")
    try:
        state = load_file(str(weights))
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{weights}: not a readable safetensors file ({exc})") from None
    model = CRNN(model_config)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0]
        raise CheckpointError(f"{weights}: weights do not match the architecture in {CONFIG} "
                              f"({first})") from None
    return Checkpoint(folder, config, model_config, preset, model.to(device).eval())
