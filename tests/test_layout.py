"""The layout prior across the queries of one call (layout.py): the affine fit, the penalty,
each query's ranked objects, and a twin told apart by where it is."""

import numpy as np
import pytest
import torch

from omama_core.errors import ConfigError
from omama_core.selection.layout import fit_layout, layout_penalty
from omama_core.masks import mask_centroids
from omama_core.proposals import Proposals
from omama_core.selection.rules import ranked_choices

from tests.conftest import OBJECTS, draw_scene

TRUE_MAP = np.array([[1.4, 0.2, 30.0], [-0.1, 1.1, 12.0]])  # target = A @ source + t


def mapped(points: np.ndarray) -> np.ndarray:
    return points @ TRUE_MAP[:, :2].T + TRUE_MAP[:, 2]


def test_mask_centroids_and_empty_masks():
    masks = np.zeros((2, 20, 30), bool)
    masks[0, 4:8, 10:20] = True
    centres = mask_centroids(masks)
    np.testing.assert_allclose(centres[0], [14.5, 5.5])
    assert np.isnan(centres[1]).all()


def test_centroids_of_a_hierarchy_equal_those_of_its_dense_masks():
    labels = np.zeros((12, 16), np.int64)
    labels[2:6, 3:9] = 1
    labels[7:11, 10:15] = 2
    members = np.array([[0, 1, 0], [0, 1, 1], [1, 1, 1], [0, 0, 0]], bool)  # the last one is empty
    sparse = Proposals(np.zeros((4, 4), np.float32), np.ones(4, np.float32), labels=labels, members=members)
    dense = Proposals(sparse.boxes, sparse.scores, masks=sparse.masks)
    np.testing.assert_allclose(sparse.centroids(), mask_centroids(sparse.masks))
    np.testing.assert_allclose(dense.centroids(), sparse.centroids())
    np.testing.assert_allclose(sparse.centroids()[0], [5.5, 3.5])
    assert np.isnan(sparse.centroids()[3]).all()  # NaN, which the layout fit rules out


def objects_and_twin():
    """Five queries; candidates 0-4 are their objects where TRUE_MAP puts them, candidate 5 a
    twin of query 0 far from it, which query 0 scores higher than its own object."""
    queries = np.array([[40.0, 50.0], [200.0, 60.0], [120.0, 180.0], [260.0, 220.0], [60.0, 240.0]])
    candidates = np.concatenate([mapped(queries), [[520.0, 400.0]]])
    options = np.array([[5, 0], [1, -1], [2, -1], [3, -1], [4, -1]])
    option_scores = np.array([[0.90, 0.88], [0.85, -np.inf], [0.80, -np.inf], [0.82, -np.inf], [0.86, -np.inf]])
    return queries, candidates, options, option_scores


def test_fit_recovers_the_map_that_the_queries_agree_on_despite_a_twin():
    queries, candidates, options, option_scores = objects_and_twin()
    affine = fit_layout(queries, options, option_scores, candidates, diagonal=800.0, weight=0.5, tolerance=0.05,
                        cap=0.3)
    np.testing.assert_allclose(affine, TRUE_MAP, atol=1e-6)
    scores = np.array([[0.88, 0.1, 0.1, 0.1, 0.1, 0.90]])
    penalised = scores - layout_penalty(queries[:1], candidates, affine, 800.0, 0.5, 0.05, 0.3)
    assert scores.argmax() == 5 and penalised.argmax() == 0  # the twin loses, the object keeps its score
    assert penalised[0, 0] == pytest.approx(0.88)


def test_an_empty_candidate_or_query_is_ruled_out_of_the_fit():
    """A NaN centre (an empty mask) must neither win a hypothesis nor poison the sums."""
    queries, candidates, options, option_scores = objects_and_twin()
    candidates[0] = np.nan  # query 0's own object has an empty mask: only the twin is left to it
    queries = np.concatenate([queries, [[np.nan, np.nan]]])
    options = np.concatenate([options, [[0, -1]]])
    option_scores = np.concatenate([option_scores, [[0.99, -np.inf]]])
    affine = fit_layout(queries, options, option_scores, candidates, 800.0, 0.5, 0.05, 0.3)
    np.testing.assert_allclose(affine, TRUE_MAP, atol=1e-6)


def test_penalty_is_zero_within_the_tolerance_and_capped():
    affine = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    candidates = np.array([[0.0, 0.0], [30.0, 0.0], [60.0, 0.0], [500.0, 0.0]])
    penalty = layout_penalty(np.array([[0.0, 0.0], [np.nan, np.nan]]), candidates, affine, 1000.0, 2.0, 0.04, 0.2)
    np.testing.assert_allclose(penalty[0], [0.0, 0.0, 2.0 * 0.02, 2.0 * 0.16])
    np.testing.assert_array_equal(penalty[1], 0.0)  # an empty query has no centre


def test_no_map_from_fewer_than_three_queries_or_from_collinear_ones():
    queries, candidates, options, option_scores = objects_and_twin()
    options[2:] = -1
    assert fit_layout(queries, options, option_scores, candidates, 800.0, 0.5, 0.05, 0.3) is None
    line = np.array([[0.0, 0.0], [10.0, 10.0], [20.0, 20.0]])
    assert fit_layout(line, np.array([[0], [1], [2]]), np.ones((3, 1)), mapped(line), 800.0, 0.5, 0.05, 0.3) is None


def test_ranked_choices_skip_everything_nested_with_earlier_choices():
    contains = torch.eye(4, dtype=torch.bool)
    contains[1, 0] = True  # 1 = cup + saucer holds 0 = cup; 2 = bowl; 3 = table
    areas = torch.tensor([10.0, 30.0, 12.0, 50.0])
    candidates, best = ranked_choices(torch.tensor([[0.9, 0.85, 0.7, 0.2], [0.1, 0.2, 0.3, 0.8]]), contains, areas,
                                      4, margin=0.1)
    assert candidates[0].tolist() == [1, 2, 3, -1]  # the whole cup (margin), then the bowl, then the table
    assert best[0, :3].tolist() == pytest.approx([0.9, 0.7, 0.2]) and best[0, 3] == float("-inf")
    assert candidates[1].tolist() == [3, 2, 1, -1]  # each query ranks on its own: the table first
    assert best[1, :3].tolist() == pytest.approx([0.8, 0.3, 0.2])


TWIN = ("red_disc_2", (205, 45, 40), "circle", (0.82, 0.22))


def test_a_twin_is_told_apart_by_where_the_other_objects_are():
    """The exo red disc is slightly off-colour, its twin exact: by appearance alone the twin
    wins; where the other three objects put the disc, the disc wins."""
    from omama_core import Matcher

    ego, ego_masks = draw_scene(352, 352, 0.12, seed=1, objects=OBJECTS + [TWIN])
    off_colour = [(n, (170, 60, 55) if n == "red_disc" else c, k, p) for n, c, k, p in OBJECTS + [TWIN]]
    exo, exo_masks = draw_scene(270, 480, 0.08, gain=(1.1, 1.0, 0.9), seed=2, objects=off_colour)
    queries = np.stack([ego_masks[name] for name, *_ in OBJECTS])  # the twin is no query

    def answer(weight: float) -> str:
        result = Matcher.from_config("knn", device="cpu", overrides={"selection.layout_weight": weight}).match(ego, queries, exo)
        overlaps = {name: (result[0].candidate_mask & mask).sum() for name, mask in exo_masks.items()}
        return max(overlaps, key=overlaps.get)

    assert answer(0.0) == "red_disc_2"
    assert answer(0.5) == "red_disc"


@pytest.mark.parametrize("overrides, message", [({"selection.layout_weight": -0.1}, "layout_weight"),
                                                 ({"selection.layout_tolerance": 0.3, "selection.layout_cap": 0.3}, "layout_tolerance"),
                                                 ({"selection.layout_cap": 2.5}, "layout_cap")])
def test_layout_settings_are_validated(overrides, message):
    from omama_core.config import load_config

    with pytest.raises(ConfigError, match=message):
        load_config("knn", overrides)
