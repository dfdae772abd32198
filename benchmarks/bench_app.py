"""Frames per second the explorer delivers to a browser, and where each frame's time goes.

Usage: python benchmarks/bench_app.py [--seconds 15] [--cases 2d|3d|all] [--stages-only]

Two parts, same run:
1. Server stages, in this process, per frame (median over `--frames`): each engine's step (the
   reference on its own thread, so a frame costs the slower one plus the metrics), the views'
   updates (maps are colour-mapped in the browser; in 3D this includes contouring the cutaway
   meshes the browser draws, whose bytes are the "mesh kB"), and the serialisation of the
   Bokeh PATCH-DOC messages with their bytes (the mesh travels in Panel's component messages,
   counted in part 2's websocket bytes).
2. The served app in headless Chromium (Playwright): for each case, open a page, press Play and
   count the frame numbers the page shows over `--seconds` (recorded inside the page, not polled
   from here); the page's updates per second, the
   websocket bytes, and the browser main thread's time by kind (script, layout, style), read
   from Chrome's performance counters, per update.
Everything shares this machine's cores: the server's torch threads are the app's own setting.
"""

from __future__ import annotations

import argparse
import socket
import statistics
import time

from crane_viz.settings import DEFAULT_CHECKPOINT  # the model a user sees first

ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--enable-unsafe-swiftshader"]
CASES = {"2d": [("2D 128², surrogate alone", DEFAULT_CHECKPOINT, 128, "none"),
                ("2D 128², with spectral reference", DEFAULT_CHECKPOINT, 128, "spectral"),
                ("2D 128², with FD reference", DEFAULT_CHECKPOINT, 128, "fd")],
         "3d": [("3D 32³, with FD reference", "plain-3d", 32, "fd"),
                ("3D 32³, surrogate alone", "plain-3d", 32, "none"),
                ("3D 64³, with FD reference", "plain-3d", 64, "fd"),
                ("3D 64³, surrogate alone", "plain-3d", 64, "none"),
                # the half-resolution model (its grid 32³ at 64³, 48³ at 96³, the explorer's 3D cap)
                ("3D 64³, half-resolution model, with FD reference", "plain-3d-half", 64, "fd"),
                ("3D 64³, half-resolution model alone", "plain-3d-half", 64, "none"),
                ("3D 96³, half-resolution model alone", "plain-3d-half", 96, "none")]}


# ---------------------------------------------------------------- part 1: server stages
def server_stages(model: str, size: int, reference: str, frames: int) -> dict[str, float]:
    """Median milliseconds per frame of each server stage, and the bytes of one update."""
    import panel as pn
    from bokeh.document import Document
    from bokeh.protocol import Protocol

    from crane_viz.app.views import CutawayView, LiveDisplay, MapsView, PlotsView
    from crane_viz.live.controller import ExplorerSettings, LiveRun

    settings = ExplorerSettings(model=model, size=size, reference=reference)
    doc = Document()
    display = LiveDisplay(doc, MapsView(on_paint=lambda x, y: None), PlotsView(), CutawayView())
    live = display.live = LiveRun(settings, lambda *a: None)
    display.cutaway.active = live.info["dim"] == 3
    pn.Column(display.maps, display.plots, display.cutaway, display.status, display.counter,
              display.pacer).server_doc(doc)
    events = []
    doc.callbacks.on_change(events.append)
    protocol, rows = Protocol(), []
    for _ in range(frames + 2):
        t0 = time.perf_counter()
        frame = live.session.step()
        t1 = time.perf_counter()
        events.clear()
        meshes = display.cutaway.meshes(frame) if display.cutaway.active else None
        display.show([frame], meshes)
        t2 = time.perf_counter()
        messages = [protocol.create("PATCH-DOC", [e]) for e in events]
        size_bytes = sum(len(m.header_json) + len(m.metadata_json) + len(m.content_json)
                         + sum(len(b.to_bytes()) for b in m.buffers) for m in messages)
        t3 = time.perf_counter()
        m = frame.metrics
        mesh_bytes = sum(a.nbytes for key, arrays in (meshes or {}).items() if key != "time"
                         for a in arrays.values())
        rows.append({"surrogate step": m["surrogate_ms"],
                     "reference step": 0.0 if reference == "none" else m["reference_ms"],
                     "frame (steps ∥, metrics)": (t1 - t0) * 1e3,
                     "views": (t2 - t1) * 1e3, "serialise": (t3 - t2) * 1e3,
                     "kB/update": size_bytes / 1e3, "mesh kB": mesh_bytes / 1e3})
    live.close()
    return {k: statistics.median(r[k] for r in rows[2:]) for k in rows[0]}


# ---------------------------------------------------------------- part 2: the browser
def serve():
    import panel as pn
    import torch

    from crane_viz.app.explorer import create_app
    from crane_viz.live.controller import APP_THREADS

    torch.set_num_threads(APP_THREADS)  # as the served app does
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = pn.serve({"explorer": create_app}, port=port, address="127.0.0.1", threaded=True,
                      show=False, websocket_origin=f"127.0.0.1:{port}")
    time.sleep(2)
    return server, f"http://127.0.0.1:{port}/explorer"


STATUS = r"frame (\d+) · t ="  # the status line while playing

# Records each frame number the status line shows, with the page's clock, from inside the page:
# polling the text from here (a Playwright locator query per 20 ms, each a round trip that walks
# the whole shadow DOM) costs CPU on the same 2 cores the app and the browser share.
WATCH = """(pattern) => {
  const re = new RegExp("^" + pattern);
  const roots = [document];
  const holder = () => {
    for (let i = 0; i < roots.length; i++) {
      const root = roots[i];
      const walker = document.createTreeWalker(root, NodeFilter.SHOW_TEXT);
      for (let n = walker.nextNode(); n; n = walker.nextNode()) if (re.test(n.data)) return root;
      root.querySelectorAll("*").forEach(el => { if (el.shadowRoot) roots.push(el.shadowRoot) });
    }
    return null;
  };
  const root = holder();
  const shown = () => { const m = root.textContent.match(new RegExp(pattern)); return m ? +m[1] : null };
  window.__frames = [[performance.now(), shown()]];
  new MutationObserver(() => {
    const f = shown(), last = window.__frames[window.__frames.length - 1][1];
    if (f !== null && f !== last) window.__frames.push([performance.now(), f]);
  }).observe(root, {subtree: true, childList: true, characterData: true});
}"""


def shown_frames(page) -> list:
    """[page ms, frame] for each change of the status line's frame number since `WATCH`."""
    return page.evaluate("() => window.__frames")


class PageCounters:
    """Chrome's cumulative main-thread durations and the websocket frames a page received."""

    KINDS = ("ScriptDuration", "LayoutDuration", "RecalcStyleDuration", "TaskDuration")

    def __init__(self, page):
        self.cdp = page.context.new_cdp_session(page)
        self.cdp.send("Performance.enable")
        self.cdp.send("Network.enable")
        self.messages, self.bytes = 0, 0
        self.cdp.on("Network.webSocketFrameReceived", self._frame)

    def _frame(self, event):
        response = event["response"]
        payload = response.get("payloadData", "")
        self.messages += 1
        self.bytes += len(payload) * 3 // 4 if response.get("opcode") == 2 else len(payload.encode())

    def read(self) -> dict[str, float]:
        metrics = {m["name"]: m["value"] for m in self.cdp.send("Performance.getMetrics")["metrics"]}
        return {**{k: metrics.get(k, 0.0) for k in self.KINDS}, "messages": self.messages, "bytes": self.bytes}


def measure(browser, url, seconds) -> dict[str, float]:
    page = browser.new_page(viewport={"width": 1500, "height": 1000})
    page.goto(url)
    page.wait_for_selector("text=Play", timeout=120_000)
    counters = PageCounters(page)
    page.click("text=Play")
    page.wait_for_selector(f"text=/^{STATUS}/", timeout=120_000)
    page.evaluate(WATCH, STATUS)
    time.sleep(1.0)  # past the first updates
    c0, t0 = counters.read(), page.evaluate("performance.now()")
    time.sleep(seconds)
    c1, t1 = counters.read(), page.evaluate("performance.now()")
    records = shown_frames(page)
    page.click("text=Pause")
    page.close()
    f0 = [f for t, f in records if t <= t0][-1]
    f1 = [f for t, f in records if t <= t1][-1]
    wall, updates = (t1 - t0) / 1e3, sum(t0 < t <= t1 for t, _ in records)
    d = {k: c1[k] - c0[k] for k in c0}
    per_update = max(updates, 1)
    return {"frames/s": (f1 - f0) / wall, "updates/s": updates / wall,
            "kB/update": d["bytes"] / 1e3 / per_update, "messages/update": d["messages"] / per_update,
            "main thread % busy": 100 * d["TaskDuration"] / wall,
            "script ms/update": 1e3 * d["ScriptDuration"] / per_update,
            "layout+style ms/update": 1e3 * (d["LayoutDuration"] + d["RecalcStyleDuration"]) / per_update}


def row(label: str, values: dict, header: bool) -> None:
    """One markdown table row (after the header, for the first)."""
    if header:
        print("| case | " + " | ".join(values) + " |")
        print("|---|" + "---|" * len(values))
    print(f"| {label} | " + " | ".join(f"{v:.1f}" for v in values.values()) + " |", flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=15, help="browser time per case")
    ap.add_argument("--frames", type=int, default=20, help="frames per case for the server stages")
    ap.add_argument("--cases", choices=["2d", "3d", "all"], default="all")
    ap.add_argument("--stages-only", action="store_true", help="skip the browser part")
    args = ap.parse_args()
    import torch

    from crane_viz.device import keep_freed_memory
    from crane_viz.live.controller import APP_THREADS

    torch.set_num_threads(APP_THREADS)
    keep_freed_memory()  # as the served app does
    cases = [c for key in ("2d", "3d") if args.cases in (key, "all") for c in CASES[key]]
    print(f"torch {torch.__version__}, {APP_THREADS} torch thread(s) per app process (as served)\n")
    print("Server stages, ms per frame (median):")
    for i, (label, model, size, ref) in enumerate(cases):
        row(label, server_stages(model, size, ref, args.frames), header=i == 0)
    if args.stages_only:
        return
    from playwright.sync_api import sync_playwright

    server, url = serve()
    print("\nIn the browser (headless Chromium), while playing:")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=ARGS)
        for i, (label, model, size, ref) in enumerate(cases):
            query = f"?model={model}&size={size}&reference={ref}"
            row(label, measure(browser, url + query, args.seconds), header=i == 0)
        browser.close()
    server.stop()


if __name__ == "__main__":
    main()
