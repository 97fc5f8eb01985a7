"""Learn the convnet backbone's dense features on synthetic takes rendered on the fly."""

from __future__ import annotations

import argparse
import dataclasses
import json

from ..training.features import BackboneTrainConfig


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, help="weights file to write (.pt); its log goes to OUT.csv")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default: auto)")
    parser.add_argument("--init", help="start from these convnet weights (default: random initialisation)")
    parser.add_argument("--workers", type=int, default=0, help="rendering processes (default: up to 16, one per core)")
    for field in dataclasses.fields(BackboneTrainConfig):
        flag = "--" + field.name.replace("_", "-")
        parser.add_argument(flag, type=type(field.default), default=field.default,
                            help=f"(default: {field.default})")


def run(args: argparse.Namespace) -> int:
    from ..training.features import train_backbone

    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(BackboneTrainConfig)}
    record = train_backbone(BackboneTrainConfig(**values), args.out, device=args.device, workers=args.workers,
                            init=args.init)
    print(json.dumps({"out": args.out, **record}))
    return 0
