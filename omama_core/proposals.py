"""Class-agnostic mask candidates for the target image.

`FastSAMProposals` is the published source of candidates (FastSAM through ultralytics,
local weights only). `ClassicalProposals` needs no weights: Felzenszwalb graph segmentation
at several scales, so that both object parts and whole objects appear as candidates.
Both return a `Proposals` container.
"""

from __future__ import annotations

import os

import cv2
import numpy as np
import torch

from .config import ProposalsConfig
from .errors import WeightsNotFoundError
from .fastsam import MaskLogits, candidate_predictor
from .masks import centroids_from_moments, mask_centroids, nearest_indices
from .network import disable_hub_downloads


class Proposals:
    """Mask candidates of one image.

    boxes: (N, 4) float32 as (x, y, w, h) in pixels, the publication's box convention.
    scores: (N,) float32 proposal confidences.
    The masks, (N, H, W) bool at the image size, are stored in one of three ways: densely
    (FastSAM on CUDA, the caller's candidates), as a label map (H, W) plus a membership table
    (N, L) bool saying which labels make up each candidate (region hierarchies), or as
    FastSAM's logit maps (fastsam.MaskLogits, on the CPU). In the last two `masks` is only
    built when asked for, while `sampled_masks`, `resized_masks` and `mask(i)` stay cheap.
    network_ms: the time of the generator's network forward (FastSAM), None without one; the
    matcher reports it as its own stage.
    """

    def __init__(self, boxes: np.ndarray, scores: np.ndarray, masks: np.ndarray | None = None,
                 labels: np.ndarray | None = None, members: np.ndarray | None = None,
                 logits: MaskLogits | None = None):
        if sum(given is not None for given in (masks, labels, logits)) != 1:
            raise ValueError("give one of masks, labels + members, or logits")
        self.boxes, self.scores = boxes, scores
        self._masks, self.labels, self.members, self.logits = masks, labels, members, logits
        self.image_hw = tuple(masks.shape[1:] if masks is not None
                              else labels.shape if labels is not None else logits.image_hw)
        self.network_ms: float | None = None

    def __len__(self) -> int:
        return len(self.boxes)

    @property
    def masks(self) -> np.ndarray:
        """(N, H, W) bool."""
        if self._masks is None:
            self._masks = self.members[:, self.labels] if self.labels is not None else self.logits.dense()
        return self._masks

    def mask(self, index: int) -> np.ndarray:
        """(H, W) bool mask of one candidate."""
        if self._masks is not None:
            return self._masks[index]
        if self.labels is not None:
            return self.members[index][self.labels]
        return self.logits.sample(np.arange(self.image_hw[0]), np.arange(self.image_hw[1]), [index])[0]

    def sampled_masks(self, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """(N, R, C) bool: the masks at pixel rows (R,) and columns (C,), both non-decreasing,
        i.e. masks[:, rows][:, :, cols]."""
        if self._masks is not None:
            return self._masks[:, rows][:, :, cols]
        if self.labels is not None:
            return self.members[:, self.labels[np.ix_(rows, cols)]]
        return self.logits.sample(rows, cols)

    def resized_masks(self, size: tuple[int, int]) -> np.ndarray:
        """(N, h, w) bool, identical to torch interpolate(mode="nearest") of the masks."""
        height, width = self.image_hw
        return self.sampled_masks(nearest_indices(height, size[0]), nearest_indices(width, size[1]))

    def iou_with(self, mask: np.ndarray) -> np.ndarray:
        """(N,) pixel IoU of every candidate with an (H, W) bool mask."""
        if self.labels is None:
            inter = (self.masks.reshape(len(self), -1) & mask.ravel()).sum(1)
        else:
            inter = self.members.astype(np.int64) @ np.bincount(self.labels[mask], minlength=self.members.shape[1])
        union = self.areas() + mask.sum() - inter
        return np.where(union > 0, inter / np.maximum(union, 1), 0.0).astype(np.float32)

    def areas(self) -> np.ndarray:
        """(N,) int64 pixel areas."""
        if self.labels is None:
            return self.masks.reshape(len(self), -1).sum(1)
        return self.members.astype(np.int64) @ np.bincount(self.labels.ravel(), minlength=self.members.shape[1])

    def centroids(self) -> np.ndarray:
        """(N, 2) float64 mask centroids (x, y) in pixels; NaN for empty masks."""
        if self.labels is None:
            return mask_centroids(self.masks)
        height, width = self.labels.shape
        count = self.members.shape[1]
        labels = self.labels.ravel()
        sums = np.stack([np.bincount(labels, weights=np.tile(np.arange(width, dtype=np.float64), height),
                                     minlength=count),
                         np.bincount(labels, weights=np.repeat(np.arange(height, dtype=np.float64), width),
                                     minlength=count),
                         np.bincount(labels, minlength=count).astype(np.float64)], axis=1)  # (L, 3)
        return centroids_from_moments(self.members.astype(np.float64) @ sums)  # a candidate's moments: its labels' sums

    def containment(self, cover: float = 0.95) -> np.ndarray:
        """(N, N) bool, [j, k] True when candidate j covers at least `cover` of candidate k's
        pixels (every candidate contains itself). Exact for region hierarchies."""
        if self.labels is None:
            flat = torch.from_numpy(self.masks.reshape(len(self), -1)).float()
            inter = (flat @ flat.T).numpy()
        else:
            label_areas = np.bincount(self.labels.ravel(), minlength=self.members.shape[1]).astype(np.float64)
            members = self.members.astype(np.float64)
            inter = (members * label_areas) @ members.T
        areas = np.diag(inter)
        return inter >= cover * areas[None, :] - 1e-6

    def filter(self, keep: np.ndarray) -> "Proposals":
        """Select candidates by a boolean mask or an index array."""
        if self._masks is not None:
            return Proposals(self.boxes[keep], self.scores[keep], masks=self._masks[keep])
        if self.labels is not None:
            return Proposals(self.boxes[keep], self.scores[keep], labels=self.labels, members=self.members[keep])
        return Proposals(self.boxes[keep], self.scores[keep], logits=self.logits.subset(keep))

    @staticmethod
    def empty(height: int, width: int) -> "Proposals":
        return Proposals(np.zeros((0, 4), np.float32), np.zeros((0,), np.float32),
                         masks=np.zeros((0, height, width), bool))


class FastSAMProposals:
    """FastSAM (a one-class YOLOv8-seg) from a local .pt file. The defaults are FastSAM's own
    (imgsz 1024, conf 0.4, iou 0.9, retina masks, at most 300 masks): the authors never
    published their extraction settings.

    Only load checkpoints you trust: ultralytics .pt files are pickles.
    """

    def __init__(self, weights: str | None, imgsz: int = 1024, conf: float = 0.4, iou: float = 0.9,
                 max_masks: int = 300, device: str = "cpu"):
        if weights is None or not os.path.isfile(weights):
            raise WeightsNotFoundError(
                f"FastSAM weights file not found: {weights}\n"
                "Download FastSAM-x.pt or FastSAM-s.pt (github.com/CASIA-IVA-Lab/FastSAM, or the "
                "ultralytics assets release) on a machine with internet access and set "
                "proposals.weights (or --proposal-weights) to the file.")
        disable_hub_downloads()
        from ultralytics import FastSAM  # imported late: heavy, and must see the offline settings

        try:
            self.model = FastSAM(weights)
        except Exception as error:
            raise WeightsNotFoundError(f"could not load FastSAM weights {weights}: "
                                       f"{type(error).__name__}: {str(error)[:300]}") from None
        self.imgsz, self.conf, self.iou, self.max_masks, self.device = imgsz, conf, iou, max_masks, device
        self.predictor = candidate_predictor()  # masks resampled only inside their boxes (fastsam.py)

    def __call__(self, image: np.ndarray) -> Proposals:
        """image: HxWx3 uint8 RGB -> Proposals at the image size."""
        height, width = image.shape[:2]
        results = self.model.predict(
            np.ascontiguousarray(image[:, :, ::-1]),  # ultralytics takes numpy images as BGR
            imgsz=self.imgsz, conf=self.conf, iou=self.iou, max_det=self.max_masks,
            retina_masks=True, device=self.device, verbose=False, predictor=self.predictor)
        result = results[0]
        logits = getattr(result, "mask_logits", None)  # on the CPU (fastsam.py); dense masks on CUDA
        if len(result.boxes) == 0:
            proposals = Proposals.empty(height, width)
        else:
            xyxy = result.boxes.xyxy.cpu().numpy().astype(np.float32)
            boxes = np.concatenate([xyxy[:, :2], xyxy[:, 2:] - xyxy[:, :2]], axis=1)
            scores = result.boxes.conf.cpu().numpy().astype(np.float32)
            if logits is not None:
                proposals = Proposals(boxes, scores, logits=logits)
            else:  # (N, H, W) bool at the image size
                proposals = Proposals(boxes, scores, masks=result.masks.data.cpu().numpy().astype(bool, copy=False))
        proposals.network_ms = float(result.speed["inference"])  # ultralytics' own timer (synchronised on CUDA)
        return proposals


class ClassicalProposals:
    """Weight-free candidates by hierarchical grouping (in the spirit of selective search).

    A fine Felzenszwalb segmentation of a downscaled copy of the image gives the leaf
    regions; adjacent regions are then merged greedily, most similar pair first (colour
    histograms, plus terms that favour small and compact unions), and every region of the
    hierarchy is a candidate. Whole objects appear as unions of their parts,
    with the parts' boundaries. Regions below min_area_frac or above max_area_frac of the
    image are dropped; the max_masks largest of the rest are kept.
    """

    def __init__(self, segment_scale: float = 100.0, max_masks: int = 100, min_area_frac: float = 0.0002,
                 max_area_frac: float = 0.5, max_side: int = 480):
        self.segment_scale, self.max_masks = segment_scale, max_masks
        self.min_area_frac, self.max_area_frac, self.max_side = min_area_frac, max_area_frac, max_side

    def __call__(self, image: np.ndarray) -> Proposals:
        """image: HxWx3 uint8 RGB -> Proposals at the image size."""
        from .regions import hierarchical_groups, leaf_segments, union_boxes  # numba, scikit-image: imported when used

        height, width = image.shape[:2]
        scale = min(1.0, self.max_side / max(height, width))
        small = cv2.resize(image, (max(1, round(width * scale)), max(1, round(height * scale))),
                           interpolation=cv2.INTER_AREA) if scale < 1 else image
        area = small.shape[0] * small.shape[1]
        labels = leaf_segments(small, self.segment_scale, min_size=max(4, int(area * self.min_area_frac)))
        groups, sizes = hierarchical_groups(labels, small)
        keep = [i for i, size in enumerate(sizes) if area * self.min_area_frac <= size <= area * self.max_area_frac]
        keep = sorted(keep, key=lambda i: -sizes[i])[: self.max_masks]
        if not keep:
            return Proposals.empty(height, width)
        if small.shape[:2] != (height, width):
            labels = cv2.resize(labels.astype(np.int32), (width, height), interpolation=cv2.INTER_NEAREST)
        members = np.zeros((len(keep), int(labels.max()) + 1), bool)
        for row, i in enumerate(keep):
            members[row, groups[i]] = True
        return Proposals(union_boxes(labels, members), np.ones(len(keep), np.float32), labels=labels, members=members)


def build_proposals(config: ProposalsConfig, device: str = "cpu"):
    """Proposal generator from its config section."""
    if config.kind == "classical":
        return ClassicalProposals(config.segment_scale, config.max_masks, config.min_area_frac,
                                  config.max_area_frac, config.max_side)
    return FastSAMProposals(config.weights, config.imgsz, config.conf, config.iou, config.max_masks, device)
