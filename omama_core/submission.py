"""The Ego-Exo4D correspondence submission format: writing, reading, fitting masks.

A submission (official ``correspondence/evaluation/README.md``)::

    {"version": ..., "challenge": "correspondence",
     "ego-exo": {"version": "xx", "challenge": "xx", "results": {
         take: {"masks": {object: {"{ego_cam}_{exo_cam}": {frame: {
                     "pred_mask": {"size": [H, W], "counts": str},   # COCO RLE, evaluation size
                     "confidence": float}}}},                         # > 0.5 means "visible"
                "subsample_idx": [...]}}},
     "exo-ego": {... the same with "{exo_cam}_{ego_cam}" keys ...}}

The official validator also wants every take and object of the ground truth and a prediction
for every source frame with a mask, scored or not: ``skeleton`` fills those with empty masks
and confidence 0 so that a full run's file passes it.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .data.annotations import is_ego_camera
from .data.egoexo import CorrespondenceDataset
from .data.rle import decode_rle, encode_rle
from .directions import source_and_target
from .errors import DatasetError
from .metrics import CONFIDENCE_THRESHOLD, evaluation_size, resize_nearest

SUBMISSION_KEYS = {"ego2exo": "ego-exo", "exo2ego": "exo-ego"}

# (take, object, "{source}_{target}", frame)
PredictionKey = tuple[str, str, str, int]


@dataclass
class Prediction:
    """One predicted answer: a COCO RLE mask (evaluation size) and the visibility confidence.
    ``extra`` holds matcher details (score, raw visibility, reason) that are not submitted."""

    rle: dict[str, Any]
    confidence: float
    extra: dict[str, Any] = field(default_factory=dict)


def confidence_from_visibility(visibility: float, threshold: float, visible: bool) -> float:
    """Map a matcher's visibility score to a submission confidence whose 0.5 cut agrees with
    the matcher's own decision.

    Piecewise linear on [0, 1] sending ``threshold`` to 0.5 (the identity when the threshold
    is 0.5, as for a learned probability); scores outside [0, 1] (cosines) are clipped. The
    result is nudged across 0.5 if needed so that ``confidence > 0.5`` iff ``visible``.
    """
    v = float(np.clip(visibility, 0.0, 1.0))
    t = float(np.clip(threshold, 1e-6, 1 - 1e-6))
    confidence = 0.5 * v / t if v < t else 0.5 + 0.5 * (v - t) / (1 - t)
    if visible and confidence <= CONFIDENCE_THRESHOLD:
        confidence = float(np.nextafter(CONFIDENCE_THRESHOLD, 1.0))
    elif not visible and confidence > CONFIDENCE_THRESHOLD:
        confidence = CONFIDENCE_THRESHOLD
    return float(confidence)


def camera_size(dataset: CorrespondenceDataset, take: str, camera: str) -> tuple[int, int] | None:
    """Native annotation size (H, W) of a camera: the size of any of its masks in the take."""
    for cams in dataset.takes[take].masks.values():
        for entry in cams.get(camera, {}).values():
            if isinstance(entry, dict) and "size" in entry:
                return int(entry["size"][0]), int(entry["size"][1])
            if isinstance(entry, dict) and "height" in entry:
                return int(entry["height"]), int(entry["width"])
    return None


def target_evaluation_size(dataset: CorrespondenceDataset, take: str, camera: str,
                           fallback: tuple[int, int] | None = None) -> tuple[int, int]:
    """Evaluation size of a target camera, from its annotation size (else ``fallback``, e.g.
    the image size)."""
    size = camera_size(dataset, take, camera) or fallback
    if size is None:
        raise DatasetError(f"{take}/{camera}: no mask or image gives this camera's size")
    return evaluation_size(*size)


def fit_to_evaluation(pred: np.ndarray, size: tuple[int, int]) -> tuple[np.ndarray, str]:
    """Bring a predicted mask to the evaluation size (H, W); returns (mask, how) with how in
    "exact", "unpadded" (a long x long square padded top and bottom, the format a later
    official script expects, cropped back) or "resized" (nearest neighbour)."""
    if pred.shape == tuple(size):
        return pred.astype(bool, copy=False), "exact"
    long_side = max(size)
    if pred.shape == (long_side, long_side) and size[0] != size[1]:
        if size[0] < size[1]:
            top = (long_side - size[0]) // 2
            return pred[top: top + size[0]].astype(bool), "unpadded"
        left = (long_side - size[1]) // 2
        return pred[:, left: left + size[1]].astype(bool), "unpadded"
    return resize_nearest(pred, size), "resized"


def skeleton(dataset: CorrespondenceDataset) -> dict[str, Any]:
    """The ``results`` object of one direction with a placeholder (empty mask, confidence 0)
    for every (take, object, camera pair, source frame with a mask) the validator checks."""
    results: dict[str, Any] = {}
    for take, annotation in dataset.takes.items():
        masks: dict[str, Any] = {}
        for obj, cams in annotation.masks.items():
            masks[obj] = {}
            ego = [c for c in cams if is_ego_camera(c)]
            if len(ego) != 1:
                continue
            for exo in (c for c in cams if not is_ego_camera(c)):
                source, target = source_and_target(dataset.direction, ego[0], exo)
                size = camera_size(dataset, take, target)
                empty = encode_rle(np.zeros(evaluation_size(*size) if size else (1, 1), bool))
                masks[obj][f"{source}_{target}"] = {
                    str(int(frame)): {"pred_mask": empty, "confidence": 0.0} for frame in cams[source]
                }
        results[take] = {"masks": masks, "subsample_idx": list(annotation.subsample_idx)}
    return results


def build_submission(
    entries: dict[str, tuple[CorrespondenceDataset, dict[PredictionKey, Prediction]]],
) -> dict[str, Any]:
    """A submission dict from {direction: (dataset, predictions)}; unpredicted frames keep
    their placeholders."""
    submission: dict[str, Any] = {"version": "omama", "challenge": "correspondence"}
    for direction, (dataset, predictions) in entries.items():
        results = skeleton(dataset)
        for (take, obj, pair, frame), prediction in predictions.items():
            pairs = results.setdefault(take, {"masks": {}, "subsample_idx": []})["masks"].setdefault(obj, {})
            pairs.setdefault(pair, {})[str(frame)] = {"pred_mask": prediction.rle,
                                                      "confidence": float(prediction.confidence)}
        submission[SUBMISSION_KEYS[direction]] = {"version": "xx", "challenge": "xx", "results": results}
    return submission


def write_submission(path: str | os.PathLike, submission: dict[str, Any]) -> None:
    """Write a submission dict as JSON."""
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(submission, handle)


def read_submission(source: str | os.PathLike | dict, direction: str) -> dict[PredictionKey, Prediction]:
    """Predictions of one direction from a submission file (or an already loaded dict).

    Entries lacking ``pred_mask`` or a numeric ``confidence`` raise DatasetError naming them.
    """
    if isinstance(source, dict):
        data, where = source, "submission"
    else:
        where = str(source)
        try:
            with open(source, encoding="utf-8") as handle:
                data = json.load(handle)
        except (OSError, json.JSONDecodeError) as error:
            raise DatasetError(f"{where}: not a readable submission JSON ({error})") from error
    key = SUBMISSION_KEYS[direction]
    if not isinstance(data, dict) or key not in data or not isinstance(data[key], dict) or "results" not in data[key]:
        raise DatasetError(f"{where}: no '{key}' results (a submission has '{key}': {{'results': {{take: ...}}}})")
    predictions: dict[PredictionKey, Prediction] = {}
    bad: list[str] = []
    for take, record in data[key]["results"].items():
        for obj, pairs in (record or {}).get("masks", {}).items():
            for pair, frames in (pairs or {}).items():
                for frame, entry in (frames or {}).items():
                    confidence = entry.get("confidence") if isinstance(entry, dict) else None
                    valid = isinstance(entry, dict) and "pred_mask" in entry and isinstance(confidence, (int, float))
                    if not valid:
                        bad.append(f"{take}/{obj}/{pair}/{frame}")
                        continue
                    predictions[(take, obj, pair, int(frame))] = Prediction(entry["pred_mask"], float(confidence))
    if bad:
        raise DatasetError(f"{where}: {len(bad)} entries lack 'pred_mask' or a numeric 'confidence': "
                           + ", ".join(bad[:10]) + (" ..." if len(bad) > 10 else ""))
    return predictions


def prediction_mask(prediction: Prediction, where: str) -> np.ndarray:
    """Decode a prediction's RLE to (H, W) bool (DatasetError if it is corrupt)."""
    return decode_rle(prediction.rle, where)
