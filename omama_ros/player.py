"""`omama bag play`: a bag's messages published into a live ROS graph with their recorded timing.

The recorded CDR bytes are published unchanged (no conversion), at `rate` x the recorded
speed, optionally with /clock carrying the bag's time for nodes on use_sim_time: what
`ros2 bag play --clock` does on a ROS install. omama_ros.replay uses the same Player to feed
the node during `omama bag eval-live`.
"""

from __future__ import annotations

import importlib
import os
import time
from typing import Any

import rclpy
from rclpy.qos import QoSProfile, ReliabilityPolicy
from tqdm import tqdm

from omama_core.bags.layout import NS
from omama_core.bags.reader import BagReader
from omama_core.bags.typestore import CLOCK

from . import conversions

PUBLISH_QOS = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)
CLOCK_PERIOD = 0.01  # s of wall time between /clock messages while waiting


def message_class(msgtype: str):
    """"sensor_msgs/msg/Image" -> the rclpy message class (ImportError when not installed)."""
    package, _, name = msgtype.split("/")
    return getattr(importlib.import_module(f"{package}.msg"), name)


class Player:
    """Publishes raw bag messages on their topics (plus `prefix`) at `rate` x recorded speed."""

    def __init__(self, node, topics: dict[str, str], rate: float = 1.0, clock: bool = False, prefix: str = ""):
        self.node, self.rate, self.prefix = node, float(rate), prefix.rstrip("/")
        # a recorded clock stays global: /clock under a prefix would reach no node
        self.publishers = {topic: node.create_publisher(message_class(msgtype),
                                                        topic if msgtype == CLOCK else self.prefix + topic, PUBLISH_QOS)
                           for topic, msgtype in topics.items()}
        self._clock = node.create_publisher(message_class(CLOCK), "/clock", 10) if clock else None
        self._start_wall: float | None = None
        self._start_bag = 0

    def wait_for_subscribers(self, topics, timeout: float) -> bool:
        """Until every one of `topics` has a subscriber (discovery), or `timeout` s."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all(self.publishers[t].get_subscription_count() > 0 for t in topics):
                return True
            time.sleep(0.05)
        return False

    def publish(self, topic: str, log_time: int, data: bytes) -> float:
        """Wait until `log_time`'s turn, publish; returns the monotonic time of publication."""
        if self._start_wall is None:
            self._start_wall, self._start_bag = time.monotonic(), log_time
        due = self._start_wall + (log_time - self._start_bag) / NS / self.rate
        while True:
            now = time.monotonic()
            if self._clock is not None:
                bag_now = self._start_bag + int((now - self._start_wall) * self.rate * NS)
                self._publish_clock(min(bag_now, log_time))
            if now >= due:
                break
            time.sleep(min(due - now, CLOCK_PERIOD if self._clock is not None else 0.05))
        self.publishers[topic].publish(bytes(data))
        return time.monotonic()

    def restart(self) -> None:
        """The next message starts a new timeline (--loop)."""
        self._start_wall = None

    def _publish_clock(self, ns: int) -> None:
        msg = message_class(CLOCK)()
        msg.clock = conversions.ns_to_stamp(ns)
        self._clock.publish(msg)


def play_bag(bag: str | os.PathLike, rate: float = 1.0, clock: bool = False, loop: bool = False,
             topics: list[str] | None = None, prefix: str = "", progress: bool = True,
             wait_for_subscribers: bool = False, wait_timeout: float = 30.0) -> dict[str, Any]:
    """`omama bag play`: publish the bag (every topic of a type this ROS install knows, or
    `topics`) until it ends (or Ctrl-C with `loop`). wait_for_subscribers: start once every
    played topic has a subscriber (up to `wait_timeout` s)."""
    reader = BagReader(bag)
    chosen = {}
    for topic, msgtype in reader.topics.items():
        if (topics and topic not in topics) or (clock and msgtype == CLOCK):
            continue  # with --clock the player publishes the bag's time itself
        try:
            message_class(msgtype)
            chosen[topic] = msgtype
        except (ImportError, AttributeError, ValueError):
            reader.problem("unknown_type", f"{topic} ({msgtype}) is not a type of this ROS environment: not played")
    context = rclpy.Context()
    rclpy.init(context=context)
    node = rclpy.create_node("omama_bag_play", context=context)
    published, rounds = 0, 0
    try:
        player = Player(node, chosen, rate, clock, prefix)
        if wait_for_subscribers and not player.wait_for_subscribers(list(chosen), wait_timeout):
            reader.problem("no_subscriber", f"not every played topic has a subscriber after {wait_timeout:.0f} s; "
                                            "played anyway")
        while True:
            rounds += 1
            total = reader.count(chosen)
            for raw in tqdm(reader.raw(chosen), total=total, desc=f"playing x{rate:g}", unit="msg",
                            disable=not progress):
                player.publish(raw.topic, raw.log_time, raw.data)
                published += 1
            if not loop:
                break
            player.restart()
        time.sleep(0.5)  # let reliable subscribers take the last messages
    except KeyboardInterrupt:
        pass
    finally:
        node.destroy_node()
        rclpy.try_shutdown(context=context)
    return {"bag": str(bag), "topics": sorted(t if m == CLOCK else prefix.rstrip("/") + t for t, m in chosen.items())
            + (["/clock"] if clock else []), "published": published,
            "rounds": rounds, "rate": rate, "clock": clock, "problems": reader.problems}
