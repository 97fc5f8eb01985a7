"""The `omama` command line: `omama match`, `omama demo`, help and error exits.

Commands run in-process through omama_core.cli.main (fast); one test runs the installed
console script in a subprocess.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from omama_core.cli import COMMANDS, main
from omama_core.config import available_configs
from omama_core.image_io import read_image, read_mask, write_image, write_mask

JSON_KEYS = {"query", "visible", "score", "visibility", "box", "candidate", "num_candidates", "reason",
             "timings_ms"}


def iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 1.0


def json_lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def box_of(mask: np.ndarray):
    ys, xs = np.nonzero(mask)
    return [int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1] if len(ys) else None


@pytest.fixture(scope="module")
def files(tmp_path_factory, two_views):
    """The two_views scene on disk: ego.png, exo.png, one mask PNG per object, a wrong-size mask."""
    ego, ego_masks, exo, _ = two_views
    folder = tmp_path_factory.mktemp("scene")
    paths = {"ego": str(folder / "ego.png"), "exo": str(folder / "exo.png"),
             "wrong": str(folder / "wrong_size.png")}
    write_image(paths["ego"], ego)
    write_image(paths["exo"], exo)
    for name, mask in ego_masks.items():
        paths[name] = str(folder / f"mask_{name}.png")
        write_mask(paths[name], mask)
    wrong = np.zeros((80, 100), bool)
    wrong[10:30, 10:40] = True
    write_mask(paths["wrong"], wrong)
    # a small copy of the scene for the tests that only need the command to run
    paths["ego_small"], paths["exo_small"] = str(folder / "ego_small.png"), str(folder / "exo_small.png")
    write_image(paths["ego_small"], ego[::4, ::4].copy())
    write_image(paths["exo_small"], exo[::4, ::4].copy())
    paths["mask_small"] = str(folder / "mask_small.png")
    write_mask(paths["mask_small"], ego_masks["red_disc"][::4, ::4].copy())
    return paths


def match_args(files, *masks, source="ego", target="exo", extra=()):
    args = ["match", "--source", files[source], "--target", files[target], "--device", "cpu"]
    for mask in masks:
        args += ["--source-mask", files[mask] if mask in files else mask]
    return args + list(extra)


# ---- help -----------------------------------------------------------------------------------

def test_help_lists_every_command(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for command in {"match", "demo", "synth", "train", "train-backbone", "eval", "bag", *COMMANDS}:
        assert re.search(rf"^\s+{command}\s", out, re.MULTILINE), (command, out)


def test_match_help_lists_its_options(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["match", "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for option in ("--source", "--source-mask", "--target", "--out-mask", "--out-overlay", "--config",
                   "--device", "--set", "--direction"):
        assert option in out


def test_unknown_command_and_missing_arguments_exit_2(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["frobnicate"])
    assert exit_info.value.code == 2
    with pytest.raises(SystemExit) as exit_info:
        main(["match", "--source", "a.png"])
    assert exit_info.value.code == 2
    assert "--source-mask" in capsys.readouterr().err


# ---- omama match ----------------------------------------------------------------------------

def test_match_one_query_prints_json_and_writes_mask_and_overlay(files, two_views, tmp_path, capsys):
    _, _, exo, exo_masks = two_views
    out_mask, out_overlay = tmp_path / "out" / "mask.png", tmp_path / "out" / "overlay.jpg"
    code = main(match_args(files, "red_disc", extra=["--out-mask", str(out_mask), "--out-overlay", str(out_overlay)]))
    captured = capsys.readouterr()
    assert code == 0, captured.err
    lines = json_lines(captured.out)
    assert len(lines) == 1
    result = lines[0]
    assert set(result) == JSON_KEYS
    assert result["query"] == files["red_disc"]
    assert {"convert", "preprocess", "backbone_source", "backbone_target", "proposals", "regions", "encoder", "model",
            "selection", "results", "total"} == set(result["timings_ms"])
    assert result["visible"] is True and result["candidate"] >= 0

    mask = read_mask(out_mask)
    assert mask.shape == exo.shape[:2]
    assert result["box"] == box_of(mask)  # the printed box is the written mask's
    assert iou(mask, exo_masks["red_disc"]) > 0.5

    overlay = read_image(out_overlay)
    assert overlay.ndim == 3 and overlay.shape[1] > overlay.shape[0]  # source | target, side by side
    assert not (tmp_path / "out" / "mask_0.png").exists()  # one query: no number suffix


def test_match_two_queries_gives_two_lines_and_numbered_files(files, two_views, tmp_path, capsys):
    _, _, exo, exo_masks = two_views
    code = main(match_args(files, "blue_box", "green_disc",
                           extra=["--out-mask", str(tmp_path / "m.png"), "--out-overlay", str(tmp_path / "o.png")]))
    captured = capsys.readouterr()
    assert code == 0, captured.err
    lines = json_lines(captured.out)
    assert [line["query"] for line in lines] == [files["blue_box"], files["green_disc"]]
    for index, (line, name) in enumerate(zip(lines, ["blue_box", "green_disc"])):
        assert set(line) == JSON_KEYS
        mask = read_mask(tmp_path / f"m_{index}.png")
        assert mask.shape == exo.shape[:2]
        assert line["box"] == box_of(mask)
        assert iou(mask, exo_masks[name]) > 0.5, name
        assert read_image(tmp_path / f"o_{index}.png").ndim == 3
    assert not (tmp_path / "m.png").exists() and not (tmp_path / "o.png").exists()


def test_match_console_script_in_a_subprocess(files, tmp_path):
    script = Path(sys.executable).with_name("omama")
    assert script.is_file(), f"the console script is not installed next to {sys.executable}"
    out_mask = tmp_path / "sub.png"
    process = subprocess.run([str(script), *match_args(files, "yellow_box", extra=["--out-mask", str(out_mask)])],
                             capture_output=True, text=True, timeout=120)
    assert process.returncode == 0, process.stderr
    lines = json_lines(process.stdout)
    assert len(lines) == 1 and set(lines[0]) == JSON_KEYS
    assert lines[0]["box"] == box_of(read_mask(out_mask))


def test_mask_of_the_wrong_size_exits_2_naming_the_sizes(files, two_views, capsys):
    ego, _, _, _ = two_views
    code = main(match_args(files, "red_disc", "wrong"))
    captured = capsys.readouterr()
    assert code == 2
    assert captured.out == ""  # nothing is matched when one query is unusable
    assert "100x80" in captured.err and f"{ego.shape[1]}x{ego.shape[0]}" in captured.err
    assert "wrong_size.png" in captured.err and captured.err.startswith("omama match: error:")


@pytest.mark.parametrize("missing", ["source", "target", "mask"])
def test_missing_file_exits_2_not_found(files, tmp_path, capsys, missing):
    absent = str(tmp_path / f"absent_{missing}.png")
    paths = {"source": files["ego"], "target": files["exo"], "mask": files["red_disc"], missing: absent}
    code = main(["match", "--source", paths["source"], "--target", paths["target"],
                 "--source-mask", paths["mask"], "--device", "cpu"])
    err = capsys.readouterr().err
    assert code == 2
    assert "not found" in err and absent in err
    assert "Traceback" not in err


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_without_cuda_exits_2(files, capsys):
    code = main(match_args(files, "mask_small", source="ego_small", target="exo_small", extra=["--device", "cuda"]))
    assert code == 2
    assert "CUDA is not available" in capsys.readouterr().err


def test_unknown_config_exits_2_listing_configs(files, capsys):
    code = main(match_args(files, "mask_small", source="ego_small", target="exo_small",
                           extra=["--config", "nonexistent"]))
    err = capsys.readouterr().err
    assert code == 2
    assert "nonexistent" in err and all(name in err for name in available_configs())


@pytest.mark.parametrize("override, expected", [("noequals", "key=value"), ("proposals.conf=[1,", "not valid YAML"),
                                                ("proposals.confidence=0.2", "proposals.confidence"),
                                                ("direction.x=1", "direction")])
def test_bad_overrides_exit_2_with_a_message(files, capsys, override, expected):
    code = main(match_args(files, "mask_small", source="ego_small", target="exo_small", extra=["--set", override]))
    err = capsys.readouterr().err
    assert code == 2
    assert expected in err and "Traceback" not in err


def test_overrides_change_the_matcher(files, capsys):
    code = main(match_args(files, "mask_small", source="ego_small", target="exo_small",
                           extra=["--set", "visibility_threshold=1.0"]))  # no score here reaches 1
    captured = capsys.readouterr()
    assert code == 0, captured.err
    (line,) = json_lines(captured.out)
    assert line["visible"] is False and "threshold" in line["reason"]


def test_unwritable_output_exits_2(files, tmp_path, capsys):
    code = main(match_args(files, "mask_small", source="ego_small", target="exo_small",
                           extra=["--out-mask", str(tmp_path / "mask.unknown_extension")]))
    err = capsys.readouterr().err
    assert code == 2
    assert "mask.unknown_extension" in err and "Traceback" not in err


# ---- omama demo -----------------------------------------------------------------------------

ROW = re.compile(r"^(ego2exo|exo2ego)\s+(.+?)\s+(yes|no)\s+(yes|no)\s+(-?\d+\.\d+)\s+(nan|-?\d+\.\d+)\s+"
                 r"(nan|-?\d+\.\d+)\s+(ok|WRONG)$")


def test_demo_writes_scene_and_overlays_and_a_summary(tmp_path, capsys):
    out = tmp_path / "demo"
    code = main(["demo", "--out", str(out), "--device", "cpu"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    scene = read_image(out / "scene.jpg")
    assert scene.shape[1] > scene.shape[0]  # ego | exo

    rows = [ROW.match(line) for line in captured.out.splitlines()]
    rows = [row.groups() for row in rows if row]
    assert rows, captured.out
    assert {row[0] for row in rows} == {"ego2exo", "exo2ego"}
    for direction, name, in_target, predicted, _score, overlap, best_overlap, verdict in rows:
        assert (out / f"{direction}_{name}.jpg").is_file(), (direction, name)
        if in_target == "no":  # an object hidden in the target is right only when reported not visible
            assert overlap == best_overlap == "nan"
            assert (verdict == "ok") == (predicted == "no")
        else:
            assert (verdict == "ok") == (predicted == "yes" and float(overlap) >= 0.5)
            if predicted == "yes":  # the answer is the best candidate
                assert overlap == best_overlap
    assert len(list(out.glob("*.jpg"))) == len(rows) + 1

    summary = re.search(r"^correct: (\d+)/(\d+) ", captured.out, re.MULTILINE)
    assert summary, captured.out
    assert int(summary.group(2)) == len(rows)
    assert int(summary.group(1)) == sum(row[-1] == "ok" for row in rows)
    matching = re.search(r"^matching alone: (\d+)/(\d+) ", captured.out, re.MULTILINE)
    assert matching, captured.out
    assert int(matching.group(2)) == sum(row[2] == "yes" for row in rows)
    assert int(matching.group(1)) == sum(row[6] != "nan" and float(row[6]) >= 0.5 for row in rows)
