"""omama bench --node over real DDS: the real node (config knn) on tiny images beside the core."""

from __future__ import annotations

import json

import pytest

from omama_core import cli


def test_bench_node_reports_both_paths_and_the_same_answers(ros_available, tmp_path, capsys):
    out = tmp_path / "node.json"
    assert cli.main(["bench", "--node", "--config", "knn", "--size", "160x120", "--queries", "2", "--repeat", "2",
                     "--warmup", "1", "--node-log", str(tmp_path / "log"), "--out", str(out)]) == 0
    result = json.loads(out.read_text())["node"]
    assert result["config"] == "knn" and result["queries"] == 2
    assert result["source_hw"] == [120, 160] and result["target_hw"] == [120, 160]
    for path in (result["core"]["end_to_end_ms"], result["node"]["end_to_end_ms"],
                 result["node"]["node_processing_ms"]):
        assert set(path) == {"median", "p10", "p90", "mean"} and 0 < path["p10"] <= path["median"] <= path["p90"]
    transport = result["node"]["transport_ms"]
    assert 0 < transport["median"] < result["node"]["end_to_end_ms"]["median"]
    assert result["node_over_core"] == pytest.approx(
        result["node"]["end_to_end_ms"]["median"] / result["core"]["end_to_end_ms"]["median"], abs=1e-3)
    assert result["node"]["node_rss_mb"]["peak"] > 0 and result["node"]["node_exit"] in (0, None)
    answers = result["answers"]
    assert answers["agree"] and answers["queries"] == 2 and answers["differing_mask_pixels"] == [0, 0]
    assert sum(answers["core_mask_pixels"]) > 0  # the compared masks are not both empty
    assert "node/core" in capsys.readouterr().out


def test_bench_node_refuses_what_the_node_cannot_read(tmp_path, capsys):
    for extra in (["--queries", "1,4"], ["--set", "proposals.max_side=480"], ["--config", "fast"]):
        assert cli.main(["bench", "--node", *extra, "--out", str(tmp_path / "x.json")]) != 0
        assert "--node takes one --config" in capsys.readouterr().err
    assert not (tmp_path / "x.json").exists()


def test_soak_streams_sets_at_the_rate_and_reports_the_nodes_memory(ros_available, tmp_path, capsys):
    """--soak: sets published at --rate without waiting for answers; the real node (knn, tiny
    images) answers some, and its memory is sampled over the whole run."""
    out = tmp_path / "soak.json"
    assert cli.main(["bench", "--node", "--config", "knn", "--size", "160x120", "--soak", "4", "--rate", "5",
                     "--out", str(out)]) == 0
    result = json.loads(out.read_text())["node"]
    assert 18 <= result["sets_sent"] <= 21  # 4 s at 5 Hz, the first at 0 s
    assert 1 <= result["sets_answered"] <= result["sets_sent"]
    assert result["latency_ms"]["median"] > 0
    rss = result["node_rss_mb"]
    assert 0 < rss["start"] <= rss["peak"] and rss["end"] > 0 and rss["samples"] >= 15
    assert result["rss_timeline"][0][0] == 0 and result["node_exit"] in (0, None)
    assert "node RSS" in capsys.readouterr().out
    assert cli.main(["bench", "--node", "--soak", "0", "--out", str(tmp_path / "x.json")]) != 0
