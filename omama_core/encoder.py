"""The Mask-Context Encoder: one descriptor per mask, computed for all masks at once.

For each mask, the object descriptor o is the mean of the dense features inside the mask
and the context descriptor c the mean inside the mask's box grown by `context_px` on each
side, both on a 4-px grid (the 14-px token features upsampled bilinearly; features that are
already on the 4-px grid, `stride=4`, are used as they are). The descriptor is [o; c].
With 14-px tokens this follows the publication exactly (see docs/method.md for the details
that matter to reproduce its numbers).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from .backbone import PATCH_SIZE
from .masks import boxes_from_masks, resize_nearest

GRID_STRIDE = 4  # pixels per cell of the grid on which descriptors are pooled


def pooling_grid_size(feature_hw: tuple[int, int], stride: int = PATCH_SIZE) -> tuple[int, int]:
    """(h, w) features of `stride` px -> (h*stride/4, w*stride/4) cells of the 4-px pooling grid (floored)."""
    h, w = feature_hw
    return h * stride // GRID_STRIDE, w * stride // GRID_STRIDE


def context_cells(boxes: np.ndarray, image_hw: tuple[int, int], grid_hw: tuple[int, int],
                  context_px: int, scale: float = 1.0) -> np.ndarray:
    """Grow (x, y, w, h) boxes by context_px, clamp to the image, convert to grid cells.

    scale maps image pixels to model-input pixels (the backbone's resize factor): boxes and
    the image size are scaled by it first, and context_px counts model-input pixels, so an
    image larger than the model input gets the context it would get at the model's size. At
    scale 1 (the published frames) this is the published formulation exactly.
    Returns (N, 4) int64 as (row0, row1, col0, col1), end exclusive, at least one cell.
    """
    height, width = image_hw[0] * scale, image_hw[1] * scale
    gh, gw = grid_hw
    x, y, w, h = (boxes[:, i].astype(np.float64) * scale for i in range(4))
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


def mask_context_descriptors(features: torch.Tensor, masks: np.ndarray, image_hw: tuple[int, int],
                             boxes: np.ndarray | None = None, context_px: int = 100,
                             scale: float = 1.0, stride: int = PATCH_SIZE) -> torch.Tensor:
    """Object-and-context descriptors of N masks.

    Args:
        features: (C, h, w) dense features, one cell per `stride` px of the model input.
        masks: (N, H, W) bool masks at image size (H, W) == image_hw.
        image_hw: (H, W) of the image the masks and boxes refer to.
        boxes: (N, 4) as (x, y, w, h); default: from each mask (xmin, ymin, xmax-xmin, ymax-ymin).
        context_px: pixels added on each side of the box for the context descriptor.
        scale: image pixels -> model-input pixels (see context_cells); 1 for the published frames.
        stride: 14 for DINOv2 tokens (published); 4 for features already on the pooling grid.

    Returns:
        (N, 2C) descriptors [object mean; context mean], on the features' device and dtype.
        An empty mask has a zero object descriptor.
    """
    masks = np.asarray(masks, dtype=bool)
    if masks.ndim != 3 or masks.shape[1:] != tuple(image_hw):
        raise ValueError(f"masks must be (N, {image_hw[0]}, {image_hw[1]}), got {masks.shape}")
    if boxes is None:
        boxes = boxes_from_masks(masks)
    grid_hw = pooling_grid_size(features.shape[1:], stride)
    return pooled_descriptors(features, resize_nearest(masks, grid_hw), boxes, image_hw, context_px, scale)


def proposal_descriptors(features: torch.Tensor, proposals, context_px: int = 100, scale: float = 1.0,
                         stride: int = PATCH_SIZE) -> torch.Tensor:
    """mask_context_descriptors of a Proposals container (its boxes, its masks), without
    building full-size masks: (C, h, w) features -> (N, 2C)."""
    grid_masks = proposals.resized_masks(pooling_grid_size(features.shape[1:], stride))
    return pooled_descriptors(features, grid_masks, proposals.boxes, proposals.image_hw, context_px, scale)


def pooled_descriptors(features: torch.Tensor, grid_masks: np.ndarray, boxes: np.ndarray,
                       image_hw: tuple[int, int], context_px: int, scale: float = 1.0) -> torch.Tensor:
    """features (C, h, w), masks already on the 4-px grid (N, gh, gw) bool, boxes (N, 4)
    (x, y, w, h) in image pixels -> (N, 2C) [object mean; context mean]."""
    grid_hw = grid_masks.shape[1:]
    grid = F.interpolate(features[None], size=grid_hw, mode="bilinear", align_corners=False)[0]  # (C, gh, gw)
    object_weights = torch.from_numpy(np.ascontiguousarray(grid_masks)).to(grid)  # (N, gh, gw)
    cells = torch.from_numpy(context_cells(np.asarray(boxes), image_hw, grid_hw, context_px, scale)).to(grid.device)
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


def balance_groups(descriptors: torch.Tensor, groups: list[tuple[int, float]]) -> torch.Tensor:
    """Descriptors (N, 2C) [object; context] of concatenated backbones -> the same with each
    backbone's part (its object and context channels together) scaled to norm sqrt(weight).

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
