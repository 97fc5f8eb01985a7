"""Matcher: source image + query masks + target image -> the matching mask in the target.

    matcher = Matcher.from_config("default")
    results = matcher.match(source_image, source_masks, target_image)

One call reads top to bottom:

    preprocess   images -> model inputs; masks and boxes -> model-input geometry (preprocess.py)
    features     one backbone pass per image, one proposal pass (or the caller's candidates)
    model        OMaMa: descriptors, cross-attention, projection, cosine scores (modeling/)
    selection    scores -> answers: the published best score, plus the configured rules (selection/)
    results      one MatchResult per query

All queries of one call share the features, the candidates and the model's pass (compute
once, query many); with `selection.reverse_check` the source image gets a proposal pass too.
Under `protocol="independent"` every query is answered as if it were alone in its call.
The stages are timed per call (MatchResult.timings; the names in docs/api.md).
"""

from __future__ import annotations

import time
import warnings
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .backbone import build_backbone
from .config import HeadConfig, MatcherConfig, config_from_dict, load_config, set_dotted, stored_config
from .directions import views
from .errors import ConfigError, DeviceError, InputError
from .image_io import as_mask_stack, to_rgb_uint8
from .masks import boxes_from_masks, mask_box
from .modeling import MatchingHead, OMaMa, build_model, cosine_scores, load_configured_head, load_head
from .modeling.checkpoint import read_checkpoint
from .preprocess import ModelInput, mask_regions, plan_input, proposal_regions, to_model_input
from .proposals import ClassicalProposals, Proposals, build_proposals
from .protocols import PROTOCOLS
from .selection import Selection

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
    scores: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))  # (N,) every candidate's score

    def to_json(self) -> dict:
        """The result without the mask, for printing and logs."""
        return {"visible": self.visible, "score": round(self.score, 4), "visibility": round(self.visibility, 4),
                "box": list(self.box) if self.box else None, "candidate": self.candidate,
                "num_candidates": self.num_candidates, "reason": self.reason,
                "timings_ms": {k: round(v, 1) for k, v in self.timings.items()}}


@dataclass
class Candidates:
    """Mask candidates for the target image from your own segmenter (SAM 2, precomputed
    masks): masks (N, Ht, Wt) bool at the target image's size; boxes (N, 4) (x, y, w, h)
    in target-image pixels, or None to take them from the masks (xmin, ymin, xmax - xmin,
    ymax - ymin, as the publication computes boxes from masks)."""

    masks: np.ndarray
    boxes: np.ndarray | None = None


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
    """Object mask matching between an ego and an exo view (O-MaMa).

    Args:
        config: the resolved MatcherConfig.
        backbone: dense features (omama_core.backbone / omama_core.offline).
        proposals: the target image's mask candidates (omama_core.proposals), a callable.
        head: the model's trained part (modeling.MatchingHead); None: the k-NN variant.
        device: where the backbone and the model run.
        half: float16 autocast on CUDA.
    """

    def __init__(self, config: MatcherConfig, backbone: torch.nn.Module, proposals, head: MatchingHead | None,
                 device: torch.device, half: bool = False):
        self.config = config
        self.device = device
        self.backbone = backbone.to(device).eval()
        self.proposals = proposals
        self.model: OMaMa = build_model(config, backbone, head).to(device).eval()
        self.selection = Selection(config.selection, config.confidence)
        self.visibility_threshold = float(config.visibility_threshold)
        self.half = half and device.type == "cuda"
        if half and not self.half:
            warnings.warn("half precision is only used on CUDA; running in float32 on the CPU", stacklevel=2)
        self._worker: ThreadPoolExecutor | None = None  # made on first use (see match)

    @classmethod
    def from_config(cls, name_or_path: str = "default", device: str = "auto", direction: str | None = None,
                    overrides: dict | None = None, half: bool = False) -> "Matcher":
        """Build a matcher from a shipped config name, a YAML file or an `omama train`
        checkpoint (.pt, which embeds its config). See docs/api.md."""
        config, head = _config_and_head(str(name_or_path), direction, overrides)
        torch_device = resolve_device(device)
        backbone = build_backbone(config.backbone)
        proposals = build_proposals(config.proposals, device=str(torch_device))
        if head is None:
            head = load_configured_head(config)
        return cls(config, backbone, proposals, head, torch_device, half=half)

    # ---- stages ------------------------------------------------------------------------
    def plan(self, image: np.ndarray, view: str) -> ModelInput:
        """How an image of the given view ("ego" or "exo") maps to the model input."""
        return plan_input(image.shape[:2], self.config.sizing, view)

    def model_input(self, image: np.ndarray, view: str) -> torch.Tensor:
        """HxWx3 uint8 RGB -> the backbone's (1, 3, H', W') input on the matcher's device."""
        return to_model_input(image, self.plan(image, view)).to(self.device)

    @torch.no_grad()
    def encode(self, model_input: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """A model input (1, 3, H', W') -> tokens (1, C, h, w) and pooling features (1, C, h', w')
        on the backbone's pooling grid (backbone.pooling_stride px)."""
        with self._autocast():
            tokens, pooling = self.backbone.encode(model_input)
        return tokens.float(), pooling.float()

    def dense_features(self, image: np.ndarray, view: str) -> tuple[torch.Tensor, torch.Tensor]:
        """HxWx3 uint8 RGB of a view ("ego" or "exo") -> encode(model_input(image, view))."""
        return self.encode(self.model_input(image, view))

    def regions(self, image: np.ndarray, view: str, pooling: torch.Tensor, masks: np.ndarray | Proposals):
        """Query masks (N, H, W) bool or Proposals of an image -> preprocess.Regions on the
        encoder's grid of that image's pooling features (1, C, h', w')."""
        plan, grid_hw = self.plan(image, view), self.model.encoder.grid_size(pooling.shape[2:])
        if isinstance(masks, Proposals):
            return proposal_regions(masks, plan, grid_hw)
        return mask_regions(masks, plan, grid_hw)

    def descriptors(self, image: np.ndarray, view: str, pooling: torch.Tensor, masks: np.ndarray | Proposals
                    ) -> torch.Tensor:
        """Mask-context descriptors (N, 2C) of query masks (N, H, W) or of Proposals of an image,
        from that image's pooling features (1, C, h', w')."""
        return self.model.encoder(pooling[0], self.regions(image, view, pooling, masks))

    def candidates(self, image: np.ndarray) -> Proposals:
        """Mask candidates of the target image."""
        return self.proposals(image)

    @property
    def concurrent_proposals(self) -> bool:
        """Whether the proposal pass runs beside the backbone passes: only a generator that
        does no torch work (the classical one), so the two never compete for torch's threads."""
        return self.config.proposals.concurrent and isinstance(self.proposals, ClassicalProposals)

    def _start_candidates(self, image: np.ndarray):
        """Start the proposal pass of an image in the worker thread; returns its Future."""
        if self._worker is None:
            self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="omama-proposals")
        return self._worker.submit(self.candidates, image)

    @contextmanager
    def _autocast(self):
        if self.half:
            with torch.autocast("cuda", dtype=torch.float16):
                yield
        else:
            yield

    # ---- the public call ---------------------------------------------------------------
    @torch.no_grad()
    def match(self, source_image: np.ndarray, source_masks: np.ndarray, target_image: np.ndarray,
              candidates: np.ndarray | Candidates | None = None, *, protocol: str = "joint") -> list[MatchResult]:
        """Find each source mask's object in the target image.

        Args:
            source_image: (Hs, Ws, 3) uint8 RGB (gray, RGBA and 16-bit are converted).
            source_masks: (K, Hs, Ws) or (Hs, Ws) bool query masks.
            target_image: (Ht, Wt, 3) uint8 RGB.
            candidates: the target's mask candidates, (N, Ht, Wt) bool masks or Candidates
                (masks with boxes); None: the configured proposals (FastSAM, classical).
            protocol: "joint" (the selection rules may use the other queries of this call)
                or "independent" (each query answered as if alone, as the publication does).
        With no candidate at all a query is not visible (score -1); under sizing.mode
        "official" one all-zero candidate is scored instead, as the authors' code does: its
        mask is empty, and `visible` follows its confidence.
        Returns:
            K MatchResults in query order.
        """
        if protocol not in PROTOCOLS:
            raise InputError(f"protocol must be one of {sorted(PROTOCOLS)}, got {protocol!r}")
        clock = _Clock()
        source_image = to_rgb_uint8(source_image, "source image")
        target_image = to_rgb_uint8(target_image, "target image")
        masks = as_mask_stack(source_masks)
        if masks.shape[1:] != source_image.shape[:2]:
            raise InputError(f"source mask size {masks.shape[2]}x{masks.shape[1]} (WxH) differs from the source "
                             f"image size {source_image.shape[1]}x{source_image.shape[0]} (WxH)")
        given = None if candidates is None else _as_proposals(candidates, target_image.shape[:2])
        source_view, target_view = views(self.config.direction)
        height, width = target_image.shape[:2]
        empty = ~masks.any(axis=(1, 2))
        clock.lap("convert")

        # With concurrent proposals the preprocess and backbone laps include the proposals
        # running beside them, and "proposals" is only the wait for what they did not hide.
        pending = self._start_candidates(target_image) if given is None and self.concurrent_proposals else None
        with _one_core_spared(pending, self.device.type == "cpu") as give_back_when_done:
            source_input = self.model_input(source_image, source_view)
            target_input = self.model_input(target_image, target_view)
            clock.lap("preprocess")
            source_tokens, source_pooling = self.encode(source_input)
            clock.lap("backbone_source")
            give_back_when_done()
            target_tokens, target_pooling = self.encode(target_input)
            clock.lap("backbone_target")
        if given is not None:
            proposals = given
        else:
            proposals = pending.result() if pending is not None else self.candidates(target_image)
        network_ms = proposals.network_ms
        substituted = len(proposals) == 0 and self.config.sizing.mode == "official"
        if substituted:  # the authors' code scores one all-zero candidate (empty mask, box 0)
            proposals = Proposals(np.zeros((1, 4), np.float32), np.zeros(1, np.float32),
                                  masks=np.zeros((1, height, width), bool))
        clock.lap("proposals")
        if network_ms is not None:  # FastSAM: its network apart from its pre- and post-processing
            clock.split("proposals", "proposals_network", network_ms)
        if len(proposals) == 0 or empty.all():
            reason = "no mask candidates in the target image" if len(proposals) == 0 else None
            return [self._not_visible(height, width, len(proposals), clock.timings(), reason or "empty query mask")
                    for _ in masks]

        queries = self.regions(source_image, source_view, source_pooling, masks)
        targets = self.regions(target_image, target_view, target_pooling, proposals)
        clock.lap("regions")
        with self._autocast():
            query_desc, candidate_desc = self.model.describe(source_pooling, queries, target_pooling, targets)
            clock.lap("encoder")
            output = self.model.score(query_desc, source_tokens, candidate_desc, target_tokens)
        clock.lap("model")
        reverse = None
        if self.config.selection.reverse_check > 0:
            regions = self.candidates(source_image)
            if len(regions):  # a featureless source image has no regions to check against
                with self._autocast():
                    region_desc = self.descriptors(source_image, source_view, source_pooling, regions)
                    region_embeddings = self.model.embed_sources(region_desc, target_tokens)
                    reverse = (cosine_scores(output.candidates, region_embeddings).float(), regions)  # (N, M)
            clock.lap("source_regions")
        selected = self.selection(output.scores, output.visibility, masks, ~empty, proposals,
                                  self.visibility_threshold, joint=protocol == "joint", reverse=reverse)
        clock.lap("selection")

        results = []
        for k in range(len(masks)):
            if empty[k]:
                results.append(self._not_visible(height, width, len(proposals), {}, "empty query mask"))
                continue
            visibility = float(selected.visibility[k])
            visible = bool(visibility >= self.visibility_threshold)
            # not visible: the candidate it chose first, which the official protocol still scores
            best = int(selected.answers[k] if visible else selected.first_choices[k])
            best_mask = proposals.mask(best)
            mask = best_mask if visible else np.zeros((height, width), bool)
            reason = None if visible else f"visibility {visibility:.3f} below threshold {self.visibility_threshold:.3f}"
            if substituted:
                reason = "no mask candidates in the target image: scored one all-zero candidate, as the authors' code"
            results.append(MatchResult(
                mask=mask, score=float(selected.scores[k, best]), visible=visible,
                visibility=visibility, box=mask_box(mask) if visible else None,
                candidate=best if visible else -1, num_candidates=len(proposals),
                candidate_mask=best_mask, scores=selected.scores[k].astype(np.float32), reason=reason))
        clock.lap("results")
        timings = clock.timings()
        for result in results:
            result.timings = dict(timings)
        return results

    @staticmethod
    def _not_visible(height: int, width: int, num_candidates: int, timings: dict, reason: str) -> MatchResult:
        return MatchResult(mask=np.zeros((height, width), bool), score=-1.0, visible=False, visibility=0.0,
                           box=None, candidate=-1, num_candidates=num_candidates, timings=dict(timings), reason=reason,
                           scores=np.full(num_candidates, -1.0, np.float32))


def _as_proposals(candidates: np.ndarray | Candidates, target_hw: tuple[int, int]) -> Proposals:
    """The caller's candidates -> Proposals, checked against the target image's size."""
    if not isinstance(candidates, Candidates):
        candidates = Candidates(candidates)
    masks = np.asarray(candidates.masks)
    if masks.ndim != 3 or masks.shape[1:] != tuple(target_hw):
        raise InputError(f"candidate masks must be (N, {target_hw[0]}, {target_hw[1]}) (the target image's size), "
                         f"got shape {masks.shape}")
    masks = masks.astype(bool, copy=False)
    if candidates.boxes is None:
        boxes = boxes_from_masks(masks)
    else:
        boxes = np.asarray(candidates.boxes, np.float32)
        if boxes.shape != (len(masks), 4):
            raise InputError(f"candidate boxes must be (N, 4) = ({len(masks)}, 4) as (x, y, w, h), got {boxes.shape}")
    return Proposals(boxes, np.ones(len(masks), np.float32), masks=masks)


@contextmanager
def _one_core_spared(pending: Future | None, cpu: bool):
    """torch's CPU threads less one while the proposals run beside torch, so that they have a
    core of their own: otherwise torch's threads wait on the one that shares its core at every
    parallel region, and the overlap gains nothing (measured). Yields a function to call between
    torch passes: it gives the core back once the proposals are done."""
    previous = torch.get_num_threads()
    spared = pending is not None and cpu and previous > 1
    if spared:
        torch.set_num_threads(previous - 1)

    def give_back_when_done() -> None:
        nonlocal spared
        if spared and pending.done():
            torch.set_num_threads(previous)
            spared = False

    try:
        yield give_back_when_done
    finally:
        if spared:
            torch.set_num_threads(previous)


class _Clock:
    """Milliseconds per stage, plus the total."""

    def __init__(self):
        self.start = self.last = time.perf_counter()
        self.laps: dict[str, float] = {}

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.laps[name] = (now - self.last) * 1000.0
        self.last = now

    def split(self, name: str, part: str, part_ms: float) -> None:
        """Report part_ms of lap `name` as a stage of its own (the laps still add up)."""
        part_ms = min(max(part_ms, 0.0), self.laps[name])
        self.laps[name] -= part_ms
        self.laps[part] = part_ms

    def timings(self) -> dict[str, float]:
        return {**self.laps, "total": (time.perf_counter() - self.start) * 1000.0}


def _config_and_head(name_or_path: str, direction: str | None, overrides: dict | None):
    """Resolve a config name/YAML, or a training checkpoint that embeds its config and head."""
    overrides = dict(overrides or {})
    if direction is not None:
        overrides["direction"] = direction
    if Path(name_or_path).suffix in (".pt", ".pth"):
        payload = read_checkpoint(name_or_path, "cpu")
        if not isinstance(payload, dict) or "config" not in payload:
            raise ConfigError(f"{name_or_path} is not an `omama train` checkpoint (it has no embedded config); "
                              "for the authors' released weights use a YAML config with head.kind: official")
        data = stored_config(payload["config"])
        for key, value in overrides.items():
            set_dotted(data, key, value)
        config = config_from_dict(data)
        config.head = HeadConfig(kind="trained", checkpoint=name_or_path)  # the head is this file itself
        config.validate()
        if payload.get("direction") and config.direction != payload["direction"]:
            warnings.warn(f"{name_or_path} was trained for {payload['direction']} but is used for {config.direction}",
                          stacklevel=3)
        return config, load_head(name_or_path)
    return load_config(name_or_path, overrides), None
