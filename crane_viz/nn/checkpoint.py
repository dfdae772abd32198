"""Self-describing checkpoints: a folder with safetensors weights, config.json and a model card.

Weights load without executing code (safetensors, never pickle). config.json holds the
architecture, the physics preset, τ, the grid scale, the training ranges, dataset provenance and
validation metrics, so the app rebuilds the model without importing training code.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import math
import os
import secrets
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from .. import __version__
from ..errors import CheckpointError
from ..io.files import project_root
from ..physics.presets import PRESETS, Preset
from .model import CRNN, CRNNConfig

FORMAT_VERSION = 1
WEIGHTS, CONFIG, CARD = "weights.safetensors", "config.json", "MODEL_CARD.md"
REQUIRED_KEYS = ("name", "model", "preset", "frame_time", "grid_scale")
GRID_SCALES = (1, 2, 4)  # caller grid points per model grid point (the 3D paper: 2)
MAX_CONFIG_BYTES = 1 << 20
REPO_CHECKPOINTS = Path(__file__).resolve().parents[2] / "checkpoints"


def search_path() -> list[Path]:
    """Where names are looked up: $CRANE_VIZ_CHECKPOINTS, <repo>/checkpoints, the checkpoints of
    training jobs (<project>/checkpoints), ./checkpoints."""
    env = [Path(p) for p in os.environ.get("CRANE_VIZ_CHECKPOINTS", "").split(os.pathsep) if p]
    return [*env, REPO_CHECKPOINTS, project_root() / "checkpoints", Path.cwd() / "checkpoints"]


def list_checkpoints() -> list[str]:
    """Names of the checkpoint folders (holding a config.json) on the search path, first wins."""
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
        if (root / path).is_dir():
            return root / path
    raise CheckpointError(f"checkpoint {str(name_or_path)!r} not found (looked in "
                          f"{', '.join(str(p) for p in search_path())}); known: "
                          f"{', '.join(list_checkpoints()) or 'none'}")


def sha256(path: Path) -> str:
    """Hex sha256 of a file, read in 1 MiB blocks."""
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
        """τ, simulated time per model step."""
        return float(self.config["frame_time"])

    @property
    def grid_scale(self) -> int:
        """Caller grid points per model grid point along each axis."""
        return int(self.config["grid_scale"])

    @property
    def dim(self) -> int:
        return self.model_config.dim

    @property
    def conditions(self) -> tuple:
        """Names of the model's scalar conditioning inputs, e.g. ("misfit",)."""
        return self.model_config.conditions

    @property
    def training(self) -> dict:
        """The training block (mean_range, misfit_range, grid, ...); empty for scratch models."""
        return self.config.get("training") or {}

    @property
    def mean_range(self) -> tuple | None:
        """Range of ⟨φ⟩ seen in training, None when not recorded."""
        r = self.training.get("mean_range")
        return None if r is None else tuple(r)

    @property
    def misfit_range(self) -> tuple | None:
        """Range of η (fraction) seen in training, None when not recorded."""
        r = self.training.get("misfit_range")
        return None if r is None else tuple(r)

    @property
    def card(self) -> str:
        """MODEL_CARD.md text, empty when absent."""
        card = self.path / CARD
        return card.read_text() if card.is_file() else ""


def save_checkpoint(folder: str | Path, model: CRNN, *, name: str, preset: Preset,
                    grid_scale: int = 1, training: dict | None = None, dataset: dict | None = None,
                    metrics: dict | None = None, card: str | None = None,
                    overwrite: bool = False) -> Path:
    """Write a checkpoint folder atomically: fill a hidden sibling folder, then rename it in.

    An existing folder is replaced only with overwrite=True (moved aside, then deleted, so a
    reader never sees a half-written checkpoint).
    """
    folder = Path(folder)
    if folder.exists() and not overwrite:
        raise CheckpointError(f"{folder} exists; pass overwrite=True to replace it")
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = folder.parent / f".{folder.name}.{secrets.token_hex(4)}.tmp"
    old = tmp.with_suffix(".old")
    tmp.mkdir()
    try:
        _write_contents(tmp, model, name=name, preset=preset, grid_scale=grid_scale,
                        training=training, dataset=dataset, metrics=metrics, card=card)
        if folder.exists():
            os.replace(folder, old)
        os.replace(tmp, folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(old, ignore_errors=True)
    return folder


def _write_contents(folder: Path, model: CRNN, *, name, preset, grid_scale, training, dataset,
                    metrics, card) -> None:
    """weights.safetensors, config.json (hashing the weights) and the optional model card."""
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    save_file(tensors, str(folder / WEIGHTS))
    config = {
        "format_version": FORMAT_VERSION, "crane_viz_version": __version__, "name": name,
        "model": model.config.to_dict(), "preset": preset.to_dict(),
        "frame_time": preset.frame_time, "grid_scale": int(grid_scale),
        "training": training or {}, "dataset": dataset or {}, "metrics": metrics or {},
        "weights_sha256": sha256(folder / WEIGHTS),
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    (folder / CONFIG).write_text(json.dumps(config, indent=2) + "\n")
    if card:
        (folder / CARD).write_text(card)


def read_config(folder: Path) -> dict:
    """config.json of a checkpoint folder, checked for format version and required keys."""
    path = folder / CONFIG
    if not path.is_file():
        raise CheckpointError(f"{path}: missing checkpoint configuration")
    try:
        if path.stat().st_size > MAX_CONFIG_BYTES:
            raise CheckpointError(f"{path}: {path.stat().st_size} bytes, more than a configuration "
                                  f"needs ({MAX_CONFIG_BYTES})")
        config = json.loads(path.read_text())
    except RecursionError:
        raise CheckpointError(f"{path}: not a readable JSON configuration (nested too deeply)") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{path}: not a readable JSON configuration ({exc})") from None
    if not isinstance(config, dict):
        raise CheckpointError(f"{path}: not a readable JSON configuration (not an object)")
    if config.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(f"{path}: format_version {config.get('format_version')!r} is not "
                              f"supported (this crane_viz {__version__} reads {FORMAT_VERSION})")
    missing = [k for k in REQUIRED_KEYS if k not in config]
    if missing:
        raise CheckpointError(f"{path}: missing keys {missing}")
    if config["grid_scale"] not in GRID_SCALES or isinstance(config["grid_scale"], bool):
        raise CheckpointError(f"{path}: grid_scale must be one of {GRID_SCALES}, not {config['grid_scale']!r}")
    frame_time = config["frame_time"]
    if not isinstance(frame_time, (int, float)) or not math.isfinite(frame_time) or frame_time <= 0:
        raise CheckpointError(f"{path}: frame_time must be a positive number, not {frame_time!r}")
    return config


def read_weights(folder: Path, expected_sha256: str | None) -> dict[str, torch.Tensor]:
    """The weights tensors, verified against the recorded sha256 when there is one."""
    path = folder / WEIGHTS
    if not path.is_file():
        raise CheckpointError(f"{path}: missing weights file")
    if expected_sha256 and sha256(path) != expected_sha256:
        raise CheckpointError(f"{path}: sha256 differs from the one recorded in {CONFIG} "
                              "(file changed or truncated)")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{path}: not a readable safetensors file ({exc})") from None


def _first_problem(exc: RuntimeError) -> str:
    """First line of a load_state_dict error's detail list, plus how many more there are."""
    lines = [line.strip() for line in str(exc).splitlines()[1:] if line.strip()] or [str(exc)]
    return lines[0] + (f" (and {len(lines) - 1} more)" if len(lines) > 1 else "")


def load_checkpoint(name_or_path: str | Path, *, device: str | torch.device = "cpu") -> Checkpoint:
    """Load and verify a checkpoint by folder path or name (see `search_path`)."""
    folder = resolve(name_or_path)
    config = read_config(folder)
    try:
        model_config = CRNNConfig.from_dict(config["model"])
        preset = preset_from_dict(config["preset"])
    except (TypeError, ValueError, KeyError, AttributeError) as exc:
        raise CheckpointError(f"{folder / CONFIG}: invalid model or preset description ({exc})") from None
    state = read_weights(folder, config.get("weights_sha256"))
    model = CRNN(model_config)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise CheckpointError(f"{folder / WEIGHTS}: weights do not match the architecture in "
                              f"{CONFIG} ({_first_problem(exc)})") from None
    return Checkpoint(folder, config, model_config, preset, model.to(device).eval())
