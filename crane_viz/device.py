"""The one rule that turns a device setting into a torch.device (CLI, app, engines, jobs), and
the one way to start a thread that computes."""

from __future__ import annotations

import ctypes
import ctypes.util
import re
import threading

import torch

from .errors import InputError

DEVICE_CHOICES = "'auto' (CUDA when available), 'cpu', 'cuda' or 'cuda:N'"


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """'auto' or None → CUDA when available, else CPU; 'cpu', 'cuda', 'cuda:N' as asked.

    Anything else (a typo, 'mps', an absent GPU or GPU index) is an InputError naming the choices.
    """
    if isinstance(device, torch.device):
        device = str(device)
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    match = re.fullmatch(r"(cpu|cuda)(?::(\d+))?", str(device))
    if not match or (match.group(1) == "cpu" and match.group(2)):
        raise InputError(f"--device must be {DEVICE_CHOICES}, not {device!r}")
    if match.group(1) == "cuda":
        if not torch.cuda.is_available():
            raise InputError(f"--device {device}: no CUDA GPU is available; use 'auto' or 'cpu'")
        index = int(match.group(2) or 0)
        if index >= torch.cuda.device_count():
            raise InputError(f"--device {device}: only {torch.cuda.device_count()} CUDA GPU(s) here")
    return torch.device(device)


def compute_thread(target, name: str) -> threading.Thread:
    """A daemon thread (not started) that runs `target` with as many torch threads as the
    calling thread uses.

    A new thread does not inherit `torch.set_num_threads`: its OpenMP team takes every core
    while `torch.get_num_threads()` there still reports the setting, so a 128² spectral step on
    such a thread beside another busy thread took 85–107 ms against 40 ms pinned (2 cores).
    """
    count = torch.get_num_threads()

    def run():
        torch.set_num_threads(count)
        target()
    return threading.Thread(target=run, daemon=True, name=name)


_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc <malloc.h>
_KEEP_BYTES = 32 << 20  # glibc's largest mmap threshold on 64-bit systems


def keep_freed_memory() -> bool:
    """Ask glibc to keep freed blocks of up to 32 MiB in the heap instead of returning them to the
    system. A model step on CPU allocates and frees tens of 0.1–16 MB tensors; by default each
    is a fresh mmap whose pages fault in on first touch. Measured (README, "Benchmarks"): together
    with the in-place cells, the 3D 64³ step 343 → 249–260 ms; alone, the 2D 128² step 34 → 27 ms
    beside a training process, and no change on a quiet machine. The price is a process that keeps its peak heap.
    Called by the command-line tools (`crane-viz serve` included) and `apps/explorer.py`; a no-op
    (False) off glibc."""
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError, TypeError):
        return False
    return bool(mallopt(_M_MMAP_THRESHOLD, _KEEP_BYTES)) and bool(mallopt(_M_TRIM_THRESHOLD, 8 * _KEEP_BYTES))


DEVICE_HELP = f"Where tensors live: {DEVICE_CHOICES}."


def add_device_option(parser) -> None:
    """The --device option, declared once for every command that computes."""
    parser.add_argument("--device", default="auto", help=DEVICE_HELP + " Default: auto.")
