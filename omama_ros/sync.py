"""Pairing messages of several inputs by header stamp: the ApproximateTime policy.

`make_synchronizer` uses message_filters' ApproximateTimeSynchronizer where it is installed
(a ROS install) and `ApproximateTimeSync` below otherwise (the pip wheels have no
message_filters). Both follow the same policy, with `queue_size` and `slop` meaning the same:

- each input keeps at most `queue_size` messages; the oldest is evicted first;
- when a message arrives, the synchronizer looks for one message per other input whose
  stamp is within `slop` seconds of it, and outputs the set with the smallest time span
  (newest minus oldest stamp, at most `slop`) at once: no waiting for a possibly better set;
- a message is output in at most one set.

`ApproximateTimeSync` adds two guarantees: sets come out in time order (per input, stamps
strictly increase from set to set), so queued messages older than an output set are dropped
as they can never be output in order; and it counts every message it drops.
"""

from __future__ import annotations

import bisect
import itertools
from typing import Callable

from .conversions import stamp_to_ns


class ApproximateTimeSync:
    """ApproximateTime synchronizer for N inputs (not thread-safe: call from one thread).

    Args:
        num_inputs: number of inputs (2 or more).
        queue_size: messages kept per input while waiting for partners.
        slop: largest time span of an output set, seconds.
        callback: called with one message per input, in input order.
        stamp_of: message -> integer nanoseconds (default: the message's header.stamp).
    """

    def __init__(self, num_inputs: int, queue_size: int, slop: float, callback: Callable[..., None],
                 stamp_of: Callable[[object], int] | None = None):
        if num_inputs < 2:
            raise ValueError(f"an ApproximateTime synchronizer needs 2 or more inputs, got {num_inputs}")
        if queue_size < 1:
            raise ValueError(f"queue_size must be at least 1, got {queue_size}")
        if slop < 0:
            raise ValueError(f"slop must not be negative, got {slop}")
        self.queue_size = int(queue_size)
        self.slop_ns = int(round(slop * 1e9))
        self.callback = callback
        self.stamp_of = stamp_of or (lambda msg: stamp_to_ns(msg.header.stamp))
        # Per input: stamps (sorted) and the messages in the same order.
        self._stamps: list[list[int]] = [[] for _ in range(num_inputs)]
        self._messages: list[list[object]] = [[] for _ in range(num_inputs)]
        self._last_output: list[int | None] = [None] * num_inputs
        self.dropped = 0  # messages that left a queue without being output
        self.emitted = 0  # sets output

    def add(self, index: int, msg) -> None:
        """Add a message on input `index`; calls the callback when it completes a set."""
        stamp = self.stamp_of(msg)
        last = self._last_output[index]
        if last is not None and stamp <= last:
            self.dropped += 1  # older than a set already output on this input
            return
        stamps, messages = self._stamps[index], self._messages[index]
        position = bisect.bisect_left(stamps, stamp)
        if position < len(stamps) and stamps[position] == stamp:
            messages[position] = msg  # same stamp again: the newer message replaces it
            self.dropped += 1
        else:
            stamps.insert(position, stamp)
            messages.insert(position, msg)
        while len(stamps) > self.queue_size:
            stamps.pop(0)
            messages.pop(0)
            self.dropped += 1
        chosen = self._best_set(index, stamp)
        if chosen is not None:
            self._emit(chosen)

    def _best_set(self, index: int, stamp: int) -> list[int] | None:
        """Positions (one per input) of the narrowest set that holds the new message, or None."""
        choices: list[list[int]] = []
        for other, stamps in enumerate(self._stamps):
            if other == index:
                choices.append([bisect.bisect_left(stamps, stamp)])
                continue
            low = bisect.bisect_left(stamps, stamp - self.slop_ns)
            high = bisect.bisect_right(stamps, stamp + self.slop_ns)
            if low == high:
                return None  # no partner within slop on this input (yet)
            choices.append(list(range(low, high)))
        best, best_key = None, None
        # Inputs hold at most queue_size messages each: the product stays small.
        for positions in itertools.product(*choices):
            chosen = [self._stamps[i][p] for i, p in enumerate(positions)]
            span = max(chosen) - min(chosen)
            if span > self.slop_ns:
                continue
            # Narrowest span first, then closest to the new message, then the earliest set.
            key = (span, sum(abs(s - stamp) for s in chosen), sum(chosen))
            if best_key is None or key < best_key:
                best, best_key = list(positions), key
        return best

    def _emit(self, positions: list[int]) -> None:
        messages = []
        for i, position in enumerate(positions):
            messages.append(self._messages[i][position])
            self._last_output[i] = self._stamps[i][position]
            # Everything up to the output message goes: older ones can never be output in order.
            self.dropped += position
            del self._stamps[i][: position + 1]
            del self._messages[i][: position + 1]
        self.emitted += 1
        self.callback(*messages)

    def pending(self) -> int:
        """Messages waiting in the queues."""
        return sum(len(stamps) for stamps in self._stamps)


class MessageFiltersSync:
    """The same interface over message_filters.ApproximateTimeSynchronizer (ROS installs)."""

    def __init__(self, num_inputs: int, queue_size: int, slop: float, callback: Callable[..., None]):
        import message_filters

        self._inputs = [message_filters.SimpleFilter() for _ in range(num_inputs)]
        self._sync = message_filters.ApproximateTimeSynchronizer(self._inputs, queue_size, slop)
        self._sync.registerCallback(self._count_and_call)
        self._callback = callback
        self.emitted = 0
        self.dropped = None  # message_filters does not count what it drops

    def _count_and_call(self, *messages) -> None:
        self.emitted += 1
        self._callback(*messages)

    def add(self, index: int, msg) -> None:
        self._inputs[index].signalMessage(msg)


def message_filters_available() -> bool:
    """Whether message_filters (with ApproximateTimeSynchronizer) can be imported."""
    try:
        from message_filters import ApproximateTimeSynchronizer, SimpleFilter  # noqa: F401
    except ImportError:
        return False
    return True


def make_synchronizer(num_inputs: int, queue_size: int, slop: float, callback: Callable[..., None],
                      implementation: str = "auto") -> ApproximateTimeSync | MessageFiltersSync:
    """An ApproximateTime synchronizer: "message_filters", "omama", or "auto" (the first where
    installed, else the second). Both have `add(index, msg)` and `emitted`/`dropped` counters."""
    if implementation not in ("auto", "message_filters", "omama"):
        raise ValueError(f"unknown synchronizer implementation {implementation!r}")
    if implementation == "message_filters" or (implementation == "auto" and message_filters_available()):
        return MessageFiltersSync(num_inputs, queue_size, slop, callback)
    return ApproximateTimeSync(num_inputs, queue_size, slop, callback)

