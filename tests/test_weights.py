"""Real architectures from local weight files (random weights the tests make themselves),
and clear, fast errors when weights are missing or corrupt. The suite runs in a private
network namespace, so any attempt to reach a hub would fail or hang here."""

import time

import numpy as np
import pytest
import torch

from omama_core import Matcher
from omama_core.backbone import DinoV2Backbone
from omama_core.errors import WeightsNotFoundError
from omama_core.proposals import FastSAMProposals


@pytest.fixture(scope="module")
def dinov2_file(tmp_path_factory):
    import timm

    model = timm.create_model("vit_small_patch14_reg4_dinov2", pretrained=False, num_classes=0,
                              dynamic_img_size=True)
    path = tmp_path_factory.mktemp("weights") / "dinov2_vits14_reg4.pth"
    torch.save(model.state_dict(), path)
    return path, model.eval()


def test_dinov2_loads_local_file_and_returns_patch_tokens(dinov2_file):
    path, reference = dinov2_file
    backbone = DinoV2Backbone("vit_small_patch14_reg4_dinov2", str(path))
    images = torch.randn(1, 3, 56, 84)
    tokens = backbone(images)
    assert tokens.shape == (1, 384, 4, 6)
    with torch.no_grad():
        expected = reference.forward_features(images)[:, 5:]  # 1 class + 4 register tokens dropped
    torch.testing.assert_close(tokens.flatten(2).transpose(1, 2), expected)


def test_dinov2_safetensors_file(dinov2_file, tmp_path):
    from safetensors.torch import save_file

    path, reference = dinov2_file
    save_file(reference.state_dict(), tmp_path / "w.safetensors")
    tokens = DinoV2Backbone("vit_small_patch14_reg4_dinov2", str(tmp_path / "w.safetensors"))(torch.randn(1, 3, 28, 28))
    assert tokens.shape == (1, 384, 2, 2)


@pytest.mark.parametrize("weights", [None, "/nonexistent/dinov2_vitb14_reg4_pretrain.pth"])
def test_dinov2_missing_weights_fail_fast_with_instructions(weights):
    import timm  # noqa: F401  the one-time import is not part of what must be fast

    start = time.monotonic()
    with pytest.raises(WeightsNotFoundError) as error:
        DinoV2Backbone("vit_base_patch14_reg4_dinov2", weights)
    assert time.monotonic() - start < 2.0
    message = str(error.value)
    assert "vit_base_patch14_reg4_dinov2" in message and "Download" in message
    if weights:
        assert weights in message


def test_dinov2_corrupt_weights(tmp_path):
    (tmp_path / "bad.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(WeightsNotFoundError, match="could not load"):
        DinoV2Backbone("vit_small_patch14_dinov2", str(tmp_path / "bad.pth"))


@pytest.fixture(scope="module")
def fastsam_file(tmp_path_factory):
    """A FastSAM-s-shaped checkpoint (YOLOv8s-seg, one class) with random weights."""
    from omama_core.benchmark import random_fastsam

    torch.manual_seed(0)
    return random_fastsam("s", tmp_path_factory.mktemp("fastsam"))


def test_fastsam_loads_local_file_and_returns_masks_at_image_size(fastsam_file):
    proposals = FastSAMProposals(str(fastsam_file), imgsz=320, conf=0.0001, iou=0.9, max_masks=20)
    image = np.random.default_rng(0).integers(0, 255, (200, 300, 3), dtype=np.uint8)
    result = proposals(image)
    assert result.masks.dtype == bool and result.masks.shape[1:] == (200, 300)
    assert result.boxes.shape == (len(result), 4) and len(result) <= 20
    assert len(result) > 0, "random weights at conf 1e-4 should still give some boxes"


def test_fastsam_missing_weights_error_names_file():
    start = time.monotonic()
    with pytest.raises(WeightsNotFoundError, match="FastSAM-x.pt"):
        FastSAMProposals("/nowhere/FastSAM-x.pt")
    assert time.monotonic() - start < 2.0


def test_published_pipeline_config_runs_on_local_files(dinov2_file, fastsam_file, two_views):
    """The same code a researcher runs with real weights: DINOv2 + FastSAM from files."""
    ego, ego_masks, exo, _ = two_views
    matcher = Matcher.from_config("dinov2_fastsam_knn", device="cpu", overrides={
        "backbone.model": "vit_small_patch14_reg4_dinov2", "backbone.weights": str(dinov2_file[0]),
        "proposals.weights": str(fastsam_file), "proposals.conf": 0.0001, "proposals.imgsz": 320})
    results = matcher.match(ego, np.stack(list(ego_masks.values())), exo)
    assert len(results) == len(ego_masks)
    assert all(r.mask.shape == exo.shape[:2] for r in results)
    assert all(r.num_candidates > 0 for r in results)
