"""Rendering results as images: a label image and an RGB overlay for RViz (numpy + OpenCV)."""

from __future__ import annotations

from typing import Sequence

import cv2
import numpy as np

from omama_core.visualize import PALETTE


def render_overlay(rgb: np.ndarray, masks: Sequence[np.ndarray], boxes: Sequence[tuple | None],
                   names: Sequence[str] = (), alpha: float = 0.5) -> np.ndarray:
    """Target image with each visible mask tinted in its query's colour, its box and name.

    Args:
        rgb: (H, W, 3) uint8 target image.
        masks: per query (H, W) bool mask (all False when not visible).
        boxes: per query (x0, y0, x1, y1), exclusive right/bottom, or None.
        names: per query label text (the query id), optional.
    Returns:
        (H, W, 3) uint8 RGB.
    """
    out = rgb.astype(np.float32)
    for index, mask in enumerate(masks):
        if mask.any():
            colour = PALETTE[index % len(PALETTE)].astype(np.float32)
            out[mask] = (1.0 - alpha) * out[mask] + alpha * colour
    out = np.clip(out + 0.5, 0, 255).astype(np.uint8)
    for index, box in enumerate(boxes):
        if box is None:
            continue
        colour = tuple(int(c) for c in PALETTE[index % len(PALETTE)])
        x0, y0, x1, y1 = (int(v) for v in box)
        cv2.rectangle(out, (x0, y0), (x1 - 1, y1 - 1), colour, 1)
        if index < len(names) and names[index]:
            cv2.putText(out, names[index], (x0, max(y0 - 3, 10)), cv2.FONT_HERSHEY_SIMPLEX, 0.4, colour, 1,
                        cv2.LINE_AA)
    return out
