"""The Ego-Exo4D correspondence metrics, computed as the official evaluation code does.

Reference: ``correspondence/evaluation/{metrics,utils,evaluate_egoexo}.py`` of the
ego-exo4d-relation repository (its IoU and boundary F-measure come from the DAVIS 2017 code).
All masks are (H, W) bool arrays at the evaluation size (``evaluation_size``): ground truth is
resized there with nearest neighbour, and so must predictions be.

- IoU: |P & G| / (|P | G| + 1e-7), and 1 when the union is empty.
- Contour accuracy (CA): DAVIS boundary F-measure; tolerance ceil(0.008 * diagonal) px
  (6 at 480x480, 5 at 270x480) as a disk dilation.
- Location error (LE): distance between the masks' bounding-box centres over sqrt(2) * 480;
  an empty mask's centre is the official code's padded-image default (``_box_centre``).
- Visibility: balanced accuracy (sklearn's definition) of confidence > 0.5 against
  "the target has a mask", over every scored sample.
"""

from __future__ import annotations

import math
from typing import Sequence

import cv2
import numpy as np
from skimage.morphology import disk

EVALUATION_LONG_SIDE = 480
LE_NORMALISER = math.sqrt(480**2 + 480**2)  # 678.82, the same for every image size
CONFIDENCE_THRESHOLD = 0.5  # pred_exists = confidence > 0.5 (strict)
BOUNDARY_TOLERANCE = 0.008  # fraction of the image diagonal


def evaluation_size(height: int, width: int, long_side: int = EVALUATION_LONG_SIDE) -> tuple[int, int]:
    """(H, W) of the evaluation grid for a ground truth of ``height`` x ``width``: longer side
    480, aspect kept, sizes truncated (3840x2160 -> 270x480, 1408x1408 -> 480x480)."""
    ratio = 1.0 / height * long_side if height > width else 1.0 / width * long_side
    return int(height * ratio), int(width * ratio)


def resize_nearest(mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(H, W) mask -> ``size`` (H', W') bool, nearest neighbour as the official code (OpenCV)."""
    if mask.shape == tuple(size):
        return mask.astype(bool, copy=False)
    out = cv2.resize(mask.astype(np.uint8), (size[1], size[0]), interpolation=cv2.INTER_NEAREST)
    return out.astype(bool)


def iou(pred: np.ndarray, gt: np.ndarray) -> float:
    """Region similarity |P & G| / (|P | G| + 1e-7); 1.0 when both masks are empty."""
    _check_pair(pred, gt)
    inter = np.count_nonzero(pred & gt)
    union = np.count_nonzero(pred | gt)
    return 1.0 if np.isclose(union, 0) else float(inter / (union + 1e-7))


def boundary_map(mask: np.ndarray) -> np.ndarray:
    """One-pixel boundary (H, W) bool of a mask (DAVIS ``seg2bmap``): pixels that differ from
    their right, lower or lower-right neighbour, with the official last-row/column handling."""
    seg = mask.astype(bool)
    e = np.zeros_like(seg)
    s = np.zeros_like(seg)
    se = np.zeros_like(seg)
    e[:, :-1] = seg[:, 1:]
    s[:-1, :] = seg[1:, :]
    se[:-1, :-1] = seg[1:, 1:]
    b = (seg ^ e) | (seg ^ s) | (seg ^ se)
    b[-1, :] = seg[-1, :] ^ e[-1, :]
    b[:, -1] = seg[:, -1] ^ s[:, -1]
    b[-1, -1] = 0
    return b


def boundary_tolerance(height: int, width: int) -> int:
    """Matching radius in pixels: ceil(0.008 * image diagonal)."""
    return int(np.ceil(BOUNDARY_TOLERANCE * np.linalg.norm((height, width))))


def contour_accuracy(pred: np.ndarray, gt: np.ndarray) -> float:
    """DAVIS boundary F-measure of ``pred`` against ``gt`` (both (H, W) bool, same size).

    Precision: share of P's boundary pixels within the tolerance disk of G's boundary; recall
    the reverse. No boundary in P but one in G (or the reverse): 0; neither: 1.
    """
    _check_pair(pred, gt)
    radius = boundary_tolerance(*pred.shape)
    kernel = disk(radius).astype(np.uint8)
    fg_boundary = boundary_map(pred)
    gt_boundary = boundary_map(gt)
    fg_dil = cv2.dilate(fg_boundary.astype(np.uint8), kernel)
    gt_dil = cv2.dilate(gt_boundary.astype(np.uint8), kernel)
    n_fg = np.count_nonzero(fg_boundary)
    n_gt = np.count_nonzero(gt_boundary)
    if n_fg == 0 and n_gt > 0:
        precision, recall = 1.0, 0.0
    elif n_fg > 0 and n_gt == 0:
        precision, recall = 0.0, 1.0
    elif n_fg == 0 and n_gt == 0:
        precision, recall = 1.0, 1.0
    else:
        precision = np.count_nonzero(fg_boundary & (gt_dil > 0)) / float(n_fg)
        recall = np.count_nonzero(gt_boundary & (fg_dil > 0)) / float(n_gt)
    if precision + recall == 0:
        return 0.0
    return float(2 * precision * recall / (precision + recall))


def location_error(pred: np.ndarray, gt: np.ndarray) -> float:
    """Distance between the bounding-box centres of ``pred`` and ``gt``, divided by
    sqrt(480^2 + 480^2) whatever the image size."""
    _check_pair(pred, gt)
    (px, py), (gx, gy) = _box_centre(pred), _box_centre(gt)
    return float(math.hypot(gx - px, gy - py) / LE_NORMALISER)


def mask_metrics(pred: np.ndarray, gt: np.ndarray) -> dict[str, float]:
    """{"iou", "contour_accuracy", "location_error"} of one predicted mask against its ground
    truth, both (H, W) bool at the evaluation size."""
    pred, gt = np.asarray(pred, bool), np.asarray(gt, bool)
    return {
        "iou": iou(pred, gt),
        "contour_accuracy": contour_accuracy(pred, gt),
        "location_error": location_error(pred, gt),
    }


def balanced_accuracy(gt_exists: Sequence[bool], pred_exists: Sequence[bool]) -> float:
    """Mean over the classes present in ``gt_exists`` of the recall of that class (sklearn's
    ``balanced_accuracy_score``: a predicted class absent from the truth is ignored).
    NaN for no samples."""
    truth = np.asarray(gt_exists, dtype=bool).ravel()
    pred = np.asarray(pred_exists, dtype=bool).ravel()
    if truth.shape != pred.shape:
        raise ValueError(f"balanced_accuracy: {truth.size} truths but {pred.size} predictions")
    if truth.size == 0:
        return float("nan")
    recalls = [np.mean(pred[truth == label] == label) for label in (False, True) if np.any(truth == label)]
    return float(np.mean(recalls))


def pred_exists(confidence: float) -> bool:
    """Whether a submission's confidence says "visible" (confidence > 0.5, as the official code)."""
    return bool(confidence > CONFIDENCE_THRESHOLD)


def _box_centre(mask: np.ndarray) -> tuple[int, int]:
    """Bounding-box centre (x, y) in the official code's padded coordinates.

    The official code pads both masks by H on every side first; a non-empty mask's centre is
    (floor((xmin + xmax) / 2), floor((ymin + ymax) / 2)) + H, and an empty mask's is the padded
    image's (H_pad // 2, W_pad // 2), read as (x, y) as the official code does.
    """
    height, width = mask.shape
    ys, xs = np.nonzero(mask)
    if xs.size == 0:
        return (3 * height) // 2, (width + 2 * height) // 2
    return (int(xs.min()) + int(xs.max())) // 2 + height, (int(ys.min()) + int(ys.max())) // 2 + height


def _check_pair(pred: np.ndarray, gt: np.ndarray) -> None:
    if pred.shape != gt.shape or pred.ndim != 2:
        raise ValueError(f"prediction {pred.shape} and ground truth {gt.shape} must be (H, W) masks of one size")
