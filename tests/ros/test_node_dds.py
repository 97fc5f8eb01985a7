"""The node over real DDS, in its own process: outputs equal the offline Matcher's, bad input
and model faults are survived, parameters work live, start-up failures exit non-zero.

Frames are 160x120 so that each test takes seconds; the node uses the shipped offline
"default" config on the CPU.
"""

from __future__ import annotations

import numpy as np
import pytest

import roskit
from roskit import Probe, header, make_scene, query_array

pytestmark = pytest.mark.usefixtures("ros_available")

NODE_PARAMS = {"config": "default", "device": "cpu", "direction": "ego2exo", "qos_reliability": "reliable",
               "diagnostics_period": 0.2}
T0 = 1_700_000_000_000_000_000  # ns: stamps of the synthetic frames start here
PERIOD = 100_000_000  # ns between synthetic frames


@pytest.fixture(scope="module")
def offline_matcher():
    from omama_core import Matcher

    return Matcher.from_config("default", device="cpu", direction="ego2exo")


@pytest.fixture
def probe(ros_context):
    created = []

    def make(**kwargs) -> Probe:
        created.append(Probe(ros_context, **kwargs))
        return created[-1]

    yield make
    for item in created:
        item.close()


def publish_set(probe: Probe, index: int, ego, exo, masks, encoding: str = "rgb8", exo_offset_ns: int = 3_000_000,
                ids=None):
    """Publishes one ego/exo pair (exo a few ms later, within sync_slop) and its queries."""
    from omama_ros.conversions import array_to_image, rgb_to_compressed

    ego_ns = T0 + index * PERIOD
    exo_ns = ego_ns + exo_offset_ns
    if encoding == "compressed":
        probe.ego_pub.publish(rgb_to_compressed(ego, "png", header(ego_ns, "ego_camera")))
        probe.exo_pub.publish(rgb_to_compressed(exo, "png", header(exo_ns, "exo_camera")))
    else:
        convert = {"rgb8": lambda a: a, "bgr8": lambda a: a[:, :, ::-1],
                   "rgba8": lambda a: np.dstack([a, np.full(a.shape[:2], 255, np.uint8)])}[encoding]
        step = None if encoding == "rgb8" else convert(ego).shape[1] * convert(ego).shape[2] + 8  # padded rows
        probe.ego_pub.publish(array_to_image(convert(ego), encoding, header(ego_ns, "ego_camera"), step=step))
        probe.exo_pub.publish(array_to_image(convert(exo), encoding, header(exo_ns, "exo_camera"), step=step))
    probe.query_pub.publish(query_array(ego_ns, masks, ids or [f"q{index}_{k}" for k in range(len(masks))]))
    return ego_ns, exo_ns


def wait_result(probe: Probe, count: int, timeout: float = 30.0):
    assert probe.spin_until(lambda: len(probe.matches) >= count and len(probe.masks) >= count, timeout), \
        f"expected {count} results, got {len(probe.matches)}"
    return probe.matches[count - 1], probe.masks[count - 1]


def decode_mask(image) -> np.ndarray:
    from omama_ros.conversions import image_to_array

    return image_to_array(image)[:, :, 0]


def test_outputs_equal_offline_matcher(start_node, probe, offline_matcher):
    node = start_node(NODE_PARAMS)
    p = probe()
    assert p.wait_connected(), node.log()
    for index, encoding in enumerate(["rgb8", "bgr8", "rgba8"]):
        ego, exo, ego_masks, _ = make_scene(seed=index)
        ego_ns, exo_ns = publish_set(p, index, ego, exo, ego_masks[:2], encoding=encoding)
        result, labels = wait_result(p, index + 1)
        expected = offline_matcher.match(ego, ego_masks[:2], exo)

        assert roskit.stamp(exo_ns) == result.header.stamp and result.header.frame_id == "exo_camera"
        assert labels.header == result.header and labels.encoding == "mono8"
        assert result.source_stamp == roskit.stamp(ego_ns)
        assert [m.query_id for m in result.matches] == [f"q{index}_0", f"q{index}_1"]
        label_image = decode_mask(labels)
        for k, (match, want) in enumerate(zip(result.matches, expected)):
            assert match.header == result.header
            got = decode_mask(match.mask) > 0
            np.testing.assert_array_equal(got, want.mask, err_msg=f"set {index} query {k} ({encoding})")
            assert match.visible == want.visible
            assert match.score == pytest.approx(want.score, abs=1e-5)
            assert match.visibility == pytest.approx(want.visibility, abs=1e-5)
            assert match.num_candidates == want.num_candidates
            if want.box is None:
                assert (match.box.width, match.box.height) == (0, 0)
            else:
                x0, y0, x1, y1 = want.box
                assert (match.box.x_offset, match.box.y_offset, match.box.width, match.box.height) == \
                    (x0, y0, x1 - x0, y1 - y0)
        want_labels = np.zeros(exo.shape[:2], np.uint8)
        for k, want in enumerate(expected):
            want_labels[want.mask] = k + 1
        np.testing.assert_array_equal(label_image, want_labels)
        assert result.processing_ms > 0 and result.latency_ms > 0
    assert p.spin_until(lambda: len(p.overlays) >= 3, 10)
    assert all(o.header == m.header and o.encoding == "rgb8" and (o.height, o.width) == (120, 160)
               for o, m in zip(p.overlays, p.matches))
    assert node.alive()
    assert node.stop() == 0, node.log()  # a clean shutdown on SIGINT


def wait_diag(probe: Probe, key: str, value: str, timeout: float = 20.0) -> dict:
    """Spin until the node's newest diagnostics have `key` == `value`; returns them."""
    ok = probe.spin_until(lambda: probe.latest_diagnostic_values().get(key) == value, timeout)
    values = probe.latest_diagnostic_values()
    assert ok, f"diagnostics {key}={values.get(key)!r}, expected {value!r}: {values}"
    return values


def test_bad_inputs_are_reported_and_survived(start_node, probe):
    from omama_ros.conversions import array_to_image, mask_to_image, rgb_to_image

    # The shipped parameters file, with the test's values on top.
    node = start_node(NODE_PARAMS, ros_args=("--params-file", str(roskit.REPO / "config" / "omama.yaml")))
    p = probe()
    assert p.wait_connected(), node.log()
    ego, exo, masks, _ = make_scene(seed=7)
    publish_set(p, 0, ego, exo, masks[:1])
    wait_result(p, 1)
    done = 1

    def valid_set_is_processed(index: int) -> None:
        nonlocal done
        publish_set(p, index, ego, exo, masks[:1])
        result, _ = wait_result(p, done + 1)
        done += 1
        assert result.source_stamp == roskit.stamp(T0 + index * PERIOD) and not result.matches[0].reason.startswith(
            "invalid"), result.matches[0].reason

    # 1. unsupported encoding of the source image: nothing published for that set.
    ns = T0 + 1 * PERIOD
    bad = array_to_image(np.zeros((120, 160 * 2), np.uint8), "mono8", header(ns, "ego_camera"))
    bad.encoding = "yuv422"
    p.ego_pub.publish(bad)
    p.exo_pub.publish(rgb_to_image(exo, header(ns + 3_000_000, "exo_camera")))
    p.query_pub.publish(query_array(ns, masks[:1], ["bad-encoding"]))
    wait_diag(p, "errors_bad_image", "1")
    assert "yuv422" in p.latest_diagnostic_values()["last_error"]
    valid_set_is_processed(2)

    # 2. truncated target image.
    ns = T0 + 3 * PERIOD
    short = rgb_to_image(exo, header(ns + 3_000_000, "exo_camera"))
    short.data = short.data[: len(short.data) // 2]
    p.ego_pub.publish(rgb_to_image(ego, header(ns, "ego_camera")))
    p.exo_pub.publish(short)
    p.query_pub.publish(query_array(ns, masks[:1], ["truncated"]))
    wait_diag(p, "errors_bad_image", "2")
    valid_set_is_processed(4)

    # 3. a mask of the wrong size, a mask in rgb8, a query of the wrong view, next to a valid
    #    query: the valid one is answered, the others come back as invalid.
    ns = T0 + 5 * PERIOD
    queries = query_array(ns, [masks[0], masks[1], masks[2], masks[0]], ["ok", "small", "rgb", "view"])
    queries.queries[1].mask = mask_to_image(masks[1][:60, :80])
    queries.queries[2].mask = rgb_to_image(np.dstack([masks[2].astype(np.uint8) * 255] * 3))
    queries.queries[3].source_view = 1  # exo, but the node runs ego2exo
    p.ego_pub.publish(rgb_to_image(ego, header(ns, "ego_camera")))
    p.exo_pub.publish(rgb_to_image(exo, header(ns + 3_000_000, "exo_camera")))
    p.query_pub.publish(queries)
    result, labels = wait_result(p, done + 1)
    done += 1
    reasons = [m.reason for m in result.matches]
    assert not reasons[0].startswith("invalid") and all(r.startswith("invalid query") for r in reasons[1:]), reasons
    assert "80x60" in reasons[1] and "rgb8" in reasons[2] and "direction" in reasons[3]
    assert set(np.unique(decode_mask(labels))) <= {0, 1}
    wait_diag(p, "errors_bad_query", "3")

    # 4. queries whose stamp matches no frame pair: between two frames already paired (known at
    #    once), and newer than every pair (known when the next, newer pair arrives).
    p.query_pub.publish(query_array(T0 + 4 * PERIOD + PERIOD // 2, masks[:1], ["orphan-old"]))
    wait_diag(p, "errors_unmatched_query", "1")
    p.query_pub.publish(query_array(T0 + 5 * PERIOD + PERIOD // 2, masks[:1], ["orphan-new"]))
    wait_diag(p, "queries_waiting", "1")
    valid_set_is_processed(6)
    wait_diag(p, "errors_unmatched_query", "2")

    # 5. an empty query array.
    from omama_ros.msg import QueryArray
    p.query_pub.publish(QueryArray(header=header(T0 + 7 * PERIOD, "ego_camera")))
    wait_diag(p, "errors_bad_query", "4")
    valid_set_is_processed(8)
    assert node.alive()
    assert "bad_image" in node.log() and "unmatched_query" in node.log()  # logged, not only counted


def test_node_survives_a_model_exception(start_node, probe, offline_matcher):
    node = start_node(NODE_PARAMS, fake={"mode": "flaky", "fail_calls": "1"})
    p = probe()
    assert p.wait_connected(), node.log()
    ego, exo, masks, _ = make_scene(seed=3)
    publish_set(p, 0, ego, exo, masks[:2])
    values = wait_diag(p, "errors_model_exception", "1")
    assert "injected fault" in values["last_error"]
    assert any(s.level == b"\x02" for a in p.diagnostics for s in a.status)  # ERROR while it failed
    assert not p.matches
    publish_set(p, 1, ego, exo, masks[:2])
    result, _ = wait_result(p, 1)
    for match, want in zip(result.matches, offline_matcher.match(ego, masks[:2], exo)):
        np.testing.assert_array_equal(decode_mask(match.mask) > 0, want.mask)
    assert node.alive() and "InjectedFault" in node.log()


def test_compressed_transport_and_live_parameters(start_node, probe, offline_matcher):
    from rcl_interfaces.msg import Parameter, ParameterType, ParameterValue
    from rcl_interfaces.srv import SetParameters
    from sensor_msgs.msg import CompressedImage

    node = start_node({**NODE_PARAMS, "image_transport": "compressed"})
    p = probe(transport="compressed")
    assert p.wait_connected(), node.log()
    ego, exo, masks, _ = make_scene(seed=11)
    publish_set(p, 0, ego, exo, masks[:2], encoding="compressed")  # png: lossless
    result, _ = wait_result(p, 1)
    for match, want in zip(result.matches, offline_matcher.match(ego, masks[:2], exo)):
        np.testing.assert_array_equal(decode_mask(match.mask) > 0, want.mask)

    # Undecodable bytes: reported, and the next set is processed.
    garbage = CompressedImage(header=header(T0 + PERIOD, "ego_camera"), format="jpeg", data=b"\xff\xd8not a jpeg")
    p.ego_pub.publish(garbage)
    p.exo_pub.publish(CompressedImage(header=header(T0 + PERIOD + 3_000_000, "exo_camera"), format="png",
                                      data=b"\x89PNG"))
    p.query_pub.publish(query_array(T0 + PERIOD, masks[:1], ["garbage"]))
    wait_diag(p, "errors_bad_image", "1")

    client = p.node.create_client(SetParameters, "/omama/set_parameters")
    assert client.wait_for_service(timeout_sec=10)

    def set_param(name: str, value: ParameterValue):
        future = client.call_async(SetParameters.Request(parameters=[Parameter(name=name, value=value)]))
        assert p.spin_until(future.done, 10)
        return future.result().results[0]

    double = ParameterValue(type=ParameterType.PARAMETER_DOUBLE, double_value=1.0)
    assert set_param("visibility_threshold", double).successful
    assert set_param("publish_overlay", ParameterValue(type=ParameterType.PARAMETER_BOOL, bool_value=False)).successful
    assert not set_param("visibility_threshold",
                         ParameterValue(type=ParameterType.PARAMETER_DOUBLE, double_value=1.5)).successful
    assert not set_param("direction", ParameterValue(type=ParameterType.PARAMETER_STRING,
                                                     string_value="exo2ego")).successful
    wait_diag(p, "visibility_threshold", "1.000")
    publish_set(p, 2, ego, exo, masks[:2], encoding="compressed")
    result, _ = wait_result(p, 2)
    offline_matcher.visibility_threshold = 1.0
    try:
        expected = offline_matcher.match(ego, masks[:2], exo)
    finally:
        offline_matcher.visibility_threshold = offline_matcher.config.visibility_threshold
    assert [m.visible for m in result.matches] == [w.visible for w in expected]
    assert len(p.overlays) == 1  # the first set's only: overlays switched off live
    for match, want in zip(result.matches, expected):
        np.testing.assert_array_equal(decode_mask(match.mask) > 0, want.mask)
    assert node.alive()


def test_missing_weights_exit_non_zero(start_node, tmp_path):
    config = tmp_path / "missing_weights.yaml"
    config.write_text("direction: ego2exo\nbackbone: {kind: handcrafted}\nproposals: {kind: classical}\n"
                      "head: {kind: trained, checkpoint: /nonexistent/omama_head.pt}\n")
    node = start_node({**NODE_PARAMS, "config": str(config)})
    node.process.wait(60)
    assert node.process.returncode not in (0, None)
    assert "/nonexistent/omama_head.pt" in node.log() and "FATAL" in node.log(), node.log()


def test_bad_parameter_value_exits_non_zero(start_node):
    node = start_node({**NODE_PARAMS, "direction": "sideways"})
    node.process.wait(60)
    assert node.process.returncode not in (0, None)
    assert "sideways" in node.log(), node.log()


class _Executor:
    """Stands in for an rclpy executor whose spin() fails, with a context that is or is not ok."""

    class _Context:
        def __init__(self, ok: bool):
            self._ok = ok

        def ok(self) -> bool:
            return self._ok

    def __init__(self, error: Exception, context_ok: bool):
        self.error, self.context = error, self._Context(context_ok)

    def spin(self) -> None:
        raise self.error


def test_shutdown_race_ends_the_node_cleanly_and_real_errors_still_raise():
    from omama_ros.node import spin_until_shutdown

    # the SIGINT handler shut the context down while the executor built its wait set
    spin_until_shutdown(_Executor(RuntimeError("failed to initialize wait set"), context_ok=False))
    with pytest.raises(RuntimeError, match="wait set"):
        spin_until_shutdown(_Executor(RuntimeError("failed to initialize wait set"), context_ok=True))
    with pytest.raises(ValueError):
        spin_until_shutdown(_Executor(ValueError("a bug"), context_ok=True))
