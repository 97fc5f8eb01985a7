"""FastSAM's full-resolution masks, computed only where and when they are needed.

FastSAM (a one-class YOLOv8-seg) predicts per detection a box and 32 coefficients of
prototype masks on a grid a quarter of its (letterboxed) input. A detection's mask at the
image's own size ("retina masks") is its logit map coefficients @ prototypes, resampled
bilinearly to the image, thresholded at 0 and cleared outside the box. ultralytics resamples
every logit map to the whole image and then clears all but the box; on the CPU that was most
of FastSAM's post-processing (1.1-1.4 s of 1.9 s per FastSAM-s call at 640 on 2 cores).
Bilinear resampling is separable: any pixels of a map are rows[ys] @ logits @ cols[xs].T.
So on the CPU the maps are kept (MaskLogits) and evaluated only on the pixels asked for,
inside the box: the encoder's grid for every candidate, full resolution for the answers. On
CUDA all masks are resampled whole, in chunks, without host round trips (retina_masks).

ultralytics resamples in two steps (an integer upsampling, then to the image) and its exact
steps change between versions; here the one bilinear map from the prototype grid to the
image pixels is used. The masks agree with ultralytics' to a fraction of a pixel along
boundaries (tests/test_fastsam.py measures it).
"""

from __future__ import annotations

import numpy as np
import torch

DENSE_CHUNK = 64  # masks resampled at once on CUDA: bounds the (chunk, H, W) float intermediate


def letterbox_content(input_hw: tuple[int, int], image_hw: tuple[int, int]) -> tuple[int, int, int, int]:
    """Where the image sits inside ultralytics' letterboxed network input: (top, left,
    height, width) in input pixels. The image is scaled by min(Hin / H, Win / W) to
    round(H * gain) x round(W * gain) and centred, the padding split as ultralytics'
    LetterBox does (half on each side, the top/left half rounded down)."""
    (input_h, input_w), (height, width) = input_hw, image_hw
    gain = min(input_h / height, input_w / width)
    content_h, content_w = max(round(height * gain), 1), max(round(width * gain), 1)
    top, left = round((input_h - content_h) / 2 - 0.1), round((input_w - content_w) / 2 - 0.1)
    return top, left, content_h, content_w


def linear_weights(positions: np.ndarray, size: int) -> np.ndarray:
    """(P, size) float32 weights of 1-D linear interpolation of a signal of `size` cells at
    `positions` (P,), in cell units (cell k's centre at k), clamped to the first and last
    cell as torch's interpolate(align_corners=False) does."""
    positions = np.clip(np.asarray(positions, np.float64), 0.0, size - 1)
    low = np.floor(positions).astype(np.int64)
    frac = positions - low
    weights = np.zeros((len(positions), size), np.float64)
    rows = np.arange(len(positions))
    np.add.at(weights, (rows, low), 1.0 - frac)
    np.add.at(weights, (rows, np.minimum(low + 1, size - 1)), frac)
    return weights.astype(np.float32)


def prototype_to_image(input_hw: tuple[int, int], image_hw: tuple[int, int], prototype_hw: tuple[int, int]
                       ) -> tuple[np.ndarray, np.ndarray]:
    """The bilinear map from the prototype grid (mh, mw) to the image pixels (H, W) through
    the letterbox: rows (H, mh) and cols (W, mw) float32, so that a logit map L (mh, mw) at
    the image's size is rows @ L @ cols.T."""
    top, left, content_h, content_w = letterbox_content(input_hw, image_hw)
    (height, width), (proto_h, proto_w) = image_hw, prototype_hw
    input_h, input_w = input_hw
    ys = top + (np.arange(height) + 0.5) * content_h / height  # pixel centres in input pixels
    xs = left + (np.arange(width) + 0.5) * content_w / width
    return (linear_weights(ys * proto_h / input_h - 0.5, proto_h),
            linear_weights(xs * proto_w / input_w - 0.5, proto_w))


def support(weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For a (P, n) interpolation matrix: per output p, the first and one past the last input
    cell it reads (each output reads one or two neighbouring cells), (P,) int64 each."""
    nonzero = weights != 0
    return nonzero.argmax(axis=1), nonzero.shape[1] - nonzero[:, ::-1].argmax(axis=1)


def box_pixels(boxes: torch.Tensor, image_hw: tuple[int, int]) -> torch.Tensor:
    """(N, 4) float xyxy boxes -> (N, 4) int64 (x0, y0, x1, y1) on the same device: the
    pixels i with x0 <= i < x1 (ultralytics keeps pixel i when box_x0 <= i < box_x1), within
    the image."""
    height, width = image_hw
    edges = torch.ceil(boxes.double()).long()
    limits = torch.tensor([width, height, width, height], device=boxes.device)
    return torch.minimum(edges.clamp(min=0), limits)


class MaskLogits:
    """FastSAM's masks kept as their logit maps on the prototype grid, any pixels of them
    computed on demand: the matcher needs each candidate on the encoder's grid (a sixteenth
    of the pixels) and only the answers at full resolution.

    logits: (N, mh, mw) float32; rows (H, mh) and cols (W, mw) float32, the bilinear map to
    the image (prototype_to_image); boxes (N, 4) int64 (x0, y0, x1, y1) pixel ranges
    (box_pixels), outside which a mask is False.
    """

    def __init__(self, logits: torch.Tensor, rows: np.ndarray, cols: np.ndarray, boxes: np.ndarray):
        self.logits, self.rows, self.cols, self.boxes = logits, rows, cols, boxes
        self.image_hw = (len(rows), len(cols))
        (self._row_first, self._row_last), (self._col_first, self._col_last) = support(rows), support(cols)
        self._row_ends, self._col_ends = _run_ends(self._row_first), _run_ends(self._col_first)

    def __len__(self) -> int:
        return len(self.logits)

    def subset(self, keep: np.ndarray) -> "MaskLogits":
        """The masks selected by a boolean mask or an index array."""
        keep = np.asarray(keep)
        return MaskLogits(self.logits[torch.from_numpy(keep)], self.rows, self.cols, self.boxes[keep])

    def sample(self, rows: np.ndarray, cols: np.ndarray, which: np.ndarray | None = None) -> np.ndarray:
        """(n, R, C) bool: the masks (all, or those indexed by `which`) at pixel rows (R,) and
        columns (C,), both non-decreasing: equal to masks[which][:, rows][:, :, cols]."""
        which = np.arange(len(self)) if which is None else np.asarray(which)
        rows, cols = np.asarray(rows), np.asarray(cols)
        out = np.zeros((len(which), len(rows), len(cols)), bool)
        row_weights, col_weights = torch.from_numpy(self.rows[rows]), torch.from_numpy(self.cols[cols])
        for slot, index in enumerate(which.tolist()):
            x0, y0, x1, y1 = self.boxes[index].tolist()
            i0, i1 = np.searchsorted(rows, [y0, y1]).tolist()  # the requested rows inside the box
            j0, j1 = np.searchsorted(cols, [x0, x1]).tolist()
            if i1 > i0 and j1 > j0:
                out[slot, i0:i1, j0:j1] = self._values(index, row_weights[i0:i1], col_weights[j0:j1],
                                                       rows[i0], rows[i1 - 1], cols[j0], cols[j1 - 1]) > 0
        return out

    def dense(self) -> np.ndarray:
        """(N, H, W) bool, every pixel."""
        return self.sample(np.arange(self.image_hw[0]), np.arange(self.image_hw[1]))

    def nonempty(self) -> np.ndarray:
        """(N,) bool: whether each mask has a pixel. A bilinear value is a weighted mean of
        prototype-grid logits, so a box whose cells are all <= 0 is empty; otherwise the
        pixels around its largest cell usually show a positive value. Failing both, within
        one pair of neighbouring cells the value is linear in the pixel's position, so its
        maximum over the box lies on the first or last pixel row (and column) of each such
        run: those pixels decide (exact up to float rounding)."""
        found = np.zeros(len(self), bool)
        for index, (x0, y0, x1, y1) in enumerate(self.boxes.tolist()):
            if x1 <= x0 or y1 <= y0:
                continue
            r0, r1 = self._row_first[y0], self._row_last[y1 - 1]
            c0, c1 = self._col_first[x0], self._col_last[x1 - 1]
            cells = self.logits[index, r0:r1, c0:c1]
            if cells.max() <= 0:
                continue
            peak_row, peak_col = divmod(int(cells.argmax()), cells.shape[1])
            rows = _pixels_reading(self._row_first, r0 + peak_row, y0, y1)
            cols = _pixels_reading(self._col_first, c0 + peak_col, x0, x1)
            if len(rows) and len(cols) and self._any_positive(index, rows, cols):
                found[index] = True
            else:
                found[index] = self._any_positive(index, _ends_within(self._row_ends, y0, y1),
                                                  _ends_within(self._col_ends, x0, x1))
        return found

    def _any_positive(self, index: int, rows: np.ndarray, cols: np.ndarray) -> bool:
        """Whether mask `index` has a positive logit at pixel rows x columns (sorted)."""
        values = self._values(index, torch.from_numpy(self.rows[rows]), torch.from_numpy(self.cols[cols]),
                              rows[0], rows[-1], cols[0], cols[-1])
        return bool((values > 0).any())

    def _values(self, index: int, row_weights: torch.Tensor, col_weights: torch.Tensor,
                top: int, bottom: int, left: int, right: int) -> torch.Tensor:
        """Logits of mask `index` at the pixels whose weights are given, (R, mh) and (C, mw),
        the first and last of them at pixel rows top, bottom and columns left, right: (R, C)
        float32, reading only the prototype cells those pixels read."""
        r0, r1 = self._row_first[top], self._row_last[bottom]
        c0, c1 = self._col_first[left], self._col_last[right]
        return row_weights[:, r0:r1] @ self.logits[index, r0:r1, c0:c1] @ col_weights[:, c0:c1].T


def _run_ends(first: np.ndarray) -> np.ndarray:
    """Pixels that start or end a run of pixels interpolating the same pair of cells (the same
    first cell, `first` per pixel), sorted."""
    change = np.flatnonzero(np.diff(first)) if len(first) > 1 else np.zeros(0, np.int64)
    return np.unique(np.concatenate([[0, len(first) - 1], change, change + 1]))


def _pixels_reading(first: np.ndarray, cell: int, start: int, stop: int) -> np.ndarray:
    """The pixels in [start, stop) that read `cell` (their first cell is cell - 1 or cell;
    `first` per pixel, non-decreasing)."""
    low, high = np.searchsorted(first, cell - 1, side="left"), np.searchsorted(first, cell, side="right")
    return np.arange(max(low, start), min(high, stop))


def _ends_within(ends: np.ndarray, start: int, stop: int) -> np.ndarray:
    """The run ends inside [start, stop), plus start and stop - 1 (a box cuts runs)."""
    inside = ends[np.searchsorted(ends, start):np.searchsorted(ends, stop)]
    return np.unique(np.concatenate([[start, stop - 1], inside]))


def mask_logits(prototypes: torch.Tensor, coefficients: torch.Tensor, boxes: torch.Tensor,
                input_hw: tuple[int, int], image_hw: tuple[int, int]) -> MaskLogits:
    """FastSAM's masks of one image as MaskLogits (on the CPU).

    Args:
        prototypes: (C, mh, mw) prototype masks.
        coefficients: (N, C) each detection's coefficients.
        boxes: (N, 4) float xyxy in image pixels (ultralytics' scale_boxes of the detections).
        input_hw: the letterboxed network input (Hin, Win).
        image_hw: the image (H, W).
    """
    channels, proto_h, proto_w = prototypes.shape
    logits = (coefficients.float().cpu() @ prototypes.float().cpu().reshape(channels, -1))
    rows, cols = prototype_to_image(input_hw, image_hw, (proto_h, proto_w))
    return MaskLogits(logits.reshape(len(coefficients), proto_h, proto_w), rows, cols,
                      box_pixels(boxes.cpu(), image_hw).numpy())


def retina_masks(prototypes: torch.Tensor, coefficients: torch.Tensor, boxes: torch.Tensor,
                 input_hw: tuple[int, int], image_hw: tuple[int, int]) -> torch.Tensor:
    """FastSAM's masks at the image size, all at once on the prototypes' device (the CUDA
    way: a few large kernels, no host sync; the same arithmetic as MaskLogits).

    Args: as mask_logits.
    Returns:
        (N, H, W) bool: logit > 0 inside the box, False outside.
    """
    height, width = image_hw
    count, (channels, proto_h, proto_w) = len(coefficients), prototypes.shape
    device = prototypes.device
    logits = (coefficients.float() @ prototypes.float().reshape(channels, -1)).reshape(count, proto_h, proto_w)
    row_weights, col_weights = prototype_to_image(input_hw, image_hw, (proto_h, proto_w))
    rows, cols = torch.from_numpy(row_weights).to(device), torch.from_numpy(col_weights).to(device)
    pixels = box_pixels(boxes, image_hw)
    masks = torch.empty((count, height, width), dtype=torch.bool, device=device)
    inside_rows, inside_cols = torch.arange(height, device=device), torch.arange(width, device=device)
    for start in range(0, count, DENSE_CHUNK):
        stop = min(start + DENSE_CHUNK, count)
        x0, y0, x1, y1 = (pixels[start:stop, k, None, None] for k in range(4))  # each (n, 1, 1)
        masks[start:stop] = ((rows @ logits[start:stop] @ cols.T > 0)
                             & (inside_rows[:, None] >= y0) & (inside_rows[:, None] < y1)
                             & (inside_cols >= x0) & (inside_cols < x1))
    return masks


def candidate_predictor():
    """ultralytics' FastSAM predictor with the masks of `retina_masks`: NMS, boxes and FastSAM's
    own box adjustments stay ultralytics'. A class, as `Model.predict(predictor=...)` takes."""
    from ultralytics.engine.results import Results
    from ultralytics.models.fastsam import FastSAMPredictor
    from ultralytics.utils import ops

    class CandidatePredictor(FastSAMPredictor):
        def construct_result(self, pred, img, orig_img, img_path, proto):
            image_hw, input_hw = tuple(orig_img.shape[:2]), tuple(img.shape[2:])
            if pred.shape[0] == 0:
                return Results(orig_img, path=img_path, names=self.model.names, boxes=pred[:, :6], masks=None)
            pred[:, :4] = ops.scale_boxes(input_hw, pred[:, :4], orig_img.shape)
            masks, logits = None, None
            if proto.device.type == "cuda":
                masks = retina_masks(proto, pred[:, 6:], pred[:, :4], input_hw, image_hw)
                keep = masks.flatten(1).any(1)
            else:
                logits = mask_logits(proto, pred[:, 6:], pred[:, :4], input_hw, image_hw)
                keep = torch.from_numpy(logits.nonempty())
            if not bool(keep.all()):  # as ultralytics: a detection whose mask is empty is dropped
                pred = pred[keep]
                masks = masks[keep] if masks is not None else None
                logits = logits.subset(keep.numpy()) if logits is not None else None
            result = Results(orig_img, path=img_path, names=self.model.names, boxes=pred[:, :6], masks=masks)
            result.mask_logits = logits  # read by FastSAMProposals
            return result

    return CandidatePredictor
