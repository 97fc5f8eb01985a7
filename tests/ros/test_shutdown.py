"""Ctrl-C under `ros2 launch`: the terminal sends SIGINT to the whole process group and launch
then sends the node another one. The second may land while the node shuts down (finishing the
set in progress); it must still end cleanly: exit code 0, no KeyboardInterrupt traceback."""

from __future__ import annotations

import signal

import pytest

from roskit import Probe, header, make_scene, query_array

pytestmark = pytest.mark.usefixtures("ros_available")

T0 = 1_700_000_000_000_000_000  # ns


@pytest.fixture
def probe(ros_context):
    made = Probe(ros_context)
    yield made
    made.close()


def test_second_sigint_during_shutdown_ends_the_node_cleanly(start_node, probe):
    from omama_ros.conversions import array_to_image

    node = start_node({"qos_reliability": "reliable"}, fake={"mode": "slow", "delay": 4.0})
    assert node.wait_for_log("ready:"), node.log()
    publishers = (probe.ego_pub, probe.exo_pub, probe.query_pub)
    assert probe.spin_until(lambda: all(p.get_subscription_count() for p in publishers), 30)
    ego, exo, ego_masks, _ = make_scene(0)
    probe.ego_pub.publish(array_to_image(ego, "rgb8", header(T0, "ego_camera")))
    probe.exo_pub.publish(array_to_image(exo, "rgb8", header(T0 + 3_000_000, "exo_camera")))
    probe.query_pub.publish(query_array(T0, ego_masks, [f"q{k}" for k in range(len(ego_masks))]))
    probe.spin_until(lambda: False, 1.5)  # the worker is now inside its 4 s match
    node.process.send_signal(signal.SIGINT)
    probe.spin_until(lambda: False, 1.0)
    assert node.alive(), "the node ended before the second SIGINT: the scenario did not happen\n" + node.log()
    node.process.send_signal(signal.SIGINT)
    assert node.process.wait(30) == 0, node.log()
    assert "Traceback" not in node.log() and "KeyboardInterrupt" not in node.log(), node.log()
