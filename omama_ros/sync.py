"""Pairing messages of several inputs by header stamp: the ApproximateTime policy.

`make_synchronizer` uses message_filters' ApproximateTimeSynchronizer where it is installed
(a ROS install) and `ApproximateTimeSync` below otherwise (the pip wheels have no
message_filters). Both follow the same policy, with `queue_size` and `slop` meaning the same:

- each input keeps at most `queue_size` messages (a second message with the same stamp
  replaces the first); the oldest stamp is evicted first, even when it is the new message;
- when a message arrives, the synchronizer looks for one message per other input whose
  stamp is within `slop` of it and outputs a set whose time span (newest minus oldest
  stamp) is strictly less than `slop`, at once: no waiting for a possibly better set.
  Two stamps exactly `slop` apart never pair; `slop` is truncated to whole nanoseconds,
  as rclpy's Duration does;
- with two inputs the set is the new message and its closest partner (equally close
  partners: the earlier stamp here, the one that arrived first in message_filters; the
  same when each input's messages arrive in stamp order);
- a message is output in at most one set.

Where they differ (docs/ros.md, "Pairing the cameras"):

- `ApproximateTimeSync` outputs sets in time order: per input, stamps strictly increase
  from set to set. When a set is output, queued messages older than it are dropped, and a
  message arriving with a stamp at or before the last output on its input is dropped: a
  robot acts on the newest frames, and an answer for an older frame published after a
  newer one would be taken for the current state. message_filters keeps such messages and
  may pair them later, outputting a set older than the one before it. `MessageFiltersSync`
  restores the order by discarding such sets (counted in `stale`), so the node downstream
  always sees time-ordered pairs; its later sets may still differ from ours, since
  message_filters used up messages in the discarded set.
- With three or more inputs ours outputs the narrowest set; message_filters the first set
  under `slop` when trying each input's candidates closest-first (not always the
  narrowest). The node has two inputs.
- `ApproximateTimeSync` counts every message it drops (`dropped`); message_filters does not.
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
        slop: an output set's time span is strictly less than this, seconds (> 0).
        callback: called with one message per input, in input order.
        stamp_of: message -> integer nanoseconds (default: the message's header.stamp).
    """

    def __init__(self, num_inputs: int, queue_size: int, slop: float, callback: Callable[..., None],
                 stamp_of: Callable[[object], int] | None = None):
        if num_inputs < 2:
            raise ValueError(f"an ApproximateTime synchronizer needs 2 or more inputs, got {num_inputs}")
        if queue_size < 1:
            raise ValueError(f"queue_size must be at least 1, got {queue_size}")
        # Truncated as rclpy's Duration(seconds=slop) does, so both pair the same stamps.
        self.slop_ns = int(slop * 1e9)
        if self.slop_ns <= 0:
            raise ValueError(f"slop must be at least 1 ns (stamps pair only when strictly closer than slop), "
                             f"got {slop} s")
        self.queue_size = int(queue_size)
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
            evicted = stamps.pop(0)
            messages.pop(0)
            self.dropped += 1
            if evicted == stamp:
                return  # the new message was the oldest of a full queue: nothing to pair
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
            low = bisect.bisect_right(stamps, stamp - self.slop_ns)
            high = bisect.bisect_left(stamps, stamp + self.slop_ns)
            if low == high:
                return None  # no partner within slop on this input (yet)
            choices.append(list(range(low, high)))
        best, best_key = None, None
        # Inputs hold at most queue_size messages each: the product stays small.
        for positions in itertools.product(*choices):
            chosen = [self._stamps[i][p] for i, p in enumerate(positions)]
            span = max(chosen) - min(chosen)
            if span >= self.slop_ns:
                continue  # strictly under slop, as message_filters
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
    """The same interface over message_filters.ApproximateTimeSynchronizer (ROS installs).

    Sets that are not newer, on every input, than the last set passed on are discarded and
    counted in `stale` (message_filters may output them; the node needs time order).
    """

    def __init__(self, num_inputs: int, queue_size: int, slop: float, callback: Callable[..., None]):
        import message_filters

        self._inputs = [message_filters.SimpleFilter() for _ in range(num_inputs)]
        self._sync = message_filters.ApproximateTimeSynchronizer(self._inputs, queue_size, slop)
        self._sync.registerCallback(self._pass_in_order)
        self._callback = callback
        self._last_output: list[int] | None = None
        self.emitted = 0
        self.stale = 0  # sets message_filters output older than one before them (discarded)
        self.dropped = None  # message_filters does not count what it drops

    def _pass_in_order(self, *messages) -> None:
        stamps = [stamp_to_ns(msg.header.stamp) for msg in messages]
        if self._last_output is not None and any(new <= old for new, old in zip(stamps, self._last_output)):
            self.stale += 1
            return
        self._last_output = stamps
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

