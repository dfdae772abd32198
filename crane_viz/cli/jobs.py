"""`crane-viz jobs`: start, list, watch, cancel and resume background training jobs (as the app's
Training tab does); `crane-viz train-job FOLDER` is the job process itself."""

from __future__ import annotations

import argparse
import time

from tqdm import tqdm

from ..training.estimate import describe_estimate, estimate
from ..training.job_settings import TrainJobSettings
from ..training.jobs import Project
from ..training.worker import run_job
from .common import add_param_options, given


def add_parser(sub) -> None:
    p = sub.add_parser("jobs", help="background training jobs of the project folder", description=__doc__)
    p.add_argument("--project", default=None, help="project folder (default: $CRANE_VIZ_PROJECT or "
                                                   "~/.local/share/crane_viz)")
    actions = p.add_subparsers(dest="action", required=True)
    start = actions.add_parser("start", help="start a job (one per project at a time)")
    add_param_options(start, TrainJobSettings)
    start.add_argument("--estimate", action="store_true", help="only print the measured size and time estimate")
    start.add_argument("--follow", action="store_true", help="show progress until the job ends")
    actions.add_parser("list", help="every job, newest first")
    for name, text in (("show", "state, progress and log tail of a job"), ("cancel", "stop a job (resumable)"),
                       ("resume", "continue a cancelled or failed job")):
        a = actions.add_parser(name, help=text)
        a.add_argument("job", help="job id (see `crane-viz jobs list`)")
        if name == "resume":
            a.add_argument("--follow", action="store_true", help="show progress until the job ends")
    p.set_defaults(func=main)

    r = sub.add_parser("train-job", help="run one training job folder (what `jobs start` launches)")
    r.add_argument("folder", help="job folder holding job.json")
    r.add_argument("--resume", action="store_true", help="continue where the job stopped")
    r.set_defaults(func=lambda args: run_job(args.folder, resume=args.resume))


def main(args: argparse.Namespace) -> int:
    project = Project(args.project)
    if args.action == "list":
        for job in project.jobs():
            print(job.status().summary())
        return 0
    if args.action == "start":
        settings = TrainJobSettings(**given(args, TrainJobSettings))
        if args.estimate:
            print(describe_estimate(estimate(settings)))
            return 0
        job = project.start(settings)
        print(f"started {job.id} in {job.folder}")
        return follow(project, job.id) if args.follow else 0
    if args.action == "cancel":
        print("cancel requested" if project.cancel(args.job) else "the job is not running")
        return 0
    if args.action == "resume":
        job = project.resume(args.job)
        print(f"resumed {job.id}")
        return follow(project, job.id) if args.follow else 0
    status = project.job(args.job).status()
    print(status.summary())
    for key in ("phase", "epoch", "epochs", "horizon", "train_loss", "val_loss", "eta_s", "checkpoint"):
        if key in status.info:
            print(f"  {key}: {status.info[key]}")
    if status.reason:
        print(f"  reason: {status.reason}")
    return 0


def follow(project: Project, job_id: str) -> int:
    """Progress bar over epochs until the job ends; Ctrl-C leaves the job running."""
    job = project.job(job_id)
    bar = tqdm(unit="epoch", desc=job_id, disable=None)
    try:
        status = job.status()
        while status.active:
            info = status.info
            bar.total, bar.n = info.get("epochs"), info.get("epoch", 0)
            bar.set_postfix_str(f"{info.get('phase', '')} val {info.get('val_loss', float('nan')):.3g}")
            time.sleep(1)
            status = job.status()
    except KeyboardInterrupt:
        print(f"\nstopped watching; the job runs on (crane-viz jobs cancel {job_id})")
        return 0
    bar.close()
    print(status.summary() + (f": {status.reason}" if status.reason else ""))
    return 0 if status.state == "finished" else 1
