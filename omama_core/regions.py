"""The classical region hierarchy behind `proposals.ClassicalProposals`.

Leaves: a Felzenszwalb graph segmentation (omama_core.felzenszwalb: scikit-image's, faster).
The hierarchy: adjacent regions merged greedily, most similar pair first (colour histograms,
plus terms that favour small and compact unions), as in selective search. Every region of
the hierarchy is an array of leaf labels. The arithmetic is vectorised but done in the same order as the one-pair-at-a-
time formulation, so the hierarchy is bit-identical to it (tests/test_proposals.py keeps that
formulation as the reference).
"""

from __future__ import annotations

import heapq

import cv2
import numpy as np


def leaf_segments(image: np.ndarray, scale: float, min_size: int, sigma: float = 0.8) -> np.ndarray:
    """HxWx3 uint8 RGB -> (H, W) int64 Felzenszwalb labels 0..L-1, numbered in raster order
    of their first pixel; equal to scikit-image's felzenszwalb (omama_core.felzenszwalb, a
    faster exact version)."""
    from .felzenszwalb import felzenszwalb

    return felzenszwalb(image, scale=scale, sigma=sigma, min_size=min_size)


def label_extents(labels: np.ndarray) -> np.ndarray:
    """(L, 4) float64 extents (xmin, ymin, xmax, ymax), inclusive, of labels 0..L-1 of a label
    map; labels that do not occur get (inf, inf, -inf, -inf)."""
    from scipy.ndimage import find_objects

    extents = np.tile(np.array([np.inf, np.inf, -np.inf, -np.inf]), (int(labels.max()) + 1, 1))
    for label, found in enumerate(find_objects(labels + 1)):
        if found is not None:
            rows, cols = found
            extents[label] = (cols.start, rows.start, cols.stop - 1, rows.stop - 1)
    return extents


def union_boxes(labels: np.ndarray, members: np.ndarray) -> np.ndarray:
    """(N, 4) float32 (x, y, w, h) boxes of the unions of the labels in each row of members
    (N, L) bool, for a label map (H, W) of labels 0..L-1."""
    extents = label_extents(labels)  # (L, 4)
    low = np.where(members[:, :, None], extents[None, :, :2], np.inf).min(axis=1)  # (N, 2)
    high = np.where(members[:, :, None], extents[None, :, 2:], -np.inf).max(axis=1)
    return np.concatenate([low, high - low], axis=1).astype(np.float32)


def region_statistics(labels: np.ndarray, image: np.ndarray, bins: int
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per leaf region of labels (H, W): size (L,) float64, colour histogram (L, 3*bins)
    float64 (Lab, each channel's histogram, normalised to sum 1 over the three) and extents
    (L, 4) float64 (see label_extents)."""
    n = int(labels.max()) + 1
    flat = labels.ravel()
    sizes = np.bincount(flat, minlength=n).astype(np.float64)
    lab = cv2.cvtColor(image, cv2.COLOR_RGB2LAB).reshape(-1, 3).astype(np.int64)
    colour = np.concatenate([np.bincount(flat * bins + lab[:, c] * bins // 256, minlength=n * bins).reshape(n, bins)
                             for c in range(3)], axis=1).astype(np.float64)
    colour /= np.maximum(colour.sum(1, keepdims=True), 1e-9)
    return sizes, colour, label_extents(labels)


def adjacent_pairs(labels: np.ndarray) -> np.ndarray:
    """(P, 2) int64 distinct pairs (a < b) of labels that touch horizontally or vertically,
    sorted by a then b."""
    count = int(labels.max()) + 1
    codes = np.concatenate([_pair_codes(labels[:, :-1], labels[:, 1:], count),
                            _pair_codes(labels[:-1], labels[1:], count)])
    codes = np.unique(codes)  # one int64 per pair: a sort of numbers, not of rows
    return np.stack([codes // count, codes % count], axis=1)


def _pair_codes(first: np.ndarray, second: np.ndarray, count: int) -> np.ndarray:
    """min * count + max of two label arrays, where they differ."""
    first, second = first.ravel().astype(np.int64), second.ravel().astype(np.int64)
    differ = first != second
    first, second = first[differ], second[differ]
    return np.minimum(first, second) * count + np.maximum(first, second)


class _Regions:
    """Growing per-region tables (size, colour histogram, box), preallocated for the whole
    hierarchy: L leaves make at most 2L - 1 regions."""

    def __init__(self, sizes: np.ndarray, colour: np.ndarray, boxes: np.ndarray, total: float):
        capacity = 2 * len(sizes)
        self.sizes = np.zeros(capacity)
        self.colour = np.zeros((capacity, colour.shape[1]))
        self.boxes = np.zeros((capacity, 4))
        self.sizes[:len(sizes)], self.colour[:len(sizes)], self.boxes[:len(sizes)] = sizes, colour, boxes
        self.count, self.total = len(sizes), total

    def similarity(self, a: np.ndarray | int, b: np.ndarray) -> np.ndarray:
        """Similarity of regions a and b (arrays, or one a against many b): colour-histogram
        intersection / 3 + (1 - union size share) + (1 - share of the union's box it leaves empty)."""
        box_a, box_b = self.boxes[a], self.boxes[b]
        low = np.minimum(box_a[..., :2], box_b[..., :2])
        high = np.maximum(box_a[..., 2:], box_b[..., 2:])
        box_area = (high[..., 0] - low[..., 0] + 1) * (high[..., 1] - low[..., 1] + 1)
        size_a, size_b = self.sizes[a], self.sizes[b]
        return (np.minimum(self.colour[a], self.colour[b]).sum(axis=-1) / 3.0
                + 2.0 - (size_a + size_b) / self.total - (box_area - size_a - size_b) / self.total)

    def merge(self, a: int, b: int) -> int:
        """Append the union of regions a and b; returns its index."""
        new = self.count
        self.count += 1
        weight = self.sizes[a] / (self.sizes[a] + self.sizes[b])
        self.sizes[new] = self.sizes[a] + self.sizes[b]
        self.colour[new] = self.colour[a] * weight + self.colour[b] * (1 - weight)
        self.boxes[new, :2] = np.minimum(self.boxes[a, :2], self.boxes[b, :2])
        self.boxes[new, 2:] = np.maximum(self.boxes[a, 2:], self.boxes[b, 2:])
        return new


def hierarchical_groups(labels: np.ndarray, image: np.ndarray, bins: int = 12) -> tuple[list[np.ndarray], list[int]]:
    """Greedy agglomeration of a label map (H, W) of an HxWx3 uint8 RGB image.

    Returns every region of the hierarchy (the leaves, then each merge in order) as an
    array of leaf labels, and its size in pixels.

    The similarity has no texture term: striped and checkered objects, whose leaves differ
    in gradients, then merge into wholes before they merge with the table (on held-out
    synthetic scenes the best proposal's IoU rose from 0.80 to 0.85 without it).
    """
    sizes, colour, extents = region_statistics(labels, image, bins)
    regions = _Regions(sizes, colour, extents, float(labels.size))
    leaves = len(sizes)
    members = [np.array([i]) for i in range(leaves)]
    neighbours: dict[int, set[int]] = {i: set() for i in range(leaves)}
    pairs = adjacent_pairs(labels)
    for a, b in pairs.tolist():
        neighbours[a].add(b)
        neighbours[b].add(a)
    # heap entries (-similarity, a, b): ties fall to the smaller pair, whatever the push order
    heap = list(zip((-regions.similarity(pairs[:, 0], pairs[:, 1])).tolist(), pairs[:, 0].tolist(),
                    pairs[:, 1].tolist()))
    heapq.heapify(heap)
    alive = np.ones(2 * leaves, bool)
    while heap:
        _, a, b = heapq.heappop(heap)
        if not (alive[a] and alive[b]):
            continue  # a stale entry: one side was merged already
        alive[a] = alive[b] = False
        new = regions.merge(a, b)
        members.append(np.concatenate([members[a], members[b]]))
        around = (neighbours.pop(a) | neighbours.pop(b)) - {a, b}
        neighbours[new] = around
        others = list(around)
        for other in others:
            neighbours[other] -= {a, b}
            neighbours[other].add(new)
        for score, other in zip((-regions.similarity(new, np.array(others, np.int64))).tolist(), others):
            heapq.heappush(heap, (score, new, other))
    return members, [int(s) for s in regions.sizes[:regions.count]]
