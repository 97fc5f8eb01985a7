"""Shared fixtures: a small two-camera scene drawn with OpenCV (no dataset needed)."""

from __future__ import annotations

import numpy as np
import pytest

# The shapes of the scene: name, RGB colour, kind, centre (fractions of the image).
OBJECTS = [
    ("red_disc", (205, 45, 40), "circle", (0.30, 0.35)),
    ("blue_box", (40, 70, 200), "rect", (0.65, 0.45)),
    ("green_disc", (40, 170, 70), "circle", (0.50, 0.75)),
    ("yellow_box", (225, 200, 40), "rect", (0.22, 0.72)),
]


def draw_scene(height: int, width: int, size: float, gain=(1.0, 1.0, 1.0), seed: int = 0,
               hidden: tuple[str, ...] = (), objects=OBJECTS):
    """A table-coloured image with the objects (default OBJECTS) drawn on it. Returns
    (image, {name: mask})."""
    import cv2

    rng = np.random.default_rng(seed)
    image = np.empty((height, width, 3), np.float32)
    image[:] = (150, 138, 118)
    image += rng.normal(0, 4, image.shape)
    masks = {}
    for name, rgb, kind, (cx, cy) in objects:
        if name in hidden:
            continue
        canvas = np.zeros((height, width), np.uint8)
        x, y, r = int(cx * width), int(cy * height), int(size * min(height, width))
        if kind == "circle":
            cv2.circle(canvas, (x, y), r, 1, -1)
        else:
            cv2.rectangle(canvas, (x - r, y - r // 2), (x + r, y + r // 2), 1, -1)
        mask = canvas.astype(bool)
        image[mask] = rgb
        masks[name] = mask
    image = np.clip(image * np.asarray(gain, np.float32), 0, 255).astype(np.uint8)
    return image, masks


@pytest.fixture(scope="session")
def two_views():
    """(ego image 352x352, ego masks, exo image 270x480, exo masks) of the same objects,
    at different scales and with a different white balance."""
    ego, ego_masks = draw_scene(352, 352, 0.14, seed=1)
    exo, exo_masks = draw_scene(270, 480, 0.08, gain=(1.15, 1.0, 0.85), seed=2)
    return ego, ego_masks, exo, exo_masks


@pytest.fixture(scope="session")
def knn_matcher():
    """The training-free matcher: deterministic cosine scores, visibility = best score."""
    from omama_core import Matcher

    return Matcher.from_config("knn", device="cpu")
