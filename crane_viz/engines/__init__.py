"""Evolution engines: reference solvers (and, through `engines.surrogate`, the CRNN)."""

from .base import Engine, State, repeated, rollout
from .fd import FiniteDifferenceSolver
from .spectral import SpectralSolver

SOLVERS = {"spectral": SpectralSolver, "fd": FiniteDifferenceSolver}


def make_solver(kind: str, preset, **kwargs) -> Engine:
    """Build the reference solver named `kind` ("spectral" or "fd") for a preset."""
    try:
        cls = SOLVERS[kind]
    except KeyError:
        raise ValueError(f"unknown solver {kind!r}; choose one of {sorted(SOLVERS)}") from None
    return cls(preset, **kwargs)


__all__ = ["Engine", "State", "rollout", "repeated", "SpectralSolver", "FiniteDifferenceSolver",
           "SOLVERS", "make_solver"]
