"""A training job's settings: the dataset to generate (or use), and `TrainConfig`'s model and curriculum."""

from __future__ import annotations

import os
import re
from dataclasses import fields
from pathlib import Path

import param

from ..errors import CraneVizError, DatasetError, InputError
from ..nn.checkpoint import load_checkpoint, resolve
from ..nn.model import REGISTRY, get_config
from ..physics.presets import PRESETS, get_preset
from ..settings import PAPER_MAX_MISFIT
from .dataset import DatasetSpec
from .loop import TrainConfig, check_mix, check_stride

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")

_SPEC = {f.name: f for f in fields(DatasetSpec)}  # the dataset settings a job shares, declared there


class JobBusy(CraneVizError):
    """Another job of the project is running."""


class TrainJobSettings(TrainConfig):
    """A training job: the dataset to generate (or use) and, inherited from `TrainConfig` (one
    declaration), the model and the curriculum."""

    checkpoint_name = param.String("my-model", doc="Name of the checkpoint the job produces "
                                                   "(letters, digits, - _ .).")
    dataset = param.String("", doc="Existing dataset (.h5 from crane-viz generate); empty: generate one "
                                   "with the settings below.")
    preset = param.Selector(default="coherent-2d", objects=list(PRESETS), doc="Physics preset of the generated data.")
    # narrower than DatasetSpec's bounds on purpose: a job needs a validation sequence, and a
    # browser may start one on a shared classroom server (#16)
    sequences = param.Integer(32, bounds=(2, 100_000), doc="Trajectories to generate (--val-fraction of them validate).")
    frames = param.Integer(_SPEC["frames"].default, bounds=_SPEC["frames"].metadata["bounds"],
                           doc=_SPEC["frames"].metadata["doc"])
    size = param.Integer(32, bounds=(8, 256), doc="Grid points per side of the generated data.")
    mean_min = param.Number(0.2, bounds=(0.0, 1.0), inclusive_bounds=(False, False), doc="Smallest ⟨φ⟩ sampled.")
    mean_max = param.Number(0.8, bounds=(0.0, 1.0), inclusive_bounds=(False, False), doc="Largest ⟨φ⟩ sampled.")
    eta_min_percent = param.Number(0.0, bounds=(0.0, 5.0), doc="Smallest misfit η sampled, in percent.")
    eta_max_percent = param.Number(1.2, bounds=(0.0, 5.0), softbounds=(0.0, 100 * PAPER_MAX_MISFIT),
                                   doc="Largest misfit η sampled, in percent (0 for a model without the η channel).")
    data_seed = param.Integer(_SPEC["seed"].default, bounds=_SPEC["seed"].metadata["bounds"],
                              doc=_SPEC["seed"].metadata["doc"])
    init = param.String("", doc="Checkpoint to fine-tune (its architecture replaces `model`); empty: start afresh.")
    preview_every = param.Integer(2, bounds=(1, 10_000), doc="Epochs between validation rollout previews.")
    threads = param.Integer(max(1, (os.cpu_count() or 2) - 1), bounds=(1, 256),
                            doc="CPU threads of the job (leave one core to the app).")

    def check(self) -> None:
        """Cross-setting checks; InputError naming the setting."""
        if not NAME.match(self.checkpoint_name):
            raise InputError(f"--checkpoint-name {self.checkpoint_name!r}: use 1–64 letters, digits, "
                             "'-', '_' or '.'")
        if self.mean_min > self.mean_max:
            raise InputError(f"--mean-min ({self.mean_min}) must not exceed --mean-max ({self.mean_max})")
        if self.eta_min_percent > self.eta_max_percent:
            raise InputError(f"--eta-min-percent ({self.eta_min_percent}) must not exceed "
                             f"--eta-max-percent ({self.eta_max_percent})")
        for option, path in (("--dataset", self.dataset), ("--mix-data", self.mix_data)):
            if path and not Path(path).is_file():
                raise InputError(f"{option} {path}: no such file")
        if self.init:
            resolve(self.init)
        cfg, dim = get_config(self.architecture()), self.data_dim()
        if cfg.dim != dim:
            raise InputError(f"model {self.architecture()!r} is {cfg.dim}D but the data are {dim}D")
        if not cfg.conditions and self.eta_max_percent > 0 and not self.dataset:
            raise InputError(f"model {self.architecture()!r} has no η channel: set --eta-max-percent to 0")
        _, frames, size, _ = self.data_shape()
        check_stride(self.frame_stride, min(frames, self.max_frames or frames))
        if size % self.grid_scale:
            raise InputError(f"the grid size {size} must be a multiple of --grid-scale {self.grid_scale}")
        self.check_mix_data()

    def architecture(self) -> str:
        """The registry name trained: the fine-tuned checkpoint's when `init` is set."""
        if not self.init:
            return self.model
        cfg = load_checkpoint(self.init).model_config
        for name, registered in REGISTRY.items():
            if registered == cfg:
                return name
        raise InputError(f"--init {self.init}: its architecture is not in the model registry")

    def data_dim(self) -> int:
        return self.data_shape()[3]

    def data_shape(self) -> tuple[int, int, int, int]:
        """(sequences, frames, size, dim) of the chosen dataset, or of the one to generate."""
        if not self.dataset:
            return self.sequences, self.frames, self.size, get_preset(self.preset).dim
        preset, shape = dataset_header(self.dataset, "--dataset")
        return shape[0], shape[1], shape[2], get_preset(preset).dim

    def check_mix_data(self) -> None:
        """InputError unless --mix-data holds the training data's preset and enough frames."""
        if not self.mix_data:
            return
        preset, shape = dataset_header(self.mix_data, "--mix-data")
        trained = dataset_header(self.dataset, "--dataset")[0] if self.dataset else self.preset
        check_mix(self, preset, shape[1], trained)

    def dataset_spec(self) -> DatasetSpec:
        return DatasetSpec(preset=self.preset, sequences=self.sequences, frames=self.frames, size=self.size,
                           batch=min(16, self.sequences), seed=self.data_seed,
                           mean_range=(self.mean_min, self.mean_max),
                           misfit_range=(self.eta_min_percent / 100, self.eta_max_percent / 100))

    def train_config(self) -> TrainConfig:
        """The training part of these settings, with the architecture and checkpoint resolved."""
        values = {k: getattr(self, k) for k in TrainConfig.param if k != "name"}
        return TrainConfig(**{**values, "model": self.architecture(),
                              "init": str(resolve(self.init)) if self.init else ""})


def dataset_header(path: str, option: str) -> tuple[str, tuple]:
    """(preset name, shape of phi) of a dataset file; DatasetError naming `option` if it is none."""
    import h5py

    try:
        with h5py.File(path, "r") as f:
            return str(f.attrs["preset"]), tuple(f["phi"].shape)
    except (OSError, KeyError, ValueError):
        raise DatasetError(f"{option} {path}: not a crane_viz dataset (an HDF5 file "
                           "from crane-viz generate)") from None
