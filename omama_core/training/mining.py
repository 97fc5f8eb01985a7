"""Choosing the 32 candidates of a training sample: the ground-truth positive plus
negatives, either Hard Negative Adjacent Mining (as published) or uniform random ones."""

from __future__ import annotations

import numpy as np


def box_iou_xywh(boxes: np.ndarray, box: np.ndarray) -> np.ndarray:
    """(N, 4) and (4,) boxes as (x, y, w, h) -> (N,) IoU."""
    x0 = np.maximum(boxes[:, 0], box[0])
    y0 = np.maximum(boxes[:, 1], box[1])
    x1 = np.minimum(boxes[:, 0] + boxes[:, 2], box[0] + box[2])
    y1 = np.minimum(boxes[:, 1] + boxes[:, 3], box[1] + box[3])
    inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
    union = boxes[:, 2] * boxes[:, 3] + box[2] * box[3] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-9), 0.0)


def delaunay_adjacency(centres: np.ndarray) -> np.ndarray:
    """(N, 2) points -> (N, N) bool adjacency of their Delaunay triangulation.

    Fewer than 3 points, or points on one line, cannot be triangulated: then every point
    is adjacent to every other (there are too few candidates to be choosy)."""
    n = len(centres)
    adjacency = np.zeros((n, n), bool)
    try:
        from scipy.spatial import Delaunay, QhullError

        triangles = Delaunay(centres).simplices if n >= 3 else None
    except (QhullError, ValueError):
        triangles = None
    if triangles is None:
        adjacency[:] = True
    else:
        for a, b in ((0, 1), (1, 2), (0, 2)):
            adjacency[triangles[:, a], triangles[:, b]] = True
            adjacency[triangles[:, b], triangles[:, a]] = True
    np.fill_diagonal(adjacency, False)
    return adjacency


def adjacent_negatives(adjacency: np.ndarray, boxes: np.ndarray, gt_box: np.ndarray, count: int,
                       rng: np.random.Generator, order: int = 2) -> np.ndarray:
    """Hard Negative Adjacent Mining: indices of `count` negatives among N candidates.

    adjacency: (N, N) bool, delaunay_adjacency of the candidates' centroids.
    The anchor is the candidate whose box overlaps the ground-truth box most; its
    neighbours up to `order` hops in the Delaunay graph of the candidate centroids (anchor
    excluded) are the negatives: `count` of them at random if there are more, topped up
    with random other candidates if fewer (with repeats only when N - 1 < count).
    """
    n = len(adjacency)
    anchor = int(np.argmax(box_iou_xywh(boxes, gt_box)))
    reach = adjacency[anchor].copy()  # the anchor's row of (A + A^2 + ... + A^order) > 0
    frontier = reach.copy()
    for _ in range(order - 1):
        frontier = adjacency[frontier].any(axis=0) & ~reach
        reach |= frontier
    neighbours = np.flatnonzero(reach)
    neighbours = neighbours[neighbours != anchor]
    if len(neighbours) >= count:
        return rng.choice(neighbours, count, replace=False)
    others = np.setdiff1d(np.arange(n), np.append(neighbours, anchor))
    if len(others) == 0 and len(neighbours) == 0:
        others = np.arange(n)  # the anchor is all there is
    top_up = rng.choice(others, min(count - len(neighbours), len(others)), replace=False) if len(others) else []
    chosen = np.concatenate([neighbours, top_up]).astype(np.int64)
    if len(chosen) < count:
        chosen = np.concatenate([chosen, rng.choice(chosen, count - len(chosen), replace=True)])
    return chosen


def random_negatives(num_candidates: int, count: int, rng: np.random.Generator) -> np.ndarray:
    """`count` candidate indices uniformly at random (repeats only when there are too few)."""
    return rng.choice(num_candidates, count, replace=num_candidates < count)
