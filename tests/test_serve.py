"""`crane-viz serve`: this machine only by default; the classroom mode opens it and keeps
training with the serving machine (#16 item 5)."""

import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from served import served_explorer, wait_for_page

from crane_viz.live.controller import may_train


def test_who_may_train():
    assert may_train("203.0.113.7", classroom=False)  # a private server: whoever reaches it
    assert may_train("127.0.0.1", classroom=True) and may_train("::1", classroom=True)
    assert not may_train("192.168.1.20", classroom=True)
    assert not may_train(None, classroom=True) and not may_train("not an address", classroom=True)


def listening_addresses(port: int) -> set[str]:
    """Local addresses (hex, as /proc/net/tcp{,6} print them) listening on `port`."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            address, hex_port = fields[1].split(":")
            if fields[3] == "0A" and int(hex_port, 16) == port:  # 0A: LISTEN
                found.add(address)
    return found


@pytest.mark.slow
@pytest.mark.parametrize("classroom", [False, True], ids=["private", "classroom"])
def test_serve_binds_loopback_unless_classroom(classroom):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [sys.executable, "-m", "crane_viz", "serve", "--port", str(port)] + (["--classroom"] if classroom else [])
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.time() + 60
        while time.time() < deadline:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/explorer", timeout=10)
                break
            except OSError:
                time.sleep(0.3)
        addresses = listening_addresses(port)
        assert addresses, "the server is not listening"
        if classroom:
            assert "00000000" in addresses  # 0.0.0.0: every interface
        else:
            assert addresses == {"0100007F"}  # 127.0.0.1 only, no IPv6 wildcard
    finally:
        proc.terminate()
        proc.wait(30)


@pytest.mark.slow
def test_the_thin_entry_point_serves_the_explorer():
    """`panel serve apps/explorer.py`, README's alternative start, builds the same page."""
    with served_explorer() as served:
        assert "crane_viz — spinodal decomposition explorer" in wait_for_page(served.url)


def test_only_the_app_package_imports_panel():
    """The library (engines, surrogate, jobs, CLI) loads without Panel; only crane_viz.app needs it."""
    import pkgutil

    import crane_viz

    modules = [m.name for m in pkgutil.walk_packages(crane_viz.__path__, "crane_viz.")
               if not m.name.startswith(("crane_viz.app", "crane_viz.__main__"))]
    code = ("import importlib, sys\n"
            f"for name in {modules!r}:\n    importlib.import_module(name)\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('panel', 'bokeh')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]", out
