"""The training loop: single process, or one process per device under torchrun (DDP).

    omama train --config training/configs/synthetic.yaml --data DATA --out RUN
    torchrun --nproc_per_node=2 -m omama_core.cli train --config ... --data DATA --out RUN

RUN/ receives config.yaml (resolved), log.csv, TensorBoard events (when tensorboard is
installed), last.pt (everything needed to resume, written atomically every
checkpoint_every iterations), best.pt (the head with the best validation IoU, loadable by
Matcher.from_config), metrics.json and curves.png.
"""

from __future__ import annotations

import csv
import json
import math
import os
import time
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import yaml
from tqdm import tqdm

from ..config import load_config
from ..data.cache import FeatureCache
from ..data.egoexo import CorrespondenceDataset
from ..errors import CheckpointMismatchError, ConfigError, OmamaError
from ..files import atomic_write
from ..modeling import MatchingHead, save_head
from ..matcher import resolve_device
from ..metrics import balanced_accuracy
from ..selection.rules import choose_candidates
from .config import TrainConfig
from .pairs import CachedPairs
from .step import TrainingStep, proposal_scores


def learning_rate(step: float, total: float, lr: float, min_lr: float) -> float:
    """Cosine annealing from lr at step 0 to min_lr at step total."""
    progress = min(step / max(total, 1), 1.0)
    return min_lr + 0.5 * (lr - min_lr) * (1.0 + math.cos(math.pi * progress))


@torch.no_grad()
def validate(head: MatchingHead | None, pairs: CachedPairs, batch_size: int, device: torch.device,
             visibility_threshold: float = 0.5, whole_object_margin: float = 0.0,
             part_margin: float | None = None) -> dict[str, float]:
    """Top-1 over every proposal, as at inference: mean IoU of the chosen proposal
    (selection.choose_candidates) on the pairs whose object is visible, the oracle (best
    proposal) IoU, and the visibility balanced accuracy (learned output if the head has one,
    else best score >= threshold)."""
    if head is not None:
        head.eval()
    ious, oracle, truth, predicted = [], [], [], []
    loader = torch.utils.data.DataLoader(pairs, batch_size=batch_size, shuffle=False)
    for batch in loader:
        batch = {k: v.to(device) for k, v in batch.items()}
        source = head.embed_sources(batch["source_desc"][:, None], batch["target_tokens"]) if head is not None else None
        scores = proposal_scores(head, batch, source)
        best = choose_candidates(scores, batch["contains"], batch["areas"], whole_object_margin, part_margin)
        chosen_iou = batch["proposal_iou"].gather(1, best[:, None])[:, 0]
        visible = batch["visible"]
        ious += chosen_iou[visible].tolist()
        oracle += batch["proposal_iou"].max(1).values[visible].tolist()
        if head is not None and head.visibility is not None:
            probability = torch.sigmoid(head.visibility_logit(source[:, 0], scores, batch["valid"]))
            predicted += (probability >= 0.5).tolist()
        else:
            predicted += (scores.max(1).values >= visibility_threshold).tolist()
        truth += visible.tolist()
    return {"iou": float(np.mean(ious)) if ious else float("nan"),
            "oracle_iou": float(np.mean(oracle)) if oracle else float("nan"),
            "visibility_balanced_accuracy": balanced_accuracy(np.array(truth), np.array(predicted)),
            "pairs": len(truth)}


def _distributed() -> tuple[int, int]:
    """(rank, world size); initialises the process group under torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if torch.cuda.is_available() else "gloo")
    return (dist.get_rank(), world) if world > 1 else (0, 1)


def train(config: TrainConfig, data_root: str, out_dir: str, device: str = "auto", resume: bool = False,
          progress: bool = True) -> dict:
    """Train a head; returns the final metrics (also written to RUN/metrics.json)."""
    rank, world = _distributed()
    if world > 1 and torch.cuda.is_available():
        device = f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}"
    torch_device = resolve_device(device)
    out = Path(out_dir)
    main = rank == 0
    matcher_config = load_config(config.matcher, {"direction": config.direction})
    train_set = CorrespondenceDataset(data_root, config.data.train_split, config.direction)
    val_set = CorrespondenceDataset(data_root, config.data.val_split, config.direction)
    if not train_set.samples:
        raise OmamaError(f"no training pairs in split {config.data.train_split!r} of {data_root}")
    cache = FeatureCache(data_root, matcher_config, config.data.cache_dir)
    if main:
        out.mkdir(parents=True, exist_ok=True)
        (out / "config.yaml").write_text(yaml.safe_dump(config.to_dict(), sort_keys=False))
        cache.build([train_set, val_set], device=str(torch_device) if torch_device.type == "cuda" else "cpu",
                    workers=config.num_workers)
    if world > 1:
        dist.barrier()
    show = progress and main
    train_pairs = CachedPairs(train_set, cache, config.data.train_fraction, config.seed, config.loss, show)
    val_pairs = CachedPairs(val_set, cache, config.data.val_fraction, config.seed, None, show)
    channels, source_grid, target_grid = train_pairs.feature_shapes
    if channels % config.head.num_heads:
        raise ConfigError(f"head.num_heads ({config.head.num_heads}) must divide the {channels} feature channels of "
                          f"backbone {matcher_config.backbone.kind} (the handcrafted backbone has 30: use 2, 3, 5 or 6)")

    torch.manual_seed(config.seed)
    head = MatchingHead(dim=channels, num_heads=config.head.num_heads, source_grid=source_grid,
                        target_grid=target_grid, hidden_dim=config.head.hidden_dim,
                        visibility=config.head.visibility, context=config.head.context,
                        cross_attention=config.head.cross_attention, residual=config.head.residual).to(torch_device)
    step_module = TrainingStep(head, config.loss.temperature, config.loss.visibility_weight)
    model = torch.nn.parallel.DistributedDataParallel(step_module) if world > 1 else step_module
    optimizer = torch.optim.AdamW(head.parameters(), lr=config.optim.lr, weight_decay=config.optim.weight_decay)

    per_rank_batch = max(1, config.optim.batch_size // world)
    iters_per_epoch = max(1, len(train_pairs) // (per_rank_batch * world))
    total = iters_per_epoch * config.optim.epochs
    step, best, history = 0, -1.0, []
    if resume and (out / "last.pt").is_file():
        state = torch.load(out / "last.pt", map_location="cpu", weights_only=False)
        if state["head_args"] != head.args:
            raise CheckpointMismatchError(f"{out / 'last.pt'} was made for another head: {state['head_args']} "
                                          f"vs {head.args}")
        head.load_state_dict(state["state_dict"])
        optimizer.load_state_dict(state["optimizer"])
        step, best, history = state["step"], state["best_iou"], state.get("history", [])
        if main:
            print(f"resuming {out} at iteration {step}/{total}")

    matcher_dict = matcher_config.to_dict()
    matcher_dict["head"] = {"kind": "trained", "checkpoint": None}
    if config.head.visibility:  # the threshold then applies to a probability
        matcher_dict["visibility_threshold"] = 0.5

    def save(path: Path, with_optimizer: bool) -> None:
        extra = {"config": matcher_dict, "direction": config.direction, "train_config": config.to_dict(),
                 "step": step, "best_iou": best, "history": history}
        if with_optimizer:
            extra["optimizer"] = optimizer.state_dict()
        save_head(head, str(path), **extra)

    log = _Log(out, main, resume)
    bar = tqdm(total=total, initial=step, desc="training", unit="it", disable=not show)
    started = time.time()
    while step < total:
        epoch = step // iters_per_epoch
        train_pairs.set_epoch(epoch)
        order = np.random.default_rng([config.seed, epoch]).permutation(len(train_pairs))
        order = order[: iters_per_epoch * per_rank_batch * world][rank::world]
        head.train()
        for index in range(step - epoch * iters_per_epoch, iters_per_epoch):
            items = [train_pairs[int(i)] for i in order[index * per_rank_batch:(index + 1) * per_rank_batch]]
            batch = {k: torch.stack([item[k] for item in items]).to(torch_device) for k in items[0]}
            lr = learning_rate(step, total, config.optim.lr, config.optim.min_lr)
            for group in optimizer.param_groups:
                group["lr"] = lr
            outputs = model(batch)
            optimizer.zero_grad(set_to_none=True)
            outputs["loss"].backward()
            optimizer.step()
            step += 1
            bar.update(1)
            if step % config.log_every == 0 or step == total:
                row = {"step": step, "epoch": epoch, "lr": lr, "seconds": round(time.time() - started, 1),
                       **{k: round(v.item(), 5) for k, v in outputs.items()}}
                log.write(row)
                bar.set_postfix(loss=f"{row['loss']:.3f}", top1=f"{row['top1']:.2f}")
            if main and step % config.checkpoint_every == 0:
                save(out / "last.pt", with_optimizer=True)
        if main:
            metrics = validate(head, val_pairs, config.optim.batch_size, torch_device,
                               whole_object_margin=matcher_config.selection.whole_object_margin,
                               part_margin=matcher_config.selection.whole_object_part_margin)
            history.append({"epoch": epoch, "step": step, **metrics})
            log.write({"step": step, "epoch": epoch, **{f"val_{k}": v for k, v in metrics.items()}})
            bar.write(f"epoch {epoch}: val IoU {metrics['iou']:.3f} (oracle {metrics['oracle_iou']:.3f}), "
                      f"visibility BA {metrics['visibility_balanced_accuracy']:.3f}")
            if metrics["iou"] > best:
                best = metrics["iou"]
                save(out / "best.pt", with_optimizer=False)
            save(out / "last.pt", with_optimizer=True)
        if world > 1:
            dist.barrier()
    bar.close()
    result = {"best_val_iou": best, "history": history, "iterations": step, "train_pairs": len(train_pairs),
              "val_pairs": len(val_pairs), "skipped": {**train_pairs.skipped, **val_pairs.skipped}}
    if main:
        (out / "metrics.json").write_text(json.dumps(result, indent=2))
        log.close()
        plot_curves(out)
    if world > 1:
        dist.barrier()
        dist.destroy_process_group()
    return result


class _Log:
    """log.csv (one row per logged step, columns as they appear) and TensorBoard if present."""

    def __init__(self, out: Path, enabled: bool, append: bool):
        self.enabled, self.path = enabled, out / "log.csv"
        self.rows = []
        if enabled and append and self.path.is_file():
            with open(self.path) as f:
                self.rows = list(csv.DictReader(f))
        self.writer = None
        if enabled:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.writer = SummaryWriter(str(out / "tensorboard"))
            except ImportError:
                pass

    def write(self, row: dict) -> None:
        if not self.enabled:
            return
        self.rows.append(row)
        columns = list(dict.fromkeys(k for r in self.rows for k in r))

        def write_csv(temporary: str) -> None:
            with open(temporary, "w", newline="") as f:
                writer = csv.DictWriter(f, fieldnames=columns)
                writer.writeheader()
                writer.writerows(self.rows)

        atomic_write(self.path, write_csv)
        if self.writer is not None:
            for key, value in row.items():
                if key not in ("step", "epoch") and isinstance(value, (int, float)):
                    self.writer.add_scalar(key, value, row["step"])

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def plot_curves(out: Path) -> None:
    """curves.png: training losses per iteration and validation IoU per epoch."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with open(out / "log.csv") as f:
        rows = list(csv.DictReader(f))
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    for key in ("loss", "match_loss", "visibility_loss"):
        points = [(int(r["step"]), float(r[key])) for r in rows if r.get(key)]
        if points:
            left.plot(*zip(*points), label=key)
    left.set_xlabel("iteration")
    left.set_title("training loss")
    left.legend()
    for key in ("val_iou", "val_oracle_iou", "val_visibility_balanced_accuracy"):
        points = [(int(r["step"]), float(r[key])) for r in rows if r.get(key)]
        if points:
            right.plot(*zip(*points), marker="o", label=key[4:])
    right.set_xlabel("iteration")
    right.set_ylim(0, 1)
    right.set_title("validation")
    right.legend()
    fig.tight_layout()
    fig.savefig(out / "curves.png", dpi=100)
    plt.close(fig)
