"""Rosbag evaluation: export takes to a bag, score a bag offline, play it, or replay it live through the node.

    omama bag export --data data/synth --split test --takes synth-0003-0000 --out runs/take.bag
    omama bag eval runs/take.bag --config knn --out runs/bag_eval            (no ROS needed)
    omama bag play runs/take.bag --rate 1 --clock                            (needs rclpy)
    omama bag eval-live runs/take.bag --config knn --rate 0.5 --out runs/bag_live --record runs/answers.bag
    omama bag eval runs/take.bag --results runs/answers.bag --out runs/bag_answers

Without the `omama` script (a colcon install): python -m omama_core.cli bag ...  See docs/bags.md.
"""

from __future__ import annotations

import argparse
import json

from ..directions import DIRECTIONS
from ..errors import DatasetError, OmamaError
from .common import add_matcher_arguments, matcher_overrides, ros_module

EXAMPLES = __doc__.split("\n\n")[1]
BAG_WITHOUT_ROS = "`omama bag export` and `omama bag eval` work without ROS."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = "examples:\n" + EXAMPLES
    sub = parser.add_subparsers(dest="bag_command", metavar="SUBCOMMAND", required=True)

    export = sub.add_parser("export", help="dataset takes -> a rosbag2 with images, queries and ground truth",
                            formatter_class=argparse.RawDescriptionHelpFormatter,
                            epilog="example:\n  omama bag export --data data/synth --split test --out runs/test.bag")
    export.add_argument("--data", required=True, help="dataset root (docs/data.md)")
    export.add_argument("--split", default="test", help="split of ROOT/split.json (default test)")
    export.add_argument("--takes", nargs="+", help="only these takes (default: every take of the split)")
    export.add_argument("--direction", choices=DIRECTIONS, default="ego2exo",
                        help="queries on the ego images (ego2exo, default) or on the exo images")
    export.add_argument("--out", required=True, help="bag folder to create (must not exist)")
    export.add_argument("--storage", choices=["mcap", "sqlite3"], default="mcap", help="default mcap")
    export.add_argument("--compressed", choices=["png", "jpeg"],
                        help="images as sensor_msgs/CompressedImage on <topic>/compressed (png is lossless; jpeg "
                             "changes pixels, so scores may differ slightly from `omama eval`)")
    export.add_argument("--clock", action="store_true", help="also write /clock (rosgraph_msgs/Clock) per frame")
    _topic_arguments(export)

    evaluate = sub.add_parser("eval", help="score a bag offline (deterministic, no ROS needed)",
                              formatter_class=argparse.RawDescriptionHelpFormatter,
                              epilog="examples:\n  omama bag eval runs/test.bag --config knn --out runs/bag_eval\n"
                                     "  omama bag eval runs/test.bag --results runs/answers.bag --out runs/bag_answers")
    evaluate.add_argument("bag", help="rosbag2 folder (or an .mcap file)")
    evaluate.add_argument("--out", required=True, help="output folder (metrics.json, samples, submission, plots)")
    evaluate.add_argument("--results", help="score the node's answers recorded in this bag (eval-live --record) "
                                            "instead of running a model")
    evaluate.add_argument("--masks", choices=["candidate", "published"], default="candidate",
                          help="candidate (default): the chosen candidate whatever the visibility, the official "
                               "protocol as `omama eval`; published: empty when not visible, as the node publishes")
    add_matcher_arguments(evaluate)
    _pairing_arguments(evaluate)
    _topic_arguments(evaluate)
    evaluate.add_argument("--no-plots", action="store_true", help="skip the PNG plots")

    play = sub.add_parser("play", help="publish a bag into the ROS graph with its recorded timing",
                          formatter_class=argparse.RawDescriptionHelpFormatter,
                          epilog="example:\n  omama bag play runs/test.bag --rate 0.5 --clock\n"
                                 "(on a ROS install `ros2 bag play --clock runs/test.bag` does the same)")
    play.add_argument("bag", help="rosbag2 folder (or an .mcap file)")
    play.add_argument("--rate", type=float, default=1.0, help="playback speed factor (default 1.0)")
    play.add_argument("--clock", action="store_true", help="publish /clock with the bag's time (use_sim_time)")
    play.add_argument("--loop", action="store_true", help="start again at the end (Ctrl-C stops)")
    play.add_argument("--topics", nargs="+", help="only these topics (default: every topic of a known type)")
    play.add_argument("--prefix", default="", help="publish under this namespace, e.g. /replay")
    play.add_argument("--wait-for-subscribers", action="store_true",
                      help="start only once every played topic has a subscriber (up to 30 s)")

    live = sub.add_parser("eval-live", help="replay a bag through the node and score its answers, latency and drops",
                          formatter_class=argparse.RawDescriptionHelpFormatter,
                          epilog="examples:\n"
                                 "  omama bag eval-live runs/test.bag --config knn --rate 0.5 --out runs/live\n"
                                 "  omama bag eval-live runs/test.bag --attach /omama --out runs/live   "
                                 "(a node already running, subscribed to the bag's topics)")
    live.add_argument("bag", help="rosbag2 folder (or an .mcap file)")
    live.add_argument("--out", required=True, help="output folder (metrics.json, samples, submission, plots, node.log)")
    live.add_argument("--rate", type=float, default=1.0, help="playback speed factor (default 1.0)")
    live.add_argument("--attach", metavar="NODE",
                      help="use this running node (e.g. /omama) instead of starting one; the bag is played on its "
                           "own topic names")
    live.add_argument("--config", default="default", help="started node's config (default: default)")
    live.add_argument("--device", default="auto", help="started node's device (default auto)")
    live.add_argument("--node-param", action="append", default=[], metavar="NAME=VALUE",
                      help="another parameter of the started node, e.g. qos_reliability=reliable (repeatable)")
    live.add_argument("--direction", choices=DIRECTIONS, help="default: the bag's")
    live.add_argument("--record", metavar="BAG", help="also write the node's answers to this result bag "
                                                       "(score it later with `omama bag eval BAG --results ...`)")
    live.add_argument("--startup-timeout", type=float, default=300.0, help="seconds for the node to start (300)")
    live.add_argument("--drain", type=float, default=10.0,
                      help="after the bag ends, wait up to this long for answers still in flight (default 10 s)")
    _topic_arguments(live)
    live.add_argument("--no-plots", action="store_true", help="skip the PNG plots")


def _topic_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("topics (the project's defaults)")
    group.add_argument("--ego-topic", default="/ego/image", help="ego images (default /ego/image; "
                                                                 "CompressedImage: <topic>/compressed)")
    group.add_argument("--exo-topic", default="/exo/image", help="exo images (default /exo/image)")
    group.add_argument("--queries-topic", default="/queries", help="omama_ros/QueryArray (default /queries)")
    group.add_argument("--gt-topic", default="/ground_truth", help="ground truth, omama_ros/MatchArray "
                                                                   "(default /ground_truth)")


def _pairing_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("pairing (the node's parameters of the same names)")
    group.add_argument("--sync-slop", type=float, default=None, help="largest ego/exo stamp difference, s "
                                                                     "(default: the node's, 0.02)")
    group.add_argument("--sync-queue-size", type=int, default=None, help="default: the node's, 10")


def _topics(args: argparse.Namespace, compressed: bool = False):
    from ..bags.layout import Topics

    return Topics(ego=args.ego_topic, exo=args.exo_topic, queries=args.queries_topic, ground_truth=args.gt_topic,
                  compressed=compressed)


def run(args: argparse.Namespace) -> int:
    return {"export": _export, "eval": _eval, "play": _play, "eval-live": _eval_live}[args.bag_command](args)


def _export(args: argparse.Namespace) -> int:
    from ..bags.export import export_bag

    summary = export_bag(args.data, args.out, args.split, args.direction, args.takes, args.storage, args.compressed,
                         args.clock, _topics(args, args.compressed is not None))
    print(json.dumps(summary, indent=1))
    return 0


def _eval(args: argparse.Namespace) -> int:
    from ..bags.offline import evaluate_offline, evaluate_results
    from ..bags.report import summary_table

    assembler = _assembler_factory(args)
    if args.results:
        def decoder(compressed: bool):  # the node's image decoding, for the plots' cases
            return assembler("ego2exo", lambda *_: None, compressed, None).decode

        report = evaluate_results(args.bag, args.results, args.out, _topics(args), args.direction,
                                  decode_factory=decoder, plots=not args.no_plots)
    else:
        from ..matcher import Matcher

        overrides = matcher_overrides(args)

        def make_matcher(direction: str):
            return Matcher.from_config(args.config, device=args.device, direction=direction, overrides=overrides)

        report = evaluate_offline(args.bag, args.out, make_matcher, assembler, _topics(args), args.direction,
                                  args.masks, plots=not args.no_plots)
    print(summary_table(report))
    print(f"wrote {args.out}/metrics.json")
    return 0


def _assembler_factory(args: argparse.Namespace):
    """The node's pairing (omama_ros.bag_sets, pure Python: no rclpy needed)."""
    try:
        from omama_ros.bag_sets import SetAssembler
        from omama_ros.parameters import BY_NAME
    except ImportError as error:
        raise OmamaError(f"omama bag eval needs the omama_ros package (its pure-Python pairing): {error}") from error
    slop = BY_NAME["sync_slop"].default if args.sync_slop is None else args.sync_slop
    queue = BY_NAME["sync_queue_size"].default if args.sync_queue_size is None else args.sync_queue_size
    if slop < 0 or queue < 1:
        raise DatasetError(f"--sync-slop must be >= 0 and --sync-queue-size >= 1, got {slop} and {queue}")

    def make(direction: str, report, compressed: bool, labels: dict | None = None):
        return SetAssembler(direction, report, slop=slop, queue_size=queue, compressed=compressed, labels=labels)

    return make


def _play(args: argparse.Namespace) -> int:
    player = ros_module("omama bag play", "player", BAG_WITHOUT_ROS)
    if args.rate <= 0:
        raise DatasetError(f"--rate must be positive, got {args.rate}")
    summary = player.play_bag(args.bag, rate=args.rate, clock=args.clock, loop=args.loop, topics=args.topics,
                              prefix=args.prefix, wait_for_subscribers=args.wait_for_subscribers)
    print(json.dumps(summary, indent=1))
    return 0


def _eval_live(args: argparse.Namespace) -> int:
    from ..bags.report import summary_table
    from ..config import parse_overrides

    replay = ros_module("omama bag eval-live", "replay", BAG_WITHOUT_ROS)
    if args.rate <= 0:
        raise DatasetError(f"--rate must be positive, got {args.rate}")
    params = parse_overrides(args.node_param)
    report = replay.evaluate_live(args.bag, args.out, rate=args.rate, attach=args.attach, config=args.config,
                                  device=args.device, node_params=params, record=args.record,
                                  topics=_topics(args), direction=args.direction,
                                  startup_timeout=args.startup_timeout, drain=args.drain, plots=not args.no_plots)
    print(summary_table(report))
    print(f"wrote {args.out}/metrics.json")
    return 0 if report.get("node_exit") in (None, 0) else 1

