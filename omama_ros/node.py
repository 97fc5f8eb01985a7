"""The omama ROS 2 node: ego and exo images + query masks in, matched masks out.

    ros2 run omama_ros omama_node --ros-args -p direction:=ego2exo     (ROS install)
    omama_ros_node --ros-args -p config:=default                       (pip install)

Inputs (relative, remappable): ego/image, exo/image (sensor_msgs/Image, or
CompressedImage on <topic>/compressed with image_transport:=compressed), queries
(omama_ros/QueryArray). Outputs, all stamped with the TARGET image's header: ~/matches
(omama_ros/MatchArray), ~/mask (mono8, pixel = query index + 1), ~/overlay (rgb8), and the
node's health on /diagnostics.

The two cameras are paired by the ApproximateTime policy (omama_ros.sync); a query array is
answered on the pair whose source image has the query's stamp (omama_ros.pairing). Callbacks
only pair messages; conversion and inference run in one worker thread on the newest complete
set (omama_ros.worker), so the node never works on stale frames and its memory is bounded.
"""

from __future__ import annotations

import signal
import sys
import threading
import time
from typing import Callable

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from rcl_interfaces.msg import SetParametersResult
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from omama_core.directions import source_and_target, source_view
from omama_core.visualize import label_image
from sensor_msgs.msg import CompressedImage, Image

from . import conversions
from .health import ERROR, Health, diagnostic_array
from .msg import Match, MatchArray, Query, QueryArray
from .overlay import render_overlay
from .pairing import FramePair, QueryPairer, Unmatched, WorkItem
from .queries import query_masks
from .parameters import BY_NAME, PARAMS, check_choice, descriptor
from .sync import make_synchronizer
from .worker import LatestOnlyWorker

# (config, device, direction, half) -> an object with match(...) and visibility_threshold,
# as omama_core.Matcher. Tests inject their own; production uses Matcher.from_config.
MatcherFactory = Callable[[str, str, str, bool], object]

# Topic names: relative (remappable, namespaced) inputs, private outputs.
EGO_IMAGE, EXO_IMAGE, QUERIES = "ego/image", "exo/image", "queries"
COMPRESSED_SUFFIX = "/compressed"
MATCHES, MASK, OVERLAY, DIAGNOSTICS = "~/matches", "~/mask", "~/overlay", "/diagnostics"


class StartupError(RuntimeError):
    """The node cannot start (bad parameter, missing weights, unavailable device)."""


def default_matcher_factory(config: str, device: str, direction: str, half: bool):
    """omama_core.Matcher.from_config; imported here because torch takes seconds to import."""
    from omama_core import Matcher

    return Matcher.from_config(config, device=device, direction=direction, half=half)


class OmamaNode(Node):
    """See the module docstring. `matcher_factory` replaces Matcher.from_config (tests)."""

    def __init__(self, matcher_factory: MatcherFactory | None = None, node_name: str = "omama", **kwargs):
        super().__init__(node_name, **kwargs)
        self.health = Health(self.get_logger().error)
        params = self._declare_parameters()
        self.direction = params["direction"]
        self.source_view = Query.VIEW_EGO if source_view(self.direction) == "ego" else Query.VIEW_EXO
        self.matcher = self._build_matcher(matcher_factory or default_matcher_factory, params)
        self._declare_threshold()
        self._publish_overlay = params["publish_overlay"]
        self.add_on_set_parameters_callback(self._on_set_parameters)

        raw = params["image_transport"] == "raw"
        self._decode = conversions.image_to_rgb if raw else conversions.compressed_to_rgb
        self._sync = make_synchronizer(2, params["sync_queue_size"], params["sync_slop"], self._on_pair)
        self._pairer = QueryPairer(history=params["sync_queue_size"], max_pending=params["sync_queue_size"])
        self._worker = LatestOnlyWorker(self._process, self._on_worker_error)
        self._last_set_failed = False
        self._device = params["device"]

        image_qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=params["qos_depth"],
                               reliability=ReliabilityPolicy.BEST_EFFORT if params["qos_reliability"] == "best_effort"
                               else ReliabilityPolicy.RELIABLE)
        image_type, suffix = (Image, "") if raw else (CompressedImage, COMPRESSED_SUFFIX)
        self.create_subscription(image_type, EGO_IMAGE + suffix, lambda msg: self._sync.add(0, msg), image_qos)
        self.create_subscription(image_type, EXO_IMAGE + suffix, lambda msg: self._sync.add(1, msg), image_qos)
        self.create_subscription(QueryArray, QUERIES, self._on_queries, QoSProfile(depth=10))
        self._matches_pub = self.create_publisher(MatchArray, MATCHES, 10)
        self._mask_pub = self.create_publisher(Image, MASK, 2)
        self._overlay_pub = self.create_publisher(Image, OVERLAY, 2)
        self._diagnostics_pub = self.create_publisher(DiagnosticArray, DIAGNOSTICS, 10)
        self.create_timer(params["diagnostics_period"], self._publish_diagnostics)
        self.get_logger().info(
            f"ready: {self.direction}, config {params['config']!r}, device {params['device']}, "
            f"{params['image_transport']} images, synchronizer {type(self._sync).__name__}")

    # ---- start-up --------------------------------------------------------------------------
    def _declare_parameters(self) -> dict:
        values = {}
        for spec in PARAMS:
            if spec.name == "visibility_threshold":
                continue  # declared once the matcher is built: its config gives the default
            values[spec.name] = self.declare_parameter(spec.name, spec.default, descriptor(spec)).value
            problem = check_choice(spec.name, values[spec.name])
            if problem:
                raise StartupError(problem)
        return values

    def _build_matcher(self, factory: MatcherFactory, params: dict):
        try:
            return factory(params["config"], params["device"], params["direction"], params["half"])
        except Exception as error:  # noqa: BLE001 - every start-up failure becomes one clear message
            raise StartupError(f"cannot build the matcher from config {params['config']!r} on device "
                               f"{params['device']!r}: {error}") from error

    def _declare_threshold(self) -> None:
        spec = BY_NAME["visibility_threshold"]
        default = min(max(float(self.matcher.visibility_threshold), spec.low), spec.high)
        value = self.declare_parameter(spec.name, default, descriptor(spec)).value
        self.matcher.visibility_threshold = float(value)

    def _on_set_parameters(self, parameters) -> SetParametersResult:
        # Ranges and read-only flags are enforced by rclpy before this callback.
        for parameter in parameters:
            if parameter.name == "visibility_threshold":
                self.matcher.visibility_threshold = float(parameter.value)
                self.get_logger().info(f"visibility_threshold set to {parameter.value}")
            elif parameter.name == "publish_overlay":
                self._publish_overlay = bool(parameter.value)
        return SetParametersResult(successful=True)

    # ---- callbacks: pairing only, no conversion or inference ---------------------------------
    def _on_pair(self, ego, exo) -> None:
        source, target = source_and_target(self.direction, ego, exo)
        pair = FramePair(source, target, conversions.stamp_to_ns(source.header.stamp))
        self.health.count("frame_pairs")
        ready, unmatched = self._pairer.add_pair(pair, time.monotonic())
        self._dispatch(ready, unmatched)

    def _on_queries(self, msg: QueryArray) -> None:
        self.health.count("query_arrays")
        if not msg.queries:
            self.health.error("bad_query", "received a QueryArray with no queries")
            return
        ready, unmatched = self._pairer.add_queries(msg, conversions.stamp_to_ns(msg.header.stamp),
                                                    time.monotonic())
        self._dispatch(ready, unmatched)

    def _dispatch(self, ready: list[WorkItem], unmatched: list[Unmatched]) -> None:
        for item in unmatched:
            sec, nanosec = divmod(item.stamp, 1_000_000_000)
            self.health.error("unmatched_query", f"{len(item.queries.queries)} query(ies) stamped "
                                                 f"{sec}.{nanosec:09d} dropped: {item.reason}")
        for item in ready:
            self._worker.submit(item)  # replaces a waiting set: counted by the worker

    # ---- worker thread ---------------------------------------------------------------------
    def _process(self, item: WorkItem) -> None:
        started = time.perf_counter()
        source_msg, target_msg = item.pair.source, item.pair.target
        try:
            source = self._decode(source_msg)
            target = self._decode(target_msg)
        except conversions.ConversionError as error:
            self.health.error("bad_image", str(error))
            return
        masks, problems = query_masks(item.queries, source.shape[:2], self.source_view, self.direction)
        for index, problem in problems.items():
            self.health.error("bad_query", f"query {index} ({item.queries.queries[index].id!r}): {problem}")
        valid = [index for index in range(len(masks)) if index not in problems]
        results = dict(zip(valid, self.matcher.match(source, np.stack([masks[i] for i in valid]), target))) \
            if valid else {}
        self._publish(item, target, results, problems, started)

    def _publish(self, item: WorkItem, target: np.ndarray, results: dict, problems: dict, started: float) -> None:
        header = item.pair.target.header
        out = MatchArray(header=header, source_stamp=item.queries.header.stamp)
        shape = target.shape[:2]
        masks, boxes, names = [], [], []
        for index, query in enumerate(item.queries.queries):
            result = results.get(index)
            match = Match(header=header, source_stamp=item.queries.header.stamp, query_id=query.id,
                          source_view=query.source_view)
            if result is None:
                mask, box = np.zeros(shape, bool), None
                match.score, match.reason = -1.0, f"invalid query: {problems.get(index, 'not processed')}"
            else:
                mask, box = result.mask, result.box
                match.visible, match.visibility = bool(result.visible), float(result.visibility)
                match.score, match.num_candidates = float(result.score), int(result.num_candidates)
                match.reason = result.reason or ""
                if box is not None:
                    x0, y0, x1, y1 = (int(v) for v in box)
                    match.box.x_offset, match.box.y_offset, match.box.width, match.box.height = x0, y0, x1 - x0, y1 - y0
            match.mask = conversions.mask_to_image(mask, header)
            out.matches.append(match)
            masks.append(mask)
            boxes.append(box)
            names.append(query.id)
        labels = label_image(masks, shape)
        now_ns = self.get_clock().now().nanoseconds
        out.processing_ms = (time.perf_counter() - started) * 1000.0
        out.latency_ms = (now_ns - conversions.stamp_to_ns(header.stamp)) / 1e6
        self._matches_pub.publish(out)
        self._mask_pub.publish(conversions.labels_to_image(labels, header))
        if self._publish_overlay and self._overlay_pub.get_subscription_count() > 0:
            self._overlay_pub.publish(conversions.rgb_to_image(render_overlay(target, masks, boxes, names), header))
        self._last_set_failed = False
        self.health.count("processed_sets")
        self.health.timing(out.processing_ms, out.latency_ms)

    def _on_worker_error(self, error: BaseException, item: WorkItem) -> None:
        # omama_core.errors.InputError by name: importing omama_core here would import torch.
        kind = "bad_input" if type(error).__name__ == "InputError" else "model_exception"
        self._last_set_failed = True
        self.health.error(kind, f"{type(error).__name__}: {error}")

    # ---- diagnostics -----------------------------------------------------------------------
    def _publish_diagnostics(self) -> None:
        level, message, values = self.health.snapshot({
            "direction": self.direction,
            "visibility_threshold": f"{self.matcher.visibility_threshold:.3f}",
            "submitted_sets": self._worker.submitted,
            "dropped_while_busy": self._worker.dropped,
            "failed_sets": self._worker.failed,
            "sync_emitted": self._sync.emitted,
            "sync_dropped": "n/a" if self._sync.dropped is None else self._sync.dropped,
            "queries_waiting": self._pairer.pending(),
            "synchronizer": type(self._sync).__name__,
        })
        if self._last_set_failed:
            level = ERROR  # the newest set could not be processed at all
        self._diagnostics_pub.publish(diagnostic_array(self.get_clock().now().to_msg(), f"omama: {self.get_name()}",
                                                       self._device, level, message, values))

    def close(self) -> None:
        """Stop the worker (the set in progress finishes first)."""
        self._worker.stop()


def spin_until_shutdown(executor) -> None:
    """executor.spin() until Ctrl-C or an external shutdown.

    rclpy's SIGINT handler shuts the context down from another thread. When that lands while
    the executor is building its wait set, rclpy raises RCLError ("the given context is not
    valid") instead of ExternalShutdownException (the race of ros2/rclpy#398). With the context
    already shut down it is the same shutdown, so it ends the node cleanly; any other error
    is raised.
    """
    try:
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except Exception:
        if executor.context.ok():
            raise


def main(args: list[str] | None = None, matcher_factory: MatcherFactory | None = None) -> int:
    """Console entry point (`omama_ros_node`, `ros2 run omama_ros omama_node`); returns the exit
    code: 0 after a normal shutdown, 1 when the node cannot start."""
    rclpy.init(args=args)
    try:
        node = OmamaNode(matcher_factory)
    except StartupError as error:
        rclpy.logging.get_logger("omama").fatal(str(error))
        rclpy.try_shutdown()
        return 1
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    try:
        spin_until_shutdown(executor)
    finally:
        # Under `ros2 launch` a Ctrl-C reaches the node twice (the terminal signals the whole
        # process group, then launch signals the node): the second must not break the clean-up
        # (the set in progress finishing) with a KeyboardInterrupt. SIGTERM still ends it.
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGINT, signal.SIG_IGN)
        node.close()
        executor.shutdown()
        node.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
