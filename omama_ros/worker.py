"""Latest-only background processing.

Inference is slower than the cameras. The subscription callbacks only hand work to this
worker; it runs one item at a time in its own thread, and while it is busy the newest item
waits in a single slot: a newer item replaces the waiting one (counted as dropped). Memory
stays bounded however fast items arrive, and what is processed is never older than the
newest input by more than one processing time.
"""

from __future__ import annotations

import threading
from typing import Any, Callable


class LatestOnlyWorker:
    """Runs `process(item)` in one thread on the newest submitted item only.

    `on_error(exception, item)` is called when `process` raises; the worker goes on with the
    next item.
    """

    def __init__(self, process: Callable[[Any], None], on_error: Callable[[BaseException, Any], None],
                 name: str = "omama-worker"):
        self._process = process
        self._on_error = on_error
        self._condition = threading.Condition()
        self._waiting: Any = None
        self._has_waiting = False
        self._stopping = False
        self.busy = False
        self.submitted = 0
        self.processed = 0
        self.failed = 0
        self.dropped = 0  # replaced while waiting
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def submit(self, item: Any) -> bool:
        """Queue `item` for processing; returns True when it replaced a waiting item."""
        with self._condition:
            replaced = self._has_waiting
            if replaced:
                self.dropped += 1
            self._waiting, self._has_waiting = item, True
            self.submitted += 1
            self._condition.notify()
        return replaced

    def stop(self, timeout: float = 5.0) -> bool:
        """Stop after the current item (the waiting one is discarded); True when stopped."""
        with self._condition:
            self._stopping = True
            self._waiting, self._has_waiting = None, False
            self._condition.notify()
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def wait_idle(self, timeout: float) -> bool:
        """Block until nothing runs or waits (tests and shutdown); True when idle."""
        with self._condition:
            return self._condition.wait_for(lambda: not self.busy and not self._has_waiting, timeout)

    def _run(self) -> None:
        while True:
            with self._condition:
                self._condition.wait_for(lambda: self._has_waiting or self._stopping)
                if self._stopping:
                    return
                item, self._waiting, self._has_waiting = self._waiting, None, False
                self.busy = True
            try:
                self._process(item)
                self.processed += 1
            except Exception as error:  # noqa: BLE001 - any fault of one item must not stop the node
                self.failed += 1
                try:
                    self._on_error(error, item)
                except Exception:  # noqa: BLE001 - the error reporter itself must not kill the thread
                    pass
            finally:
                del item
                with self._condition:
                    self.busy = False
                    self._condition.notify_all()
