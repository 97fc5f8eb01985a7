"""CUDA check and latency benchmark of the published pipeline's architecture.

Builds DINOv2 ViT-B/14-reg4, a FastSAM-x-shaped YOLOv8x-seg and the published head with
RANDOM weights written to local files (the same loading code a user runs with real ones),
then on the given device:
  1. matches 5 queries exo (960x540) -> ego (704x704) and prints per-stage medians,
     in float32 and in half precision;
  2. checks the encoder and the head against the CPU (same inputs, float32);
  3. times training iterations of the published head (batch 24 x 32 candidates).
Prints one JSON object per measurement. Random weights: latency is meaningful, matches not.

    python benchmarks/gpu_check.py --device cuda --out results.jsonl
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from omama_core import Matcher  # noqa: E402
from omama_core.modeling import MaskContextEncoder, MatchingHead, load_official_head  # noqa: E402
from omama_core.preprocess import ModelInput, mask_regions  # noqa: E402
from omama_core.proposals import FastSAMProposals  # noqa: E402
from omama_core.training.step import TrainingStep  # noqa: E402


def emit(out, **record):
    line = json.dumps(record)
    print(line, flush=True)
    if out:
        with open(out, "a") as f:
            f.write(line + "\n")


def official_layout_file(folder: Path, dim: int = 768) -> Path:
    """The published head with random weights, saved in the released checkpoint's key layout."""
    head = MatchingHead(dim=dim, source_grid=(38, 68), target_grid=(50, 50), hidden_dim=dim)  # exo2ego
    names = {"source_pos_embed": "pos_embed_Q", "target_pos_embed": "pos_embed_T",
             "cross_attention": "CROSS_context_attn", "projection": "mlp.mlp"}
    state = {}
    for key, value in head.state_dict().items():
        for ours, theirs in names.items():
            if key.startswith(ours):
                state[theirs + key[len(ours):]] = value
    path = folder / "omama_exo2ego_random.pt"
    torch.save(state, path)
    return path


def fastsam_file(folder: Path) -> Path | None:
    try:
        import yaml
        from ultralytics import YOLO
        from ultralytics.utils import ROOT
    except ImportError as error:
        print(f"ultralytics unavailable ({error}); using classical proposals", file=sys.stderr)
        return None
    cfg = yaml.safe_load((ROOT / "cfg" / "models" / "v8" / "yolov8-seg.yaml").read_text())
    cfg["nc"] = 1
    path = folder / "yolov8x-seg-nc1.yaml"
    path.write_text(yaml.safe_dump(cfg))
    weights = folder / "FastSAM-x-random.pt"
    probe = np.random.default_rng(0).integers(0, 255, (704, 704, 3), dtype=np.uint8)
    for seed in range(8):  # some random detectors find nothing even at conf 1e-4: take one that does
        torch.manual_seed(seed)
        YOLO(str(path)).save(str(weights))
        if len(FastSAMProposals(str(weights), conf=0.0001)(probe)) > 0:
            return weights
    raise SystemExit("no random FastSAM-x initialisation gave candidates")


def scene(rng):
    ego = rng.integers(0, 255, (704, 704, 3), dtype=np.uint8)
    exo = rng.integers(0, 255, (540, 960, 3), dtype=np.uint8)
    masks = np.zeros((5, 540, 960), bool)  # queries in the exo (source) image
    for k in range(5):
        masks[k, 60 + 80 * k: 120 + 80 * k, 200:300] = True
    return exo, masks, ego


def bench_match(matcher, inputs, repeats):
    for _ in range(3):
        matcher.match(*inputs)
    stages, counts = {}, []
    for _ in range(repeats):
        if matcher.device.type == "cuda":
            torch.cuda.synchronize()
        result = matcher.match(*inputs)[0]
        counts.append(result.num_candidates)
        for key, value in result.timings.items():
            stages.setdefault(key, []).append(value)
    if min(counts) == 0:
        raise SystemExit("the proposal generator gave no candidates: encoder and head were not timed")
    return {"candidates": min(counts), **{key: round(statistics.median(values), 1) for key, values in stages.items()}}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--train-iters", type=int, default=30)
    parser.add_argument("--out")
    args = parser.parse_args()
    device = torch.device(args.device)
    emit(args.out, what="environment", torch=torch.__version__, cuda=torch.version.cuda,
         gpu=torch.cuda.get_device_name(0) if device.type == "cuda" else "cpu")
    folder = Path(tempfile.mkdtemp())
    import timm

    dinov2 = timm.create_model("vit_base_patch14_reg4_dinov2", pretrained=False, num_classes=0)
    torch.save(dinov2.state_dict(), folder / "dinov2_vitb14_reg4_random.pth")
    fastsam = fastsam_file(folder)
    overrides = {"backbone.weights": str(folder / "dinov2_vitb14_reg4_random.pth"),
                 "head.checkpoint": str(official_layout_file(folder))}
    if fastsam is not None:
        overrides.update({"proposals.weights": str(fastsam), "proposals.conf": 0.0001})
    else:
        overrides.update({"proposals.kind": "classical", "proposals.max_side": 960})
    inputs = scene(np.random.default_rng(0))

    # 1. latency of the published architecture, exo2ego (the released direction)
    for half in (False, True):
        if half and device.type != "cuda":
            continue
        matcher = Matcher.from_config("official_exo2ego", device=args.device, overrides=overrides, half=half)
        emit(args.out, what="match_latency_ms", precision="fp16" if half else "fp32", queries=5,
             candidates_from="fastsam-x" if fastsam else "classical", **bench_match(matcher, inputs, args.repeats))

    # 2. the same numbers on the CPU and on the device (encoder and head, float32)
    rng = torch.Generator().manual_seed(0)
    features = torch.randn(768, 38, 68, generator=rng)
    masks = np.zeros((20, 540, 960), bool)
    for k in range(20):
        masks[k, 20 * k: 20 * k + 60, 40 * k: 40 * k + 90] = True
    encoder = MaskContextEncoder()
    regions = mask_regions(masks, ModelInput("official", (540, 960), (540, 960), (532, 952), 1.0),
                           encoder.grid_size(features.shape[1:]))
    cpu_desc = encoder(features, regions)
    dev_desc = encoder(features.to(device), regions).cpu()
    head = load_official_head(overrides["head.checkpoint"]).eval()
    tokens_s, tokens_t = torch.randn(1, 768, 38, 68, generator=rng), torch.randn(1, 768, 50, 50, generator=rng)
    with torch.no_grad():
        cpu_scores = head(cpu_desc[:1, None], cpu_desc[None], tokens_s, tokens_t)
        head_dev = head.to(device)
        dev_scores = head_dev(cpu_desc[:1, None].to(device), cpu_desc[None].to(device), tokens_s.to(device),
                              tokens_t.to(device)).cpu()
    emit(args.out, what="cpu_vs_device", encoder_max_abs_diff=float((cpu_desc - dev_desc).abs().max()),
         head_max_abs_diff=float((cpu_scores - dev_scores).abs().max()),
         same_best=bool(cpu_scores.argmax() == dev_scores.argmax()))

    # 3. training iterations of the published head: batch 24, 32 candidates, exo2ego grids
    torch.manual_seed(0)
    train_head = MatchingHead(dim=768, source_grid=(38, 68), target_grid=(50, 50), hidden_dim=768).to(device)
    step = TrainingStep(train_head, 0.07, 1.0)
    optimizer = torch.optim.AdamW(train_head.parameters(), lr=8e-5)
    batch = {"source_desc": torch.randn(24, 1536), "target_tokens": torch.randn(24, 768, 50, 50),
             "candidates": torch.randn(24, 32, 1536), "source_tokens": torch.randn(24, 768, 38, 68),
             "visible": torch.ones(24, dtype=torch.bool), "label": torch.randint(0, 32, (24,))}
    batch = {k: v.to(device) for k, v in batch.items()}
    times = []
    for i in range(args.train_iters + 3):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        loss = step(batch)["loss"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        if i >= 3:
            times.append((time.perf_counter() - start) * 1000)
    emit(args.out, what="train_iteration_ms", batch=24, candidates=32, median=round(statistics.median(times), 1),
         trainable_parameters=sum(p.numel() for p in train_head.parameters()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
