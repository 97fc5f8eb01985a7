"""Evaluation: matcher-driven runs with fake predictors, submission files, the shared scorer,
and one end-to-end run of `omama eval` with the shipped offline model."""

from __future__ import annotations

import functools
import json
import shutil
from dataclasses import dataclass, field

import numpy as np
import pytest

from omama_core.cli import main as omama_main
from omama_core.data.egoexo import CorrespondenceDataset
from omama_core.data.rle import decode_rle, encode_rle
from omama_core.data.synth import generate_take, write_dataset
from omama_core.errors import DatasetError, InputError
from omama_core.evaluation import evaluate_matcher, evaluate_submission
from omama_core.submission import confidence_from_visibility, fit_to_evaluation

SEED, FRAMES = 2, 3


@dataclass
class FakeResult:
    mask: np.ndarray
    visible: bool
    visibility: float
    score: float = 0.5
    num_candidates: int = 1
    reason: str | None = None
    timings: dict = field(default_factory=dict)
    candidate_mask: np.ndarray | None = None


class OracleMatcher:
    """Answers from the generator's in-memory masks: finds the query among the source masks
    of the frame and returns that object's true target mask (all False when not visible)."""

    visibility_threshold = 0.5

    def __init__(self, direction: str, wrong: bool = False):
        self.pairs = _take()
        self.direction = direction
        self.wrong = wrong
        self.calls = 0

    def match(self, source_image, source_masks, target_image, protocol="joint"):
        self.calls += 1
        # the frame whose (JPEG-compressed) target image this is; exo masks alone repeat over frames
        pair = min(self.pairs, key=lambda p: np.abs(self._views(p)[3].astype(int) - target_image.astype(int)).mean())
        source, target, _, _ = self._views(pair)
        results = []
        for query in source_masks:
            name = next((n for n, m in source.items() if np.array_equal(m, query)), None)
            assert name is not None, "query mask not found among the generator's masks"
            mask = target.get(name, np.zeros(target_image.shape[:2], bool))
            visible = name in target
            if self.wrong:  # the worst answer: an empty mask, always "visible"
                mask, visible = np.zeros(target_image.shape[:2], bool), True
            results.append(FakeResult(mask, visible, 0.9 if visible else 0.1))
        return results

    def _views(self, pair):
        if self.direction == "ego2exo":
            return pair.ego_masks, pair.exo_masks, pair.ego_image, pair.exo_image
        return pair.exo_masks, pair.ego_masks, pair.exo_image, pair.ego_image


@functools.lru_cache(maxsize=1)
def _take():
    return generate_take(SEED * 100003, FRAMES, "t")  # the take write_dataset(seed=SEED) writes first


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    out = tmp_path_factory.mktemp("evaldata") / "synth"
    write_dataset(out, num_takes=1, seed=SEED, num_frames=FRAMES, fractions=(0.0, 0.0, 1.0))
    return out


@pytest.fixture(scope="module")
def oracle_run(root, tmp_path_factory):
    out = tmp_path_factory.mktemp("oracle")
    matchers = {}

    def make(direction):
        matchers[direction] = OracleMatcher(direction)
        return matchers[direction]

    report = evaluate_matcher(root, "test", ["ego2exo", "exo2ego"], make, out, progress=False)
    return out, report, matchers


def test_oracle_scores_perfectly_in_both_directions(root, oracle_run):
    out, report, matchers = oracle_run
    for direction in ("ego2exo", "exo2ego"):
        dataset = CorrespondenceDataset(root, "test", direction)
        summary = report[direction]
        assert summary["samples"] == len(dataset) > 0
        assert 0 < summary["visible_in_target"] < summary["samples"]  # both classes present
        assert summary["iou"] == pytest.approx(1.0, abs=1e-6)
        assert summary["contour_accuracy"] == 1.0 and summary["location_error"] == 0.0
        assert summary["visibility_balanced_accuracy"] == 1.0
        assert summary["skipped"] == {} and not summary["partial"]
        # one match call per frame pair, all of its objects as queries
        assert matchers[direction].calls == len(dataset.groups()) == FRAMES
    written = json.loads((out / "metrics.json").read_text())
    assert written["ego2exo"]["iou"] == report["ego2exo"]["iou"]
    lines = (out / "samples_exo2ego.jsonl").read_text().splitlines()
    assert len(lines) == report["exo2ego"]["samples"] and "visibility" in json.loads(lines[0])
    for name in ("iou_histogram.png", "iou_by_size.png", "cases_ego2exo.png", "cases_exo2ego.png"):
        assert (out / name).stat().st_size > 1000


def test_wrong_answers_score_zero_and_chance_visibility(root, tmp_path):
    report = evaluate_matcher(root, "test", ["ego2exo"], lambda d: OracleMatcher(d, wrong=True), tmp_path,
                              plots=False, progress=False)["ego2exo"]
    assert report["iou"] == 0.0 and report["contour_accuracy"] == 0.0
    assert report["visibility_balanced_accuracy"] == 0.5  # always "visible"
    assert report["location_error"] > 0.1  # empty masks sit at the padded-image default centre


def test_submission_file_is_official_and_scores_the_same(root, oracle_run, tmp_path):
    out, report, _ = oracle_run
    submission = json.loads((out / "submission.json").read_text())
    assert {"ego-exo", "exo-ego"} <= set(submission)
    results = submission["ego-exo"]["results"]
    dataset = CorrespondenceDataset(root, "test", "ego2exo")
    take = dataset.takes[dataset.samples[0].take]
    record = results[take.take]
    assert set(record) == {"masks", "subsample_idx"} and set(record["masks"]) == set(take.masks)
    pair = record["masks"][dataset.samples[0].object_name]["aria01_cam01"]
    entry = pair[str(dataset.samples[0].frame)]
    assert entry["pred_mask"]["size"] == [270, 480] and 0 <= entry["confidence"] <= 1
    for obj, cams in take.masks.items():  # every source frame with a mask has an entry
        assert set(results[take.take]["masks"][obj]["aria01_cam01"]) == set(cams["aria01"])
    again = evaluate_submission(out / "submission.json", ["ego2exo", "exo2ego"], tmp_path, root=root, split="test",
                                plots=False, progress=False)
    for direction in ("ego2exo", "exo2ego"):
        for key in ("iou", "location_error", "contour_accuracy", "visibility_balanced_accuracy", "samples"):
            assert again[direction][key] == report[direction][key]


def test_padded_and_full_size_predictions_are_brought_to_evaluation_size(oracle_run, root, tmp_path):
    out, report, _ = oracle_run
    submission = json.loads((out / "submission.json").read_text())
    for frames in submission["ego-exo"]["results"].values():
        for pairs in frames["masks"].values():
            for entries in pairs.values():
                for frame, entry in entries.items():
                    mask = decode_rle(entry["pred_mask"])
                    padded = np.zeros((480, 480), bool)
                    padded[105:375] = mask  # the later official script's padded format
                    entry["pred_mask"] = encode_rle(padded)
    path = tmp_path / "padded.json"
    path.write_text(json.dumps(submission))
    again = evaluate_submission(path, ["ego2exo"], tmp_path / "p", root=root, split="test", plots=False, progress=False)
    assert again["ego2exo"]["iou"] == report["ego2exo"]["iou"]
    assert again["ego2exo"]["notes"]["predictions_unpadded"] == again["ego2exo"]["samples"]
    big = np.zeros((540, 960), bool)
    big[100:200, 300:500] = True
    fitted, how = fit_to_evaluation(big, (270, 480))
    assert how == "resized" and fitted.shape == (270, 480) and fitted.sum() == 50 * 100


def test_missing_predictions_are_listed(oracle_run, root, tmp_path):
    out, _, _ = oracle_run
    submission = json.loads((out / "submission.json").read_text())
    results = submission["exo-ego"]["results"]
    take = next(iter(results))
    obj = next(o for o, pairs in results[take]["masks"].items() if pairs.get("cam01_aria01"))
    frame = sorted(results[take]["masks"][obj]["cam01_aria01"])[0]
    del results[take]["masks"][obj]["cam01_aria01"][frame]
    path = tmp_path / "partial.json"
    path.write_text(json.dumps(submission))
    expected = rf"1 of \d+ scored samples have no prediction, e.g. {take}/{obj}/cam01_aria01/{frame}"
    with pytest.raises(DatasetError, match=expected):
        evaluate_submission(path, ["exo2ego"], tmp_path / "x", root=root, split="test", plots=False, progress=False)
    with pytest.raises(DatasetError, match="no 'ego-exo' results"):
        path.write_text(json.dumps({"exo-ego": submission["exo-ego"]}))
        evaluate_submission(path, ["ego2exo"], tmp_path / "y", root=root, split="test", plots=False, progress=False)


def test_limit_and_unreadable_frames_are_reported(root, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(root, broken)
    take = json.loads((broken / "split.json").read_text())["test"][0]
    (broken / take / "aria01" / "30.jpg").write_bytes(b"garbage")
    full = CorrespondenceDataset(root, "test", "ego2exo")
    victim = next(s for s in full.samples if s.frame == 0 and s.gt_exists)
    annotation = json.loads((broken / take / "annotation.json").read_text())
    annotation["masks"][victim.object_name]["cam01"]["0"]["counts"] = "0"  # corrupt ground truth
    (broken / take / "annotation.json").write_text(json.dumps(annotation))
    report = evaluate_matcher(broken, "test", ["ego2exo"], lambda d: OracleMatcher(d), tmp_path / "o",
                              plots=False, progress=False)["ego2exo"]
    lost = sum(1 for s in full.samples if s.frame == 30)
    assert report["skipped"] == {"unreadable_source_image": lost, "unreadable_target_mask": 1}
    assert report["samples"] == len(full) - lost - 1 and not report["partial"]  # partial: only --limit
    assert report["iou"] == pytest.approx(1.0, abs=1e-6)
    assert "30.jpg" in report["errors"][0]
    limited = evaluate_matcher(root, "test", ["ego2exo"], lambda d: OracleMatcher(d), tmp_path / "l", limit=3,
                               plots=False, progress=False)["ego2exo"]
    assert limited["samples"] == 3 and limited["partial"]


def test_matcher_errors_are_counted_not_fatal(root, tmp_path):
    class Refusing(OracleMatcher):
        def match(self, source_image, source_masks, target_image, protocol="joint"):
            if self.calls == 0:
                self.calls += 1
                raise InputError("source mask size differs from the source image size")
            return super().match(source_image, source_masks, target_image)

    report = evaluate_matcher(root, "test", ["exo2ego"], lambda d: Refusing(d), tmp_path, plots=False,
                              progress=False)["exo2ego"]
    dataset = CorrespondenceDataset(root, "test", "exo2ego")
    first_group = len(dataset.groups()[0])
    assert report["skipped"] == {"matcher_error": first_group}
    assert report["samples"] == len(dataset) - first_group and "mask size" in report["errors"][0]


@pytest.mark.parametrize("visibility, threshold, visible, expected", [
    (0.7, 0.5, True, 0.7), (0.2, 0.5, False, 0.2), (0.3, 0.3, True, None), (0.9, 0.3, True, None),
    (-0.4, 0.3, False, 0.0),
])
def test_confidence_agrees_with_the_matchers_decision(visibility, threshold, visible, expected):
    confidence = confidence_from_visibility(visibility, threshold, visible)
    assert (confidence > 0.5) == visible and 0.0 <= confidence <= 1.0
    if expected is not None:
        assert confidence == pytest.approx(expected)


@pytest.mark.slow  # the default model on 8 samples each way
def test_eval_command_end_to_end_with_the_offline_model(root, tmp_path):
    out = tmp_path / "run"
    code = omama_main(["eval", "--data", str(root), "--split", "test", "--checkpoint", "default",
                       "--direction", "both", "--out", str(out), "--device", "cpu", "--limit", "8"])
    assert code == 0
    metrics = json.loads((out / "metrics.json").read_text())
    for direction in ("ego2exo", "exo2ego"):
        assert metrics[direction]["samples"] == 8
        assert 0.0 <= metrics[direction]["iou"] <= 1.0 and 0.0 <= metrics[direction]["contour_accuracy"] <= 1.0
    assert (out / "submission.json").is_file() and (out / "iou_histogram.png").is_file()


def test_eval_command_names_a_missing_data_folder(tmp_path, capsys):
    assert omama_main(["eval", "--data", str(tmp_path / "none"), "--out", str(tmp_path / "run")]) == 2
    assert "not a directory" in capsys.readouterr().err


@pytest.mark.slow  # about 50 s each: the offline default on 3 frames, twice
@pytest.mark.parametrize("overrides, differ", [
    ({}, True),  # the default: exclusive matches and the layout prior use the frame's other objects
    ({"selection.exclusive_matches": False, "selection.layout_weight": 0.0}, False),  # per-query rules only
])
def test_independent_and_joint_protocols(root, tmp_path, overrides, differ):
    """Under "independent" each query is answered as if alone; under "joint" the selection
    rules may use the frame's other objects. Only rules of the second kind tell them apart."""
    from omama_core import Matcher

    matcher = Matcher.from_config("default", device="cpu", overrides=overrides)
    reports = {}
    for protocol in ("independent", "joint"):
        reports[protocol] = evaluate_matcher(root, "test", ["ego2exo"], lambda _: matcher, tmp_path / protocol,
                                             plots=False, progress=False, protocol=protocol)
        written = json.loads((tmp_path / protocol / "metrics.json").read_text())
        assert written["protocol"] == protocol
    keys = ("iou", "location_error", "contour_accuracy", "visibility_balanced_accuracy")
    numbers = {p: [reports[p]["ego2exo"][k] for k in keys] for p in reports}
    assert (numbers["independent"] != numbers["joint"]) == differ, numbers
    with pytest.raises(DatasetError, match="protocol"):
        evaluate_matcher(root, "test", ["ego2exo"], lambda _: matcher, tmp_path / "bad", protocol="alone")
