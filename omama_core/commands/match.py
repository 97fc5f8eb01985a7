"""Match query masks from a source image into a target image; prints one JSON line per query."""

from __future__ import annotations

import argparse
import json
import os

import numpy as np

from ..errors import InputError
from ..image_io import read_image, read_mask, write_image, write_mask
from ..visualize import overlay, side_by_side
from .common import add_matcher_arguments, build_matcher


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--source", required=True, help="source image file")
    parser.add_argument("--source-mask", required=True, action="append",
                        help="query mask image (non-zero = object), same size as the source; repeatable")
    parser.add_argument("--target", required=True, help="target image file")
    parser.add_argument("--out-mask", help="write the matched mask(s) here (PNG; _N suffix for several queries)")
    parser.add_argument("--out-overlay", help="write source query | target match side by side here (PNG/JPEG)")
    add_matcher_arguments(parser)


def _numbered(path: str, index: int, count: int) -> str:
    if count == 1:
        return path
    stem, extension = os.path.splitext(path)
    return f"{stem}_{index}{extension}"


def run(args: argparse.Namespace) -> int:
    source = read_image(args.source)
    target = read_image(args.target)
    masks = [read_mask(path) for path in args.source_mask]
    for path, mask in zip(args.source_mask, masks):
        if mask.shape != source.shape[:2]:
            raise InputError(f"mask {path} is {mask.shape[1]}x{mask.shape[0]} (WxH) but the source image "
                             f"{args.source} is {source.shape[1]}x{source.shape[0]}")
    masks = np.stack(masks)
    matcher = build_matcher(args)
    results = matcher.match(source, masks, target)
    for index, (path, result) in enumerate(zip(args.source_mask, results)):
        print(json.dumps({"query": path, **result.to_json()}))
        if args.out_mask:
            write_mask(_numbered(args.out_mask, index, len(results)), result.mask)
        if args.out_overlay:
            panel = side_by_side(overlay(source, masks[index]), overlay(target, result.mask),
                                 titles=("query", f"match score {result.score:.2f}" if result.visible else "not visible"))
            write_image(_numbered(args.out_overlay, index, len(results)), panel)
    return 0
