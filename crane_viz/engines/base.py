"""The one interface every evolution engine answers: construct once, then `step(state) -> state`."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable, Iterator, Protocol, runtime_checkable

import torch


@dataclass(frozen=True)
class State:
    """What an engine carries from one frame to the next.

    phi: (B, *grid) order parameter; time: simulated time; frame: frames taken so far;
    hidden: engine-private recurrent memory (the CRNN's hidden states), None for solvers.
    """

    phi: torch.Tensor
    time: float = 0.0
    frame: int = 0
    hidden: tuple | None = None

    def advanced(self, phi: torch.Tensor, frame_time: float, hidden: tuple | None = None) -> "State":
        """The state one frame τ later."""
        return replace(self, phi=phi, time=self.time + frame_time, frame=self.frame + 1,
                       hidden=hidden)


BLOW_UP_RANGE = (-1.0, 2.0)  # φ lives in about [0, 1]; outside this band an engine has diverged


def diverged(phi: torch.Tensor) -> torch.Tensor:
    """(B,) True where a (B, *grid) field has a non-finite value or leaves BLOW_UP_RANGE.

    The one divergence rule of every engine and caller (live session, CLI, evaluation, sweeps).
    """
    flat = phi.flatten(1)
    lo, hi = BLOW_UP_RANGE
    inside = (flat >= lo) & (flat <= hi)  # False for NaN
    return ~inside.all(dim=1)


@runtime_checkable
class Engine(Protocol):
    """An evolution engine. `step` advances one frame τ; tensors are (batch, *grid) on any device."""

    name: str  # short label, e.g. "spectral", "fd", "crnn:coherent-2d"
    dim: int  # 2 or 3
    frame_time: float  # τ, simulated time per step() call
    grid_scale: int  # grid points of the caller's field per engine grid point (2 = half resolution)

    def init_state(self, phi: torch.Tensor) -> State: ...

    def step(self, state: State) -> State: ...


def repeated(step: Callable[[State], State], k: int) -> Callable[[State], State]:
    """A step function that applies `step` k times (keep every k-th frame)."""
    def many(state: State) -> State:
        for _ in range(k):
            state = step(state)
        return state
    return many


def states(engine: Engine, phi0: torch.Tensor, frames: int, every: int = 1) -> Iterator[State]:
    """The initial state, then the state after each of `frames` kept frames (each `every` steps).

    The one frame loop: `rollout` stacks it, `advance` keeps its last state, and commands that
    stream frames to disk iterate it.
    """
    state = engine.init_state(phi0)
    yield state
    step = repeated(engine.step, every)
    for _ in range(frames):
        state = step(state)
        yield state


def rollout(engine: Engine, phi0: torch.Tensor, frames: int, *, every: int = 1,
            progress: Callable[[int], None] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Run `frames` kept frames (each `every` engine steps) from phi0.

    Returns (trajectory of shape (B, frames + 1, *grid) with the initial frame first, times).
    `progress(i)` is called after each kept frame.
    """
    out, times = [], []
    for i, state in enumerate(states(engine, phi0, frames, every)):
        out.append(state.phi)
        times.append(state.time)
        if progress is not None and i:
            progress(i)
    return torch.stack(out, dim=1), torch.tensor(times, dtype=torch.float64)


def advance(engine: Engine, phi0: torch.Tensor, frames: int) -> State:
    """The state `frames` frames after phi0, keeping nothing in between (sweeps, checks)."""
    *_, last = states(engine, phi0, frames)
    return last


def side_by_side(first: Engine, second: Engine, phi0: torch.Tensor, frames: int) -> Iterator[tuple[State, State]]:
    """Both engines from the same phi0, frame by frame: yields their states after frames 1..`frames`.

    The one loop behind every surrogate-beside-reference comparison (evaluation, checks).
    """
    a, b = first.init_state(phi0), second.init_state(phi0)
    for _ in range(frames):
        a, b = first.step(a), second.step(b)
        yield a, b
