"""Images, masks and boxes -> what the model takes: the model input and, per image, the masks
on the encoder's 4-px grid with their boxes in model-input pixels.

Two modes (`sizing.mode`):

- "scaled" (the offline configs): downscale (never upscale) so that the longer side is at
  most the view's max side, floor each side to a multiple of 14, resize with area averaging.
  Masks go from image size straight to the 4-px grid; boxes are scaled by the downscale
  factor (floats), and the context is clamped to the scaled image size.
- "official" (the `official_*` and DINOv2 + FastSAM configs): the authors' pipeline. An image
  whose HEIGHT is not a multiple of 14 is resized to (14 floor(h/14), 14 floor(w/14)) with
  nearest neighbour (cv2 INTER_NEAREST); otherwise it is used as it is. Masks are resized
  (nearest) to that model-input size first; the source box is computed from the resized
  mask, candidate boxes are scaled per axis to it and truncated to integers, and the context
  is clamped to it. An image larger than the view's max side (the published frames are
  704x704 and 960x540) is first downscaled to it with area averaging, as the authors'
  frames were stored at those sizes.

Shapes: images HxWx3 uint8 RGB; masks (N, H, W) bool; boxes (N, 4) (x, y, w, h).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import torch

from .config import SizingConfig
from .masks import boxes_from_masks, nearest_indices, resize_nearest

PATCH_SIZE = 14
GRID_STRIDE = 4  # pixels per cell of the grid on which the encoder pools descriptors
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def input_scale(height: int, width: int, max_side: int) -> float:
    """The factor an image is downscaled by before the backbone (1.0: not downscaled)."""
    return min(1.0, max_side / max(height, width))


def model_input_size(height: int, width: int, max_side: int) -> tuple[int, int]:
    """The (height, width) an image is resized to in the "scaled" mode.

    Downscale (never upscale) so that the longer side is at most max_side, then floor each
    side to a multiple of 14: 704x704 -> 700x700 and 540x960 -> 532x952, as published.
    """
    scale = input_scale(height, width, max_side)
    new_h = max(PATCH_SIZE, int(round(height * scale)) // PATCH_SIZE * PATCH_SIZE)
    new_w = max(PATCH_SIZE, int(round(width * scale)) // PATCH_SIZE * PATCH_SIZE)
    return new_h, new_w


def official_input_size(height: int, width: int) -> tuple[int, int]:
    """The authors' rule: (14 floor(h/14), 14 floor(w/14)) when h is not a multiple of 14,
    else (h, w) unchanged (their condition looks at the height only). A width that is then
    not a multiple of 14 is floored too: the authors' DINOv2 rejects such an input."""
    if height % PATCH_SIZE == 0 and width % PATCH_SIZE == 0:
        return height, width
    return max(PATCH_SIZE, height // PATCH_SIZE * PATCH_SIZE), max(PATCH_SIZE, width // PATCH_SIZE * PATCH_SIZE)


def pooling_grid_size(feature_hw: tuple[int, int], stride: int = PATCH_SIZE) -> tuple[int, int]:
    """(h, w) features of `stride` px -> (h*stride/4, w*stride/4) cells of the 4-px pooling grid (floored)."""
    h, w = feature_hw
    return h * stride // GRID_STRIDE, w * stride // GRID_STRIDE


def resize_image(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """HxWx3 uint8 -> size (h, w) uint8: area averaging when shrinking, bilinear otherwise."""
    h, w = size
    if image.shape[:2] == (h, w):
        return image
    shrinking = h * w < image.shape[0] * image.shape[1]
    return cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)


def normalise(images: torch.Tensor) -> torch.Tensor:
    """(B, h, w, 3) uint8 RGB -> (B, 3, h, w) float32, ImageNet-normalised."""
    tensor = images.permute(0, 3, 1, 2).float().div_(255.0)
    mean = torch.tensor(IMAGENET_MEAN, device=tensor.device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=tensor.device).view(1, 3, 1, 1)
    return (tensor - mean) / std


@dataclass(frozen=True)
class ModelInput:
    """How one image maps to the backbone's input.

    image_hw: the image's (H, W). stored_hw: after the max-side downscale (area), which the
    official mode applies before the authors' rule; == image_hw when not downscaled.
    input_hw: the model input (h, w). scale: the max-side downscale factor (1.0: none).
    """

    mode: str
    image_hw: tuple[int, int]
    stored_hw: tuple[int, int]
    input_hw: tuple[int, int]
    scale: float


def plan_input(image_hw: tuple[int, int], sizing: SizingConfig, view: str) -> ModelInput:
    """The model input of an image of size image_hw seen from view ("ego" or "exo")."""
    height, width = image_hw
    max_side = sizing.ego_max_side if view == "ego" else sizing.exo_max_side
    scale = input_scale(height, width, max_side)
    if sizing.mode == "official":
        stored = (height, width) if scale >= 1.0 else (int(round(height * scale)), int(round(width * scale)))
        return ModelInput("official", (height, width), stored, official_input_size(*stored), scale)
    return ModelInput("scaled", (height, width), (height, width), model_input_size(height, width, max_side), scale)


def to_model_input(image: np.ndarray, plan: ModelInput) -> torch.Tensor:
    """HxWx3 uint8 RGB -> (1, 3, h, w) float32, resized as planned and ImageNet-normalised."""
    if plan.mode == "official":
        if plan.stored_hw != plan.image_hw:
            image = resize_image(image, plan.stored_hw)
        if plan.input_hw != plan.stored_hw:
            image = cv2.resize(image, plan.input_hw[::-1], interpolation=cv2.INTER_NEAREST)
    else:
        image = resize_image(image, plan.input_hw)
    return normalise(torch.from_numpy(np.ascontiguousarray(image))[None])


@dataclass
class Regions:
    """Masks of one image, ready for the Mask-Context Encoder.

    grid_masks: (N, gh, gw) bool on the encoder's 4-px grid.
    boxes: (N, 4) float64 (x, y, w, h) in model-input pixels.
    bounds_hw: (height, width) in model-input pixels that the grown context box is clamped to.
    """

    grid_masks: np.ndarray
    boxes: np.ndarray
    bounds_hw: tuple[float, float]

    def __len__(self) -> int:
        return len(self.grid_masks)


def mask_regions(masks: np.ndarray, plan: ModelInput, grid_hw: tuple[int, int],
                 boxes: np.ndarray | None = None) -> Regions:
    """Query masks (N, H, W) bool at image size -> Regions. boxes (N, 4) (x, y, w, h) in
    image pixels; default: from the masks (official mode: from the masks at model-input size)."""
    masks = np.asarray(masks, dtype=bool)
    if masks.ndim != 3 or masks.shape[1:] != tuple(plan.image_hw):
        raise ValueError(f"masks must be (N, {plan.image_hw[0]}, {plan.image_hw[1]}), got {masks.shape}")
    if plan.mode == "official":
        if plan.input_hw != plan.image_hw:
            masks = resize_nearest(masks, plan.input_hw)
        if boxes is None:
            boxes = boxes_from_masks(masks)
        else:
            boxes = _scaled_boxes(boxes, plan)
        return Regions(resize_nearest(masks, grid_hw), np.asarray(boxes, np.float64), plan.input_hw)
    if boxes is None:
        boxes = boxes_from_masks(masks)
    return _scaled_regions(resize_nearest(masks, grid_hw), boxes, plan)


def proposal_regions(proposals, plan: ModelInput, grid_hw: tuple[int, int]) -> Regions:
    """A Proposals container of the image (its masks and boxes, image pixels) -> Regions,
    without building full-size masks."""
    if plan.mode == "official":
        # masks to the model input (nearest), then to the grid (nearest): one index lookup
        rows = nearest_indices(plan.image_hw[0], plan.input_hw[0])[nearest_indices(plan.input_hw[0], grid_hw[0])]
        cols = nearest_indices(plan.image_hw[1], plan.input_hw[1])[nearest_indices(plan.input_hw[1], grid_hw[1])]
        return Regions(proposals.sampled_masks(rows, cols), _scaled_boxes(proposals.boxes, plan), plan.input_hw)
    return _scaled_regions(proposals.resized_masks(grid_hw), proposals.boxes, plan)


def _scaled_boxes(boxes: np.ndarray, plan: ModelInput) -> np.ndarray:
    """Official mode: (x, y, w, h) in image pixels -> model-input pixels, scaled per axis and
    truncated to integers (as the authors scale candidate boxes)."""
    sy = plan.input_hw[0] / plan.image_hw[0]
    sx = plan.input_hw[1] / plan.image_hw[1]
    return np.trunc(np.asarray(boxes, np.float64) * np.array([sx, sy, sx, sy]))


def _scaled_regions(grid_masks: np.ndarray, boxes: np.ndarray, plan: ModelInput) -> Regions:
    """Scaled mode: boxes and the clamp size scaled by the downscale factor (floats), so that
    an image larger than the model input gets the context it would get at the model's size."""
    scale = plan.scale
    return Regions(grid_masks, np.asarray(boxes).astype(np.float64) * scale,
                   (plan.image_hw[0] * scale, plan.image_hw[1] * scale))
