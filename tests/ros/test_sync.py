"""The ApproximateTime policy of omama_ros.sync (no ROS needed: messages are (name, stamp))."""

from __future__ import annotations

import random
from types import SimpleNamespace

import pytest

from omama_ros.sync import ApproximateTimeSync, make_synchronizer, message_filters_available

MS = 1_000_000  # ns


def make(num_inputs=2, queue_size=10, slop=0.010):
    sets = []
    sync = ApproximateTimeSync(num_inputs, queue_size, slop, lambda *msgs: sets.append(msgs),
                               stamp_of=lambda msg: msg[1])
    return sync, sets


def stamps(sets):
    return [tuple(msg[1] for msg in group) for group in sets]


def test_equal_stamps_pair_as_soon_as_complete():
    sync, sets = make()
    for k in range(5):
        sync.add(0, ("ego", k * 33 * MS))
        assert len(sets) == k
        sync.add(1, ("exo", k * 33 * MS))
        assert len(sets) == k + 1  # no waiting for a possibly better partner
    assert stamps(sets) == [(k * 33 * MS, k * 33 * MS) for k in range(5)]
    assert sync.dropped == 0 and sync.pending() == 0


def test_either_input_may_come_first():
    sync, sets = make()
    sync.add(1, ("exo", 100 * MS))
    sync.add(0, ("ego", 104 * MS))
    assert stamps(sets) == [(104 * MS, 100 * MS)]


def test_nearest_partner_within_slop_is_chosen():
    sync, sets = make(slop=0.020)
    sync.add(1, ("exo", 90 * MS))
    sync.add(1, ("exo", 105 * MS))
    sync.add(0, ("ego", 100 * MS))
    assert stamps(sets) == [(100 * MS, 105 * MS)]
    assert sync.dropped == 1  # exo 90 can no longer be output in time order


def test_nothing_is_output_beyond_slop():
    sync, sets = make(queue_size=3, slop=0.005)
    for k in range(10):
        sync.add(0, ("ego", k * 100 * MS))
        sync.add(1, ("exo", k * 100 * MS + 50 * MS))
    assert sets == []
    assert sync.pending() == 6 and sync.dropped == 14  # queues stay at queue_size


def test_span_is_inclusive_of_slop():
    sync, sets = make(slop=0.010)
    sync.add(0, ("ego", 0))
    sync.add(1, ("exo", 10 * MS))
    assert stamps(sets) == [(0, 10 * MS)]


def test_late_messages_older_than_an_output_are_dropped():
    sync, sets = make()
    sync.add(0, ("ego", 100 * MS))
    sync.add(1, ("exo", 100 * MS))
    sync.add(0, ("ego", 95 * MS))  # arrives late, older than what was output
    sync.add(1, ("exo", 96 * MS))
    assert stamps(sets) == [(100 * MS, 100 * MS)]
    assert sync.dropped == 2


def test_same_stamp_twice_keeps_the_newer_message():
    sync, sets = make()
    sync.add(0, ("first", 5 * MS))
    sync.add(0, ("second", 5 * MS))
    sync.add(1, ("exo", 5 * MS))
    assert sets == [(("second", 5 * MS), ("exo", 5 * MS))]


def test_three_inputs_keep_the_whole_set_within_slop():
    sync, sets = make(num_inputs=3, slop=0.010)
    sync.add(0, ("a", 100 * MS))
    sync.add(1, ("b", 91 * MS))  # within slop of a, but 18 ms from c
    sync.add(1, ("b", 104 * MS))
    sync.add(2, ("c", 109 * MS))
    assert stamps(sets) == [(100 * MS, 104 * MS, 109 * MS)]


@pytest.mark.parametrize("seed", range(5))
def test_policy_properties_on_random_streams(seed):
    """Jittered 30 Hz cameras, lost and reordered frames: sets are narrow, time-ordered, each
    message is used once, queues stay bounded, every message is output or counted dropped."""
    rng = random.Random(seed)
    queue_size, slop = 5, 0.012
    sync, sets = make(queue_size=queue_size, slop=slop)
    arrivals = []
    for k in range(300):
        for index in range(2):
            if rng.random() < 0.1:
                continue  # lost frame
            stamp = k * 33 * MS + int(rng.gauss(0, 3) * MS)
            arrivals.append((k * 33 + rng.uniform(0, 40), index, (f"{index}-{k}", stamp)))
    arrivals.sort(key=lambda item: item[0])  # network delay may reorder
    for _, index, msg in arrivals:
        sync.add(index, msg)
        assert all(len(queue) <= queue_size for queue in sync._stamps)
    pairs = stamps(sets)
    assert len(pairs) > 200
    assert all(abs(a - b) <= slop * 1e9 for a, b in pairs)
    for column in zip(*pairs):
        assert all(x < y for x, y in zip(column, column[1:]))
    names = [msg[0] for group in sets for msg in group]
    assert len(names) == len(set(names))
    assert len(names) + sync.dropped + sync.pending() == len(arrivals)


def test_header_stamps_by_default():
    sets = []
    sync = ApproximateTimeSync(2, 10, 0.01, lambda *m: sets.append(m))

    def msg(sec, nanosec):
        return SimpleNamespace(header=SimpleNamespace(stamp=SimpleNamespace(sec=sec, nanosec=nanosec)))

    sync.add(0, msg(10, 999_000_000))
    sync.add(1, msg(11, 1_000_000))  # 2 ms later, across the second boundary
    assert len(sets) == 1


def test_bad_arguments():
    with pytest.raises(ValueError):
        ApproximateTimeSync(1, 10, 0.01, print)
    with pytest.raises(ValueError):
        ApproximateTimeSync(2, 0, 0.01, print)
    with pytest.raises(ValueError):
        ApproximateTimeSync(2, 10, -1.0, print)
    with pytest.raises(ValueError):
        make_synchronizer(2, 10, 0.01, print, implementation="exact")


def test_factory_falls_back_to_ours():
    sync = make_synchronizer(2, 10, 0.01, print, implementation="omama")
    assert isinstance(sync, ApproximateTimeSync)
    if not message_filters_available():
        assert isinstance(make_synchronizer(2, 10, 0.01, print), ApproximateTimeSync)


@pytest.mark.skipif(not message_filters_available(), reason="message_filters is only on ROS installs")
def test_same_sets_as_message_filters():
    """On a ROS install: message_filters and ours pair regular jittered streams alike."""
    from builtin_interfaces.msg import Time
    from std_msgs.msg import Header

    rng = random.Random(1)
    streams = []
    for k in range(50):
        for index in range(2):
            ns = k * 33 * MS + int(rng.gauss(0, 2) * MS)
            streams.append((index, SimpleNamespace(header=Header(stamp=Time(sec=ns // 10**9, nanosec=ns % 10**9)))))
    results = {}
    for implementation in ("omama", "message_filters"):
        out = []
        sync = make_synchronizer(2, 10, 0.010, lambda *m: out.append(m), implementation=implementation)
        for index, msg in streams:
            sync.add(index, msg)
        results[implementation] = [tuple(id(m) for m in group) for group in out]
    assert results["omama"] == results["message_filters"]
