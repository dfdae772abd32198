"""The explorer page: the CRNN surrogate live beside a reference solver.

A thin composition over `crane_viz.live.controller`: every control is declared (with bounds) in
`ExplorerSettings`, the simulation runs in `LiveRun`'s worker thread, and the views only turn
frames into pictures and plots. The Training tab is a view over `crane_viz.training.jobs`: jobs run as
separate processes and the tab reads their folders."""

from __future__ import annotations

import os
import tempfile

import panel as pn

from ..errors import CraneVizError
from ..io.compose import FrameStyle
from ..live.controller import (
    MAX_SIDE,
    SIZES,
    ExplorerSettings,
    LiveRun,
    apply_each,
    gui_wording,
    may_train,
    model_choices,
)
from ..physics.initial import load_field
from .common import CLASSROOM_ENV, later
from .phase_tab import PhaseView
from .training_tab import TrainingView
from .views import CutawayView, ExportView, LiveDisplay, MapsView, PlotsView

pn.extension("vtk", notifications=True)

URL_KEYS = ["model", "mean", "eta_percent", "amplitude", "cells", "size", "seed", "init_kind", "reference"]


def create_app():
    """One browser session's page (Panel calls this for every visitor)."""
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
    maps, plots, cutaway = MapsView(on_paint=lambda x, y: paint(x, y)), PlotsView(), CutawayView()
    display = LiveDisplay(doc, maps, plots, cutaway)
    status, counter = display.status, display.counter
    live = display.live = LiveRun(settings, display.offer, display.say)

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
    local = may_train(getattr(request, "remote_ip", None), bool(os.environ.get(CLASSROOM_ENV)))
    training_panel = training.layout if local else pn.pane.Alert(
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
        display.clear()
        maps.update(live.session.current(), live.info["dim"])
        tabs.active = 1 if live.info["dim"] == 3 and tabs.active == 0 else tabs.active
        sync_cutaway()
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

    play.on_click(lambda _: live.play())
    # a click may be handled off the document lock (Panel schedules events while the page is busy or
    # closing), where changing a Bokeh source raises: the flush goes through the session's loop
    pause.on_click(lambda _: (live.pause(), later(doc, display.flush_plots)))
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
                                       "frames_per_update", "updates_per_second"], show_name=False,
                 # 3 decimals, so a 1e-3 noise does not read "0"; the seed as a number box
                 widgets={"amplitude": {"type": pn.widgets.FloatSlider, "step": 0.001, "format": "0.000"},
                          "seed": pn.widgets.IntInput}))
    # Every tab stays attached to the page (dynamic=False): a pane updated while detached resolves its
    # stylesheets to Panel's CDN, which an offline classroom cannot reach (#16 item 10). Inactive
    # tabs are hidden instead, so the tallest one does not leave a gap under the others.
    tabs = pn.Tabs(("2D maps", maps), ("3D cutaway", cutaway),
                   ("Phase diagram", phase), ("Training", training_panel), dynamic=False)

    def sync_cutaway():
        """Cutaways are contoured only while their tab shows; opening it shows the current frame."""
        cutaway.active = live.info["dim"] == 3 and tabs.active == 1
        if cutaway.active:
            cutaway.update(live.session.current())

    def show_active_tab(*_):
        for i, content in enumerate(tabs.objects):
            content.visible = i == tabs.active
        sync_cutaway()
    tabs.param.watch(show_active_tab, "active")
    tabs.param.watch(lambda event: training.open() if event.new == 3 and local else None, "active")
    template = pn.template.BootstrapTemplate(title="crane_viz — spinodal decomposition explorer",
                                             sidebar_width=330)
    template.sidebar.extend([pn.Row(play, pause), pn.Row(step, reset), counter, controls,
                             pn.pane.Markdown("Upload an initial field (.npy or greyscale image):"),
                             upload, error])
    # the maps' and cutaway tabs' companions; exports write files, so a classroom's remote browsers
    # (like training) do without them
    live_panels = [plots.layout, exports.layout] if local else [plots.layout]

    def show_live_panels(event):
        for panel in live_panels:
            panel.visible = event.new in (0, 1)
    tabs.param.watch(show_live_panels, "active")
    template.main.extend([url_notice, status, display.pacer, tabs, *live_panels])
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
        tabs.active = 1
    status.object = live.describe()
    show_active_tab()
    return template
