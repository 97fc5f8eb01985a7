"""Training and validation pairs built from cached per-view records (data/cache.py)."""

from __future__ import annotations

from collections import Counter

import numpy as np
import torch
from tqdm import tqdm

from ..data.cache import FeatureCache
from ..data.egoexo import CorrespondenceDataset, SampleRef
from .config import LossConfig
from .mining import adjacent_negatives, delaunay_adjacency, random_negatives


class CachedPairs(torch.utils.data.Dataset):
    """Pairs of one split and direction, every view record held in memory.

    Items are dicts of tensors (C: feature channels, K: candidates per training sample,
    P: proposals padded to the most any view has):
        source_desc (2C)           the query mask's descriptor
        source_tokens (C, hs, ws)  target_tokens (C, ht, wt)
        proposals (P, 2C)          every proposal of the target view, zero-padded
        valid (P,) bool            which rows of proposals are real
        proposal_iou (P,)          pixel IoU of each proposal with the ground truth (0 if none)
        areas (P,), contains (P, P)    validation only (no loss config): proposal areas and
                                       containment, for selection.choose_candidates
        visible ()                 whether the object has a mask in the target view
        candidates (K, 2C), label ()   training only: positive (the ground-truth mask's
                                       descriptor) at position `label` among K - 1 negatives
    """

    def __init__(self, dataset: CorrespondenceDataset, cache: FeatureCache, fraction: float, seed: int,
                 loss: LossConfig | None = None, progress: bool = True):
        refs = dataset.samples
        if fraction < 1.0:
            keep = np.random.default_rng(seed).permutation(len(refs))[: max(1, round(len(refs) * fraction))]
            refs = [refs[i] for i in sorted(keep)]
        self.loss, self.seed, self.epoch = loss, seed, 0
        self.skipped: Counter = Counter()
        self.records: dict[tuple[str, str, int], dict[str, np.ndarray]] = {}
        self.refs: list[SampleRef] = []
        for ref in tqdm(refs, desc=f"loading {dataset.split or 'pairs'} records", unit="pair", disable=not progress):
            source = self._record(cache, ref.take, ref.source_camera, ref.frame)
            target = self._record(cache, ref.take, ref.target_camera, ref.frame)
            if source is None or target is None:
                self.skipped["missing_cache_record"] += 1
            elif ref.object_name not in source["objects"]:
                self.skipped["source_mask_not_cached"] += 1
            else:
                self.refs.append(ref)
        self.max_proposals = max((len(r["cand_desc"]) for r in self.records.values() if r is not None), default=1)

    def _record(self, cache: FeatureCache, take: str, camera: str, frame: int):
        key = (take, camera, frame)
        if key not in self.records:
            self.records[key] = cache.load(take, camera, frame) if cache.path(take, camera, frame).is_file() else None
        return self.records[key]

    def set_epoch(self, epoch: int) -> None:
        """Negatives are drawn from (seed, epoch, index): a resumed run draws the same ones."""
        self.epoch = epoch

    @property
    def feature_shapes(self) -> tuple[int, tuple[int, int], tuple[int, int]]:
        """(C, source grid, target grid) of the pairs."""
        ref = self.refs[0]
        source = self.records[(ref.take, ref.source_camera, ref.frame)]["tokens"]
        target = self.records[(ref.take, ref.target_camera, ref.frame)]["tokens"]
        return source.shape[0], tuple(source.shape[1:]), tuple(target.shape[1:])

    def __len__(self) -> int:
        return len(self.refs)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        ref = self.refs[index]
        source = self.records[(ref.take, ref.source_camera, ref.frame)]
        target = self.records[(ref.take, ref.target_camera, ref.frame)]
        source_desc = source["gt_desc"][list(source["objects"]).index(ref.object_name)].astype(np.float32)
        proposals = target["cand_desc"].astype(np.float32)
        n = len(proposals)
        padded = np.zeros((self.max_proposals, proposals.shape[1]), np.float32)
        padded[:n] = proposals
        valid = np.zeros(self.max_proposals, bool)
        valid[:n] = True
        proposal_iou = np.zeros(self.max_proposals, np.float32)
        target_objects = list(target["objects"])
        visible = ref.gt_exists and ref.object_name in target_objects
        if visible:
            row = target_objects.index(ref.object_name)
            proposal_iou[:n] = target["gt_iou"][row]
        item = {
            "source_desc": torch.from_numpy(source_desc),
            "source_tokens": torch.from_numpy(source["tokens"].astype(np.float32)),
            "target_tokens": torch.from_numpy(target["tokens"].astype(np.float32)),
            "proposals": torch.from_numpy(padded),
            "valid": torch.from_numpy(valid),
            "proposal_iou": torch.from_numpy(proposal_iou),
            "visible": torch.tensor(visible),
        }
        if self.loss is not None:
            item.update(self._candidates(index, target, visible, target_objects, proposals))
        else:
            areas = np.zeros(self.max_proposals, np.float32)
            areas[:n] = target["cand_areas"]
            contains = np.zeros((self.max_proposals, self.max_proposals), bool)
            contains[:n, :n] = target["cand_contains"]
            item.update(areas=torch.from_numpy(areas), contains=torch.from_numpy(contains))
        return item

    def _candidates(self, index, target, visible, target_objects, proposals):
        """The K training candidates: the ground-truth positive at a random position among
        K - 1 mined negatives (all negatives when the object is not visible: zero loss)."""
        rng = np.random.default_rng([self.seed, self.epoch, index])
        k = self.loss.num_candidates
        count = k - 1 if visible else k
        if visible and self.loss.negatives == "adjacent":
            gt_box = target["gt_boxes"][target_objects.index(self.refs[index].object_name)]
            if "adjacency" not in target:  # computed once per view, kept with its record
                target["adjacency"] = delaunay_adjacency(target["cand_centres"])
            negatives = adjacent_negatives(target["adjacency"], target["cand_boxes"], gt_box, count, rng,
                                           self.loss.adjacency_order)
        else:
            negatives = random_negatives(len(proposals), count, rng)
        candidates = proposals[negatives]
        label = 0
        if visible:
            label = int(rng.integers(k))
            positive = target["gt_desc"][target_objects.index(self.refs[index].object_name)].astype(np.float32)
            candidates = np.insert(candidates, label, positive, axis=0)
        return {"candidates": torch.from_numpy(np.ascontiguousarray(candidates)), "label": torch.tensor(label)}
