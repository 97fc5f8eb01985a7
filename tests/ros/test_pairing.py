"""omama_ros.pairing: queries meet the frame pair with their source stamp, or are reported."""

from __future__ import annotations

from omama_ros.pairing import FramePair, QueryPairer


def pair(stamp: int) -> FramePair:
    return FramePair(source=f"src{stamp}", target=f"tgt{stamp}", source_stamp=stamp)


def test_queries_after_their_pair_are_answered_from_history():
    pairer = QueryPairer(history=3)
    for stamp in (10, 20, 30):
        assert pairer.add_pair(pair(stamp), now=0.0) == ([], [])
    ready, unmatched = pairer.add_queries("q20", 20, now=1.0)
    assert [(w.pair.source, w.queries, w.received) for w in ready] == [("src20", "q20", 1.0)] and unmatched == []


def test_queries_before_their_pair_wait_for_it():
    pairer = QueryPairer()
    assert pairer.add_queries("q40", 40, now=0.0) == ([], [])
    assert pairer.pending() == 1
    ready, unmatched = pairer.add_pair(pair(40), now=2.0)
    assert [w.queries for w in ready] == ["q40"] and unmatched == [] and pairer.pending() == 0


def test_a_stamp_between_pairs_is_unmatched_at_once():
    pairer = QueryPairer()
    pairer.add_pair(pair(10), 0.0)
    pairer.add_pair(pair(20), 0.0)
    ready, unmatched = pairer.add_queries("q15", 15, 0.0)
    assert ready == [] and [(u.queries, u.stamp) for u in unmatched] == [("q15", 15)]
    assert "no synchronized frame pair" in unmatched[0].reason


def test_a_stamp_older_than_the_history_is_unmatched():
    pairer = QueryPairer(history=2)
    for stamp in (10, 20, 30):
        pairer.add_pair(pair(stamp), 0.0)
    ready, unmatched = pairer.add_queries("q10", 10, 0.0)
    assert ready == [] and "older than every frame pair kept" in unmatched[0].reason


def test_waiting_queries_are_unmatched_when_a_newer_pair_comes():
    pairer = QueryPairer()
    pairer.add_queries("q25", 25, 0.0)
    pairer.add_queries("q40", 40, 0.0)
    ready, unmatched = pairer.add_pair(pair(30), 0.0)
    assert ready == [] and [u.queries for u in unmatched] == ["q25"] and pairer.pending() == 1


def test_waiting_queries_are_bounded():
    pairer = QueryPairer(max_pending=2)
    for stamp in (100, 200, 300):
        ready, unmatched = pairer.add_queries(f"q{stamp}", stamp, 0.0)
    assert [u.queries for u in unmatched] == ["q100"] and "waited too long" in unmatched[0].reason
    assert pairer.pending() == 2 and pairer.newest_source_stamp() is None
