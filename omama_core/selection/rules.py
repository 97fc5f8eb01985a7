"""The selection rules: which candidate answers a query, given its scores.

The published rule is the best score (`choose_candidates` at margin 0). The others are not
published; each function says whether it uses the other queries of the call. Region hierarchies (the classical proposals) also
hold every part of an object, and a part's descriptor is nearly its whole's: a purple
sphere's upper half is as purple as the sphere. With `margin` > 0 the answer is the largest
candidate that contains the best one and scores within `margin` of it, so the whole object
wins over its parts while "object + table" (whose score drops) does not. On held-out
synthetic scenes this took the k-NN IoU from 0.36 to 0.52 (Ego2Exo, margin 0.05); margin 0
is the published rule. A small shadow or table patch lowers a container's score too little
for the margin to notice, so "object + patch" can still win; with `part_margin` every part
a container adds must itself score within `part_margin` of the best (`grow_with_parts`).

The K queries of one `Matcher.match` call are different objects, so with `exclusive` two of
them never answer with the same or nested candidates (`exclusive_choices`): a query that
loses its candidate to a better-scoring one chooses again among what is left, and is not
visible if nothing left scores high enough. A second black disc that is hidden in the target
then stops claiming the first one's mask.

The reverse check (`reverse_checked_scores`, not published) asks each candidate the question
backwards: does it match some other region of the source image better than the query? A red
disc hidden in the exo view otherwise answers with the wearer's red arm; in the ego view that
arm is a region of its own, and it matches the exo arm better than the disc does. Such a
candidate loses `weight` times the difference.
"""

from __future__ import annotations

import numpy as np
import torch

from ..masks import resize_nearest

REGION_INSIDE = 0.5  # a source region with at least this share of its area inside a query is part of it


def choose_candidates(scores: torch.Tensor, contains: torch.Tensor | None = None, areas: torch.Tensor | None = None,
                      margin: float = 0.0, part_margin: float | None = None) -> torch.Tensor:
    """scores (B, N), contains (B, N, N) bool ([b, j, k]: j contains k), areas (B, N) ->
    chosen candidate indices (B,) int64. Padded candidates must score below every real one,
    have area 0 and must not contain real ones. Each row alone: uses no other query.

    With `part_margin` a container must also pass the part check (`grow_with_parts`)."""
    best = scores.argmax(1)
    if margin <= 0 or contains is None:
        return best
    if part_margin is not None:
        return torch.tensor([grow_with_parts(scores[b], contains[b], areas[b], int(best[b]), margin, part_margin)
                             for b in range(len(scores))], dtype=torch.int64, device=scores.device)
    rows = torch.arange(len(scores), device=scores.device)
    best_score = scores[rows, best][:, None]
    allowed = contains[rows, :, best] & (scores >= best_score - margin)  # (B, N), includes best itself
    size = torch.where(allowed, areas.to(torch.float64), torch.full_like(areas, -1, dtype=torch.float64))
    return size.argmax(1)


def grow_with_parts(scores: torch.Tensor, contains: torch.Tensor, areas: torch.Tensor, best: int,
                    margin: float, part_margin: float) -> int:
    """scores (N,), contains (N, N), areas (N,), the best candidate -> the chosen candidate.

    Walks up the containers of `best` from small to large. Each one adds a part to the one
    before it; the largest candidate in that part (inside the container, and neither inside
    nor around the previous one) must itself look like the query, scoring within
    `part_margin` of the best, and the container within `margin`. The answer is the largest
    container that passes, or `best`. The margin alone lets "object + its shadow or a patch
    of table" win when the patch is small enough not to lower the container's score.
    One query alone: uses no other query.
    """
    best_score = float(scores[best])
    real = areas > 0
    containers = [j for j in torch.nonzero(contains[:, best]).flatten().tolist() if j != best]
    containers.sort(key=lambda j: float(areas[j]))
    chosen, previous = best, best
    for container in containers:
        ok = float(scores[container]) >= best_score - margin
        if ok:
            parts = contains[container] & ~contains[:, previous] & ~contains[previous] & real
            parts[container] = False
            if parts.any():
                index = torch.nonzero(parts).flatten()
                largest = int(index[areas[index].argmax()])
                ok = float(scores[largest]) >= best_score - part_margin
        if ok:
            chosen = container
        previous = container
    return chosen


def nested_pairs(contains: torch.Tensor) -> torch.Tensor:
    """(N, N) containment -> (N, N) bool, True where either candidate contains the other
    (and on the diagonal): the pairs that cannot answer two different objects."""
    nested = contains | contains.T
    nested.fill_diagonal_(True)
    return nested


def exclusive_choices(scores: torch.Tensor, chosen: torch.Tensor, contains: torch.Tensor, areas: torch.Tensor,
                      margin: float = 0.0, active: torch.Tensor | None = None, keep_above: float = -1.0,
                      part_margin: float | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """One object, one mask. scores (K, N), chosen (K,) from choose_candidates, contains
    (N, N) bool, areas (N,), active (K,) bool (False: left out, e.g. empty queries) ->
    answers (K,) int64 and the best score left to each query (K,), -1 where no candidate is
    left (what a score-based visibility thresholds).

    Queries keep their choice in the order of its score; a later query whose choice is the
    same as or nested with a kept answer chooses again (choose_candidates, same margin) among
    the candidates nested with none of them. A query whose best score left is below
    `keep_above` (the visibility threshold: it will be called not visible) takes nothing.
    Uses the other queries of the call (the joint protocol only)."""
    k = len(scores)
    active = torch.ones(k, dtype=torch.bool) if active is None else active
    nested = nested_pairs(contains)
    answers, best_left = chosen.clone(), scores.max(1).values.clone()
    taken = torch.zeros(scores.shape[1], dtype=torch.bool, device=scores.device)
    order = torch.argsort(scores.gather(1, chosen[:, None])[:, 0].masked_fill(~active, float("-inf")), descending=True)
    for query in order[: int(active.sum())].tolist():
        left = scores[query].masked_fill(taken, -1.0)
        answers[query] = int(choose_candidates(left[None], contains[None], areas[None], margin, part_margin)[0])
        best_left[query] = left.max()
        if best_left[query] > -1.0 and best_left[query] >= keep_above:
            taken |= nested[answers[query]]
    return answers, best_left


def ranked_choices(scores: torch.Tensor, contains: torch.Tensor, areas: torch.Tensor, count: int,
                   margin: float = 0.0, part_margin: float | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Each query's best `count` objects, best first. scores (K, N), contains (N, N) bool,
    areas (N,) -> candidates (K, count) int64 and their nests' best scores (K, count); -1
    and -inf pad.

    Each choice is choose_candidates' answer among the candidates nested with none of the
    query's earlier choices, as when better queries have taken those (exclusive_choices).
    Each query alone; the layout prior, which uses all of them, is built on it."""
    nested = nested_pairs(contains)
    candidates = torch.full((len(scores), count), -1, dtype=torch.int64)
    best = torch.full((len(scores), count), float("-inf"))
    for query, row in enumerate(scores):
        taken = torch.zeros_like(row, dtype=torch.bool)
        for rank in range(count):
            if taken.all():
                break
            left = row.masked_fill(taken, float("-inf"))
            candidates[query, rank] = int(choose_candidates(left[None], contains[None], areas[None], margin,
                                                            part_margin)[0])
            best[query, rank] = left.max()
            taken |= nested[candidates[query, rank]]
    return candidates, best


def reverse_checked_scores(scores: torch.Tensor, reverse: torch.Tensor, outside: torch.Tensor,
                           weight: float) -> torch.Tensor:
    """scores (K, N) of K queries against N target candidates, reverse (N, M) of the target
    candidates against M regions of the source image, outside (K, M) bool (region m is not
    part of query k) -> (K, N) scores, each lowered by weight x how much better the candidate
    matches its best region outside the query than the query itself. Each query alone: it
    uses the source image's regions, not the other queries."""
    best_outside = reverse[None].masked_fill(~outside[:, None, :], float("-inf")).amax(dim=-1)  # (K, N)
    return scores - weight * (best_outside - scores).clamp(min=0)


def outside_regions(masks: np.ndarray, regions) -> np.ndarray:
    """Query masks (K, H, W) bool and the source image's regions (Proposals) -> (K, M) bool:
    region m is not part of query k (less than REGION_INSIDE of it lies inside). On a 4-px
    grid: exact enough for a half-inside test, and cheap for hundreds of regions."""
    grid_hw = (max(1, masks.shape[1] // 4), max(1, masks.shape[2] // 4))
    region_grid = regions.resized_masks(grid_hw).reshape(len(regions), -1).astype(np.float32)  # (M, h*w)
    query_grid = resize_nearest(masks, grid_hw).reshape(len(masks), -1).astype(np.float32)  # (K, h*w)
    inside = query_grid @ region_grid.T / np.maximum(region_grid.sum(axis=1), 1.0)
    return inside < REGION_INSIDE
