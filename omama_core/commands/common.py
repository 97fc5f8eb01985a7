"""Command-line options shared by the commands that build a Matcher."""

from __future__ import annotations

import argparse

from ..config import parse_overrides
from ..directions import DIRECTIONS


def add_matcher_arguments(parser: argparse.ArgumentParser, default_config: str = "default") -> None:
    group = parser.add_argument_group("model")
    group.add_argument("--config", default=default_config,
                       help=f"shipped config name, YAML file, or `omama train` checkpoint (default: {default_config})")
    group.add_argument("--direction", choices=DIRECTIONS, default=None,
                       help="source -> target views (default: the config's)")
    group.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default: auto)")
    group.add_argument("--backbone-weights", help="local DINOv2 weights file (.pth or .safetensors)")
    group.add_argument("--proposal-weights", help="local FastSAM weights file (.pt)")
    group.add_argument("--head-checkpoint", help="head checkpoint (the authors' release or an omama one)")
    group.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                       help="override a config value, e.g. --set proposals.conf=0.2 (repeatable)")


def matcher_overrides(args: argparse.Namespace) -> dict:
    overrides = parse_overrides(args.set)
    if args.backbone_weights:
        overrides["backbone.weights"] = args.backbone_weights
    if args.proposal_weights:
        overrides["proposals.weights"] = args.proposal_weights
    if args.head_checkpoint:
        overrides["head.checkpoint"] = args.head_checkpoint
    return overrides


def build_matcher(args: argparse.Namespace):
    from ..matcher import Matcher

    return Matcher.from_config(args.config, device=args.device, direction=args.direction,
                               overrides=matcher_overrides(args))
