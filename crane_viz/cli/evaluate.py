"""`crane-viz evaluate CHECKPOINT`: the papers' measures on freshly generated held-out cases."""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from dataclasses import fields
from pathlib import Path

from ..analysis.evaluation import EvalSpec, evaluate, figures, frame_stride_of, protocol_spec
from ..analysis.modelcard import protocol_lines, write_card, write_protocol_section
from ..device import add_device_option
from ..errors import InputError
from ..io.files import atomic_path, check_output_folder
from ..nn.checkpoint import load_checkpoint
from ..settings import resolve_device, spec_help


def add_parser(sub) -> None:
    p = sub.add_parser("evaluate", help="evaluate a checkpoint on held-out cases", description=__doc__)
    p.add_argument("checkpoint", help="checkpoint name or folder")
    add_spec_options(p)
    add_device_option(p)
    p.add_argument("--out", default="evaluation", help="folder for summary.json and PNG figures")
    p.add_argument("--overwrite", action="store_true", help="replace the summary and figures in --out")
    p.add_argument("--card", action="store_true",
                   help="also write MODEL_CARD.md (and the figures) into the checkpoint folder")
    p.add_argument("--paper-card", action="store_true",
                   help="add (or replace) the card's papers'-protocol section and its paper-*.png "
                        "figures from this evaluation, keeping the rest of the card")
    p.add_argument("--log", default=None, help="the training run's log.jsonl, quoted in the card")
    p.add_argument("--notes", default=None, help="a markdown file appended to the card (e.g. how it was trained)")
    p.set_defaults(func=main)


def add_spec_options(p) -> None:
    """--protocol and one option per EvalSpec field (shared with `learning-curve`)."""
    p.add_argument("--protocol", choices=["quick", "paper"], default="quick",
                   help="quick: 64² and a 40-frame horizon (the defaults below); paper: the papers' "
                        "protocol (2D 128², 100-τ horizon, to 500 τ; 3D 64³ against FD over 100 τ); "
                        "options given below override the protocol's values")
    for f in fields(EvalSpec):
        p.add_argument("--" + f.name.replace("_", "-"), type=int, default=None,
                       help=spec_help(f, f"{f.default} (quick protocol)"))


def spec_from_args(args, ckpt) -> tuple[EvalSpec, str]:
    """The EvalSpec the options ask for `ckpt` and the protocol's name as reported."""
    given = {f.name: getattr(args, f.name) for f in fields(EvalSpec) if getattr(args, f.name) is not None}
    name = args.protocol if not given else f"{args.protocol} (with {', '.join(sorted(given))} changed)"
    return protocol_spec(args.protocol, ckpt.dim, frame_stride_of(ckpt), **given), name


def main(args: argparse.Namespace) -> int:
    if args.notes and not Path(args.notes).is_file():
        raise InputError(f"--notes {args.notes}: no such file")
    device = resolve_device(args.device)
    ckpt = load_checkpoint(args.checkpoint, device=device)
    spec, protocol = spec_from_args(args, ckpt)
    out = check_output_folder(args.out, args.overwrite,
                              ("summary.json", "evaluation.png", "protocol.png", "phase.png"))
    out.mkdir(parents=True, exist_ok=True)
    summary = evaluate(ckpt, spec, device, progress=lambda s: print(f"evaluating: {s}", flush=True),
                       protocol=protocol)
    with atomic_path(out / "summary.json") as tmp:
        tmp.write_text(json.dumps(summary, indent=1))
    written = figures(summary, out)
    acc = summary["accuracy"]
    print(f"median MAE within horizon {acc['mae_median_within_horizon']:.4f}, at "
          f"{spec.extrapolate}× horizon {acc['mae_median_at_end']:.4f}; interface error "
          f"{100 * acc['interface_error_median_within_horizon']:.2f} %; max mass drift "
          f"{acc['max_mass_drift']:.1e}; stable ≥ {acc['min_stable_frames']} frames")
    for line in protocol_lines(summary):
        print(line)
    if "phase" in summary:
        phase = summary["phase"]
        print(f"phase agreement at {phase.get('time', phase['frames']):g} τ: {100 * phase['agreement']:.1f} %")
    print(f"wrote {out / 'summary.json'}, {', '.join(str(p) for p in written)}")
    if args.paper_card:
        command = "crane-viz evaluate " + " ".join(sys.argv[2:] if sys.argv[1:2] == ["evaluate"] else [args.checkpoint])
        for path in written:
            shutil.copyfile(path, ckpt.path / f"paper-{path.name}")
        (ckpt.path / "paper-summary.json").write_text(json.dumps(summary, indent=1))
        print(f"wrote {write_protocol_section(ckpt, summary, command)}")
    if args.card:
        command = "crane-viz evaluate " + " ".join(sys.argv[2:] if sys.argv[1:2] == ["evaluate"] else [args.checkpoint])
        for path in written:
            shutil.copyfile(path, ckpt.path / path.name)
        (ckpt.path / "summary.json").write_text(json.dumps(summary, indent=1))
        notes = Path(args.notes).read_text() if args.notes else ""
        print(f"wrote {write_card(ckpt, summary, Path(args.log) if args.log else None, command, notes)}")
    return 0
