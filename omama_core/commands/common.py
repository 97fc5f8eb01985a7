"""Command-line options shared by the commands that build a Matcher."""

from __future__ import annotations

import argparse
import importlib

from ..config import parse_overrides
from ..directions import DIRECTIONS
from ..errors import OmamaError


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


def ros_module(command: str, name: str, without_ros: str = ""):
    """omama_ros.<name> for `command` (e.g. "omama bag play"), or a clear error where there is
    no ROS 2 environment or the messages are not built; without_ros: what works without ROS."""
    try:
        import rclpy  # noqa: F401
    except ImportError as error:
        raise OmamaError(f"{command} needs a ROS 2 environment: source your ROS install "
                         "(. /opt/ros/<distro>/setup.bash) or install the pip wheels (make ros), then run it again "
                         f"(rclpy: {error}). {without_ros}".rstrip()) from None
    try:
        import omama_ros.msg  # noqa: F401
    except ImportError as error:
        raise OmamaError(f"{command} needs the omama_ros messages built: colcon build (ROS install) or "
                         f"scripts/build_ros_interfaces.sh (pip wheels) ({error})") from None
    return importlib.import_module(f"omama_ros.{name}")
