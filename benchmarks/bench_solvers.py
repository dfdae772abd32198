"""Seconds per frame τ of the reference solvers (torch) against the same step in numpy/scipy.fft.

Usage: python benchmarks/bench_solvers.py [--quick] [--repeat 3]
Prints a table: engine, grid, torch s/τ, numpy/scipy s/τ, ratio (numpy / torch). Each figure is
the median of `--repeat` timed frames after one warm-up frame, measured in this run.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import scipy.fft as sfft
import torch

from crane_viz.device import keep_freed_memory
from crane_viz.engines import FiniteDifferenceSolver, SpectralSolver
from crane_viz.physics.equations import preset_elastic_kernel
from crane_viz.physics.initial import perlin_field
from crane_viz.physics.presets import get_preset


def numpy_spectral_frame(preset, misfit, steps, dt):
    """The semi-implicit step of SpectralSolver in numpy + scipy.fft (float64, 1 worker)."""
    def make(phi):
        shape = phi.shape
        axes = [2 * np.pi * np.fft.fftfreq(n) for n in shape[:-1]] + [2 * np.pi * np.fft.rfftfreq(shape[-1])]
        q2 = sum(q**2 for q in np.meshgrid(*axes, indexing="ij"))
        stiff = preset.interface_width * q2**2
        if misfit:
            trb = preset_elastic_kernel(preset, shape, torch.float64, "cpu").numpy()
            stiff = stiff + misfit**2 * trb * q2
        inv = 1.0 / (1.0 + dt * stiff)
        eps = preset.interface_width

        def frame(phi):
            ph = sfft.rfftn(phi, workers=1)
            for _ in range(steps):
                f = (36 / eps) * phi * (1 - phi) * (1 - 2 * phi)
                ph = (ph - dt * q2 * sfft.rfftn(f, workers=1)) * inv
                phi = sfft.irfftn(ph, s=shape, workers=1)
            return phi
        return frame
    return make


def numpy_fd_frame(preset, steps, dt):
    """The explicit FD step of FiniteDifferenceSolver in numpy (float32, np.roll Laplacian)."""
    def make(phi):
        dim, eps = phi.ndim, preset.interface_width

        def lap(x):
            out = -2 * dim * x
            for ax in range(dim):
                out = out + np.roll(x, 1, ax) + np.roll(x, -1, ax)
            return out

        def frame(phi):
            phi = phi.astype(np.float32)
            for _ in range(steps):
                mu = (36 / eps) * phi * (1 - phi) * (1 - 2 * phi) - eps * lap(phi)
                phi = phi + dt * lap(mu)
            return phi
        return frame
    return make


def time_frames(frame, x, repeat):
    x = frame(x)  # warm-up (allocator, plans)
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        x = frame(x)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def cases(quick):
    two = [64, 128] if quick else [64, 128, 256, 512]
    three = [32] if quick else [32, 64, 128]
    for n in two:
        yield "spectral", "coherent-2d", 0.006, n
    for n in two:
        yield "fd", "coherent-2d", 0.0, n
    for n in three:
        yield "spectral", "plain-3d", 0.0, n
    for n in three:
        yield "fd", "plain-3d", 0.0, n


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small grids only")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    keep_freed_memory()  # as the command-line tools do
    torch.set_grad_enabled(False)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"{'engine':<10}{'preset':<13}{'grid':>8}{'steps/τ':>9}{'torch s/τ':>12}{'numpy s/τ':>12}{'ratio':>8}")
    for kind, preset_name, eta, n in cases(args.quick):
        preset = get_preset(preset_name)
        phi = perlin_field(n, preset.dim, mean=0.5, amplitude=0.1, cells=max(1, n // 16), seed=0)
        if kind == "spectral":
            engine = SpectralSolver(preset, misfit=eta)
            ref = numpy_spectral_frame(preset, eta, engine.steps_per_frame, engine.time_step)(phi)
        else:
            engine = FiniteDifferenceSolver(preset, misfit=eta)
            ref = numpy_fd_frame(preset, engine.steps_per_frame, engine.time_step)(phi)
        state = engine.init_state(torch.tensor(phi, dtype=torch.float32)[None])
        t_torch = time_frames(engine.step, state, args.repeat)
        t_np = time_frames(ref, phi, args.repeat)
        grid = f"{n}^{preset.dim}"
        print(f"{kind:<10}{preset_name:<13}{grid:>8}{engine.steps_per_frame:>9}{t_torch:>12.4f}"
              f"{t_np:>12.4f}{t_np / t_torch:>8.2f}", flush=True)


if __name__ == "__main__":
    main()
