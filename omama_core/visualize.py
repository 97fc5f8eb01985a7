"""Drawing masks for people: overlays and side-by-side panels (numpy + OpenCV, no GUI)."""

from __future__ import annotations

import cv2
import numpy as np

PALETTE = np.array([(230, 25, 75), (60, 180, 75), (0, 130, 200), (245, 130, 48), (145, 30, 180),
                    (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 212), (0, 128, 128),
                    (220, 190, 255), (170, 110, 40), (255, 250, 200), (128, 0, 0), (170, 255, 195)], np.uint8)


def color(index: int) -> tuple[int, int, int]:
    """A distinct RGB colour for an index (cycles after 15)."""
    return tuple(int(c) for c in PALETTE[index % len(PALETTE)])


def overlay(image: np.ndarray, masks: list[np.ndarray] | np.ndarray, colors=None, alpha: float = 0.5,
            outline: bool = True) -> np.ndarray:
    """Blend (H, W) bool masks onto an HxWx3 uint8 RGB image, each in its colour, with its
    outline drawn solid so that overlapping masks stay readable."""
    out = image.copy()
    if isinstance(masks, np.ndarray) and masks.ndim == 2:
        masks = [masks]
    for i, mask in enumerate(masks):
        rgb = np.array(colors[i] if colors is not None else color(i), np.float32)
        out[mask] = (out[mask] * (1 - alpha) + rgb * alpha).astype(np.uint8)
        if outline and mask.any():
            contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
            cv2.drawContours(out, contours, -1, tuple(int(c) for c in rgb), max(1, image.shape[0] // 300))
    return out


def label_image(masks, shape: tuple[int, int]) -> np.ndarray:
    """Masks -> (H, W) uint8 labels: pixel = mask index + 1, 0 = none.

    Where masks overlap the later one wins. Only 255 labels fit in uint8: masks from index
    255 on are left out.
    """
    labels = np.zeros(shape, np.uint8)
    for index, mask in enumerate(masks[:255]):
        labels[mask] = index + 1
    return labels


def side_by_side(left: np.ndarray, right: np.ndarray, height: int = 360, titles=("", "")) -> np.ndarray:
    """Two RGB images scaled to one height, placed next to each other, with titles."""
    panels = []
    for image, title in zip((left, right), titles):
        width = max(1, round(image.shape[1] * height / image.shape[0]))
        panel = cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)
        if title:
            cv2.putText(panel, title, (8, 22), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (0, 0, 0), 3, cv2.LINE_AA)
            cv2.putText(panel, title, (8, 22), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (255, 255, 255), 1, cv2.LINE_AA)
        panels.append(panel)
    gap = np.full((height, 6, 3), 255, np.uint8)
    return np.concatenate([panels[0], gap, panels[1]], axis=1)
