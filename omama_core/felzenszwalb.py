"""Felzenszwalb graph segmentation of RGB uint8 images, label for label equal to scikit-image's
`skimage.segmentation.felzenszwalb` (0.26) with the same scale, sigma and min_size.

Why: speed. The classical proposals (omama_core.regions.leaf_segments) spent ~1 s of a
960x540 frame in scikit-image's version, single-threaded, in Python-level numpy (building and
gathering a (4HW, 2) edge array, np.argsort) and in its union-find loops. Here the float work
is the same numpy/scipy calls as scikit-image's (float conversion, Gaussian smoothing, edge
costs), and the rest (sorting the costs, edge pixels, the merge loop, the small-segment pass,
the numbering) is numba code that releases the GIL (the matcher runs proposals in a worker
thread beside torch). Measured on the 960x540 synthetic exo frame (render_pair(9)), scale 50,
min_size 103, 2-core machine: median 240 ms against scikit-image's 970 ms (4.0x); the first
call in a process costs ~0.7 s (numba import and cache load), ~4.8 s when it has to compile.

The order of equal edge costs can change the segmentation, so it must be np.argsort's (its
default kind, as scikit-image calls it). A radix sort is used instead only when it provably
gives the same merges: no two positive costs equal (zero costs all merge in any order, see
below); otherwise np.argsort is called.

numba is imported on the first call, not with this module.
"""

from __future__ import annotations

import operator

import numpy as np


def felzenszwalb(image: np.ndarray, scale: float, sigma: float, min_size: int) -> np.ndarray:
    """image (H, W, 3) uint8 RGB -> (H, W) int64 labels 0..L-1, numbered in raster order of
    each segment's first pixel; equal to skimage.segmentation.felzenszwalb(image, scale=scale,
    sigma=sigma, min_size=min_size). Raises ValueError for any other kind of image."""
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError("felzenszwalb takes an (H, W, 3) uint8 RGB image; got "
                         f"{type(image).__name__} {getattr(image, 'shape', '')} {getattr(image, 'dtype', '')}")
    height, width = image.shape[:2]
    if height == 0 or width == 0:
        raise ValueError(f"felzenszwalb takes a non-empty image; got shape {image.shape}")
    if sigma < 0:
        raise ValueError(f"sigma must be >= 0; got {sigma}")
    min_size = operator.index(min_size)  # scikit-image takes it as a C integer too

    from scipy.ndimage import gaussian_filter
    from skimage.util import img_as_float64

    from . import _felzenszwalb_numba

    # the same calls as scikit-image, so that every cost has the same bits
    smooth = gaussian_filter(img_as_float64(image), [sigma, sigma, 0], mode="reflect", cval=0.0, truncate=4.0)
    lower, upper = smooth[1:], smooth[:-1]
    pairs = ((smooth[:, 1:], smooth[:, :-1]),  # right: edge blocks in scikit-image's order
             (lower, upper),  # down
             (lower[:, 1:], upper[:, :-1]),  # down-right
             (lower[:, :-1], upper[:, 1:]))  # up-right
    costs = np.concatenate([_distance(a, b).ravel() for a, b in pairs])  # (E,) float64, E ~ 4HW
    scale = float(scale) / 255.0
    if np.float32(scale / (height * width)) > 0:
        # Every threshold is then > 0 in float32, so all zero-cost edges (they come first)
        # merge whatever their order, and are inside one component in the small-segment pass;
        # if moreover no two positive costs are equal, the ascending order is unique where it
        # matters and any sort gives scikit-image's merges. The radix sort is ~2x faster than
        # np.argsort on 2M costs.
        order, sorted_costs, decides = _felzenszwalb_numba.sort_distinct(costs)
    else:
        decides = False
    if not decides:
        # equal positive costs: their order can change the result (the small-segment pass
        # certainly), so take np.argsort's, with its default kind, as scikit-image does
        order = np.argsort(costs)
        sorted_costs = costs[order]
    return _felzenszwalb_numba.segment(order, sorted_costs, height, width, scale, min_size)


def _distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Euclidean colour distance of (h, w, 3) float64 a and b -> (h, w), computed as
    scikit-image computes it (the difference squared, summed over the last axis by numpy)."""
    difference = a - b
    return np.sqrt(np.sum(difference * difference, axis=-1))
