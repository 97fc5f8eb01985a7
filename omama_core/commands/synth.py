"""Write a synthetic two-camera dataset in the Ego-Exo4D processed layout.

    omama synth --out data/synth --takes 20 --seed 0 [--frames 8] [--workers 2] [--relations]

Writes OUT/split.json, OUT/{take}/annotation.json and OUT/{take}/{aria01,cam01}/{frame}.jpg
(see docs/data.md); `omama eval --data OUT` and `omama train` read it like real data.
"""

from __future__ import annotations

import argparse
import json
import os
import time

from ..errors import DatasetError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, help="output dataset root (created; existing takes are overwritten)")
    parser.add_argument("--takes", type=int, default=10, help="number of takes (default 10)")
    parser.add_argument("--seed", type=int, default=0, help="dataset seed; the same seed writes the same data")
    parser.add_argument("--frames", type=int, default=8, help="frame pairs per take (default 8)")
    parser.add_argument("--split", default="0.6,0.2,0.2", metavar="TRAIN,VAL,TEST",
                        help="fractions of takes per split, in take order (default 0.6,0.2,0.2)")
    parser.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1),
                        help="rendering processes (default: min(2, CPUs))")
    parser.add_argument("--relations", action="store_true",
                        help="also write the raw relations_{split}.json files (LZString masks)")


def run(args: argparse.Namespace) -> int:
    from ..data.synth import write_dataset

    try:
        fractions = tuple(float(v) for v in args.split.split(","))
    except ValueError:
        fractions = ()
    if len(fractions) != 3 or any(f < 0 for f in fractions) or abs(sum(fractions) - 1) > 1e-6:
        raise DatasetError(f"--split must be three non-negative fractions adding up to 1, got {args.split!r}")
    if args.takes < 1 or args.frames < 1:
        raise DatasetError("--takes and --frames must be at least 1")
    start = time.perf_counter()
    summary = write_dataset(args.out, args.takes, args.seed, args.frames, fractions, args.relations,
                            max(args.workers, 1))
    seconds = time.perf_counter() - start
    summary.update({"out": str(args.out), "seconds": round(seconds, 1),
                    "frame_pairs_per_second": round(summary["frames"] / seconds, 2)})
    print(json.dumps(summary, indent=1))
    return 0
