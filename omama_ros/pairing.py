"""Pairing query arrays with synchronized (ego, exo) frame pairs.

A query's mask was drawn on one source frame, so its stamp must equal that frame's stamp
exactly. Frame pairs come from the ApproximateTime synchronizer in time order; this module
keeps the last few pairs and the queries that arrived before their pair, and reports the
queries that can no longer be answered (their frame was never paired, or is long gone).
Pure Python: no ROS needed; stamps are integer nanoseconds.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class FramePair:
    """One synchronized pair: the source and target image messages and the source stamp."""

    source: Any
    target: Any
    source_stamp: int  # ns


@dataclass(frozen=True)
class WorkItem:
    """A frame pair with the queries to answer on it."""

    pair: FramePair
    queries: Any  # an omama_ros.msg.QueryArray
    received: float  # monotonic seconds when the set became complete


@dataclass(frozen=True)
class Unmatched:
    """Queries that will never be answered, and why."""

    queries: Any
    stamp: int
    reason: str


class QueryPairer:
    """Matches query arrays to frame pairs by the source frame's exact stamp.

    Args:
        history: frame pairs kept for queries that arrive after their pair.
        max_pending: query arrays kept while they wait for their pair.
    """

    def __init__(self, history: int = 10, max_pending: int = 10):
        self._pairs: deque[FramePair] = deque(maxlen=max(1, history))
        self._pending: deque[tuple[int, Any]] = deque()
        self.max_pending = max(1, max_pending)

    def add_pair(self, pair: FramePair, now: float) -> tuple[list[WorkItem], list[Unmatched]]:
        """A new synchronized pair: answers the queries waiting for it; queries waiting for an
        older frame will never see theirs (pairs come in time order)."""
        self._pairs.append(pair)
        ready, unmatched, waiting = [], [], deque()
        for stamp, queries in self._pending:
            if stamp == pair.source_stamp:
                ready.append(WorkItem(pair, queries, now))
            elif stamp < pair.source_stamp:
                unmatched.append(Unmatched(queries, stamp, "no synchronized frame pair has the queries' source "
                                                          "stamp (the source frame was dropped or never arrived)"))
            else:
                waiting.append((stamp, queries))
        self._pending = waiting
        return ready, unmatched

    def add_queries(self, queries, stamp: int, now: float) -> tuple[list[WorkItem], list[Unmatched]]:
        """New queries on the source frame stamped `stamp` (ns)."""
        for pair in reversed(self._pairs):
            if pair.source_stamp == stamp:
                return [WorkItem(pair, queries, now)], []
        if self._pairs and stamp <= self._pairs[-1].source_stamp:
            oldest = self._pairs[0].source_stamp
            why = ("older than every frame pair kept" if stamp < oldest
                   else "no synchronized frame pair has that source stamp")
            return [], [Unmatched(queries, stamp, why)]
        self._pending.append((stamp, queries))
        unmatched = []
        while len(self._pending) > self.max_pending:
            old_stamp, old = self._pending.popleft()
            unmatched.append(Unmatched(old, old_stamp, "waited too long for its frame pair"))
        return [], unmatched

    def newest_source_stamp(self) -> int | None:
        """The source stamp of the newest pair kept, None before the first pair."""
        return self._pairs[-1].source_stamp if self._pairs else None

    def pending(self) -> int:
        """Query arrays waiting for their pair."""
        return len(self._pending)
