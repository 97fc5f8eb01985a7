"""Evaluation plots (matplotlib, Agg): IoU histogram, IoU by object size, best/worst cases.

    iou_histogram.png     IoU of the samples visible in the target, one panel per direction
    iou_by_size.png       mean IoU per ground-truth size bin (share of the evaluation image)
    cases_{direction}.png the best and worst samples: source image with the query mask,
                          target image with the prediction (red) and the ground truth (green)
"""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import matplotlib

matplotlib.use("Agg")  # files only: never needs a display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from .data.egoexo import CorrespondenceDataset  # noqa: E402
from .data.rle import decode_rle  # noqa: E402
from .errors import OmamaError  # noqa: E402
from .metrics import resize_nearest  # noqa: E402

SIZE_BINS = np.array([0.0, 0.001, 0.003, 0.01, 0.03, 0.1, 1.0])  # GT area / image area


def write_plots(out: str | os.PathLike, scores: dict, predictions: dict, datasets: dict[str, CorrespondenceDataset],
                cases: int = 4) -> list[Path]:
    """Write the plots for {direction: [SampleScore]}; case grids need datasets with images.
    Returns the written paths."""
    out = Path(out)
    written = [_iou_histogram(out / "iou_histogram.png", scores), _iou_by_size(out / "iou_by_size.png", scores)]
    for direction, rows in scores.items():
        dataset = datasets.get(direction)
        if dataset is not None and dataset.root is not None and predictions.get(direction):
            path = _cases(out / f"cases_{direction}.png", rows, predictions[direction], dataset, cases)
            if path is not None:
                written.append(path)
    return written


def _iou_histogram(path: Path, scores: dict) -> Path:
    fig, axes = plt.subplots(1, len(scores), figsize=(5 * len(scores), 3.5), squeeze=False)
    for ax, (direction, rows) in zip(axes[0], scores.items()):
        values = [s.iou for s in rows if s.gt_exists]
        ax.hist(values, bins=np.linspace(0, 1, 21), color="#4a7ab5", edgecolor="white")
        mean = f"mean {np.mean(values):.3f}" if values else "no visible samples"
        ax.set(title=f"{direction}: IoU ({len(values)} samples, {mean})", xlabel="IoU", ylabel="samples", xlim=(0, 1))
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _iou_by_size(path: Path, scores: dict) -> Path:
    fig, ax = plt.subplots(figsize=(7, 3.8))
    labels = [f"{lo * 100:g}-{hi * 100:g}%" for lo, hi in zip(SIZE_BINS[:-1], SIZE_BINS[1:])]
    width = 0.8 / max(len(scores), 1)
    for k, (direction, rows) in enumerate(scores.items()):
        visible = [s for s in rows if s.gt_exists]
        share = np.array([s.gt_area / (s.eval_height * s.eval_width) for s in visible])
        iou = np.array([s.iou for s in visible])
        which = np.clip(np.digitize(share, SIZE_BINS) - 1, 0, len(labels) - 1)
        means = [iou[which == b].mean() if np.any(which == b) else 0.0 for b in range(len(labels))]
        counts = [int(np.sum(which == b)) for b in range(len(labels))]
        x = np.arange(len(labels)) + k * width
        bars = ax.bar(x, means, width, label=direction)
        for bar, count in zip(bars, counts):
            ax.text(bar.get_x() + bar.get_width() / 2, bar.get_height() + 0.01, str(count), ha="center", fontsize=7)
    ax.set_xticks(np.arange(len(labels)) + 0.4 - width / 2, labels)
    ax.set(xlabel="ground-truth area (share of the image)", ylabel="mean IoU", ylim=(0, 1.1),
           title="IoU by object size (numbers: samples)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _cases(path: Path, rows: list, predictions: dict, dataset: CorrespondenceDataset, count: int) -> Path | None:
    visible = sorted((s for s in rows if s.gt_exists), key=lambda s: (s.iou, -s.location_error))
    chosen = [("best", s) for s in visible[::-1][:count]] + [("worst", s) for s in visible[:count]]
    panels = []
    for label, s in chosen:
        try:
            panels.append((label, s, *_case_images(s, predictions, dataset)))
        except OmamaError:
            continue  # an unreadable frame only costs its panel
    if not panels:
        return None
    fig, axes = plt.subplots(len(panels), 2, figsize=(9, 2.6 * len(panels)), squeeze=False)
    for (label, s, source, target), (ax_s, ax_t) in zip(panels, axes):
        ax_s.imshow(source)
        ax_s.set_title(f"{label}: {s.take} {s.object_name} f{s.frame} ({s.source_camera})", fontsize=8)
        ax_t.imshow(target)
        ax_t.set_title(f"IoU {s.iou:.2f}  LE {s.location_error:.3f}  conf {s.confidence:.2f} ({s.target_camera})",
                       fontsize=8)
        for ax in (ax_s, ax_t):
            ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=72)
    plt.close(fig)
    return path


def _case_images(s, predictions: dict, dataset: CorrespondenceDataset) -> tuple[np.ndarray, np.ndarray]:
    """Source with the query tinted blue; target with the prediction tinted red and the ground
    truth outlined green (both at the target image size)."""
    source = dataset.load_image(s.take, s.source_camera, s.frame)
    target = dataset.load_image(s.take, s.target_camera, s.frame)
    query = dataset.load_mask(s.take, s.object_name, s.source_camera, s.frame, source.shape[:2])
    gt = dataset.load_mask(s.take, s.object_name, s.target_camera, s.frame, target.shape[:2])
    key = (s.take, s.object_name, f"{s.source_camera}_{s.target_camera}", s.frame)
    pred = resize_nearest(decode_rle(predictions[key].rle, "prediction"), target.shape[:2])
    source = _tint(source, query, (40, 90, 255))
    target = _tint(target, pred, (255, 40, 40))
    contours, _ = cv2.findContours(gt.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    cv2.drawContours(target, contours, -1, (40, 255, 40), max(2, target.shape[1] // 300))
    return _shrink(source), _shrink(target)


def _shrink(image: np.ndarray, long_side: int = 480) -> np.ndarray:
    """Panels need no more than the evaluation resolution (keeps the PNG small and fast)."""
    scale = long_side / max(image.shape[:2])
    if scale >= 1:
        return image
    size = (round(image.shape[1] * scale), round(image.shape[0] * scale))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)


def _tint(image: np.ndarray, mask: np.ndarray, color: tuple[int, int, int]) -> np.ndarray:
    out = image.copy()
    out[mask] = (0.5 * out[mask] + 0.5 * np.array(color)).astype(np.uint8)
    return out
