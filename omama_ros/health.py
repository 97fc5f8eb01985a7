"""The node's health: counters, timings, rate-limited error logging and the diagnostic status.

Every fault of one message (bad encoding, truncated data, wrong mask size, a query without a
frame pair, an exception in the model) is counted by kind, logged (the first of each kind at
once, then at most once per `log_period` seconds with the number left out) and shown in the
diagnostics; the node goes on with the next message.
"""

from __future__ import annotations

import threading
import time
from collections import Counter, deque
from typing import Callable

OK, WARN, ERROR = 0, 1, 2  # diagnostic_msgs/DiagnosticStatus levels


class Health:
    """Thread-safe counters and recent timings of one node.

    Args:
        log: called with a message to log as an error (the node's logger).
        log_period: seconds between two logs of the same kind of error.
        clock: monotonic seconds (injectable for tests).
    """

    def __init__(self, log: Callable[[str], None], log_period: float = 2.0,
                 clock: Callable[[], float] = time.monotonic):
        self._log = log
        self._log_period = log_period
        self._clock = clock
        self._lock = threading.Lock()
        self.errors: Counter[str] = Counter()
        self.counts: Counter[str] = Counter()
        self.last_error = ""
        self._errors_at_last_report = 0
        self._last_logged: dict[str, float] = {}
        self._suppressed: Counter[str] = Counter()
        self._processing_ms: deque[float] = deque(maxlen=100)
        self._latency_ms: deque[float] = deque(maxlen=100)

    def error(self, kind: str, message: str) -> None:
        """Count an error of `kind` and log it, rate-limited per kind."""
        now = self._clock()
        with self._lock:
            self.errors[kind] += 1
            self.last_error = f"{kind}: {message}"
            last = self._last_logged.get(kind)
            if last is not None and now - last < self._log_period:
                self._suppressed[kind] += 1
                return
            self._last_logged[kind] = now
            left_out, self._suppressed[kind] = self._suppressed[kind], 0
        suffix = f" ({left_out} more like this since the last report)" if left_out else ""
        self._log(f"{kind}: {message}{suffix}")

    def count(self, name: str, amount: int = 1) -> None:
        """Add to a plain counter (processed, published, ...)."""
        with self._lock:
            self.counts[name] += amount

    def timing(self, processing_ms: float, latency_ms: float) -> None:
        """Record one processed set's processing time and input-to-output latency."""
        with self._lock:
            self._processing_ms.append(processing_ms)
            self._latency_ms.append(latency_ms)

    def snapshot(self, extra: dict[str, object] | None = None) -> tuple[int, str, dict[str, str]]:
        """(level, message, key-values) for a DiagnosticStatus; WARN when errors happened since the
        previous snapshot."""
        with self._lock:
            total_errors = sum(self.errors.values())
            new_errors = total_errors - self._errors_at_last_report
            self._errors_at_last_report = total_errors
            values: dict[str, str] = {}
            for name, samples in (("processing_ms", self._processing_ms), ("latency_ms", self._latency_ms)):
                if samples:
                    ordered = sorted(samples)
                    values[f"{name}_last"] = f"{samples[-1]:.1f}"
                    values[f"{name}_p50"] = f"{ordered[len(ordered) // 2]:.1f}"
                    values[f"{name}_max"] = f"{ordered[-1]:.1f}"
            values.update({name: str(value) for name, value in sorted(self.counts.items())})
            values.update({f"errors_{kind}": str(value) for kind, value in sorted(self.errors.items())})
            values["errors_total"] = str(total_errors)
            values["last_error"] = self.last_error
        values.update({name: str(value) for name, value in (extra or {}).items()})
        if new_errors:
            return WARN, f"{new_errors} error(s) since the last report; last: {self.last_error}", values
        return OK, "running", values


def diagnostic_array(stamp, name: str, hardware_id: str, level: int, message: str, values: dict[str, str]):
    """A diagnostic_msgs/DiagnosticArray with one status."""
    from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue

    status = DiagnosticStatus(level=bytes([level]), name=name, message=message, hardware_id=hardware_id,
                              values=[KeyValue(key=k, value=v) for k, v in values.items()])
    array = DiagnosticArray(status=[status])
    array.header.stamp = stamp
    return array
