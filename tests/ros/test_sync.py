"""The ApproximateTime policy of omama_ros.sync (no ROS needed: messages are (name, stamp))."""

from __future__ import annotations

import random
from types import SimpleNamespace

import pytest

from omama_ros.sync import ApproximateTimeSync, MessageFiltersSync, make_synchronizer, message_filters_available

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


def test_stamps_exactly_slop_apart_never_pair():
    """Strictly under slop, as message_filters: 10 ms apart with slop 10 ms is no pair."""
    sync, sets = make(slop=0.010)
    sync.add(0, ("ego", 0))
    sync.add(1, ("exo", 10 * MS))
    assert sets == []
    sync.add(1, ("exo", 10 * MS - 1))  # 1 ns closer: pairs
    assert stamps(sets) == [(0, 10 * MS - 1)]


def test_a_partner_exactly_slop_away_is_not_chosen_over_none():
    sync, sets = make(slop=0.010)
    sync.add(1, ("exo", 90 * MS))
    sync.add(1, ("exo", 110 * MS))
    sync.add(0, ("ego", 100 * MS))  # both partners exactly 10 ms away
    assert sets == []


def test_slop_is_truncated_to_nanoseconds_as_rclpy_duration():
    sync, _ = make(slop=2.9e-9)  # 2.9 ns: rclpy's Duration(seconds=2.9e-9) is 2 ns
    assert sync.slop_ns == 2
    with pytest.raises(ValueError, match="strictly closer"):
        make(slop=0.0)
    with pytest.raises(ValueError):
        make(slop=0.5e-9)  # under 1 ns: nothing could ever pair


def test_new_message_evicted_from_a_full_queue_outputs_nothing():
    """A late message older than a full queue's messages is evicted at once (as message_filters
    does): it must not output a set holding some other queued message instead."""
    sync, sets = make(queue_size=2, slop=0.010)
    sync.add(0, ("ego", 200 * MS))
    sync.add(0, ("ego", 300 * MS))
    sync.add(1, ("exo", 50 * MS))
    sync.add(0, ("ego", 51 * MS))  # the oldest of a full queue: evicted
    assert sets == [] and sync.dropped == 1
    assert sync._stamps[0] == [200 * MS, 300 * MS]


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
    assert all(abs(a - b) < slop * 1e9 for a, b in pairs)
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
        ApproximateTimeSync(2, 10, 0.0, print)
    with pytest.raises(ValueError):
        make_synchronizer(2, 10, 0.01, print, implementation="exact")


def test_factory_falls_back_to_ours():
    sync = make_synchronizer(2, 10, 0.01, print, implementation="omama")
    assert isinstance(sync, ApproximateTimeSync)
    if not message_filters_available():
        assert isinstance(make_synchronizer(2, 10, 0.01, print), ApproximateTimeSync)


class ReferenceMessageFilters:
    """A model of message_filters' two-input ApproximateTime policy (6.0.x), written from its
    documented behaviour for these tests: per input a dict stamp -> message (a repeated stamp
    replaces, the oldest stamp is evicted past queue_size); a new message pairs with the
    other input's closest message strictly under slop (equally close: the one that arrived
    first); only the two paired messages leave the queues; nothing enforces time order.
    `test_reference_model_is_message_filters` checks it against the real one where installed."""

    def __init__(self, queue_size: int, slop: float, callback, stamp_of=lambda msg: msg[1]):
        self.queues: list[dict[int, object]] = [{}, {}]
        self.queue_size, self.slop_ns = queue_size, int(slop * 1e9)
        self.callback, self.stamp_of = callback, stamp_of

    def add(self, index: int, msg) -> None:
        mine, other = self.queues[index], self.queues[1 - index]
        stamp = self.stamp_of(msg)
        mine[stamp] = msg
        while len(mine) > self.queue_size:
            del mine[min(mine)]
        if stamp not in mine:
            return
        closest = sorted(other, key=lambda s: abs(s - stamp))  # stable: arrival order breaks ties
        if closest and abs(closest[0] - stamp) < self.slop_ns:
            pair = [mine.pop(stamp), other.pop(closest[0])]
            self.callback(*(pair if index == 0 else pair[::-1]))


def random_arrivals(rng: random.Random, frames: int, reorder_ms: float, rates=(33, 33)):
    """(index, (name, stamp)) in arrival order: two jittered cameras, lost frames, network delay."""
    arrivals = []
    for index, period in enumerate(rates):
        for k in range(frames):
            if rng.random() < 0.1:
                continue
            stamp = 10**9 + k * period * MS + int(rng.gauss(0, 3) * MS)  # from 1 s: no negative stamps
            arrivals.append((k * period + rng.uniform(0, reorder_ms), index, (f"{index}-{k}", stamp)))
    arrivals.sort(key=lambda item: item[0])
    return [(index, msg) for _, index, msg in arrivals]


def first_out_of_order(pairs: list[tuple[int, int]]) -> int:
    """Index of the first set not newer, on some input, than the set before it (len if none)."""
    for k in range(1, len(pairs)):
        if any(new <= old for new, old in zip(pairs[k], pairs[k - 1])):
            return k
    return len(pairs)


def run_both(arrivals, queue_size=6, slop=0.012):
    """Stamps of the sets output by ours and by the message_filters model on the same arrivals."""
    sync, ours = make(queue_size=queue_size, slop=slop)
    theirs = []
    reference = ReferenceMessageFilters(queue_size, slop, lambda *m: theirs.append(m))
    for index, msg in arrivals:
        sync.add(index, msg)
        reference.add(index, msg)
    return stamps(ours), stamps(theirs)


@pytest.mark.parametrize("rates", [(33, 33), (33, 25)])
def test_same_sets_as_message_filters_when_it_keeps_time_order(rates):
    """Jittered cameras (equal rates, or a faster exo), lost frames, up to 20 ms network delay:
    both output the very same sets in the same order."""
    for seed in range(6):
        ours, theirs = run_both(random_arrivals(random.Random(seed), 200, reorder_ms=20.0, rates=rates))
        assert len(ours) > 80 and first_out_of_order(theirs) == len(theirs)
        assert ours == theirs, seed


def test_same_sets_as_message_filters_until_it_goes_back_in_time():
    """Up to 45 ms delay (later frames may overtake earlier ones): message_filters sometimes
    outputs a set older than the one before; until it does, ours outputs exactly its sets;
    ours never goes back in time."""
    went_back = 0
    for seed in range(8):
        rates = (33, 33) if seed % 2 else (33, 25)
        ours, theirs = run_both(random_arrivals(random.Random(seed), 200, reorder_ms=45.0, rates=rates))
        cut = first_out_of_order(theirs)
        went_back += cut < len(theirs)
        assert first_out_of_order(ours) == len(ours)
        assert ours[:cut] == theirs[:cut], seed
    assert went_back >= 3  # the streams do exercise the difference


def test_out_of_order_set_of_message_filters_is_dropped():
    """Exo runs faster than ego: after (110, 112), message_filters still holds ego 100 and pairs
    it with exo 115, going back in time; ours dropped ego 100 when ego 110 was output."""
    sequence = [(0, ("ego", 100 * MS)), (0, ("ego", 110 * MS)), (1, ("exo", 112 * MS)), (1, ("exo", 115 * MS))]
    sync, sets = make(slop=0.020)
    theirs = []
    reference = ReferenceMessageFilters(10, 0.020, lambda *m: theirs.append(m))
    for index, msg in sequence:
        sync.add(index, msg)
        reference.add(index, msg)
    assert stamps(theirs) == [(110 * MS, 112 * MS), (100 * MS, 115 * MS)]
    assert stamps(sets) == [(110 * MS, 112 * MS)]
    assert sync.dropped == 1 and sync.pending() == 1  # ego 100 dropped, exo 115 waits


def header_msg(name: str, ns: int, stamp_type=SimpleNamespace):
    """A message with a name and header.stamp (`stamp_type` builtin_interfaces' Time for message_filters)."""
    stamp = stamp_type(sec=ns // 10**9, nanosec=ns % 10**9)
    return SimpleNamespace(name=name, header=SimpleNamespace(stamp=stamp))


def fake_message_filters():
    """A stand-in `message_filters` module (SimpleFilter, ApproximateTimeSynchronizer) running
    the reference model, to test MessageFiltersSync where message_filters is not installed."""

    class SimpleFilter:
        def __init__(self):
            self.callbacks = []

        def registerCallback(self, callback, *args):  # noqa: N802 - message_filters' name
            self.callbacks.append((callback, args))

        def signalMessage(self, *messages):  # noqa: N802
            for callback, args in self.callbacks:
                callback(*messages, *args)

    class ApproximateTimeSynchronizer(SimpleFilter):
        def __init__(self, inputs, queue_size, slop):
            super().__init__()
            self.model = ReferenceMessageFilters(queue_size, slop, self.signalMessage,
                                                 stamp_of=lambda m: m.header.stamp.sec * 10**9 + m.header.stamp.nanosec)
            for index, source in enumerate(inputs):
                source.registerCallback(lambda msg, i: self.model.add(i, msg), index)

    return SimpleNamespace(SimpleFilter=SimpleFilter, ApproximateTimeSynchronizer=ApproximateTimeSynchronizer)


@pytest.mark.parametrize("message_filters", [
    "model", pytest.param("installed", marks=pytest.mark.skipif(not message_filters_available(),
                                                               reason="message_filters is only on ROS installs"))])
def test_message_filters_wrapper_discards_sets_that_go_back_in_time(monkeypatch, message_filters):
    import sys

    stamp_type = SimpleNamespace
    if message_filters == "model":
        monkeypatch.setitem(sys.modules, "message_filters", fake_message_filters())
    else:
        from builtin_interfaces.msg import Time as stamp_type
    out = []
    sync = make_synchronizer(2, 10, 0.020, lambda *m: out.append(m), implementation="message_filters")
    assert isinstance(sync, MessageFiltersSync)
    for index, name, ms in [(0, "ego", 100), (0, "ego", 110), (1, "exo", 112), (1, "exo", 115), (0, "ego", 140),
                            (1, "exo", 141)]:
        sync.add(index, header_msg(f"{name}{ms}", ms * MS, stamp_type))
    assert [tuple(m.name for m in group) for group in out] == [("ego110", "exo112"), ("ego140", "exo141")]
    assert sync.emitted == 2 and sync.stale == 1 and sync.dropped is None


@pytest.mark.skipif(not message_filters_available(), reason="message_filters is only on ROS installs")
@pytest.mark.parametrize("seed", range(4))
def test_reference_model_is_message_filters(seed):
    """On a ROS install: the model above outputs what message_filters outputs, out-of-order sets
    and ties included, on reordered streams of two cameras at different rates."""
    from builtin_interfaces.msg import Time
    from message_filters import ApproximateTimeSynchronizer, SimpleFilter

    arrivals = random_arrivals(random.Random(seed), 150, reorder_ms=45.0, rates=(33, 25))
    arrivals += [(0, ("edge-a", 10**11)), (1, ("edge-b", 10**11 + 12 * MS))]  # exactly slop apart
    real, model = [], []
    inputs = [SimpleFilter(), SimpleFilter()]
    synchronizer = ApproximateTimeSynchronizer(inputs, 6, 0.012)
    synchronizer.registerCallback(lambda *m: real.append(tuple(x.name for x in m)))
    reference = ReferenceMessageFilters(6, 0.012, lambda *m: model.append(tuple(x.name for x in m)),
                                        stamp_of=lambda m: m.header.stamp.sec * 10**9 + m.header.stamp.nanosec)
    for index, (name, ns) in arrivals:
        message = header_msg(name, ns, Time)
        inputs[index].signalMessage(message)
        reference.add(index, message)
    assert real == model


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
