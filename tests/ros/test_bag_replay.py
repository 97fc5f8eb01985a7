"""omama bag play / eval-live over real DDS: a 20-frame synthetic bag replayed through the node.

The node runs in its own process (tests/ros/fake_node.py --mode=echo: the real node with
tests/bag_fakes.EchoMatcher injected, milliseconds per set); the offline side runs the same
matcher, so live and offline answers can be compared exactly."""

from __future__ import annotations

import json
import sys
import threading
from pathlib import Path

import pytest

from omama_core.bags.offline import evaluate_offline, evaluate_results
from omama_ros.bag_sets import SetAssembler
from tests.bag_fakes import EchoMatcher, synthetic_bag

HERE = Path(__file__).resolve().parent
METRICS = ("iou", "location_error", "contour_accuracy", "visibility_balanced_accuracy")


def echo_node(delay: float) -> list[str]:
    return [sys.executable, str(HERE / "fake_node.py"), "--mode=echo", f"--delay={delay}"]


def samples(path: Path) -> dict:
    return {(row["object_name"], row["frame"]): row for row in map(json.loads, open(path))}


@pytest.fixture(scope="module")
def bag(tmp_path_factory):
    return synthetic_bag(tmp_path_factory.mktemp("bags"), 20)[1]


def test_live_replay_gives_the_offline_masks_and_metrics(ros_available, bag, tmp_path):
    from omama_ros.replay import evaluate_live

    def assembler(direction, report, compressed, labels=None):
        return SetAssembler(direction, report, compressed=compressed, labels=labels)

    offline = evaluate_offline(bag, tmp_path / "offline", lambda d: EchoMatcher(), assembler, masks="published",
                               plots=False, progress=False)
    live = evaluate_live(bag, tmp_path / "live", rate=4.0, record=tmp_path / "answers.bag", plots=False,
                         progress=False, node_command=echo_node(0.0))
    assert live["dropped_arrays"] == 0 and live["answered_arrays"] == live["query_arrays"] == 20
    assert live["ego2exo"]["unanswered"] == 0 and live["node_exit"] in (0, None)
    for name in METRICS + ("samples", "visible_in_target", "predicted_visible"):
        assert live["ego2exo"][name] == pytest.approx(offline["ego2exo"][name], abs=1e-12)
    ours, theirs = samples(tmp_path / "offline/samples_ego2exo.jsonl"), samples(tmp_path / "live/samples_ego2exo.jsonl")
    assert ours.keys() == theirs.keys()
    assert all(ours[k]["mask_rle"] == theirs[k]["mask_rle"] and ours[k]["visible"] == theirs[k]["visible"]
               for k in ours)
    latency = live["latency_ms"]
    assert latency["count"] == 20 and 0 < latency["p50"] <= latency["p95"] <= latency["max"]
    assert live["node_rss_mb"]["peak"] > 0
    rescored = evaluate_results(bag, tmp_path / "answers.bag", tmp_path / "rescored", plots=False, progress=False)
    assert {k: rescored["ego2exo"][k] for k in METRICS} == {k: live["ego2exo"][k] for k in METRICS}


def test_replay_faster_than_the_node_counts_drops_as_misses(ros_available, bag, tmp_path):
    from omama_ros.replay import evaluate_live

    live = evaluate_live(bag, tmp_path / "live", rate=10.0, drain=3.0, plots=False, progress=False,
                         node_command=echo_node(0.8))
    scored = live["ego2exo"]
    assert live["dropped_arrays"] > 0 and live["answered_arrays"] + live["dropped_arrays"] == 20
    assert scored["unanswered"] > 0 and scored["samples"] == scored["answered"] + scored["unanswered"]
    rows = samples(tmp_path / "live/samples_ego2exo.jsonl").values()
    misses = [row for row in rows if not row["answered"]]
    assert len(misses) == scored["unanswered"] and all(not r["pred_exists"] and r["pred_area"] == 0 for r in misses)
    sets = [json.loads(line) for line in open(tmp_path / "live/sets.jsonl")]
    assert len(sets) == 20 and sum(not s["answered"] for s in sets) == live["dropped_arrays"]
    rss = live["node_rss_mb"]
    assert rss["peak"] - rss["start"] < 300  # latest-only: no backlog of 1.2 MB image sets builds up


def test_eval_live_attaches_to_a_running_node(ros_available, start_node, bag, tmp_path):
    from omama_ros.replay import evaluate_live

    node = start_node({"direction": "ego2exo"}, fake={"mode": "echo", "delay": 0.0}, name="omama")
    assert node.wait_for_log("ready:", 60), node.log()
    live = evaluate_live(bag, tmp_path / "live", rate=4.0, attach="/omama", plots=False, progress=False)
    assert live["attached"] and live["node_rss_mb"] is None and live["dropped_arrays"] == 0
    assert live["ego2exo"]["unanswered"] == 0 and live["visibility_threshold"] == pytest.approx(0.005)


@pytest.mark.parametrize("storage", ["sqlite3", "mcap"])
def test_a_bag_of_rclpy_serialized_messages_is_read(ros_available, tmp_path, storage):
    """Messages serialized by rclpy itself (what `ros2 bag record` stores), bgr8 ego and mono8
    exo images, ground truth from the exo masks: read, paired and scored."""
    import roskit
    from rclpy.serialization import serialize_message
    from rosbags.rosbag2 import StoragePlugin, Writer

    from omama_core.bags.typestore import typestore
    from omama_ros.conversions import array_to_image, mask_to_image
    from omama_ros.msg import Match, MatchArray

    bag = tmp_path / "recorded.bag"
    with Writer(bag, version=9, storage_plugin=StoragePlugin[storage.upper()]) as writer:
        store = typestore()
        topics = {"/ego/image": "sensor_msgs/msg/Image", "/exo/image": "sensor_msgs/msg/Image",
                  "/queries": "omama_ros/msg/QueryArray", "/ground_truth": "omama_ros/msg/MatchArray"}
        connections = {t: writer.add_connection(t, m, typestore=store) for t, m in topics.items()}
        for frame in range(3):
            ns = 1_000_000_000 * (100 + frame)
            ego, exo, ego_masks, exo_masks = roskit.make_scene(frame)
            ego_msg = array_to_image(ego[:, :, ::-1], "bgr8", roskit.header(ns, "ego_cam"))
            exo_msg = array_to_image(exo[:, :, 0], "mono8", roskit.header(ns + 5_000_000, "exo_cam"))
            queries = roskit.query_array(ns, list(ego_masks), ["a", "b", "c"], frame_id="ego_cam")
            truth = MatchArray(header=exo_msg.header, source_stamp=roskit.stamp(ns), matches=[
                Match(header=exo_msg.header, query_id=name, visible=True, mask=mask_to_image(mask))
                for name, mask in zip("abc", exo_masks)])
            for topic, msg in (("/ego/image", ego_msg), ("/exo/image", exo_msg), ("/queries", queries),
                               ("/ground_truth", truth)):
                writer.write(connections[topic], ns + 10_000_000, serialize_message(msg))

    def assembler(direction, report, compressed, labels=None):
        return SetAssembler(direction, report, compressed=compressed, labels=labels)

    report = evaluate_offline(bag, tmp_path / "out", lambda d: EchoMatcher(), assembler, plots=True, progress=False)
    assert report["sets"] == 3 and not report["bag_problems"], report["problems"]
    scored = report["ego2exo"]
    assert scored["samples"] == 9 and scored["unanswered"] == 0 and scored["iou"] > 0
    rows = samples(tmp_path / "out/samples_ego2exo.jsonl")
    assert {(r["take"], r["source_camera"], r["target_camera"]) for r in rows.values()} == \
        {("recorded.bag", "ego_cam", "exo_cam")}
    assert sorted({frame for _, frame in rows}) == [0, 30, 60]  # 30 fps frame numbers from the first query


def test_play_publishes_the_bag_with_its_clock(ros_context, bag):
    from rosgraph_msgs.msg import Clock
    from sensor_msgs.msg import Image

    from omama_ros.msg import QueryArray
    from omama_ros.player import play_bag

    import rclpy
    from rclpy.qos import QoSProfile, ReliabilityPolicy

    node = rclpy.create_node("bag_listener", context=ros_context)
    got = {"ego": [], "queries": [], "clock": []}
    reliable = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)
    node.create_subscription(Image, "/replay/ego/image", lambda m: got["ego"].append(m.header.stamp.sec), reliable)
    node.create_subscription(QueryArray, "/replay/queries", lambda m: got["queries"].append(len(m.queries)), reliable)
    node.create_subscription(Clock, "/clock", lambda m: got["clock"].append(m.clock.sec), 100)
    executor = rclpy.executors.SingleThreadedExecutor(context=ros_context)
    executor.add_node(node)
    spinner = threading.Thread(target=executor.spin, daemon=True)
    spinner.start()
    try:
        summary = play_bag(bag, rate=20.0, clock=True, prefix="/replay", progress=False,
                           topics=["/ego/image", "/queries"], wait_for_subscribers=True)
    finally:
        executor.shutdown(timeout_sec=1.0)
        node.destroy_node()
    assert summary["published"] == 40
    assert len(got["ego"]) == 20 and sorted(got["ego"]) == got["ego"] and sum(got["queries"]) > 20
    assert got["clock"] and min(got["clock"]) >= got["ego"][0] and max(got["clock"]) <= got["ego"][-1]


@pytest.mark.slow
def test_real_node_live_equals_offline(ros_available, bag, tmp_path):
    """The real node (python -m omama_ros.node, a fast knn config) against the real Matcher offline."""
    from omama_core import Matcher
    from omama_ros.replay import evaluate_live

    config = tmp_path / "fast.yaml"  # knn with a coarser segmentation: about 1-2 s per set on 2 cores
    config.write_text("name: fast\ndirection: ego2exo\nbackbone: {kind: handcrafted}\n"
                      "proposals: {kind: classical, max_masks: 100, max_side: 240, segment_scale: 50}\n"
                      "head: {kind: knn}\nvisibility_threshold: 0.3\nselection: {whole_object_margin: 0.05}\n")

    def assembler(direction, report, compressed, labels=None):
        return SetAssembler(direction, report, compressed=compressed, labels=labels)

    offline = evaluate_offline(bag, tmp_path / "offline", lambda d: Matcher.from_config(str(config), "cpu", d),
                               assembler, masks="published", plots=False, progress=False)
    live = evaluate_live(bag, tmp_path / "live", rate=0.2, config=str(config), device="cpu", plots=False,
                         progress=False, drain=30.0)
    assert live["dropped_arrays"] == 0, live["node_diagnostics"]
    ours, theirs = samples(tmp_path / "offline/samples_ego2exo.jsonl"), samples(tmp_path / "live/samples_ego2exo.jsonl")
    assert all(ours[k]["mask_rle"] == theirs[k]["mask_rle"] for k in ours)
    for name in METRICS:
        assert live["ego2exo"][name] == pytest.approx(offline["ego2exo"][name], abs=1e-12)


def test_a_node_that_cannot_start_is_reported_with_its_log(ros_available, bag, tmp_path):
    from omama_core.errors import OmamaError
    from omama_ros.replay import evaluate_live

    with pytest.raises(OmamaError, match=r"exited with code 1 at start-up(.|\n)*no_such_config"):
        evaluate_live(bag, tmp_path / "live", config="no_such_config", device="cpu", plots=False, progress=False)
    assert (tmp_path / "live/node.log").stat().st_size > 0
