"""omama_ros.overlay (label image, RViz overlay) and omama_ros.health (counters, rate limits)."""

from __future__ import annotations

import numpy as np

from omama_ros.health import OK, WARN, Health
from omama_core.visualize import PALETTE, label_image
from omama_ros.overlay import render_overlay


def test_label_image_marks_query_index_plus_one_later_wins():
    a = np.zeros((4, 6), bool)
    a[0:2, 0:4] = True
    b = np.zeros((4, 6), bool)
    b[1:3, 2:6] = True
    labels = label_image([a, np.zeros((4, 6), bool), b], (4, 6))
    assert labels.dtype == np.uint8
    assert labels[0, 0] == 1 and labels[1, 3] == 3 and labels[2, 5] == 3 and labels[3, 0] == 0
    assert 2 not in labels


def test_overlay_tints_masks_and_leaves_the_rest():
    rgb = np.full((20, 30, 3), 100, np.uint8)
    mask = np.zeros((20, 30), bool)
    mask[5:15, 5:15] = True
    out = render_overlay(rgb, [mask, np.zeros_like(mask)], [(5, 5, 15, 15), None], ["cup", "none"])
    assert out.shape == rgb.shape and out.dtype == np.uint8
    np.testing.assert_array_equal(out[8, 8], ((100 + PALETTE[0].astype(int)) / 2 + 0.5).astype(np.uint8))
    np.testing.assert_array_equal(out[18, 25], [100, 100, 100])
    np.testing.assert_array_equal(out[5, 10], PALETTE[0])  # the box outline


def test_health_counts_rate_limits_and_reports():
    logged, now = [], [0.0]
    health = Health(logged.append, log_period=2.0, clock=lambda: now[0])
    for _ in range(5):
        health.error("bad_image", "truncated")
    health.error("bad_query", "wrong size")
    now[0] = 2.5
    health.error("bad_image", "truncated again")
    assert logged == ["bad_image: truncated", "bad_query: wrong size",
                      "bad_image: truncated again (4 more like this since the last report)"]
    health.count("processed_sets", 3)
    health.timing(12.0, 30.0)
    level, message, values = health.snapshot({"direction": "ego2exo"})
    assert level == WARN and "7 error(s)" in message
    assert values["errors_bad_image"] == "6" and values["errors_total"] == "7"
    assert values["processed_sets"] == "3" and values["processing_ms_last"] == "12.0"
    assert values["direction"] == "ego2exo" and values["last_error"].startswith("bad_image")
    level, message, _ = health.snapshot()
    assert level == OK  # no new errors since the previous report
