"""Choosing the answer among scored candidates: the published best score, and the
whole-object rule for region hierarchies."""

import numpy as np
import torch

from omama_core.proposals import Proposals
from omama_core.selection.rules import choose_candidates


def hierarchy() -> Proposals:
    """Leaves: 0 = sphere top, 1 = sphere bottom, 2 = table. Candidates: top, sphere, sphere + table."""
    labels = np.full((10, 10), 2)
    labels[2:4, 3:7] = 0
    labels[4:6, 3:7] = 1
    members = np.array([[1, 0, 0], [1, 1, 0], [1, 1, 1]], bool)
    return Proposals(np.zeros((3, 4), np.float32), np.ones(3, np.float32), labels=labels, members=members)


def test_containment_and_areas_of_a_hierarchy_equal_those_of_its_dense_masks():
    sparse = hierarchy()
    dense = Proposals(sparse.boxes, sparse.scores, masks=sparse.masks)
    np.testing.assert_array_equal(sparse.areas(), [8, 16, 100])
    np.testing.assert_array_equal(dense.areas(), sparse.areas())
    expected = np.array([[1, 0, 0], [1, 1, 0], [1, 1, 1]], bool)  # [j, k]: j contains k
    np.testing.assert_array_equal(sparse.containment(), expected)
    np.testing.assert_array_equal(dense.containment(), expected)


def test_partial_cover_counts_as_containment_only_above_the_threshold():
    masks = np.zeros((2, 10, 10), bool)
    masks[0, :, :5] = True  # 50 px
    masks[1, :, 4:6] = True  # 20 px, half of it inside the first
    proposals = Proposals(np.zeros((2, 4), np.float32), np.ones(2, np.float32), masks=masks)
    assert not proposals.containment()[0, 1]
    assert proposals.containment(cover=0.5)[0, 1]


def test_margin_zero_is_the_best_score_and_a_margin_prefers_the_whole_object():
    proposals = hierarchy()
    scores = torch.tensor([[0.90, 0.88, 0.60]])  # the part scores best, the whole nearly as well
    contains = torch.from_numpy(proposals.containment())[None]
    areas = torch.from_numpy(proposals.areas())[None]
    assert choose_candidates(scores, contains, areas, 0.0).tolist() == [0]
    assert choose_candidates(scores, contains, areas, 0.01).tolist() == [0]  # whole not within the margin
    assert choose_candidates(scores, contains, areas, 0.05).tolist() == [1]  # the sphere, not sphere + table
    assert choose_candidates(scores, contains, areas, 0.5).tolist() == [2]


def test_only_candidates_containing_the_best_one_are_eligible():
    proposals = hierarchy()
    scores = torch.tensor([[0.70, 0.90, 0.89]])  # best: the sphere; the top is smaller, the union larger
    contains = torch.from_numpy(proposals.containment())[None]
    areas = torch.from_numpy(proposals.areas())[None]
    assert choose_candidates(scores, contains, areas, 0.05).tolist() == [2]
    scores = torch.tensor([[0.89, 0.90, 0.70]])  # the top scores within the margin but lies inside the best
    assert choose_candidates(scores, contains, areas, 0.05).tolist() == [1]


def test_batched_rows_with_padding():
    proposals = hierarchy()
    contains = torch.zeros(2, 4, 4, dtype=torch.bool)
    contains[:, :3, :3] = torch.from_numpy(proposals.containment())
    areas = torch.zeros(2, 4)
    areas[:, :3] = torch.from_numpy(proposals.areas()).float()
    scores = torch.tensor([[0.90, 0.88, 0.60, -1.0], [0.10, 0.20, 0.95, -1.0]])  # last column: padding
    assert choose_candidates(scores, contains, areas, 0.05).tolist() == [1, 2]


def sphere_with_shadow(with_bottom: bool = True) -> Proposals:
    """Leaves: 0 = sphere top, 1 = sphere bottom, 2 = its shadow, 3 = table. Candidates: top,
    (bottom), sphere, shadow, sphere + shadow, everything."""
    labels = np.full((12, 12), 3)
    labels[2:4, 3:7] = 0
    labels[4:6, 3:7] = 1
    labels[6, 3:7] = 2
    members = [[1, 0, 0, 0], [0, 1, 0, 0], [1, 1, 0, 0], [0, 0, 1, 0], [1, 1, 1, 0], [1, 1, 1, 1]]
    if not with_bottom:
        members.pop(1)
    return Proposals(np.zeros((len(members), 4), np.float32), np.ones(len(members), np.float32),
                     labels=labels, members=np.array(members, bool))


def test_part_check_stops_a_container_whose_added_part_does_not_match():
    proposals = sphere_with_shadow()
    contains = torch.from_numpy(proposals.containment())[None]
    areas = torch.from_numpy(proposals.areas()).float()[None]
    # top, bottom, sphere, shadow, sphere + shadow, everything: the small shadow hardly lowers
    # the score of sphere + shadow, so the margin alone takes it
    scores = torch.tensor([[0.90, 0.84, 0.88, 0.30, 0.87, 0.60]])
    assert choose_candidates(scores, contains, areas, 0.05).tolist() == [4]
    # with the part check: the sphere adds the bottom (0.84, within 0.2), sphere + shadow adds
    # the shadow (0.30), which is not the query
    assert choose_candidates(scores, contains, areas, 0.05, part_margin=0.2).tolist() == [2]
    # a part that is no candidate of its own leaves the margin to decide
    proposals = sphere_with_shadow(with_bottom=False)
    contains = torch.from_numpy(proposals.containment())[None]
    areas = torch.from_numpy(proposals.areas()).float()[None]
    scores = torch.tensor([[0.90, 0.88, 0.30, 0.87, 0.60]])
    assert choose_candidates(scores, contains, areas, 0.05, part_margin=0.2).tolist() == [1]
    assert choose_candidates(scores, contains, areas, 0.05, part_margin=0.7).tolist() == [3]


def test_part_check_on_batched_rows_with_padding_matches_single_rows():
    proposals = sphere_with_shadow()
    n = len(proposals)
    contains = torch.zeros(2, n + 1, n + 1, dtype=torch.bool)
    contains[:, :n, :n] = torch.from_numpy(proposals.containment())
    areas = torch.zeros(2, n + 1)
    areas[:, :n] = torch.from_numpy(proposals.areas()).float()
    scores = torch.tensor([[0.90, 0.84, 0.88, 0.30, 0.87, 0.60, -1.0],
                           [0.20, 0.10, 0.30, 0.95, 0.50, 0.40, -1.0]])  # last column: padding
    batched = choose_candidates(scores, contains, areas, 0.05, part_margin=0.2).tolist()
    single = [choose_candidates(scores[b:b + 1, :n], contains[b:b + 1, :n, :n], areas[b:b + 1, :n], 0.05,
                                part_margin=0.2).item() for b in range(2)]
    assert batched == single == [2, 3]


def two_objects():
    """Candidates 0 = cup, 1 = cup + saucer (contains 0), 2 = bowl, 3 = table patch: (contains, areas)."""
    contains = torch.eye(4, dtype=torch.bool)
    contains[1, 0] = True
    return contains, torch.tensor([10.0, 30.0, 12.0, 50.0])


def test_exclusive_choices_give_a_taken_candidate_to_the_better_query_only():
    from omama_core.selection.rules import exclusive_choices

    contains, areas = two_objects()
    scores = torch.tensor([[0.9, 0.5, 0.2, 0.1],    # the cup's query
                           [0.8, 0.6, 0.7, 0.3],    # a hidden twin: wants the cup too, bowl second
                           [0.1, 0.75, 0.2, 0.6]])  # wants cup + saucer, which holds the cup
    chosen = choose_candidates(scores)
    answers, best_left = exclusive_choices(scores, chosen, contains, areas)
    assert answers.tolist() == [0, 2, 3]  # the twin falls back to the bowl; the third to what is not nested
    assert torch.allclose(best_left, torch.tensor([0.9, 0.7, 0.6]))
    assert choose_candidates(scores).tolist() == [0, 0, 1]  # without it, two queries share the cup


def test_exclusive_choices_leave_inactive_queries_and_report_when_nothing_is_left():
    from omama_core.selection.rules import exclusive_choices

    contains, areas = two_objects()
    contains[3, :] = True  # the table patch now holds everything
    scores = torch.tensor([[0.2, 0.1, 0.1, 0.9], [0.3, 0.2, 0.1, 0.8], [0.9, 0.1, 0.1, 0.1]])
    chosen = choose_candidates(scores)
    answers, best_left = exclusive_choices(scores, chosen, contains, areas,
                                           active=torch.tensor([True, True, False]))
    assert answers[0] == 3 and best_left[0] == 0.9
    assert best_left[1] == -1.0  # everything is nested with the first answer
    assert answers[2] == chosen[2]  # inactive: untouched


def test_a_query_below_the_threshold_takes_nothing():
    from omama_core.selection.rules import exclusive_choices

    contains, areas = two_objects()
    scores = torch.tensor([[0.9, 0.1, 0.2, 0.1],   # keeps the cup
                           [0.8, 0.1, 0.5, 0.1],   # loses the cup; the bowl (0.5) is below 0.6
                           [0.1, 0.1, 0.7, 0.1]])  # so the bowl stays free for this one
    answers, best_left = exclusive_choices(scores, choose_candidates(scores), contains, areas, keep_above=0.6)
    assert answers.tolist() == [0, 2, 2] and torch.allclose(best_left, torch.tensor([0.9, 0.5, 0.7]))
    answers, _ = exclusive_choices(scores, choose_candidates(scores), contains, areas)
    assert answers.tolist() == [0, 2, 3]  # without the threshold the second query blocks the bowl


def test_reverse_check_lowers_only_candidates_that_match_another_source_region_better():
    from omama_core.selection.rules import reverse_checked_scores

    scores = torch.tensor([[0.9, 0.8, 0.3]])  # one query, three target candidates
    reverse = torch.tensor([[0.5, 0.95],  # candidate 0: no outside region beats the query
                            [0.95, 0.2],  # candidate 1: region 0 matches it 0.15 better
                            [0.1, 0.1]])
    outside = torch.tensor([[True, True]])
    checked = reverse_checked_scores(scores, reverse, outside, weight=2.0)
    assert torch.allclose(checked, torch.tensor([[0.9 - 2 * 0.05, 0.8 - 2 * 0.15, 0.3]]))
    # region 1 is part of the query (not outside): it cannot count against candidate 0
    checked = reverse_checked_scores(scores, reverse, torch.tensor([[True, False]]), weight=2.0)
    assert torch.allclose(checked, torch.tensor([[0.9, 0.5, 0.3]]))
    # no outside region at all, or weight 0: the scores are unchanged
    assert torch.equal(reverse_checked_scores(scores, reverse, torch.tensor([[False, False]]), 2.0), scores)
    assert torch.equal(reverse_checked_scores(scores, reverse, outside, 0.0), scores)


def test_outside_regions_tell_a_query_s_own_parts_from_the_rest():
    from omama_core.selection.rules import outside_regions

    labels = np.full((40, 40), 2)  # 0 = the object's top quarter, 1 = the rest of it, 2 = table
    labels[8:24, 8:24] = 1
    labels[8:12, 8:24] = 0
    members = np.array([[1, 0, 0], [1, 1, 0], [1, 1, 1]], bool)  # top, object, object + table
    regions = Proposals(np.zeros((3, 4), np.float32), np.ones(3, np.float32), labels=labels, members=members)
    outside = outside_regions(np.stack([regions.mask(1), regions.mask(0)]), regions)
    # the object's query owns its top and itself; object + table is mostly table
    assert outside[0].tolist() == [False, False, True]
    # a query of the top quarter owns only the top: three quarters of the object lie outside it
    assert outside[1].tolist() == [False, True, True]
