"""The explorer's live views: φ maps, metric plots, the 3D cutaway and the export panel."""

from __future__ import annotations

import threading
import time
from dataclasses import replace

import numpy as np
import panel as pn
import torch
from bokeh.models import ColorBar, ColumnDataSource, HoverTool, LinearColorMapper
from bokeh.plotting import figure
from panel.io.document import hold

from ..engines.surrogate import downsample
from ..live.controller import (
    ExportJob,
    FrameTimes,
    LiveRun,
    gui_wording,
    load_note,
    record_run,
)
from .common import MAP_PX, PALETTE, View, later

LEVELS = 256  # colours per palette: a map is sent as one byte per point, its palette index
MAP_SCALES = {"surrogate": (PALETTE, (0.0, 1.0)), "reference": (PALETTE, (0.0, 1.0)),
              "difference": ("Magma256", (0.0, 0.5))}


def colour_levels(img: np.ndarray, low: float, high: float) -> np.ndarray:
    """The palette index (uint8) a 256-colour linear mapper on [low, high] gives each value.

    Sending these instead of float32 values quarters a map's bytes and shows the same colours:
    the browser's mapper on [0, 256] maps level k to colour k; values outside [low, high] take
    the end colours, as they would; NaN (a diverged field, where the explorer stops) the lowest.
    """
    scaled = np.floor((img - low) * (LEVELS / (high - low)))
    return np.clip(np.nan_to_num(scaled, nan=0.0), 0, LEVELS - 1).astype(np.uint8)


class MapsView(View):
    """Surrogate, reference and |Δφ| maps with one shared φ colour scale; click to paint (2D)."""

    def __init__(self, on_paint):
        super().__init__()
        self.sources = {k: ColumnDataSource({"image": [np.zeros((2, 2), np.uint8)], "dw": [1], "dh": [1]})
                        for k in ("surrogate", "reference", "difference")}
        self.figures = {}
        for key, title in (("surrogate", "surrogate φ"), ("reference", "reference φ"), ("difference", "|Δφ|")):
            palette, (low, high) = MAP_SCALES[key]
            fig = figure(title=title, width=MAP_PX, height=MAP_PX, match_aspect=True,
                         tools="tap,pan,reset,save", toolbar_location="below",
                         x_range=(0, 1), y_range=(0, 1))
            fig.image(image="image", x=0, y=0, dw="dw", dh="dh", source=self.sources[key],
                      color_mapper=LinearColorMapper(palette=palette, low=0, high=LEVELS))
            if key != "surrogate":  # one bar for the shared φ scale, one for |Δφ|, in φ units
                fig.add_layout(ColorBar(color_mapper=LinearColorMapper(palette=palette, low=low, high=high),
                                        width=10, label_standoff=4, major_label_text_font_size="8pt"), "right")
            fig.axis.visible = False
            fig.grid.visible = False
            self.figures[key] = fig
        from bokeh.events import Tap
        for key in ("surrogate", "reference"):
            self.figures[key].on_event(Tap, lambda ev: on_paint(ev.x, ev.y))
        self.paint_mode = pn.widgets.RadioButtonGroup(options=["add", "remove"], value="add",
                                                      color="light", width=140)
        self.caption = pn.pane.Markdown("", margin=(0, 10))
        self.slice_axis = pn.widgets.Select(label="3D slice normal", options=["x", "y", "z"], value="z", width=120)
        self.slice_pos = pn.widgets.FloatSlider(label="slice position", start=0, end=1, value=0.5, step=0.01, width=200)

    def update(self, frame, dim):
        self.slice_axis.visible = self.slice_pos.visible = dim == 3
        sur, ref = frame.surrogate, frame.reference
        if dim == 3:
            ax = "xyz".index(self.slice_axis.value)
            sur = np.take(sur, int(self.slice_pos.value * (sur.shape[ax] - 1)), axis=ax)
            if ref is not None:
                ref = np.take(ref, int(self.slice_pos.value * (ref.shape[ax] - 1)), axis=ax)
        self._set("surrogate", sur)
        if ref is not None:
            scale = ref.shape[0] // sur.shape[0]
            ref_c = downsample(torch.tensor(ref)[None], scale)[0].numpy() if scale > 1 else ref
            self._set("reference", ref)
            self._set("difference", np.abs(ref_c - sur))
        self.caption.object = f"**frame {frame.index}**, t = {frame.time:g}"

    def _set(self, key, img):
        n = img.shape[0]
        levels = colour_levels(np.ascontiguousarray(img.T), *MAP_SCALES[key][1])
        self.sources[key].data = {"image": [levels], "dw": [n], "dh": [n]}
        fig = self.figures[key]
        fig.x_range.end = fig.y_range.end = n

    def _layout(self):
        return pn.Column(pn.Row(self.caption, pn.Spacer(), pn.pane.Markdown("click a map to"),
                                self.paint_mode),
                         pn.Row(*self.figures.values()),
                         pn.Row(self.slice_axis, self.slice_pos))


class PlotsView(View):
    """Streaming metric plots: RMSE, δ̄, F/V (with parts), mass drift, log–log F(t)."""

    KEYS = ["time", "rmse", "delta", "surrogate_energy_total", "reference_energy_total",
            "surrogate_energy_interface", "reference_energy_interface", "surrogate_energy_elastic",
            "reference_energy_elastic", "surrogate_mass_drift", "reference_mass_drift"]

    def __init__(self):
        super().__init__()
        self.source = ColumnDataSource({k: [] for k in self.KEYS})
        self.guide = ColumnDataSource({"time": [], "guide": []})
        hover = lambda: HoverTool(tooltips=[("t", "@time{0.0}"), ("value", "$y{0.0000}")])
        self.rmse = self._fig("RMSE and δ̄ (grid units)", hover())
        self.rmse.line("time", "rmse", source=self.source, color="#d62728", legend_label="RMSE")
        self.rmse.line("time", "delta", source=self.source, color="#9467bd", legend_label="δ̄")
        self.energy = self._fig("F/V", hover())
        for who, color in (("surrogate", "#d62728"), ("reference", "#1f77b4")):
            self.energy.line("time", f"{who}_energy_total", source=self.source, color=color, legend_label=f"{who} total")
            for part, dash in (("interface", "dashed"), ("elastic", "dotted")):
                self.energy.line("time", f"{who}_energy_{part}", source=self.source, color=color,
                                 line_dash=dash, legend_label=f"{who} {part}")
        self.drift = self._fig("mass drift ⟨φ⟩ − ⟨φ₀⟩", hover())
        self.drift.line("time", "surrogate_mass_drift", source=self.source, color="#d62728", legend_label="surrogate")
        self.drift.line("time", "reference_mass_drift", source=self.source, color="#1f77b4", legend_label="reference")
        self.loglog = self._fig("F/V, log–log, with t^(−1/3)", hover(), log=True)
        self.loglog.line("time", "surrogate_energy_total", source=self.source, color="#d62728", legend_label="surrogate")
        self.loglog.line("time", "reference_energy_total", source=self.source, color="#1f77b4", legend_label="reference")
        self.loglog.line("time", "guide", source=self.guide, color="black", line_dash="dashed", legend_label="∝ t^(−1/3)")
        for fig in (self.rmse, self.energy, self.drift, self.loglog):
            fig.legend.label_text_font_size = "8pt"
            fig.legend.click_policy = "hide"
            fig.add_layout(fig.legend[0], "right")  # beside the plot: never over the newest points

    @staticmethod
    def _fig(title, hover, log=False):
        kw = dict(x_axis_type="log", y_axis_type="log") if log else {}
        fig = figure(title=title, width=560, height=230, tools=[hover, "pan,wheel_zoom,reset,save"], **kw)
        fig.xaxis.axis_label = "t"
        return fig

    def clear(self):
        self.source.data = {k: [] for k in self.KEYS}
        self.guide.data = {"time": [], "guide": []}

    def add(self, frames):
        rows = [f.metrics for f in frames]
        self.source.stream({k: [r.get(k, np.nan) for r in rows] for k in self.KEYS})
        t = self.source.data["time"]
        f = self.source.data["reference_energy_total"] if not np.isnan(rows[-1].get("reference_energy_total", np.nan)) \
            else self.source.data["surrogate_energy_total"]
        if len(t) >= 2 and t[0] > 0:
            self.guide.data = {"time": [t[0], t[-1]], "guide": [f[0], f[0] * (t[-1] / t[0]) ** (-1 / 3)]}

    def _layout(self):
        return pn.GridBox(self.rmse, self.energy, self.drift, self.loglog, ncols=2)


class CutawayView(View):
    """The φ ≥ 0.5 cutaways of surrogate and reference (3D), drawn by the browser, turning together.

    `meshes` (any thread, the heavy part) contours a frame; `show` (event loop) sends the meshes.
    While the tab is hidden (`active` False) no meshes are made; opening it shows the current frame.
    """

    def __init__(self):
        super().__init__()
        from .cutaway_gl import LiveCutaway

        self.views = {k: LiveCutaway(width=430, height=380, caption=k) for k in ("surrogate", "reference")}
        self.active = False

    def meshes(self, frame) -> dict:
        """Each engine's cutaway mesh arrays (heavy: call it off the event loop)."""
        from ..io.render3d import cutaway_arrays

        return {"time": frame.time, **{key: cutaway_arrays(field) for key, field in
                                       (("surrogate", frame.surrogate), ("reference", frame.reference))
                                       if field is not None}}

    def show(self, meshes: dict) -> None:
        """Put meshes on the page (call it on the session's event loop)."""
        for key, view in self.views.items():
            view.visible = key in meshes
            if key in meshes:
                view.show(meshes[key], f"{key} — t = {meshes['time']:g}")

    def update(self, frame):
        self.show(self.meshes(frame))

    def _layout(self):
        return pn.Column(pn.pane.Markdown("Drag to turn both views, scroll to zoom — also while the run plays.",
                                          margin=(0, 10)),
                         pn.Row(*self.views.values()))


class LiveDisplay:
    """Puts a live run's frames on the page at the pace the browser paints them.

    The worker thread `offer`s each batch; one update at a time goes out, when the browser has
    painted the previous one (the `Pacer` acknowledges it), and no sooner than
    1/`updates_per_second` after it. Batches that arrive meanwhile join the next update: the maps
    show the newest frame, the plots get every frame's metrics (older frames' fields are dropped
    here; the run's recorder keeps them for exports). A slow browser or a busy core thus lowers
    the update rate, never the simulation's, and no backlog builds up on either side of the
    websocket. The metric plots, which cost the browser far more than the maps (bench_app),
    redraw at most every `plot_interval` seconds while playing, and at once when the run pauses.
    """

    plot_interval = 0.5
    ack_timeout = 2.0  # seconds without the browser's acknowledgement before updating anyway

    def __init__(self, doc, maps: MapsView, plots: PlotsView, cutaway: CutawayView):
        from .pacer import Pacer

        self.doc, self.maps, self.plots, self.cutaway = doc, maps, plots, cutaway
        self.live: LiveRun | None = None  # set once the run exists (it reports through this display)
        self.status = pn.pane.Markdown("", sizing_mode="stretch_width")
        self.counter = pn.indicators.Number(label="frame", value=0, font_size="20pt", title_size="10pt")
        self.pacer = Pacer()
        self.pacer.param.watch(lambda _: self._schedule(), "shown")
        self.times = FrameTimes()
        self._lock = threading.Lock()
        self._frames: list = []  # offered since the last update (fields only in the newest)
        self._generation = None
        self._meshes = None  # the newest cutaway meshes offered
        self._scheduled = False
        self._unplotted: list = []  # frames shown in the maps, not yet in the plots
        self._plotted_at = 0.0
        self._updated_at = 0.0

    def offer(self, frames, generation) -> None:
        """Worker thread: queue a batch. 3D cutaways are contoured here, off the event loop, and
        only while the browser is ready for them: a mesh made while an update waits would be
        replaced before it is sent."""
        with self._lock:
            ready = self._painted()
        meshes = self.cutaway.meshes(frames[-1]) if self._wants_meshes() and ready else None
        with self._lock:
            if generation != self._generation:  # a reset: what was pending belongs to the old run
                self._frames, self._meshes, self._generation = [], None, generation
            stale = self._frames[-1:] + list(frames[:-1])  # only the newest frame keeps its fields
            self._frames[-1:] = [replace(f, surrogate=None, reference=None) for f in stale]
            self._frames.append(frames[-1])
            self._meshes = meshes or self._meshes
        self._schedule()

    def _painted(self) -> bool:
        """The browser has painted the last update (or has not answered for `ack_timeout`)."""
        return self.pacer.shown >= self.pacer.sent or time.monotonic() - self._updated_at > self.ack_timeout

    def _wants_meshes(self) -> bool:
        return self.live.info["dim"] == 3 and self.cutaway.active

    def _schedule(self) -> None:
        """Any thread: plan the next update if frames wait and the browser has shown the last
        (with a 3D cutaway showing and the run playing, once the next offer has brought its mesh)."""
        with self._lock:
            missing_mesh = self._meshes is None and self._wants_meshes() and self.live.playing
            if self._scheduled or not self._frames or not self._painted() or missing_mesh:
                return
            self._scheduled = True
            wait = self._updated_at + 1 / self.live.settings.updates_per_second - time.monotonic()
        later(self.doc, self._update, wait if self.live.playing else 0.0)

    def say(self, message: str) -> None:
        """Any thread: show a status or warning line (and plot what is not plotted yet)."""
        def show():
            self.status.object = message
            self.flush_plots()
        later(self.doc, show)

    def clear(self) -> None:
        self.plots.clear()
        self.times.clear()
        self._unplotted.clear()
        self.counter.value = 0

    def flush_plots(self) -> None:
        """Event loop: put the frames not yet plotted into the plots."""
        if self._unplotted:
            self.plots.add(self._unplotted)
            self._unplotted = []
        self._plotted_at = time.monotonic()

    def _update(self) -> None:
        with self._lock:
            frames, meshes, generation = self._frames, self._meshes, self._generation
            self._frames, self._meshes, self._scheduled = [], None, False
            self._updated_at = time.monotonic()
        if not frames or generation != self.live.generation:  # made before a reset
            return
        if meshes is None and self._wants_meshes():  # paused before a mesh came: make it here
            meshes = self.cutaway.meshes(frames[-1])
        with hold(self.doc):
            self.show(frames, meshes)
            self.pacer.sent += 1  # last in the message: the browser acknowledges after painting it

    def show(self, frames, meshes=None) -> None:
        """Put frames on the page now (event loop): the newest in the maps, all in the plots."""
        if meshes:
            self.cutaway.show(meshes)
        last = frames[-1]
        self.maps.update(last, self.live.info["dim"])
        self._unplotted.extend(frames)
        if not self.live.playing or time.monotonic() - self._plotted_at >= self.plot_interval:
            self.flush_plots()
        self.counter.value = last.index
        for frame in frames[:-1]:
            self.times.add(frame.metrics)
        m = self.times.add(last.metrics)  # rolling medians, robust to one slow frame
        ratio = m["reference_ms"] / m["surrogate_ms"] if m["surrogate_ms"] > 0 else float("nan")
        ref_text = "" if np.isnan(m["reference_ms"]) else \
            f" · reference {m['reference_ms']:.0f} ms/frame · reference ÷ surrogate {ratio:.2f}"
        busy = load_note()
        self.status.object = (f"frame {last.index} · t = {last.time:g} · surrogate {m['surrogate_ms']:.0f} "
                              f"ms/frame{ref_text} (medians of the last {self.times.window})"
                              f"{' · ' + busy if busy else ''} · {self.live.describe()}")


class ExportView(View):
    """Snapshot, movie, HDF5 and .vti downloads, written only into this tab's export folder."""

    def __init__(self, live: LiveRun, doc, style):
        super().__init__()
        self.live, self.doc, self.style = live, doc, style
        self.job = ExportJob()
        self.snapshot = pn.widgets.FileDownload(callback=self._quick("png"), filename="crane_viz_snapshot.png",
                                                label="Snapshot (PNG)", color="primary", width=150)
        self.data = pn.widgets.FileDownload(callback=self._quick("h5"), filename="crane_viz_run.h5",
                                            label="Data (HDF5)", width=150)
        self.vti = pn.widgets.FileDownload(callback=self._quick("vti"), filename="crane_viz_frame.vti",
                                           label="Frame (.vti, ParaView)", width=180)
        self.fmt = pn.widgets.RadioButtonGroup(options=["mp4", "gif"], value="mp4", width=110)
        self.source = pn.widgets.Select(options=["run so far", "new run"], value="run so far", width=130)
        self.frames = pn.widgets.IntInput(label="new run frames", value=100, start=2, end=2000, width=120)
        self.fps = pn.widgets.IntInput(label="fps", value=12, start=1, end=60, width=70)
        self.make = pn.widgets.Button(label="Make movie", color="success", width=120)
        self.stop = pn.widgets.Button(label="Cancel", width=80, disabled=True)
        self.progress = pn.indicators.Progress(value=0, max=100, width=240, visible=False)
        self.message = pn.pane.Markdown("", margin=(0, 10))
        self.result = pn.widgets.FileDownload(label="Download movie", color="success", visible=False,
                                              width=200)
        self.make.on_click(self._start)
        self.stop.on_click(lambda _: self.job.cancel())
        self.frames.visible = False  # only a new run needs a length
        self.source.param.watch(lambda e: setattr(self.frames, "visible", e.new == "new run"), "value")

    def _quick(self, fmt):
        def write():
            traj = self.live.recorder.trajectory()
            index = traj.frames - 1
            stem = f"crane_viz_{self.live.settings.model}_frame{index}"
            return str(self.job.write(traj, stem, fmt, style=self.style(), frame=-1))
        return write

    def _start(self, _):
        fmt, style, fps = self.fmt.value, self.style(), self.fps.value
        if self.source.value == "new run":
            n, attrs = self.frames.value, self.live.export_attrs()
            session = self.live.build_session()
            make = lambda progress, cancel: record_run(session, n, attrs, progress=progress, cancel=cancel)
        else:
            traj = self.live.recorder.trajectory()
            make = lambda progress, cancel: traj
        stem = f"crane_viz_{self.live.settings.model}_movie"
        started = self.job.start(make, stem, fmt, style=style, fps=fps,
                                 on_progress=self._on_progress, on_done=self._on_done)
        if started:
            self.make.disabled, self.stop.disabled = True, False
            self.result.visible, self.progress.visible, self.progress.value = False, True, 0
            self.message.object = "preparing…"

    def _on_progress(self, done, total, stage):
        def show():
            self.progress.value = int(100 * done / max(total, 1))
            self.message.object = f"{stage} {done}/{total}"
        later(self.doc, show)

    def _on_done(self, path, error):
        def show():
            self.make.disabled, self.stop.disabled, self.progress.visible = False, True, False
            if error:
                self.message.object = f"⚠ {gui_wording(error)}"
                return
            self.message.object = f"ready: {path.name} ({path.stat().st_size / 1e6:.1f} MB)"
            self.result.filename, self.result.file, self.result.visible = path.name, str(path), True
        later(self.doc, show)

    def _layout(self):
        return pn.Column(
            pn.pane.Markdown("**Export** — snapshots and movies use the view shown above "
                             "(2D maps, 3D slice, or the 3D cutaway tab)", margin=(0, 10)),
            pn.Row(self.snapshot, self.data, self.vti),
            pn.Row(self.fmt, self.source, self.frames, self.fps),
            pn.Row(self.make, self.stop, self.progress, self.message),
            self.result)
