"""The Mask-Context Encoder against a loop-by-loop reference of the published formulas."""

import math

import numpy as np
import pytest
import torch

from omama_core.modeling.encoder import MaskContextEncoder
from omama_core.preprocess import ModelInput, mask_regions, pooling_grid_size


def mask_context_descriptors(features, masks, image_hw, boxes=None, context_px=100, scale=1.0, stride=14):
    """The encoder on masks at image size, as the "scaled" sizing prepares them: (N, 2C)."""
    plan = ModelInput("scaled", tuple(image_hw), tuple(image_hw), tuple(image_hw), scale)
    regions = mask_regions(masks, plan, pooling_grid_size(features.shape[1:], stride), boxes)
    return MaskContextEncoder(context_px, stride)(features, regions)


def reference_bilinear(features: np.ndarray, out_h: int, out_w: int) -> np.ndarray:
    """Bilinear resize with align_corners=False, written from its definition."""
    c, h, w = features.shape
    out = np.zeros((c, out_h, out_w))
    for i in range(out_h):
        sy = max((i + 0.5) * h / out_h - 0.5, 0.0)
        y0 = min(int(math.floor(sy)), h - 1)
        y1 = min(y0 + 1, h - 1)
        fy = sy - y0
        for j in range(out_w):
            sx = max((j + 0.5) * w / out_w - 0.5, 0.0)
            x0 = min(int(math.floor(sx)), w - 1)
            x1 = min(x0 + 1, w - 1)
            fx = sx - x0
            out[:, i, j] = ((1 - fy) * ((1 - fx) * features[:, y0, x0] + fx * features[:, y0, x1])
                            + fy * ((1 - fx) * features[:, y1, x0] + fx * features[:, y1, x1]))
    return out


def reference_descriptors(features: np.ndarray, masks: np.ndarray, context_px: int, stride: int = 14) -> np.ndarray:
    c, h, w = features.shape
    height, width = masks.shape[1:]
    gh, gw = h * stride // 4, w * stride // 4
    grid = reference_bilinear(features, gh, gw) if stride != 4 else features
    out = []
    for mask in masks:
        # nearest resize: source index floor(dst * in / out)
        small = np.zeros((gh, gw), bool)
        for i in range(gh):
            for j in range(gw):
                small[i, j] = mask[min(int(math.floor(i * height / gh)), height - 1),
                                   min(int(math.floor(j * width / gw)), width - 1)]
        obj = grid[:, small].mean(axis=1) if small.any() else np.zeros(c)
        ys, xs = np.nonzero(mask)
        x, y, bw, bh = xs.min(), ys.min(), xs.max() - xs.min(), ys.max() - ys.min()
        x1, x2 = min(max(x - context_px, 0), width), min(max(x + bw + context_px, 0), width)
        y1, y2 = min(max(y - context_px, 0), height), min(max(y + bh + context_px, 0), height)
        r0, c0 = y1 // 4, x1 // 4
        r1, c1 = max(r0 + 1, y2 // 4), max(c0 + 1, x2 // 4)
        r0, c0 = min(r0, gh - 1), min(c0, gw - 1)
        r1, c1 = min(max(r1, r0 + 1), gh), min(max(c1, c0 + 1), gw)
        ctx = grid[:, r0:r1, c0:c1].reshape(c, -1).mean(axis=1)
        out.append(np.concatenate([obj, ctx]))
    return np.stack(out)


def _masks(height, width, rng):
    masks = np.zeros((4, height, width), bool)
    masks[0, 10:40, 20:70] = True  # a box
    yy, xx = np.mgrid[:height, :width]
    masks[1] = (yy - height * 0.6) ** 2 + (xx - width * 0.3) ** 2 < 15 ** 2  # a disc
    masks[2, height - 6:, width - 9:] = True  # in the corner: the context box hits the border
    masks[3] = rng.random((height, width)) > 0.97  # scattered pixels
    return masks


def test_descriptors_equal_reference_square_grid():
    rng = np.random.default_rng(0)
    features = rng.normal(size=(8, 5, 5)).astype(np.float32)  # a 70x70 image's tokens
    masks = _masks(72, 72, rng)  # image not a multiple of 14, as the published 704
    ours = mask_context_descriptors(torch.from_numpy(features), masks, (72, 72), context_px=10).numpy()
    np.testing.assert_allclose(ours, reference_descriptors(features, masks, 10), atol=1e-4)


def test_descriptors_equal_reference_wide_grid_default_context():
    rng = np.random.default_rng(1)
    features = rng.normal(size=(6, 4, 7)).astype(np.float32)
    masks = _masks(60, 100, rng)
    ours = mask_context_descriptors(torch.from_numpy(features), masks, (60, 100)).numpy()
    np.testing.assert_allclose(ours, reference_descriptors(features, masks, 100), atol=1e-4)


def test_features_already_on_the_pooling_grid_are_pooled_as_they_are():
    """stride=4 (the handcrafted backbone's pooling features): no resampling, same formulas."""
    rng = np.random.default_rng(2)
    features = rng.normal(size=(5, 17, 25)).astype(np.float32)  # the 4-px grid of a 70x100 input
    masks = _masks(72, 104, rng)
    ours = mask_context_descriptors(torch.from_numpy(features), masks, (72, 104), context_px=12, stride=4).numpy()
    np.testing.assert_allclose(ours, reference_descriptors(features, masks, 12, stride=4), atol=1e-4)


def test_empty_mask_gives_zero_object_descriptor_and_explicit_boxes_are_used():
    features = torch.ones(3, 4, 4)
    masks = np.zeros((2, 56, 56), bool)
    masks[1, 5:9, 5:9] = True
    boxes = np.array([[0, 0, 0, 0], [40, 40, 10, 10]], np.float32)
    out = mask_context_descriptors(features, masks, (56, 56), boxes=boxes, context_px=0).numpy()
    np.testing.assert_allclose(out[0, :3], 0.0)
    np.testing.assert_allclose(out[1], 1.0, atol=1e-6)  # constant features: every mean is 1


def test_mask_size_must_match_image():
    import pytest

    with pytest.raises(ValueError, match="masks must be"):
        mask_context_descriptors(torch.zeros(3, 4, 4), np.zeros((1, 50, 56), bool), (56, 56))


def test_balanced_descriptors_score_the_weighted_sum_of_cosines():
    """After balance_groups the cosine of two fused descriptors is the weighted sum of each
    backbone's own cosine (over its object and context channels together)."""
    import torch.nn.functional as F

    from omama_core.modeling.encoder import balance_groups

    torch.manual_seed(0)
    groups = [(5, 0.7), (3, 0.3)]
    a, b = torch.randn(4, 16), torch.randn(4, 16)  # (N, 2C) with C = 8: [object 8; context 8]

    def part(x, first, last):
        return torch.cat([x[:, first:last], x[:, 8 + first:8 + last]], dim=1)

    expected = 0.7 * F.cosine_similarity(part(a, 0, 5), part(b, 0, 5)) \
        + 0.3 * F.cosine_similarity(part(a, 5, 8), part(b, 5, 8))
    balanced_a, balanced_b = balance_groups(a, groups), balance_groups(b, groups)
    assert torch.allclose((balanced_a * balanced_b).sum(1), expected, atol=1e-6)
    assert torch.allclose(balanced_a.norm(dim=1), torch.ones(4), atol=1e-6)
    assert torch.equal(balance_groups(torch.zeros(2, 16), groups), torch.zeros(2, 16))


def dense_pooled_descriptors(features, grid_masks, cells):
    """The straightforward formulation: upsample to the 4-px grid, one dense (gh, gw) weight
    map per mask and per context box, weighted means. (N, 2C)."""
    import torch.nn.functional as F

    grid = F.interpolate(features[None], size=grid_masks.shape[1:], mode="bilinear", align_corners=False)[0]
    out = []
    for mask, (r0, r1, c0, c1) in zip(grid_masks, cells):
        box = np.zeros_like(mask)
        box[r0:r1, c0:c1] = True
        means = [torch.einsum("ij,cij->c", torch.from_numpy(m).float(), grid) / max(m.sum(), 1) for m in (mask, box)]
        out.append(torch.cat(means))
    return torch.stack(out)


@pytest.mark.parametrize("feature_hw, stride", [((5, 9), 14), ((7, 4), 14), ((17, 26), 4)])
def test_pooled_descriptors_equal_the_dense_formulation(feature_hw, stride):
    """Random masks, an empty one, and boxes at every edge of the grid, in float32."""
    from omama_core.modeling.encoder import pooled_descriptors

    rng = np.random.default_rng(3)
    features = torch.from_numpy(rng.normal(size=(6, *feature_hw)).astype(np.float32))
    gh, gw = pooling_grid_size(feature_hw, stride)
    masks = rng.random((7, gh, gw)) > rng.uniform(0.3, 0.99, size=(7, 1, 1))
    masks[0] = False  # empty
    masks[1] = True  # the whole grid
    rows, cols = np.sort(rng.integers(0, gh + 1, (7, 2)), 1), np.sort(rng.integers(0, gw + 1, (7, 2)), 1)
    cells = np.concatenate([rows, cols], 1)
    cells[:, 1] = np.maximum(cells[:, 1], cells[:, 0] + 1).clip(max=gh)
    cells[:, 0] = np.minimum(cells[:, 0], cells[:, 1] - 1)
    cells[:, 3] = np.maximum(cells[:, 3], cells[:, 2] + 1).clip(max=gw)
    cells[:, 2] = np.minimum(cells[:, 2], cells[:, 3] - 1)
    cells[1] = [0, gh, 0, gw]  # the whole grid
    cells[2] = [0, 1, 0, 1]  # the top-left cell
    cells[3] = [gh - 1, gh, gw - 1, gw]  # the bottom-right cell
    cells[4] = [0, gh, gw - 3, gw]  # the right edge
    ours = pooled_descriptors(features, masks, cells)
    assert ours.dtype == torch.float32
    torch.testing.assert_close(ours, dense_pooled_descriptors(features, masks, cells), atol=1e-5, rtol=0)
    assert torch.equal(ours[0, :6], torch.zeros(6))
