"""Frames per second the explorer delivers to a browser (headless Chromium via Playwright).

Usage: python benchmarks/bench_app.py [--seconds 15]

Serves the explorer (crane_viz.app), opens a page per case, presses Play, and counts the frame numbers the
page shows over `--seconds` of wall time: 2D 128² surrogate alone, 2D 128² with the spectral
reference, and 3D 64³ (with the FD reference on the full grid when the model is half-resolution).
"""

from __future__ import annotations

import argparse
import socket
import time

from playwright.sync_api import sync_playwright

ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--enable-unsafe-swiftshader"]


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


def frame(page) -> int:
    status = page.locator("text=/^frame \\d+ · t =/")
    return int(status.first.inner_text().split()[1]) if status.count() else 0


def measure(browser, url, seconds):
    page = browser.new_page(viewport={"width": 1500, "height": 1000})
    page.goto(url)
    page.wait_for_selector("text=Play", timeout=120_000)
    page.click("text=Play")
    while frame(page) < 2:
        time.sleep(0.1)
    f0, t0 = frame(page), time.perf_counter()
    time.sleep(seconds)
    f1, t1 = frame(page), time.perf_counter()
    page.click("text=Pause")
    page.close()
    return (f1 - f0) / (t1 - t0)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=15)
    ap.add_argument("--model-2d", default="coherent-2d")
    ap.add_argument("--model-3d", default="plain-3d")
    args = ap.parse_args()
    server, url = serve()
    cases = [("2D 128², surrogate alone", f"?model={args.model_2d}&size=128&reference=none"),
             ("2D 128², with spectral reference", f"?model={args.model_2d}&size=128&reference=spectral"),
             ("3D 32³, with FD reference", f"?model={args.model_3d}&size=32&reference=fd"),
             ("3D 32³, surrogate alone", f"?model={args.model_3d}&size=32&reference=none"),
             ("3D 64³, with FD reference", f"?model={args.model_3d}&size=64&reference=fd"),
             ("3D 64³, surrogate alone", f"?model={args.model_3d}&size=64&reference=none")]
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=ARGS)
        for label, query in cases:
            print(f"{label:<36} {measure(browser, url + query, args.seconds):6.2f} frames/s", flush=True)
        browser.close()
    server.stop()


if __name__ == "__main__":
    main()
