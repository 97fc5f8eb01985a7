"""Class-agnostic mask candidates for the target image.

`FastSAMProposals` is the published source of candidates (FastSAM through ultralytics,
local weights only). `ClassicalProposals` needs no weights: Felzenszwalb graph segmentation
at several scales, so that both object parts and whole objects appear as candidates.
Both return a `Proposals` container.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import cv2
import numpy as np

from .config import ProposalsConfig
from .errors import WeightsNotFoundError
from .offline import configure_offline


@dataclass
class Proposals:
    """Mask candidates of one image.

    masks: (N, H, W) bool at the image size. boxes: (N, 4) float32 as (x, y, w, h) in
    pixels, the publication's box convention. scores: (N,) float32 proposal confidences.
    """

    masks: np.ndarray
    boxes: np.ndarray
    scores: np.ndarray

    def __len__(self) -> int:
        return len(self.masks)

    def filter(self, keep: np.ndarray) -> "Proposals":
        """Select candidates by a boolean mask or an index array."""
        return Proposals(self.masks[keep], self.boxes[keep], self.scores[keep])

    @staticmethod
    def empty(height: int, width: int) -> "Proposals":
        return Proposals(np.zeros((0, height, width), bool), np.zeros((0, 4), np.float32),
                         np.zeros((0,), np.float32))


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


class FastSAMProposals:
    """FastSAM (a one-class YOLOv8-seg) from a local .pt file.

    Only load checkpoints you trust: ultralytics .pt files are pickles.
    """

    def __init__(self, weights: str | None, imgsz: int = 1024, conf: float = 0.4, iou: float = 0.9,
                 max_masks: int = 100, device: str = "cpu"):
        if weights is None or not os.path.isfile(weights):
            raise WeightsNotFoundError(
                f"FastSAM weights file not found: {weights}\n"
                "Download FastSAM-x.pt or FastSAM-s.pt (github.com/CASIA-IVA-Lab/FastSAM, or the "
                "ultralytics assets release) on a machine with internet access and set "
                "proposals.weights (or --proposal-weights) to the file.")
        configure_offline()
        from ultralytics import FastSAM  # imported late: heavy, and must see the offline settings

        try:
            self.model = FastSAM(weights)
        except Exception as error:
            raise WeightsNotFoundError(f"could not load FastSAM weights {weights}: "
                                       f"{type(error).__name__}: {str(error)[:300]}") from None
        self.imgsz, self.conf, self.iou, self.max_masks, self.device = imgsz, conf, iou, max_masks, device

    def __call__(self, image: np.ndarray) -> Proposals:
        """image: HxWx3 uint8 RGB -> Proposals at the image size."""
        height, width = image.shape[:2]
        results = self.model.predict(
            np.ascontiguousarray(image[:, :, ::-1]),  # ultralytics takes numpy images as BGR
            imgsz=self.imgsz, conf=self.conf, iou=self.iou, max_det=self.max_masks,
            retina_masks=True, device=self.device, verbose=False)
        result = results[0]
        if result.masks is None or len(result.masks.data) == 0:
            return Proposals.empty(height, width)
        masks = result.masks.data.cpu().numpy().astype(bool)
        if masks.shape[1:] != (height, width):  # ultralytics may pad; bring back to image size
            masks = np.stack([cv2.resize(m.astype(np.uint8), (width, height),
                                         interpolation=cv2.INTER_NEAREST) for m in masks]).astype(bool)
        xyxy = result.boxes.xyxy.cpu().numpy().astype(np.float32)
        boxes = np.concatenate([xyxy[:, :2], xyxy[:, 2:] - xyxy[:, :2]], axis=1)
        scores = result.boxes.conf.cpu().numpy().astype(np.float32)
        return Proposals(masks, boxes, scores)


class ClassicalProposals:
    """Weight-free candidates: Felzenszwalb segmentation at several scales on a downscaled
    copy of the image, small and huge regions dropped, near-duplicates (IoU > 0.85) merged."""

    def __init__(self, scales=(150.0, 400.0, 1000.0), max_masks: int = 100, min_area_frac: float = 0.0002,
                 max_area_frac: float = 0.5, max_side: int = 480):
        self.scales = tuple(float(s) for s in scales)
        self.max_masks, self.min_area_frac, self.max_area_frac = max_masks, min_area_frac, max_area_frac
        self.max_side = max_side

    def __call__(self, image: np.ndarray) -> Proposals:
        """image: HxWx3 uint8 RGB -> Proposals at the image size."""
        from skimage.segmentation import felzenszwalb

        height, width = image.shape[:2]
        scale = min(1.0, self.max_side / max(height, width))
        small = cv2.resize(image, (max(1, round(width * scale)), max(1, round(height * scale))),
                           interpolation=cv2.INTER_AREA) if scale < 1 else image
        area = small.shape[0] * small.shape[1]
        regions = []
        for s in self.scales:
            labels = felzenszwalb(small, scale=s * scale, sigma=0.8, min_size=max(8, int(area * self.min_area_frac)))
            counts = np.bincount(labels.ravel())
            for label in np.flatnonzero((counts >= area * self.min_area_frac) & (counts <= area * self.max_area_frac)):
                regions.append(labels == label)
        if not regions:
            return Proposals.empty(height, width)
        small_masks = _drop_duplicates(np.stack(regions), iou_threshold=0.85)
        order = np.argsort(-small_masks.reshape(len(small_masks), -1).sum(1), kind="stable")[: self.max_masks]
        small_masks = small_masks[order]
        if small.shape[:2] != (height, width):
            masks = np.stack([cv2.resize(m.astype(np.uint8), (width, height), interpolation=cv2.INTER_NEAREST)
                              for m in small_masks]).astype(bool)
        else:
            masks = small_masks
        return Proposals(masks, boxes_from_masks(masks), np.ones(len(masks), np.float32))


def _drop_duplicates(masks: np.ndarray, iou_threshold: float) -> np.ndarray:
    """Keep the first of every group of masks whose pairwise IoU exceeds the threshold."""
    flat = masks.reshape(len(masks), -1).astype(np.float32)
    inter = flat @ flat.T
    areas = np.diag(inter)
    iou = inter / (areas[:, None] + areas[None, :] - inter + 1e-6)
    keep = np.ones(len(masks), bool)
    for i in range(len(masks)):
        if keep[i]:
            duplicates = iou[i] > iou_threshold
            duplicates[: i + 1] = False
            keep &= ~duplicates
    return masks[keep]


def build_proposals(config: ProposalsConfig, device: str = "cpu"):
    """Proposal generator from its config section."""
    if config.kind == "classical":
        return ClassicalProposals(config.scales, config.max_masks, config.min_area_frac,
                                  config.max_area_frac, config.max_side)
    return FastSAMProposals(config.weights, config.imgsz, config.conf, config.iou, config.max_masks, device)
