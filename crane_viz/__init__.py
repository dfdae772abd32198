"""crane_viz: Cahn–Hilliard phase-field evolution, its CRNN surrogate, and the tools to see both.

The public API, loaded on first use (so `import crane_viz` stays light)::

    from crane_viz import get_preset, perlin_field, as_batch, make_solver, load_checkpoint
    from crane_viz import SurrogateEngine, side_by_side, metrics

    ckpt = load_checkpoint("coherent-2d")
    phi0 = as_batch([perlin_field(128, 2, mean=0.4, amplitude=0.05, cells=8, seed=1)])
    surrogate = SurrogateEngine(ckpt, misfit=0.006)
    reference = make_solver("spectral", ckpt.preset, misfit=0.006)
    for sur, ref in side_by_side(surrogate, reference, phi0, frames=20):
        pass
    mae = float(metrics.mae(ref.phi, sur.phi, 2))  # mean |Δφ| after 20 τ
    f_over_v = float(metrics.energy(sur.phi, ckpt.preset, 0.006)["total"])
"""

from importlib import import_module

__version__ = "0.1.0"

_API = {
    # physics settings and initial fields
    "PRESETS": "presets", "get_preset": "presets",
    "perlin_field": "initial", "as_batch": "initial", "load_field": "initial",
    # engines: one interface, one frame loop, one divergence rule
    "make_solver": "engines", "Engine": "engines.base", "State": "engines.base", "states": "engines.base",
    "rollout": "engines.base", "advance": "engines.base", "side_by_side": "engines.base",
    "diverged": "engines.base",
    # the surrogate
    "CRNN": "model", "get_config": "model", "load_checkpoint": "checkpoint",
    "list_checkpoints": "checkpoint", "SurrogateEngine": "surrogate",
    # data, training, judging
    "DatasetSpec": "dataset", "generate": "dataset", "load_dataset": "dataset",
    "TrainConfig": "training", "train": "training",
    "EvalSpec": "evaluation", "protocol_spec": "evaluation", "evaluate": "evaluation",
    # the surrogate beside a reference, frame by frame (what the explorer shows)
    "Session": "session",
    # modules
    "metrics": None, "physics": None,
}
__all__ = sorted(_API)


def __getattr__(name: str):
    if name not in _API:
        raise AttributeError(f"module 'crane_viz' has no attribute {name!r}")
    module = import_module(f".{_API[name] or name}", __name__)
    value = module if _API[name] is None else getattr(module, name)
    globals()[name] = value
    return value
