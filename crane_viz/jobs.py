"""Long work off the caller's thread: one job at a time, a cancel flag, and a report at the end."""

from __future__ import annotations

import threading
from typing import Callable

from .errors import CraneVizError


class BackgroundJob:
    """Runs `work(cancel_event)` on a daemon thread, then `on_done(result, None)` or
    `on_done(None, message)` for an error a user can act on (a cancellation included)."""

    def __init__(self):
        self._cancel = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def launch(self, work: Callable[[threading.Event], object], on_done, name: str) -> bool:
        """Start `work`; False (and nothing started) while another job is running."""
        if self.running:
            return False
        self._cancel.clear()

        def run():
            try:
                result = work(self._cancel)
            except (CraneVizError, ValueError) as exc:
                on_done(None, str(exc))
            else:
                on_done(result, None)

        self._thread = threading.Thread(target=run, daemon=True, name=name)
        self._thread.start()
        return True

    def cancel(self) -> None:
        self._cancel.set()

    def wait(self, timeout: float | None = None) -> None:
        if self._thread is not None:
            self._thread.join(timeout)
