"""Train the matching head (the published recipe by default); torchrun-compatible."""

from __future__ import annotations

import argparse
import json

from ..config import parse_overrides
from ..directions import DIRECTIONS


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="training config YAML (default: the published recipe); see training/configs/")
    parser.add_argument("--data", required=True, help="dataset root (Ego-Exo4D processed layout, or `omama synth` output)")
    parser.add_argument("--out", required=True, help="run folder: checkpoints, logs, plots")
    parser.add_argument("--direction", choices=DIRECTIONS, help="override the config's direction")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default: auto)")
    parser.add_argument("--resume", action="store_true", help="continue from RUN/last.pt")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a training config value, e.g. --set optim.epochs=5 (repeatable)")


def run(args: argparse.Namespace) -> int:
    from ..training.config import load_train_config
    from ..training.loop import train

    overrides = parse_overrides(args.set)
    if args.direction:
        overrides["direction"] = args.direction
    config = load_train_config(args.config, overrides)
    result = train(config, args.data, args.out, device=args.device, resume=args.resume)
    print(json.dumps({"best_val_iou": result["best_val_iou"], "iterations": result["iterations"],
                      "train_pairs": result["train_pairs"], "val_pairs": result["val_pairs"], "out": args.out}))
    return 0
