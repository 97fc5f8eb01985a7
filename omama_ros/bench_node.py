"""`omama bench --node`: end-to-end latency through the node over DDS, one set at a time
(bench_node), or a stream of sets at a camera's rate for minutes, for the node's memory
(soak_node, `--soak SECONDS --rate HZ`).

It starts the node (replay.NodeProcess: `python -m omama_ros.node` in a private namespace,
this process's network namespace and DDS settings), publishes one ego image, one exo image
and one QueryArray under a single stamp, waits for the MatchArray with that stamp on
~/matches, and only then sends the next set; `between` (the core's call in `omama bench --node`) runs
after each answer, so that both paths see the same load of the machine. Latency: the first of the three publications ->
the MatchArray's arrival (its raw bytes, before deserialization), monotonic clock of this
process. The node's own figures (MatchArray.processing_ms and latency_ms) and its RSS are
kept beside it.
"""

from __future__ import annotations

import os
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable

import numpy as np
import rclpy
from rclpy.executors import SingleThreadedExecutor
from rclpy.serialization import deserialize_message

from omama_core.benchmark import summary
from omama_core.errors import OmamaError

from . import conversions
from .msg import MatchArray, Query, QueryArray
from .player import PUBLISH_QOS
from .replay import NODE_NAME, NodeProcess, _rss_report


def _messages(source: np.ndarray, masks: np.ndarray, target: np.ndarray, direction: str):
    """(ego Image, exo Image, QueryArray) for source (Hs, Ws, 3) uint8 RGB, masks (K, Hs, Ws)
    bool, target (Ht, Wt, 3); stamps are set per set by _stamp."""
    source_msg, target_msg = conversions.rgb_to_image(source), conversions.rgb_to_image(target)
    view = Query.VIEW_EGO if direction.startswith("ego") else Query.VIEW_EXO
    queries = QueryArray(queries=[Query(id=f"q{k}", source_view=view, mask=conversions.mask_to_image(mask))
                                  for k, mask in enumerate(masks)])
    ego, exo = (source_msg, target_msg) if direction.startswith("ego") else (target_msg, source_msg)
    return ego, exo, queries


def _stamp(messages, ns: int) -> None:
    stamp = conversions.ns_to_stamp(ns)
    ego, exo, queries = messages
    for header in [ego.header, exo.header, queries.header] + [q.header for q in queries.queries]:
        header.stamp = stamp


@contextmanager
def _node_session(inputs, direction: str, log_dir: str | os.PathLike, config: str, device: str,
                  node_params: dict | None, startup_timeout: float, node_command: list[str] | None):
    """A started node on private topics, with this process's publishers of its three inputs and
    a subscription to its matches. Yields (messages, publishers, arrivals {stamp ns:
    (monotonic s, CDR)}, its Condition, the NodeProcess, params); stops it all afterwards."""
    log_dir = Path(log_dir)
    log_dir.mkdir(parents=True, exist_ok=True)
    namespace = f"/omama_bench_{os.getpid()}"  # private topics: nothing else on the graph is disturbed
    target_name = f"{namespace}/{NODE_NAME}"
    params = {"config": config, "device": device, "direction": direction, **(node_params or {})}
    messages = _messages(*inputs, direction)
    context = rclpy.Context()
    rclpy.init(context=context)
    node = rclpy.create_node("omama_bench", context=context)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    arrivals: dict[int, tuple[float, bytes]] = {}
    arrived = threading.Condition()

    def on_matches(data: bytes) -> None:
        now = time.monotonic()
        msg = deserialize_message(data, MatchArray)
        with arrived:
            arrivals[conversions.stamp_to_ns(msg.source_stamp)] = (now, data)
            arrived.notify_all()

    child = NodeProcess(NODE_NAME, namespace, {}, params, log_dir / "node.log", node_command)
    spinner = threading.Thread(target=executor.spin, daemon=True)
    try:
        child.wait_ready(startup_timeout)
        publishers = [node.create_publisher(type(msg), f"{namespace}/{topic}", PUBLISH_QOS)
                      for msg, topic in zip(messages, ("ego/image", "exo/image", "queries"))]
        node.create_subscription(MatchArray, f"{target_name}/matches", on_matches, 10, raw=True)
        spinner.start()
        deadline = time.monotonic() + 60.0
        while not (all(p.get_subscription_count() > 0 for p in publishers)
                   and node.count_publishers(f"{target_name}/matches") > 0):
            if time.monotonic() > deadline:
                raise OmamaError(f"the node {target_name} did not subscribe to its inputs within 60 s; "
                                 f"log: {child.log_path}")
            time.sleep(0.05)
        time.sleep(0.5)  # the matches subscription's endpoint matching, after the graph shows it
        yield messages, publishers, arrivals, arrived, child, params
    finally:
        executor.shutdown(timeout_sec=1.0)
        node.destroy_node()
        rclpy.try_shutdown(context=context)
        child.stop()  # no-op when stopped already; always closes its log


def _publish_set(messages, publishers) -> int:
    """Stamp the set with the wall clock (the node's latency_ms is its clock minus the stamp),
    publish its three messages; returns the stamp (ns)."""
    stamp = time.time_ns()
    _stamp(messages, stamp)
    for publisher, msg in zip(publishers, messages):
        publisher.publish(msg)
    return stamp


def bench_node(inputs: tuple[np.ndarray, np.ndarray, np.ndarray], direction: str, repeat: int, warmup: int,
               log_dir: str | os.PathLike, config: str = "default", device: str = "cpu",
               node_params: dict | None = None, startup_timeout: float = 300.0, answer_timeout: float = 300.0,
               node_command: list[str] | None = None, between: Callable[[bool], None] | None = None
               ) -> dict[str, Any]:
    """Time `repeat` sets (after `warmup`) of inputs = (source image, query masks (K, H, W),
    target image) through a started node. Returns {"end_to_end_ms", "node_processing_ms",
    "node_latency_ms", "transport_ms" (end to end minus the node's processing_ms, set by set)
    (summaries), "node_rss_mb", "answers": the last MatchArray's
    [{"visible", "score", "mask" (Ht, Wt) bool}], "node_log"}. node_command: as in
    replay.NodeProcess (tests inject a matcher). between(timed): called after each answer,
    timed False during the warm-up."""
    with _node_session(inputs, direction, log_dir, config, device, node_params, startup_timeout,
                       node_command) as (messages, publishers, arrivals, arrived, child, params):
        rss_start = child.rss_mb()
        latencies, processing, node_latency, last = [], [], [], None
        for index in range(warmup + repeat):
            sent = time.monotonic()
            stamp = _publish_set(messages, publishers)
            with arrived:
                if not arrived.wait_for(lambda: stamp in arrivals, timeout=answer_timeout):
                    raise OmamaError(f"no MatchArray for set {index} within {answer_timeout:.0f} s; "
                                     f"node log {child.log_path}:\n{child.log()[-2000:]}")
                received, data = arrivals.pop(stamp)
            last = deserialize_message(data, MatchArray)
            if index >= warmup:
                latencies.append((received - sent) * 1000.0)
                processing.append(float(last.processing_ms))
                node_latency.append(float(last.latency_ms))
            if between is not None:
                between(index >= warmup)
        rss = list(child.rss)
        node_exit = child.stop()
    answers = [{"visible": bool(m.visible), "score": float(m.score),
                "mask": conversions.mask_to_bool(m.mask)} for m in last.matches]
    return {"end_to_end_ms": summary(latencies), "node_processing_ms": summary(processing),
            "node_latency_ms": summary(node_latency),
            # per set, so that the machine's load cancels: what DDS and the node add around its processing
            "transport_ms": summary([total - inside for total, inside in zip(latencies, processing)]),
            "node_rss_mb": _rss_report(rss_start, rss),
            "node_exit": node_exit, "node_params": params, "answers": answers, "node_log": str(child.log_path),
            "latency_definition": "first of the set's three publications (ego image, exo image, QueryArray) -> "
                                  "its MatchArray received (raw bytes), monotonic clock of this process; one set "
                                  "in flight at a time"}


def soak_node(inputs: tuple[np.ndarray, np.ndarray, np.ndarray], direction: str, duration_s: float, rate_hz: float,
              log_dir: str | os.PathLike, config: str = "default", device: str = "cpu",
              node_params: dict | None = None, startup_timeout: float = 300.0,
              node_command: list[str] | None = None, progress: Callable[[float], None] | None = None
              ) -> dict[str, Any]:
    """Publish the same set at rate_hz for duration_s without waiting for answers (as a camera
    does; the node answers the newest set and drops the ones it cannot keep up with), then wait
    for the last answer. Returns {"sets_sent", "sets_answered", "answer_rate_hz",
    "latency_ms" (answered sets: publication -> answer), "node_rss_mb" ({"start", "peak",
    "end", "samples"}), "rss_timeline" ([seconds since the first set, MB] every 10 s),
    "node_exit", "node_log"}. progress(elapsed seconds) is called about once a second."""
    with _node_session(inputs, direction, log_dir, config, device, node_params, startup_timeout,
                       node_command) as (messages, publishers, arrivals, arrived, child, params):
        rss_start, first = child.rss_mb(), len(child.rss)
        sent: dict[int, float] = {}
        answered: dict[int, float] = {}

        def collect() -> None:  # arrival times only: 1,500 answers' masks need not stay in memory
            with arrived:
                answered.update({stamp: arrivals.pop(stamp)[0] for stamp in list(arrivals)})

        start = time.monotonic()
        tick, reported = 0, 0
        while (now := time.monotonic()) - start < duration_s:
            sent[_publish_set(messages, publishers)] = now
            collect()
            tick += 1
            if progress is not None and int(now - start) > reported:
                reported = int(now - start)
                progress(now - start)
            time.sleep(max(0.0, start + tick / rate_hz - time.monotonic()))
        last_stamp = max(sent)
        with arrived:  # the node answers the newest set it holds: the last one sent
            arrived.wait_for(lambda: last_stamp in arrivals, timeout=60.0)
        collect()
        answered = {stamp: at for stamp, at in answered.items() if stamp in sent}
        elapsed = time.monotonic() - start
        rss = list(child.rss)[first:]
        node_exit = child.stop()
    period = 0.2  # NodeProcess samples RSS every 0.2 s
    timeline = [[round(index * period, 1), round(value, 1)] for index, value in enumerate(rss)
                if index % int(10 / period) == 0]
    return {"duration_s": duration_s, "rate_hz": rate_hz, "sets_sent": len(sent), "sets_answered": len(answered),
            "answer_rate_hz": round(len(answered) / elapsed, 3),
            "latency_ms": summary([(answered[stamp] - sent[stamp]) * 1000.0 for stamp in answered]),
            "node_rss_mb": _rss_report(rss_start, rss), "rss_timeline": timeline,
            "node_exit": node_exit, "node_params": params, "node_log": str(child.log_path)}
