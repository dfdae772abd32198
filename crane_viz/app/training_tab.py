"""The training tab: a view over `crane_viz.training.jobs`'s job folders (jobs are separate processes)."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import panel as pn
from bokeh.models import ColumnDataSource, HoverTool
from bokeh.plotting import figure

from ..errors import CraneVizError
from ..live.background import BackgroundJob
from ..live.controller import (
    apply_each,
    gui_wording,
)
from ..nn.checkpoint import list_checkpoints
from ..physics.presets import get_preset
from ..training.estimate import describe_estimate, duration, estimate
from ..training.job_settings import TrainJobSettings
from ..training.jobs import Project
from .common import View, later


class TrainingView(View):
    """Training tab: a job's settings with a measured estimate; start, cancel and resume; its loss
    curve, curriculum horizon, progress with ETA and validation previews, read from the job's
    folder every second (the job is a separate process: it outlives this tab and the server)."""

    DATA = ["checkpoint_name", "dataset", "preset", "sequences", "frames", "size", "mean_min", "mean_max",
            "eta_min_percent", "eta_max_percent", "data_seed"]
    MODEL = ["model", "init", "epochs", "ramp", "lr", "batch", "grad_weight", "energy_weight", "noise",
             "window", "grid_scale", "clip_norm", "seed", "preview_every", "threads"]
    # the recipes of the shipped checkpoints (their cards' commands) need these too
    CURRICULUM = ["val_fraction", "max_frames", "frame_stride", "first_window", "frame_weight", "pushforward",
                  "pushforward_depth", "pixel_horizon", "beyond", "rise_weight", "mix_data", "mix_frames",
                  "mix_weight", "ema", "schedule", "keep", "snapshot_every"]
    PATHS = ("dataset", "init", "mix_data")  # never taken from a link
    INTS = ["sequences", "frames", "size", "data_seed", "epochs", "ramp", "batch", "window",
            "seed", "preview_every", "threads", "max_frames", "frame_stride", "pushforward", "pixel_horizon",
            "beyond", "mix_frames", "snapshot_every"]

    def __init__(self, doc, on_models_changed):
        super().__init__()
        self.doc, self.on_models_changed = doc, on_models_changed
        self.project = Project()
        self.settings = TrainJobSettings(checkpoint_name=self._free_name())
        if pn.state.location is not None:  # paths never come from a link
            shared = [k for k in self.DATA + self.MODEL + self.CURRICULUM if k not in self.PATHS]
            pn.state.location.sync(self.settings, {k: f"train_{k}" for k in shared},
                                   on_error=lambda values: apply_each(self.settings, values))
        widgets = {k: pn.widgets.IntInput for k in self.INTS}
        widgets["init"] = {"type": pn.widgets.Select, "options": ["", *list_checkpoints()]}
        self.data_controls = pn.Param(self.settings, parameters=self.DATA, show_name=False, widgets=widgets)
        self.model_controls = pn.Param(self.settings, parameters=self.MODEL, show_name=False, widgets=widgets)
        self.curriculum_controls = pn.Param(self.settings, parameters=self.CURRICULUM, show_name=False,
                                            widgets=widgets)
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
        costly = ["val_fraction", "max_frames", "frame_stride"] + [
            k for k in self.DATA + self.MODEL if k not in ("checkpoint_name", "preview_every", "seed", "data_seed")]
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

    def _layout(self):
        settings = pn.Column(pn.Card(self.data_controls, title="Data", collapsed=False, width=330),
                             pn.Card(self.model_controls, title="Model and curriculum", collapsed=True, width=330),
                             pn.Card(self.curriculum_controls, title="Frames, stability and checkpoints",
                                     collapsed=True, width=330))
        watch = pn.Column(self.jobs, self.state, self.progress, self.failure, self.figure,
                          pn.pane.Markdown("Validation rollout preview (reference above the model's own "
                                           "rollout from the first frame):", margin=(0, 10)), self.preview)
        return pn.Row(pn.Column(settings, self.estimate, pn.Row(self.start, self.cancel, self.resume), self.refused,
                                width=350),
                      watch)
