"""A 30 Hz feed for 60 s into a model slower than the feed: the node works on the newest set
only (bounded latency, time-ordered outputs), reports what it dropped, and its memory stays
bounded. Runs in CI like every other test (marked slow only to be selectable)."""

from __future__ import annotations

import time

import numpy as np
import pytest

from roskit import Probe, header, make_scene, query_array

pytestmark = [pytest.mark.usefixtures("ros_available"), pytest.mark.slow]

RATE_HZ = 30.0
DURATION_S = 60.0
MODEL_DELAY_S = 0.15  # > 1 / RATE_HZ: most sets must be dropped
WARMUP_S = 10.0  # memory is measured from here on (allocators and DDS buffers settle first)


def test_latest_only_under_a_fast_feed(start_node, ros_context):
    from omama_ros.conversions import rgb_to_image, stamp_to_ns

    node = start_node({"qos_reliability": "best_effort", "qos_depth": 5, "diagnostics_period": 1.0},
                      fake={"mode": "slow", "delay": MODEL_DELAY_S})
    probe = Probe(ros_context)
    try:
        assert probe.wait_connected(), node.log()
        ego, exo, masks, _ = make_scene(seed=5)
        ego_msg, exo_msg = rgb_to_image(ego), rgb_to_image(exo)
        start = time.monotonic()
        published, rss = 0, []
        while (elapsed := time.monotonic() - start) < DURATION_S:
            if elapsed >= published / RATE_HZ:
                ns = probe.node.get_clock().now().nanoseconds
                ego_msg.header, exo_msg.header = header(ns, "ego_camera"), header(ns + 2_000_000, "exo_camera")
                probe.ego_pub.publish(ego_msg)
                probe.exo_pub.publish(exo_msg)
                probe.query_pub.publish(query_array(ns, masks[:2], ["a", "b"]))
                published += 1
            if elapsed >= WARMUP_S + 5.0 * len(rss):
                rss.append(node.rss_kb())
            probe.executor.spin_once(timeout_sec=0.002)
        probe.spin_for(2 * MODEL_DELAY_S + 1.5)  # the last set and one more diagnostics message
        assert node.alive(), node.log()
        values = probe.latest_diagnostic_values()
    finally:
        probe.close()

    processed = len(probe.matches)
    latencies = np.array([m.latency_ms for m in probe.matches])
    stamps = [stamp_to_ns(m.source_stamp) for m in probe.matches]
    dropped = int(values["dropped_while_busy"])
    growth_mb = (max(rss) - rss[0]) / 1024
    print(f"\nsoak: published {published} sets in {DURATION_S:.0f} s, processed {processed}, "
          f"dropped while busy {dropped}, sync dropped {values['sync_dropped']}, "
          f"latency p50 {np.percentile(latencies, 50):.0f} ms p95 {np.percentile(latencies, 95):.0f} ms "
          f"max {latencies.max():.0f} ms, RSS {rss[0] / 1024:.0f} -> {rss[-1] / 1024:.0f} MiB "
          f"(max growth {growth_mb:.1f} MiB over {len(rss)} samples)")

    assert published >= 0.9 * RATE_HZ * DURATION_S
    # One set per model call: about DURATION_S / MODEL_DELAY_S of them.
    assert 0.6 * DURATION_S / MODEL_DELAY_S <= processed <= DURATION_S / MODEL_DELAY_S + 5
    assert stamps == sorted(stamps) and len(set(stamps)) == len(stamps)  # in time order, none twice
    # Latest only: an output is at most one model call (waiting) plus its own call old.
    assert np.percentile(latencies, 95) < 2 * MODEL_DELAY_S * 1000 + 100, latencies
    # Everything not processed was dropped and reported as such.
    assert dropped >= 0.8 * (published - processed), values
    assert int(values["submitted_sets"]) == processed + dropped or int(values["submitted_sets"]) == \
        processed + dropped + 1, values  # (+1: a set may still be waiting)
    assert growth_mb < 30, rss
