"""CRNN seconds per frame against the reference solvers in the same run, and achieved FLOP/s.

Usage: python benchmarks/bench_surrogate.py [--quick] [--repeat 3] [--modes]

For `paper-2d` (beside the spectral coherent-2d solver) and `paper-3d` (beside the FD plain-3d
solver on the full grid, the model on the half-resolution grid as in the 3D paper) it prints
seconds per frame of each, the ratio, and the surrogate step's FLOP/s against this machine's dense
float32 matmul FLOP/s measured in the same run. `--modes` also times inference variants
(bfloat16 autocast, channels_last, torch.compile; in 3D also PyTorch's own convolution dispatch,
which the model bypasses for oneDNN) and reports their largest deviation from the
float32 eager output.
"""

from __future__ import annotations

import argparse
import statistics
import time
from functools import partial

import torch
from torch.utils.flop_counter import FlopCounterMode

from crane_viz.device import keep_freed_memory
from crane_viz.engines import FiniteDifferenceSolver, SpectralSolver
from crane_viz.nn import model as model_module
from crane_viz.nn.model import CRNN, get_config
from crane_viz.physics.initial import perlin_field
from crane_viz.physics.presets import get_preset

MODES_MAX_SIDE = {2: 128, 3: 32}  # the variant sweep (compiles included) stays within a few minutes


def median_time(fn, repeat):
    fn()
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def matmul_flops(repeat=5, n=1024):
    """Dense float32 matmul FLOP/s of this machine (the hardware yardstick)."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    return 2 * n**3 / median_time(lambda: a @ b, repeat)


def model_inputs(model, n, dim):
    phi = torch.tensor(perlin_field(n, dim, mean=0.5, amplitude=0.1, cells=max(1, n // 16), seed=0),
                       dtype=torch.float32)[None]
    cond = torch.full((1, len(model.config.conditions)), 0.006) if model.config.conditions else None
    _, hidden = model(phi, None, cond)  # a warm hidden state, as in a running session
    return phi, hidden, cond


def torch_dispatch(fn):
    """Run `fn` with the model's convolutions left to PyTorch's own dispatch (aten.convolution),
    not the direct oneDNN calls it makes in 3D: the same arithmetic, and the FLOP counter only
    knows aten.convolution."""
    direct, model_module._onednn = model_module._onednn, lambda x, weight: False
    try:
        return fn()
    finally:
        model_module._onednn = direct


def step_flops(model, phi, hidden, cond):
    def count():
        with FlopCounterMode(display=False) as counter:
            model(phi, hidden, cond)
        return counter.get_total_flops()
    return torch_dispatch(count)


def variants(model, phi, hidden, cond):
    """Inference variants to try: name → callable running one recurrent step."""
    out = {"fp32 eager": lambda: model(phi, hidden, cond)}

    def bf16():
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return model(phi, hidden, cond)
    out["bf16 autocast"] = bf16
    fmt = torch.channels_last if phi.ndim == 3 else torch.channels_last_3d
    cl_model = CRNN(model.config)
    cl_model.load_state_dict(model.state_dict())
    cl_model = cl_model.to(memory_format=fmt).eval()
    out["channels_last"] = lambda: cl_model(phi, hidden, cond)
    if phi.ndim == 4:  # 3D: the model calls oneDNN directly; compare with torch's own dispatch
        out["torch conv dispatch"] = lambda: torch_dispatch(lambda: model(phi, hidden, cond))
    compiled = torch.compile(model)
    out["torch.compile"] = lambda: compiled(phi, hidden, cond)
    return out


def cases(quick):
    two = [64, 128] if quick else [64, 128, 256, 512]
    three = [32, 64] if quick else [32, 64, 128]
    for n in two:
        yield "paper-2d", get_preset("coherent-2d"), SpectralSolver, n, 1
    for n in three:
        yield "paper-3d", get_preset("plain-3d"), FiniteDifferenceSolver, n, 2


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--modes", action="store_true", help="also time bf16, channels_last, compile")
    args = ap.parse_args()
    keep_freed_memory()  # as the command-line tools do
    torch.set_grad_enabled(False)
    peak = matmul_flops()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"dense fp32 matmul {peak / 1e9:.1f} GFLOP/s")
    print(f"{'model':<10}{'ref grid':>9}{'model grid':>11}{'model s/τ':>11}{'ref s/τ':>10}"
          f"{'ref÷model':>10}{'GFLOP/s':>9}{'% of matmul':>12}")
    for name, preset, solver_cls, n, scale in cases(args.quick):
        model = CRNN(get_config(name)).eval()
        m = n // scale
        phi, hidden, cond = model_inputs(model, m, preset.dim)
        with torch.inference_mode():
            t_model = median_time(partial(model, phi, hidden, cond), args.repeat)
            flops = step_flops(model, phi, hidden, cond)
            solver = solver_cls(preset, misfit=0.006 if preset.dim == 2 else 0.0)
            full = torch.tensor(perlin_field(n, preset.dim, mean=0.5, amplitude=0.1,
                                             cells=max(1, n // 16), seed=0), dtype=torch.float32)[None]
            state = solver.init_state(full)
            t_ref = median_time(partial(solver.step, state), args.repeat)
        rate = flops / t_model
        print(f"{name:<10}{f'{n}^{preset.dim}':>9}{f'{m}^{preset.dim}':>11}{t_model:>11.4f}{t_ref:>10.4f}"
              f"{t_ref / t_model:>10.2f}{rate / 1e9:>9.1f}{100 * rate / peak:>11.1f}%", flush=True)
        if args.modes and m <= MODES_MAX_SIDE[preset.dim]:
            base = model(phi, hidden, cond)[0]
            for label, fn in variants(model, phi, hidden, cond).items():
                try:
                    with torch.inference_mode():
                        t = median_time(fn, args.repeat)
                        dev = float((fn()[0].float() - base).abs().max())
                except Exception as exc:  # e.g. torch.compile failing to lower a 3D circular conv
                    print(f"    {label:<15} failed: {type(exc).__name__}: {str(exc).splitlines()[0][:100]}")
                    continue
                print(f"    {label:<15} {t:.4f} s/τ  max |Δφ| vs fp32 eager {dev:.2e}", flush=True)


if __name__ == "__main__":
    main()
