"""A bag's ground truth and queries as the scored samples of omama's evaluation.

A sample is one query (QueryArray entry) with a ground-truth entry for the same source stamp
and object id (a Match on the ground-truth topic). Samples are named as `omama eval` names
them, (take, object, source camera, target camera, frame): from the bag's take segments when
it was exported from a dataset, else take = the bag's name, cameras = the images' frame_id,
frame = 30 fps frame number from the first query.
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ..data.annotations import TakeAnnotation
from ..data.egoexo import CorrespondenceDataset, SampleRef, check_direction
from ..data.rle import encode_rle
from ..directions import source_and_target, views
from ..errors import DatasetError
from .layout import FPS, NS, BagInfo
from .messages import mask_of, stamp_ns

Key = tuple[int, str]  # (source stamp ns, query id)


@dataclass
class TruthEntry:
    visible: bool
    rle: dict  # COCO RLE of the true target mask (empty when not visible), at its own size
    target_frame_id: str
    target_stamp: int  # ns


class BagTruth:
    """Collects queries and ground truth while a bag is read; `dataset()` turns them into samples."""

    def __init__(self, bag: str | os.PathLike, direction: str, info: BagInfo | None):
        self.bag = Path(bag)
        self.direction = check_direction(direction)
        self.info = info
        self.queries: dict[Key, tuple[str, dict]] = {}  # -> (source frame_id, mask RLE)
        self.truth: dict[Key, TruthEntry] = {}
        self.problems: Counter = Counter()
        self.errors: list[str] = []
        self.images: dict[tuple[str, str, int], tuple[str, int]] = {}  # (take, camera, frame) -> (role, stamp)

    @property
    def has_ground_truth(self) -> bool:
        return bool(self.truth)

    def add_queries(self, msg) -> None:
        stamp = stamp_ns(msg.header.stamp)
        for query in msg.queries:
            try:
                self.queries[(stamp, query.id)] = (msg.header.frame_id, encode_rle(mask_of(query.mask, "query")))
            except DatasetError:
                pass  # the node refuses it too: reported as bad_query where the set is assembled

    def add_ground_truth(self, msg) -> None:
        stamp = stamp_ns(msg.source_stamp)
        for match in msg.matches:
            where = f"ground truth {match.query_id!r} at {stamp // NS}.{stamp % NS:09d}"
            try:
                mask = mask_of(match.mask, where)
            except DatasetError as error:
                self._problem("bad_ground_truth", str(error))
                continue
            self.truth[(stamp, match.query_id)] = TruthEntry(bool(match.visible),
                                                             encode_rle(mask), msg.header.frame_id,
                                                             stamp_ns(msg.header.stamp))

    def dataset(self, load_image: Callable[[str, str, int], object] | None = None
                ) -> tuple["BagDataset", list[Key]]:
        """The scored samples (and their keys, in the same order) as a dataset for
        omama_core.evaluation's scorer. Queries without ground truth and ground truth without
        a query are counted, not scored."""
        first = min((stamp for stamp, _ in self.queries), default=0)
        takes: dict[str, TakeAnnotation] = {}
        samples, keys, seen = [], [], set()
        for key in sorted(self.truth):
            if key not in self.queries:
                self.problems["ground_truth_without_query"] += 1
                continue
            stamp, name = key
            entry = self.truth[key]
            take, source_camera, target_camera, frame = self._names(stamp, self.queries[key][0],
                                                                    entry.target_frame_id, first)
            if (take, name, frame) in seen:
                self._problem("duplicate_frame", f"{name} at {stamp}: frame {frame} of {take} already has a sample")
                continue
            seen.add((take, name, frame))
            annotation = takes.setdefault(take, TakeAnnotation(take, {}, None, self._subsample(take)))
            cams = annotation.masks.setdefault(name, {source_camera: {}, target_camera: {}})
            cams.setdefault(source_camera, {})[str(frame)] = self.queries[key][1]
            cams.setdefault(target_camera, {})
            if entry.visible:
                cams[target_camera][str(frame)] = entry.rle
            samples.append(SampleRef(take, name, source_camera, target_camera, frame, entry.visible))
            roles = views(self.direction)
            self.images[(take, source_camera, frame)] = (roles[0], stamp)
            self.images[(take, target_camera, frame)] = (roles[1], entry.target_stamp)
            keys.append(key)
        self.problems["queries_without_ground_truth"] += len(set(self.queries) - set(self.truth))
        dataset = BagDataset(self.bag, self.direction, takes, samples, load_image)
        dataset.skipped.update({k: v for k, v in self.problems.items() if v})
        dataset.errors.extend(self.errors)
        return dataset, keys

    def _names(self, stamp: int, source_frame_id: str, target_frame_id: str, first: int) -> tuple[str, str, str, int]:
        segment = self.info.segment_of(stamp) if self.info else None
        if segment is not None:
            ego, exo = segment.ego_camera, segment.exo_camera
            source, target = source_and_target(self.direction, ego, exo)
            return segment.take, source, target, segment.frame(stamp)
        roles = views(self.direction)
        return (self.bag.name, source_frame_id or roles[0], target_frame_id or roles[1],
                round((stamp - first) * FPS / NS))

    def _subsample(self, take: str) -> list[int]:
        segment = next((s for s in self.info.segments if s.take == take), None) if self.info else None
        return list(segment.subsample_idx) if segment else []

    def _problem(self, kind: str, message: str) -> None:
        self.problems[kind] += 1
        if len(self.errors) < 20:
            self.errors.append(message)


class BagDataset(CorrespondenceDataset):
    """The samples of a bag, for the evaluation scorer, submission writer and plots (which
    read `samples`, `takes`, `mask_rle`, `load_mask`, `load_image`, `summary`)."""

    def __init__(self, bag: Path, direction: str, takes: dict[str, TakeAnnotation], samples: list[SampleRef],
                 load_image: Callable[[str, str, int], object] | None):
        self.root, self.split, self.direction = bag, "", direction
        self.skipped, self.notes, self.errors = Counter(), Counter(), []
        self.takes, self.samples = takes, samples
        self._load_image = load_image

    def load_image(self, take: str, camera: str, frame: int):
        if self._load_image is None:
            raise DatasetError(f"{self.root}: images are not read back from this bag")
        return self._load_image(take, camera, frame)
