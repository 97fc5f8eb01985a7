"""omama bag without ROS: export, offline evaluation (the node's pairing), damaged and
unusual bags. The matcher is tests/bag_fakes.EchoMatcher (fast, deterministic); the ROS side
(play, eval-live) is in tests/ros/test_bag_replay.py."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

from omama_core.bags.layout import NS, Topics
from omama_core.bags.offline import evaluate_offline
from omama_core.bags.reader import BagReader
from omama_core.bags.typestore import IMAGE, MATCH_ARRAY, QUERY_ARRAY, typestore
from omama_core.errors import DatasetError, OmamaError
from omama_core.submission import read_submission
from omama_ros.bag_sets import SetAssembler
from tests.bag_fakes import EchoMatcher, synthetic_bag

FRAMES = 20
METRICS = ("iou", "location_error", "contour_accuracy", "visibility_balanced_accuracy")


def assembler(direction, report, compressed, labels=None):
    return SetAssembler(direction, report, compressed=compressed, labels=labels)


def offline(bag, out, **kwargs):
    kwargs.setdefault("plots", False)
    return evaluate_offline(bag, out, lambda direction: EchoMatcher(), assembler, progress=False, **kwargs)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A 20-frame synthetic take (seed 0: about a fifth of the Ego2Exo samples not visible)
    and its bag."""
    return synthetic_bag(tmp_path_factory.mktemp("bags"), FRAMES)


@pytest.fixture(scope="module")
def take(exported):
    return exported[0]


@pytest.fixture(scope="module")
def bag(exported):
    return exported[1]


def keep(topic, msgtype, ns, msg):
    return [(topic, msgtype, ns, msg)]


def rewrite(source: Path, target: Path, edit=keep, zstd: bool = False) -> Path:
    """Copy a bag message by message; edit(topic, msgtype, log_time, msg) returns the
    (topic, msgtype, log_time, msg) tuples to write instead (none drops the message);
    zstd: compress the mcap chunks (as `ros2 bag record --compression-mode storage` would)."""
    from rosbags.rosbag2 import CompressionFormat, CompressionMode, StoragePlugin, Writer

    reader, store = BagReader(source), typestore()
    connections = {}
    writer = Writer(target, version=9, storage_plugin=StoragePlugin.MCAP)
    if zstd:
        writer.set_compression(CompressionMode.STORAGE, CompressionFormat.ZSTD)
    with writer:
        for message in reader.messages(reader.topics):
            for topic, msgtype, log_time, msg in edit(message.topic, reader.topics[message.topic], message.log_time,
                                                      message.msg):
                if topic not in connections:
                    connections[topic] = writer.add_connection(topic, msgtype, typestore=store)
                writer.write(connections[topic], log_time, store.serialize_cdr(msg, msgtype))
        for key, value in reader.custom_data.items():
            writer.set_custom_data(key, value)
    return target


def test_export_writes_the_samples_with_type_hashes(bag, take):
    from omama_core.data import CorrespondenceDataset

    reader = BagReader(bag)
    assert len(list(reader.messages(["/ego/image"]))) == FRAMES
    assert reader.topics == {"/ego/image": IMAGE, "/exo/image": IMAGE, "/queries": QUERY_ARRAY,
                             "/ground_truth": MATCH_ARRAY}
    metadata = (bag / "metadata.yaml").read_text()
    for msgtype in (IMAGE, QUERY_ARRAY, MATCH_ARRAY):
        assert typestore().hash_rihs01(msgtype) in metadata
    dataset = CorrespondenceDataset(take, "test", "ego2exo")
    segment = reader.info.segments[0]
    assert (segment.take, segment.ego_camera, segment.exo_camera) == (dataset.samples[0].take, "aria01", "cam01")
    truth = {}
    for message in reader.messages(["/ground_truth"]):
        for match in message.msg.matches:
            truth[(segment.frame(message.msg.source_stamp.sec * NS + message.msg.source_stamp.nanosec),
                   match.query_id)] = bool(match.visible)
    expected = {(ref.frame, ref.object_name): ref.gt_exists for ref in dataset.samples}
    assert truth == expected and not all(expected.values())  # "not visible" entries are there too


def test_offline_eval_equals_omama_eval_on_the_same_take(bag, take, tmp_path):
    from omama_core.evaluation import evaluate_matcher

    reference = evaluate_matcher(take, "test", ["ego2exo"], lambda direction: EchoMatcher(), tmp_path / "ref",
                                 plots=False, progress=False, protocol="joint")["ego2exo"]
    report = offline(bag, tmp_path / "bag", plots=True)
    ours = report["ego2exo"]
    for name in METRICS:
        assert ours[name] == pytest.approx(reference[name], abs=1e-12)
    assert (ours["samples"], ours["visible_in_target"], ours["predicted_visible"], ours["unanswered"]) == \
        (reference["samples"], reference["visible_in_target"], reference["predicted_visible"], 0)
    assert report["protocol"] == "joint" and report["sets"] == FRAMES and not report["bag_problems"]
    rows = map(json.loads, open(tmp_path / "ref/samples_ego2exo.jsonl"))
    ref_rows = {(r["object_name"], r["frame"]): r for r in rows}
    for row in map(json.loads, open(tmp_path / "bag/samples_ego2exo.jsonl")):
        expected = ref_rows[(row["object_name"], row["frame"])]
        assert {k: row[k] for k in ("iou", "gt_exists", "pred_exists", "gt_area", "pred_area")} == \
            {k: expected[k] for k in ("iou", "gt_exists", "pred_exists", "gt_area", "pred_area")}
    ref_sub = read_submission(tmp_path / "ref/submission.json", "ego2exo")
    bag_sub = read_submission(tmp_path / "bag/submission.json", "ego2exo")
    assert ref_sub.keys() == bag_sub.keys()
    assert all(ref_sub[k].rle == bag_sub[k].rle and ref_sub[k].confidence == bag_sub[k].confidence for k in ref_sub)
    for name in ("iou_histogram.png", "iou_by_size.png", "cases_ego2exo.png"):
        assert (tmp_path / "bag" / name).stat().st_size > 0  # cases: images read back from the bag


def test_exo2ego_bag_equals_omama_eval(take, tmp_path):
    from omama_core.bags.export import export_bag
    from omama_core.evaluation import evaluate_matcher

    export_bag(take, tmp_path / "e.bag", direction="exo2ego", progress=False)
    reference = evaluate_matcher(take, "test", ["exo2ego"], lambda direction: EchoMatcher(), tmp_path / "ref",
                                 plots=False, progress=False, protocol="joint")["exo2ego"]
    report = offline(tmp_path / "e.bag", tmp_path / "bag")
    assert report["direction"] == "exo2ego" and report["exo2ego"]["samples"] == reference["samples"]
    for name in METRICS:
        assert report["exo2ego"][name] == pytest.approx(reference[name], abs=1e-12)


def test_published_masks_score_not_visible_answers_as_empty(bag, tmp_path):
    candidate = offline(bag, tmp_path / "c")["ego2exo"]
    published = offline(bag, tmp_path / "p", masks="published")["ego2exo"]
    assert published["visibility_balanced_accuracy"] == candidate["visibility_balanced_accuracy"]
    assert published["iou"] <= candidate["iou"]
    for row in map(json.loads, open(tmp_path / "p/samples_ego2exo.jsonl")):
        assert row["pred_exists"] or row["pred_area"] == 0


@pytest.mark.parametrize("zstd", [False, True], ids=["plain", "zstd-chunks"])
def test_truncated_bag_scores_what_comes_before_the_damage(bag, tmp_path, zstd):
    damaged = tmp_path / "cut.bag"
    if zstd:
        rewrite(bag, damaged, zstd=True)
    else:
        shutil.copytree(bag, damaged)
    mcap = next(damaged.glob("*.mcap"))
    data = mcap.read_bytes()
    mcap.write_bytes(data[: len(data) * 6 // 10])
    full = offline(bag, tmp_path / "full")["ego2exo"]
    report = offline(damaged, tmp_path / "cut")
    assert report["bag_problems"]["corrupt_bag"] >= 1
    assert any(mcap.name in problem and "cut off" in problem for problem in report["problems"])
    scored = report["ego2exo"]
    assert 0 < scored["samples"] < full["samples"] and scored["partial"] and scored["iou"] is not None
    assert scored["unanswered"] == 0  # every sample before the damage was answered


def test_bag_without_ground_truth_is_scored_for_latency_and_drops_only(bag, tmp_path):
    plain = rewrite(bag, tmp_path / "plain.bag",
                    lambda t, m, ns, msg: [] if t == "/ground_truth" else [(t, m, ns, msg)])
    report = offline(plain, tmp_path / "out")
    assert report["ground_truth"] is False and "latency and drops only" in report["note"]
    assert report["sets"] == FRAMES and "ego2exo" not in report
    sets = [json.loads(line) for line in open(tmp_path / "out/sets.jsonl")]
    assert len(sets) == FRAMES and all(s["answered"] and s["queries"] > 0 for s in sets)
    assert json.loads((tmp_path / "out/metrics.json").read_text())["ground_truth"] is False


def test_unpaired_images_and_unmatched_queries_are_named_and_counted(bag, tmp_path):
    start = BagReader(bag).info.segments[0].start_ns
    dropped_exo, stray = start + 3 * NS, start + 5 * NS + NS // 2

    def edit(topic, msgtype, ns, msg):
        if topic == "/exo/image" and ns == dropped_exo:
            return []
        out = [(topic, msgtype, ns, msg)]
        if topic == "/queries" and ns == start + 5 * NS:  # the same queries on a stamp with no image
            moved = typestore().deserialize_cdr(typestore().serialize_cdr(msg, msgtype), msgtype)
            moved.header.stamp.nanosec = NS // 2
            for query in moved.queries:
                query.header.stamp.nanosec = NS // 2
            out.append((topic, msgtype, stray, moved))
        return out

    broken = rewrite(bag, tmp_path / "gaps.bag", edit)
    report = offline(broken, tmp_path / "out")
    problems = report["bag_problems"]
    assert problems["unpaired_image"] == 1 and problems["unmatched_query"] == 2
    text = "\n".join(report["problems"])
    assert f"/ego/image: image at {dropped_exo // NS}.000000000" in text
    assert f"{stray // NS}.500000000" in text and str(broken) in text
    scored = report["ego2exo"]
    frame3 = sum(1 for row in map(json.loads, open(tmp_path / "out/samples_ego2exo.jsonl")) if row["frame"] == 90)
    assert scored["unanswered"] == frame3 > 0  # the frame without its exo image: misses, still scored
    assert scored["samples"] == offline(bag, tmp_path / "full")["ego2exo"]["samples"]


def test_unknown_types_are_reported(bag, tmp_path):
    string = "std_msgs/msg/String"
    text = typestore().types[string]

    def wrong_truth(topic, msgtype, ns, msg):
        return [(topic + "_x", string, ns, text(data="?"))] if topic == "/ground_truth" else [(topic, msgtype, ns, msg)]

    bad_truth = rewrite(bag, tmp_path / "t.bag", wrong_truth)
    report = offline(bad_truth, tmp_path / "out", topics=Topics(ground_truth="/ground_truth_x"))
    assert report["bag_problems"]["unknown_type"] == 1 and report["ground_truth"] is False
    assert "/ground_truth_x has type std_msgs/msg/String" in report["problems"][0]

    def wrong_queries(topic, msgtype, ns, msg):
        return [("/queries", string, ns, text(data="?"))] if topic == "/queries" else [(topic, msgtype, ns, msg)]

    with pytest.raises(DatasetError, match=r"no usable /queries.*std_msgs/msg/String"):
        offline(rewrite(bag, tmp_path / "q.bag", wrong_queries), tmp_path / "out2")


def test_sqlite3_and_compressed_png_bags_score_the_same(take, bag, tmp_path):
    from omama_core.bags.export import export_bag

    reference = offline(bag, tmp_path / "ref")["ego2exo"]
    export_bag(take, tmp_path / "png.bag", storage="sqlite3", compressed="png", progress=False)
    assert BagReader(tmp_path / "png.bag").topics["/ego/image/compressed"] == "sensor_msgs/msg/CompressedImage"
    report = offline(tmp_path / "png.bag", tmp_path / "png")
    assert {k: report["ego2exo"][k] for k in METRICS} == {k: reference[k] for k in METRICS}


@pytest.mark.parametrize("encoding", ["rgb8", "bgr8", "mono8"])
def test_images_of_ros_encodings_decode_as_the_node_decodes(encoding):
    from omama_core.bags import messages

    rgb = np.random.default_rng(0).integers(0, 256, (6, 5, 3), dtype=np.uint8)
    if encoding == "mono8":
        rgb = np.repeat(rgb[:, :, :1], 3, axis=2)
    pixels = {"rgb8": rgb, "bgr8": rgb[:, :, ::-1], "mono8": rgb[:, :, 0]}[encoding]
    msg = messages.image(pixels, encoding, messages.header(0, "cam"))
    msg = typestore().deserialize_cdr(typestore().serialize_cdr(msg, IMAGE), IMAGE)  # as read from a bag
    assert np.array_equal(SetAssembler("ego2exo", print).decode(msg), rgb)


def test_offline_side_imports_no_rclpy():
    import subprocess

    code = ("import sys; import omama_core.commands.bag, omama_core.bags.offline, omama_core.bags.export, "
            "omama_ros.bag_sets; bad = [m for m in sys.modules if m.split('.')[0] in ('rclpy', 'rosidl_runtime_py') "
            "or m == 'omama_ros.msg']; print(bad); sys.exit(1 if bad else 0)")
    result = subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).resolve().parents[1],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_bare_mcap_file_is_a_bag(bag, tmp_path):
    report = offline(next(bag.glob("*.mcap")), tmp_path / "out")
    assert not report["bag_problems"] and report["ego2exo"]["unanswered"] == 0
    assert report["ego2exo"]["dataset"]["takes"] == 1  # no metadata: one take named after the file


def test_cli_help_and_a_clear_error_without_ros(monkeypatch, capsys):
    from omama_core import cli
    from omama_core.commands.common import ros_module

    with pytest.raises(SystemExit):
        cli.main(["bag", "--help"])
    assert "omama bag eval-live" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        cli.main(["bag", "eval", "--help"])
    assert "example" in capsys.readouterr().out
    monkeypatch.setitem(sys.modules, "rclpy", None)  # import rclpy -> ImportError
    with pytest.raises(OmamaError, match="needs a ROS 2 environment: source your ROS install"):
        ros_module("omama bag eval-live", "replay")
