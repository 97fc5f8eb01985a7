"""Training: negative mining, the feature cache, the loop (checkpoints, resume after
SIGKILL, logs), and DDP under torchrun learning exactly like one process."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from omama_core import Matcher
from omama_core.config import load_config
from omama_core.data.cache import FeatureCache, cache_key, grid_centroids, load_proposals, save_proposals
from omama_core.data.egoexo import CorrespondenceDataset
from omama_core.data.synth import write_dataset
from omama_core.errors import ConfigError
from omama_core.training.config import load_train_config
from omama_core.training.loop import learning_rate, train
from omama_core.training.mining import adjacent_negatives, box_iou_xywh, delaunay_adjacency
from omama_core.proposals import ClassicalProposals, Proposals

VENV_BIN = Path(sys.executable).parent

# Small, fast frozen parts for the tests: the offline backbone, coarse classical proposals.
FAST_MATCHER = """
backbone: {kind: handcrafted}
proposals: {kind: classical, max_masks: 80, max_side: 320, segment_scale: 150}
head: {kind: knn}
visibility_threshold: 0.3
"""


def grid_points(n: int) -> np.ndarray:
    ys, xs = np.divmod(np.arange(n), 5)
    return np.stack([xs * 10.0, ys * 10.0], axis=1) + np.random.default_rng(0).normal(0, 0.5, (n, 2))


def test_adjacent_negatives_are_the_anchors_neighbourhood():
    centres = grid_points(25)  # a 5x5 grid of candidates, 10 px apart
    boxes = np.concatenate([centres - 2, np.full((25, 2), 4.0)], axis=1)
    gt_box = np.array([centres[12, 0] - 2, centres[12, 1] - 2, 4, 4])  # over the centre candidate
    adjacency = delaunay_adjacency(centres)
    rng = np.random.default_rng(0)
    order1 = adjacent_negatives(adjacency, boxes, gt_box, count=4, rng=rng, order=1)
    assert 12 not in order1  # the anchor itself is never a negative
    assert all(np.linalg.norm(centres[i] - centres[12]) < 15 for i in order1)  # direct neighbours only
    order2 = adjacent_negatives(adjacency, boxes, gt_box, count=31, rng=rng, order=2)
    assert len(order2) == 31 and 12 not in order2
    reach = set(np.flatnonzero(adjacency[12])) | set(np.flatnonzero(adjacency[adjacency[12]].any(0)))
    reach.discard(12)
    assert reach <= set(order2.tolist())  # fewer neighbours than 31: all of them, then topped up


def test_box_iou_and_degenerate_triangulation():
    boxes = np.array([[0, 0, 10, 10], [5, 5, 10, 10], [20, 20, 2, 2]], float)
    np.testing.assert_allclose(box_iou_xywh(boxes, np.array([0, 0, 10, 10.0])), [1.0, 25 / 175, 0.0])
    collinear = np.array([[0, 0], [1, 1], [2, 2]], float)
    assert delaunay_adjacency(collinear).sum() == 6  # cannot triangulate: everyone adjacent


def test_learning_rate_is_cosine():
    assert learning_rate(0, 100, 8e-5, 1e-6) == pytest.approx(8e-5)
    assert learning_rate(50, 100, 8e-5, 1e-6) == pytest.approx((8e-5 + 1e-6) / 2)
    assert learning_rate(100, 100, 8e-5, 1e-6) == pytest.approx(1e-6)


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth")
    write_dataset(root, 4, seed=11, num_frames=2, fractions=(0.5, 0.25, 0.25), workers=1)
    matcher_yaml = root / "fast_matcher.yaml"
    matcher_yaml.write_text(FAST_MATCHER)
    return root, matcher_yaml


def run_config(matcher_yaml: Path, **overrides):
    base = {"matcher": str(matcher_yaml), "direction": "ego2exo", "data.train_fraction": 1.0,
            "data.val_fraction": 1.0, "head.hidden_dim": 32, "head.num_heads": 3, "head.visibility": True, "optim.batch_size": 4,
            "optim.epochs": 2, "optim.lr": 1e-3, "checkpoint_every": 1, "log_every": 1, "num_workers": 1}
    base.update(overrides)
    return load_train_config(None, base)


def test_cache_key_changes_with_the_frozen_parts(tiny_data):
    _, matcher_yaml = tiny_data
    config = load_config(str(matcher_yaml))
    other = load_config(str(matcher_yaml), {"proposals.segment_scale": 99})
    assert cache_key(config) != cache_key(other)
    assert cache_key(config) == cache_key(load_config(str(matcher_yaml), {"visibility_threshold": 0.9}))


def test_cache_key_changes_with_the_weights_contents(tmp_path):
    """Retrained backbone weights written to the same path must not reuse the old records."""
    weights = tmp_path / "convnet.pt"
    config = load_config("default", {"backbone.weights": str(weights)})
    weights.write_bytes(b"first weights")
    first = cache_key(config)
    weights.write_bytes(b"other weights")
    assert cache_key(config) != first
    weights.write_bytes(b"first weights")
    assert cache_key(config) == first


def test_stored_proposals_round_trip_both_layouts(tmp_path):
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 6, (30, 40))
    members = rng.random((9, 6)) > 0.5
    hierarchy = Proposals(rng.random((9, 4)).astype(np.float32), np.ones(9, np.float32), labels=labels, members=members)
    dense = Proposals(rng.random((3, 4)).astype(np.float32), rng.random(3).astype(np.float32),
                      masks=rng.random((3, 30, 41)) > 0.5)  # 1230 pixels: not a multiple of 8
    for name, proposals in (("hierarchy", hierarchy), ("dense", dense)):
        save_proposals(tmp_path / f"{name}.npz", proposals)
        loaded = load_proposals(tmp_path / f"{name}.npz")
        np.testing.assert_array_equal(loaded.masks, proposals.masks)
        np.testing.assert_array_equal(loaded.boxes, proposals.boxes)
        np.testing.assert_array_equal(loaded.scores, proposals.scores)
        assert loaded.image_hw == proposals.image_hw


def test_grid_centroids_equal_the_values_cache_version_3_stores():
    """cand_centres now come from masks.mask_centroids: the records already on disk (same
    cache key) must hold exactly what the new code computes. The formula the records were
    built with is kept here verbatim as the reference."""
    rng = np.random.default_rng(0)
    grid = rng.random((6, 27, 48)) < rng.random((6, 1, 1)) * 0.3
    grid[2] = False  # a candidate the coarse grid loses
    grid[4] = False
    grid[4, 26, 47] = True  # a single cell in the corner
    height, width = 540, 960
    stored = grid.astype(np.float32)
    ys, xs = np.mgrid[: stored.shape[1], : stored.shape[2]]
    area = np.maximum(stored.sum(axis=(1, 2)), 1)
    cell = np.array([width / stored.shape[2], height / stored.shape[1]], np.float32)
    reference = (np.stack([(stored * xs).sum(axis=(1, 2)) / area, (stored * ys).sum(axis=(1, 2)) / area], 1)
                 * cell).astype(np.float32)
    centres = grid_centroids(grid, (height, width))
    assert centres.dtype == np.float32 and np.array_equal(centres, reference)
    assert centres[2].tolist() == [0.0, 0.0] and centres[4].tolist() == [47 * 20.0, 26 * 20.0]


def test_a_new_context_size_reuses_the_stored_proposals(tiny_data, tmp_path, monkeypatch):
    root, matcher_yaml = tiny_data
    datasets = [CorrespondenceDataset(root, "val", "ego2exo")]
    first = FeatureCache(root, load_config(str(matcher_yaml)), cache_dir=tmp_path)
    first.build(datasets)
    second = FeatureCache(root, load_config(str(matcher_yaml), {"context_px": 40}), cache_dir=tmp_path)
    assert second.key != first.key and second.proposals_dir == first.proposals_dir

    def fail(self, image):
        raise AssertionError("proposals recomputed although stored")

    monkeypatch.setattr(ClassicalProposals, "__call__", fail)
    counts = second.build(datasets)  # in this process (workers=1), so the patch applies
    assert counts["built"] == counts["views"] > 0 and counts["failed"] == 0
    ref = datasets[0].samples[0]
    old, new = first.load(ref.take, ref.source_camera, ref.frame), second.load(ref.take, ref.source_camera, ref.frame)
    np.testing.assert_array_equal(old["gt_iou"], new["gt_iou"])  # same proposals
    assert not np.allclose(old["cand_desc"], new["cand_desc"])  # other context: other descriptors


def test_train_writes_checkpoints_logs_and_a_usable_model(tiny_data, tmp_path):
    root, matcher_yaml = tiny_data
    result = train(run_config(matcher_yaml), str(root), str(tmp_path / "run"), device="cpu", progress=False)
    run = tmp_path / "run"
    for name in ("config.yaml", "log.csv", "last.pt", "best.pt", "metrics.json", "curves.png"):
        assert (run / name).is_file(), name
    assert result["iterations"] > 0 and len(result["history"]) == 2
    assert 0.0 <= result["best_val_iou"] <= 1.0
    rows = (run / "log.csv").read_text().splitlines()
    assert rows[0].startswith("step,") and len(rows) > result["iterations"]
    # the best checkpoint is a complete model: config embedded, the head strict-loaded
    dataset = CorrespondenceDataset(root, "val", "ego2exo")
    sample = dataset[0]
    matcher = Matcher.from_config(str(run / "best.pt"), device="cpu")
    assert matcher.model.head is not None and matcher.model.head.visibility is not None
    (out,) = matcher.match(sample.source_image, sample.source_mask, sample.target_image)
    assert out.mask.shape == sample.target_image.shape[:2] and 0.0 <= out.visibility <= 1.0


@pytest.mark.slow  # a training subprocess killed with SIGKILL, then resumed
def test_resume_after_sigkill_loses_at_most_one_interval(tiny_data, tmp_path):
    root, matcher_yaml = tiny_data
    run = tmp_path / "run"
    command = [str(VENV_BIN / "omama"), "train", "--data", str(root), "--out", str(run), "--device", "cpu"]
    for key, value in {"matcher": matcher_yaml, "data.train_fraction": 1.0, "data.val_fraction": 1.0,
                       "head.hidden_dim": 32, "head.num_heads": 3, "optim.batch_size": 2, "optim.epochs": 3, "checkpoint_every": 1,
                       "log_every": 1, "num_workers": 1}.items():
        command += ["--set", f"{key}={value}"]
    # the feature cache is built by the first test of this module; build it here if alone
    FeatureCache(root, load_config(str(matcher_yaml))).build(
        [CorrespondenceDataset(root, s, "ego2exo") for s in ("train", "val")])
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not (run / "last.pt").is_file() and time.time() < deadline and process.poll() is None:
        time.sleep(0.05)
    time.sleep(0.3)
    process.send_signal(signal.SIGKILL)
    process.wait()
    saved = torch.load(run / "last.pt", map_location="cpu", weights_only=False)
    logged = [int(line.split(",")[0]) for line in (run / "log.csv").read_text().splitlines()[1:]]
    assert saved["step"] >= max(logged) - 1  # checkpoint_every=1: at most one iteration lost
    finished = subprocess.run(command + ["--resume"], capture_output=True, text=True, timeout=300)
    assert finished.returncode == 0, finished.stderr[-2000:]
    summary = json.loads(finished.stdout.strip().splitlines()[-1])
    total = saved["step"]
    assert summary["iterations"] > total  # it went on from the checkpoint, not from zero
    assert "resuming" in finished.stdout + finished.stderr


def test_resume_with_another_head_is_refused(tiny_data, tmp_path):
    root, matcher_yaml = tiny_data
    train(run_config(matcher_yaml, **{"optim.epochs": 1}), str(root), str(tmp_path / "run"), device="cpu",
          progress=False)
    from omama_core.errors import CheckpointMismatchError

    with pytest.raises(CheckpointMismatchError, match="another head"):
        train(run_config(matcher_yaml, **{"head.hidden_dim": 16}), str(root), str(tmp_path / "run"),
              device="cpu", resume=True, progress=False)


def test_bad_training_config_values():
    with pytest.raises(ConfigError, match="negatives"):
        load_train_config(None, {"loss.negatives": "nearest"})
    with pytest.raises(ConfigError, match="unknown config keys"):
        load_train_config(None, {"optim.learning_rate": 1e-3})


@pytest.mark.slow  # torchrun: two DDP processes
def test_torchrun_two_processes_learn_like_one(tiny_data, tmp_path):
    """Same global batch, same data order: two gloo processes must end with the weights of one."""
    root, matcher_yaml = tiny_data
    single = tmp_path / "single"
    train(run_config(matcher_yaml, **{"head.visibility": False}), str(root), str(single), device="cpu",
          progress=False)
    double = tmp_path / "double"
    command = [str(VENV_BIN / "torchrun"), "--standalone", "--nproc_per_node=2", "-m", "omama_core.cli", "train",
               "--data", str(root), "--out", str(double), "--device", "cpu"]
    for key, value in {"matcher": matcher_yaml, "direction": "ego2exo", "data.train_fraction": 1.0,
                       "data.val_fraction": 1.0, "head.hidden_dim": 32, "head.num_heads": 3, "head.visibility": False,
                       "optim.batch_size": 4, "optim.epochs": 2, "optim.lr": 1e-3, "checkpoint_every": 1,
                       "log_every": 1, "num_workers": 1}.items():
        command += ["--set", f"{key}={value}"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    finished = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env)
    assert finished.returncode == 0, finished.stderr[-3000:]
    one = torch.load(single / "last.pt", map_location="cpu", weights_only=False)
    two = torch.load(double / "last.pt", map_location="cpu", weights_only=False)
    assert one["step"] == two["step"] > 0
    for name, tensor in one["state_dict"].items():
        if name.endswith("key.bias"):
            # softmax ignores a bias shared by all keys: its gradient is rounding noise, which
            # Adam normalises into full-size steps, different in every run
            continue
        torch.testing.assert_close(two["state_dict"][name], tensor, atol=2e-4, rtol=1e-3, msg=name)


def test_heads_that_do_not_divide_the_channels_are_a_config_error(tiny_data, tmp_path):
    root, matcher_yaml = tiny_data
    with pytest.raises(ConfigError, match="must divide the 30 feature channels"):
        train(run_config(matcher_yaml, **{"head.num_heads": 4}), str(root), str(tmp_path / "run"), device="cpu",
              progress=False)
