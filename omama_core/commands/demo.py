"""Build a small two-camera scene and match every object both ways, offline."""

from __future__ import annotations

import argparse
import os

import numpy as np

from ..directions import DIRECTIONS, source_and_target
from ..image_io import write_image
from ..masks import mask_iou
from ..visualize import overlay, side_by_side

IOU_CORRECT = 0.5  # a match counts as correct at IoU >= 0.5 with the ground truth


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default="omama_demo", help="folder for the overlay images (default: omama_demo)")
    parser.add_argument("--seed", type=int, default=7, help="seed of the synthetic scene (default: 7)")
    parser.add_argument("--frame", type=int, default=0, help="frame of the synthetic take (default: 0)")
    parser.add_argument("--config", default="default", help="config name, YAML or checkpoint (default: default)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default: auto)")


def run(args: argparse.Namespace) -> int:
    from ..data.synth import render_pair
    from ..matcher import Matcher

    pair = render_pair(args.seed, args.frame)
    os.makedirs(args.out, exist_ok=True)
    write_image(os.path.join(args.out, "scene.jpg"), side_by_side(pair.ego_image, pair.exo_image,
                                                                   titles=("ego (head camera)", "exo (fixed camera)")))
    views = {"ego": (pair.ego_image, pair.ego_masks), "exo": (pair.exo_image, pair.exo_masks)}
    print(f"scene: seed {args.seed}, frame {pair.frame}, {len(pair.object_names)} objects; "
          f"config {args.config!r}; overlays in {args.out}/")
    print(f"{'direction':9}  {'object':18} {'in target':>9} {'predicted':>9} {'score':>6} {'IoU':>6} "
          f"{'best IoU':>8}  result")
    correct = total = matched = visible = 0
    for direction in DIRECTIONS:
        matcher = Matcher.from_config(args.config, device=args.device, direction=direction)
        (source, source_masks), (target, target_masks) = source_and_target(direction, views["ego"], views["exo"])
        names = [name for name in pair.object_names if name in source_masks]
        results = matcher.match(source, np.stack([source_masks[n] for n in names]), target)
        for name, result in zip(names, results):
            truth = target_masks.get(name, np.zeros(target.shape[:2], bool))
            iou = mask_iou(result.mask, truth) if name in target_masks else float("nan")
            # the best candidate's IoU, whatever the visibility decision: tells matching errors from visibility errors
            best_iou = (mask_iou(result.candidate_mask, truth) if name in target_masks and result.candidate_mask is not None
                        else float("nan"))
            ok = (result.visible and iou >= IOU_CORRECT) if name in target_masks else not result.visible
            correct += ok
            total += 1
            visible += name in target_masks
            matched += best_iou >= IOU_CORRECT
            print(f"{direction:9}  {name:18} {('yes' if name in target_masks else 'no'):>9} "
                  f"{('yes' if result.visible else 'no'):>9} {result.score:6.2f} {iou:6.2f} {best_iou:8.2f}  "
                  f"{'ok' if ok else 'WRONG'}")
            panel = side_by_side(overlay(source, source_masks[name], colors=[(255, 60, 60)]),
                                 overlay(target, [truth, result.mask], colors=[(60, 255, 60), (255, 60, 60)], alpha=0.4),
                                 titles=(f"query: {name}", "red: match, green: ground truth"))
            write_image(os.path.join(args.out, f"{direction}_{name}.jpg"), panel)
        print(f"{direction}: {results[0].timings['total']:.0f} ms for {len(names)} queries "
              f"({results[0].num_candidates} candidates)")
    print(f"correct: {correct}/{total} ({100.0 * correct / max(total, 1):.0f}%): visible objects matched with "
          f"IoU >= {IOU_CORRECT}, invisible ones reported not visible")
    print(f"matching alone: {matched}/{visible} visible objects' best candidate has IoU >= {IOU_CORRECT} "
          "(whatever the visibility decision)")
    return 0
