"""Shared pieces of the explorer's views: map size, palette, and running code on a session's loop."""

from __future__ import annotations

from functools import cached_property

from panel.io.state import set_curdoc
from panel.viewable import Viewer

MAP_PX = 300
PALETTE = "Viridis256"
CLASSROOM_ENV = "CRANE_VIZ_CLASSROOM"  # set by `crane-viz serve --classroom`: remote browsers may not train or export


def later(doc, callback, delay: float = 0.0) -> None:
    """Run `callback` on the session's event loop (after `delay` seconds) with Panel's current
    document set to it.

    Models made or updated without it resolve their stylesheets to Panel's CDN (its fallback
    when no document is current), which an offline classroom cannot reach (#16 item 10). The
    session's loop holds the document lock, so Bokeh models may be changed there.
    """
    def run():
        with set_curdoc(doc):
            callback()
    if delay > 0:
        doc.add_timeout_callback(run, int(1000 * delay))
    else:
        doc.add_next_tick_callback(run)


class View(Viewer):
    """A part of the page (the HoloViz `Viewer` pattern): place it in any layout; its layout,
    built once by `_layout`, is the same object wherever it is shown or hidden."""

    @cached_property
    def layout(self):
        return self._layout()

    def __panel__(self):
        return self.layout

    def _layout(self):
        raise NotImplementedError
