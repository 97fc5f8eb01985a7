"""`omama bag eval-live`: a bag replayed through the node, its answers scored.

It starts the node (`python -m omama_ros.node`, in this process's network namespace
and DDS profile, inputs remapped to the replayed topics) or attaches to a running one, plays
the bag's images and queries into it, records its ~/matches and scores them against the
bag's ground truth exactly as `omama bag eval` does (omama_core.bags.scoring). It adds the
end-to-end latency (the last input of a set handed to DDS -> its MatchArray received, both
in this process), throughput, drops (query arrays never answered: scored as misses) and the
started node's memory (RSS of its process).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import rclpy
from rclpy.executors import SingleThreadedExecutor
from rclpy.qos import QoSProfile
from tqdm import tqdm

from omama_core.bags.layout import Topics
from omama_core.bags.offline import RESULTS_KEY, image_loader, open_bag
from omama_core.bags.reader import BagReader
from omama_core.bags.report import Problems, stats
from omama_core.bags.scoring import answers_from_match_array, score_bag
from omama_core.bags.typestore import MATCH_ARRAY, typestore
from omama_core.directions import views
from omama_core.errors import OmamaError

from . import conversions
from .player import Player

NODE_NAME = "omama"
NODE_COMMAND = [sys.executable, "-m", "omama_ros.node"]  # the started node, before its --ros-args


class NodeProcess:
    """The node started for a live evaluation: `python -m omama_ros.node` in this process's
    network namespace and DDS settings, its output in `log_path`."""

    def __init__(self, name: str, namespace: str, remaps: dict[str, str], params: dict[str, Any], log_path: Path,
                 node_command: list[str] | None = None):
        command = list(node_command or NODE_COMMAND)
        command += ["--ros-args", "-r", f"__node:={name}", "-r", f"__ns:={namespace}"]
        for source, target in remaps.items():
            command += ["-r", f"{source}:={target}"]
        for key, value in params.items():
            command += ["-p", f"{key}:={str(value).lower() if isinstance(value, bool) else value}"]
        env = dict(os.environ)
        if "_ROS_WHEELS_BOOTSTRAP_COMPLETE" in env:  # pip wheels: the child must run its own bootstrap
            env.pop("_ROS_WHEELS_BOOTSTRAP_COMPLETE")
            env.pop("LD_LIBRARY_PATH", None)
        repo = str(Path(__file__).resolve().parents[1])
        env["PYTHONPATH"] = os.pathsep.join([repo] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
        env["PYTHONUNBUFFERED"] = "1"
        self.log_path = log_path
        self._log = open(log_path, "w")
        self.command = command
        self.process = subprocess.Popen(command, env=env, stdout=self._log, stderr=subprocess.STDOUT,
                                        start_new_session=True)
        self.rss: list[float] = []  # MB, sampled
        self._sampling = True
        self._sampler = threading.Thread(target=self._sample, daemon=True)
        self._sampler.start()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def rss_mb(self) -> float | None:
        try:
            with open(f"/proc/{self.process.pid}/status") as handle:
                for line in handle:
                    if line.startswith("VmRSS:"):
                        return int(line.split()[1]) / 1024.0
        except OSError:
            return None
        return None

    def _sample(self) -> None:
        while self._sampling and self.process.poll() is None:
            value = self.rss_mb()
            if value is not None:
                self.rss.append(value)
            time.sleep(0.2)

    def wait_ready(self, timeout: float) -> None:
        """Until the node logs "ready"; OmamaError with its log when it exits or times out."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if "ready:" in self.log():
                return
            if self.process.poll() is not None:
                raise OmamaError(f"the node exited with code {self.process.returncode} at start-up; its log "
                                 f"({self.log_path}):\n{self.log()[-3000:]}")
            time.sleep(0.1)
        raise OmamaError(f"the node did not start within {timeout:.0f} s (--startup-timeout); log: {self.log_path}")

    def stop(self, timeout: float = 10.0) -> int | None:
        """SIGINT (a clean shutdown), then SIGKILL; returns the exit code."""
        self._sampling = False
        if self.process.poll() is None:
            try:
                os.killpg(self.process.pid, signal.SIGINT)
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(5)
            except ProcessLookupError:
                pass
        self._log.close()
        return self.process.returncode


class Recorder:
    """The node's MatchArrays (raw CDR) with their monotonic arrival times, and its last
    diagnostics values."""

    def __init__(self, node, matches_topic: str, node_name: str):
        from diagnostic_msgs.msg import DiagnosticArray

        from .msg import MatchArray

        self.arrivals: list[tuple[float, int, bytes]] = []  # (monotonic s, wall ns, CDR)
        self.diagnostics: dict[str, str] = {}
        self._lock = threading.Lock()
        self._status = f"omama: {node_name.rsplit('/', 1)[-1]}"
        node.create_subscription(MatchArray, matches_topic, self._on_matches, QoSProfile(depth=100), raw=True)
        node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diagnostics, 10)

    def _on_matches(self, data: bytes) -> None:
        with self._lock:
            self.arrivals.append((time.monotonic(), time.time_ns(), bytes(data)))

    def _on_diagnostics(self, msg) -> None:
        for status in msg.status:
            if status.name == self._status:
                self.diagnostics = {v.key: v.value for v in status.values}

    def count(self) -> int:
        with self._lock:
            return len(self.arrivals)


def visibility_threshold(node, target: str, timeout: float = 5.0) -> float | None:
    """The node's visibility_threshold parameter (None when it cannot be read)."""
    try:
        from rclpy.parameter_client import AsyncParameterClient
    except ImportError:  # rclpy before Iron: the threshold then only defaults the confidence mapping
        return None

    client = AsyncParameterClient(node, target)
    if not client.wait_for_services(timeout_sec=timeout):
        return None
    future = client.get_parameters(["visibility_threshold"])
    deadline = time.monotonic() + timeout
    while not future.done() and time.monotonic() < deadline:
        time.sleep(0.02)
    if not future.done() or future.result() is None or not future.result().values:
        return None
    return float(future.result().values[0].double_value)


def evaluate_live(bag: str | os.PathLike, out: str | os.PathLike, rate: float = 1.0, attach: str | None = None,
                  config: str = "default", device: str = "auto", node_params: dict | None = None,
                  record: str | os.PathLike | None = None, topics: Topics | None = None, direction: str | None = None,
                  startup_timeout: float = 300.0, drain: float = 10.0, plots: bool = True,
                  progress: bool = True, node_command: list[str] | None = None) -> dict[str, Any]:
    """`omama bag eval-live` (module docstring). Returns the report written to out/metrics.json.
    node_command: the started node's command line before --ros-args (default NODE_COMMAND;
    tests start the node with an injected matcher)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if record is not None and Path(record).exists():
        raise OmamaError(f"{record} exists already; choose a new result bag folder")
    opened = open_bag(bag, topics, direction)
    reader, truth, problems = opened.reader, opened.truth(), Problems()
    inputs = {topic: reader.topics[topic] for topic, role in opened.roles.items() if role != "ground_truth"}
    context = rclpy.Context()
    rclpy.init(context=context)
    node = rclpy.create_node("omama_bag_eval", context=context)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    spinner = threading.Thread(target=executor.spin, daemon=True)
    child: NodeProcess | None = None
    try:
        if attach:
            target, prefix = "/" + attach.strip("/"), ""
        else:
            namespace = f"/omama_bag_{os.getpid()}"  # private topics: nothing else on the graph is disturbed
            target, prefix = f"{namespace}/{NODE_NAME}", namespace
            suffix = "/compressed" if opened.topics.compressed else ""
            remaps = {f"ego/image{suffix}": prefix + opened.topics.ego_image,
                      f"exo/image{suffix}": prefix + opened.topics.exo_image,
                      "queries": prefix + opened.topics.queries}
            params = {"config": config, "device": device, "direction": opened.direction,
                      "image_transport": "compressed" if opened.topics.compressed else "raw", **(node_params or {})}
            child = NodeProcess(NODE_NAME, namespace, remaps, params, out / "node.log", node_command)
            child.wait_ready(startup_timeout)
        player = Player(node, inputs, rate, prefix=prefix)
        recorder = Recorder(node, f"{target}/matches", target)
        spinner.start()
        if not player.wait_for_subscribers(list(inputs), timeout=30.0 if attach else 60.0):
            raise OmamaError(f"no subscriber on {', '.join(prefix + t for t in inputs)} after waiting: is the node "
                             f"{target} running and subscribed to these topics?")
        deadline = time.monotonic() + 30.0
        while node.count_publishers(f"{target}/matches") == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        threshold = visibility_threshold(node, target)
        rss_start = child.rss_mb() if child else None
        published, arrays = _play_inputs(reader, opened, truth, player, progress)
        _drain(recorder, len(arrays), drain, published)
        node_exit = None
        rss = list(child.rss) if child else []
        if child:
            node_exit = child.stop()
            if node_exit not in (0, None, -signal.SIGINT):
                problems.add("node_exit", f"the node exited with code {node_exit}; log {child.log_path}")
    finally:
        executor.shutdown(timeout_sec=1.0)
        node.destroy_node()
        rclpy.try_shutdown(context=context)
        if child:
            child.stop()  # no-op when it was stopped above; always closes its log
    arrivals = list(recorder.arrivals)
    answers, latencies, processing, answered, records = {}, [], [], set(), {}
    store = typestore()
    for arrived, _, data in arrivals:
        msg = store.deserialize_cdr(data, MATCH_ARRAY)
        answers.update(answers_from_match_array(msg, threshold if threshold is not None else 0.5))
        source = conversions.stamp_to_ns(msg.source_stamp)
        target_stamp = conversions.stamp_to_ns(msg.header.stamp)
        answered.add(source)
        sent = [published.get(("source", source)), published.get(("target", target_stamp)),
                published.get(("queries", source))]
        latency = (arrived - max(sent)) * 1000.0 if all(t is not None for t in sent) else None
        if latency is not None:
            latencies.append(latency)
        processing.append(float(msg.processing_ms))
        records[source] = {"source_stamp": source, "target_stamp": target_stamp, "answered": True,
                           "queries": len(msg.matches), "latency_ms": None if latency is None else round(latency, 1),
                           "processing_ms": round(float(msg.processing_ms), 1)}
    first_sent = min(published.values()) if published else None
    span = (arrivals[-1][0] - first_sent) if arrivals and first_sent is not None else None
    play_span = (max(published.values()) - first_sent) if published else None
    report = {
        "mode": "live", "bag": str(bag), "direction": opened.direction, "masks": "published", "rate": rate,
        "node": target, "attached": bool(attach), "config": None if attach else config,
        "visibility_threshold": threshold,
        "query_arrays": len(arrays), "answered_arrays": len(answered & set(arrays)),
        "dropped_arrays": len(set(arrays) - answered),
        "latency_ms": stats(latencies), "processing_ms": stats(processing),
        "throughput_hz": round(len(arrivals) / span, 3) if span else None,
        "input_hz": round(len(arrays) / play_span, 3) if play_span else None,
        "node_rss_mb": _rss_report(rss_start, rss) if child else None,
        "node_diagnostics": recorder.diagnostics, "node_exit": node_exit,
        "latency_definition": "last input of a set (source image, target image, query array) published by the "
                              "player -> its MatchArray received, monotonic clock of this process",
        **problems.merged(reader),
    }
    if record is not None:
        _write_results(record, arrivals, threshold, bag)
        report["record"] = str(record)
    loader = image_loader(opened, truth, conversions.compressed_to_rgb if opened.topics.compressed
                          else conversions.image_to_rgb)
    sets = [records.get(stamp, {"source_stamp": stamp, "answered": False}) for stamp in arrays]
    return score_bag(truth, answers, out, report, loader, plots, progress, sets)


def _play_inputs(reader: BagReader, opened, truth, player: Player, progress: bool):
    """Publish the inputs, collect the ground truth; returns the publication times by
    (role, stamp) and the stamps of the query arrays sent."""
    roles = opened.roles
    source_role, target_role = views(opened.direction)
    published: dict[tuple[str, int], float] = {}
    arrays: list[int] = []
    bar = tqdm(total=reader.count(roles), desc=f"replaying x{player.rate:g}", unit="msg", disable=not progress)
    for raw in reader.raw(roles):
        bar.update()
        role = roles[raw.topic]
        msg = reader.deserialize(raw)
        if msg is None:
            continue
        if role == "ground_truth":
            truth.add_ground_truth(msg)
            continue
        stamp = conversions.stamp_to_ns(msg.header.stamp)
        if role == "queries":
            truth.add_queries(msg)
        sent = player.publish(raw.topic, raw.log_time, raw.data)
        if role == "queries":
            arrays.append(stamp)
            published[("queries", stamp)] = sent
        else:
            published[("source" if role == source_role else "target", stamp)] = sent
    bar.close()
    return published, arrays


def _drain(recorder: Recorder, expected: int, drain: float, published: dict) -> None:
    """Wait for answers in flight: until every array is answered, or `drain` s without a new one."""
    last_count, last_change = recorder.count(), time.monotonic()
    while recorder.count() < expected and time.monotonic() - last_change < drain:
        time.sleep(0.05)
        if recorder.count() != last_count:
            last_count, last_change = recorder.count(), time.monotonic()


def _rss_report(start: float | None, samples: list[float]) -> dict[str, Any]:
    return {"start": None if start is None else round(start, 1),
            "peak": round(max(samples), 1) if samples else None,
            "end": round(samples[-1], 1) if samples else None, "samples": len(samples)}


def _write_results(path: str | os.PathLike, arrivals: list, threshold: float | None, bag) -> None:
    """The answers as a result bag: MatchArray on /omama/matches at their arrival (wall) time."""
    from rosbags.rosbag2 import StoragePlugin, Writer

    store = typestore()
    with Writer(Path(path), version=9, storage_plugin=StoragePlugin.MCAP) as writer:
        connection = writer.add_connection("/omama/matches", MATCH_ARRAY, typestore=store)
        for _, wall_ns, data in arrivals:
            writer.write(connection, wall_ns, data)
        writer.set_custom_data(RESULTS_KEY, json.dumps({"visibility_threshold": threshold, "bag": str(bag)}))
