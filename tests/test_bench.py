"""`omama bench`: its JSON has every stage the matcher reports, the stages add up to the
end-to-end time, and the encoder mode checks the encoder against the per-mask formulation.
No timing asserts: only the structure and the bookkeeping of the numbers."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from omama_core.benchmark import NETWORK_STAGES, bench_inputs, parse_size, per_mask_descriptors, random_masks, random_official_head
from omama_core.cli import main
from omama_core.errors import InputError
from omama_core.matcher import Matcher


def test_bench_json_has_the_matchers_stages_and_they_add_up(tmp_path, capsys):
    out = tmp_path / "bench.json"
    assert main(["bench", "--config", "default", "--size", "128x96", "--queries", "1,3", "--repeat", "1",
                 "--warmup", "0", "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["machine"]["cpu_count"] >= 1
    runs = report["runs"]
    assert [run["queries"] for run in runs] == [1, 3]
    # the stages are the ones the matcher reports, whatever their names
    source, masks, target = bench_inputs("ego2exo", 3, (128, 96))
    expected = set(Matcher.from_config("default", device="cpu").match(source, masks, target)[0].timings) - {"total"}
    assert set(runs[-1]["stages_ms"]) == expected  # a stage that only runs with 3+ queries is absent at 1
    for run in runs:
        assert run["target_hw"] == [96, 128] and run["candidates"] > 0
        assert set(run["stages_ms"]) <= expected
        total, stages = run["end_to_end_ms"]["mean"], sum(s["mean"] for s in run["stages_ms"].values())
        assert abs(stages - total) <= 0.1 * total, (stages, total)
        assert run["peak_rss_mb"] > 0
    assert runs[0]["end_to_end_ratio"] == 1.0
    table = capsys.readouterr().out
    assert "end to end" in table and "default" in table


def test_bench_splits_fastsams_network_from_its_processing_and_reports_what_is_outside_the_networks(tmp_path):
    """`fast` (random ViT-S/14 + FastSAM-s, built locally): FastSAM's network is a stage of its
    own, and end to end = the network stages + what is outside them; with the classical
    proposals running beside the backbones no outside share is claimed."""
    out = tmp_path / "bench.json"
    assert main(["bench", "--config", "fast,default", "--size", "160x120", "--queries", "1", "--repeat", "1",
                 "--warmup", "0", "--out", str(out)]) == 0
    fast, default = json.loads(out.read_text())["runs"]
    assert fast["candidates"] > 0 and "proposals_network" in fast["stages_ms"] and "proposals" in fast["stages_ms"]
    networks = sum(fast["stages_ms"][name]["median"] for name in NETWORK_STAGES)
    assert fast["outside_networks_ms"]["median"] == pytest.approx(fast["end_to_end_ms"]["median"] - networks, abs=0.05)
    assert 0 < fast["outside_networks_fraction"] < 1
    assert "proposals_network" not in default["stages_ms"]
    assert default["outside_networks_ms"] is None and default["outside_networks_fraction"] is None


def test_bench_encoder_mode_checks_the_per_mask_formulation(tmp_path):
    out = tmp_path / "encoder.json"
    assert main(["bench", "--encoder", "--masks", "6", "--repeat", "1", "--out", str(out)]) == 0
    result = json.loads(out.read_text())["encoder"]
    assert result["masks"] == 6 and result["max_abs_difference"] <= 1e-5
    assert result["batched_ms"]["median"] > 0 and result["speedup"] > 0


def test_per_mask_formulation_by_hand():
    # one 2x2-token feature map (a 28x28 input, a 7x7 grid of 4-px cells), one mask
    features = torch.arange(2 * 2 * 2, dtype=torch.float32).view(2, 2, 2)
    mask = np.zeros((1, 28, 28), bool)
    mask[0, 8:12, 8:12] = True  # exactly grid cells (2, 2) .. (2, 2)
    grid = torch.nn.functional.interpolate(features[None], size=(7, 7), mode="bilinear", align_corners=False)[0]
    descriptor = per_mask_descriptors(features, mask, context_px=4)
    assert torch.allclose(descriptor[0, :2], grid[:, 2, 2])
    # box (8, 8)-(11, 11) grown by 4 px: rows/cols 4 .. 15 -> cells 1 .. 3 (floor(15 / 4) = 3, end exclusive)
    assert torch.allclose(descriptor[0, 2:], grid[:, 1:3, 1:3].mean(dim=(1, 2)))


def test_random_masks_and_sizes():
    masks = random_masks(np.random.default_rng(0), 5, (40, 60))
    assert masks.shape == (5, 40, 60) and masks.any(axis=(1, 2)).all()
    assert parse_size("640x480") == (640, 480) and parse_size("published") is None
    with pytest.raises(InputError, match="WIDTHxHEIGHT"):
        parse_size("640")


def test_random_official_head_loads_strictly(tmp_path):
    from omama_core.modeling.checkpoint import load_official_head

    path = tmp_path / "head.pt"
    torch.save(random_official_head(64), path)
    head = load_official_head(str(path))
    assert head.dim == 64
