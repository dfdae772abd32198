"""Backpressure from the browser: it acknowledges each live update once it has painted it."""

from __future__ import annotations

import param
from panel.custom import JSComponent


class Pacer(JSComponent):
    """An invisible element: when `sent` changes (last in an update's message), the browser
    waits for the next paint and sets `shown` to it. The server sends the next update only
    then, so updates never queue up in a browser that paints slower than the server sends."""

    sent = param.Integer(default=0, doc="updates the server has sent")
    shown = param.Integer(default=0, doc="updates the browser has painted (set by the browser)")

    _esm = """
    export function render({ model }) {
      const el = document.createElement("span")
      el.style.display = "none"
      // two animation frames: the update's views paint in the first
      model.on("sent", () => requestAnimationFrame(() => requestAnimationFrame(() => { model.shown = model.sent })))
      return el
    }
    """

    def __init__(self, **params):
        super().__init__(width=0, height=0, margin=0, **params)
