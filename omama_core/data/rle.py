"""Mask encodings of Ego-Exo4D: COCO compressed RLE, and LZString-wrapped RLE.

Two formats meet in the benchmark files:
- COCO compressed RLE, a dict ``{"size": [height, width], "counts": str}``, as in the
  processed ``annotation.json`` files and in submissions (``pred_mask``);
- ``encodedMask`` of the raw ``relations_{split}.json``: the RLE ``counts`` string wrapped by
  LZString ``compressToEncodedURIComponent``; width and height are stored beside it.

Both are encoded and decoded with the reference libraries (``pycocotools``, ``lzstring``), so
files written here read the same in the official tools.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from lzstring import LZString
from pycocotools import mask as mask_utils

from ..errors import DatasetError

_LZ = LZString()


def encode_rle(mask: np.ndarray) -> dict[str, Any]:
    """Encode an (H, W) mask (bool or 0/1) as a JSON-ready COCO RLE dict.

    Returns ``{"size": [H, W], "counts": str}`` (counts decoded to ASCII so it fits JSON).
    """
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"encode_rle expects an (H, W) mask, got shape {mask.shape}")
    # pycocotools wants Fortran-ordered uint8 (column-major runs); a bool mask is viewed as
    # uint8 without a copy, so only the reordering copies.
    data = mask.view(np.uint8) if mask.dtype == bool else (mask != 0).view(np.uint8)
    rle = mask_utils.encode(np.asfortranarray(data))
    return {"size": [int(rle["size"][0]), int(rle["size"][1])], "counts": rle["counts"].decode("ascii")}


def decode_rle(rle: dict[str, Any], where: str = "mask") -> np.ndarray:
    """Decode a COCO RLE dict (compressed str/bytes counts, or uncompressed list) to (H, W) bool.

    Raises DatasetError naming ``where`` when the dict is malformed or the counts are corrupt.
    """
    size = validate_rle(rle, where)
    counts = rle["counts"]
    try:
        if isinstance(counts, list):
            # Uncompressed RLE (a list of run lengths): convert through frPyObjects first.
            coco = mask_utils.frPyObjects({"size": size, "counts": counts}, size[0], size[1])
        else:
            coco = {"size": size, "counts": counts.encode("ascii") if isinstance(counts, str) else counts}
            # pycocotools decodes some corrupt strings to garbage without raising: check runs.
            total = _compressed_runs_total(coco["counts"])
            if total != size[0] * size[1]:
                raise ValueError(f"its runs cover {total} pixels, the size {size} has {size[0] * size[1]}")
        mask = mask_utils.decode(coco)
    except Exception as error:  # pycocotools raises several types for corrupt strings
        raise DatasetError(f"{where}: RLE counts cannot be decoded ({error})") from error
    if mask.shape != tuple(size):
        raise DatasetError(f"{where}: RLE decoded to shape {mask.shape}, its size says {size}")
    return mask.astype(bool)


def validate_rle(rle: Any, where: str = "mask") -> list[int]:
    """Check an RLE dict's structure without decoding; return its size ``[H, W]``."""
    if not isinstance(rle, dict) or "size" not in rle or "counts" not in rle:
        raise DatasetError(f"{where}: expected a COCO RLE dict with 'size' and 'counts', got {_short(rle)}")
    size = rle["size"]
    if (
        not isinstance(size, (list, tuple))
        or len(size) != 2
        or not all(isinstance(v, (int, np.integer)) and v > 0 for v in size)
    ):
        raise DatasetError(f"{where}: RLE 'size' must be [height, width] positive integers, got {size!r}")
    if not isinstance(rle["counts"], (str, bytes, list)) or len(rle["counts"]) == 0:
        raise DatasetError(f"{where}: RLE 'counts' must be a non-empty string or list")
    return [int(size[0]), int(size[1])]


def rle_area(rle: dict[str, Any]) -> int:
    """Number of foreground pixels of a compressed RLE, without decoding to an array."""
    counts = rle["counts"]
    coco = {"size": list(rle["size"]), "counts": counts.encode("ascii") if isinstance(counts, str) else counts}
    return int(mask_utils.area(coco))


def decode_encoded_mask(encoded_mask: str, width: int, height: int, where: str = "encodedMask") -> dict[str, Any]:
    """Unwrap a raw ``encodedMask`` (LZString, URI-component alphabet) into a COCO RLE dict.

    Returns ``{"size": [height, width], "counts": str}``; decode it with ``decode_rle``.
    Raises DatasetError when the LZString payload is not valid.
    """
    if not isinstance(encoded_mask, str) or not encoded_mask:
        raise DatasetError(f"{where}: encodedMask must be a non-empty string")
    try:
        counts = _LZ.decompressFromEncodedURIComponent(encoded_mask)
    except Exception as error:  # the library raises KeyError/IndexError/TypeError on bad input
        raise DatasetError(f"{where}: LZString payload cannot be decompressed ({error})") from error
    if not counts:
        raise DatasetError(f"{where}: LZString payload decompressed to nothing (corrupt encodedMask)")
    if not isinstance(width, int) or not isinstance(height, int) or width <= 0 or height <= 0:
        raise DatasetError(f"{where}: width/height must be positive integers, got {width!r}x{height!r}")
    return {"size": [height, width], "counts": counts}


def encode_lzstring_mask(mask: np.ndarray) -> dict[str, Any]:
    """Encode an (H, W) mask as a raw relations entry ``{"width", "height", "encodedMask"}``."""
    rle = encode_rle(mask)
    return {
        "width": int(mask.shape[1]),
        "height": int(mask.shape[0]),
        "encodedMask": _LZ.compressToEncodedURIComponent(rle["counts"]),
    }


def _compressed_runs_total(counts: bytes) -> int:
    """Sum of the run lengths of a COCO compressed counts string (the format's 6-bit varints,
    each run stored as a difference to the run two places back); -1 when malformed."""
    runs: list[int] = []
    position = 0
    while position < len(counts):
        value, shift, more = 0, 0, True
        while more:
            if position >= len(counts):
                return -1
            char = counts[position] - 48
            if not 0 <= char < 64:
                return -1
            value |= (char & 0x1F) << shift
            more = bool(char & 0x20)
            position += 1
            shift += 5
            if not more and char & 0x10:
                value |= -1 << shift
        if len(runs) > 2:
            value += runs[-2]
        if value < 0:
            return -1
        runs.append(value)
    return sum(runs)


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
