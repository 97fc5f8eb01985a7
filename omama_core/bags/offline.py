"""`omama bag eval`: a bag scored offline, deterministically, with the node's own pairing.

    reader (bag messages in recorded order)
      -> the node's pairing (an injected assembler: omama_ros.bag_sets.SetAssembler)
      -> one Matcher call per complete set, all its queries together (as the node)
      -> scoring.score_bag (the official metrics, as `omama eval`)

`evaluate_results` scores answers recorded earlier (a result bag of `eval-live`) instead of
running a matcher.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
from tqdm import tqdm

from ..data.rle import encode_rle
from ..errors import DatasetError, OmamaError
from .layout import Topics
from .reader import BagReader
from .report import Problems, stats
from .scoring import Answer, answer_from_result, answers_from_match_array, score_bag
from .truth import BagTruth
from .typestore import COMPRESSED_IMAGE, IMAGE, MATCH_ARRAY, QUERY_ARRAY

# (direction, report(kind, message), compressed, labels role -> topic) -> an object with
# add(role, msg) -> [FrameSet], finish() and decode(msg) -> HxWx3 RGB: omama_ros.bag_sets.SetAssembler.
AssemblerFactory = Callable[[str, Callable[[str, str], None], bool, dict], Any]


@dataclass
class OpenBag:
    """A bag opened for evaluation: its reader, the topics in use (image transport resolved),
    the direction, and topic -> role ("ego", "exo", "queries", "ground_truth")."""

    reader: BagReader
    topics: Topics
    direction: str
    roles: dict[str, str]

    def truth(self) -> BagTruth:
        return BagTruth(self.reader.path, self.direction, self.reader.info)


def open_bag(bag: str | os.PathLike, topics: Topics | None = None, direction: str | None = None) -> OpenBag:
    """Open `bag` and check its topics (DatasetError naming what is missing); the direction
    comes from `direction`, else the export record, else the first query's source_view."""
    reader = BagReader(bag)
    topics = topics or Topics()
    if not topics.compressed and topics.ego not in reader.topics and topics.ego + "/compressed" in reader.topics:
        topics = Topics(**{**topics.__dict__, "compressed": True})
    image = COMPRESSED_IMAGE if topics.compressed else IMAGE
    usable = reader.check_topics({topics.ego_image: (image,), topics.exo_image: (image,),
                                  topics.queries: (QUERY_ARRAY,), topics.ground_truth: (MATCH_ARRAY,)})
    missing = [t for t in (topics.ego_image, topics.exo_image, topics.queries) if t not in usable]
    if missing:
        found = ", ".join(f"{t} ({m})" for t, m in sorted(reader.topics.items())) or "none"
        raise DatasetError(f"bag {reader.path} has no usable {', '.join(missing)}; its topics: {found}. Name the "
                           "bag's topics with --ego-topic/--exo-topic/--queries-topic (see docs/bags.md)")
    direction = direction or (reader.info.direction if reader.info else None) or _direction_of(reader, topics)
    roles = {topics.ego_image: "ego", topics.exo_image: "exo", topics.queries: "queries"}
    if topics.ground_truth in usable:
        roles[topics.ground_truth] = "ground_truth"
    return OpenBag(reader, topics, direction, roles)


def _direction_of(reader: BagReader, topics: Topics) -> str:
    for message in reader.messages([topics.queries]):
        if message.msg.queries:
            return "ego2exo" if message.msg.queries[0].source_view == 0 else "exo2ego"
    raise DatasetError(f"bag {reader.path}: no query says which direction it is; give --direction")


def evaluate_offline(bag: str | os.PathLike, out: str | os.PathLike, make_matcher: Callable[[str], Any],
                     make_assembler: AssemblerFactory,
                     topics: Topics | None = None, direction: str | None = None, masks: str = "candidate",
                     plots: bool = True, progress: bool = True) -> dict[str, Any]:
    """Run the matcher on every set of `bag` as the node pairs them; score and write to `out`.
    make_matcher(direction) -> a Matcher (or anything with match and visibility_threshold)."""
    opened = open_bag(bag, topics, direction)
    matcher = make_matcher(opened.direction)
    reader, truth = opened.reader, opened.truth()
    problems = Problems()
    labels = {role: topic for topic, role in opened.roles.items()}
    assembler = make_assembler(opened.direction, lambda kind, text: problems.add(kind, f"{bag}: {text}"),
                               opened.topics.compressed, labels)
    answers: dict = {}
    set_ms: list[float] = []
    records: list[dict] = []
    started = time.perf_counter()
    bar = tqdm(total=reader.count(opened.roles), desc="bag eval", unit="msg", disable=not progress)
    for message in reader.messages(opened.roles):
        bar.update()
        role = opened.roles[message.topic]
        if role == "ground_truth":
            truth.add_ground_truth(message.msg)
            continue
        if role == "queries":
            truth.add_queries(message.msg)
        for frame_set in assembler.add(role, message.msg):
            set_started = time.perf_counter()
            answered = _answer(frame_set, matcher, masks, problems)
            answers.update(answered)
            set_ms.append((time.perf_counter() - set_started) * 1000.0)
            records.append({"source_stamp": frame_set.source_stamp, "target_stamp": frame_set.target_stamp,
                            "source_frame_id": frame_set.source_frame_id, "target_frame_id": frame_set.target_frame_id,
                            "queries": len(frame_set.ids), "invalid_queries": len(frame_set.problems),
                            "answered": bool(answered), "ms": round(set_ms[-1], 1)})
    bar.close()
    assembler.finish()
    report = {"mode": "offline", "bag": str(bag), "direction": opened.direction, "masks": masks,
              "sets": len(set_ms), "query_arrays": reader.count([opened.topics.queries]),
              "processing_ms": stats(set_ms), "seconds": round(time.perf_counter() - started, 2),
              **problems.merged(reader)}
    loader = image_loader(opened, truth, assembler.decode)
    return score_bag(truth, answers, out, report, loader, plots, progress, records)


def _answer(frame_set, matcher, masks: str, problems: Problems) -> dict:
    """One set through the matcher, as the node's worker: every valid query in one call;
    invalid queries come back not visible with an empty mask."""
    valid = [i for i, mask in enumerate(frame_set.masks) if mask is not None]
    results = {}
    if valid:
        try:
            results = dict(zip(valid, matcher.match(frame_set.source, np.stack([frame_set.masks[i] for i in valid]),
                                                    frame_set.target)))
        except OmamaError as error:  # the node counts it (bad_input) and publishes nothing for the set
            problems.add("bad_input", f"set at {frame_set.source_stamp} ns: {error}")
            return {}
    shape = frame_set.target.shape[:2]
    answers = {}
    for index, name in enumerate(frame_set.ids):
        key = (frame_set.source_stamp, name)
        if index in results:
            answers[key] = answer_from_result(results[index], matcher.visibility_threshold, masks)
        else:
            empty = encode_rle(np.zeros(shape, bool))
            answers[key] = Answer(empty, 0.0, shape, {"visible": False, "reason": "invalid query: "
                                                      + frame_set.problems.get(index, "not processed"),
                                                      "mask_rle": empty})
    return answers


def evaluate_results(bag: str | os.PathLike, results: str | os.PathLike, out: str | os.PathLike,
                     topics: Topics | None = None, direction: str | None = None, results_topic: str = "/omama/matches",
                     decode_factory: Callable[[bool], Callable] | None = None, plots: bool = True,
                     progress: bool = True) -> dict[str, Any]:
    """Score the node's answers recorded in the bag `results` (MatchArray on `results_topic`,
    e.g. written by `omama bag eval-live --record`) against `bag`'s ground truth.
    decode_factory(compressed) -> an image decoder (msg -> RGB) for the plots' cases."""
    opened = open_bag(bag, topics, direction)
    truth = opened.truth()
    for message in tqdm(opened.reader.messages([opened.topics.queries, opened.topics.ground_truth]),
                        desc="ground truth", unit="msg", disable=not progress):
        (truth.add_ground_truth if message.topic == opened.topics.ground_truth else truth.add_queries)(message.msg)
    answers_bag = BagReader(results)
    usable = answers_bag.check_topics({results_topic: (MATCH_ARRAY,)})
    if results_topic not in usable:
        raise DatasetError(f"result bag {results} has no {results_topic} (omama_ros/msg/MatchArray); its topics: "
                           + (", ".join(sorted(answers_bag.topics)) or "none"))
    threshold = results_threshold(answers_bag)
    answers: dict = {}
    for message in answers_bag.messages([results_topic]):
        answers.update(answers_from_match_array(message.msg, threshold))
    problems = Problems()
    report = {"mode": "results", "bag": str(bag), "results": str(results), "direction": opened.direction,
              "masks": "published", "answer_arrays": answers_bag.count([results_topic]),
              **problems.merged(opened.reader)}
    if answers_bag.problems:
        report["result_bag_problems"] = answers_bag.problems
    loader = image_loader(opened, truth, decode_factory(opened.topics.compressed)) if decode_factory else None
    return score_bag(truth, answers, out, report, loader, plots, progress)


RESULTS_KEY = "omama_results"  # custom_data of a result bag: JSON with the node's visibility_threshold


def results_threshold(reader: BagReader) -> float:
    """The visibility threshold the node used, from a result bag's custom data (0.5 without):
    it only maps visibility to the submission's confidence."""
    try:
        return float(json.loads(reader.custom_data.get(RESULTS_KEY, "{}")).get("visibility_threshold", 0.5))
    except (ValueError, TypeError, AttributeError):
        return 0.5


def image_loader(opened: OpenBag, truth: BagTruth, decode: Callable) -> Callable[[str, str, int], np.ndarray]:
    """(take, camera, frame) -> HxWx3 RGB, read back from the bag (best and worst cases' plots)."""
    def load(take: str, camera: str, frame: int) -> np.ndarray:
        where = truth.images.get((take, camera, frame))
        if where is None:
            raise DatasetError(f"{opened.reader.path}: no image of {take}/{camera}/{frame}")
        role, stamp = where
        topic = opened.topics.ego_image if role == "ego" else opened.topics.exo_image
        try:
            return decode(opened.reader.find(topic, stamp))
        except ValueError as error:  # omama_ros.conversions.ConversionError
            raise DatasetError(str(error)) from error

    return load
