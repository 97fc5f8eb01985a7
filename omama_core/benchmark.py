"""Latency and memory of the matcher, stage by stage (the engine of `omama bench`).

    runs = [bench_matcher(matcher, inputs, repeat=10, warmup=2) for inputs in ...]

Stage names are whatever `MatchResult.timings` reports (read from the dict, never assumed);
its "total" is kept apart, and end to end is timed here around `Matcher.match`. Two extra
configurations have random weights of real architectures, built locally (no download):
`published` (DINOv2 ViT-B/14-reg4 at the published sizes, FastSAM-x at 1024, the published
head) and `fast` (ViT-S/14-reg4, FastSAM-s at 640, a head of the published layout). Their
latency is that of real weights, their matches are meaningless.
"""

from __future__ import annotations

import os
import platform
import resource
import statistics
import time
from pathlib import Path
from typing import Callable

import cv2
import numpy as np
import torch
from tqdm import tqdm

from .errors import InputError
from .preprocess import GRID_STRIDE, PATCH_SIZE

from .network import disable_hub_downloads as _disable_hub_downloads

# name -> (shipped config it starts from, timm model, FastSAM scale, FastSAM input size)
RANDOM_ARCHITECTURES = {
    "published": ("official_exo2ego", "vit_base_patch14_reg4_dinov2", "x", 1024),
    "fast": ("official_exo2ego", "vit_small_patch14_reg4_dinov2", "s", 640),
}
# A random detector's confidences sit near 0.5 or far below: keep every box so that NMS and
# the mask post-processing see as many candidates as a real FastSAM gives (up to max_masks).
RANDOM_FASTSAM_CONF = 1e-4
PUBLISHED_GRIDS = {"source": 2584, "target": 2500}  # exo 38x68 and ego 50x50 tokens (docs/method.md)
# The matcher's stages that are the two networks' forward passes (DINOv2 or the offline
# backbone, FastSAM); everything else in a call is "outside the networks".
NETWORK_STAGES = ("backbone_source", "backbone_target", "proposals_network")


# ---- inputs ------------------------------------------------------------------------------
def parse_size(text: str | None) -> tuple[int, int] | None:
    """"WxH" -> (W, H) for both images; None or "published" -> the synthetic frames' own sizes
    (ego 704x704, exo 960x540)."""
    if text in (None, "", "published"):
        return None
    try:
        width, height = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise InputError(f"--size must be WIDTHxHEIGHT (e.g. 640x480) or 'published', got {text!r}") from None
    if width < 32 or height < 32:
        raise InputError(f"--size {text}: both sides must be at least 32 px")
    return width, height


def bench_inputs(direction: str, queries: int, size: tuple[int, int] | None = None, seed: int = 9
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A synthetic frame pair (omama_core.data.synth) as (source image, query masks (K, H, W),
    target image) for a direction; both images resized to size=(W, H) when given. The K
    queries are the source view's objects, largest first, repeated when K exceeds them."""
    from .data.synth import render_pair

    pair = render_pair(seed)
    views = {"ego": (pair.ego_image, pair.ego_masks), "exo": (pair.exo_image, pair.exo_masks)}
    (source, masks), (target, _) = views[direction[:3]], views[direction[-3:]]
    if size is not None:
        source, target = (cv2.resize(image, size, interpolation=cv2.INTER_AREA) for image in (source, target))
        masks = {name: cv2.resize(mask.astype(np.uint8), size, interpolation=cv2.INTER_NEAREST).astype(bool)
                 for name, mask in masks.items()}
    objects = sorted((m for m in masks.values() if m.any()), key=lambda m: -int(m.sum()))
    if not objects:
        raise InputError(f"no object of synthetic scene {seed} survives resizing to {size}; use a larger --size")
    return source, np.stack([objects[k % len(objects)] for k in range(queries)]), target


# ---- random weights of the real architectures ---------------------------------------------
def random_architecture(name: str, folder: str | os.PathLike, seed: int = 0) -> tuple[str, dict]:
    """Write random DINOv2, FastSAM and head weights for `published` or `fast` into folder;
    returns (shipped config name, overrides) for Matcher.from_config. Nothing is downloaded."""
    import timm

    config, model, scale, imgsz = RANDOM_ARCHITECTURES[name]
    folder = Path(folder)
    torch.manual_seed(seed)
    dinov2 = timm.create_model(model, pretrained=False, num_classes=0)
    backbone_file = folder / f"{model}_random.pth"
    torch.save(dinov2.state_dict(), backbone_file)
    fastsam_file = random_fastsam(scale, folder)
    head_file = folder / f"official_head_{dinov2.embed_dim}_random.pt"
    torch.save(random_official_head(dinov2.embed_dim), head_file)
    return config, {"backbone.model": model, "backbone.weights": str(backbone_file),
                    "proposals.weights": str(fastsam_file), "proposals.imgsz": imgsz,
                    "proposals.conf": RANDOM_FASTSAM_CONF, "head.checkpoint": str(head_file)}


def random_fastsam(scale: str, folder: str | os.PathLike) -> Path:
    """A FastSAM file of the given scale (n/s/m/l/x) with random weights: FastSAM is a
    one-class YOLOv8-seg, and ultralytics reads the scale from the file name. Nothing is
    downloaded."""
    import yaml

    _disable_hub_downloads()
    from ultralytics import YOLO  # imported late: heavy, and must see the offline settings
    from ultralytics.utils import ROOT

    spec = yaml.safe_load((ROOT / "cfg" / "models" / "v8" / "yolov8-seg.yaml").read_text())
    spec["nc"] = 1
    spec_file = Path(folder) / f"yolov8{scale}-seg-nc1.yaml"
    spec_file.write_text(yaml.safe_dump(spec))
    fastsam_file = Path(folder) / f"FastSAM-{scale}-random.pt"
    YOLO(str(spec_file)).save(str(fastsam_file))
    return fastsam_file


def random_official_head(dim: int) -> dict[str, torch.Tensor]:
    """A random state dict in the released checkpoint's key layout (docs/method.md) for
    C = dim channels: the published head's exact shapes when dim is 768."""
    generator = torch.Generator().manual_seed(0)

    def rand(*shape: int) -> torch.Tensor:
        return 0.02 * torch.randn(*shape, generator=generator)

    state = {"pos_embed_Q": rand(1, PUBLISHED_GRIDS["source"], dim),
             "pos_embed_T": rand(1, PUBLISHED_GRIDS["target"], dim)}
    for norm in ("norm_input", "norm_output"):
        state[f"CROSS_context_attn.{norm}.weight"] = torch.ones(dim)
        state[f"CROSS_context_attn.{norm}.bias"] = torch.zeros(dim)
    for linear in ("query", "key", "value", "project.0", "mlp.0", "mlp.2"):
        state[f"CROSS_context_attn.{linear}.weight"] = rand(dim, dim)
        state[f"CROSS_context_attn.{linear}.bias"] = rand(dim)
    for index, inputs in ((0, 3 * dim), (2, dim), (4, dim)):
        state[f"mlp.mlp.{index}.weight"] = rand(dim, inputs)
        state[f"mlp.mlp.{index}.bias"] = rand(dim)
    return state


# ---- measuring -----------------------------------------------------------------------------
def summary(values: list[float]) -> dict[str, float]:
    """Median, 10th and 90th percentiles, mean (values in ms)."""
    array = np.asarray(values, np.float64)
    return {"median": round(float(np.median(array)), 2), "p10": round(float(np.percentile(array, 10)), 2),
            "p90": round(float(np.percentile(array, 90)), 2), "mean": round(float(array.mean()), 2)}


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far (MB; Linux reports KB, macOS bytes)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(peak / (1024 * 1024) if platform.system() == "Darwin" else peak / 1024, 1)


def bench_matcher(matcher, inputs: tuple[np.ndarray, np.ndarray, np.ndarray], repeat: int, warmup: int,
                  label: str = "") -> dict:
    """Time matcher.match(*inputs) `repeat` times after `warmup` calls.

    Returns {"stages_ms": {stage: summary}, "end_to_end_ms", "stage_sum_ms", "reported_total_ms",
    "outside_networks_ms", "outside_networks_fraction", "candidates", "peak_rss_mb"
    [, "cuda_max_memory_mb"]}. stage_sum is the sum of the stages of each call: beside
    end_to_end it shows what no stage accounts for. outside_networks: end to end less the
    NETWORK_STAGES, per call; None when the proposals run beside the backbones (their time
    is then inside the backbone stages).
    """
    device = matcher.device
    cuda = device.type == "cuda"
    sync: Callable[[], None] = (lambda: torch.cuda.synchronize(device)) if cuda else (lambda: None)
    for _ in range(warmup):
        matcher.match(*inputs)
    if cuda:
        torch.cuda.reset_peak_memory_stats(device)
    stages: dict[str, list[float]] = {}
    end_to_end, stage_sums, totals, candidates, outside = [], [], [], [], []
    for _ in tqdm(range(repeat), desc=label or "bench", unit="pair", leave=False):
        sync()
        start = time.perf_counter()
        results = matcher.match(*inputs)
        sync()
        end_to_end.append((time.perf_counter() - start) * 1000.0)
        timings = dict(results[0].timings)
        if "total" in timings:
            totals.append(timings.pop("total"))
        for name, value in timings.items():
            stages.setdefault(name, []).append(value)
        stage_sums.append(sum(timings.values()))
        outside.append(end_to_end[-1] - sum(timings.get(name, 0.0) for name in NETWORK_STAGES))
        candidates.append(results[0].num_candidates)
    record = {"candidates": int(statistics.median(candidates)),
              "stages_ms": {name: summary(values) for name, values in stages.items()},
              "end_to_end_ms": summary(end_to_end), "stage_sum_ms": summary(stage_sums),
              "reported_total_ms": summary(totals) if totals else None, "peak_rss_mb": peak_rss_mb(),
              "outside_networks_ms": None, "outside_networks_fraction": None}
    if not matcher.concurrent_proposals:
        record["outside_networks_ms"] = summary(outside)
        record["outside_networks_fraction"] = round(float(np.median(np.divide(outside, end_to_end))), 4)
    if cuda:
        record["cuda_max_memory_mb"] = round(torch.cuda.max_memory_allocated(device) / 2 ** 20, 1)
    return record


def machine() -> dict:
    """What the numbers were measured on."""
    info = {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(), "torch": torch.__version__, "torch_threads": torch.get_num_threads()}
    if torch.cuda.is_available():
        info["cuda"] = torch.version.cuda
        info["gpus"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    return info


# ---- the encoder against the per-mask formulation --------------------------------------------
def per_mask_descriptors(features: torch.Tensor, masks: np.ndarray, context_px: int) -> torch.Tensor:
    """The Mask-Context Encoder written as the publication describes it, one mask at a time:
    features (C, h, w) on the 14-px token grid, masks (N, H, W) bool at image size (the
    model input's size) -> (N, 2C) [mean inside the mask; mean inside its box grown by
    context_px], both on the 4-px grid. The reference that `omama bench --encoder` checks
    the batched encoder against."""
    height, width = masks.shape[1:]
    grid_hw = (features.shape[1] * PATCH_SIZE // GRID_STRIDE, features.shape[2] * PATCH_SIZE // GRID_STRIDE)
    grid = torch.nn.functional.interpolate(features[None], size=grid_hw, mode="bilinear", align_corners=False)[0]
    out = []
    for mask in masks:
        small = torch.nn.functional.interpolate(torch.from_numpy(mask)[None, None].to(grid), size=grid_hw,
                                                mode="nearest")[0, 0] > 0
        inside = grid[:, small]
        obj = inside.mean(dim=1) if inside.shape[1] else torch.zeros_like(grid[:, 0, 0])
        ys, xs = np.nonzero(mask)
        x0, y0, x1, y1 = (xs.min(), ys.min(), xs.max(), ys.max()) if len(xs) else (0, 0, 0, 0)
        ranges = []
        for low, high, limit, cells in ((y0, y1, height, grid_hw[0]), (x0, x1, width, grid_hw[1])):
            first = int(np.floor(min(max(low - context_px, 0), limit) / GRID_STRIDE))
            last = max(first + 1, int(np.floor(min(max(high + context_px, 0), limit) / GRID_STRIDE)))
            first = min(max(first, 0), cells - 1)
            ranges.append((first, min(max(last, first + 1), cells)))
        (r0, r1), (c0, c1) = ranges
        out.append(torch.cat([obj, grid[:, r0:r1, c0:c1].mean(dim=(1, 2))]))
    return torch.stack(out)


def _batched_encoder():
    """The encoder under test: (features (C, h, w), masks (N, H, W), context_px) -> (N, 2C)."""
    from .masks import boxes_from_masks, resize_nearest

    from .modeling.encoder import context_cells, pooled_descriptors

    def encode(features, masks, context_px):
        grid_hw = (features.shape[1] * PATCH_SIZE // GRID_STRIDE, features.shape[2] * PATCH_SIZE // GRID_STRIDE)
        cells = context_cells(boxes_from_masks(masks), masks.shape[1:], grid_hw, context_px)
        return pooled_descriptors(features, resize_nearest(masks, grid_hw), cells)
    return encode


def random_masks(rng: np.random.Generator, count: int, image_hw: tuple[int, int]) -> np.ndarray:
    """(count, H, W) bool ellipses of random centre, size (2-40% of the image side) and angle."""
    height, width = image_hw
    masks = np.zeros((count, height, width), np.uint8)
    for mask in masks:
        axes = (int(rng.uniform(0.01, 0.2) * width) + 1, int(rng.uniform(0.01, 0.2) * height) + 1)
        centre = (int(rng.integers(0, width)), int(rng.integers(0, height)))
        cv2.ellipse(mask, centre, axes, float(rng.uniform(0, 180)), 0, 360, 1, -1)
    return masks.astype(bool)


def bench_encoder(channels: int = 768, token_grid: tuple[int, int] = (38, 68), masks: int = 100,
                  context_px: int = 100, repeat: int = 5, device: str = "cpu", tolerance: float = 1e-5) -> dict:
    """Time the batched encoder and the per-mask formulation on the same random features
    (channels, *token_grid) and `masks` random ellipses at the token grid's image size (the
    published exo input, 532x952, by default); their outputs must agree to `tolerance`."""
    rng = np.random.default_rng(0)
    image_hw = (token_grid[0] * PATCH_SIZE, token_grid[1] * PATCH_SIZE)
    features = torch.from_numpy(rng.standard_normal((channels, *token_grid)).astype(np.float32)).to(device)
    mask_stack = random_masks(rng, masks, image_hw)
    encode = _batched_encoder()
    batched_ms, per_mask_ms = [], []
    for _ in range(repeat + 1):  # the first call of each is a warm-up
        start = time.perf_counter()
        batched = encode(features, mask_stack, context_px).cpu()
        batched_ms.append((time.perf_counter() - start) * 1000.0)
        start = time.perf_counter()
        reference = per_mask_descriptors(features, mask_stack, context_px).cpu()
        per_mask_ms.append((time.perf_counter() - start) * 1000.0)
    difference = float((batched - reference).abs().max())
    if not difference <= tolerance:
        raise AssertionError(f"the encoder differs from the per-mask formulation by {difference:.3g} "
                             f"(more than {tolerance:g}) on {masks} masks")
    batched_summary, per_mask_summary = summary(batched_ms[1:]), summary(per_mask_ms[1:])
    return {"channels": channels, "token_grid": list(token_grid), "masks": masks, "context_px": context_px,
            "device": device, "batched_ms": batched_summary, "per_mask_ms": per_mask_summary,
            "speedup": round(per_mask_summary["median"] / max(batched_summary["median"], 1e-9), 1),
            "max_abs_difference": difference}


# ---- the node against the core ----------------------------------------------------------------
def compare_answers(core: list[dict], node: list[dict], score_tolerance: float = 1e-4) -> dict:
    """Whether the node answered what the core did on the same inputs: per query
    {"visible", "score", "mask" (H, W) bool} from each side. Returns {"agree", "queries",
    "core_mask_pixels", "differing_mask_pixels" (per query), "max_score_difference"}; scores
    travel as float32."""
    if len(core) != len(node):
        return {"agree": False, "queries": [len(core), len(node)], "core_mask_pixels": None,
                "differing_mask_pixels": None, "max_score_difference": None}
    pixels = [int(np.count_nonzero(np.asarray(a["mask"], bool) != np.asarray(b["mask"], bool)))
              if np.shape(a["mask"]) == np.shape(b["mask"]) else -1 for a, b in zip(core, node)]
    scores = max((abs(float(a["score"]) - float(b["score"])) for a, b in zip(core, node)), default=0.0)
    agree = (all(p == 0 for p in pixels) and scores <= score_tolerance
             and all(bool(a["visible"]) == bool(b["visible"]) for a, b in zip(core, node)))
    return {"agree": agree, "queries": len(core),
            "core_mask_pixels": [int(np.count_nonzero(a["mask"])) for a in core], "differing_mask_pixels": pixels,
            "max_score_difference": round(scores, 7)}
