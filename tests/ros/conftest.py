"""Fixtures of the ROS tests.

The DDS environment is set here, at import, before any test imports rclpy: the project's
localhost-only Fast DDS profile and a ROS_DOMAIN_ID private to this test run. Tests that
need rclpy and the built interfaces (scripts/build_ros_interfaces.sh) are skipped, with the
reason, when those are missing.
"""

from __future__ import annotations

import os
import random
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))  # roskit, whatever pytest's import mode

import roskit  # noqa: E402

os.environ.update({k: v for k, v in roskit.ros_env().items()
                   if k in ("FASTDDS_DEFAULT_PROFILES_FILE", "RMW_IMPLEMENTATION")})
for _name in ("ROS_AUTOMATIC_DISCOVERY_RANGE", "ROS_LOCALHOST_ONLY", "ROS_STATIC_PEERS"):
    os.environ.pop(_name, None)
# A domain per test run (valid on every host: 0..101); kept when the caller chose one.
os.environ.setdefault("ROS_DOMAIN_ID", str(random.Random(os.getpid()).randint(1, 101)))


def _missing_ros() -> str | None:
    try:
        import rclpy  # noqa: F401
    except ImportError as error:
        return f"rclpy is not importable ({error}); install requirements/ros.txt"
    try:
        import omama_ros.msg  # noqa: F401
    except ImportError as error:
        return f"omama_ros.msg is not built ({error}); run scripts/build_ros_interfaces.sh"
    return None


@pytest.fixture(scope="session")
def ros_available():
    """Skips the test when rclpy or the omama_ros interfaces are missing."""
    reason = _missing_ros()
    if reason:
        pytest.skip(reason)


@pytest.fixture(scope="module")
def ros_context(ros_available):
    """An rclpy context of this test module (shut down at its end)."""
    import rclpy

    context = rclpy.Context()
    rclpy.init(context=context)
    yield context
    rclpy.try_shutdown(context=context)


@pytest.fixture
def start_node(tmp_path, request):
    """Starts omama nodes as subprocesses (roskit.NodeProcess arguments); stops them after the
    test and prints their logs when it failed."""
    started: list[roskit.NodeProcess] = []

    def start(params: dict | None = None, fake: dict | None = None, name: str = "omama",
              ros_args: tuple[str, ...] = ()) -> roskit.NodeProcess:
        node = roskit.NodeProcess(params or {}, tmp_path / f"{name}-{len(started)}.log", fake=fake, name=name,
                                  ros_args=ros_args)
        started.append(node)
        return node

    yield start
    for node in started:
        node.stop()
        report = getattr(request.node, "rep_call", None)
        if report is not None and report.failed:
            print(f"---- log of {node.log_path.name} ----\n{node.log()[-6000:]}")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Keep each phase's report on the test item (start_node prints logs of failed tests)."""
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"rep_{report.when}", report)
