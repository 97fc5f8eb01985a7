"""omama_core.felzenszwalb against scikit-image's felzenszwalb: the same label map, element
for element, on synthetic frames, noise, flat and blocky images (many equal edge costs), tiny
and odd sizes, at the scales the project uses."""

from __future__ import annotations

import numpy as np
import pytest
from skimage.segmentation import felzenszwalb as skimage_felzenszwalb

from omama_core import _felzenszwalb_numba
from omama_core.data.synth import render_pair
from omama_core.felzenszwalb import felzenszwalb


def project_min_size(image: np.ndarray) -> int:
    """min_size as ClassicalProposals picks it (min_area_frac 0.0002)."""
    return max(4, int(image.shape[0] * image.shape[1] * 0.0002))


def assert_same(image: np.ndarray, scale: float, min_size: int, sigma: float = 0.8) -> None:
    ours = felzenszwalb(image, scale=scale, sigma=sigma, min_size=min_size)
    theirs = skimage_felzenszwalb(image, scale=scale, sigma=sigma, min_size=min_size)
    assert ours.dtype == np.int64 and ours.shape == image.shape[:2]
    assert np.array_equal(ours, theirs)


def blocks(height: int, width: int, seed: int) -> np.ndarray:
    """Flat rectangles of a few colours: mostly zero-cost edges, and many equal positive ones
    along the straight borders."""
    rng = np.random.default_rng(seed)
    image = np.full((height, width, 3), 30, np.uint8)
    for _ in range(6):
        y, x = rng.integers(0, height), rng.integers(0, width)
        image[y:y + rng.integers(2, height), x:x + rng.integers(2, width)] = rng.integers(0, 256, 3)
    return image


def test_synthetic_frames():
    pair = render_pair(9)
    for image in (pair.exo_image, pair.ego_image):  # 960x540 and 704x704
        assert_same(image, 50, project_min_size(image))
    assert_same(pair.exo_image, 100, project_min_size(pair.exo_image))
    assert_same(pair.ego_image, 300, project_min_size(pair.ego_image))


@pytest.mark.parametrize("scale", [50, 100, 300, 1, 5000])
def test_noise_flat_and_blocks(scale):
    rng = np.random.default_rng(scale)
    images = [rng.integers(0, 256, (61, 83, 3), dtype=np.uint8),
              rng.integers(100, 104, (47, 52, 3), dtype=np.uint8),  # few values: equal costs
              np.full((40, 50, 3), (12, 200, 77), np.uint8),
              blocks(90, 120, scale), blocks(33, 71, scale + 1)]
    for image in images:
        for min_size in (project_min_size(image), 1, 30):
            assert_same(image, scale, min_size)


@pytest.mark.parametrize("shape", [(1, 1), (1, 7), (7, 1), (2, 2), (2, 3), (3, 2), (5, 9), (17, 4)])
def test_tiny_and_odd_sizes(shape):
    rng = np.random.default_rng(shape[0] * 100 + shape[1])
    for image in (rng.integers(0, 256, (*shape, 3), dtype=np.uint8), np.zeros((*shape, 3), np.uint8)):
        for scale in (50, 300):
            assert_same(image, scale, 4)
            assert_same(image, scale, 1)


def test_other_sigmas():
    image = render_pair(9).exo_image[::4, ::4]
    for sigma in (0.0, 0.5, 2.0):
        assert_same(image, 100, project_min_size(image), sigma=sigma)


def test_both_orderings_are_exercised():
    """The radix-sort path (no equal positive costs) and the np.argsort one (equal ones)."""
    _, _, decides = _felzenszwalb_numba.sort_distinct(np.random.default_rng(0).random(5000))
    assert decides
    image = blocks(40, 40, 0)
    costs = np.sqrt(((image[:, 1:].astype(float) - image[:, :-1]) ** 2).sum(-1)).ravel()
    order, sorted_costs, decides = _felzenszwalb_numba.sort_distinct(costs)
    assert np.array_equal(sorted_costs, np.sort(costs)) and np.array_equal(costs[order], sorted_costs)
    assert not decides


@pytest.mark.parametrize("image", [np.zeros((4, 4), np.uint8), np.zeros((4, 4, 3), np.float32),
                                   np.zeros((4, 4, 4), np.uint8), np.zeros((0, 4, 3), np.uint8), [[1, 2]]])
def test_rejects_other_images(image):
    with pytest.raises(ValueError):
        felzenszwalb(image, scale=50, sigma=0.8, min_size=4)
