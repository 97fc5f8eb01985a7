"""Measure the matcher's latency stage by stage, end to end and its peak memory.

    omama bench --config default --queries 1,4,16 --repeat 10 --out bench.json
    omama bench --config published --device cuda --out bench_gpu.json      # random weights, no download
    omama bench --encoder --out encoder.json                                # encoder vs the per-mask formulation
    omama bench --node --config default --repeat 10 --out node.json         # through the ROS node (needs rclpy)

Inputs are a synthetic frame pair (omama_core.data.synth: ego 704x704, exo 960x540, or both
resized to --size WxH) in the config's direction. Configs: the shipped ones, a YAML file,
and `published` / `fast`, the published architecture and a small one with random weights
made locally (omama_core/benchmark.py). Prints a table of medians (ms) and writes the
medians, 10th/90th percentiles and means to --out. --node: the same inputs (640x480 unless
--size) through the ROS node over DDS (omama_ros/bench_node.py) and through the core in this
process, alternating call by call (same machine load), one set at a time, with the ratio
node/core, whether their answers agree and the node's memory.
"""

from __future__ import annotations

import argparse
import json
import tempfile

from ..config import parse_overrides
from ..directions import DIRECTIONS
from ..errors import InputError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", default="default",
                        help="comma-separated configs: shipped names, YAML files, `published`, `fast` "
                             "(default: default)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default: cpu)")
    parser.add_argument("--direction", choices=DIRECTIONS, help="default: each config's own")
    parser.add_argument("--queries", default=None,
                        help="comma-separated query counts per call (default: 1,4; with --node one count, default 1)")
    parser.add_argument("--size", default=None,
                        help="WxH for both images, or 'published' (ego 704x704, exo 960x540; the default; "
                             "640x480 with --node)")
    parser.add_argument("--repeat", type=int, default=5, help="timed calls per measurement (default: 5)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed calls first (default: 1)")
    parser.add_argument("--half", action="store_true", help="half precision on CUDA")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="config override for every config, e.g. --set proposals.max_side=480 (repeatable)")
    parser.add_argument("--encoder", action="store_true",
                        help="instead: the encoder against the per-mask formulation (outputs asserted equal)")
    parser.add_argument("--masks", type=int, default=100, help="masks for --encoder (default: 100)")
    parser.add_argument("--node", action="store_true",
                        help="instead: end to end through the ROS node over DDS beside the core on the same inputs "
                             "(needs rclpy; one config, no --set)")
    parser.add_argument("--soak", type=float, default=None, metavar="SECONDS",
                        help="with --node: instead of timing one set at a time, publish sets at --rate for this "
                             "long and report the node's memory over time (no core run)")
    parser.add_argument("--rate", type=float, default=5.0, help="sets per second for --soak (default: 5)")
    parser.add_argument("--node-log", default=None, help="folder for the started node's log with --node "
                                                         "(default: a temporary folder)")
    parser.add_argument("--out", required=True, help="JSON file for the results")


def run(args: argparse.Namespace) -> int:
    from ..benchmark import machine

    if args.repeat < 1 or args.warmup < 0:
        raise InputError("--repeat must be at least 1 and --warmup at least 0")
    report = {"what": "omama bench", "machine": machine(), "arguments": vars(args)}
    if args.encoder:
        report["encoder"] = _encoder(args)
    elif args.node:
        report["node"] = _node(args)
    else:
        report["runs"] = _matchers(args)
    with open(args.out, "w") as f:
        json.dump(report, f, indent=1)
    print(f"wrote {args.out}")
    return 0


def _encoder(args: argparse.Namespace) -> dict:
    from ..benchmark import bench_encoder

    result = bench_encoder(masks=args.masks, repeat=args.repeat, device=args.device)
    print(f"encoder, {result['masks']} masks, {result['channels']} channels, tokens "
          f"{result['token_grid'][0]}x{result['token_grid'][1]}: batched {result['batched_ms']['median']:.1f} ms, "
          f"per mask {result['per_mask_ms']['median']:.1f} ms: {result['speedup']}x "
          f"(max difference {result['max_abs_difference']:.2g})")
    return result


def _matchers(args: argparse.Namespace) -> list[dict]:
    from ..benchmark import RANDOM_ARCHITECTURES, bench_inputs, bench_matcher, parse_size, random_architecture
    from ..matcher import Matcher

    queries = _query_counts(args.queries or "1,4")
    size = parse_size(args.size)
    runs = []
    with tempfile.TemporaryDirectory(prefix="omama-bench-") as folder:
        for name in [c.strip() for c in args.config.split(",") if c.strip()]:
            config, overrides = name, {}
            if name in RANDOM_ARCHITECTURES:
                config, overrides = random_architecture(name, folder)
            overrides.update(parse_overrides(args.set))
            matcher = Matcher.from_config(config, device=args.device, direction=args.direction,
                                          overrides=overrides, half=args.half)
            direction = matcher.config.direction
            first = None
            for count in queries:
                inputs = bench_inputs(direction, count, size)
                record = bench_matcher(matcher, inputs, args.repeat, args.warmup, label=f"{name} x{count}")
                runs.append({"config": name, "direction": direction, "device": str(matcher.device),
                             "half": bool(getattr(matcher, "half", False)), "queries": count,
                             "source_hw": list(inputs[0].shape[:2]), "target_hw": list(inputs[2].shape[:2]),
                             "repeat": args.repeat, "warmup": args.warmup, **record})
                first = first or runs[-1]
                # what more queries cost: end to end relative to the first query count of this config
                runs[-1]["end_to_end_ratio"] = round(record["end_to_end_ms"]["median"]
                                                     / first["end_to_end_ms"]["median"], 3)
                if record["candidates"] == 0:
                    print(f"warning: {name} found no candidates: only the backbones and proposals ran")
    _print_table(runs)
    return runs


def _query_counts(text: str) -> list[int]:
    try:
        queries = [int(q) for q in text.split(",")]
    except ValueError:
        raise InputError(f"--queries must be comma-separated integers, got {text!r}") from None
    if min(queries) < 1:
        raise InputError(f"--queries must be at least 1, got {text!r}")
    return queries


def _node(args: argparse.Namespace) -> dict:
    """The node over DDS and the core in this process, alternating set by set on the same inputs."""
    import statistics
    import time

    from ..benchmark import RANDOM_ARCHITECTURES, bench_inputs, compare_answers, parse_size, peak_rss_mb, summary
    from ..matcher import Matcher
    from .common import ros_module

    queries = _query_counts(args.queries or "1")
    if len(queries) != 1 or "," in args.config or args.set or args.config in RANDOM_ARCHITECTURES:
        raise InputError("--node takes one --config (a shipped name or YAML file, not published/fast), one "
                         "--queries count and no --set: the node only reads its config parameter")
    if args.soak is not None:
        return _soak(args, queries[0])
    bench_node = ros_module("omama bench --node", "bench_node").bench_node
    matcher = Matcher.from_config(args.config, device=args.device, direction=args.direction, half=args.half)
    direction = matcher.config.direction
    inputs = bench_inputs(direction, queries[0], parse_size(args.size or "640x480"))
    core_ms, candidates, last = [], [], []

    def core_once(timed: bool) -> None:  # after each node answer: both paths see the same machine load
        start = time.perf_counter()
        results = matcher.match(*inputs)
        if timed:
            core_ms.append((time.perf_counter() - start) * 1000.0)
            candidates.append(results[0].num_candidates)
        last[:] = results

    with tempfile.TemporaryDirectory(prefix="omama-bench-node-") as folder:
        node = bench_node(inputs, direction, args.repeat, args.warmup, args.node_log or folder, config=args.config,
                          device=args.device, node_params={"half": True} if args.half else None, between=core_once)
    node["node_log"] = args.node_log and node["node_log"]  # None: it was in a removed temporary folder
    core = {"end_to_end_ms": summary(core_ms), "candidates": int(statistics.median(candidates)),
            "peak_rss_mb": peak_rss_mb()}
    core_answers = [{"visible": r.visible, "score": r.score, "mask": r.mask} for r in last]
    node_answers = node.pop("answers")
    result = {"config": args.config, "direction": direction, "device": args.device, "queries": queries[0],
              "source_hw": list(inputs[0].shape[:2]), "target_hw": list(inputs[2].shape[:2]),
              "repeat": args.repeat, "warmup": args.warmup, "core": core, "node": node,
              "node_over_core": round(node["end_to_end_ms"]["median"] / core["end_to_end_ms"]["median"], 3),
              "answers": compare_answers(core_answers, node_answers)}
    _print_node_table(result)
    return result


def _soak(args: argparse.Namespace, queries: int) -> dict:
    """The node alone under a stream of sets at --rate for --soak seconds: its memory over time."""
    from tqdm import tqdm

    from ..benchmark import bench_inputs, parse_size
    from ..config import load_config
    from .common import ros_module

    if args.soak <= 0 or args.rate <= 0:
        raise InputError("--soak and --rate must be positive")
    soak_node = ros_module("omama bench --node --soak", "bench_node").soak_node
    direction = args.direction or load_config(args.config).direction
    inputs = bench_inputs(direction, queries, parse_size(args.size or "640x480"))
    with tempfile.TemporaryDirectory(prefix="omama-soak-") as folder, \
            tqdm(total=round(args.soak), desc=f"soak at {args.rate:g} Hz", unit="s") as bar:
        result = soak_node(inputs, direction, args.soak, args.rate, args.node_log or folder, config=args.config,
                           device=args.device, node_params={"half": True} if args.half else None,
                           progress=lambda elapsed: bar.update(round(elapsed) - bar.n))
    result["node_log"] = args.node_log and result["node_log"]
    result.update({"config": args.config, "direction": direction, "queries": queries,
                   "source_hw": list(inputs[0].shape[:2]), "target_hw": list(inputs[2].shape[:2])})
    rss, latency = result["node_rss_mb"], result["latency_ms"]
    height, width = result["target_hw"]
    print(f"{args.config}, {width}x{height}, {queries} quer{'y' if queries == 1 else 'ies'}: "
          f"{result['sets_sent']} sets in {args.soak:g} s at {args.rate:g} Hz, {result['sets_answered']} answered "
          f"({result['answer_rate_hz']:g} per s; latency median {latency['median']:.0f} ms, p90 {latency['p90']:.0f})")
    print(f"node RSS: {rss['start']} MB ready, {rss['peak']} MB peak, {rss['end']} MB at the end")
    print("RSS over time (s: MB): " + ", ".join(f"{t:g}: {mb:.0f}" for t, mb in result["rss_timeline"]))
    return result


def _print_node_table(result: dict) -> None:
    core, node = result["core"]["end_to_end_ms"], result["node"]["end_to_end_ms"]
    processing, rss = result["node"]["node_processing_ms"], result["node"]["node_rss_mb"]
    height, width = result["target_hw"]
    print(f"{result['config']}, {width}x{height}, {result['queries']} quer{'y' if result['queries'] == 1 else 'ies'}, "
          f"{result['repeat']} sets after {result['warmup']} warm-up")
    print(f"{'path':<24}{'median ms':>10}{'p10':>9}{'p90':>9}")
    for name, values in (("core (Matcher.match)", core), ("node over DDS", node),
                         ("node's processing_ms", processing)):
        print(f"{name:<24}{values['median']:>10.1f}{values['p10']:>9.1f}{values['p90']:>9.1f}")
    transport = result["node"]["transport_ms"]
    print(f"{'DDS + node around it':<24}{transport['median']:>10.1f}{transport['p10']:>9.1f}{transport['p90']:>9.1f}")
    print(f"node/core {result['node_over_core']:.3f}x; node RSS peak {rss['peak']} MB; "
          f"answers agree: {result['answers']['agree']}")


def _percent(fraction: float | None) -> str:
    return "-" if fraction is None else f"{100 * fraction:.1f}%"


def _print_table(runs: list[dict]) -> None:
    """Medians in ms, one row per measurement; stages in the order the matcher reports them."""
    stages = list(dict.fromkeys(stage for run in runs for stage in run["stages_ms"]))
    header = ["config", "K", "cand"] + stages + ["sum", "end to end (p10-p90)", "outside nets", "RSS MB"]
    rows = []
    for run in runs:
        e2e = run["end_to_end_ms"]
        rows.append([run["config"], str(run["queries"]), str(run["candidates"])]
                    + [f"{run['stages_ms'][s]['median']:.1f}" if s in run["stages_ms"] else "-" for s in stages]
                    + [f"{run['stage_sum_ms']['median']:.1f}", f"{e2e['median']:.1f} ({e2e['p10']:.0f}-{e2e['p90']:.0f})",
                       _percent(run["outside_networks_fraction"]),
                       f"{run['peak_rss_mb']:.0f}"])
    widths = [max(len(row[i]) for row in [header] + rows) for i in range(len(header))]
    for row in [header] + rows:
        print("  ".join(cell.rjust(width) if i else cell.ljust(width) for i, (cell, width) in enumerate(zip(row, widths))))
    if runs:
        print("outside nets: the share of end to end outside the networks' forward passes (backbones, FastSAM's "
              "network); '-' where the classical proposals run beside the backbones")
    first: dict[str, int] = {}
    for run in runs:
        first.setdefault(run["config"], run["queries"])
        if run["queries"] != first[run["config"]]:
            print(f"{run['config']}: {run['queries']} queries cost {run['end_to_end_ratio']:.2f}x "
                  f"{first[run['config']]}")
