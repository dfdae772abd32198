"""The explorer as users start it, `panel serve apps/explorer.py` in a subprocess, for the tests
that need the real server and its log (the in-process test server behaves differently)."""

import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_page(url: str, seconds: float = 90, every: float = 0.3) -> str:
    """The page at `url` once the server answers ('' if it does not within `seconds`)."""
    deadline = time.time() + seconds
    while time.time() < deadline:
        try:
            return urllib.request.urlopen(url, timeout=30).read().decode()
        except OSError:
            time.sleep(every)
    return ""


@contextmanager
def served_explorer():
    """Yields a namespace with the explorer's `url`; after the block its `log` holds the server's
    output (the server is stopped on the way out)."""
    port = free_port()
    cmd = [sys.executable, "-m", "panel", "serve", str(ROOT / "apps" / "explorer.py"), "--port", str(port),
           "--address", "127.0.0.1", "--allow-websocket-origin", f"127.0.0.1:{port}"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    served = SimpleNamespace(url=f"http://127.0.0.1:{port}/explorer", log="")
    try:
        yield served
    finally:
        proc.terminate()
        served.log = proc.communicate(timeout=30)[0]
