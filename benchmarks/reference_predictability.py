"""How far two legitimate reference runs of the 2D papers' protocol cases drift apart (issue #13).

A surrogate's MAE at 500 τ can only be held to the paper's 0.09 if the reference itself is that
predictable. This runs the protocol's held-out cases (`evaluate --protocol paper`: 128², seed
1 000 000) with the spectral solver at its δt, against the same solver at δt/2 and from the initial
field plus mean-free Gaussian noise of σ = 1e-4 and 1e-6, and prints the median (IQR) MAE over
cases at the given times.

Usage: OMP_NUM_THREADS=1 python benchmarks/reference_predictability.py [--cases 24] [--times 100 200 500]
"""
import argparse

import numpy as np
import torch

from crane_viz.analysis.evaluation import heldout_cases, protocol_spec
from crane_viz.engines import make_solver
from crane_viz.nn.checkpoint import load_checkpoint


def drift(preset, phi0, start, eta, times, batch, **solver):
    """(cases, times) MAE between the reference from phi0 and a variant from `start` with `solver` options."""
    mae = np.zeros((phi0.shape[0], len(times)))
    for i0 in range(0, phi0.shape[0], batch):
        e = eta[i0:i0 + batch]
        ref, alt = make_solver("spectral", preset, misfit=e), make_solver("spectral", preset, misfit=e, **solver)
        a, b = ref.init_state(phi0[i0:i0 + batch]), alt.init_state(start[i0:i0 + batch])
        for t in range(1, max(times) + 1):
            a, b = ref.step(a), alt.step(b)
            if t in times:
                mae[i0:i0 + len(e), times.index(t)] = (a.phi - b.phi).abs().flatten(1).mean(1).numpy()
    return mae


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=24)
    parser.add_argument("--times", type=int, nargs="+", default=[100, 200, 300, 500])
    args = parser.parse_args()
    ckpt = load_checkpoint("coherent-2d-elastic")  # only for the preset and the protocol's case sampler
    spec = protocol_spec("paper", 2, cases=args.cases)
    _, phi0, eta = heldout_cases(ckpt, spec, spec.cases, spec.seed)
    noise = torch.randn(phi0.shape, generator=torch.Generator().manual_seed(7), dtype=phi0.dtype)
    noise -= noise.mean(dim=(1, 2), keepdim=True)
    dt = ckpt.preset.time_steps["spectral"]
    variants = {f"δt = {dt / 2}": (phi0, {"time_step": dt / 2}),
                "noise σ = 1e-4": (phi0 + 1e-4 * noise, {}), "noise σ = 1e-6": (phi0 + 1e-6 * noise, {})}
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; {spec.cases} cases at {spec.size}², "
          f"spectral reference δt = {dt}; median (IQR) MAE between the two runs")
    for name, (start, solver) in variants.items():
        q1, med, q3 = np.percentile(drift(ckpt.preset, phi0, start, eta, args.times, spec.batch, **solver),
                                    [25, 50, 75], axis=0)
        print(f"{name}: " + "; ".join(f"{t} τ {m:.1e} ({a:.1e}–{b:.1e})"
                                      for t, m, a, b in zip(args.times, med, q1, q3)), flush=True)


if __name__ == "__main__":
    main()
