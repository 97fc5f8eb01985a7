"""Per-frame features stored on disk, so that training and validation never touch images.

For every (take, camera, frame) a record holds what the matching head needs, computed once
with a Matcher's frozen parts (backbone, proposals, encoder), as the publication precomputes
its FastSAM masks and DINOv2 features:

    tokens        (C, h, w) float16   dense features on the 14-px grid
    cand_desc     (N, 2C) float16     mask-context descriptors of the N proposals
    cand_boxes    (N, 4) float32      proposal boxes (x, y, w, h)
    cand_centres  (N, 2) float32      proposal mask centroids (x, y), for adjacency mining
    cand_areas    (N,) float32        proposal areas in pixels
    cand_contains (N, N) bool         [j, k]: proposal j contains proposal k (selection/rules.py)
    objects       (M,) str            annotated objects with a mask in this view
    gt_desc       (M, 2C) float16     descriptors of their ground-truth masks
    gt_boxes      (M, 4) float32      their boxes (x, y, w, h)
    gt_iou        (M, N) float16      pixel IoU of every proposal with every ground truth

Records live in CACHE/<key>/<take>/<camera>/<frame>.npz, where key hashes the settings that
produce them (backbone and its weights' contents, sizing, proposals, context): changing any
of them builds a new cache next to the old one instead of silently mixing the two. The
proposals themselves, the slow part on a CPU, are kept in CACHE/proposals-<key of the
proposal settings>/: a new backbone or context size reuses them.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from ..backbone import build_backbone
from ..config import MatcherConfig
from ..preprocess import pooling_grid_size
from ..errors import DatasetError, OmamaError
from ..files import atomic_write
from ..masks import boxes_from_masks, mask_centroids
from ..matcher import Matcher
from ..proposals import Proposals, build_proposals
from .annotations import is_ego_camera
from .egoexo import CorrespondenceDataset

CACHE_VERSION = 3  # 2: handcrafted descriptors on the 4-px grid; 3: areas and containment
PROPOSALS_VERSION = 1


def _hash(settings: dict) -> str:
    return hashlib.sha1(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:12]


def proposals_key(config: MatcherConfig) -> str:
    """Hash of the settings that determine the proposals of an image."""
    return _hash({"version": PROPOSALS_VERSION, "proposals": asdict(config.proposals)})


def save_proposals(path: Path, proposals: Proposals) -> None:
    """Write Proposals to an .npz atomically (label map + membership, or packed dense masks)."""
    arrays = {"boxes": proposals.boxes, "scores": proposals.scores, "image_hw": np.array(proposals.image_hw)}
    if proposals.labels is not None:
        arrays.update(labels=proposals.labels.astype(np.int32), members=proposals.members)
    else:
        arrays.update(packed_masks=np.packbits(proposals.masks.reshape(len(proposals), -1), axis=1))
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda temporary: np.savez_compressed(temporary, **arrays))


def load_proposals(path: Path) -> Proposals:
    """Proposals written by save_proposals."""
    with np.load(path, allow_pickle=False) as stored:
        height, width = (int(v) for v in stored["image_hw"])
        if "labels" in stored:
            return Proposals(stored["boxes"], stored["scores"], labels=stored["labels"], members=stored["members"])
        masks = np.unpackbits(stored["packed_masks"], axis=1, count=height * width).astype(bool)
        return Proposals(stored["boxes"], stored["scores"], masks=masks.reshape(-1, height, width))


def weights_digest(path: str | None) -> str | None:
    """Digest of a weights file's size and first 16 MiB: retrained weights under the same
    path give a new key, and a 1 GB DINOv2 file is not read whole on every run."""
    if not path or not os.path.isfile(path):
        return None
    digest = hashlib.sha1(str(os.path.getsize(path)).encode())
    with open(path, "rb") as handle:
        digest.update(handle.read(16 << 20))
    return digest.hexdigest()[:12]


def cache_key(config: MatcherConfig) -> str:
    """Hash of the settings that determine a cache record (and of the backbone's weights)."""
    backbone = {**asdict(config.backbone), "weights": weights_digest(config.backbone.weights)}
    return _hash({"version": CACHE_VERSION, "backbone": backbone, "sizing": asdict(config.sizing),
                  "proposals": asdict(config.proposals), "context_px": config.context_px})


class FeatureCache:
    """Reads and builds the records of one dataset root for one matcher configuration."""

    def __init__(self, root: str | os.PathLike, config: MatcherConfig, cache_dir: str | os.PathLike | None = None):
        self.config = config
        self.key = cache_key(config)
        self.dir = Path(cache_dir or Path(root) / ".omama_cache") / self.key
        self.proposals_dir = self.dir.parent / f"proposals-{proposals_key(config)}"

    def path(self, take: str, camera: str, frame: int) -> Path:
        return self.dir / take / camera / f"{frame:06d}.npz"

    def proposals_path(self, take: str, camera: str, frame: int) -> Path:
        return self.proposals_dir / take / camera / f"{frame:06d}.npz"

    def load(self, take: str, camera: str, frame: int) -> dict[str, np.ndarray]:
        with np.load(self.path(take, camera, frame), allow_pickle=False) as record:
            return dict(record)

    def build(self, datasets: list[CorrespondenceDataset], device: str = "cpu", workers: int = 1) -> dict[str, int]:
        """Compute the missing records of every view the datasets' samples use, in `workers`
        processes (CPU) or in this process (CUDA).

        Returns counts {"views", "built", "failed"}; unreadable frames are counted, not fatal.
        """
        views: dict[tuple[str, str, int], int] = {}
        for number, dataset in enumerate(datasets):
            for ref in dataset.samples:
                views.setdefault((ref.take, ref.source_camera, ref.frame), number)
                views.setdefault((ref.take, ref.target_camera, ref.frame), number)
        missing = [(view, number) for view, number in views.items() if not self.path(*view).is_file()]
        counts = {"views": len(views), "built": 0, "failed": 0}
        if not missing:
            return counts
        self.dir.mkdir(parents=True, exist_ok=True)
        (self.dir / "config.json").write_text(json.dumps(
            {"key": self.key, "matcher": self.config.to_dict(), "version": CACHE_VERSION}, indent=2))
        bar = tqdm(total=len(missing), desc=f"caching features ({self.key})", unit="view")
        if workers > 1 and device == "cpu":
            import multiprocessing

            # spawn, not fork: forking a process whose OpenMP pool is running can hang the child
            context = multiprocessing.get_context("spawn")
            with context.Pool(workers, initializer=_start_worker, initargs=(self, datasets, device)) as pool:
                for error in pool.imap_unordered(_build_one, missing, chunksize=4):
                    self._count(counts, error, bar)
        else:
            _start_worker(self, datasets, device)
            for task in missing:
                self._count(counts, _build_one(task), bar)
        bar.close()
        return counts

    @staticmethod
    def _count(counts: dict[str, int], error: str | None, bar) -> None:
        counts["failed" if error else "built"] += 1
        if error:
            bar.write(error)
        bar.update(1)


_worker: dict = {}


def _start_worker(cache: FeatureCache, datasets: list[CorrespondenceDataset], device: str) -> None:
    if device == "cpu":
        torch.set_num_threads(1)  # one process per core
    matcher = Matcher(cache.config, build_backbone(cache.config.backbone),
                      build_proposals(cache.config.proposals, device=device), None, torch.device(device))
    _worker.update(cache=cache, datasets=datasets, matcher=matcher)


def _build_one(task) -> str | None:
    """Compute and store one record; returns an error message instead of raising."""
    (take, camera, frame), number = task
    cache: FeatureCache = _worker["cache"]
    stored = cache.proposals_path(take, camera, frame)
    try:
        proposals = load_proposals(stored) if stored.is_file() else None
        record = compute_record(_worker["matcher"], _worker["datasets"][number], take, camera, frame, proposals)
        computed = record.pop("proposals")
        if proposals is None:
            save_proposals(stored, computed)
    except OmamaError as error:
        return f"skipped {take}/{camera}/{frame}: {error}"
    path = cache.path(take, camera, frame)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda temporary: np.savez(temporary, **record))  # a killed build never leaves half a record
    return None


def grid_centroids(grid_masks: np.ndarray, image_hw: tuple[int, int]) -> np.ndarray:
    """(N, h, w) bool masks on the pooling grid -> (N, 2) float32 centroids (x, y) in image
    pixels: the grid centroid (masks.mask_centroids) times the cell size, (0, 0) for a mask
    the grid loses. Coarse, but enough for adjacency mining; records of CACHE_VERSION 3 hold
    exactly these values, so a change here needs a new CACHE_VERSION."""
    cell = np.array([image_hw[1] / grid_masks.shape[2], image_hw[0] / grid_masks.shape[1]], np.float32)
    return np.nan_to_num(mask_centroids(grid_masks) * cell, nan=0.0).astype(np.float32)


def compute_record(matcher, dataset: CorrespondenceDataset, take: str, camera: str, frame: int,
                   proposals: Proposals | None = None) -> dict:
    """The cache record of one view (see the module docstring), plus the view's "proposals"
    (computed unless given)."""
    image = dataset.load_image(take, camera, frame)
    height, width = image.shape[:2]
    view = "ego" if is_ego_camera(camera) else "exo"
    with torch.no_grad():
        tokens, pooling = matcher.dense_features(image, view)
        if proposals is None:
            proposals = matcher.candidates(image)
        if len(proposals) == 0:
            raise DatasetError(f"{take}/{camera}/{frame}: no proposals")
        cand_desc = matcher.descriptors(image, view, pooling, proposals)
        centres = grid_centroids(proposals.resized_masks(pooling_grid_size(tokens.shape[2:])), (height, width))
        objects, masks = [], []
        for name, cams in dataset.takes[take].masks.items():
            if camera in cams and dataset.mask_rle(take, name, camera, frame) is not None:
                mask = dataset.load_mask(take, name, camera, frame, (height, width))
                if mask.any():
                    objects.append(name)
                    masks.append(mask)
        masks = np.stack(masks) if masks else np.zeros((0, height, width), bool)
        gt_desc = (matcher.descriptors(image, view, pooling, masks) if len(masks)
                   else torch.zeros(0, cand_desc.shape[1]))
    return {
        "tokens": tokens[0].numpy().astype(np.float16),
        "cand_desc": cand_desc.numpy().astype(np.float16),
        "cand_boxes": proposals.boxes.astype(np.float32),
        "cand_centres": centres,
        "cand_areas": proposals.areas().astype(np.float32),
        "cand_contains": proposals.containment(),
        "objects": np.array(objects, dtype=str),
        "gt_desc": gt_desc.numpy().astype(np.float16),
        "gt_boxes": boxes_from_masks(masks),
        "gt_iou": np.stack([proposals.iou_with(m) for m in masks]).astype(np.float16) if len(masks)
        else np.zeros((0, len(proposals)), np.float16),
        "proposals": proposals,
    }
