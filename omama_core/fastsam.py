"""FastSAM's full-resolution masks, computed only where they can be non-zero.

FastSAM (a one-class YOLOv8-seg) predicts per detection a box and 32 coefficients of
prototype masks on a grid a quarter of its (letterboxed) input. A detection's mask at the
image's own size ("retina masks") is its logit map coefficients @ prototypes, resampled
bilinearly to the image, thresholded at 0 and cleared outside the box. ultralytics resamples
every logit map to the whole image and then clears all but the box; on the CPU that is most
of FastSAM's post-processing (1.3 s of 1.9 s per FastSAM-s call at 640 on 2 cores,
benchmarks/README.md). Bilinear resampling is separable, so here the map is resampled only
on the box's rows and columns: rows[y0:y1] @ logits @ cols[x0:x1].T. On CUDA the maps are
resampled whole, in chunks, without host round trips (the arithmetic is the same).

ultralytics resamples in two steps (an integer upsampling, then to the image) and its exact
steps change between versions; here the one bilinear map from the prototype grid to the
image pixels is used. The masks agree with ultralytics' to a fraction of a pixel along
boundaries (tests/test_fastsam.py measures it).
"""

from __future__ import annotations

import numpy as np
import torch

PROTOTYPE_STRIDE = 4  # YOLOv8-seg's prototypes are at 1/4 of the network input
DENSE_CHUNK = 64  # masks resampled at once on CUDA: bounds the (chunk, H, W) float intermediate


def letterbox_content(input_hw: tuple[int, int], image_hw: tuple[int, int]) -> tuple[float, float, int, int]:
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


def support(weights: np.ndarray) -> tuple[list[int], list[int]]:
    """For a (P, n) interpolation matrix: per output p, the first and one past the last input
    cell it reads (each output reads one or two neighbouring cells)."""
    nonzero = weights != 0
    first = nonzero.argmax(axis=1)
    last = nonzero.shape[1] - nonzero[:, ::-1].argmax(axis=1)
    return first.tolist(), last.tolist()


def box_pixels(boxes: torch.Tensor, image_hw: tuple[int, int]) -> torch.Tensor:
    """(N, 4) float xyxy boxes -> (N, 4) int64 (x0, y0, x1, y1) on the same device: the
    pixels i with x0 <= i < x1 (ultralytics keeps pixel i when box_x0 <= i < box_x1), within
    the image."""
    height, width = image_hw
    edges = torch.ceil(boxes.double()).long()
    limits = torch.tensor([width, height, width, height], device=boxes.device)
    return torch.minimum(edges.clamp(min=0), limits)


def retina_masks(prototypes: torch.Tensor, coefficients: torch.Tensor, boxes: torch.Tensor,
                 input_hw: tuple[int, int], image_hw: tuple[int, int], dense: bool | None = None
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """FastSAM's masks at the image size.

    Args:
        prototypes: (C, mh, mw) prototype masks of one image.
        coefficients: (N, C) each detection's coefficients.
        boxes: (N, 4) float xyxy in image pixels (ultralytics' scale_boxes of the detections).
        input_hw: the letterboxed network input (Hin, Win).
        image_hw: the image (H, W).
        dense: resample whole maps in chunks (the CUDA way) or only the boxes (the CPU way);
            None: as the device suggests. Same arithmetic, same masks.
    Returns:
        masks (N, H, W) bool, logit > 0 inside the box and False outside, and which masks are
        not empty (N,) bool, both on the prototypes' device.
    """
    height, width = image_hw
    count, (channels, proto_h, proto_w) = len(coefficients), prototypes.shape
    device = prototypes.device
    if count == 0:
        return torch.zeros((0, height, width), dtype=torch.bool, device=device), torch.zeros(0, dtype=torch.bool)
    logits = (coefficients.float() @ prototypes.float().reshape(channels, -1)).reshape(count, proto_h, proto_w)
    row_weights, col_weights = prototype_to_image(input_hw, image_hw, (proto_h, proto_w))
    rows, cols = torch.from_numpy(row_weights).to(device), torch.from_numpy(col_weights).to(device)
    pixels = box_pixels(boxes, image_hw)
    if device.type == "cuda" if dense is None else dense:  # whole maps, a chunk at a time: a few large kernels, no host sync
        masks = torch.empty((count, height, width), dtype=torch.bool, device=device)
        inside_rows, inside_cols = torch.arange(height, device=device), torch.arange(width, device=device)
        for start in range(0, count, DENSE_CHUNK):
            stop = min(start + DENSE_CHUNK, count)
            x0, y0, x1, y1 = (pixels[start:stop, k, None, None] for k in range(4))  # each (n, 1, 1)
            masks[start:stop] = ((rows @ logits[start:stop] @ cols.T > 0)
                                 & (inside_rows[:, None] >= y0) & (inside_rows[:, None] < y1)
                                 & (inside_cols >= x0) & (inside_cols < x1))
        return masks, masks.flatten(1).any(1)
    # on the CPU each map only on its box, from the prototype cells the box reads; untouched
    # zero pages cost nothing (numpy's zeros are calloc'd)
    masks = torch.from_numpy(np.zeros((count, height, width), bool))
    nonempty = torch.zeros(count, dtype=torch.bool)
    (row_first, row_last), (col_first, col_last) = support(row_weights), support(col_weights)
    for index, (x0, y0, x1, y1) in enumerate(pixels.tolist()):
        if x1 > x0 and y1 > y0:
            r0, r1, c0, c1 = row_first[y0], row_last[y1 - 1], col_first[x0], col_last[x1 - 1]
            values = rows[y0:y1, r0:r1] @ logits[index, r0:r1, c0:c1] @ cols[x0:x1, c0:c1].T
            inside = values > 0
            masks[index, y0:y1, x0:x1] = inside
            nonempty[index] = inside.any()
    return masks, nonempty


def candidate_predictor():
    """ultralytics' FastSAM predictor with the masks of `retina_masks`: NMS, boxes and FastSAM's
    own box adjustments stay ultralytics'. A class, as `Model.predict(predictor=...)` takes."""
    from ultralytics.engine.results import Results
    from ultralytics.models.fastsam import FastSAMPredictor
    from ultralytics.utils import ops

    class CandidatePredictor(FastSAMPredictor):
        def construct_result(self, pred, img, orig_img, img_path, proto):
            image_hw = tuple(orig_img.shape[:2])
            if pred.shape[0] == 0:
                return Results(orig_img, path=img_path, names=self.model.names, boxes=pred[:, :6], masks=None)
            pred[:, :4] = ops.scale_boxes(img.shape[2:], pred[:, :4], orig_img.shape)
            masks, keep = retina_masks(proto, pred[:, 6:], pred[:, :4], tuple(img.shape[2:]), image_hw)
            if not bool(keep.all()):  # as ultralytics: a detection whose mask is empty is dropped
                pred, masks = pred[keep], masks[keep]
            return Results(orig_img, path=img_path, names=self.model.names, boxes=pred[:, :6], masks=masks)

    return CandidatePredictor
