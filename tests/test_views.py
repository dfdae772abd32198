"""The explorer's views as Bokeh/Panel objects (no server): what a teacher sees on the plots and
in messages (#16 item 14), checked on the models the browser draws."""

import math

import numpy as np
import pytest

pytest.importorskip("panel")

from bokeh.document import Document  # noqa: E402
from bokeh.models import ColorBar, Legend  # noqa: E402

from crane_viz.app.views import LEVELS, MapsView, PlotsView, colour_levels  # noqa: E402
from crane_viz.live.controller import gui_wording  # noqa: E402


def test_maps_carry_colour_bars_for_phi_and_its_difference():
    maps = MapsView(on_paint=lambda x, y: None)
    bars = {key: [m for m in fig.right if isinstance(m, ColorBar)] for key, fig in maps.figures.items()}
    assert len(bars["reference"]) == 1 and len(bars["difference"]) == 1
    assert not bars["surrogate"]  # surrogate and reference share one φ scale: one bar for both
    phi, diff = bars["reference"][0].color_mapper, bars["difference"][0].color_mapper
    assert (phi.low, phi.high) == (0.0, 1.0) and (diff.low, diff.high) == (0.0, 0.5)  # in φ units
    for key, bar in (("surrogate", phi), ("reference", phi), ("difference", diff)):
        glyph = maps.figures[key].renderers[0].glyph.color_mapper  # draws the maps' palette indices
        assert (glyph.low, glyph.high) == (0, LEVELS) and glyph.palette == bar.palette
    assert diff.palette != phi.palette


def bokeh_colour_index(value: float, low: float, high: float, n: int = LEVELS) -> int:
    """BokehJS's LinearColorMapper.value_to_index, ends clamped to the end colours (its low_color
    and high_color default to them)."""
    if value == high:
        return n - 1
    index = math.floor((value - low) * (1 / (high - low)) / (1 / n))
    return min(max(index, 0), n - 1)


def test_maps_sent_as_palette_indices_show_the_colours_of_the_values():
    """One byte per point instead of four: the browser's mapper on [0, 256] gives level k colour k,
    the colour its mapper on [low, high] gives the value (edges, outside values, random ones)."""
    rng = np.random.default_rng(0)
    for low, high in ((0.0, 1.0), (0.0, 0.5)):
        values = np.concatenate([np.float32([low - 0.3, low, high, high + 2.0, -1e-7]),
                                 low + (high - low) * np.arange(257, dtype=np.float32) / 256,
                                 rng.uniform(low - 0.1, high + 0.1, 2000).astype(np.float32)])
        levels = colour_levels(values, low, high)
        assert levels.dtype == np.uint8
        assert [bokeh_colour_index(float(v), low, high) for v in values] == \
               [bokeh_colour_index(float(k), 0, LEVELS) for k in levels]


def test_metric_legends_sit_beside_the_plots_not_over_the_newest_points():
    plots = PlotsView()
    for fig in (plots.rmse, plots.energy, plots.drift, plots.loglog):
        assert any(isinstance(m, Legend) for m in fig.right), fig.title.text
        assert not any(isinstance(m, Legend) for m in fig.center), fig.title.text


@pytest.mark.parametrize("message, shown", [
    ("--cells must be an integer in [1, 64], not 0", "cells must be an integer in [1, 64], not 0"),
    ("--mean-min (0.6) must not exceed --mean-max (0.4)", "mean min (0.6) must not exceed mean max (0.4)"),
    ("φ − ⟨φ⟩ stays below 1e-3", "φ − ⟨φ⟩ stays below 1e-3"),  # a minus sign is not a flag
])
def test_gui_messages_name_settings_not_command_line_flags(message, shown):
    assert gui_wording(message) == shown


def test_a_diverged_sweep_point_is_drawn_as_diverged(tmp_path):
    """A point whose surrogate blew up (NaN spread) is grey and labelled "diverged", not drawn as
    homogeneous; a reference that disagrees outlines it in black (#16 item 9)."""
    from crane_viz.app.phase_tab import PhaseView
    from crane_viz.live.controller import ExplorerSettings, LiveRun

    live = LiveRun(ExplorerSettings(size=32), lambda *_: None, lambda *_: None)
    view = PhaseView(live=live, doc=None, folder=tmp_path, open_case=lambda **_: None)
    base = {"eta": 0.006, "seed": 0, "amplitude": 0.05}
    view._add([{**base, "mean": 0.5, "surrogate_spread": float("nan"), "surrogate_separated": 0,
                "reference_spread": 0.9, "reference_separated": 1},
               {**base, "mean": 0.3, "surrogate_spread": 0.01, "surrogate_separated": 0,
                "reference_spread": 0.01, "reference_separated": 0}])
    live.close(timeout=5)
    data = view.source.data
    assert list(data["outcome"]) == ["diverged", "homogeneous"]
    assert data["color"][0] == PhaseView.COLORS["diverged"] != PhaseView.COLORS["homogeneous"]
    assert data["line"][0] == "black" and data["line"][1] == PhaseView.COLORS["homogeneous"]


class QueuedDoc(Document):
    """A session's document without a server: next-tick callbacks wait until `run` is called."""

    def __init__(self):
        super().__init__()
        self.queued, self.delays = [], []

    def add_next_tick_callback(self, callback):
        self.queued.append(callback)
        self.delays.append(0)

    def add_timeout_callback(self, callback, milliseconds):
        self.queued.append(callback)
        self.delays.append(milliseconds)

    def run(self):
        queued, self.queued = self.queued, []
        for callback in queued:
            callback()


def test_batches_offered_while_the_page_is_busy_join_one_update():
    """A slow page gets one update for everything offered meanwhile: the maps show the newest
    frame, the plots every frame (throttled while playing, complete once paused), frames made
    before a reset are dropped, and the next update waits for the browser to have painted the
    last one (its acknowledgement) and for the update pace."""
    import time

    from crane_viz.app.views import CutawayView, LiveDisplay
    from crane_viz.live.controller import ExplorerSettings, LiveRun

    doc = QueuedDoc()
    display = LiveDisplay(doc, MapsView(on_paint=lambda x, y: None), PlotsView(), CutawayView())
    live = display.live = LiveRun(ExplorerSettings(model="coherent-2d", size=32, reference="spectral"),
                                  display.offer, lambda *_: None)
    stale = live.session.step()
    old = live.generation
    live.reset()
    frames = [live.session.step() for _ in range(5)]
    display.offer([stale], old)
    for frame in frames:
        display.offer([frame], live.generation)
    assert len(doc.queued) == 1  # one update waits, however many batches arrive
    doc.run()
    assert display.counter.value == frames[-1].index == 5
    assert list(display.plots.source.data["time"]) == [f.time for f in frames]
    image = display.maps.sources["surrogate"].data["image"][0]
    assert image.dtype == np.uint8 and (image == colour_levels(frames[-1].surrogate.T, 0.0, 1.0)).all()
    assert display.pacer.sent == 1 and display.pacer.shown == 0
    live._playing.set()  # while playing, updates wait for the browser, keep their pace, and the
    display._plotted_at = float("inf")  # plots keep their interval …
    frame = live.session.step()
    display._updated_at = time.monotonic()  # an update just went out
    display.offer([frame], live.generation)
    assert not doc.queued  # not painted yet: the frame waits
    display.pacer.shown = 1  # the browser's acknowledgement
    assert len(doc.queued) == 1
    assert 0.5 * 1000 / live.settings.updates_per_second < doc.delays[-1] <= 1000 / live.settings.updates_per_second
    doc.run()
    assert len(display.plots.source.data["time"]) == 5 and display.counter.value == 6
    live.pause()  # … and catch up when the run pauses
    display.say("paused")
    doc.run()
    assert len(display.plots.source.data["time"]) == 6
    live.close(timeout=5)


def test_3d_meshes_are_made_only_for_updates_that_go_out():
    """With the cutaway showing, a batch offered while the browser has not painted the last update
    is not contoured (its mesh would be replaced before it is sent); the next offer after the
    acknowledgement brings the mesh, and a run paused in between still gets its last frame's."""
    from crane_viz.app.views import CutawayView, LiveDisplay
    from crane_viz.live.controller import ExplorerSettings, LiveRun

    doc = QueuedDoc()
    cutaway = CutawayView()
    display = LiveDisplay(doc, MapsView(on_paint=lambda x, y: None), PlotsView(), cutaway)
    live = display.live = LiveRun(ExplorerSettings(model="untrained small-3d", size=32, reference="none"),
                                  display.offer, lambda *_: None)
    made = []
    meshes = cutaway.meshes
    cutaway.meshes = lambda frame: made.append(frame.index) or meshes(frame)
    cutaway.active = True
    live._playing.set()
    display.offer([live.session.step()], live.generation)
    doc.run()
    assert made == [1] and display.pacer.sent == 1
    display.offer([live.session.step()], live.generation)  # not painted yet: no mesh, no update
    assert made == [1] and not doc.queued
    display.pacer.shown = 1  # painted; still playing, so the update waits for the next offer's mesh
    assert not doc.queued
    display.offer([live.session.step()], live.generation)
    doc.run()
    assert made == [1, 3] and display.counter.value == 3
    display.offer([live.session.step()], live.generation)  # not painted …
    live.pause()  # … and the run stops there
    display.pacer.shown = 2
    doc.run()
    assert made == [1, 3, 4] and display.counter.value == 4
    assert cutaway.views["surrogate"].caption.endswith(f"t = {live.session.current().time:g}")
    live.close(timeout=5)
