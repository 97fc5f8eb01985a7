"""Official correspondence metrics (omama_core.metrics) against slow, literal references and
hand-computed cases."""

from __future__ import annotations

import math

import numpy as np
import pytest

from omama_core.metrics import (
    balanced_accuracy,
    boundary_map,
    boundary_tolerance,
    contour_accuracy,
    evaluation_size,
    iou,
    location_error,
    mask_metrics,
    pred_exists,
    resize_nearest,
)


# ---- independent references: loops, written from the definitions --------------------------
def ref_boundary(mask):
    h, w = mask.shape
    out = np.zeros((h, w), bool)
    for y in range(h):
        for x in range(w):
            v = mask[y, x]
            right = mask[y, x + 1] if x + 1 < w else False
            down = mask[y + 1, x] if y + 1 < h else False
            diag = mask[y + 1, x + 1] if (x + 1 < w and y + 1 < h) else False
            if y == h - 1 and x == w - 1:
                out[y, x] = False
            elif y == h - 1:
                out[y, x] = v != right
            elif x == w - 1:
                out[y, x] = v != down
            else:
                out[y, x] = (v != right) or (v != down) or (v != diag)
    return out


def ref_f_measure(pred, gt):
    h, w = pred.shape
    radius = math.ceil(0.008 * math.sqrt(h * h + w * w))
    bp, bg = ref_boundary(pred), ref_boundary(gt)
    pts_p, pts_g = np.argwhere(bp), np.argwhere(bg)

    def matched(points, others):
        if len(others) == 0:
            return 0
        return sum(1 for p in points if np.min(((others - p) ** 2).sum(axis=1)) <= radius * radius)

    if len(pts_p) == 0 and len(pts_g) == 0:
        return 1.0
    if len(pts_p) == 0 or len(pts_g) == 0:
        return 0.0
    precision = matched(pts_p, pts_g) / len(pts_p)
    recall = matched(pts_g, pts_p) / len(pts_g)
    return 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)


def ref_location_error(pred, gt):
    # literally as the official code: pad by H on all sides, bbox centres, empty -> padded centre
    h = gt.shape[0]

    def centre(mask):
        padded = np.pad(mask, ((h, h), (h, h)))
        if not padded.any():
            return padded.shape[0] // 2, padded.shape[1] // 2
        ys, xs = np.where(padded)
        return int(xs.min() + xs.max()) // 2, int(ys.min() + ys.max()) // 2

    (gx, gy), (px, py) = centre(gt), centre(pred)
    return math.sqrt((gx - px) ** 2 + (gy - py) ** 2) / math.sqrt(480**2 + 480**2)


def ref_balanced_accuracy(truth, pred):
    recalls = []
    for label in (0, 1):
        rows = [p for t, p in zip(truth, pred) if t == label]
        if rows:
            recalls.append(sum(1 for p in rows if p == label) / len(rows))
    return sum(recalls) / len(recalls)


def random_blobs(rng, shape, count=3):
    mask = np.zeros(shape, bool)
    for _ in range(count):
        y0, x0 = rng.integers(0, shape[0]), rng.integers(0, shape[1])
        mask[y0: y0 + rng.integers(1, shape[0] // 2 + 2), x0: x0 + rng.integers(1, shape[1] // 2 + 2)] = True
    return mask


# ---- sizes ----------------------------------------------------------------------------------
@pytest.mark.parametrize("size, expected", [
    ((2160, 3840), (270, 480)), ((1080, 1920), (270, 480)), ((1408, 1408), (480, 480)),
    ((540, 960), (270, 480)), ((704, 704), (480, 480)), ((1000, 500), (480, 240)), ((300, 301), (478, 480)),
])
def test_evaluation_size(size, expected):
    assert evaluation_size(*size) == expected


def test_resize_nearest_keeps_bool_and_blocks():
    mask = np.zeros((540, 960), bool)
    mask[100:200, 300:500] = True
    small = resize_nearest(mask, (270, 480))
    assert small.dtype == bool and small.shape == (270, 480)
    assert small.sum() == 50 * 100


def test_boundary_tolerance_is_ceil_of_0_008_diagonal():
    assert boundary_tolerance(480, 480) == 6
    assert boundary_tolerance(270, 480) == 5


# ---- IoU ---------------------------------------------------------------------------------
def test_iou_hand_cases():
    a = np.zeros((10, 10), bool)
    b = np.zeros((10, 10), bool)
    assert iou(a, b) == 1.0  # both empty
    a[0:2, 0:5] = True  # 10 px
    assert iou(a, b) == 0.0
    b[0:2, 3:8] = True  # 10 px, 4 shared
    assert iou(a, b) == pytest.approx(4 / 16, abs=1e-6)
    assert iou(a, a) == pytest.approx(1.0, abs=1e-6)


# ---- boundary and contour accuracy -------------------------------------------------------------
def test_boundary_map_matches_loop_reference():
    rng = np.random.default_rng(0)
    for _ in range(20):
        mask = random_blobs(rng, tuple(rng.integers(3, 25, 2)))
        assert np.array_equal(boundary_map(mask), ref_boundary(mask))


def test_contour_accuracy_matches_loop_reference():
    rng = np.random.default_rng(1)
    for shape in [(48, 64), (27, 48), (60, 60)]:
        for _ in range(6):
            pred, gt = random_blobs(rng, shape), random_blobs(rng, shape)
            assert contour_accuracy(pred, gt) == pytest.approx(ref_f_measure(pred, gt), abs=1e-9)


def test_contour_accuracy_tolerance_radius_at_480():
    gt = np.zeros((480, 480), bool)
    gt[100:200, 100:200] = True
    near = np.roll(gt, 6, axis=1)  # every boundary pixel within 6 px: perfect
    assert contour_accuracy(near, gt) == pytest.approx(1.0)
    beyond = np.roll(gt, 7, axis=1)  # the left and right edges are now 7 px apart
    assert contour_accuracy(beyond, gt) < 0.9
    far = np.roll(gt, 40, axis=1)  # vertical edges far apart, horizontal edges mostly overlap
    assert 0.0 < contour_accuracy(far, gt) < 1.0


def test_contour_accuracy_empty_cases():
    empty = np.zeros((30, 40), bool)
    full = empty.copy()
    full[5:10, 5:10] = True
    assert contour_accuracy(empty, full) == 0.0  # no prediction: F = 0
    assert contour_accuracy(full, empty) == 0.0
    assert contour_accuracy(empty, empty) == 1.0


# ---- location error ----------------------------------------------------------------------------
def test_location_error_hand_case():
    gt = np.zeros((270, 480), bool)
    pred = np.zeros((270, 480), bool)
    gt[10:21, 100:111] = True  # centre (105, 15)
    pred[10:21, 130:151] = True  # centre (140, 15)
    # divided by the diagonal of the 480-px evaluation square, whatever the image size
    assert location_error(pred, gt) == pytest.approx(35 / 678.8225)
    assert location_error(pred.repeat(2, 0).repeat(2, 1), gt.repeat(2, 0).repeat(2, 1)) == pytest.approx(70 / 678.8225)


def test_location_error_empty_prediction_uses_padded_centre():
    gt = np.zeros((270, 480), bool)
    gt[0:11, 0:11] = True  # centre (5, 5) -> padded (275, 275)
    # padded image is 810 x 1020: the default centre is (810 // 2, 1020 // 2) read as (x, y)
    expected = math.hypot(405 - 275, 510 - 275) / 678.8225
    assert location_error(np.zeros_like(gt), gt) == pytest.approx(expected)


def test_location_error_matches_padded_reference():
    rng = np.random.default_rng(2)
    for shape in [(270, 480), (480, 480), (40, 30)]:
        for _ in range(8):
            pred = random_blobs(rng, shape) if rng.random() < 0.8 else np.zeros(shape, bool)
            gt = random_blobs(rng, shape)
            assert location_error(pred, gt) == pytest.approx(ref_location_error(pred, gt), abs=1e-12)


def test_mask_metrics_perfect_and_keys():
    gt = np.zeros((270, 480), bool)
    gt[50:90, 200:260] = True
    result = mask_metrics(gt, gt)
    assert set(result) == {"iou", "contour_accuracy", "location_error"}
    assert result["iou"] == pytest.approx(1.0) and result["contour_accuracy"] == 1.0 and result["location_error"] == 0.0
    with pytest.raises(ValueError):
        mask_metrics(gt, gt[:100])


# ---- visibility --------------------------------------------------------------------------------
def test_balanced_accuracy_hand_cases():
    assert balanced_accuracy([1, 1, 0, 0], [1, 0, 0, 0]) == pytest.approx((0.5 + 1.0) / 2)
    assert balanced_accuracy([1, 1, 1], [1, 1, 1]) == 1.0  # one class in the truth
    assert balanced_accuracy([1, 1, 1, 1], [1, 0, 1, 1]) == 0.75  # predicted-only class ignored
    assert balanced_accuracy([1, 1, 0], [1, 1, 1]) == 0.5  # the published "always visible" case
    assert math.isnan(balanced_accuracy([], []))
    with pytest.raises(ValueError):
        balanced_accuracy([1, 0], [1])


def test_balanced_accuracy_matches_reference():
    rng = np.random.default_rng(3)
    for _ in range(30):
        n = int(rng.integers(1, 50))
        truth, pred = rng.random(n) < rng.random(), rng.random(n) < rng.random()
        assert balanced_accuracy(truth, pred) == pytest.approx(ref_balanced_accuracy(truth.tolist(), pred.tolist()))


def test_pred_exists_is_strictly_above_half():
    assert pred_exists(0.51) and not pred_exists(0.5) and not pred_exists(0.1)
