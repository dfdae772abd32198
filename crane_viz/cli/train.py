"""`crane-viz train`: curriculum training of a CRNN on a dataset; Ctrl-C keeps the last epoch, --resume continues."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from tqdm import tqdm

from ..device import add_device_option
from ..settings import resolve_device
from ..training.loop import LOG_FILE, TrainConfig, read_log, train
from .common import add_param_options, given

LOG_EVERY_S = 60.0  # without a terminal (nohup, a log file), a batch line at most this often


def add_parser(sub) -> None:
    p = sub.add_parser("train", help="train a CRNN checkpoint", description=__doc__)
    p.add_argument("--data", required=True, help="dataset from crane-viz generate")
    p.add_argument("--out", required=True, help="run folder (best/, train_state.pt, log.jsonl)")
    p.add_argument("--name", default="model", help="checkpoint name")
    add_param_options(p, TrainConfig)
    add_device_option(p)
    p.add_argument("--resume", action="store_true", help="continue the run in --out exactly")
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    cfg = TrainConfig(**given(args, TrainConfig))
    # a resumed run continues after the epochs its log holds (as the training worker counts them)
    finished = len(read_log(Path(args.out) / LOG_FILE)) if args.resume else 0
    bar = tqdm(total=cfg.epochs, initial=finished, unit="epoch", desc=f"train {cfg.model}", disable=None)
    postfix, logged = {}, [0.0]

    def on_batch(done, total):
        postfix["batch"] = f"{done}/{total}"
        bar.set_postfix(postfix)
        if bar.disable and (done == 1 or done == total or time.monotonic() - logged[0] >= LOG_EVERY_S):
            print(f"batch {done}/{total} of epoch {bar.n + 1}/{cfg.epochs}", flush=True)
            logged[0] = time.monotonic()

    def on_epoch(rec):
        bar.n = rec["epoch"]
        postfix.update(train=f"{rec['train_loss']:.2e}", val=f"{rec['val_loss']:.2e}", horizon=rec["horizon"])
        bar.set_postfix(postfix)
        if bar.disable:
            print(f"epoch {rec['epoch']}/{cfg.epochs}: train loss {rec['train_loss']:.3e}, val loss "
                  f"{rec['val_loss']:.3e}, {rec['hours']:.2f} h of training", flush=True)
    record = train(args.data, args.out, cfg, name=args.name, resume=args.resume,
                   device=resolve_device(args.device), on_epoch=on_epoch, on_batch=on_batch)
    bar.close()
    if record.get("interrupted"):
        print(f"interrupted in epoch {record['epoch'] + 1} after batch {record['batches']} of {record['of']}; "
              f"its state is saved in {args.out}; continue with --resume")
        return 130
    print(f"done: {args.out}/best (epoch {record.get('epoch')}, val loss {record.get('val_loss')})")
    return 0
