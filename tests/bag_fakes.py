"""A fast, deterministic stand-in matcher for the bag tests (core and ROS).

It answers each query with the query mask resized (nearest) to the target image, judges it
visible when that covers at least 0.5% of the target, and gives its candidate mask whatever
the visibility (as the real Matcher), so offline, live and `omama eval` runs can be compared
exactly in milliseconds instead of seconds per frame pair.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import cv2
import numpy as np


@dataclass
class EchoResult:
    """The fields of omama_core.MatchResult that the evaluation and the node read."""

    mask: np.ndarray
    box: tuple | None
    visible: bool
    visibility: float
    score: float
    candidate_mask: np.ndarray
    num_candidates: int = 1
    reason: str | None = None
    timings: dict = field(default_factory=dict)


class EchoMatcher:
    """Query mask -> the same mask resized to the target; visible when it covers >= 0.5 %."""

    def __init__(self, delay: float = 0.0):
        self.delay = delay
        self.visibility_threshold = 0.005

    def match(self, source_image, source_masks, target_image, candidates=None, *, protocol="joint"):
        """The Matcher.match signature; each answer depends on its own query only, so the
        protocol changes nothing."""
        if self.delay:
            time.sleep(self.delay)
        height, width = target_image.shape[:2]
        results = []
        for mask in np.asarray(source_masks, bool).reshape(-1, *source_image.shape[:2]):
            candidate = cv2.resize(mask.astype(np.uint8), (width, height), interpolation=cv2.INTER_NEAREST) > 0
            share = float(candidate.mean())
            visible = share >= self.visibility_threshold
            rows, cols = np.flatnonzero(candidate.any(1)), np.flatnonzero(candidate.any(0))
            box = (int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1) if visible and rows.size else None
            results.append(EchoResult(candidate if visible else np.zeros_like(candidate), box, visible, share,
                                      share, candidate, reason=None if visible else "below threshold"))
        return results


def synthetic_bag(folder, frames: int = 20, seed: int = 0, **export_options):
    """Render a one-take synthetic dataset under `folder`/synth and export it to
    `folder`/take.bag; returns (dataset root, bag path)."""
    from pathlib import Path

    from omama_core.bags.export import export_bag
    from omama_core.data.synth import write_dataset

    root, bag = Path(folder) / "synth", Path(folder) / "take.bag"
    write_dataset(root, 1, seed, frames, (0.0, 0.0, 1.0), False, 1)
    export_bag(root, bag, progress=False, **export_options)
    return root, bag
