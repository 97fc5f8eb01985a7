"""The omama node with an injected matcher, for tests (run as a script, like the real node).

    python tests/ros/fake_node.py --mode=flaky --fail_calls=1 --ros-args ...
        the real Matcher (config from the node's parameters), raising on the listed calls
    python tests/ros/fake_node.py --mode=slow --delay=0.15 --ros-args ...
        a stand-in matcher that takes `delay` seconds and answers each query with its own
        mask (source and target images have the same size in the tests)
    python tests/ros/fake_node.py --mode=echo --delay=0.0 --ros-args ...
        tests/bag_fakes.EchoMatcher: the query mask resized to the target (the bag tests)

It uses the node's public injection point, `omama_ros.node.main(matcher_factory=...)`.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass, field

import numpy as np

from omama_ros.node import default_matcher_factory, main


class InjectedFault(RuntimeError):
    """Raised by FlakyMatcher on purpose."""


class FlakyMatcher:
    """Wraps a matcher; its match() raises on the given (1-based) call numbers."""

    def __init__(self, inner, fail_calls: set[int]):
        self.inner = inner
        self.fail_calls = fail_calls
        self.calls = 0

    @property
    def visibility_threshold(self) -> float:
        return self.inner.visibility_threshold

    @visibility_threshold.setter
    def visibility_threshold(self, value: float) -> None:
        self.inner.visibility_threshold = value

    def match(self, source_image, source_masks, target_image):
        self.calls += 1
        if self.calls in self.fail_calls:
            raise InjectedFault(f"injected fault on call {self.calls}")
        return self.inner.match(source_image, source_masks, target_image)


@dataclass
class FakeResult:
    """The fields of omama_core.MatchResult that the node reads."""

    mask: np.ndarray
    box: tuple | None
    visible: bool = True
    visibility: float = 1.0
    score: float = 1.0
    num_candidates: int = 1
    reason: str | None = None
    timings: dict = field(default_factory=dict)


class SlowMatcher:
    """Takes `delay` seconds per call; answers each query with its own mask."""

    def __init__(self, delay: float):
        self.delay = delay
        self.visibility_threshold = 0.5

    def match(self, source_image, source_masks, target_image):
        time.sleep(self.delay)
        masks = np.asarray(source_masks, bool).reshape(-1, *source_image.shape[:2])
        results = []
        for mask in masks:
            mask = mask[: target_image.shape[0], : target_image.shape[1]]
            rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
            box = (int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1) if rows.size else None
            results.append(FakeResult(mask=mask.copy(), box=box))
        return results


def run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--mode", choices=("flaky", "slow", "echo"), required=True)
    parser.add_argument("--fail_calls", default="1", help="comma-separated call numbers that raise")
    parser.add_argument("--delay", type=float, default=0.15)
    ours, ros_args = parser.parse_known_args(argv)

    def factory(config: str, device: str, direction: str, half: bool):
        if ours.mode == "slow":
            return SlowMatcher(ours.delay)
        if ours.mode == "echo":
            from tests.bag_fakes import EchoMatcher

            return EchoMatcher(ours.delay)
        fail = {int(n) for n in ours.fail_calls.split(",") if n}
        return FlakyMatcher(default_matcher_factory(config, device, direction, half), fail)

    return main(args=[sys.argv[0], *ros_args], matcher_factory=factory)


if __name__ == "__main__":
    sys.exit(run(sys.argv[1:]))
