"""Evaluation runs: predict with a Matcher or read a submission, then score officially.

Both paths end in the same function, ``score_samples``, which takes the dataset's scored
samples and a table of predictions keyed (take, object, "{source}_{target}", frame):

    matcher path:     CorrespondenceDataset -> predict(matcher) -> score_samples -> report
    submission path:  CorrespondenceDataset or GT file + read_submission -> score_samples -> report

Ground truth is decoded at its annotation size and resized (nearest) to the evaluation size
(longer side 480); predictions are brought to that same size (``fit_to_evaluation``).
"""

from __future__ import annotations

import json
import os
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np
from tqdm import tqdm

from .data.egoexo import CorrespondenceDataset, SampleRef
from .data.rle import decode_rle, encode_rle
from .errors import DatasetError, OmamaError
from .metrics import balanced_accuracy, evaluation_size, mask_metrics, pred_exists, resize_nearest
from .protocols import PROTOCOLS
from .submission import (
    Prediction,
    PredictionKey,
    build_submission,
    confidence_from_visibility,
    fit_to_evaluation,
    read_submission,
    target_evaluation_size,
    write_submission,
)

MISSING_LISTED = 10  # how many missing predictions an error names


@dataclass
class SampleScore:
    """The official per-sample numbers. Mask metrics are None where the object is not visible
    in the target (they are only averaged over gt_exists samples). Areas in evaluation pixels."""

    take: str
    object_name: str
    source_camera: str
    target_camera: str
    frame: int
    gt_exists: bool
    pred_exists: bool
    confidence: float
    iou: float | None
    contour_accuracy: float | None
    location_error: float | None
    gt_area: int
    pred_area: int
    eval_height: int
    eval_width: int


def key_of(ref: SampleRef) -> PredictionKey:
    """Prediction-table key of a sample."""
    return ref.take, ref.object_name, ref.pair_key, ref.frame


def score_samples(
    dataset: CorrespondenceDataset,
    predictions: dict[PredictionKey, Prediction],
    indices: Iterable[int] | None = None,
    notes: Counter | None = None,
    progress: bool = True,
    skipped: Counter | None = None,
) -> list[SampleScore]:
    """Score the samples ``indices`` (default: all) of ``dataset`` against ``predictions``.

    Raises DatasetError listing the first missing predictions and their count. ``notes``
    counts how predictions were brought to the evaluation size (exact/unpadded/resized);
    samples whose ground-truth mask is corrupt are left out and counted in ``skipped``.
    """
    indices = list(range(len(dataset))) if indices is None else list(indices)
    missing = [i for i in indices if key_of(dataset.samples[i]) not in predictions]
    if missing:
        names = ["/".join(map(str, key_of(dataset.samples[i]))) for i in missing[:MISSING_LISTED]]
        raise DatasetError(f"{len(missing)} of {len(indices)} scored samples have no prediction, e.g. "
                           + ", ".join(names) + (" ..." if len(missing) > MISSING_LISTED else ""))
    notes = notes if notes is not None else Counter()
    skipped = skipped if skipped is not None else Counter()
    scores = []
    for i in tqdm(indices, desc=f"scoring {dataset.direction}", unit="sample", disable=not progress):
        ref = dataset.samples[i]
        prediction = predictions[key_of(ref)]
        where = "/".join(map(str, key_of(ref)))
        try:
            gt_rle = None
            if ref.gt_exists:
                gt_rle = dataset.mask_rle(ref.take, ref.object_name, ref.target_camera, ref.frame)
            gt = decode_rle(gt_rle, where) if gt_rle is not None else None
        except DatasetError:
            skipped["unreadable_target_mask"] += 1
            continue
        if gt_rle is not None:
            size = evaluation_size(*gt_rle["size"])
        else:  # not visible: the camera's other masks give its size (else the prediction's)
            size = target_evaluation_size(dataset, ref.take, ref.target_camera, fallback=_rle_size(prediction.rle))
        pred, how = fit_to_evaluation(decode_rle(prediction.rle, f"prediction {where}"), size)
        notes[f"predictions_{how}"] += 1
        metrics = {"iou": None, "contour_accuracy": None, "location_error": None}
        gt_area = 0
        if gt is not None:
            gt = resize_nearest(gt, size)
            metrics = mask_metrics(pred, gt)
            gt_area = int(gt.sum())
        scores.append(SampleScore(
            ref.take, ref.object_name, ref.source_camera, ref.target_camera, ref.frame, ref.gt_exists,
            pred_exists(prediction.confidence), float(prediction.confidence), **metrics,
            gt_area=gt_area, pred_area=int(pred.sum()), eval_height=size[0], eval_width=size[1],
        ))
    return scores


def summarize(scores: list[SampleScore]) -> dict[str, Any]:
    """Pooled official figures: mean IoU / LE / CA over samples visible in the target, and
    the visibility balanced accuracy over all scored samples."""
    visible = [s for s in scores if s.gt_exists]

    def mean(name: str) -> float | None:
        return float(np.mean([getattr(s, name) for s in visible])) if visible else None

    ba = balanced_accuracy([s.gt_exists for s in scores], [s.pred_exists for s in scores])
    return {
        "iou": mean("iou"),
        "location_error": mean("location_error"),
        "contour_accuracy": mean("contour_accuracy"),
        "visibility_balanced_accuracy": None if np.isnan(ba) else ba,
        "samples": len(scores),
        "visible_in_target": len(visible),
        "predicted_visible": sum(s.pred_exists for s in scores),
    }


def predict(
    dataset: CorrespondenceDataset,
    matcher,
    limit: int | None = None,
    skipped: Counter | None = None,
    errors: list[str] | None = None,
    progress: bool = True,
    protocol: str = "independent",
) -> tuple[dict[PredictionKey, Prediction], list[int]]:
    """Run ``matcher`` over the dataset, one ``match`` call per (take, frame, camera pair)
    with all of that frame's objects as queries: the features and the model's scores are
    computed once per frame pair. ``protocol`` "independent" answers each query as if it
    were alone (the publication's and the benchmark's protocol); "joint" lets the selection
    rules use the frame's other objects (exclusive matches, the layout prior).

    Returns the predictions (masks at the evaluation size) and the indices of the samples
    predicted. Unreadable images or masks skip their samples, counted in ``skipped``.
    """
    skipped = skipped if skipped is not None else Counter()
    errors = errors if errors is not None else []
    groups = dataset.groups()
    if limit is not None:
        groups, left = _truncate(groups, limit)
    predictions: dict[PredictionKey, Prediction] = {}
    done: list[int] = []
    bar = tqdm(total=sum(map(len, groups)), desc=f"matching {dataset.direction}", unit="sample", disable=not progress)
    for group in groups:
        first = dataset.samples[group[0]]
        try:
            source = _load(dataset.load_image, "source_image", first.take, first.source_camera, first.frame)
            target = _load(dataset.load_image, "target_image", first.take, first.target_camera, first.frame)
        except _LoadError as error:
            skipped[error.reason] += len(group)
            _note(errors, str(error))
            bar.update(len(group))
            continue
        masks, kept = [], []
        for i in group:
            ref = dataset.samples[i]
            try:
                masks.append(_load(dataset.load_mask, "source_mask", ref.take, ref.object_name, ref.source_camera,
                                   ref.frame, source.shape[:2]))
                kept.append(i)
            except _LoadError as error:
                skipped[error.reason] += 1
                _note(errors, str(error))
        if kept:
            try:
                results = matcher.match(source, np.stack(masks), target, protocol=protocol)
            except OmamaError as error:  # e.g. an image the model cannot take: count, go on
                skipped["matcher_error"] += len(kept)
                _note(errors, f"{first.take}/{first.pair_key}/{first.frame}: {error}")
                bar.update(len(group))
                continue
            size = target_evaluation_size(dataset, first.take, first.target_camera, fallback=target.shape[:2])
            for i, result in zip(kept, results):
                confidence = confidence_from_visibility(result.visibility, matcher.visibility_threshold, result.visible)
                # the official protocol scores the mask whatever the confidence: submit the
                # best candidate even when the object is judged not visible
                mask = result.candidate_mask if result.candidate_mask is not None else result.mask
                predictions[key_of(dataset.samples[i])] = Prediction(
                    encode_rle(resize_nearest(mask, size)), confidence,
                    {"score": float(result.score), "visibility": float(result.visibility), "reason": result.reason,
                     "num_candidates": int(result.num_candidates), "ms": float(result.timings.get("total", 0.0))},
                )
                done.append(i)
        bar.update(len(group))
    bar.close()
    return predictions, done


def write_report(out: str | os.PathLike, report: dict[str, Any], scores: dict[str, list[SampleScore]],
                 predictions: dict[str, dict[PredictionKey, Prediction]] | None = None) -> None:
    """Write ``metrics.json`` and ``samples_{direction}.jsonl`` (one scored sample a line)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "metrics.json", "w", encoding="utf-8") as handle:
        json.dump(report, handle, indent=2)
    for direction, rows in scores.items():
        extra = (predictions or {}).get(direction, {})
        with open(out / f"samples_{direction}.jsonl", "w", encoding="utf-8") as handle:
            for row in rows:
                record = asdict(row)
                key = (row.take, row.object_name, f"{row.source_camera}_{row.target_camera}", row.frame)
                if key in extra:
                    record.update(extra[key].extra)
                handle.write(json.dumps(record) + "\n")


def evaluate_matcher(
    root: str | os.PathLike,
    split: str,
    directions: list[str],
    make_matcher: Callable[[str], Any],
    out: str | os.PathLike,
    limit: int | None = None,
    plots: bool = True,
    progress: bool = True,
    protocol: str = "independent",
) -> dict[str, Any]:
    """The full matcher-driven evaluation: predict, score, write metrics, submission, plots.

    make_matcher(direction) -> an object with ``match`` and ``visibility_threshold`` (a Matcher).
    protocol: "independent" or "joint" (see ``predict``); metrics.json names it.
    Returns the report written to ``out/metrics.json``.
    """
    if protocol not in PROTOCOLS:
        raise DatasetError(f"protocol must be one of {sorted(PROTOCOLS)}, got {protocol!r}")
    report: dict[str, Any] = {"data": str(root), "split": split, "limit": limit, "protocol": protocol,
                              "protocol_description": PROTOCOLS[protocol], "scoring": SCORING}
    all_scores, all_predictions, entries, datasets = {}, {}, {}, {}
    for direction in directions:
        dataset = CorrespondenceDataset(root, split, direction)
        if len(dataset) == 0:
            raise DatasetError(f"{root} split '{split}' has no {direction} samples to evaluate "
                               f"(skipped: {dict(dataset.skipped) or 'none'})")
        matcher = make_matcher(direction)
        skipped, notes, errors = Counter(dataset.skipped), Counter(dataset.notes), list(dataset.errors)
        predictions, done = predict(dataset, matcher, limit, skipped, errors, progress, protocol)
        del matcher  # free one model before the next direction loads its own
        scores = score_samples(dataset, predictions, done, notes, progress, skipped)
        report[direction] = {**summarize(scores), "skipped": dict(skipped), "notes": dict(notes),
                             "errors": errors[:20], "partial": limit is not None and len(done) < len(dataset),
                             "dataset": dataset.summary()}
        all_scores[direction], all_predictions[direction] = scores, predictions
        entries[direction], datasets[direction] = (dataset, predictions), dataset
    write_report(out, report, all_scores, all_predictions)
    write_submission(Path(out) / "submission.json", build_submission(entries))
    if plots:
        _plots(out, all_scores, all_predictions, datasets)
    return report


def evaluate_submission(
    submission: str | os.PathLike,
    directions: list[str],
    out: str | os.PathLike,
    root: str | os.PathLike | None = None,
    split: str = "test",
    gt_file: str | os.PathLike | None = None,
    plots: bool = True,
    progress: bool = True,
) -> dict[str, Any]:
    """Score a submission file against a dataset root's split or the official GT file."""
    if (root is None) == (gt_file is None):
        raise DatasetError("give the ground truth as either a dataset root (with its split) or a GT file, not both")
    try:
        with open(submission, encoding="utf-8") as handle:
            data = json.load(handle)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise DatasetError(f"{submission}: not a readable submission JSON ({error})") from error
    report: dict[str, Any] = {"submission": str(submission), "data": str(root or gt_file), "split": split,
                              "scoring": SCORING}
    all_scores, all_predictions, datasets = {}, {}, {}
    for direction in directions:
        if gt_file is not None:
            dataset = CorrespondenceDataset.from_gt_file(gt_file, direction)
        else:
            dataset = CorrespondenceDataset(root, split, direction, require_images=False)
        predictions = read_submission(data, direction)
        notes, skipped = Counter(dataset.notes), Counter(dataset.skipped)
        scores = score_samples(dataset, predictions, notes=notes, progress=progress, skipped=skipped)
        report[direction] = {**summarize(scores), "skipped": dict(skipped), "notes": dict(notes),
                             "dataset": dataset.summary()}
        all_scores[direction], all_predictions[direction], datasets[direction] = scores, predictions, dataset
    write_report(out, report, all_scores)
    if plots:
        _plots(out, all_scores, all_predictions, datasets if root is not None else {})
    return report


SCORING = ("official Ego-Exo4D correspondence: GT resized (nearest) to longer side 480; IoU/LE/CA averaged over "
            "samples visible in the target, pooled over takes; visibility = balanced accuracy of confidence > 0.5")


class _LoadError(Exception):
    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


def _load(function: Callable, what: str, *args):
    """Call a dataset loader; an OmamaError becomes a _LoadError with a skip reason."""
    try:
        return function(*args)
    except OmamaError as error:
        raise _LoadError(f"unreadable_{what}", str(error)) from error


def _rle_size(rle: Any) -> tuple[int, int] | None:
    size = rle.get("size") if isinstance(rle, dict) else None
    return (int(size[0]), int(size[1])) if isinstance(size, (list, tuple)) and len(size) == 2 else None


def _note(errors: list[str], message: str) -> None:
    if len(errors) < 20:
        errors.append(message)


def _truncate(groups: list[list[int]], limit: int) -> tuple[list[list[int]], int]:
    """The first groups holding ``limit`` samples (the last group cut short)."""
    kept, count = [], 0
    for group in groups:
        if count >= limit:
            break
        kept.append(group[: limit - count])
        count += len(kept[-1])
    return kept, count


def _plots(out, scores, predictions, datasets) -> None:
    from .evaluation_plots import write_plots  # matplotlib only when plots are asked for

    write_plots(out, scores, predictions, datasets)
