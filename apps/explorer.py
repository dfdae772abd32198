"""crane_viz explorer: the CRNN surrogate live beside a reference solver.

Serve with `panel serve apps/explorer.py`. The app is a thin view over `crane_viz.live`: every
control is declared (with bounds) in `ExplorerSettings`, the simulation runs in `LiveRun`'s worker
thread, and this file only turns frames into pictures and plots. The Training tab is a view over
`crane_viz.trainjob`: jobs run as separate processes and the tab reads their folders.
"""

from __future__ import annotations

import io
import os
import tempfile
import threading
from functools import partial
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import panel as pn
import torch
from bokeh.models import ColorBar, ColumnDataSource, HoverTool, LinearColorMapper
from bokeh.plotting import figure
from panel.io.state import set_curdoc

from crane_viz.checkpoint import list_checkpoints
from crane_viz.errors import CraneVizError
from crane_viz.export import FrameStyle
from crane_viz.initial import load_field
from crane_viz.jobs import BackgroundJob
from crane_viz.live import (
    APP_THREADS,
    MAX_SIDE,
    SIZES,
    ExplorerSettings,
    ExportJob,
    FrameTimes,
    LiveRun,
    apply_each,
    gui_wording,
    load_note,
    may_train,
    model_choices,
    record_run,
)
from crane_viz.metrics import spinodal_line
from crane_viz.phase import SweepJob, outcome
from crane_viz.presets import get_preset
from crane_viz.settings import SweepSettings
from crane_viz.surrogate import downsample
from crane_viz.trainjob import Project, TrainJobSettings, describe_estimate, duration, estimate

pn.extension("vtk", notifications=True)

MAP_PX = 300
PALETTE = "Viridis256"
URL_KEYS = ["model", "mean", "eta_percent", "amplitude", "cells", "size", "seed", "init_kind", "reference"]


def later(doc, callback) -> None:
    """Run `callback` on the session's event loop with Panel's current document set to it.

    Models made or updated without it resolve their stylesheets to Panel's CDN (its fallback
    when no document is current), which an offline classroom cannot reach (#16 item 10).
    """
    def run():
        with set_curdoc(doc):
            callback()
    doc.add_next_tick_callback(run)


class MapsView:
    """Surrogate, reference and |Δφ| maps with one shared φ colour scale; click to paint (2D)."""

    def __init__(self, on_paint):
        self.sources = {k: ColumnDataSource({"image": [np.zeros((2, 2))], "dw": [1], "dh": [1]})
                        for k in ("surrogate", "reference", "difference")}
        phi_map = LinearColorMapper(palette=PALETTE, low=0.0, high=1.0)
        diff_map = LinearColorMapper(palette="Magma256", low=0.0, high=0.5)
        self.figures = {}
        for key, mapper, title in (("surrogate", phi_map, "surrogate φ"),
                                   ("reference", phi_map, "reference φ"),
                                   ("difference", diff_map, "|Δφ|")):
            fig = figure(title=title, width=MAP_PX, height=MAP_PX, match_aspect=True,
                         tools="tap,pan,reset,save", toolbar_location="below",
                         x_range=(0, 1), y_range=(0, 1))
            fig.image(image="image", x=0, y=0, dw="dw", dh="dh", color_mapper=mapper,
                      source=self.sources[key])
            if key != "surrogate":  # one bar for the shared φ scale, one for |Δφ|
                fig.add_layout(ColorBar(color_mapper=mapper, width=10, label_standoff=4,
                                        major_label_text_font_size="8pt"), "right")
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
        self.sources[key].data = {"image": [np.ascontiguousarray(img.T)], "dw": [n], "dh": [n]}
        fig = self.figures[key]
        fig.x_range.end = fig.y_range.end = n

    def panel(self):
        return pn.Column(pn.Row(self.caption, pn.Spacer(), pn.pane.Markdown("click a map to"),
                                self.paint_mode),
                         pn.Row(*self.figures.values()),
                         pn.Row(self.slice_axis, self.slice_pos))


class PlotsView:
    """Streaming metric plots: RMSE, δ̄, F/V (with parts), mass drift, log–log F(t)."""

    KEYS = ["time", "rmse", "delta", "surrogate_energy_total", "reference_energy_total",
            "surrogate_energy_interface", "reference_energy_interface", "surrogate_energy_elastic",
            "reference_energy_elastic", "surrogate_mass_drift", "reference_mass_drift"]

    def __init__(self):
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

    def panel(self):
        return pn.GridBox(self.rmse, self.energy, self.drift, self.loglog, ncols=2)


class CutawayView:
    """Server-rendered PNGs of the φ ≥ 0.5 cutaway, surrogate and reference side by side (3D)."""

    def __init__(self):
        self.images = {k: pn.pane.PNG(None, width=380, height=340) for k in ("surrogate", "reference")}
        self._renderers = {}
        self.interactive = pn.Column()

    def show_interactive(self, frame):
        """A rotatable/zoomable vtk.js view of the surrogate's cutaway (built on request, when paused)."""
        from crane_viz.render3d import CutawayRenderer

        renderer = CutawayRenderer(window_size=(600, 500), title="surrogate")
        renderer.draw(frame.surrogate, f"t = {frame.time:g}")
        self.interactive[:] = [pn.pane.VTK(renderer.plotter.ren_win, width=600, height=500)]

    def render(self, frame) -> dict:
        """PNG bytes of each engine's cutaway (heavy: call it off the event loop)."""
        from crane_viz.render3d import CutawayRenderer

        pngs = {}
        for key, field in (("surrogate", frame.surrogate), ("reference", frame.reference)):
            if field is None:
                continue
            # one off-screen plotter per thread: an OpenGL context must stay on the thread that made it
            slot = (key, threading.get_ident())
            if slot not in self._renderers:
                self._renderers[slot] = CutawayRenderer(window_size=(380, 340), title=key)
            buf = io.BytesIO()
            iio.imwrite(buf, self._renderers[slot].render(field, f"t = {frame.time:g}"), extension=".png")
            pngs[key] = buf.getvalue()
        return pngs

    def show(self, pngs: dict) -> None:
        """Put rendered PNGs on the page (call it on the session's event loop)."""
        for key, pane in self.images.items():
            pane.object = pngs.get(key)

    def update(self, frame):
        self.show(self.render(frame))

    def panel(self):
        return pn.Column(pn.Row(*self.images.values()), self.interactive)


class ExportView:
    """Snapshot, movie, HDF5 and .vti downloads, written only into this tab's export folder."""

    def __init__(self, live: LiveRun, doc, style):
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

    def panel(self):
        return pn.Column(
            pn.pane.Markdown("**Export** — snapshots and movies use the view shown above "
                             "(2D maps, 3D slice, or the 3D cutaway tab)", margin=(0, 10)),
            pn.Row(self.snapshot, self.data, self.vti),
            pn.Row(self.fmt, self.source, self.frames, self.fps),
            pn.Row(self.make, self.stop, self.progress, self.message),
            self.result)


class PhaseView:
    """The (⟨φ⟩, η) plane: analytic spinodal line, sweep points as they finish, click to open one."""

    COLORS = {"separated": "#e6550d", "homogeneous": "#3182bd", "diverged": "#7f7f7f"}

    def __init__(self, live: LiveRun, doc, folder, open_case):
        self.live, self.doc, self.open_case = live, doc, open_case
        self.settings = SweepSettings(points=60, size=64, horizon=100, batch=30)
        self.job = SweepJob(folder)
        self.line = ColumnDataSource({"mean": [], "eta": []})
        self.source = ColumnDataSource(self._empty())
        fig = figure(title="(⟨φ⟩, η) phase diagram", width=620, height=480, x_range=(0, 1), y_range=(0, 1.6),
                     tools="tap,pan,wheel_zoom,reset,save", toolbar_location="above")
        fig.xaxis.axis_label, fig.yaxis.axis_label = "⟨φ⟩", "η (%)"
        fig.line("mean", "eta", source=self.line, color="black", line_width=2,
                 legend_label="analytic spinodal η_max(⟨φ⟩)")
        points = fig.scatter("mean", "eta", source=self.source, size=11, fill_color="color",
                             line_color="line", line_width=2, legend_field="outcome")
        fig.add_tools(HoverTool(renderers=[points], tooltips="""
            <div><img src="@thumbnail" width="64" height="64" style="image-rendering: pixelated"></div>
            <div>⟨φ⟩ = @mean{0.000}, η = @eta{0.000} %</div>
            <div>surrogate: @outcome (spread @spread{0.000})</div><div>@reference</div>"""))
        fig.legend.label_text_font_size = "8pt"
        fig.legend.orientation = "horizontal"
        fig.add_layout(fig.legend[0], "below")  # keep the frame free for the points
        self.figure = fig
        self.source.selected.on_change("indices", self._on_select)
        self.run = pn.widgets.Button(label="Run sweep", color="success", width=120)
        self.stop = pn.widgets.Button(label="Cancel", width=80, disabled=True)
        self.progress = pn.indicators.Progress(value=0, max=100, width=220, visible=False)
        self.message = pn.pane.Markdown("Run a sweep with the selected η-conditioned model; click a "
                                        "point to open that case in the 2D maps tab.", margin=(0, 10))
        self.run.on_click(self._start)
        self.stop.on_click(lambda _: self.job.cancel())
        self.controls = pn.Param(self.settings, show_name=False, parameters=[
            "points", "layout", "eta_max_percent", "amplitude", "cells", "seed", "horizon", "size",
            "batch", "reference"], widgets={k: pn.widgets.IntInput for k in ("points", "horizon", "size",
                                                                            "batch", "seed", "cells")})
        self.update_line()

    @staticmethod
    def _empty():
        return {k: [] for k in ("mean", "eta", "color", "line", "outcome", "spread", "reference",
                                "thumbnail", "seed", "amplitude")}

    def update_line(self):
        means, eta_max = spinodal_line(self.live.info["preset"])
        self.line.data = {"mean": list(means), "eta": list(100 * eta_max)}

    def _start(self, _):
        info = self.live.info
        model = self.live.settings.model
        if info["dim"] != 2 or not info["conditioned"] or info["training"] is None:
            self.message.object = "⚠ pick a trained η-conditioned 2D model (e.g. coherent-2d) first"
            return
        try:
            self.settings.check()
        except CraneVizError as exc:
            self.message.object = f"⚠ {gui_wording(exc)}"
            return
        self.source.data = self._empty()
        self.rows = []
        started = self.job.start(self.settings, model, on_rows=self._on_rows,
                                 on_progress=self._on_progress, on_done=self._on_done)
        if started:
            self.run.disabled, self.stop.disabled, self.progress.visible = True, False, True
            self.message.object = "running…"

    def _on_rows(self, rows):
        later(self.doc, partial(self._add, rows))

    def _add(self, rows):
        self.rows.extend(rows)
        has_ref = "reference_separated" in rows[0]
        kinds = [outcome(r) for r in rows]
        self.source.stream({
            "mean": [r["mean"] for r in rows], "eta": [100 * r["eta"] for r in rows],
            "color": [self.COLORS[k] for k in kinds],
            "line": ["black" if has_ref and outcome(r, "reference") != k else self.COLORS[k]
                     for r, k in zip(rows, kinds)],
            "outcome": kinds,
            "spread": [r["surrogate_spread"] for r in rows],
            "reference": [f"reference: {outcome(r, 'reference')}" if has_ref else "" for r in rows],
            "thumbnail": [r.get("thumbnail", "") for r in rows],
            "seed": [r["seed"] for r in rows], "amplitude": [r["amplitude"] for r in rows]})

    def _on_progress(self, done, total):
        later(self.doc, lambda: setattr(self.progress, "value", int(100 * done / max(total, 1))))

    def _on_done(self, summary, error):
        def show():
            self.run.disabled, self.stop.disabled, self.progress.visible = False, True, False
            if error:
                self.message.object = f"⚠ {gui_wording(error)}"
                return
            rates = ", ".join(f"{k} {v:.0f} points/min" for k, v in summary.get("points_per_minute", {}).items())
            text = f"{summary['points']} points, {summary['surrogate_separated']} separated ({rates})"
            if "agreement" in summary:
                text += f"; agreement with {self.settings.reference}: {100 * summary['agreement']:.1f} %"
            self.message.object = text
        later(self.doc, show)

    def _on_select(self, attr, old, new):
        if not new:
            return
        i = new[0]
        data = self.source.data
        self.open_case(mean=data["mean"][i], eta_percent=data["eta"][i], seed=int(data["seed"][i]),
                       amplitude=data["amplitude"][i], cells=self.settings.cells, size=self.settings.size)
        self.source.selected.indices = []

    def panel(self):
        return pn.Row(pn.Column(self.figure, pn.Row(self.run, self.stop, self.progress), self.message),
                      pn.Column(pn.pane.Markdown("**Sweep settings**"), self.controls, width=300))


class TrainingView:
    """Training tab: a job's settings with a measured estimate; start, cancel and resume; its loss
    curve, curriculum horizon, progress with ETA and validation previews, read from the job's
    folder every second (the job is a separate process: it outlives this tab and the server)."""

    DATA = ["checkpoint_name", "dataset", "preset", "sequences", "frames", "size", "mean_min", "mean_max",
            "eta_min_percent", "eta_max_percent", "data_seed"]
    MODEL = ["model", "init", "epochs", "ramp", "lr", "batch", "grad_weight", "energy_weight", "noise",
             "window", "grid_scale", "clip_norm", "seed", "preview_every", "threads"]
    INTS = ["sequences", "frames", "size", "data_seed", "epochs", "ramp", "batch", "window", "grid_scale",
            "seed", "preview_every", "threads"]

    def __init__(self, doc, on_models_changed):
        self.doc, self.on_models_changed = doc, on_models_changed
        self.project = Project()
        self.settings = TrainJobSettings(checkpoint_name=self._free_name())
        if pn.state.location is not None:  # paths (dataset, init) never come from a link
            shared = [k for k in self.DATA + self.MODEL if k not in ("dataset", "init")]
            pn.state.location.sync(self.settings, {k: f"train_{k}" for k in shared},
                                   on_error=lambda values: apply_each(self.settings, values))
        widgets = {k: pn.widgets.IntInput for k in self.INTS}
        widgets["init"] = {"type": pn.widgets.Select, "options": ["", *list_checkpoints()]}
        self.data_controls = pn.Param(self.settings, parameters=self.DATA, show_name=False, widgets=widgets)
        self.model_controls = pn.Param(self.settings, parameters=self.MODEL, show_name=False, widgets=widgets)
        self.estimate = pn.pane.Markdown("", margin=(0, 10))
        self.estimator, self._estimate_again = BackgroundJob(), False
        self.start = pn.widgets.Button(label="Start training", color="success", width=130)
        self.cancel = pn.widgets.Button(label="Cancel training", width=130, disabled=True)
        self.resume = pn.widgets.Button(label="Resume training", color="primary", width=130, disabled=True)
        self.jobs = pn.widgets.Select(label="Job", options={}, width=520)
        self.state = pn.pane.Markdown("No training job yet in " + str(self.project.root), margin=(0, 10))
        self.progress = pn.indicators.Progress(value=0, max=1000, width=520)
        self.failure = pn.pane.Alert("", alert_type="danger", visible=False)  # the shown job failed
        # why Start, Cancel or Resume was refused; the 1-second refresh leaves it alone
        self.refused = pn.pane.Alert("", alert_type="danger", visible=False, css_classes=["refused"])
        self.loss = ColumnDataSource({"epoch": [], "train": [], "val": [], "horizon": []})
        fig = figure(title="loss per epoch", width=520, height=300, y_axis_type="log",
                     tools="pan,wheel_zoom,reset,save", toolbar_location="above", css_classes=["loss-plot"])
        fig.xaxis.axis_label, fig.yaxis.axis_label = "epoch", "loss"
        fig.line("epoch", "train", source=self.loss, color="#1f77b4", line_width=2, legend_label="train")
        fig.line("epoch", "val", source=self.loss, color="#ff7f0e", line_width=2, legend_label="validation rollout")
        fig.add_tools(HoverTool(tooltips=[("epoch", "@epoch"), ("train", "@train{0.000e}"),
                                          ("validation", "@val{0.000e}"), ("rollout frames", "@horizon")]))
        fig.legend.location = "bottom_right"  # train loss climbs as the free rollout lengthens
        self.figure = fig
        self.preview = pn.pane.PNG(None, width=560, visible=False)
        self._shown = {"job": None, "rows": -1, "preview": None, "models": tuple(list_checkpoints())}
        self.start.on_click(self._start)
        self.cancel.on_click(lambda _: self._act(self.project.cancel))
        self.resume.on_click(lambda _: self._act(self.project.resume))
        self.jobs.param.watch(lambda _: self.refresh(), "value")
        self.settings.param.watch(self._preset_defaults, "preset")
        costly = [k for k in self.DATA + self.MODEL if k not in ("checkpoint_name", "preview_every", "seed", "data_seed")]
        self.settings.param.watch(lambda _: self.update_estimate(), costly)  # what changes the cost
        self.opened = False  # no estimate is timed before the tab is opened (never while a page builds)
        self.refresh()

    def open(self):
        """The tab was shown: time the estimate now, and again whenever a costly setting changes."""
        if not self.opened:
            self.opened = True
            self.update_estimate()

    def _free_name(self) -> str:
        taken = set(list_checkpoints()) | {j.name for j in self.project.jobs()}
        return next(f"my-model-{i}" for i in range(1, 10_000) if f"my-model-{i}" not in taken)

    def _preset_defaults(self, event):
        """A 3D preset has no η channel in its models: switch model and η range with it."""
        three_d = get_preset(event.new).dim == 3
        self.settings.param.update(model="small-3d" if three_d else "small-2d",
                                   eta_max_percent=0.0 if three_d else 1.2, eta_min_percent=0.0)

    def update_estimate(self):
        """Time a few solver and training steps in the background; the latest settings win."""
        if not self.opened:
            return
        try:
            settings = TrainJobSettings(**self.settings.describe())
        except (CraneVizError, ValueError) as exc:
            self.estimate.object = f"⚠ {exc}"
            return

        def done(est, error):
            text = f"⚠ {gui_wording(error)}" if error else f"Estimate: {describe_estimate(est)}"
            later(self.doc, partial(setattr, self.estimate, "object", text))
            if self._estimate_again:
                self._estimate_again = False
                later(self.doc, self.update_estimate)
        if not self.estimator.launch(lambda _cancel: estimate(settings), done, name="estimate"):
            self._estimate_again = True
        else:
            self.estimate.object = "Estimate: timing a few steps…"

    def _start(self, _):
        self.refused.visible = False
        try:
            job = self.project.start(TrainJobSettings(**self.settings.describe()))
        except (CraneVizError, ValueError) as exc:
            self.refused.object, self.refused.visible = gui_wording(exc), True
            return
        self.refresh()
        self.jobs.value = job.id
        self.settings.checkpoint_name = self._free_name()

    def _act(self, action):
        if not self.jobs.value:
            return
        self.refused.visible = False
        try:
            action(self.jobs.value)
        except (CraneVizError, ValueError) as exc:
            self.refused.object, self.refused.visible = gui_wording(exc), True
            return
        self.refresh()

    def refresh(self):
        """Read the project from disk: job list, the shown job's state, loss, preview, new models."""
        jobs = self.project.jobs()
        statuses = {j.id: j.status() for j in jobs}
        options = {s.summary(): s.id for s in statuses.values()}
        if options != self.jobs.options:
            self.jobs.options = options
        if self.jobs.value not in statuses and statuses:
            self.jobs.value = next((i for i, s in statuses.items() if s.active), jobs[0].id)
            return  # the watcher on value refreshes again
        busy = any(s.active for s in statuses.values())
        self.start.disabled = busy
        status = statuses.get(self.jobs.value)
        if status is not None:
            self._show(next(j for j in jobs if j.id == status.id), status)
        self.cancel.disabled = status is None or not status.active
        self.resume.disabled = busy or status is None or not status.resumable
        models = tuple(list_checkpoints())
        if models != self._shown["models"]:
            self._shown["models"] = models
            self.on_models_changed()

    def _show(self, job, status):
        info = status.info
        text = f"**{status.settings.get('checkpoint_name')}** · {status.state}"
        if info.get("phase") == "generating" and status.active:
            text += f" · generating data {info.get('generated', 0)}/{info.get('sequences', '?')}"
            self.progress.value = int(1000 * info.get("generated", 0) / max(info.get("sequences", 1), 1))
        elif "epochs" in info:
            batch = info.get("batch", 0) / max(info.get("batches", 1), 1) if status.active else 0
            text += f" · epoch {info.get('epoch', 0)}/{info['epochs']}"
            if "horizon" in info:
                text += f" · curriculum: {info['horizon']} free rollout frames"
            if status.active and info.get("eta_s") is not None:
                text += f" · ETA {duration(info['eta_s'])}"
            self.progress.value = int(1000 * min(1.0, (info.get("epoch", 0) + batch) / info["epochs"]))
        if status.state == "finished":
            text += f" · checkpoint `{Path(info.get('checkpoint', '')).name}` added to the model list"
        self.state.object = text
        self.failure.visible = status.state == "failed"
        if status.state == "failed":
            self.failure.object = f"**The job failed**\n\n```\n{status.reason}\n```"
        rows = job.log()
        if job.id != self._shown["job"] or len(rows) != self._shown["rows"]:
            self.loss.data = {"epoch": [r["epoch"] for r in rows], "train": [r["train_loss"] for r in rows],
                              "val": [r["val_loss"] for r in rows], "horizon": [r["horizon"] for r in rows]}
            self._shown["rows"] = len(rows)
        preview = (job.id, info.get("preview_epoch"))
        if preview != self._shown["preview"] or job.id != self._shown["job"]:
            self._shown["preview"] = preview
            has = job.preview.is_file()
            self.preview.object = job.preview.read_bytes() if has else None
            self.preview.visible = has
        self._shown["job"] = job.id

    def panel(self):
        settings = pn.Column(pn.Card(self.data_controls, title="Data", collapsed=False, width=330),
                             pn.Card(self.model_controls, title="Model and curriculum", collapsed=True, width=330))
        watch = pn.Column(self.jobs, self.state, self.progress, self.failure, self.figure,
                          pn.pane.Markdown("Validation rollout preview (reference above the model's own "
                                           "rollout from the first frame):", margin=(0, 10)), self.preview)
        return pn.Row(pn.Column(settings, self.estimate, pn.Row(self.start, self.cancel, self.resume), self.refused,
                                width=350),
                      watch)


def create_app():
    settings = ExplorerSettings()
    url_notice = pn.pane.Alert("", alert_type="warning", visible=False, sizing_mode="stretch_width")

    def refused_from_url(values):
        refused = apply_each(settings, values)
        if refused:
            url_notice.object = (f"This link's {', '.join(refused)} could not be used (not a known model "
                                 "or outside the bounds); the defaults are shown instead.")
            url_notice.visible = True
    if pn.state.location is not None:
        pn.state.location.sync(settings, {k: k for k in URL_KEYS}, on_error=refused_from_url)
    doc = pn.state.curdoc
    status = pn.pane.Markdown("", sizing_mode="stretch_width")
    maps, plots, cutaway = MapsView(on_paint=lambda x, y: paint(x, y)), PlotsView(), CutawayView()
    counter = pn.indicators.Number(label="frame", value=0, font_size="20pt", title_size="10pt")

    def show(frames, generation, pngs=None):
        if generation != live.generation:  # computed before a reset: its plots were cleared
            return
        if pngs:
            cutaway.show(pngs)
        last = frames[-1]
        dim = live.info["dim"]
        maps.update(last, dim)
        plots.add(frames)
        counter.value = last.index
        for frame in frames[:-1]:
            times.add(frame.metrics)
        m = times.add(last.metrics)  # rolling medians, robust to one slow frame
        ratio = m["reference_ms"] / m["surrogate_ms"] if m["surrogate_ms"] > 0 else float("nan")
        ref_text = "" if np.isnan(m["reference_ms"]) else \
            f" · reference {m['reference_ms']:.0f} ms/frame · reference ÷ surrogate {ratio:.2f}"
        busy = load_note()
        status.object = (f"frame {last.index} · t = {last.time:g} · surrogate {m['surrogate_ms']:.0f} "
                         f"ms/frame{ref_text} (medians of the last {times.window}){' · ' + busy if busy else ''}"
                         f" · {live.describe()}")

    times = FrameTimes()

    def on_frames(frames, generation):
        """Worker thread: render 3D images here, hand everything to the event loop to display."""
        pngs = cutaway.render(frames[-1]) if live.info["dim"] == 3 else None
        later(doc, partial(show, frames, generation, pngs))

    def on_state(message):
        later(doc, lambda: setattr(status, "object", message))

    live = LiveRun(settings, on_frames, on_state)

    def paint(x, y):
        if live.info["dim"] != 2:
            return
        amount = 0.3 if maps.paint_mode.value == "add" else -0.3
        live.paint(x, y, radius=max(2, live.session.phi0.shape[0] / 32), amount=amount)
        if not live.playing:
            live.step()

    def export_style():
        if live.info["dim"] == 3 and tabs.active == 1:
            return FrameStyle(view="cutaway")
        return FrameStyle(view="slice", axis="xyz".index(maps.slice_axis.value), index=maps.slice_pos.value)

    exports = ExportView(live, doc, export_style)

    def open_case(**values):
        """Show one phase-diagram point in the maps tab (same seed, amplitude and grid)."""
        wanted = values.pop("size")
        size = min(SIZES, key=lambda n: abs(n - wanted))
        settings.param.update(init_kind="perlin", size=size, **values)
        tabs.active = 0

    phase = PhaseView(live, doc, exports.job.folder / "phase", open_case)
    training = TrainingView(doc, on_models_changed=lambda: setattr(settings.param.model, "objects", model_choices()))
    request = getattr(getattr(doc, "session_context", None), "request", None)
    local = may_train(getattr(request, "remote_ip", None), bool(os.environ.get("CRANE_VIZ_CLASSROOM")))
    training_panel = training.panel() if local else pn.pane.Alert(
        "Training runs only in the browser of the computer that serves this classroom explorer "
        "(`crane-viz serve --classroom`).", alert_type="info")

    play = pn.widgets.Button(label="Play", color="success", width=80)
    pause = pn.widgets.Button(label="Pause", color="warning", width=80)
    step = pn.widgets.Button(label="Step", width=70)
    reset = pn.widgets.Button(label="Reset", color="primary", width=80)
    upload = pn.widgets.FileInput(accept=".npy,.png,.jpg,.jpeg,.bmp,.tif,.tiff", label="upload field")
    error = pn.pane.Alert("", alert_type="danger", visible=False)

    def report(exc):
        error.object, error.visible = gui_wording(exc), True

    def do_reset(*_):
        error.visible = False
        try:
            live.reset()
        except (CraneVizError, ValueError) as exc:
            report(exc)
            return
        plots.clear()
        times.clear()
        counter.value = 0
        maps.update(live.session.current(), live.info["dim"])
        if live.info["dim"] == 3:
            cutaway.update(live.session.current())
        tabs.active = 1 if live.info["dim"] == 3 and tabs.active == 0 else tabs.active
        phase.update_line()

    def do_upload(event):
        suffix = "." + (upload.filename or "x.npy").rsplit(".", 1)[-1].lower()
        with tempfile.NamedTemporaryFile(suffix=suffix) as tmp:
            tmp.write(event.new)
            tmp.flush()
            try:
                live.set_upload(load_field(tmp.name, max_side=MAX_SIDE[live.info["dim"]]))
            except CraneVizError as exc:
                report(str(exc).replace(tmp.name, upload.filename or "upload"))
                return
        settings.init_kind = "upload"
        do_reset()

    rotate = pn.widgets.Button(label="Rotate/zoom view (paused)", width=200)

    def do_rotate(_):
        if live.info["dim"] != 3:
            return
        live.pause()
        cutaway.show_interactive(live.session.current())

    rotate.on_click(do_rotate)
    play.on_click(lambda _: (cutaway.interactive.clear(), live.play()))
    pause.on_click(lambda _: live.pause())
    step.on_click(lambda _: live.step())
    reset.on_click(do_reset)
    upload.param.watch(do_upload, "value")
    settings.param.watch(do_reset, ["model", "mean", "eta_percent", "amplitude", "cells", "size", "seed",
                                    "init_kind", "reference", "octaves", "correlation_length"])

    # η has its own slider, shown only for models with an η channel (#16 item 14)
    eta_slider = pn.widgets.FloatSlider.from_param(settings.param.eta_percent, step=0.01)

    def show_eta(*_):
        eta_slider.visible = live.info["conditioned"]
    settings.param.watch(show_eta, "model")
    show_eta()
    controls = pn.Column(
        pn.Param(settings, parameters=["model", "mean"], show_name=False,
                 widgets={"mean": {"type": pn.widgets.FloatSlider, "step": 0.01}}),
        eta_slider,
        pn.Param(settings, parameters=["amplitude", "cells", "size", "seed", "init_kind", "reference",
                                       "frames_per_update"], show_name=False,
                 # 3 decimals, so a 1e-3 noise does not read "0"; the seed as a number box
                 widgets={"amplitude": {"type": pn.widgets.FloatSlider, "step": 0.001, "format": "0.000"},
                          "seed": pn.widgets.IntInput}))
    # Every tab stays attached to the page (dynamic=False): a pane updated while detached resolves its
    # stylesheets to Panel's CDN, which an offline classroom cannot reach (#16 item 10). Inactive
    # tabs are hidden instead, so the tallest one does not leave a gap under the others.
    tabs = pn.Tabs(("2D maps", maps.panel()), ("3D cutaway", pn.Column(rotate, cutaway.panel())),
                   ("Phase diagram", phase.panel()), ("Training", training_panel), dynamic=False)

    def show_active_tab(*_):
        for i, content in enumerate(tabs.objects):
            content.visible = i == tabs.active
    tabs.param.watch(show_active_tab, "active")
    tabs.param.watch(lambda event: training.open() if event.new == 3 and local else None, "active")
    template = pn.template.BootstrapTemplate(title="crane_viz — spinodal decomposition explorer",
                                             sidebar_width=330)
    template.sidebar.extend([pn.Row(play, pause), pn.Row(step, reset), counter, controls,
                             pn.pane.Markdown("Upload an initial field (.npy or greyscale image):"),
                             upload, error])
    # the maps' and cutaway tabs' companions; exports write files, so a classroom's remote browsers
    # (like training) do without them
    live_panels = [plots.panel(), exports.panel()] if local else [plots.panel()]

    def show_live_panels(event):
        for panel in live_panels:
            panel.visible = event.new in (0, 1)
    tabs.param.watch(show_live_panels, "active")
    template.main.extend([url_notice, status, tabs, *live_panels])
    def closed(_ctx):
        """The tab closed: stop the run, the sweep and any export, and delete this tab's files."""
        live.close(timeout=0)  # reports nothing from now on; the worker ends after its frame
        phase.job.cancel()
        phase.job.wait(30)
        exports.job.close()
        poll.stop()

    poll = pn.state.add_periodic_callback(training.refresh, period=1000)
    pn.state.on_session_destroyed(closed)
    maps.update(live.session.current(), live.info["dim"])
    if live.info["dim"] == 3:
        cutaway.update(live.session.current())
        tabs.active = 1
    status.object = live.describe()
    show_active_tab()
    return template


if pn.state.served:
    torch.set_num_threads(APP_THREADS)  # on purpose: sessions and jobs share the cores (#16)
    create_app().servable()
