"""The learned convnet backbone and its training on synthetic takes rendered on the fly."""

from __future__ import annotations

import csv
import time

import numpy as np
import pytest
import torch

from omama_core.backbone import build_backbone
from omama_core.offline import ConvNetBackbone
from omama_core.config import BackboneConfig
from omama_core.preprocess import pooling_grid_size
from omama_core.errors import WeightsNotFoundError
from omama_core.training.features import (BackboneTrainConfig, PairSampler, View, grid_iou, pair_loss,
                                          random_regions, render_take, retrieval_logits, save_weights,
                                          train_backbone, with_random_regions)


def small_net() -> ConvNetBackbone:
    torch.manual_seed(0)
    return ConvNetBackbone(channels=16, width=16, dilations=(1, 2))


@pytest.mark.parametrize("hw", [(70, 70), (518, 252), (532, 952)])
def test_grids_match_the_encoder(hw):
    """Tokens on the 14-px grid, pooling features exactly on the encoder's 4-px grid, for
    sides that are odd multiples of 14 too (518 = 37 x 14: stride-2 convolutions round up)."""
    tokens, cells = small_net().encode(torch.randn(1, 3, *hw))
    assert tokens.shape[2:] == (hw[0] // 14, hw[1] // 14)
    assert cells.shape[2:] == pooling_grid_size(tokens.shape[2:])
    assert cells.shape[1] == 16
    assert torch.allclose(cells.mean(dim=(2, 3)), torch.zeros(1, 16), atol=1e-4)  # standardised per image


def test_white_balance_is_cancelled():
    """Gray world: the same scene under other per-channel gains gives nearly the same features."""
    from omama_core.preprocess import normalise
    from tests.conftest import draw_scene

    net = small_net().eval()
    image, _ = draw_scene(140, 140, 0.15, seed=3)
    tinted = np.clip(image * np.array([1.2, 1.0, 0.8]), 0, 255).astype(np.uint8)
    with torch.no_grad():
        a = net.encode(normalise(torch.from_numpy(image)[None]))[1]
        b = net.encode(normalise(torch.from_numpy(tinted)[None]))[1]
    assert torch.nn.functional.cosine_similarity(a.flatten(), b.flatten(), dim=0) > 0.97


def test_weights_round_trip_and_errors(tmp_path):
    net = small_net()
    path = tmp_path / "convnet.pt"
    save_weights(net, path, {"epoch": 1})
    loaded = build_backbone(BackboneConfig(kind="convnet", weights=str(path)))
    x = torch.randn(1, 3, 56, 84)
    assert torch.allclose(loaded.encode(x)[1], net.eval().encode(x)[1], atol=1e-5)
    assert not any(p.requires_grad for p in loaded.parameters())

    started = time.monotonic()
    with pytest.raises(WeightsNotFoundError, match="missing.pt"):
        build_backbone(BackboneConfig(kind="convnet", weights=str(tmp_path / "missing.pt")))
    (tmp_path / "corrupt.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(WeightsNotFoundError, match="could not load"):
        build_backbone(BackboneConfig(kind="convnet", weights=str(tmp_path / "corrupt.pt")))
    assert time.monotonic() - started < 2.0


def test_shipped_weights_load():
    from omama_core.offline import FusedBackbone
    from omama_core.config import load_config

    backbone = build_backbone(load_config("convnet_knn").backbone)
    assert isinstance(backbone, ConvNetBackbone) and backbone.embed_dim == 64
    fused = build_backbone(load_config("default").backbone)
    assert isinstance(fused, FusedBackbone) and [w for _, w in fused.groups] == [0.7, 0.3]


def test_random_regions_and_overlap():
    rng = np.random.default_rng(0)
    regions = random_regions(rng, (40, 60), 20)
    assert regions.dtype == bool and regions.shape[1:] == (40, 60) and len(regions) <= 20
    assert regions.reshape(len(regions), -1).any(1).all()
    iou = grid_iou(regions[:3], regions)
    assert np.allclose(np.diag(iou[:, :3]), 1.0)
    assert grid_iou(np.zeros((0, 40, 60), bool), regions).shape == (0, len(regions))


def _view(names, masks):
    from omama_core.masks import boxes_from_masks

    masks = np.asarray(masks, bool)
    return View(np.zeros((8, 8, 3), np.uint8), list(names), masks, boxes_from_masks(masks) * 4, (8, 8), 1.0)


def test_retrieval_logits_labels_and_exclusions():
    """Each object shared by both views is labelled with its own index in the target view;
    objects seen in one view only are negatives; a random region covering the positive is masked."""
    grid = np.zeros((3, 2, 2), bool)
    grid[0, 0, 0] = grid[1, 1, 1] = grid[2, 0, 1] = True
    source = _view(["cup", "mug"], grid[:2])
    target_view = _view(["bowl", "cup"], grid[[2, 0]])
    regions = np.stack([grid[0], grid[1]])  # the first covers "cup" in the target exactly
    from omama_core.training.features import Regions

    target = Regions(target_view, np.concatenate([target_view.grid_masks, regions]), np.zeros((4, 4)),
                     grid_iou(target_view.grid_masks, regions))
    logits, labels = retrieval_logits(torch.eye(4)[:2], source, torch.eye(4), target, 0.1)
    assert labels.tolist() == [1]  # only "cup" is in both views; it is target object 1
    assert logits.shape == (1, 4)
    assert torch.isinf(logits[0, 2]) and torch.isfinite(logits[0, [0, 1, 3]]).all()
    assert retrieval_logits(torch.eye(4)[:2], _view(["x", "y"], grid[:2]), torch.eye(4), target, 0.1) is None


@pytest.fixture(scope="module")
def tiny_take():
    return render_take((123, "synth-test", 2, 168, 224))


def test_rendered_views_are_ready(tiny_take):
    ego, exo = tiny_take[0]
    assert ego.image.shape[:2] == (168, 168) and exo.image.shape[:2] == (126, 224)
    for view in (ego, exo):
        assert view.grid_masks.shape[1:] == (view.image.shape[0] // 4, view.image.shape[1] // 4)
        assert len(view.names) == len(view.grid_masks) == len(view.boxes)
    sampler = PairSampler(tiny_take, seed=5, count=8)
    first, again = sampler[0], sampler[0]
    assert np.array_equal(first[0].masks, again[0].masks)  # same (seed, epoch, index), same regions
    sampler.epoch = 1
    assert not np.array_equal(first[0].masks, sampler[0][0].masks)


def test_pair_loss_learns(tiny_take):
    """A few steps on one batch lower the contrastive loss: gradients reach the network
    through the descriptors."""
    net = small_net()
    config = BackboneTrainConfig(random_regions=8, context_px=20)
    rng = np.random.default_rng(0)
    batch = [tuple(with_random_regions(v, rng, 8) for v in pair) for pair in tiny_take]
    optimizer = torch.optim.Adam(net.parameters(), lr=3e-3)
    losses = []
    for _ in range(8):
        loss, _, queries = pair_loss(net, batch, config, torch.device("cpu"))
        assert queries > 0
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.7 * losses[0]


def test_train_backbone_writes_weights_and_log(tmp_path):
    config = BackboneTrainConfig(takes=3, val_takes=1, frames=2, epochs=2, batch_pairs=2, random_regions=8,
                                 ego_max_side=168, exo_max_side=224, channels=16, width=16)
    out = tmp_path / "convnet.pt"
    record = train_backbone(config, out, device="cpu", workers=1, progress=False)
    assert record["epoch"] == 2 and 0.0 <= record["val_top1"] <= 1.0
    with open(f"{out}.csv") as log:
        rows = list(csv.DictReader(log))
    assert [int(r["epoch"]) for r in rows] == [1, 2]
    stored = torch.load(out, weights_only=True)
    assert stored["train_config"]["takes"] == 3 and stored["epoch"] == 2
    ConvNetBackbone.from_file(out)


def test_train_config_errors():
    from omama_core.errors import ConfigError

    with pytest.raises(ConfigError, match="val_takes"):
        BackboneTrainConfig(takes=4, val_takes=4).validate()
    with pytest.raises(ConfigError, match="multiples of 8"):
        BackboneTrainConfig(channels=30).validate()


def test_train_backbone_continues_from_init(tmp_path):
    """--init starts from given weights: their architecture is kept, whatever the config's."""
    small = tmp_path / "small.pt"
    save_weights(small_net(), small, {})
    config = BackboneTrainConfig(takes=2, val_takes=1, frames=1, epochs=1, batch_pairs=1, random_regions=4,
                                 ego_max_side=112, exo_max_side=168, lr=0.0, min_lr=0.0)
    out = tmp_path / "continued.pt"
    train_backbone(config, out, device="cpu", workers=1, init=small, progress=False)
    continued = torch.load(out, weights_only=True)
    assert continued["config"] == small_net().config
    initial = torch.load(small, weights_only=True)["state_dict"]
    assert all(torch.equal(initial[k], v) for k, v in continued["state_dict"].items())  # lr 0: unchanged


def test_segment_negatives(tiny_take):
    from omama_core.training.features import random_segments

    ego = tiny_take[0][0]
    assert ego.segments.shape == ego.grid_masks.shape[1:]
    masks = random_segments(np.random.default_rng(0), ego.segments, 6)
    assert 0 < len(masks) <= 6
    assert masks.sum(0).max() == 1  # distinct segments do not overlap
    regions = with_random_regions(ego, np.random.default_rng(0), 8, segment_fraction=0.5)
    negatives = regions.masks[len(ego.names):]
    assert regions.overlap.shape == (len(ego.names), len(negatives))
    whole_segments = [m for m in negatives if (ego.segments[m] == ego.segments[m][0]).all()
                      and m.sum() == (ego.segments == ego.segments[m][0]).sum()]
    assert 1 <= len(whole_segments) <= 4  # half of the 8 negatives are segments


def test_fused_backbone_concatenates_and_weighs(tmp_path):
    from omama_core.offline import FusedBackbone, HandcraftedBackbone
    from omama_core.config import load_config
    from omama_core.errors import ConfigError

    path = tmp_path / "convnet.pt"
    save_weights(small_net(), path, {})
    fused = build_backbone(BackboneConfig(kind="convnet", weights=str(path), handcrafted_weight=0.3))
    assert isinstance(fused, FusedBackbone)
    assert fused.groups == [(16, 0.7), (HandcraftedBackbone().embed_dim, 0.3)]
    tokens, cells = fused.encode(torch.randn(1, 3, 56, 84))
    assert tokens.shape[1] == cells.shape[1] == fused.embed_dim == 16 + 30
    assert cells.shape[2:] == pooling_grid_size(tokens.shape[2:])
    with pytest.raises(ConfigError, match="handcrafted_weight"):
        load_config("knn", {"backbone.handcrafted_weight": 0.3})
    with pytest.raises(ConfigError, match="handcrafted_weight"):
        load_config("convnet_knn", {"backbone.handcrafted_weight": 1.0})
