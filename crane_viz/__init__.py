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
    "PRESETS": "physics.presets", "get_preset": "physics.presets",
    "perlin_field": "physics.initial", "as_batch": "physics.initial", "load_field": "physics.initial",
    # engines: one interface, one frame loop, one divergence rule
    "make_solver": "engines", "Engine": "engines.base", "State": "engines.base", "states": "engines.base",
    "rollout": "engines.base", "advance": "engines.base", "side_by_side": "engines.base",
    "diverged": "engines.base",
    # the surrogate
    "CRNN": "nn.model", "get_config": "nn.model", "load_checkpoint": "nn.checkpoint",
    "list_checkpoints": "nn.checkpoint", "SurrogateEngine": "engines.surrogate",
    # data, training, judging
    "DatasetSpec": "training.dataset", "generate": "training.dataset", "load_dataset": "training.dataset",
    "TrainConfig": "training.loop", "train": "training.loop",
    "EvalSpec": "analysis.evaluation", "protocol_spec": "analysis.evaluation", "evaluate": "analysis.evaluation",
    # the surrogate beside a reference, frame by frame (what the explorer shows)
    "Session": "live.session",
    # modules: the measures, and the equations (w, μ, energies, trB)
    "metrics": "analysis.metrics", "equations": "physics.equations",
}
__all__ = sorted(_API)


def __getattr__(name: str):
    if name not in _API:
        raise AttributeError(f"module 'crane_viz' has no attribute {name!r}")
    module = import_module(f".{_API[name]}", __name__)
    value = module if _API[name].endswith(f".{name}") else getattr(module, name)
    globals()[name] = value
    return value
