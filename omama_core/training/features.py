"""Learning the convnet backbone's dense features on synthetic takes rendered on the fly.

    omama train-backbone --out omama_core/weights/synthetic_convnet.pt --device cuda

The objective is the one the features serve: the mask-context descriptor
(modeling.encoder.pooled_descriptors, the same function inference uses) of an object in one view
must be nearer, in cosine, to the same object's descriptor in the other view than to any
other object's and to any of `random_regions` negatives of that view: random ellipses
(table, floor, walls, the person) and, if `segment_fraction` > 0, colour segments. InfoNCE
at `temperature`, both directions, ground-truth masks only: no proposals, so a few hundred
takes render and train in minutes on a GPU.

Takes are drawn from seeds `seed * 100003 + i`, as `omama synth` draws them, so a seed
used here must differ from the held-out seed. The last `val_takes` takes are held out; the
validation metric is the top-1 accuracy of that retrieval.
"""

from __future__ import annotations

import csv
import math
import os
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from skimage.segmentation import felzenszwalb
from tqdm import tqdm

from ..data.synth import TakeRenderer
from ..errors import ConfigError
from ..files import atomic_write
from ..masks import boxes_from_masks, resize_nearest
from ..modeling import cosine_scores
from ..modeling.encoder import context_cells, pooled_descriptors
from ..offline import ConvNetBackbone
from ..preprocess import input_scale, model_input_size, normalise, pooling_grid_size, resize_image
from .loop import learning_rate


@dataclass
class BackboneTrainConfig:
    """Every value of a backbone training run (stored in the weights file)."""

    takes: int = 320
    frames: int = 6
    seed: int = 3
    val_takes: int = 16
    epochs: int = 5
    batch_pairs: int = 8
    lr: float = 1e-3
    min_lr: float = 1e-5
    weight_decay: float = 1e-4
    temperature: float = 0.07
    random_regions: int = 32
    segment_fraction: float = 0.0  # share of the random regions that are colour segments instead of ellipses
    context_px: int = 100
    ego_max_side: int = 704
    exo_max_side: int = 960
    channels: int = 64
    width: int = 96
    max_minutes: float = 0.0  # > 0: the cosine schedule ends after this long if the epochs have not ended it

    def validate(self) -> "BackboneTrainConfig":
        if self.takes <= self.val_takes or self.val_takes < 1:
            raise ConfigError(f"takes ({self.takes}) must exceed val_takes ({self.val_takes}) >= 1")
        if self.channels % 8 or self.width % 8:
            raise ConfigError(f"channels and width must be multiples of 8, got {self.channels}, {self.width}")
        return self


@dataclass
class View:
    """One camera's frame, ready for training: the image at the model's input size, the
    objects' masks on the 4-px pooling grid and their boxes (x, y, w, h) in image pixels."""

    image: np.ndarray  # (h, w, 3) uint8, h and w multiples of 14
    names: list[str]
    grid_masks: np.ndarray  # (N, h/4, w/4) bool
    boxes: np.ndarray  # (N, 4) float32
    image_hw: tuple[int, int]
    scale: float
    segments: np.ndarray | None = None  # (h/4, w/4) int32 colour segments, negatives shaped like proposals


def prepare_view(image: np.ndarray, masks: dict[str, np.ndarray], max_side: int) -> View:
    """A rendered frame and its object masks -> View."""
    height, width = image.shape[:2]
    size = model_input_size(height, width, max_side)
    names = sorted(masks)
    full = np.stack([masks[n] for n in names]) if names else np.zeros((0, height, width), bool)
    grid_hw = pooling_grid_size((size[0] // 14, size[1] // 14))
    segments = felzenszwalb(resize_image(image, grid_hw), scale=64, sigma=0.5, min_size=8).astype(np.int32)
    return View(resize_image(image, size), names, resize_nearest(full, grid_hw), boxes_from_masks(full),
                (height, width), input_scale(height, width, max_side), segments)


def render_take(job: tuple[int, str, int, int, int]) -> list[tuple[View, View]]:
    """(seed, take, frames, ego_max_side, exo_max_side) -> the take's (ego, exo) views."""
    seed, take, frames, ego_side, exo_side = job
    renderer = TakeRenderer(seed, take)
    views = []
    for index in range(frames):
        pair = renderer.render(index, frames)
        views.append((prepare_view(pair.ego_image, pair.ego_masks, ego_side),
                      prepare_view(pair.exo_image, pair.exo_masks, exo_side)))
    return views


def random_regions(rng: np.random.Generator, grid_hw: tuple[int, int], count: int) -> np.ndarray:
    """`count` random filled ellipses on the grid (count, gh, gw) bool, semi-axes from 2 cells
    to a quarter of the grid's shorter side (log-uniform), anywhere (clipped at borders)."""
    gh, gw = grid_hw
    ys, xs = np.mgrid[:gh, :gw]
    centre_y = rng.uniform(0, gh, count)[:, None, None]
    centre_x = rng.uniform(0, gw, count)[:, None, None]
    largest = max(2.5, min(gh, gw) / 4)
    axis_y = np.exp(rng.uniform(np.log(2), np.log(largest), count))[:, None, None]
    axis_x = axis_y * np.exp(rng.uniform(-0.7, 0.7, count))[:, None, None]
    regions = ((ys - centre_y) / axis_y) ** 2 + ((xs - centre_x) / axis_x) ** 2 <= 1.0
    return regions[regions.reshape(count, -1).any(1)]


def random_segments(rng: np.random.Generator, segments: np.ndarray, count: int) -> np.ndarray:
    """Up to `count` distinct segments of a label map (gh, gw) as masks (count, gh, gw): the
    table patches, furniture, arm and object parts that proposals also offer."""
    labels, sizes = np.unique(segments, return_counts=True)
    labels = labels[sizes >= 4]
    chosen = rng.choice(labels, size=min(count, len(labels)), replace=False)
    return segments[None] == chosen[:, None, None]


def grid_boxes(grid_masks: np.ndarray, view: View) -> np.ndarray:
    """Boxes (x, y, w, h) in image pixels of masks drawn on the pooling grid."""
    cell = 4.0 / view.scale  # image pixels per grid cell
    return boxes_from_masks(grid_masks) * cell


def grid_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(N, gh, gw), (M, gh, gw) bool -> (N, M) IoU."""
    cells = a.shape[1] * a.shape[2]
    a, b = a.reshape(len(a), cells).astype(np.float32), b.reshape(len(b), cells).astype(np.float32)
    inter = a @ b.T
    return inter / np.maximum(a.sum(1)[:, None] + b.sum(1)[None] - inter, 1.0)


@dataclass
class Regions:
    """What one view contributes to a step: its N objects' and R random regions' masks on the
    grid, their boxes in image pixels, and each random region's IoU with each object."""

    view: View
    masks: np.ndarray  # (N + R, gh, gw) bool
    boxes: np.ndarray  # (N + R, 4)
    overlap: np.ndarray  # (N, R)


def scaled_cells(regions: Regions, context_px: int) -> np.ndarray:
    """The context cells of a view's regions, with boxes scaled to model-input pixels as the
    matcher's "scaled" sizing does (preprocess.py)."""
    view = regions.view
    boxes = np.asarray(regions.boxes).astype(np.float64) * view.scale
    bounds = (view.image_hw[0] * view.scale, view.image_hw[1] * view.scale)
    return context_cells(boxes, bounds, regions.masks.shape[1:], context_px)


def with_random_regions(view: View, rng: np.random.Generator, count: int, segment_fraction: float = 0.0
                        ) -> Regions:
    """The view's objects and `count` negatives: random ellipses, `segment_fraction` of them
    replaced by colour segments when the view has them."""
    segments = int(round(count * segment_fraction)) if view.segments is not None else 0
    regions = random_regions(rng, view.grid_masks.shape[1:], count - segments)
    if segments:
        regions = np.concatenate([regions, random_segments(rng, view.segments, segments)])
    return Regions(view, np.concatenate([view.grid_masks, regions]),
                   np.concatenate([view.boxes, grid_boxes(regions, view)]), grid_iou(view.grid_masks, regions))


class PairSampler(torch.utils.data.Dataset):
    """Frame pairs with fresh random regions, drawn from (seed, epoch, index): the same run
    gives the same regions whatever the number of loader workers."""

    def __init__(self, pairs: list[tuple[View, View]], seed: int, count: int, segment_fraction: float = 0.0):
        self.pairs, self.seed, self.count, self.epoch = pairs, seed, count, 0
        self.segment_fraction = segment_fraction

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> tuple[Regions, Regions]:
        rng = np.random.default_rng([self.seed, self.epoch, index])
        return tuple(with_random_regions(view, rng, self.count, self.segment_fraction) for view in self.pairs[index])


def retrieval_logits(source: torch.Tensor, source_view: View, target: torch.Tensor, target_regions: Regions,
                     temperature: float) -> tuple[torch.Tensor, torch.Tensor] | None:
    """Logits (K, N_t + R_t) of the K objects seen in both views against every target
    descriptor, and the index of each one's own object. A random region overlapping the
    positive (IoU > 0.3) is no negative: it is masked out."""
    target_view = target_regions.view
    common = [n for n in source_view.names if n in target_view.names]
    if not common:
        return None
    rows = [source_view.names.index(n) for n in common]
    labels = [target_view.names.index(n) for n in common]
    logits = cosine_scores(source[rows], target) / temperature
    excluded = np.zeros(logits.shape, bool)
    excluded[:, len(target_view.names):] = target_regions.overlap[labels] > 0.3
    excluded = torch.from_numpy(excluded).to(logits.device, non_blocking=True)
    return logits.masked_fill(excluded, float("-inf")), torch.tensor(labels).to(logits.device, non_blocking=True)


def pair_loss(model: ConvNetBackbone, batch: list[tuple[Regions, Regions]], config: BackboneTrainConfig,
              device: torch.device) -> tuple[torch.Tensor, int, int]:
    """InfoNCE of a batch of frame pairs, both directions: (mean loss, correct top-1, queries)."""
    features = {}
    for side in (0, 1):  # ego batch, then exo batch: one size per batch
        images = torch.from_numpy(np.stack([p[side].view.image for p in batch])).to(device, non_blocking=True)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            features[side] = model.encode(normalise(images).contiguous(memory_format=torch.channels_last))[1]
    losses, correct, queries = [], 0, 0
    for b, pair in enumerate(batch):
        descriptors = [F.normalize(pooled_descriptors(features[side][b].float(), r.masks,
                                                      scaled_cells(r, config.context_px)), dim=1)
                       for side, r in enumerate(pair)]
        for source, target in ((0, 1), (1, 0)):
            result = retrieval_logits(descriptors[source], pair[source].view, descriptors[target], pair[target],
                                      config.temperature)
            if result is None:
                continue
            logits, labels = result
            losses.append(F.cross_entropy(logits, labels, reduction="sum"))
            correct += (logits.argmax(1) == labels).sum()
            queries += len(labels)
    if not queries:
        return features[0].sum() * 0.0, 0, 0
    return torch.stack(losses).sum() / queries, int(correct), queries


def _batches(sampler: PairSampler, batch_size: int, shuffle: bool, workers: int, seed: int):
    generator = torch.Generator().manual_seed(seed)
    return torch.utils.data.DataLoader(sampler, batch_size=batch_size, shuffle=shuffle, num_workers=workers,
                                       collate_fn=list, generator=generator, persistent_workers=False)


def render_takes(config: BackboneTrainConfig, workers: int) -> list[list[tuple[View, View]]]:
    """Every take's views, rendered in `workers` processes."""
    jobs = [(config.seed * 100003 + i, f"synth-{config.seed:04d}-{i:04d}", config.frames,
             config.ego_max_side, config.exo_max_side) for i in range(config.takes)]
    if workers > 1:
        with ProcessPoolExecutor(workers) as pool:
            return list(tqdm(pool.map(render_take, jobs, chunksize=2), total=len(jobs), desc="render", unit="take"))
    return [render_take(job) for job in tqdm(jobs, desc="render", unit="take")]


def save_weights(model: ConvNetBackbone, path: Path, extra: dict) -> None:
    """Weights as ConvNetBackbone.from_file reads them, written atomically."""
    state = {k: v.detach().float().cpu() for k, v in model.state_dict().items()}
    atomic_write(path, lambda temporary: torch.save({"config": model.config, "state_dict": state, **extra}, temporary))


def train_backbone(config: BackboneTrainConfig, out: str | os.PathLike, device: str = "auto", workers: int = 0,
                   init: str | os.PathLike | None = None, progress: bool = True) -> dict:
    """Render the takes, train (from `init`'s weights if given), write the weights to `out`
    after every epoch (and `out` + .csv, the log). Returns the last epoch's record."""
    from ..matcher import resolve_device

    config.validate()
    device = resolve_device(device)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if init is not None:
        model = ConvNetBackbone.from_file(init).requires_grad_(True)
    else:
        torch.manual_seed(config.seed)
        model = ConvNetBackbone(config.channels, config.width)
    takes = render_takes(config, workers or min(16, os.cpu_count() or 1))
    train = [p for take in takes[: config.takes - config.val_takes] for p in take]
    val = [p for take in takes[config.takes - config.val_takes:] for p in take]
    model = model.to(device).to(memory_format=torch.channels_last)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    sampler = PairSampler(train, config.seed, config.random_regions, config.segment_fraction)
    loader_workers = min(8, max(0, (workers or os.cpu_count() or 1) - 1))
    schedule = Schedule(math.ceil(len(train) / config.batch_pairs) * config.epochs, config.max_minutes)
    record = {}
    with open(f"{out}.csv", "w", newline="") as log:
        writer = csv.DictWriter(log, ["epoch", "step", "train_loss", "train_top1", "val_loss", "val_top1", "minutes"])
        writer.writeheader()
        for epoch in range(config.epochs):
            sampler.epoch = epoch
            loader = _batches(sampler, config.batch_pairs, True, loader_workers, config.seed + epoch)
            bar = tqdm(loader, desc=f"epoch {epoch + 1}/{config.epochs}", disable=not progress)
            train_loss, train_top1 = train_epoch(model, optimizer, bar, schedule, config, device)
            val_loss, val_top1 = evaluate(model, val, config, device, loader_workers)
            record = dict(epoch=epoch + 1, step=schedule.step, train_loss=round(train_loss, 4),
                          train_top1=round(train_top1, 4), val_loss=round(val_loss, 4), val_top1=round(val_top1, 4),
                          minutes=round(schedule.minutes(), 2))
            writer.writerow(record)
            log.flush()
            print(record, flush=True)
            save_weights(model, out, {"train_config": asdict(config), "epoch": epoch + 1, "metrics": record})
            if schedule.done():
                if epoch + 1 < config.epochs:
                    print(f"stopped at the time limit after {record['minutes']} min, epoch {epoch + 1}", flush=True)
                break
    return record


class Schedule:
    """Cosine learning-rate progress over `total` steps, or over `max_minutes` if that ends first."""

    def __init__(self, total: int, max_minutes: float = 0.0):
        self.total, self.max_minutes, self.step, self.started = total, max_minutes, 0, time.monotonic()

    def minutes(self) -> float:
        return (time.monotonic() - self.started) / 60

    def progress(self) -> float:
        progress = self.step / max(self.total, 1)
        if self.max_minutes:
            progress = max(progress, self.minutes() / self.max_minutes)
        return min(progress, 1.0)

    def done(self) -> bool:
        return self.progress() >= 1.0


def train_epoch(model: ConvNetBackbone, optimizer: torch.optim.Optimizer, batches, schedule: Schedule,
                config: BackboneTrainConfig, device: torch.device) -> tuple[float, float]:
    """One pass (or until the schedule ends): (mean loss, top-1 accuracy) of its queries."""
    model.train()
    total, correct, queries = 0.0, 0, 0
    for batch in batches:
        if schedule.done():
            break
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(schedule.progress(), 1.0, config.lr, config.min_lr)
        loss, c, q = pair_loss(model, batch, config, device)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step += 1
        total, correct, queries = total + float(loss.detach()) * q, correct + c, queries + q
        if hasattr(batches, "set_postfix"):
            batches.set_postfix(loss=f"{total / max(queries, 1):.3f}", top1=f"{correct / max(queries, 1):.3f}")
    return total / max(queries, 1), correct / max(queries, 1)


@torch.no_grad()
def evaluate(model: ConvNetBackbone, pairs: list[tuple[View, View]], config: BackboneTrainConfig,
             device: torch.device, workers: int = 0) -> tuple[float, float]:
    """(mean InfoNCE loss, top-1 retrieval accuracy) on held-out pairs, fixed random regions."""
    model.eval()
    total, correct, queries = 0.0, 0, 0
    for batch in _batches(PairSampler(pairs, 0, config.random_regions, config.segment_fraction), config.batch_pairs, False,
                          workers, 0):
        loss, c, q = pair_loss(model, batch, config, device)
        total += float(loss) * q
        correct += c
        queries += q
    return total / max(queries, 1), correct / max(queries, 1)
