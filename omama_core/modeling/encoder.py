"""The Mask-Context Encoder: one descriptor per mask, computed for all masks at once.

For each mask, the object descriptor o is the mean of the dense features inside the mask
and the context descriptor c the mean inside the mask's box grown by `context_px` on each
side, both on a 4-px grid (the 14-px token features upsampled bilinearly; features that are
already on the 4-px grid, `stride=4`, are used as they are). The descriptor is [o; c].
Masks and boxes come prepared by `omama_core.preprocess` (`Regions`: masks on the 4-px
grid, boxes in model-input pixels). docs/method.md section 3 gives the formulas.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..preprocess import GRID_STRIDE, PATCH_SIZE, Regions, pooling_grid_size


def context_cells(boxes: np.ndarray, bounds_hw: tuple[float, float], grid_hw: tuple[int, int],
                  context_px: int) -> np.ndarray:
    """Grow (x, y, w, h) boxes (N, 4), in model-input pixels, by context_px, clamp to
    bounds_hw (height, width), convert to cells of the 4-px grid grid_hw.

    Returns (N, 4) int64 as (row0, row1, col0, col1), end exclusive, at least one cell:
    cells floor(x1/4) .. max(floor(x1/4) + 1, floor(x2/4)), clamped to the grid.
    """
    height, width = bounds_hw
    gh, gw = grid_hw
    x, y, w, h = (np.asarray(boxes, np.float64)[:, i] for i in range(4))
    x1 = np.clip(x - context_px, 0, width)
    x2 = np.clip(x + w + context_px, 0, width)
    y1 = np.clip(y - context_px, 0, height)
    y2 = np.clip(y + h + context_px, 0, height)
    cells = []
    for start, end, size in ((y1, y2, gh), (x1, x2, gw)):
        first = np.floor(start / GRID_STRIDE).astype(np.int64)
        last = np.maximum(first + 1, np.floor(end / GRID_STRIDE).astype(np.int64))
        first = np.clip(first, 0, size - 1)
        last = np.clip(last, first + 1, size)
        cells += [first, last]
    return np.stack(cells, axis=1)


def resampling_matrix(size_in: int, size_out: int) -> torch.Tensor:
    """(size_out, size_in) float32: row i holds the weights of the input cells in output cell i
    of a 1-D linear resize (align_corners False). Bilinear resizing is separable, so a (C, h, w)
    map resized to (gh, gw) is rows @ map @ cols.T with rows = resampling_matrix(h, gh) and
    cols = resampling_matrix(w, gw). The identity when the sizes are equal."""
    eye = torch.eye(size_in)[None]  # each input cell's indicator, resized as F.interpolate does
    return F.interpolate(eye, size=size_out, mode="linear", align_corners=False)[0].T.contiguous()


def pooled_descriptors(features: torch.Tensor, grid_masks: np.ndarray, cells: np.ndarray) -> torch.Tensor:
    """features (C, h, w), masks on the 4-px grid (N, gh, gw) bool, context cells (N, 4)
    from context_cells -> (N, 2C) [object mean; context mean] of the features upsampled to
    the 4-px grid bilinearly (align_corners False). An empty mask gives a zero o.

    The upsampled grid is rows @ features @ cols.T (resampling_matrix), so a weighted sum
    over it equals the features weighted by rows.T @ weights @ cols: the weights are pulled
    back onto the features' own (h, w) grid and the (C, gh, gw) grid is never formed
    (12x fewer cells for 14-px tokens). A context box is a range of rows times a range of
    columns, so its pulled-back weights are an outer product of two vectors.
    """
    c, h, w = features.shape
    n, gh, gw = grid_masks.shape
    rows = resampling_matrix(h, gh).to(features)  # (gh, h)
    cols = resampling_matrix(w, gw).to(features)  # (gw, w)
    if (h, w) == (gh, gw):  # features already on the 4-px grid (stride 4): nothing to pull back
        object_weights = torch.from_numpy(np.ascontiguousarray(grid_masks)).to(features)  # (N, h, w)
    else:  # rows.T @ masks @ cols as two large matrix products, not N small ones
        by_row = torch.from_numpy(np.ascontiguousarray(grid_masks.transpose(1, 0, 2))).to(features)  # (gh, N, gw)
        pulled = (rows.T @ by_row.reshape(gh, n * gw)).reshape(h * n, gw) @ cols  # (h*N, w)
        object_weights = pulled.reshape(h, n, w).transpose(0, 1)  # (N, h, w)
    object_counts = torch.from_numpy(grid_masks.sum(axis=(1, 2))).to(features).clamp(min=1.0)  # (N,)

    cells = torch.from_numpy(cells).to(features.device)
    grid_rows, grid_cols = (torch.arange(size, device=cells.device)[None] for size in (gh, gw))
    in_rows = (grid_rows >= cells[:, 0:1]) & (grid_rows < cells[:, 1:2])  # (N, gh)
    in_cols = (grid_cols >= cells[:, 2:3]) & (grid_cols < cells[:, 3:4])  # (N, gw)
    context_weights = (in_rows.to(features) @ rows)[:, :, None] * (in_cols.to(features) @ cols)[:, None, :]  # (N, h, w)
    context_counts = ((cells[:, 1] - cells[:, 0]) * (cells[:, 3] - cells[:, 2])).to(features)  # (N,)

    weights = torch.cat([object_weights.reshape(n, h * w), context_weights.reshape(n, h * w)])  # (2N, h*w)
    sums = weights @ features.reshape(c, h * w).T  # (2N, C)
    return torch.cat([sums[:n] / object_counts[:, None], sums[n:] / context_counts[:, None]], dim=1)


class MaskContextEncoder(nn.Module):
    """Regions of an image + its pooling features -> (N, 2C) descriptors [o; c].

    Args:
        context_px: model-input pixels added on each side of a box for c (100 published).
        stride: pixels per cell of the features it pools: 14 for DINOv2 tokens (published),
            4 for the offline backbones' features, already on the encoder's grid.
        groups: for the features of concatenated backbones (offline.FusedBackbone), each
            one's (channels, weight): the descriptors are balanced (`balance_groups`).
    """

    def __init__(self, context_px: int = 100, stride: int = PATCH_SIZE,
                 groups: list[tuple[int, float]] | None = None):
        super().__init__()
        self.context_px, self.stride, self.groups = context_px, stride, groups

    def grid_size(self, feature_hw: tuple[int, int]) -> tuple[int, int]:
        """(h, w) of the pooling features -> (gh, gw) of the 4-px grid."""
        return pooling_grid_size(feature_hw, self.stride)

    def forward(self, features: torch.Tensor, regions: Regions) -> torch.Tensor:
        """features (C, h, w), regions with masks on grid_size((h, w)) -> (N, 2C)."""
        grid_hw = regions.grid_masks.shape[1:]
        cells = context_cells(regions.boxes, regions.bounds_hw, grid_hw, self.context_px)
        descriptors = pooled_descriptors(features, regions.grid_masks, cells)
        return balance_groups(descriptors, self.groups) if self.groups else descriptors


def balance_groups(descriptors: torch.Tensor, groups: list[tuple[int, float]]) -> torch.Tensor:
    """Descriptors (N, 2C) [object; context] of concatenated backbones -> the same with each
    backbone's part (its object and context channels together) scaled to norm sqrt(weight).
    Not published (the offline default fuses two backbones).

    groups: (channels, weight) per backbone in channel order, channels summing to C and
    weights to 1. The cosine of two balanced descriptors is then the weighted sum of the
    backbones' own cosines (each part has norm sqrt(w), the whole has norm 1).
    """
    c = descriptors.shape[1] // 2
    objects, contexts = descriptors[:, :c], descriptors[:, c:]
    balanced_objects, balanced_contexts, start = [], [], 0
    for channels, weight in groups:
        part_o, part_c = objects[:, start:start + channels], contexts[:, start:start + channels]
        norm = torch.sqrt((part_o ** 2).sum(1, keepdim=True) + (part_c ** 2).sum(1, keepdim=True)).clamp(min=1e-8)
        scale = weight ** 0.5 / norm
        balanced_objects.append(part_o * scale)
        balanced_contexts.append(part_c * scale)
        start += channels
    return torch.cat(balanced_objects + balanced_contexts, dim=1)
