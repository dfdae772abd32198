"""Long work off the caller's thread: one job at a time, a cancel flag, and a report at the end."""

from __future__ import annotations

import logging
import threading
from typing import Callable

from ..device import compute_thread
from ..errors import CraneVizError

log = logging.getLogger("crane_viz")


def unexpected(exc: BaseException, what: str) -> str:
    """Log an unexpected failure with its traceback; the one-line reason to show the user."""
    log.error("%s failed", what, exc_info=exc)
    return f"{what} failed: {exc.__class__.__name__}: {exc} (the server log has the details)"


class BackgroundJob:
    """Runs `work(cancel_event)` on a daemon thread, then `on_done(result, None)` or
    `on_done(None, message)` — for an error a user can act on (a cancellation included) and for
    anything unexpected (MemoryError, an ffmpeg OSError, a torch RuntimeError), which is also
    logged with its traceback: the job never ends without a report."""

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
            except Exception as exc:  # noqa: BLE001  (reported, not swallowed)
                on_done(None, unexpected(exc, name))
            else:
                on_done(result, None)

        self._thread = compute_thread(run, name)
        self._thread.start()
        return True

    def cancel(self) -> None:
        self._cancel.set()

    def wait(self, timeout: float | None = None) -> None:
        if self._thread is not None:
            self._thread.join(timeout)
