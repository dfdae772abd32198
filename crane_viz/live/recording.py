"""Recording a live session's frames for export, within a memory budget."""

from __future__ import annotations

import threading

import numpy as np

from ..io.export import Trajectory


class Recorder:
    """Keeps a live session's frames for export within a memory budget.

    Every frame is kept until the budget is reached; then every other kept frame is dropped and
    only every `stride`-th new frame is kept (stride doubles each time), so a long run still
    exports evenly spaced frames from start to end.
    """

    def __init__(self, budget_bytes: int = 256 * 2**20, attrs: dict | None = None):
        self.budget, self.attrs = budget_bytes, dict(attrs or {})
        self._lock = threading.Lock()
        self.clear()

    def clear(self, attrs: dict | None = None) -> None:
        """Forget every frame (a new run starts), optionally with new attributes."""
        with self._lock:
            if attrs is not None:
                self.attrs = dict(attrs)
            self.fields: dict[str, list[np.ndarray]] = {}
            self.time: list[float] = []
            self.rows: list[dict] = []
            self.stride, self._seen = 1, 0

    def add(self, index: int, time: float, fields: dict[str, np.ndarray | None],
            metrics: dict | None = None) -> None:
        """Offer one frame; it is kept when it falls on the current stride."""
        with self._lock:
            self._seen += 1
            if (self._seen - 1) % self.stride:
                return
            for name, phi in fields.items():
                if phi is not None:
                    self.fields.setdefault(name, []).append(np.array(phi, dtype=np.float32))
            self.time.append(float(time))
            self.rows.append({"frame": float(index), **(metrics or {})})
            if self.nbytes > self.budget and len(self.time) > 2:
                self._thin()

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for frames in self.fields.values() for a in frames)

    def _thin(self) -> None:
        for name in self.fields:
            self.fields[name] = self.fields[name][::2]
        self.time, self.rows = self.time[::2], self.rows[::2]
        self.stride *= 2

    def trajectory(self) -> Trajectory:
        """A snapshot of what was recorded so far (copies; recording may go on)."""
        with self._lock:
            fields = {k: np.stack(v) for k, v in self.fields.items() if len(v) == len(self.time)}
            keys = sorted({k for r in self.rows for k in r})
            # metrics[k][j] belongs to frame j + 1, as in `crane-viz run` files
            metrics = {k: np.array([r.get(k, np.nan) for r in self.rows[1:]]) for k in keys}
            return Trajectory(fields, np.array(self.time), metrics,
                              {**self.attrs, "recorded_stride": self.stride})
