"""Where the other queries put an object: a layout prior across the queries of one call.

Not published; uses the other queries of the call (the joint protocol only). The K queries
of one `Matcher.match` call are different objects of one scene
at one moment, so their centres in the source image and their objects' centres in the target
image are tied by the two cameras' geometry. For objects on a table or a floor a 2-D affine
map is a rough model of that tie: object heights and the ego camera's perspective break it.
On the synthetic training scenes, an affine map fitted by least squares to the true centres
of the other objects of a frame pair predicts an object's centre within 3.6% (Ego2Exo) and
5.1% (Exo2Ego) of the image diagonal in half of the cases, and nearer to the object than to
its identical twin in 91-93% of the cases. So twins, which no descriptor can tell apart, and
look-alikes elsewhere in the scene, are told apart by where they are.

`fit_layout` hypothesizes maps from three queries and one of the best objects of each (`top`
per query), and keeps the map under which the queries' penalized scores sum highest; it then
refits that map by least squares on the queries it explains. `layout_penalty` lowers every
candidate's score by weight x its distance from the mapped query centre, in image diagonals,
beyond `tolerance` (the map's typical error, so a right answer keeps its score and the
visibility threshold its meaning) and up to `cap` (so a far candidate loses at most
weight x (cap - tolerance)).
"""

from __future__ import annotations

import itertools

import numpy as np


def _predict(affines: np.ndarray, points: np.ndarray) -> np.ndarray:
    """(..., 2, 3) affine maps, (K, 2) points -> (..., K, 2) mapped points."""
    return points @ np.swapaxes(affines[..., :2], -1, -2) + affines[..., None, :, 2]


def _penalty(distances: np.ndarray, weight: float, tolerance: float, cap: float) -> np.ndarray:
    return weight * np.clip(distances - tolerance, 0.0, max(cap - tolerance, 0.0))


def fit_layout(query_centres: np.ndarray, option_candidates: np.ndarray, option_scores: np.ndarray,
               candidate_centres: np.ndarray, diagonal: float, weight: float, tolerance: float, cap: float,
               top: int = 2, max_hypotheses: int = 4096, seed: int = 0) -> np.ndarray | None:
    """Fit the affine map from source to target image that the queries' best objects agree on.

    Args:
        query_centres: (K, 2) query mask centroids (x, y) in source pixels.
        option_candidates: (K, M) int, each query's best objects as candidate indices, best
            first (`selection.ranked_choices`); -1 pads.
        option_scores: (K, M) float, their scores.
        candidate_centres: (N, 2) candidate centroids (x, y) in target pixels; NaN (an empty
            mask) rules a candidate out, as a NaN query centre rules out a query.
        diagonal: the target image's diagonal in pixels (distances are measured in it).
        weight, tolerance, cap: the penalty, as in `layout_penalty`.
        top: how many of each query's best objects a hypothesis may pair it with.
        max_hypotheses: above this many (triples x pairings), a fixed random subset is tried.
    Returns:
        (2, 3) float64 affine map [A | t] (target = A @ source + t), or None when fewer than
        three queries have options or all their triples are collinear.
    Uses all the queries of the call (the joint protocol only).
    """
    option_centres = candidate_centres[np.maximum(option_candidates, 0)]  # (K, M, 2)
    valid = (option_candidates >= 0) & np.isfinite(option_centres).all(-1)
    usable = np.flatnonzero(valid.any(1) & np.isfinite(query_centres).all(1))
    if len(usable) < 3:
        return None
    centres, options, option_scores = query_centres[usable], option_candidates[usable], option_scores[usable]
    valid, option_centres = valid[usable], np.nan_to_num(option_centres[usable])

    triples = np.array(list(itertools.combinations(range(len(usable)), 3)))
    pairings = np.array(list(itertools.product(range(min(top, options.shape[1])), repeat=3)))
    queries, picks = np.repeat(triples, len(pairings), 0), np.tile(pairings, (len(triples), 1))  # (H, 3) each
    keep = valid[queries, picks].all(1)
    queries, picks = queries[keep], picks[keep]
    if len(queries) > max_hypotheses:
        sample = np.random.default_rng(seed).choice(len(queries), max_hypotheses, replace=False)
        queries, picks = queries[sample], picks[sample]
    source = np.concatenate([centres[queries], np.ones((len(queries), 3, 1))], axis=2)  # (H, 3, 3)
    target = option_centres[queries, picks]  # (H, 3, 2)
    # three nearly collinear query centres (twice their triangle's area under 0.1% of the
    # squared diagonal) fix no map
    proper = np.abs(np.linalg.det(source)) > 1e-3 * diagonal ** 2
    if not proper.any():
        return None
    affines = np.swapaxes(np.linalg.solve(source[proper], target[proper]), 1, 2)  # (H, 2, 3)

    distances = np.linalg.norm(_predict(affines, centres)[:, :, None] - option_centres[None], axis=-1) / diagonal
    values = option_scores[None] - _penalty(distances, weight, tolerance, cap)  # (H, K, M)
    values = np.where(valid[None], values, -np.inf)
    best = int(values.max(axis=2).sum(axis=1).argmax())
    picked = values[best].argmax(axis=1)
    explained = (distances[best, np.arange(len(usable)), picked] < cap / 2) & valid[np.arange(len(usable)), picked]
    if explained.sum() < 3:
        return affines[best]
    design = np.concatenate([centres[explained], np.ones((int(explained.sum()), 1))], axis=1)
    refit, *_ = np.linalg.lstsq(design, option_centres[explained, picked[explained]], rcond=None)
    return refit.T


def layout_penalty(query_centres: np.ndarray, candidate_centres: np.ndarray, affine: np.ndarray, diagonal: float,
                   weight: float, tolerance: float, cap: float) -> np.ndarray:
    """(K, 2) query centres, (N, 2) candidate centres, (2, 3) affine -> (K, N) score penalty:
    weight x (distance from the mapped query centre / diagonal - tolerance), clipped to
    [0, cap - tolerance]. 0 for NaN centres (empty queries)."""
    distances = np.linalg.norm(_predict(affine, query_centres)[:, None] - candidate_centres[None], axis=-1) / diagonal
    return np.nan_to_num(_penalty(distances, weight, tolerance, cap), nan=0.0)
