"""The phase-diagram tab: sweep the (⟨φ⟩, η) plane in the background and open any point."""

from __future__ import annotations

from functools import partial

import panel as pn
from bokeh.models import ColumnDataSource, HoverTool
from bokeh.plotting import figure

from ..analysis.metrics import spinodal_line
from ..analysis.phase import SweepJob, outcome
from ..errors import CraneVizError
from ..live.controller import (
    LiveRun,
    gui_wording,
)
from ..settings import SweepSettings
from .common import View, later


class PhaseView(View):
    """The (⟨φ⟩, η) plane: analytic spinodal line, sweep points as they finish, click to open one."""

    COLORS = {"separated": "#e6550d", "homogeneous": "#3182bd", "diverged": "#7f7f7f"}

    def __init__(self, live: LiveRun, doc, folder, open_case):
        super().__init__()
        self.live, self.doc, self.open_case = live, doc, open_case
        self.settings = SweepSettings(points=60, size=64, horizon=100, batch=30)
        self.job = SweepJob(folder)
        self.line = ColumnDataSource({"mean": [], "eta": []})
        self.source = ColumnDataSource(self._empty())
        self.rows = []  # the sweep's rows so far (clicks open them)
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
            self.message.object = "⚠ pick a trained η-conditioned 2D model (e.g. coherent-2d-elastic) first"
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

    def _layout(self):
        return pn.Row(pn.Column(self.figure, pn.Row(self.run, self.stop, self.progress), self.message),
                      pn.Column(pn.pane.Markdown("**Sweep settings**"), self.controls, width=300))
