"""Answers to a bag's queries -> the official metrics, submission, plots and records.

The answers come from the matcher (`omama bag eval`), from the node's ~/matches
(`omama bag eval-live`) or from a result bag (`omama bag eval --results`); the scoring is
omama_core.evaluation's, so metrics.json, samples_{direction}.jsonl, submission.json and the
plots are those of `omama eval`. A query that was never answered is a miss: not visible, empty
mask (it is scored, never skipped).
"""

from __future__ import annotations

import json
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..data.rle import decode_rle, encode_rle
from ..evaluation import PROTOCOLS, SCORING, score_samples, summarize, write_report
from ..metrics import resize_nearest
from ..submission import (
    Prediction,
    build_submission,
    confidence_from_visibility,
    target_evaluation_size,
    write_submission,
)
from .messages import mask_of, stamp_ns
from .truth import BagTruth, Key

QUERY_PROTOCOL = "joint"  # every query of a QueryArray in one Matcher call, as the node answers them
MASKS = {
    "candidate": "the chosen candidate's mask whatever the visibility (the official protocol, as `omama eval`)",
    "published": "the mask the node publishes: empty when the object is judged not visible",
}


@dataclass
class Answer:
    """One query's answer. rle: the scored mask at the target image size; extra: matcher
    details copied into samples_{direction}.jsonl."""

    rle: dict[str, Any]
    confidence: float
    target_shape: tuple[int, int]
    extra: dict[str, Any] = field(default_factory=dict)


def answers_from_match_array(msg, threshold: float) -> dict[Key, Answer]:
    """The node's MatchArray (a rosbags message) -> answers keyed (source stamp, query id).
    The node publishes empty masks for objects judged not visible: "published" masks."""
    stamp = stamp_ns(msg.source_stamp)
    answers = {}
    for match in msg.matches:
        mask = mask_of(match.mask, f"answer {match.query_id!r} at {stamp}")
        rle = encode_rle(mask)
        answers[(stamp, match.query_id)] = Answer(
            rle, confidence_from_visibility(match.visibility, threshold, bool(match.visible)), mask.shape,
            {"visible": bool(match.visible), "visibility": float(match.visibility), "score": float(match.score),
             "reason": match.reason, "num_candidates": int(match.num_candidates), "mask_rle": rle,
             "processing_ms": float(msg.processing_ms)})
    return answers


def score_bag(truth: BagTruth, answers: dict[Key, Answer], out: str | os.PathLike, report: dict[str, Any],
              load_image=None, plots: bool = True, progress: bool = True,
              sets: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """Score `answers` against the bag's ground truth; write metrics.json (with `report`'s
    fields), samples_{direction}.jsonl, submission.json, plots and sets.jsonl (`sets`: one
    record per set or query array) to `out`. Returns the report. Without ground truth only
    `report` (latency, drops, problems) and sets.jsonl are written."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "sets.jsonl", "w", encoding="utf-8") as handle:
        for record in sets or []:
            handle.write(json.dumps(record) + "\n")
    direction = truth.direction
    report = {**report, "protocol": QUERY_PROTOCOL, "protocol_description": PROTOCOLS[QUERY_PROTOCOL], "scoring": SCORING,
              "masks_description": MASKS[report.get("masks", "candidate")], "ground_truth": truth.has_ground_truth}
    if not truth.has_ground_truth:
        report["note"] = ("this bag has no ground truth (no MatchArray on the ground-truth topic): scored for "
                          "latency and drops only")
        with open(out / "metrics.json", "w", encoding="utf-8") as handle:
            json.dump(report, handle, indent=2)
        return report
    dataset, keys = truth.dataset(load_image)
    predictions, answered = {}, 0
    for ref, key in zip(dataset.samples, keys):
        answer = answers.get(key)
        fallback = answer.target_shape if answer else tuple(truth.truth[key].rle["size"])
        size = target_evaluation_size(dataset, ref.take, ref.target_camera, fallback=fallback)
        if answer is None:  # never answered: a miss
            predictions[(ref.take, ref.object_name, ref.pair_key, ref.frame)] = Prediction(
                encode_rle(np.zeros(size, bool)), 0.0, {"answered": False, "stamp": key[0]})
            continue
        answered += 1
        mask = resize_nearest(decode_rle(answer.rle, f"answer {key}"), size)
        predictions[(ref.take, ref.object_name, ref.pair_key, ref.frame)] = Prediction(
            encode_rle(mask), answer.confidence, {**answer.extra, "answered": True, "stamp": key[0]})
    notes, skipped = Counter(dataset.notes), Counter(dataset.skipped)
    scores = score_samples(dataset, predictions, notes=notes, progress=progress, skipped=skipped)
    report[direction] = {**summarize(scores), "answered": answered, "unanswered": len(scores) - answered,
                         "skipped": dict(skipped), "notes": dict(notes), "errors": dataset.errors[:20],
                         "partial": bool(report.get("bag_problems", {}).get("corrupt_bag")),
                         "dataset": dataset.summary()}
    write_report(out, report, {direction: scores}, {direction: predictions})
    write_submission(out / "submission.json", build_submission({direction: (dataset, predictions)}))
    if plots:
        from ..evaluation_plots import write_plots  # matplotlib only when plots are asked for

        write_plots(out, {direction: scores}, {direction: predictions}, {direction: dataset})
    return report


def answer_from_result(result, threshold: float, masks: str) -> Answer:
    """A MatchResult (omama_core.matcher) -> an Answer scoring the candidate mask (the
    official protocol) or the published one (empty when not visible, as the node)."""
    published = np.asarray(result.mask, bool)
    scored = result.candidate_mask if masks == "candidate" and result.candidate_mask is not None else published
    return Answer(encode_rle(np.asarray(scored, bool)),
                  confidence_from_visibility(result.visibility, threshold, result.visible), published.shape,
                  {"visible": bool(result.visible), "score": float(result.score),
                   "visibility": float(result.visibility), "reason": result.reason or "",
                   "num_candidates": int(result.num_candidates), "mask_rle": encode_rle(published),
                   "ms": float(result.timings.get("total", 0.0))})
