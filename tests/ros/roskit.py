"""Helpers for the ROS tests: the environment of ROS processes, the node as a subprocess,
an rclpy probe (publisher + subscriber) in the test process, and synthetic scenes.

DDS must stay on this machine: every ROS process (this one included, see conftest.py) uses
the project's Fast DDS profile (shared memory + UDP on 127.0.0.1, unicast discovery) and a
ROS_DOMAIN_ID private to the test run; CI also runs the tests in a private network namespace.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
PROFILE = REPO / "ros" / "fastdds-localhost.xml"
HERE = Path(__file__).resolve().parent
SIZE = (120, 160)  # (H, W) of the synthetic frames: small keeps DDS tests fast


def ros_env(base: dict | None = None) -> dict:
    """Environment for a ROS process of this test run."""
    env = dict(os.environ if base is None else base)
    env["FASTDDS_DEFAULT_PROFILES_FILE"] = str(PROFILE)
    for name in ("ROS_AUTOMATIC_DISCOVERY_RANGE", "ROS_LOCALHOST_ONLY", "ROS_STATIC_PEERS"):
        env.pop(name, None)
    env.setdefault("ROS_DOMAIN_ID", os.environ.get("ROS_DOMAIN_ID", "0"))
    env["RMW_IMPLEMENTATION"] = "rmw_fastrtps_cpp"
    env["PYTHONPATH"] = os.pathsep.join([str(REPO)] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    env["PYTHONUNBUFFERED"] = "1"
    # A child must run the venv's own bootstrap (it sets LD_LIBRARY_PATH for the ROS wheels and
    # re-executes); values inherited from another interpreter make it fail.
    env.pop("_ROS_WHEELS_BOOTSTRAP_COMPLETE", None)
    env.pop("LD_LIBRARY_PATH", None)
    return env


class NodeProcess:
    """The omama node in its own process; output goes to `log_path`.

    Args:
        params: ROS parameters (name -> value), passed as --ros-args -p.
        log_path: file for the node's stdout and stderr.
        fake: None for the real node (`python -m omama_ros.node`), else the keyword
            arguments of tests/ros/fake_node.py (delay, fail_calls, mode).
        name: node name (the output topics are /<name>/matches, ...).
        ros_args: more arguments after --ros-args (e.g. --params-file FILE), before the -p ones.
    """

    def __init__(self, params: dict, log_path: Path, fake: dict | None = None, name: str = "omama",
                 ros_args: tuple[str, ...] = ()):
        self.name = name
        self.log_path = Path(log_path)
        if fake is None:
            command = [sys.executable, "-m", "omama_ros.node"]
        else:
            command = [sys.executable, str(HERE / "fake_node.py")]
            command += [f"--{key}={value}" for key, value in fake.items()]
        command += ["--ros-args", "-r", f"__node:={name}", "--log-level", f"{name}:=info", *ros_args]
        for key, value in params.items():
            text = str(value).lower() if isinstance(value, bool) else str(value)
            command += ["-p", f"{key}:={text}"]
        self._log = open(self.log_path, "w")
        self.process = subprocess.Popen(command, cwd=REPO, env=ros_env(), stdout=self._log,
                                        stderr=subprocess.STDOUT, start_new_session=True)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_for_log(self, text: str, timeout: float = 60.0) -> bool:
        """Wait until `text` appears in the log; False on timeout or when the process exits."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in self.log():
                return True
            if self.process.poll() is not None:
                return text in self.log()
            time.sleep(0.1)
        return False

    def alive(self) -> bool:
        return self.process.poll() is None

    def rss_kb(self) -> int:
        """Resident memory of the node process, KiB."""
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise RuntimeError("no VmRSS")

    def stop(self, timeout: float = 15.0) -> int:
        """SIGINT (a clean rclpy shutdown), then SIGKILL; returns the exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(5)
        self._log.close()
        return self.process.returncode


# ---- synthetic scenes ---------------------------------------------------------------------------
def make_scene(seed: int, size: tuple[int, int] = SIZE):
    """Two views of a few coloured objects on a textured table.

    Returns (ego RGB, exo RGB, ego masks (K, H, W) bool, exo masks (K, H, W) bool); the exo
    view shows the same objects elsewhere, slightly resized.
    """
    rng = np.random.default_rng(seed)
    height, width = size
    colours = np.array([(220, 40, 40), (40, 200, 60), (40, 80, 230), (230, 200, 30)], np.uint8)

    def background():
        yy, xx = np.mgrid[0:height, 0:width]
        base = 90 + 30 * np.sin(xx / 7.0 + seed) * np.cos(yy / 9.0)
        noise = rng.normal(0, 6, (height, width))
        return np.clip(np.stack([base + noise] * 3, axis=2), 0, 255).astype(np.uint8)

    ego, exo = background(), background()
    ego_masks, exo_masks = [], []
    for index, colour in enumerate(colours[:3]):
        for image, masks, scale in ((ego, ego_masks, 1.0), (exo, exo_masks, 0.8)):
            h = int(rng.integers(18, 30) * scale)
            w = int(rng.integers(22, 36) * scale)
            y = int(rng.integers(5, height - h - 5))
            x = int(5 + index * (width - 10) // 3 + rng.integers(0, max(1, (width - 10) // 3 - w)))
            yy, xx = np.mgrid[0:height, 0:width]
            mask = ((yy - y - h / 2) / (h / 2)) ** 2 + ((xx - x - w / 2) / (w / 2)) ** 2 <= 1.0
            mask &= ~np.any(masks, axis=0) if masks else True
            image[mask] = colour
            masks.append(mask)
    return ego, exo, np.stack(ego_masks), np.stack(exo_masks)


def stamp(ns: int):
    from builtin_interfaces.msg import Time

    return Time(sec=ns // 1_000_000_000, nanosec=ns % 1_000_000_000)


def header(ns: int, frame_id: str):
    from std_msgs.msg import Header

    return Header(stamp=stamp(ns), frame_id=frame_id)


def query_array(ns: int, masks, ids, view: int = 0, frame_id: str = "ego_camera"):
    """An omama_ros/QueryArray on the source frame stamped `ns` (masks: bool (H, W) each)."""
    from omama_ros.conversions import mask_to_image
    from omama_ros.msg import Query, QueryArray

    queries = [Query(header=header(ns, frame_id), id=str(qid), source_view=view, mask=mask_to_image(mask))
               for mask, qid in zip(masks, ids)]
    return QueryArray(header=header(ns, frame_id), queries=queries)


class Probe:
    """An rclpy node in the test process: publishes frames and queries, collects outputs."""

    def __init__(self, context, node_name: str = "omama", transport: str = "raw"):
        from diagnostic_msgs.msg import DiagnosticArray
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.node import Node
        from rclpy.qos import QoSProfile, ReliabilityPolicy
        from sensor_msgs.msg import CompressedImage, Image

        from omama_ros.msg import MatchArray, QueryArray

        self.node = Node("omama_test_probe", context=context)
        self.node_name = node_name
        self.executor = SingleThreadedExecutor(context=context)
        self.executor.add_node(self.node)
        image_type, suffix = (Image, "") if transport == "raw" else (CompressedImage, "/compressed")
        reliable = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        self.ego_pub = self.node.create_publisher(image_type, "ego/image" + suffix, reliable)
        self.exo_pub = self.node.create_publisher(image_type, "exo/image" + suffix, reliable)
        self.query_pub = self.node.create_publisher(QueryArray, "queries", reliable)
        self.matches: list = []
        self.masks: list = []
        self.overlays: list = []
        self.diagnostics: list = []
        self.received_at: list[float] = []
        self.node.create_subscription(MatchArray, f"/{node_name}/matches", self._on_matches, reliable)
        self.node.create_subscription(Image, f"/{node_name}/mask", self.masks.append, reliable)
        self.node.create_subscription(Image, f"/{node_name}/overlay", self.overlays.append, reliable)
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self.diagnostics.append, reliable)

    def _on_matches(self, msg) -> None:
        self.matches.append(msg)
        self.received_at.append(time.monotonic())

    def spin_until(self, predicate, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return True
            self.executor.spin_once(timeout_sec=0.02)
        return predicate()

    def spin_for(self, seconds: float) -> None:
        self.spin_until(lambda: False, seconds)

    def wait_connected(self, timeout: float = 60.0) -> bool:
        """Wait until the node subscribes to our three topics, publishes its matches and has
        sent us diagnostics (so its writers have matched our readers too)."""
        return self.spin_until(lambda: self.ego_pub.get_subscription_count() > 0
                               and self.exo_pub.get_subscription_count() > 0
                               and self.query_pub.get_subscription_count() > 0
                               and self.node.count_publishers(f"/{self.node_name}/matches") > 0
                               and bool(self.latest_diagnostic_values()), timeout)

    def latest_diagnostic_values(self) -> dict[str, str]:
        """Key-values of the newest omama diagnostic status."""
        for array in reversed(self.diagnostics):
            for status in array.status:
                if status.name.startswith("omama"):
                    return {kv.key: kv.value for kv in status.values}
        return {}

    def close(self) -> None:
        self.executor.shutdown()
        self.node.destroy_node()
