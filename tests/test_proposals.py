"""The classical proposals (omama_core/regions.py) against the one-pair-at-a-time
formulation they replaced, kept here as the reference: same leaves, same hierarchy, same
masks, boxes and order, bit for bit, on synthetic scenes and on small drawn ones."""

from __future__ import annotations

import heapq

import cv2
import numpy as np
import pytest
from scipy.ndimage import find_objects
from skimage.segmentation import felzenszwalb

from omama_core.data.synth import render_pair
from omama_core.proposals import ClassicalProposals
from omama_core.regions import adjacent_pairs, hierarchical_groups, label_extents, union_boxes


# ---- the reference: the previous implementation, unchanged -----------------------------------
def reference_label_extents(labels):
    extents = np.tile(np.array([np.inf, np.inf, -np.inf, -np.inf]), (int(labels.max()) + 1, 1))
    for label, found in enumerate(find_objects(labels + 1)):
        if found is not None:
            rows, cols = found
            extents[label] = (cols.start, rows.start, cols.stop - 1, rows.stop - 1)
    return extents


def reference_union_boxes(labels, members):
    extents = reference_label_extents(labels)
    boxes = np.zeros((len(members), 4), np.float32)
    for i, row in enumerate(members):
        low = extents[row, :2].min(axis=0)
        high = extents[row, 2:].max(axis=0)
        boxes[i] = (low[0], low[1], high[0] - low[0], high[1] - low[1])
    return boxes


def reference_region_statistics(labels, image, bins):
    n = int(labels.max()) + 1
    flat = labels.ravel()
    sizes = np.bincount(flat, minlength=n).astype(np.float64)
    lab = cv2.cvtColor(image, cv2.COLOR_RGB2LAB).reshape(-1, 3).astype(np.int64)
    colour = np.concatenate([np.bincount(flat * bins + lab[:, c] * bins // 256, minlength=n * bins).reshape(n, bins)
                             for c in range(3)], axis=1).astype(np.float64)
    colour /= np.maximum(colour.sum(1, keepdims=True), 1e-9)
    return sizes, colour, reference_label_extents(labels)


def reference_adjacent_pairs(labels):
    pairs = np.concatenate([np.stack([labels[:, :-1].ravel(), labels[:, 1:].ravel()], axis=1),
                            np.stack([labels[:-1].ravel(), labels[1:].ravel()], axis=1)])
    pairs = pairs[pairs[:, 0] != pairs[:, 1]]
    return np.unique(np.sort(pairs, axis=1), axis=0)


def reference_hierarchical_groups(labels, image, bins=12):
    sizes, colour, boxes = (list(a) for a in reference_region_statistics(labels, image, bins))
    total = float(labels.size)
    members = [np.array([i]) for i in range(len(sizes))]
    neighbours = {i: set() for i in range(len(sizes))}
    pairs = reference_adjacent_pairs(labels)
    for a, b in pairs:
        neighbours[int(a)].add(int(b))
        neighbours[int(b)].add(int(a))

    def similarity(a, b):
        box = np.concatenate([np.minimum(boxes[a][:2], boxes[b][:2]), np.maximum(boxes[a][2:], boxes[b][2:])])
        box_area = (box[2] - box[0] + 1) * (box[3] - box[1] + 1)
        return (np.minimum(colour[a], colour[b]).sum() / 3.0
                + 2.0 - (sizes[a] + sizes[b]) / total - (box_area - sizes[a] - sizes[b]) / total)

    heap = [(-similarity(int(a), int(b)), int(a), int(b)) for a, b in pairs]
    heapq.heapify(heap)
    alive = [True] * len(sizes)
    while heap:
        _, a, b = heapq.heappop(heap)
        if not (alive[a] and alive[b]):
            continue
        new = len(members)
        alive[a] = alive[b] = False
        alive.append(True)
        weight = sizes[a] / (sizes[a] + sizes[b])
        sizes.append(sizes[a] + sizes[b])
        colour.append(colour[a] * weight + colour[b] * (1 - weight))
        boxes.append(np.concatenate([np.minimum(boxes[a][:2], boxes[b][:2]), np.maximum(boxes[a][2:], boxes[b][2:])]))
        members.append(np.concatenate([members[a], members[b]]))
        around = (neighbours.pop(a) | neighbours.pop(b)) - {a, b}
        neighbours[new] = around
        for other in around:
            neighbours[other] -= {a, b}
            neighbours[other].add(new)
            heapq.heappush(heap, (-similarity(new, other), new, other))
    return members, [int(s) for s in sizes]


def reference_proposals(image, segment_scale, max_masks, min_area_frac, max_area_frac, max_side):
    """The previous ClassicalProposals.__call__: (labels, members, boxes) or None when empty."""
    height, width = image.shape[:2]
    scale = min(1.0, max_side / max(height, width))
    small = cv2.resize(image, (max(1, round(width * scale)), max(1, round(height * scale))),
                       interpolation=cv2.INTER_AREA) if scale < 1 else image
    area = small.shape[0] * small.shape[1]
    labels = felzenszwalb(small, scale=segment_scale, sigma=0.8, min_size=max(4, int(area * min_area_frac)))
    groups, sizes = reference_hierarchical_groups(labels, small)
    keep = [i for i, size in enumerate(sizes) if area * min_area_frac <= size <= area * max_area_frac]
    keep = sorted(keep, key=lambda i: -sizes[i])[:max_masks]
    if not keep:
        return None
    if small.shape[:2] != (height, width):
        labels = cv2.resize(labels.astype(np.int32), (width, height), interpolation=cv2.INTER_NEAREST)
    members = np.zeros((len(keep), int(labels.max()) + 1), bool)
    for row, i in enumerate(keep):
        members[row, groups[i]] = True
    return labels, members, reference_union_boxes(labels, members)


# ---- the comparisons -------------------------------------------------------------------------
def drawn_scene(seed: int, height: int = 90, width: int = 120) -> np.ndarray:
    rng = np.random.default_rng(seed)
    image = np.full((height, width, 3), 120, np.uint8)
    for _ in range(6):
        colour = tuple(int(c) for c in rng.integers(0, 255, 3))
        centre = (int(rng.integers(0, width)), int(rng.integers(0, height)))
        cv2.circle(image, centre, int(rng.integers(5, 30)), colour, -1)
    # flat areas give exactly equal colours and similarities: ties in the merge order
    return image


@pytest.mark.parametrize("seed,view,settings", [
    (9, "exo", dict(segment_scale=50, max_masks=500, max_side=960)),  # full resolution
    (9, "exo", dict(segment_scale=50, max_masks=500, max_side=480)),
    (9, "ego", dict(segment_scale=50, max_masks=500, max_side=480)),
    (23, "exo", dict(segment_scale=100, max_masks=100, max_side=320)),
    (31, "ego", dict(segment_scale=50, max_masks=300, max_side=352)),
])
def test_classical_proposals_identical_to_the_reference(seed, view, settings):
    pair = render_pair(seed)
    image = pair.exo_image if view == "exo" else pair.ego_image
    generator = ClassicalProposals(min_area_frac=0.0002, max_area_frac=0.5, **settings)
    proposals = generator(image)
    labels, members, boxes = reference_proposals(image, min_area_frac=0.0002, max_area_frac=0.5, **settings)
    assert len(proposals) == len(members) > 50
    np.testing.assert_array_equal(proposals.labels, labels)
    np.testing.assert_array_equal(proposals.members, members)
    np.testing.assert_array_equal(proposals.boxes, boxes)
    assert proposals.boxes.dtype == boxes.dtype


@pytest.mark.parametrize("seed", range(4))
def test_hierarchy_identical_on_drawn_scenes_with_ties(seed):
    image = drawn_scene(seed)
    labels = felzenszwalb(image, scale=20, sigma=0.8, min_size=4)
    groups, sizes = hierarchical_groups(labels, image)
    expected_groups, expected_sizes = reference_hierarchical_groups(labels, image)
    assert sizes == expected_sizes
    assert len(groups) == len(expected_groups) == 2 * (labels.max() + 1) - 1  # one tree over connected leaves
    for group, expected in zip(groups, expected_groups):
        np.testing.assert_array_equal(group, expected)


def test_adjacent_pairs_and_boxes_by_hand():
    labels = np.array([[0, 0, 1],
                       [2, 2, 1],
                       [2, 3, 3]])
    np.testing.assert_array_equal(adjacent_pairs(labels), [[0, 1], [0, 2], [1, 2], [1, 3], [2, 3]])
    np.testing.assert_array_equal(label_extents(labels)[2], [0, 1, 1, 2])
    members = np.array([[True, True, False, False], [False, False, True, True]])
    np.testing.assert_array_equal(union_boxes(labels, members), [[0, 0, 2, 1], [0, 1, 2, 1]])


def test_empty_image_gives_no_proposals():
    proposals = ClassicalProposals(max_side=64)(np.zeros((48, 64, 3), np.uint8))
    assert len(proposals) == 0 and proposals.image_hw == (48, 64)
