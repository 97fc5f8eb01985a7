"""The official pipeline (sizing.mode official, the authors' released-head layout) against a
reference forward written here from the publication's formulas, in model-input pixels:
nearest-neighbour resize to the 14-multiple size (only when the height is not a multiple of
14), masks resized to that size, the source box from the resized mask, candidate boxes
scaled per axis and truncated, context clamped to the model input, sigmoid confidence.

Seeded random weights of the real architectures: a DINOv2 ViT-B/14-reg4 (two blocks, so that
it runs on a CPU; the token path is the real one) and the head at the published sizes (768
channels, 4 heads, the grids of the images).
"""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from omama_core.config import load_config
from omama_core.matcher import Candidates, Matcher
from omama_core.modeling import load_official_head
from omama_core.proposals import Proposals
from tests.test_head import reference_forward

DIM, HEADS = 768, 4
MEAN, STD = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])


@pytest.fixture(scope="module")
def vit():
    """A DINOv2 ViT-B/14 with 4 registers, random weights, two blocks."""
    import timm

    torch.manual_seed(0)
    return timm.create_model("vit_base_patch14_reg4_dinov2", pretrained=False, num_classes=0,
                             dynamic_img_size=True, depth=2).eval()


def random_official_state(source_grid, target_grid, seed=0) -> dict[str, torch.Tensor]:
    """A state dict in the released checkpoint's layout, weights at their default scales."""
    g = torch.Generator().manual_seed(seed)

    def linear(out, inp):
        return torch.randn(out, inp, generator=g) / math.sqrt(inp), torch.randn(out, generator=g) * 0.02

    state = {"pos_embed_Q": torch.randn(1, source_grid[0] * source_grid[1], DIM, generator=g) * 0.02,
             "pos_embed_T": torch.randn(1, target_grid[0] * target_grid[1], DIM, generator=g) * 0.02}
    p = "CROSS_context_attn."
    for name in ("norm_input", "norm_output"):
        state[p + name + ".weight"] = 1 + 0.1 * torch.randn(DIM, generator=g)
        state[p + name + ".bias"] = 0.1 * torch.randn(DIM, generator=g)
    for name in ("query", "key", "value", "project.0", "mlp.0", "mlp.2"):
        state[p + name + ".weight"], state[p + name + ".bias"] = linear(DIM, DIM)
    for name, (out, inp) in (("mlp.mlp.0", (DIM, 3 * DIM)), ("mlp.mlp.2", (DIM, DIM)), ("mlp.mlp.4", (DIM, DIM))):
        state[name + ".weight"], state[name + ".bias"] = linear(out, inp)
    return state


# ---- the reference, from the formulas --------------------------------------------------------

def reference_input(image: np.ndarray) -> np.ndarray:
    """The authors' resize: nearest to (14 floor(h/14), 14 floor(w/14)) when h % 14 != 0."""
    h, w = image.shape[:2]
    if h % 14:
        image = cv2.resize(image, (w // 14 * 14, h // 14 * 14), interpolation=cv2.INTER_NEAREST)
    return image


def reference_tokens(vit, image: np.ndarray) -> torch.Tensor:
    """(1, C, h/14, w/14) patch tokens after the final norm."""
    x = torch.from_numpy(((image / 255.0 - MEAN) / STD).astype(np.float32)).permute(2, 0, 1)[None]
    with torch.no_grad():
        tokens = vit.forward_features(x)[:, vit.num_prefix_tokens:]
    h, w = image.shape[0] // 14, image.shape[1] // 14
    return tokens.transpose(1, 2).reshape(1, DIM, h, w)


def nearest(masks: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """torch interpolate(mode="nearest") of (N, H, W) bool masks."""
    return F.interpolate(torch.from_numpy(masks).float()[:, None], size=size, mode="nearest")[:, 0].numpy() > 0.5


def reference_descriptors(tokens: torch.Tensor, masks: np.ndarray, boxes: np.ndarray, input_hw) -> torch.Tensor:
    """masks (N, h_in, w_in) at model-input size, integer boxes (x, y, w, h) in model-input
    pixels -> (N, 2C): o = mean of the 4-px-grid features in the mask, c = mean in the box
    grown by 100 px, clamped to the model input."""
    h, w = tokens.shape[2:]
    gh, gw = h * 14 // 4, w * 14 // 4
    grid = F.interpolate(tokens, size=(gh, gw), mode="bilinear", align_corners=False)[0]  # (C, gh, gw)
    small = nearest(masks, (gh, gw))
    out = []
    for mask, (x, y, bw, bh) in zip(small, boxes):
        o = grid[:, torch.from_numpy(mask)].mean(dim=1) if mask.any() else torch.zeros(DIM)
        x1, x2 = min(max(x - 100, 0), input_hw[1]), min(max(x + bw + 100, 0), input_hw[1])
        y1, y2 = min(max(y - 100, 0), input_hw[0]), min(max(y + bh + 100, 0), input_hw[0])
        r0, c0 = y1 // 4, x1 // 4
        r1, c1 = max(r0 + 1, y2 // 4), max(c0 + 1, x2 // 4)
        r0, c0 = min(r0, gh - 1), min(c0, gw - 1)
        r1, c1 = min(max(r1, r0 + 1), gh), min(max(c1, c0 + 1), gw)
        c = grid[:, r0:r1, c0:c1].reshape(DIM, -1).mean(dim=1)
        out.append(torch.cat([o, c]))
    return torch.stack(out)


def reference_scores(vit, state, source, queries, target, cand_masks, cand_boxes):
    """(K, N) cosine scores of K queries against N candidates, all in model-input pixels."""
    source_in, target_in = reference_input(source), reference_input(target)
    source_tokens, target_tokens = reference_tokens(vit, source_in), reference_tokens(vit, target_in)
    source_hw, target_hw = source_in.shape[:2], target_in.shape[:2]
    query_masks = nearest(queries, source_hw)
    query_boxes = []
    for mask in query_masks:  # from the resized mask: (xmin, ymin, xmax - xmin, ymax - ymin)
        ys, xs = np.nonzero(mask)
        query_boxes.append((xs.min(), ys.min(), xs.max() - xs.min(), ys.max() - ys.min()))
    sx, sy = target_hw[1] / target.shape[1], target_hw[0] / target.shape[0]
    boxes = [(int(x * sx), int(y * sy), int(w * sx), int(h * sy)) for x, y, w, h in cand_boxes]
    query_desc = reference_descriptors(source_tokens, query_masks, query_boxes, source_hw)
    cand_desc = reference_descriptors(target_tokens, nearest(cand_masks, target_hw), boxes, target_hw)
    with torch.no_grad():
        return torch.stack([reference_forward(state, q[None, None], cand_desc[None], source_tokens, target_tokens,
                                              HEADS)[0] for q in query_desc])


# ---- the scene --------------------------------------------------------------------------------

def scene(source_hw, target_hw, seed):
    """Random images, 3 query masks, 12 candidate masks with FastSAM-like float boxes."""
    rng = np.random.default_rng(seed)
    source = rng.integers(0, 256, (*source_hw, 3), dtype=np.uint8)
    target = rng.integers(0, 256, (*target_hw, 3), dtype=np.uint8)
    source = cv2.GaussianBlur(source, (0, 0), 1.0)  # neighbouring pixels alike, as in photos
    target = cv2.GaussianBlur(target, (0, 0), 1.0)

    def blobs(hw, count):
        masks = np.zeros((count, *hw), np.uint8)
        for mask in masks:
            centre = (int(rng.integers(0, hw[1])), int(rng.integers(0, hw[0])))
            axes = (int(rng.integers(8, hw[1] // 5)), int(rng.integers(8, hw[0] // 5)))
            cv2.ellipse(mask, centre, axes, float(rng.uniform(0, 180)), 0, 360, 1, -1)
        return masks.astype(bool)

    cand_masks = blobs(target_hw, 12)
    cand_boxes = []
    for mask in cand_masks:
        ys, xs = np.nonzero(mask)
        x0, y0 = xs.min() + rng.uniform(-0.9, 0.9), ys.min() + rng.uniform(-0.9, 0.9)
        cand_boxes.append((x0, y0, xs.max() + 1 - x0, ys.max() + 1 - y0))  # xyxy -> xywh floats, as FastSAM's
    return source, blobs(source_hw, 3), target, cand_masks, np.array(cand_boxes, np.float32)


@pytest.mark.parametrize("source_hw, target_hw", [
    ((540, 960), (704, 704)),  # published: exo -> ego
    pytest.param((720, 1280), (1408, 1408), marks=pytest.mark.slow),  # odd: both resized, sx != sy; 10k tokens
])
def test_official_pipeline_equals_the_reference(vit, tmp_path, source_hw, target_hw):
    source, queries, target, cand_masks, cand_boxes = scene(source_hw, target_hw, seed=sum(source_hw))
    source_grid = (source_hw[0] // 14, source_hw[1] // 14)
    target_grid = (target_hw[0] // 14, target_hw[1] // 14)
    state = random_official_state(source_grid, target_grid)
    torch.save(state, tmp_path / "omama_exo2ego.pt")
    config = load_config("official_exo2ego", {"head.checkpoint": str(tmp_path / "omama_exo2ego.pt"),
                                              "sizing.exo_max_side": max(source_hw),
                                              "sizing.ego_max_side": max(target_hw)})
    head = load_official_head(config.head_checkpoint(), source_grid, target_grid)
    from omama_core.backbone import DinoV2Backbone

    matcher = Matcher(config, DinoV2Backbone(model=vit), lambda image: Proposals.empty(*image.shape[:2]), head,
                      torch.device("cpu"))
    results = matcher.match(source, queries, target, candidates=Candidates(cand_masks, cand_boxes),
                            protocol="independent")
    expected = reference_scores(vit, state, source, queries, target, cand_masks, cand_boxes)
    assert expected.std() > 1e-3  # ten times the tolerance: the candidates are told apart
    for k, result in enumerate(results):
        np.testing.assert_allclose(result.scores, expected[k].numpy(), atol=1e-4, rtol=0)
        best = int(expected[k].argmax())
        confidence = 1.0 / (1.0 + math.exp(-float(expected[k, best])))  # the published confidence
        assert result.visibility == pytest.approx(confidence, abs=1e-4)
        assert result.visible == (confidence > 0.5)
        chosen = result.candidate if result.visible else int(np.flatnonzero(
            [np.array_equal(result.candidate_mask, m) for m in cand_masks])[0])
        assert chosen == best


def test_no_candidates_scores_one_all_zero_candidate_in_the_official_mode(vit, tmp_path):
    """The authors' code substitutes one all-zero candidate (empty mask, box 0): its score is
    a real cosine, `visible` follows its sigmoid, the mask is empty. The scaled mode answers
    "not visible" with score -1."""
    source, queries, target, _, _ = scene((540, 960), (704, 704), seed=7)
    state = random_official_state((38, 68), (50, 50))
    torch.save(state, tmp_path / "omama_exo2ego.pt")
    from omama_core.backbone import DinoV2Backbone

    none = np.zeros((0, *target.shape[:2]), bool)
    zero = np.zeros((1, *target.shape[:2]), bool)
    for mode in ("official", "scaled"):
        config = load_config("official_exo2ego", {"head.checkpoint": str(tmp_path / "omama_exo2ego.pt"),
                                                  "sizing.mode": mode})
        matcher = Matcher(config, DinoV2Backbone(model=vit), None, load_official_head(config.head_checkpoint()),
                          torch.device("cpu"))
        results = matcher.match(source, queries, target, candidates=none)
        if mode == "scaled":
            assert all(r.score == -1.0 and not r.visible and r.num_candidates == 0 for r in results)
            continue
        expected = reference_scores(vit, state, source, queries, target, zero, np.zeros((1, 4)))
        for k, result in enumerate(results):
            assert result.num_candidates == 1 and not result.mask.any() and "all-zero" in result.reason
            assert result.score == pytest.approx(float(expected[k, 0]), abs=1e-4)
            assert result.visible == (result.visibility >= 0.5)
