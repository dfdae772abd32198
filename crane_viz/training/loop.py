"""Curriculum training of the CRNN, top to bottom in one file (both papers, physics.md §4).

Each epoch gives the model the first `curriculum_horizon(epoch)` ground-truth frames of every
sequence, or of a random window of it (teacher forcing), and makes it roll out the rest on its
own output; the horizon ramps from "predict only the last frame" to "roll out everything from
the initial frame". Loss: the 2D
paper's L = L_φ + λ_∇ L_∇ + λ_f L_f on every predicted frame — one-step predictions from the
given true frames as well as the free rollout, so the early growth stage is learnt from the first
epoch (a loss on the free frames only left the model at "nothing changes": at the start of the
curriculum those are the last, nearly static frames). All randomness (split, shuffling,
augmentation, noise) comes from one torch.Generator whose state is saved with the optimizer at
the end of every epoch and, on SIGINT/SIGTERM, after the batch that was running (with the epoch's
shuffled order and its losses so far), so an interrupted run resumes exactly where it stopped.
"""

from __future__ import annotations

import copy
import json
import math
import os
import signal
import time
from dataclasses import asdict, dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Callable

import param
import torch
import torch.nn.functional as F

from ..engines.surrogate import downsample
from ..errors import InputError, TrainingDiverged
from ..io.files import atomic_path, check_output_folder
from ..nn.checkpoint import GRID_SCALES, save_checkpoint
from ..nn.model import CRNN, REGISTRY, get_config
from ..physics.equations import elastic_energy_mean, free_energy, grad_sq_fd, spatial_mean, w
from ..settings import MAX_SEED, Settings
from .dataset import Dataset, load_dataset

STATE_FILE, LOG_FILE, BEST, SNAPSHOTS = "train_state.pt", "log.jsonl", "best", "epochs"
FRAME_WEIGHTS = ("uniform", "variance", "increment")
SCHEDULES = ("constant", "cosine")


class TrainConfig(Settings):
    """Training settings, each declared once with its bounds and doc: `crane-viz train` options,
    the Training tab's job settings (`training.job_settings.TrainJobSettings` extends this class) and the
    record saved with every run (so `--resume` can insist on the same settings)."""

    model = param.Selector(default="small-2d", objects=list(REGISTRY), doc="Architecture from the registry.")
    epochs = param.Integer(20, bounds=(1, 100_000), doc="Training epochs.")
    ramp = param.Integer(10, bounds=(0, 100_000), doc="Epochs over which the curriculum goes from one "
                                                      "predicted frame to the full rollout.")
    lr = param.Number(2e-3, bounds=(0.0, 1.0), inclusive_bounds=(False, True), doc="Adam learning rate.")
    batch = param.Integer(8, bounds=(1, 4096), doc="Sequences per optimizer step.")
    grad_weight = param.Number(0.0, bounds=(0.0, None), softbounds=(0.0, 100.0),
                               doc="λ_∇ of the squared-gradient loss term (2D paper: 60; 0 trained best here).")
    energy_weight = param.Number(0.0, bounds=(0.0, None), softbounds=(0.0, 200.0),
                                 doc="λ_f of the free-energy loss term (2D paper: 150; 0 trained best here).")
    noise = param.Number(1e-3, bounds=(0.0, 1.0), doc="σ of the Gaussian noise added to every model input (2D paper: 10⁻³).")
    val_fraction = param.Number(0.2, bounds=(0.0, 1.0), inclusive_bounds=(True, False),
                                doc="Fraction of the sequences kept for validation rollouts.")
    grid_scale = param.Selector(default=1, objects=list(GRID_SCALES),
                                doc="Train on fields average-pooled by this factor (3D paper: 2).")
    window = param.Integer(0, bounds=(0, 100_000), doc="Frames per training sample from a random start "
                                                       "(0: whole sequences); short windows give more steps per second.")
    max_frames = param.Integer(0, bounds=(0, 100_000), doc="Use only the first frames of every sequence, "
                                                           "e.g. the growth stage (0: all; else at least 2).")
    frame_stride = param.Integer(1, bounds=(1, 1000), doc="Train on every N-th stored frame, so one model "
                                                          "step covers N frames τ of the data (e.g. a "
                                                          "coarse-step model for fast phase-diagram sweeps).")
    init = param.String("", doc="Checkpoint (name or folder) or train_state.pt whose weights start the run "
                                "(fine-tuning); a model with a smaller kernel is widened to --model's, "
                                "computing the same function.")
    clip_norm = param.Number(1.0, bounds=(0.0, None), doc="Clip the gradient's global norm to this (0: no clipping).")
    keep = param.Selector(default="best", objects=["best", "last"],
                          doc="Checkpoint the epoch with the lowest validation loss, or the latest one.")
    frame_weight = param.Selector(default="uniform", objects=list(FRAME_WEIGHTS),
                                  doc="Weight of each frame's loss: uniform; increment (÷ the mean square of "
                                      "its true change, so the linear regime counts and 'nothing happens' "
                                      "costs the same in every frame); variance (÷ the frame's variance).")
    rise_weight = param.Number(0.0, bounds=(0.0, None), doc="Penalty on any rise of F/V over one model step "
                                                            "(relative to F/V).")
    first_window = param.Number(0.0, bounds=(0.0, 1.0), doc="Probability that a window starts at frame 0 "
                                                            "(the linear regime that selects orientation).")
    ema = param.Number(0.0, bounds=(0.0, 1.0), inclusive_bounds=(True, False),
                       doc="Decay of the moving average of the weights that is validated and saved (0: raw weights).")
    schedule = param.Selector(default="constant", objects=list(SCHEDULES),
                              doc="Learning rate: constant, or cosine down to lr/20 at the last epoch.")
    pushforward = param.Integer(0, bounds=(0, 100_000),
                                doc="Score only the last N predicted frames of each sample (0: all); the "
                                    "frames before them run without gradient (the pushforward trick).")
    pixel_horizon = param.Integer(0, bounds=(0, 100_000),
                                  doc="Score the pointwise terms (φ, |∇φ|²) only on the first N predicted "
                                      "frames of each window (0: all); later frames only through the F/V "
                                      "terms (energy, rise). A free rollout drifts out of phase with its "
                                      "reference, and past that point an MSE rewards blurred interfaces.")
    pushforward_depth = param.Selector(default="fixed", objects=["fixed", "random", "log"],
                                       doc="With --pushforward N: every window is --window frames long "
                                           "(fixed), or each batch's is N+1 … --window frames (random), so "
                                           "the scored frames cover the whole span and the early ones stay "
                                           "trained; log draws that length log-uniformly, so a long span "
                                           "keeps its early frames scored as often as a short one would.")
    beyond = param.Integer(0, bounds=(0, 100_000),
                           doc="With --pushforward and --rise-weight: windows may be up to --window + N "
                               "frames long, rolling the model on past the data's last frame; those "
                               "frames have no reference and are scored by the F/V-rise penalty alone "
                               "(Cahn–Hilliard never raises F), so late states the data never reach "
                               "are trained too.")
    mix_data = param.String("", doc="A second dataset of the same preset (e.g. small-amplitude starts, "
                                    "`generate --amplitude-sigma 0.01`) whose first --mix-frames frames are "
                                    "rolled out from frame 0 beside every batch and scored by each frame's "
                                    "squared error over its squared true change since frame 0, so the linear "
                                    "regime that sets σ(k, n, η) keeps weight while the main loss trains "
                                    "long rollouts ('': none).")
    mix_weight = param.Number(1.0, bounds=(0.0, None), softbounds=(0.0, 10.0),
                              doc="Weight of the --mix-data loss beside the main loss.")
    mix_frames = param.Integer(10, bounds=(1, 100_000), doc="Predicted frames of each --mix-data rollout "
                                                            "(from its frame 0).")
    snapshot_every = param.Integer(0, bounds=(0, 100_000), doc="Keep the checkpoint of every N-th epoch in "
                                                               "epochs/ (for the learning curve; 0: none).")
    seed = param.Integer(0, bounds=(0, MAX_SEED), doc="Seed of the split, shuffling, augmentation and noise.")

    def __init__(self, **params):
        super().__init__(**params)
        if self.max_frames == 1:
            raise InputError("--max-frames must be 0 (all) or at least 2, not 1")
        if self.beyond and not (self.pushforward and self.rise_weight > 0):
            raise InputError("--beyond needs --pushforward (the frames past the data run without "
                             "gradient) and --rise-weight > 0 (the only score those frames get)")

    def trained_frames(self, stored: int) -> int:
        """Frames per sequence the model trains on: every frame_stride-th of the first max_frames."""
        kept = min(stored, self.max_frames) if self.max_frames else stored
        return -(-kept // self.frame_stride)

    def to_dict(self) -> dict:
        """The settings as plain JSON values (saved with the run and inside its checkpoints)."""
        return {k: getattr(self, k) for k in TrainConfig.param if k != "name"}


def curriculum_horizon(epoch: int, ramp: int, frames: int) -> int:
    """Ground-truth frames given at `epoch`: frames − 1 at epoch 0, down linearly to 1 at `ramp`."""
    if frames < 2:
        raise ValueError("sequences need at least 2 frames")
    progress = 1.0 if ramp <= 0 else min(epoch / ramp, 1.0)
    return max(1, round((frames - 1) - progress * (frames - 2)))


def check_stride(stride: int, frames: int) -> None:
    """InputError unless every `stride`-th of `frames` frames leaves at least two to train on."""
    if frames <= stride:
        raise InputError(f"--frame-stride {stride} leaves one frame of sequences with {frames}; "
                         f"it must be below the frames per sequence")


def strided(phi: torch.Tensor, preset, stride: int):
    """Every `stride`-th frame of (B, T, *grid) sequences and the preset whose frame τ is that long.

    The checkpoint stores the longer τ, so every engine built from it (the reference beside it in
    the app, sweeps, evaluation) steps the same simulated time per frame.
    """
    if stride == 1:
        return phi, preset
    check_stride(stride, phi.shape[1])
    return phi[:, ::stride], replace(preset, frame_time=preset.frame_time * stride)


def window_of(seq: torch.Tensor, window: int, gen: torch.Generator, first: float = 0.0) -> torch.Tensor:
    """A random run of `window` consecutive frames of every sequence in (B, T, *grid), or all.

    Short windows (truncated back-propagation through time) give many more optimizer steps per
    CPU-second than whole 50-frame sequences, and teach the model to start from any state. With
    probability `first` a window starts at frame 0, where the zero hidden state matches inference
    and the linear regime selects the domains' orientation.
    """
    frames = seq.shape[1]
    if window <= 1 or window >= frames:
        return seq
    starts = torch.randint(0, frames - window + 1, (seq.shape[0],), generator=gen)
    if first > 0:
        starts = torch.where(torch.rand(seq.shape[0], generator=gen) < first, 0, starts)
    return torch.stack([s[t:t + window] for s, t in zip(seq, starts.tolist())])


def window_length(cfg: "TrainConfig", gen: torch.Generator) -> int:
    """Frames of this batch's windows: --window (+ --beyond), or with a random pushforward depth a
    length drawn from N+1 … --window (+ --beyond), so the N scored frames follow 0 … window−N−1
    unscored steps: uniformly ("random"), or log-uniformly ("log"). With windows up to 500 frames
    and N = 30, uniform lengths score the first 100 frames in 15 % of the batches and log-uniform
    ones in 52 %: the late frames get trained without starving the early ones."""
    longest = cfg.window + cfg.beyond
    if cfg.pushforward_depth == "fixed" or not cfg.pushforward or longest <= cfg.pushforward + 1:
        return longest
    if cfg.pushforward_depth == "random":
        return int(torch.randint(cfg.pushforward + 1, longest + 1, (), generator=gen))
    low, high = math.log(cfg.pushforward + 1), math.log(longest + 1)
    return min(int(math.exp(low + (high - low) * float(torch.rand((), generator=gen)))), longest)


def past_the_data(seq: torch.Tensor, length: int) -> torch.Tensor:
    """(B, length, *grid): `seq` followed by copies of its last frame, the placeholders of the frames
    a --beyond window rolls past the data (they are never scored against)."""
    extra = length - seq.shape[1]
    if extra <= 0:
        return seq
    return torch.cat([seq, seq[:, -1:].expand(-1, extra, *seq.shape[2:])], dim=1)


def augment(seq: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Random reflections, 90° rotations in every plane and φ → 1 − φ of (B, T, *grid) sequences.

    Each is a symmetry of the cubic free energy, and each keeps ⟨φ⟩ (or maps it to 1 − ⟨φ⟩).
    """
    dim = seq.ndim - 2
    axes = list(range(2, 2 + dim))
    for ax in axes:
        if torch.rand((), generator=gen) < 0.5:
            seq = seq.flip(ax)
    for i in range(dim):
        for j in range(i + 1, dim):
            k = int(torch.randint(0, 4, (), generator=gen))
            seq = torch.rot90(seq, k, (axes[i], axes[j]))
    if torch.rand((), generator=gen) < 0.5:
        seq = 1 - seq
    return seq.contiguous()


def free_energy_density(phi: torch.Tensor, eta: torch.Tensor, preset, dim: int) -> torch.Tensor:
    """⟨f⟩ ≈ 2⟨w⟩ + ⟨ρ⟩ (2D paper, with ε|∇φ|² ≈ w at equilibrium interfaces)."""
    f = 2 * spatial_mean(w(phi, preset.interface_width), dim)
    if bool((eta > 0).any()):
        f = f + elastic_energy_mean(phi, eta, preset, dim)
    return f


VARIANCE_FLOOR = 1e-4  # (0.01)²: below this a frame's deviations are noise, not structure
INCREMENT_FLOOR = 1e-8  # (1e-4)²: a frame that changes less than this is treated as static


def frame_weights(target: torch.Tensor, how: str, previous: torch.Tensor | None = None) -> torch.Tensor:
    """(B·T',) weight of every true frame, normalised to mean 1 per batch: 1 ("uniform"),
    1/(variance + floor) ("variance"), or 1/(mean square of the true change from `previous` +
    floor) ("increment").

    A plain MSE over whole sequences gives the first frames, whose deviations are 10⁻² of the
    late ones, almost no weight, yet they fix σ(k, n, η) and with it the domains' orientation.
    "variance" lets a model that returns its input score well (a field changes little over a
    window relative to its own spread); "increment" scores the change itself, so returning the
    input costs the same in every frame.
    """
    if how == "uniform":
        return torch.ones(target.shape[0], dtype=target.dtype, device=target.device)
    if how == "variance":
        weight = 1.0 / (target.flatten(1).var(dim=1) + VARIANCE_FLOOR)
    else:
        weight = 1.0 / (((target - previous) ** 2).flatten(1).mean(dim=1) + INCREMENT_FLOOR)
    return weight / weight.mean()


def model_energy(phi: torch.Tensor, eta: torch.Tensor, preset, spacing: int = 1) -> torch.Tensor:
    """F/V of (B, *grid) fields, (B,) η, with the forward-difference gradient (differentiable) on a
    grid of `spacing` preset units (--grid-scale)."""
    return free_energy(phi, preset, eta, gradient="fd", spacing=spacing)["total"]


def energy_rise(inputs: torch.Tensor, pred: torch.Tensor, eta: torch.Tensor, preset,
                spacing: int = 1) -> torch.Tensor:
    """Mean of max(0, F(model output) − F(model input)) / F(input) over all steps.

    Cahn–Hilliard flow never raises the free energy, so every rise is the model's own error; the
    reference data need not be consulted. `spacing` is the model grid's (--grid-scale): on a
    coarser grid the gradient term would otherwise count spacing² times too much.
    """
    eta_t = eta.repeat_interleave(pred.shape[1])
    f_in = model_energy(inputs.flatten(0, 1), eta_t, preset, spacing)
    f_out = model_energy(pred.flatten(0, 1), eta_t, preset, spacing)
    return torch.relu((f_out - f_in) / f_in.detach().abs().clamp_min(1e-6)).mean()


def pixel_mask(batch: int, frames: int, horizon: int, first_frame: int, like: torch.Tensor,
               known: int | None = None) -> torch.Tensor:
    """(B·T',) 1 for predicted frames first_frame … of the window up to `horizon` (0: no limit)
    and before `known` (the frames with a reference; None: all), else 0."""
    index = torch.arange(first_frame, first_frame + frames, device=like.device)
    keep = torch.ones_like(index, dtype=torch.bool)
    if horizon:
        keep &= index <= horizon
    if known is not None:
        keep &= index < known
    return keep.to(like.dtype).repeat(batch)


def composite_loss(pred: torch.Tensor, seq: torch.Tensor, eta: torch.Tensor, preset,
                   cfg: TrainConfig, inputs: torch.Tensor | None = None, first_frame: int = 1,
                   known: int | None = None) -> torch.Tensor:
    """L = L_φ + λ_∇ L_∇ + λ_f L_f (+ λ_rise · energy rise) of predicted frames 1..T−1,
    (B, T−1, *grid), against the true sequence `seq`, (B, T, *grid).

    The first three are per-frame means weighted by `frame_weights`; L_φ and L_∇ count only up to
    frame `cfg.pixel_horizon` of the window (`pred[:, 0]` is its frame `first_frame`), and all
    three only on frames with a reference (window frames before `known`; None: all). The rise
    term needs the model's `inputs` (B, T−1, *grid) and is left out without them.
    """
    dim = pred.ndim - 2
    flat_p, flat_t = pred.flatten(0, 1), seq[:, 1:].flatten(0, 1)
    eta_t = eta.repeat_interleave(pred.shape[1])
    weight = frame_weights(flat_t, cfg.frame_weight, seq[:, :-1].flatten(0, 1))
    weight = weight * pixel_mask(pred.shape[0], pred.shape[1], 0, first_frame, flat_p, known)
    pixel = pixel_mask(pred.shape[0], pred.shape[1], cfg.pixel_horizon, first_frame, flat_p)
    l_phi = ((flat_p - flat_t) ** 2).flatten(1).mean(1)
    l_grad = ((grad_sq_fd(flat_p, dim) - grad_sq_fd(flat_t, dim)) ** 2).flatten(1).mean(1)
    l_f = (free_energy_density(flat_p, eta_t, preset, dim)
           - free_energy_density(flat_t, eta_t, preset, dim)) ** 2
    loss = (weight * (pixel * (l_phi + cfg.grad_weight * l_grad) + cfg.energy_weight * l_f)).mean()
    if cfg.rise_weight > 0 and inputs is not None:
        loss = loss + cfg.rise_weight * energy_rise(inputs, pred, eta, preset, cfg.grid_scale)
    return loss


def unroll(model: CRNN, seq: torch.Tensor, given: int, cond, noise: float,
           gen: torch.Generator | None, *, with_inputs: bool = False, detached: int = 0):
    """Predictions of frames 1..T−1; inputs are true frames before `given`, then the model's own.

    The first `detached` steps run without gradient (pushforward: later steps learn from the
    model's own rolled-out inputs without back-propagation through them). With `with_inputs`
    also returns the noise-free input of every step, (B, T−1, *grid).
    """
    hidden, phi, preds, inputs = None, seq[:, 0], [], []
    for t in range(seq.shape[1] - 1):
        inp = seq[:, t] if t < given else phi
        inputs.append(inp)
        if noise > 0 and gen is not None:
            inp = inp + noise * torch.randn(inp.shape, generator=gen).to(inp)
        with torch.set_grad_enabled(torch.is_grad_enabled() and t >= detached):
            phi, hidden = model(inp, hidden, cond)
        preds.append(phi)
    preds = torch.stack(preds, dim=1)
    return (preds, torch.stack(inputs, dim=1)) if with_inputs else preds


def conditions(model: CRNN, eta: torch.Tensor):
    return eta[:, None] if model.config.conditions else None


def split(n: int, fraction: float, gen: torch.Generator) -> tuple[list[int], list[int]]:
    """Random train/validation split of n sequences (at least one of each when n ≥ 2)."""
    order = torch.randperm(n, generator=gen).tolist()
    n_val = min(max(1, round(n * fraction)), n - 1) if n > 1 else 0
    return order[n_val:], order[:n_val]


def validation_loss(model, data: Dataset, idx, preset, cfg, device) -> float:
    """Composite loss of full rollouts from the initial frame (no teacher forcing, no noise)."""
    if not idx:
        return float("nan")
    total = 0.0
    with torch.no_grad():
        for start in range(0, len(idx), cfg.batch):
            b = idx[start:start + cfg.batch]
            seq, eta = data.phi[b].to(device), data.eta[b].to(device)
            pred = unroll(model, seq, 1, conditions(model, eta), 0.0, None)
            total += float(composite_loss(pred, seq, eta, preset, cfg)) * len(b)
    return total / len(idx)


def read_log(path: str | Path) -> list[dict]:
    """The per-epoch records of a run's log.jsonl ([] when it does not exist yet)."""
    path = Path(path)
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def preview_rollout(model, data: Dataset, index: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """(true frames 0..T−1, predicted frames 1..T−1) of one sequence rolled out from its first frame."""
    seq, eta = data.phi[[index]].to(device), data.eta[[index]].to(device)
    with torch.no_grad():
        pred = unroll(model, seq, 1, conditions(model, eta), 0.0, None)
    return seq[0].cpu(), pred[0].cpu()


class Interrupt:
    """SIGINT/SIGTERM set a flag; training stops after the current batch and saves its state there."""

    def __init__(self):
        self.requested = False

    def __enter__(self):
        self._old = {s: signal.signal(s, self._handle) for s in (signal.SIGINT, signal.SIGTERM)}
        return self

    def _handle(self, *_):
        self.requested = True

    def __exit__(self, *exc):
        for s, h in self._old.items():
            signal.signal(s, h)


def widen(state: dict, target: CRNN) -> dict:
    """Weights of a trained CRNN rewritten for `target`, the same network with a larger kernel
    and/or extra input features.

    Every kernel whose shape differs is zero-padded to the target's: spatially centred, and along
    the input-channel axis at the end (new feature channels come last). With circular padding of
    half the side, the widened network computes exactly the same function (the new taps and
    channels add zero terms), so a trained model starts a larger receptive field or a new input
    without relearning what it knows.
    """
    shapes = {key: value.shape for key, value in target.state_dict().items()}
    widened = {}
    for key, value in state.items():
        want = shapes[key]
        pads = [(w - h) // 2 for h, w in zip(value.shape[2:], want[2:])]
        flat = [p for pad in reversed(pads) for p in (pad, pad)]
        if value.ndim > 1 and want[1] != value.shape[1]:
            flat += [0, want[1] - value.shape[1]]
        widened[key] = F.pad(value, flat) if any(flat) else value
    return widened


def can_widen(saved, target) -> bool:
    """Whether `widen` maps weights of architecture `saved` onto `target`: the same network with
    a kernel at least as large and the saved features as a prefix of the target's."""
    same = replace(saved, kernel=target.kernel, features=target.features, elastic=target.elastic,
                   interface_width=target.interface_width)
    return (same == target and saved.kernel <= target.kernel
            and target.features[:len(saved.features)] == saved.features
            and ("elastic" not in saved.features or saved.elastic == target.elastic)
            and ("chemical" not in saved.features or saved.interface_width == target.interface_width))


def initial_weights(name: str, model_cfg) -> dict:
    """Weights to fine-tune: a checkpoint (name or folder), or a run's `train_state.pt` (its last
    finished epoch). The architecture must be the one being trained, the same with or without
    flip averaging (the same weights), or the same with a smaller kernel or fewer input features
    (its weights are widened by `widen`)."""
    from ..nn.checkpoint import load_checkpoint

    if name.endswith(".pt"):
        state = read_state(Path(name), "--init")
        saved, weights = get_config(state["settings"]["model"]), state["model"]
    else:
        ckpt = load_checkpoint(name)
        saved, weights = ckpt.model_config, ckpt.model.state_dict()
    if replace(saved, symmetric=model_cfg.symmetric) == model_cfg:
        return weights
    if can_widen(saved, model_cfg):
        return widen(weights, CRNN(model_cfg))
    raise InputError(f"--init {name}: its architecture {saved} differs from the model being "
                     f"trained {model_cfg} (only a smaller kernel or added input features can be "
                     f"taken over)")


def read_state(path: Path, flag: str) -> dict:
    """A training state written by `save_state`, loaded without running code and checked for its
    parts; any other file is an InputError naming it. Adds "settings" (the parsed config)."""
    if not path.is_file():
        raise InputError(f"{flag} {path}: no such training state")
    try:
        state = torch.load(path, weights_only=True)
    except Exception as exc:  # truncated, garbage or pickled code: all mean "not a state file"
        reason = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else exc.__class__.__name__
        raise InputError(f"{flag} {path}: not a readable training state ({reason})") from None
    parts = ("model", "optimizer", "rng", "epoch", "best", "config")
    if not isinstance(state, dict) or any(k not in state for k in parts):
        raise InputError(f"{flag} {path}: not a crane_viz training state (needs {', '.join(parts)})")
    try:
        state["settings"] = json.loads(state["config"])
        get_config(state["settings"]["model"])
    except (TypeError, ValueError, KeyError) as exc:
        raise InputError(f"{flag} {path}: its training settings are unreadable ({exc})") from None
    return state


def save_state(out: Path, model, averaged, opt, gen, epoch: int, best: float, cfg: TrainConfig,
               unfinished: dict | None = None) -> None:
    """Everything a resume needs, written atomically; loads with weights_only=True. `epoch` counts
    finished epochs; `unfinished` (an `EpochProgress` as a dict) is the next one's progress when a
    run stops inside it, so a resume does not redo its batches (a 3D epoch can take an hour)."""
    state = {"model": model.state_dict(), "optimizer": opt.state_dict(), "rng": gen.get_state(),
             "epoch": epoch, "best": best, "config": json.dumps(cfg.to_dict())}
    if averaged is not model:
        state["ema"] = averaged.state_dict()
    if unfinished is not None:
        state["unfinished"] = unfinished
    with atomic_path(out / STATE_FILE) as tmp:
        torch.save(state, tmp)


@dataclass
class EpochProgress:
    """One epoch's shuffled batch order, the batches done and their losses: what a run interrupted
    inside the epoch saves, so that its resume continues with the next batch of the same order."""

    order: list[int]
    done: int = 0
    losses: list[float] = field(default_factory=list)
    mix_losses: list[float] = field(default_factory=list)
    seconds: float = 0.0

    @classmethod
    def start(cls, train_idx: list[int], gen: torch.Generator, unfinished: dict | None) -> "EpochProgress":
        """The saved progress of an interrupted epoch, or a fresh shuffle of the training sequences."""
        if unfinished is not None:
            return cls(**unfinished)
        return cls([train_idx[i] for i in torch.randperm(len(train_idx), generator=gen).tolist()])


def learning_rate(cfg: TrainConfig, epoch: int) -> float:
    """The epoch's learning rate: constant, or a cosine from lr down to lr/20 at the last epoch."""
    if cfg.schedule == "constant" or cfg.epochs <= 1:
        return cfg.lr
    progress = epoch / (cfg.epochs - 1)
    return cfg.lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * progress)))


@torch.no_grad()
def update_ema(averaged: CRNN, model: CRNN, decay: float) -> None:
    """averaged ← decay·averaged + (1 − decay)·model, parameter by parameter."""
    for a, p in zip(averaged.parameters(), model.parameters()):
        a.lerp_(p, 1 - decay)


def training_ranges(data: Dataset, cfg: TrainConfig) -> dict:
    return {"mean_range": [float(data.mean.min()), float(data.mean.max())],
            "misfit_range": [float(data.eta.min()), float(data.eta.max())],
            "grid": int(data.phi.shape[2]) // cfg.grid_scale, "frames": int(data.phi.shape[1]),
            "config": cfg.to_dict()}


def provenance_of(data: Dataset) -> dict:
    from ..nn.checkpoint import sha256

    return {"path": str(data.path), "sha256": sha256(data.path), "sequences": int(data.phi.shape[0]),
            "frames": int(data.phi.shape[1]), "size": int(data.phi.shape[2]),
            "preset": data.attrs.get("preset"), "solver": data.attrs.get("solver"),
            "settings": data.attrs.get("settings")}


def check_model_grid(model_cfg, cfg: TrainConfig, preset) -> None:
    """InputError unless the model fits the data: its dimension, and for a "chemical" feature the
    preset's ε on a model grid --grid-scale points apart, so its μ channel is the solver's."""
    if model_cfg.dim != preset.dim:
        raise InputError(f"model {cfg.model!r} is {model_cfg.dim}D but the dataset is {preset.dim}D")
    if "chemical" in model_cfg.features and (model_cfg.spacing, model_cfg.interface_width) != \
            (cfg.grid_scale, preset.interface_width):
        fits = [n for n, c in REGISTRY.items() if "chemical" in c.features and c.dim == preset.dim
                and (c.spacing, c.interface_width) == (cfg.grid_scale, preset.interface_width)]
        raise InputError(f"model {cfg.model!r} computes μ with ε = {model_cfg.interface_width:g} on a grid "
                         f"spacing {model_cfg.spacing}, but the {preset.name} data at --grid-scale "
                         f"{cfg.grid_scale} need ε = {preset.interface_width:g} and spacing {cfg.grid_scale}; "
                         f"use {' or '.join(fits) or 'a model without the chemical feature'}")


def coarsened(data: Dataset, cfg: TrainConfig) -> None:
    """Average-pool the dataset's fields by --grid-scale in place (the model's grid)."""
    if cfg.grid_scale > 1:
        data.phi = downsample(data.phi.flatten(0, 1), cfg.grid_scale).unflatten(0, data.phi.shape[:2])


def check_mix(cfg: TrainConfig, mix_preset: str, mix_frames: int, trained_preset: str) -> int:
    """The stored frames --mix-frames needs at --frame-stride; InputError unless --mix-data (of
    `mix_preset`, `mix_frames` stored frames per sequence) holds them and the training data's preset."""
    if mix_preset != trained_preset:
        raise InputError(f"--mix-data {cfg.mix_data} holds preset {mix_preset!r}, but the training "
                         f"data hold {trained_preset!r}")
    needed = cfg.mix_frames * cfg.frame_stride + 1
    if mix_frames < needed:
        raise InputError(f"--mix-data {cfg.mix_data} has {mix_frames} frames per sequence; "
                         f"--mix-frames {cfg.mix_frames} needs {needed}")
    return needed


def mix_dataset(cfg: TrainConfig, preset) -> Dataset | None:
    """The --mix-data dataset cut to its first --mix-frames + 1 frames at the model's stride and
    grid, or None; it must hold the training data's preset."""
    if not cfg.mix_data:
        return None
    mix = load_dataset(cfg.mix_data)
    needed = check_mix(cfg, mix.preset.name, mix.phi.shape[1], preset.name)
    mix.phi, _ = strided(mix.phi[:, :needed], mix.preset, cfg.frame_stride)
    coarsened(mix, cfg)
    return mix


def linear_regime_loss(model: CRNN, mix: Dataset, cfg: TrainConfig, gen: torch.Generator,
                       device) -> torch.Tensor:
    """Free rollouts from frame 0 of --batch random --mix-data sequences, scored per frame by the
    squared error over the squared true change since frame 0, averaged: dimensionless (a model
    that changes nothing scores 1), so small-amplitude fields count as much as developed ones and
    a growth rate off by a few percent is seen. No input noise: it would swamp small fields."""
    pick = torch.randint(0, mix.phi.shape[0], (cfg.batch,), generator=gen).tolist()
    seq, eta = augment(mix.phi[pick], gen).to(device), mix.eta[pick].to(device)
    pred = unroll(model, seq, 1, conditions(model, eta), 0.0, None)
    error = ((pred - seq[:, 1:]) ** 2).flatten(2).mean(2)
    change = ((seq[:, 1:] - seq[:, :1]) ** 2).flatten(2).mean(2)
    return (error / (change + INCREMENT_FLOOR)).mean()


def train(data_path: str | Path, out: str | Path, cfg: TrainConfig, *, name: str = "model",
          resume: bool = False, device="cpu",
          on_epoch: Callable[[dict], None] | None = None,
          on_batch: Callable[[int, int], None] | None = None,
          on_preview: Callable[[int, torch.Tensor, torch.Tensor], None] | None = None,
          preview_every: int = 0) -> dict:
    """Train (or resume) into the run folder `out`; returns the last epoch's log record.

    The run folder holds `best/` (checkpoint with the lowest validation loss, or of the latest
    epoch with keep="last", for when long-rollout validation losses do not rank stability),
    `train_state.pt` (last finished epoch, or the batch where an interrupt stopped it) and
    `log.jsonl` (one record per epoch). Every `preview_every` epochs
    (and after the last) `on_preview(epoch, truth, prediction)` receives the free rollout of the
    first validation sequence.
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out} is a file; give a run folder")
    check_output_folder(out, overwrite=True)
    data = load_dataset(data_path)
    if cfg.max_frames:
        data.phi = data.phi[:, :cfg.max_frames]
    data.phi, preset = strided(data.phi, data.preset, cfg.frame_stride)
    ranges, provenance = training_ranges(data, cfg), provenance_of(data)
    coarsened(data, cfg)
    mix = mix_dataset(cfg, preset)
    if mix is not None:
        provenance["mix"] = provenance_of(mix)
    model_cfg = get_config(cfg.model)
    check_model_grid(model_cfg, cfg, preset)
    torch.manual_seed(cfg.seed)
    model = CRNN(model_cfg).to(device)
    if cfg.init:
        model.load_state_dict(initial_weights(cfg.init, model_cfg))
    averaged = copy.deepcopy(model) if cfg.ema > 0 else model  # the weights validated and saved
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    gen = torch.Generator().manual_seed(cfg.seed)
    train_idx, val_idx = split(data.phi.shape[0], cfg.val_fraction, gen)
    start, best, unfinished = 0, math.inf, None
    out.mkdir(parents=True, exist_ok=True)
    if resume:
        if not (out / STATE_FILE).is_file():
            raise InputError(f"{out / STATE_FILE}: nothing to resume")
        state = read_state(out / STATE_FILE, "--resume")
        # options added after a run started take their defaults, so older runs still resume
        if {**TrainConfig().to_dict(), **state["settings"]} != cfg.to_dict():
            raise InputError(f"{out}: the saved run used other settings: {state['config']}")
        model.load_state_dict(state["model"])
        if cfg.ema > 0:
            averaged.load_state_dict(state["ema"])
        opt.load_state_dict(state["optimizer"])
        gen.set_state(state["rng"])
        start, best, unfinished = state["epoch"], state["best"], state.get("unfinished")
    elif (out / STATE_FILE).exists():
        raise InputError(f"{out} already holds a training run; use --resume or another --out")
    frames = data.phi.shape[1] if cfg.window <= 1 else min(cfg.window, data.phi.shape[1])
    trained_seconds = sum(r.get("seconds", 0.0) for r in read_log(out / LOG_FILE))
    record: dict = {}
    with Interrupt() as stop:
        for epoch in range(start, cfg.epochs):
            given = curriculum_horizon(epoch, cfg.ramp, frames)
            for group in opt.param_groups:
                group["lr"] = learning_rate(cfg, epoch)
            model.train()
            progress, unfinished = EpochProgress.start(train_idx, gen, unfinished), None
            order, losses, mix_losses = progress.order, progress.losses, progress.mix_losses
            t0 = time.perf_counter() - progress.seconds
            for b0 in range(progress.done, len(order), cfg.batch):
                b = order[b0:b0 + cfg.batch]
                length = window_length(cfg, gen)
                seq = window_of(data.phi[b], min(length, data.phi.shape[1]), gen, cfg.first_window)
                known = seq.shape[1]  # window frames with a reference
                seq = augment(past_the_data(seq, length), gen).to(device)
                eta = data.eta[b].to(device)
                skip = max(0, seq.shape[1] - 1 - cfg.pushforward) if cfg.pushforward else 0
                pred, inputs = unroll(model, seq, given, conditions(model, eta), cfg.noise, gen,
                                      with_inputs=True, detached=skip)
                loss = composite_loss(pred[:, skip:], seq[:, skip:], eta, preset, cfg, inputs[:, skip:],
                                      first_frame=skip + 1, known=known)
                if mix is not None:
                    mix_loss = linear_regime_loss(model, mix, cfg, gen, device)
                    loss = loss + cfg.mix_weight * mix_loss
                    mix_losses.append(mix_loss.item())
                if not torch.isfinite(loss):
                    raise TrainingDiverged(f"training diverged: the loss became {loss.item()} in epoch "
                                           f"{epoch + 1}; the last finished epoch is kept in {out} "
                                           f"(lower --lr, or set --clip-norm)")
                opt.zero_grad()
                loss.backward()
                if cfg.clip_norm > 0:
                    torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.clip_norm)
                opt.step()
                if cfg.ema > 0:
                    update_ema(averaged, model, cfg.ema)
                losses.append(loss.item())
                if on_batch:
                    on_batch(b0 // cfg.batch + 1, math.ceil(len(order) / cfg.batch))
                if stop.requested:
                    progress.done, progress.seconds = b0 + len(b), time.perf_counter() - t0
                    save_state(out, model, averaged, opt, gen, epoch, best, cfg, asdict(progress))
                    return {"interrupted": True, "epoch": epoch, "batches": math.ceil(progress.done / cfg.batch),
                            "of": math.ceil(len(order) / cfg.batch)}
            averaged.eval()
            val = validation_loss(averaged, data, val_idx, preset, cfg, device)
            seconds = time.perf_counter() - t0
            trained_seconds += seconds
            record = {"epoch": epoch + 1, "horizon": frames - given, "given": given,
                      "lr": learning_rate(cfg, epoch),
                      "train_loss": sum(losses) / max(len(losses), 1), "val_loss": val,
                      "seconds": seconds, "hours": trained_seconds / 3600,
                      "threads": torch.get_num_threads(), "device": torch.device(device).type}
            if mix_losses:
                record["mix_loss"] = sum(mix_losses) / len(mix_losses)
            improved = math.isfinite(val) and val < best
            if improved:
                best = val
                record["best"] = True
            saved = {"val_loss": val, "epoch": epoch + 1, "train_hours": trained_seconds / 3600}
            save = partial(save_checkpoint, model=averaged, name=name, preset=preset, grid_scale=cfg.grid_scale,
                           training=ranges, dataset=provenance, metrics=saved, overwrite=True)
            if improved or (cfg.keep == "last" and math.isfinite(val)):
                save(out / BEST)
            if cfg.snapshot_every > 0 and (epoch + 1) % cfg.snapshot_every == 0:
                save(out / SNAPSHOTS / f"{epoch + 1:04d}")
            save_state(out, model, averaged, opt, gen, epoch + 1, best, cfg)
            if on_preview and val_idx and preview_every > 0 and \
                    ((epoch + 1) % preview_every == 0 or epoch + 1 == cfg.epochs):
                on_preview(epoch + 1, *preview_rollout(averaged, data, val_idx[0], device))
            with open(out / LOG_FILE, "a") as log:
                log.write(json.dumps(record) + "\n")
                log.flush()
                os.fsync(log.fileno())
            if on_epoch:
                on_epoch(record)
    if not (out / BEST).is_dir():
        raise TrainingDiverged(f"no epoch reached a finite validation loss (the model's free rollouts "
                               f"diverge), so no checkpoint was saved in {out / BEST}; lower --lr or "
                               f"train longer from {out / STATE_FILE}")
    return record
