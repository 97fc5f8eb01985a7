"""The `omama` command line. Each subcommand lives in omama_core/commands/<name>.py and
exposes add_arguments(parser) and run(args) -> exit code; its module docstring's first line
is the help text. Modules are imported only when their command runs, so `omama --help`
stays fast."""

from __future__ import annotations

import argparse
import importlib
import sys

from .errors import OmamaError

COMMANDS = {
    "match": "omama_core.commands.match",
    "demo": "omama_core.commands.demo",
    "synth": "omama_core.commands.synth",
    "train": "omama_core.commands.train",
    "train-backbone": "omama_core.commands.train_backbone",
    "eval": "omama_core.commands.eval",
    "bag": "omama_core.commands.bag",
    "bench": "omama_core.commands.bench",
}
HELP = {
    "match": "match query masks from a source image into a target image",
    "demo": "build a small two-camera scene and match every object both ways (offline)",
    "synth": "write a synthetic two-camera dataset in the Ego-Exo4D processed layout",
    "train": "train the matching head",
    "train-backbone": "learn the convnet backbone's features on synthetic takes rendered on the fly",
    "eval": "evaluate a model with the official Ego-Exo4D correspondence metrics",
    "bag": "rosbag evaluation: export takes to a bag, score it offline, play it, replay it live through the node",
    "bench": "measure latency per stage, end to end, and peak memory (synthetic inputs)",
}


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="omama", description=__doc__.split("\n")[0])
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMANDS:
        sub = subparsers.add_parser(name, help=HELP[name], description=HELP[name])
        if name == command:  # only the chosen command's module is imported
            importlib.import_module(COMMANDS[name]).add_arguments(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    command = next((a for a in argv if not a.startswith("-")), None)
    command = command if command in COMMANDS else None
    args = build_parser(command).parse_args(argv)
    try:
        return importlib.import_module(COMMANDS[args.command]).run(args)
    except OmamaError as error:
        print(f"omama {args.command}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"omama {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
