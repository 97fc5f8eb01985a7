"""Evaluate a model with the official Ego-Exo4D correspondence metrics.

    omama eval --data ROOT --split test --checkpoint default --direction both --out runs/eval
    omama eval --data ROOT --split test --submission preds.json --out runs/eval_sub
    omama eval --gt correspondence-gt.json --submission preds.json --out runs/eval_sub

Writes OUT/metrics.json (IoU, location error, contour accuracy, visibility balanced accuracy,
sample and skip counts per direction, and the query protocol: --protocol independent, the
default, answers each object alone as the publication does; joint answers a frame's objects
together), OUT/samples_{direction}.jsonl, the plots and, for a
model run, OUT/submission.json in the official format (docs/data.md).
"""

from __future__ import annotations

import argparse
import json

from .common import matcher_overrides
from ..directions import DIRECTIONS
from ..errors import DatasetError
from ..protocols import PROTOCOLS

DIRECTION_CHOICES = {**{d: [d] for d in DIRECTIONS}, "both": list(DIRECTIONS)}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    data = parser.add_argument_group("data")
    data.add_argument("--data", help="dataset root (ROOT/split.json + ROOT/{take}/..., see docs/data.md)")
    data.add_argument("--split", default="test", help="split of ROOT/split.json (default test)")
    data.add_argument("--gt", help="official ground-truth JSON (process_annotations.py output) instead of --data; "
                                   "only with --submission")
    data.add_argument("--direction", choices=sorted(DIRECTION_CHOICES), default="both", help="default both")
    data.add_argument("--limit", type=int, help="evaluate only the first N samples of each direction (quick look)")
    what = parser.add_argument_group("predictions (one of)")
    what.add_argument("--checkpoint", "--config", dest="checkpoint", default="default",
                      help="model: shipped config name, YAML file or `omama train` checkpoint (default: default)")
    what.add_argument("--submission", help="score this submission JSON instead of running a model")
    model = parser.add_argument_group("model options")
    model.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default auto)")
    model.add_argument("--backbone-weights", help="local DINOv2 weights file")
    model.add_argument("--proposal-weights", help="local FastSAM weights file")
    model.add_argument("--head-checkpoint", help="head checkpoint (the authors' release or an omama one)")
    model.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override (repeatable)")
    model.add_argument("--protocol", choices=sorted(PROTOCOLS), default="independent",
                       help="independent (default): each query answered alone, as the publication and the "
                            "benchmark; joint: the objects of a frame answered together (selection rules may use "
                            "the other objects)")
    parser.add_argument("--out", required=True, help="output folder for metrics, submission and plots")
    parser.add_argument("--no-plots", action="store_true", help="skip the PNG plots")


def run(args: argparse.Namespace) -> int:
    from ..evaluation import evaluate_matcher, evaluate_submission

    directions = DIRECTION_CHOICES[args.direction]
    if args.limit is not None and args.limit < 1:
        raise DatasetError("--limit must be at least 1")
    if args.submission:
        report = evaluate_submission(args.submission, directions, args.out, root=args.data, split=args.split,
                                     gt_file=args.gt, plots=not args.no_plots)
    else:
        if args.gt or not args.data:
            raise DatasetError("running a model needs --data ROOT (images); --gt is only for scoring a --submission")
        report = evaluate_matcher(args.data, args.split, directions, _matcher_factory(args), args.out,
                                  limit=args.limit, plots=not args.no_plots, protocol=args.protocol)
    print(json.dumps({d: {k: report[d][k] for k in ("iou", "location_error", "contour_accuracy",
                                                      "visibility_balanced_accuracy", "samples", "skipped")}
                      for d in directions}, indent=1))
    print(f"wrote {args.out}/metrics.json")
    return 0


def _matcher_factory(args: argparse.Namespace):
    from ..matcher import Matcher

    overrides = matcher_overrides(args)  # the same option names as the other model commands

    def make(direction: str):
        return Matcher.from_config(args.checkpoint, device=args.device, direction=direction, overrides=overrides)

    return make
