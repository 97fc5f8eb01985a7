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


def pooled_descriptors(features: torch.Tensor, grid_masks: np.ndarray, cells: np.ndarray) -> torch.Tensor:
    """features (C, h, w), masks on the 4-px grid (N, gh, gw) bool, context cells (N, 4)
    from context_cells -> (N, 2C) [object mean; context mean]. Features not on that grid
    are upsampled to it bilinearly (align_corners False). An empty mask gives a zero o."""
    grid_hw = grid_masks.shape[1:]
    grid = F.interpolate(features[None], size=grid_hw, mode="bilinear", align_corners=False)[0]  # (C, gh, gw)
    object_weights = torch.from_numpy(np.ascontiguousarray(grid_masks)).to(grid)  # (N, gh, gw)
    cells = torch.from_numpy(cells).to(grid.device)
    rows = torch.arange(grid_hw[0], device=grid.device)
    cols = torch.arange(grid_hw[1], device=grid.device)
    in_rows = (rows[None] >= cells[:, 0:1]) & (rows[None] < cells[:, 1:2])  # (N, gh)
    in_cols = (cols[None] >= cells[:, 2:3]) & (cols[None] < cells[:, 3:4])  # (N, gw)
    context_weights = (in_rows[:, :, None] & in_cols[:, None, :]).to(grid)  # (N, gh, gw)

    weights = torch.cat([object_weights, context_weights])  # (2N, gh, gw)
    sums = torch.einsum("nij,cij->nc", weights, grid)
    means = sums / weights.sum(dim=(1, 2)).clamp(min=1.0)[:, None]
    n = len(grid_masks)
    return torch.cat([means[:n], means[n:]], dim=1)


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
