"""omama_ros.worker: one item at a time, the newest only, faults survived, memory bounded."""

from __future__ import annotations

import threading
import time

from omama_ros.worker import LatestOnlyWorker


def test_newest_item_replaces_the_waiting_one():
    started, release = threading.Event(), threading.Event()
    done = []

    def process(item):
        if item == 0:
            started.set()
            release.wait(5)
        done.append(item)

    worker = LatestOnlyWorker(process, lambda e, i: None)
    worker.submit(0)
    assert started.wait(5)  # item 0 is running
    replaced = [worker.submit(k) for k in range(1, 6)]
    assert replaced == [False, True, True, True, True]
    release.set()
    assert worker.wait_idle(5)
    assert done == [0, 5] and worker.dropped == 4 and worker.processed == 2 and worker.submitted == 6
    assert worker.stop()


def test_exceptions_are_reported_and_the_next_item_runs():
    errors = []

    def process(item):
        if item == "bad":
            raise RuntimeError("boom")

    worker = LatestOnlyWorker(process, lambda error, item: errors.append((str(error), item)))
    worker.submit("bad")
    assert worker.wait_idle(5)
    worker.submit("good")
    assert worker.wait_idle(5)
    assert errors == [("boom", "bad")] and worker.failed == 1 and worker.processed == 1
    assert worker.stop()


def test_a_failing_error_handler_does_not_stop_the_worker():
    def on_error(error, item):
        raise ValueError("handler broke")

    worker = LatestOnlyWorker(lambda item: 1 / 0 if item else None, on_error)
    worker.submit(1)
    assert worker.wait_idle(5)
    worker.submit(0)
    assert worker.wait_idle(5) and worker.processed == 1
    assert worker.stop()


def test_stop_discards_the_waiting_item():
    started = threading.Event()
    worker = LatestOnlyWorker(lambda item: (started.set(), time.sleep(0.2)), lambda e, i: None)
    worker.submit(1)
    started.wait(5)
    worker.submit(2)
    assert worker.stop(5) and worker.processed == 1
