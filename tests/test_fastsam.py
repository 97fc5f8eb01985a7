"""FastSAM's full-resolution masks computed inside their boxes only (omama_core/fastsam.py)
against ultralytics' own post-processing of the same network output, on a random-weight
FastSAM-s (conf 1e-4: every detection kept, boxes of all sizes)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from omama_core.fastsam import (box_pixels, letterbox_content, linear_weights, mask_logits, prototype_to_image,
                                retina_masks)
from omama_core.proposals import FastSAMProposals


@pytest.fixture(scope="module")
def fastsam_file(tmp_path_factory):
    from omama_core.benchmark import random_fastsam

    torch.manual_seed(0)
    return str(random_fastsam("s", tmp_path_factory.mktemp("fastsam")))


def scene(height: int, width: int) -> np.ndarray:
    """Smooth colour gradients with a few rectangles: not noise, so detections differ in size."""
    rng = np.random.default_rng(height + width)
    ys, xs = np.mgrid[0:height, 0:width]
    image = np.stack([xs * 255 // width, ys * 255 // height, (xs + ys) * 127 // (height + width)], -1)
    for _ in range(6):
        x, y = rng.integers(0, width - 20), rng.integers(0, height - 20)
        image[y:y + rng.integers(10, height // 3), x:x + rng.integers(10, width // 3)] = rng.integers(0, 255, 3)
    return image.astype(np.uint8)


@pytest.mark.parametrize("image_hw", [(200, 300), (300, 240), (181, 257)])
def test_masks_equal_ultralytics_post_processing(fastsam_file, image_hw):
    """Same detections, boxes and scores; masks equal but for rounding along boundaries
    (ultralytics resamples in two steps, here in one): at most 1 pixel in 10,000 differs."""
    settings = dict(imgsz=320, conf=0.0001, iou=0.9, max_masks=60)
    ours = FastSAMProposals(fastsam_file, **settings)(scene(*image_hw))
    stock = FastSAMProposals(fastsam_file, **settings).model  # a model of its own: its own predictor
    result = stock.predict(np.ascontiguousarray(scene(*image_hw)[:, :, ::-1]), imgsz=320, conf=0.0001, iou=0.9,
                           max_det=60, retina_masks=True, device="cpu", verbose=False)[0]
    reference = result.masks.data.numpy().astype(bool)
    assert len(ours) == len(reference) > 10
    xyxy = result.boxes.xyxy.numpy()
    np.testing.assert_allclose(ours.boxes, np.concatenate([xyxy[:, :2], xyxy[:, 2:] - xyxy[:, :2]], 1), atol=1e-4)
    np.testing.assert_allclose(ours.scores, result.boxes.conf.numpy(), atol=1e-6)
    assert ours.masks.shape == reference.shape and ours.masks.dtype == bool
    differing = np.count_nonzero(ours.masks != reference)
    assert differing <= max(1, reference.sum() // 10_000), differing
    assert ours.network_ms is not None and ours.network_ms > 0


def test_mask_logits_sampled_anywhere_equal_the_dense_masks():
    """MaskLogits (the CPU way: only the pixels asked for, inside the box) against retina_masks
    (the CUDA way: whole maps, then the boxes), both on the CPU: every pixel, any rows and
    columns, one mask alone, which masks are empty, subsets."""
    generator = torch.Generator().manual_seed(1)
    prototypes = torch.randn(32, 80, 60, generator=generator)
    coefficients = torch.randn(14, 32, generator=generator)
    coefficients[13] = -coefficients[13].abs() - 1  # with positive prototypes: an empty mask
    prototypes[:, :2] = prototypes[:, :2].abs()
    corners = torch.rand(14, 2, generator=generator) * torch.tensor([250.0, 330.0])
    sizes = torch.rand(14, 2, generator=generator) * 200
    boxes = torch.cat([corners, corners + sizes], 1)  # some reach past the image
    boxes[3] = torch.tensor([40.0, 40.0, 40.0, 90.0])  # an empty box
    boxes[13] = torch.tensor([0.0, 0.0, 250.0, 20.0])  # the rows the positive prototypes cover
    input_hw, image_hw = (320, 240), (333, 250)
    dense = retina_masks(prototypes, coefficients, boxes, input_hw, image_hw).numpy()
    logits = mask_logits(prototypes, coefficients, boxes, input_hw, image_hw)
    np.testing.assert_array_equal(logits.dense(), dense)
    rows, cols = np.sort(np.random.default_rng(0).integers(0, 333, 90)), np.arange(0, 250, 4)
    np.testing.assert_array_equal(logits.sample(rows, cols), dense[:, rows][:, :, cols])
    np.testing.assert_array_equal(logits.sample(np.arange(333), np.arange(250), [5])[0], dense[5])
    np.testing.assert_array_equal(logits.nonempty(), dense.any(axis=(1, 2)))
    assert not dense[3].any() and dense.any(axis=(1, 2)).sum() >= 10
    keep = np.array([0, 2, 5])
    np.testing.assert_array_equal(logits.subset(keep).dense(), dense[keep])
    pixels = box_pixels(boxes, image_hw)
    for mask, (x0, y0, x1, y1) in zip(dense, pixels.tolist()):
        outside = mask.copy()
        outside[y0:y1, x0:x1] = False
        assert not outside.any()  # nothing outside the box


@pytest.mark.parametrize("peak, pixels", [(0.2, 2), (0.1, 0)])
def test_nonempty_finds_a_mask_of_two_pixels(peak, pixels):
    """A logit map positive in one prototype cell only, barely: only the pixels nearest that
    cell's centre are inside (or none), and nonempty must tell."""
    prototypes = torch.full((1, 40, 40), -1.0)
    prototypes[0, 17, 23] = peak
    boxes = torch.tensor([[0.0, 0.0, 176.0, 176.0]])
    dense = retina_masks(prototypes, torch.ones(1, 1), boxes, (160, 160), (176, 176)).numpy()
    logits = mask_logits(prototypes, torch.ones(1, 1), boxes, (160, 160), (176, 176))
    assert dense.sum() == pixels
    assert logits.nonempty().tolist() == [pixels > 0]
    np.testing.assert_array_equal(logits.dense(), dense)


def test_letterbox_and_interpolation_weights():
    assert letterbox_content((320, 320), (200, 300)) == (53, 0, 213, 320)  # padded above and below
    assert letterbox_content((320, 224), (300, 200)) == (0, 5, 320, 213)
    weights = linear_weights(np.array([-0.3, 0.0, 0.25, 2.5, 3.0, 3.7]), 4)
    np.testing.assert_allclose(weights.sum(1), 1.0)
    np.testing.assert_allclose(weights[2], [0.75, 0.25, 0, 0])
    np.testing.assert_allclose(weights[3], [0, 0, 0.5, 0.5])
    np.testing.assert_allclose(weights[[0, 5]], [[1, 0, 0, 0], [0, 0, 0, 1]])  # clamped at both ends
    rows, cols = prototype_to_image((320, 320), (200, 300), (80, 80))
    assert rows.shape == (200, 80) and cols.shape == (300, 80)
    assert not rows[:, :12].any() and not rows[:, 67:].any()  # the letterbox rows (0-13, 66.5-80) barely read
