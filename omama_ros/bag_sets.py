"""The node's own pairing applied to recorded messages (pure Python: no rclpy, no DDS).

`omama bag eval` feeds a bag's ego images, exo images and query arrays here in recorded
order. They go through exactly what the node's callbacks do: the ApproximateTime
synchronizer of omama_ros.sync (ours: deterministic, counts what it drops), the
QueryPairer of omama_ros.pairing, the image decoding of omama_ros.conversions and the query
checks of omama_ros.queries. The one difference is on purpose: every complete set is kept,
where the live node's latest-only worker drops sets that arrive while it is busy.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
from omama_core.directions import source_and_target, source_view

from . import conversions
from .pairing import FramePair, QueryPairer, Unmatched, WorkItem
from .parameters import BY_NAME
from .queries import query_masks
from .sync import ApproximateTimeSync

VIEW_EGO, VIEW_EXO = 0, 1  # Query.VIEW_EGO / VIEW_EXO (msg/Query.msg)


@dataclass
class FrameSet:
    """One complete set, decoded: images HxWx3 uint8 RGB, masks (Hs, Ws) bool (None where
    the query is invalid, with the reason in `problems`)."""

    source_stamp: int  # ns, the queries' stamp
    target_stamp: int  # ns
    source_frame_id: str
    target_frame_id: str
    source: np.ndarray
    target: np.ndarray
    ids: list[str]
    masks: list[np.ndarray | None]
    problems: dict[int, str]


class SetAssembler:
    """Ego images, exo images and QueryArrays in -> FrameSets out, as the node pairs them.

    Args:
        direction: "ego2exo" or "exo2ego".
        report(kind, message): called for every problem (kinds as the node's diagnostics:
            bad_image, bad_query, unmatched_query; and unpaired_image).
        slop, queue_size: the node's sync_slop and sync_queue_size (defaults: the node's).
        compressed: images are CompressedImage.
        labels: role ("ego", "exo", "queries") -> topic name, for the messages.
    """

    def __init__(self, direction: str, report: Callable[[str, str], None],
                 slop: float = BY_NAME["sync_slop"].default, queue_size: int = BY_NAME["sync_queue_size"].default,
                 compressed: bool = False, labels: dict[str, str] | None = None):
        self.direction = direction
        self.labels = {"ego": "ego", "exo": "exo", "queries": "queries", **(labels or {})}
        self.source_view = VIEW_EGO if source_view(direction) == "ego" else VIEW_EXO
        self._report = report
        self.decode = conversions.compressed_to_rgb if compressed else conversions.image_to_rgb  # msg -> RGB
        self._sync = ApproximateTimeSync(2, queue_size, slop, self._on_pair)
        self._pairer = QueryPairer(history=queue_size, max_pending=queue_size)
        self._ready: list[WorkItem] = []
        self._images: dict[str, set[int]] = {"ego": set(), "exo": set()}  # stamps seen, until paired
        self._queries: dict[int, int] = {}  # stamp -> queries, until answered or refused
        self.pairs = 0

    def add(self, role: str, msg) -> list[FrameSet]:
        """role: "ego", "exo" or "queries". Returns the sets this message completed."""
        if role in ("ego", "exo"):
            self._images[role].add(conversions.stamp_to_ns(msg.header.stamp))
            self._sync.add(0 if role == "ego" else 1, msg)
        elif not msg.queries:
            self._report("bad_query", f"{self.labels['queries']}: QueryArray at "
                                      f"{_text(conversions.stamp_to_ns(msg.header.stamp))} has no queries")
        else:
            stamp = conversions.stamp_to_ns(msg.header.stamp)
            self._queries[stamp] = self._queries.get(stamp, 0) + len(msg.queries)
            ready, unmatched = self._pairer.add_queries(msg, stamp, 0.0)
            self._take(ready, unmatched)
        ready, self._ready = self._ready, []
        return [s for s in (self._decoded(item) for item in ready) if s is not None]

    def finish(self) -> None:
        """Report what never paired: images without a partner within the slop, queries whose
        stamp matches no frame pair."""
        for role, stamps in self._images.items():
            for stamp in sorted(stamps):
                self._report("unpaired_image", f"{self.labels[role]}: image at {_text(stamp)} has no partner "
                                               "within the slop")
        for stamp, count in sorted(self._queries.items()):
            self._report("unmatched_query", f"{self.labels['queries']}: {count} query(ies) stamped {_text(stamp)}: "
                                            "no frame pair has that source stamp")

    # ---- as the node's callbacks ---------------------------------------------------------------
    def _on_pair(self, ego, exo) -> None:
        self.pairs += 1
        self._images["ego"].discard(conversions.stamp_to_ns(ego.header.stamp))
        self._images["exo"].discard(conversions.stamp_to_ns(exo.header.stamp))
        source, target = source_and_target(self.direction, ego, exo)
        pair = FramePair(source, target, conversions.stamp_to_ns(source.header.stamp))
        ready, unmatched = self._pairer.add_pair(pair, 0.0)
        self._take(ready, unmatched)

    def _take(self, ready: list[WorkItem], unmatched: list[Unmatched]) -> None:
        for item in unmatched:
            self._queries.pop(item.stamp, None)
            self._report("unmatched_query", f"{self.labels['queries']}: {len(item.queries.queries)} query(ies) "
                                            f"stamped {_text(item.stamp)}: {item.reason}")
        for item in ready:
            self._queries.pop(conversions.stamp_to_ns(item.queries.header.stamp), None)
        self._ready += ready

    def _decoded(self, item: WorkItem) -> FrameSet | None:
        source_msg, target_msg = item.pair.source, item.pair.target
        try:
            source, target = self.decode(source_msg), self.decode(target_msg)
        except conversions.ConversionError as error:
            self._report("bad_image", f"{self.labels['ego']} / {self.labels['exo']}: set at "
                                      f"{_text(item.pair.source_stamp)}: {error}")
            return None
        masks, problems = query_masks(item.queries, source.shape[:2], self.source_view, self.direction)
        for index, problem in problems.items():
            self._report("bad_query", f"{self.labels['queries']}: query {index} "
                                      f"({item.queries.queries[index].id!r}) at "
                                      f"{_text(item.pair.source_stamp)}: {problem}")
        return FrameSet(item.pair.source_stamp, conversions.stamp_to_ns(target_msg.header.stamp),
                        source_msg.header.frame_id, target_msg.header.frame_id, source, target,
                        [q.id for q in item.queries.queries], masks, problems)


def _text(ns: int) -> str:
    sec, nanosec = divmod(int(ns), 1_000_000_000)
    return f"{sec}.{nanosec:09d}"
