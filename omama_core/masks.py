"""Small pure functions on boolean masks shared by proposals, encoder and matcher."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def boxes_from_masks(masks: np.ndarray) -> np.ndarray:
    """(N, H, W) bool -> (N, 4) float32 boxes (x, y, w, h) with w = xmax - xmin (no +1), as
    the publication computes the source box; empty masks give (0, 0, 0, 0)."""
    boxes = np.zeros((len(masks), 4), np.float32)
    rows_any = masks.any(axis=2)  # (N, H)
    cols_any = masks.any(axis=1)  # (N, W)
    for i in range(len(masks)):
        ys = np.flatnonzero(rows_any[i])
        xs = np.flatnonzero(cols_any[i])
        if len(xs):
            boxes[i] = (xs[0], ys[0], xs[-1] - xs[0], ys[-1] - ys[0])
    return boxes


def mask_box(mask: np.ndarray) -> tuple[int, int, int, int] | None:
    """(H, W) bool -> (x0, y0, x1, y1) with exclusive right/bottom, None when empty."""
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    if len(rows) == 0:
        return None
    return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1


def nearest_indices(size_in: int, size_out: int) -> np.ndarray:
    """Source indices that torch's interpolate(mode="nearest") picks when resizing size_in
    to size_out. Taken from torch itself so that the resize is bit-identical to it."""
    source = torch.arange(size_in, dtype=torch.float32).view(1, 1, size_in)
    return F.interpolate(source, size=size_out, mode="nearest").view(-1).long().numpy()


def resize_nearest(array: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize the last two axes of an array (..., H, W) to size (h, w) exactly as torch's
    interpolate(mode="nearest") does."""
    rows = nearest_indices(array.shape[-2], size[0])
    cols = nearest_indices(array.shape[-1], size[1])
    return array[..., rows, :][..., cols]


def mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    """IoU of two (H, W) bool masks; 1.0 when both are empty."""
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 1.0


def mask_centroids(masks: np.ndarray) -> np.ndarray:
    """(K, H, W) bool -> (K, 2) float64 centroids (x, y) in pixels; NaN for empty masks.
    The one definition of a mask's centre: pixel (col, row) indices averaged, no half-pixel
    offset. Proposals.centroids computes the same from a label map's moments."""
    masks = np.asarray(masks, bool)
    xs = masks.sum(axis=1) @ np.arange(masks.shape[2], dtype=np.float64)  # column sums weighted by x
    ys = masks.sum(axis=2) @ np.arange(masks.shape[1], dtype=np.float64)
    area = masks.sum(axis=(1, 2)).astype(np.float64)
    return centroids_from_moments(np.stack([xs, ys, area], axis=1))


def centroids_from_moments(moments: np.ndarray) -> np.ndarray:
    """(K, 3) float64 (sum of x, sum of y, pixel count) per mask -> (K, 2) float64 centroids
    (x, y); NaN where the count is 0."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return moments[:, :2] / moments[:, 2:]
