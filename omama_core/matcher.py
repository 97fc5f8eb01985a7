"""Matcher: source image + query masks + target image -> the matching mask in the target.

    matcher = Matcher.from_config("default")
    results = matcher.match(source_image, source_masks, target_image)

All queries of one call share one backbone pass per image and one proposal pass (compute
once, query many); with `reverse_check` the source image gets a proposal pass too. With
`layout_weight` and three or more queries, the queries' layout lowers the scores of candidates
far from where it puts each object (layout.py). The stages are timed per call.
"""

from __future__ import annotations

import time
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .backbone import build_backbone, input_scale, model_input_size, preprocess
from .config import HeadConfig, MatcherConfig, config_from_dict, load_config, set_dotted
from .encoder import balance_groups, mask_context_descriptors, proposal_descriptors
from .errors import ConfigError, DeviceError, InputError
from .head import MatchingHead, _load
from .image_io import as_mask_stack, to_rgb_uint8
from .layout import fit_layout, layout_penalty
from .masks import mask_box, mask_centroids, resize_nearest
from .proposals import Proposals, build_proposals
from .selection import choose_candidates, exclusive_choices, ranked_choices, reverse_checked_scores

LAYOUT_OPTIONS = 4  # each query's best objects that the layout fit weighs (layout.py)


@dataclass
class MatchResult:
    """The answer for one query. mask: (Ht, Wt) bool, all False when not visible."""

    mask: np.ndarray
    score: float
    visible: bool
    visibility: float
    box: tuple[int, int, int, int] | None
    candidate: int
    num_candidates: int
    timings: dict[str, float] = field(default_factory=dict)
    reason: str | None = None
    candidate_mask: np.ndarray | None = None  # the chosen candidate's mask, visible or not (see docs/api.md)

    def to_json(self) -> dict:
        """The result without the mask, for printing and logs."""
        return {"visible": self.visible, "score": round(self.score, 4), "visibility": round(self.visibility, 4),
                "box": list(self.box) if self.box else None, "candidate": self.candidate,
                "num_candidates": self.num_candidates, "reason": self.reason,
                "timings_ms": {k: round(v, 1) for k, v in self.timings.items()}}


def resolve_device(device: str) -> torch.device:
    """"auto" -> cuda when available, else cpu; an explicit cuda without CUDA is an error."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except RuntimeError:
        raise DeviceError(f"unknown device {device!r}; use auto, cpu, cuda or cuda:N") from None
    if resolved.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceError(f"device {device!r} was asked for but CUDA is not available on this machine "
                              "(no GPU or no driver); use --device cpu or --device auto")
        if resolved.index is not None and resolved.index >= torch.cuda.device_count():
            raise DeviceError(f"device {device!r} does not exist: {torch.cuda.device_count()} CUDA device(s)")
    return resolved


class Matcher:
    """Object mask matching between an ego and an exo view (O-MaMa)."""

    def __init__(self, config: MatcherConfig, backbone: torch.nn.Module, proposals, head: MatchingHead | None,
                 device: torch.device, half: bool = False):
        self.config = config
        self.device = device
        self.backbone = backbone.to(device).eval()
        self.proposals = proposals
        self.head = head.to(device).eval() if head is not None else None
        self.visibility_threshold = float(config.visibility_threshold)
        self.half = half and device.type == "cuda"
        if half and not self.half:
            warnings.warn("half precision is only used on CUDA; running in float32 on the CPU", stacklevel=2)

    @classmethod
    def from_config(cls, name_or_path: str = "default", device: str = "auto", direction: str | None = None,
                    overrides: dict | None = None, half: bool = False) -> "Matcher":
        """Build a matcher from a shipped config name, a YAML file or an `omama train`
        checkpoint (.pt, which embeds its config). See docs/api.md."""
        config, head = _config_and_head(str(name_or_path), direction, overrides)
        torch_device = resolve_device(device)
        backbone = build_backbone(config.backbone)
        proposals = build_proposals(config.proposals, device=str(torch_device))
        if head is None and config.head.kind == "official":
            head = MatchingHead.from_official(config.head_checkpoint())
        elif head is None and config.head.kind == "trained":
            head = MatchingHead.from_checkpoint(config.head_checkpoint())
        if head is not None and head.dim != backbone.embed_dim:
            raise ConfigError(f"the head expects {head.dim}-channel features but backbone "
                              f"{config.backbone.kind}/{config.backbone.model} gives {backbone.embed_dim}")
        return cls(config, backbone, proposals, head, torch_device, half=half)

    # ---- stages ------------------------------------------------------------------------
    def _view_max_side(self, view: str) -> int:
        return self.config.sizing.ego_max_side if view == "ego" else self.config.sizing.exo_max_side

    def input_scale(self, image: np.ndarray, view: str) -> float:
        """Image pixels -> backbone-input pixels for an image of the given view."""
        return input_scale(image.shape[0], image.shape[1], self._view_max_side(view))

    @torch.no_grad()
    def dense_features(self, image: np.ndarray, view: str) -> tuple[torch.Tensor, torch.Tensor]:
        """HxWx3 uint8 RGB -> tokens (1, C, h, w) and pooling features (1, C, h', w') on the
        backbone's pooling grid (backbone.pooling_stride px) for the given view ("ego" or "exo")."""
        size = model_input_size(image.shape[0], image.shape[1], self._view_max_side(view))
        with self._autocast():
            tokens, pooling = self.backbone.encode(preprocess(image, size).to(self.device))
        return tokens.float(), pooling.float()

    def descriptors(self, image: np.ndarray, view: str, pooling: torch.Tensor, masks: np.ndarray | Proposals
                    ) -> torch.Tensor:
        """Mask-context descriptors (N, 2C) of query masks (N, H, W) or of Proposals of an image,
        from that image's pooling features (1, C, h', w')."""
        kwargs = dict(context_px=self.config.context_px, scale=self.input_scale(image, view),
                      stride=self.backbone.pooling_stride)
        if isinstance(masks, Proposals):
            descriptors = proposal_descriptors(pooling[0], masks, **kwargs)
        else:
            descriptors = mask_context_descriptors(pooling[0], masks, image.shape[:2], **kwargs)
        groups = getattr(self.backbone, "groups", None)  # a FusedBackbone: weigh each backbone's part
        return balance_groups(descriptors, groups) if groups else descriptors

    def candidates(self, image: np.ndarray) -> Proposals:
        """Mask candidates of the target image."""
        return self.proposals(image)

    @contextmanager
    def _autocast(self):
        if self.half:
            with torch.autocast("cuda", dtype=torch.float16):
                yield
        else:
            yield

    # ---- the public call ---------------------------------------------------------------
    @torch.no_grad()
    def match(self, source_image: np.ndarray, source_masks: np.ndarray, target_image: np.ndarray) -> list[MatchResult]:
        """Find each source mask's object in the target image.

        Args:
            source_image: (Hs, Ws, 3) uint8 RGB (gray, RGBA and 16-bit are converted).
            source_masks: (K, Hs, Ws) or (Hs, Ws) bool query masks.
            target_image: (Ht, Wt, 3) uint8 RGB.
        Returns:
            K MatchResults in query order.
        """
        clock = _Clock()
        source_image = to_rgb_uint8(source_image, "source image")
        target_image = to_rgb_uint8(target_image, "target image")
        masks = as_mask_stack(source_masks)
        if masks.shape[1:] != source_image.shape[:2]:
            raise InputError(f"source mask size {masks.shape[2]}x{masks.shape[1]} (WxH) differs from the source "
                             f"image size {source_image.shape[1]}x{source_image.shape[0]} (WxH)")
        source_view, target_view = self.config.direction[:3], self.config.direction[-3:]
        height, width = target_image.shape[:2]
        empty = ~masks.any(axis=(1, 2))

        source_tokens, source_pooling = self.dense_features(source_image, source_view)
        clock.lap("backbone_source")
        target_tokens, target_pooling = self.dense_features(target_image, target_view)
        clock.lap("backbone_target")
        proposals = self.candidates(target_image)
        clock.lap("proposals")
        if len(proposals) == 0 or empty.all():
            reason = "no mask candidates in the target image" if len(proposals) == 0 else None
            return [self._not_visible(height, width, len(proposals), clock.timings(), reason or "empty query mask")
                    for _ in masks]

        source_desc = self.descriptors(source_image, source_view, source_pooling, masks)
        candidate_desc = self.descriptors(target_image, target_view, target_pooling, proposals)
        clock.lap("encoder")
        regions = region_desc = None
        if self.config.reverse_check > 0:
            regions = self.candidates(source_image)
            if len(regions):  # a featureless source image has no regions to check against
                region_desc = self.descriptors(source_image, source_view, source_pooling, regions)
            clock.lap("source_regions")
        scores, visibility, reverse = self._score(source_desc, candidate_desc, source_tokens, target_tokens,
                                                  region_desc)
        if reverse is not None:
            outside = torch.from_numpy(outside_regions(masks, regions)).to(reverse.device)
            scores = reverse_checked_scores(scores, reverse, outside, self.config.reverse_check)
        scores = scores.cpu().numpy()
        exclusive = self.config.exclusive_matches and (~empty).sum() > 1
        use_layout = self.config.layout_weight > 0 and (~empty).sum() >= 3
        # the candidates' nesting, computed once for all rules (an N x N pixel product for dense masks)
        nesting = ((torch.from_numpy(proposals.containment()), torch.from_numpy(proposals.areas()))
                   if exclusive or use_layout or self.config.whole_object_margin > 0 else None)
        if use_layout:
            scores = scores - self._layout_penalty(scores, masks, ~empty, proposals, nesting, (height, width))
            clock.lap("layout")
        if visibility is None:  # score-based visibility: the best score, after the reverse check and the layout
            visibility = scores.max(axis=1)
        else:
            visibility = visibility.cpu().numpy()
        chosen = self._choose(scores, nesting)
        answers = chosen
        if exclusive:
            score_visibility = self.head is None or self.head.visibility is None
            # with a score-based visibility, a query that will be called not visible takes nothing
            answers, best_left = self._exclusive(scores, chosen, nesting, ~empty,
                                                 self.visibility_threshold if score_visibility else -1.0)
            if score_visibility:
                visibility = best_left  # the best score left after the better queries took theirs
        clock.lap("head")

        timings = clock.timings()
        results = []
        for k in range(len(masks)):
            if empty[k]:
                results.append(self._not_visible(height, width, len(proposals), timings, "empty query mask"))
                continue
            visible = bool(visibility[k] >= self.visibility_threshold)
            # not visible: the candidate it chose first, which the official protocol still scores
            best = int(answers[k] if visible else chosen[k])
            best_mask = proposals.mask(best)
            mask = best_mask if visible else np.zeros((height, width), bool)
            results.append(MatchResult(
                mask=mask, score=float(scores[k, best]), visible=visible,
                visibility=float(visibility[k]), box=mask_box(mask) if visible else None,
                candidate=best if visible else -1, num_candidates=len(proposals), timings=dict(timings),
                candidate_mask=best_mask,
                reason=None if visible else f"visibility {float(visibility[k]):.3f} below threshold "
                                            f"{self.visibility_threshold:.3f}"))
        return results

    def _exclusive(self, scores: np.ndarray, chosen: np.ndarray, nesting: tuple[torch.Tensor, torch.Tensor],
                   active: np.ndarray, keep_above: float) -> tuple[np.ndarray, np.ndarray]:
        """selection.exclusive_choices on numpy, with nesting = (contains (N, N), areas (N,)):
        answers (K,) and the best score left to each (K,)."""
        contains, areas = nesting
        answers, best_left = exclusive_choices(
            torch.from_numpy(scores), torch.from_numpy(np.asarray(chosen, np.int64)), contains, areas,
            self.config.whole_object_margin, torch.from_numpy(active), keep_above,
            self.config.whole_object_part_margin)
        return answers.numpy(), best_left.numpy()

    def _layout_penalty(self, scores: np.ndarray, masks: np.ndarray, active: np.ndarray, proposals: Proposals,
                        nesting: tuple[torch.Tensor, torch.Tensor], target_hw: tuple[int, int]) -> np.ndarray:
        """(K, N) penalty from the layout of the active queries' best objects (layout.py);
        zeros when no map fits."""
        config, (contains, areas) = self.config, nesting
        options, option_scores = ranked_choices(torch.from_numpy(scores[active]), contains, areas, LAYOUT_OPTIONS,
                                                config.whole_object_margin, config.whole_object_part_margin)
        query_centres, candidate_centres = mask_centroids(masks[active]), proposals.centroids()
        diagonal = float(np.hypot(*target_hw))
        affine = fit_layout(query_centres, options.numpy(), option_scores.numpy(), candidate_centres, diagonal,
                            config.layout_weight, config.layout_tolerance, config.layout_cap)
        penalty = np.zeros_like(scores)
        if affine is not None:
            penalty[active] = layout_penalty(query_centres, candidate_centres, affine, diagonal,
                                             config.layout_weight, config.layout_tolerance, config.layout_cap)
        return penalty

    def _choose(self, scores: np.ndarray, nesting: tuple[torch.Tensor, torch.Tensor] | None) -> np.ndarray:
        """(K, N) scores -> (K,) chosen candidates (selection.py; the best score at margin 0)."""
        margin = self.config.whole_object_margin
        if margin <= 0:
            return scores.argmax(1)
        k = len(scores)
        contains, areas = nesting
        return choose_candidates(torch.from_numpy(scores), contains[None].expand(k, -1, -1),
                                 areas[None].expand(k, -1), margin, self.config.whole_object_part_margin).numpy()

    def _score(self, source_desc: torch.Tensor, candidate_desc: torch.Tensor, source_tokens: torch.Tensor,
               target_tokens: torch.Tensor, region_desc: torch.Tensor | None = None
               ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """(K, 2C) query, (N, 2C) candidate and optional (M, 2C) source-region descriptors ->
        scores (K, N), learned visibility (K,) or None, and reverse scores (N, M) of the
        candidates against the source regions (None without regions).

        The k-NN variant compares normalised descriptors; a head embeds queries (and source
        regions, which are sources too) and candidates first. Visibility is None unless the
        head has that output: the caller then takes the best score."""
        with self._autocast():
            sources = self._embed_sources(source_desc, target_tokens)  # (K, D)
            candidates = self._embed_candidates(candidate_desc, source_tokens)  # (N, D)
            scores = (sources @ candidates.T).float()
            reverse = (None if region_desc is None
                       else (candidates @ self._embed_sources(region_desc, target_tokens).T).float())
            visibility = None
            if self.head is not None and self.head.visibility is not None:
                visibility = torch.sigmoid(self.head.visibility_logit(sources.float(), scores).float())
        return scores, visibility, reverse

    def _embed_sources(self, desc: torch.Tensor, target_tokens: torch.Tensor) -> torch.Tensor:
        """(K, 2C) source-image descriptors -> (K, D), comparable with _embed_candidates."""
        if self.head is None:
            return torch.nn.functional.normalize(desc, dim=-1)
        return self.head.embed_sources(desc[None], target_tokens)[0]

    def _embed_candidates(self, desc: torch.Tensor, source_tokens: torch.Tensor) -> torch.Tensor:
        """(N, 2C) target-image descriptors -> (N, D)."""
        if self.head is None:
            return torch.nn.functional.normalize(desc, dim=-1)
        return self.head.embed_candidates(desc[None], source_tokens)[0]

    @staticmethod
    def _not_visible(height: int, width: int, num_candidates: int, timings: dict, reason: str) -> MatchResult:
        return MatchResult(mask=np.zeros((height, width), bool), score=-1.0, visible=False, visibility=0.0,
                           box=None, candidate=-1, num_candidates=num_candidates, timings=dict(timings), reason=reason)


REGION_INSIDE = 0.5  # a source region with at least this share of its area inside a query is part of it


def outside_regions(masks: np.ndarray, regions: Proposals) -> np.ndarray:
    """Query masks (K, H, W) bool and the source image's regions -> (K, M) bool: region m is
    not part of query k (less than REGION_INSIDE of it lies inside). On a 4-px grid: exact
    enough for a half-inside test, and cheap for hundreds of regions."""
    grid_hw = (max(1, masks.shape[1] // 4), max(1, masks.shape[2] // 4))
    region_grid = regions.resized_masks(grid_hw).reshape(len(regions), -1).astype(np.float32)  # (M, h*w)
    query_grid = resize_nearest(masks, grid_hw).reshape(len(masks), -1).astype(np.float32)  # (K, h*w)
    inside = query_grid @ region_grid.T / np.maximum(region_grid.sum(axis=1), 1.0)
    return inside < REGION_INSIDE


class _Clock:
    """Milliseconds per stage, plus the total."""

    def __init__(self):
        self.start = self.last = time.perf_counter()
        self.laps: dict[str, float] = {}

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.laps[name] = (now - self.last) * 1000.0
        self.last = now

    def timings(self) -> dict[str, float]:
        return {**self.laps, "total": (time.perf_counter() - self.start) * 1000.0}


def _config_and_head(name_or_path: str, direction: str | None, overrides: dict | None):
    """Resolve a config name/YAML, or a training checkpoint that embeds its config and head."""
    overrides = dict(overrides or {})
    if direction is not None:
        overrides["direction"] = direction
    if Path(name_or_path).suffix in (".pt", ".pth"):
        payload = _load(name_or_path, "cpu")
        if not isinstance(payload, dict) or "config" not in payload:
            raise ConfigError(f"{name_or_path} is not an `omama train` checkpoint (it has no embedded config); "
                              "for the authors' released weights use a YAML config with head.kind: official")
        data = payload["config"]
        for key, value in overrides.items():
            set_dotted(data, key, value)
        config = config_from_dict(data)
        config.head = HeadConfig(kind="trained", checkpoint=name_or_path)  # the head is this file itself
        config.validate()
        if payload.get("direction") and config.direction != payload["direction"]:
            warnings.warn(f"{name_or_path} was trained for {payload['direction']} but is used for {config.direction}",
                          stacklevel=3)
        return config, MatchingHead.from_checkpoint(name_or_path)
    return load_config(name_or_path, overrides), None
