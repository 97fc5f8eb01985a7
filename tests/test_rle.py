"""COCO RLE and LZString mask encodings (omama_core.data.rle) against the reference libraries."""

from __future__ import annotations

import numpy as np
import pytest
from lzstring import LZString
from pycocotools import mask as mask_utils

from omama_core.data.rle import decode_encoded_mask, decode_rle, encode_lzstring_mask, encode_rle, rle_area
from omama_core.errors import DatasetError


def _random_masks(count: int = 40):
    rng = np.random.default_rng(7)
    for _ in range(count):
        height, width = rng.integers(1, 70, 2)
        yield rng.random((height, width)) < rng.uniform(0.0, 1.0)


def test_encode_matches_pycocotools_and_round_trips():
    for mask in _random_masks():
        rle = encode_rle(mask)
        reference = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
        assert rle["size"] == [mask.shape[0], mask.shape[1]]
        assert rle["counts"] == reference["counts"].decode("ascii")
        assert isinstance(rle["counts"], str)  # JSON-ready
        decoded = decode_rle(rle)
        assert decoded.dtype == bool and np.array_equal(decoded, mask)
        assert rle_area(rle) == mask.sum()


def test_hand_made_uncompressed_rle():
    # Column-major runs: 2 zeros, 3 ones, 1 zero on a 2x3 image.
    mask = decode_rle({"size": [2, 3], "counts": [2, 3, 1]})
    expected = np.array([[False, True, True], [False, True, False]])
    assert np.array_equal(mask, expected)


def test_lzstring_wrapping_is_the_reference_librarys():
    mask = np.zeros((30, 40), bool)
    mask[5:20, 8:33] = True
    entry = encode_lzstring_mask(mask)
    assert entry["width"] == 40 and entry["height"] == 30
    # the raw file stores LZString(compressToEncodedURIComponent(counts))
    counts = LZString().decompressFromEncodedURIComponent(entry["encodedMask"])
    assert counts == encode_rle(mask)["counts"]
    rle = decode_encoded_mask(entry["encodedMask"], entry["width"], entry["height"])
    assert rle["size"] == [30, 40]
    assert np.array_equal(decode_rle(rle), mask)


@pytest.mark.parametrize("rle", [
    {"size": [5, 6], "counts": "0"},          # pycocotools decodes this to garbage silently
    {"size": [5, 6], "counts": "zzzz"},
    {"size": [5, 6], "counts": ""},
    {"size": [5], "counts": "abc"},
    {"size": [5, -6], "counts": "abc"},
    {"counts": "abc"},
    "not a dict",
])
def test_corrupt_rle_raises_dataset_error(rle):
    with pytest.raises(DatasetError):
        decode_rle(rle, where="take/obj/cam/30")


def test_counts_for_another_size_are_rejected():
    rle = encode_rle(np.ones((4, 4), bool))
    with pytest.raises(DatasetError, match="cover 16 pixels"):
        decode_rle({"size": [5, 4], "counts": rle["counts"]})


@pytest.mark.parametrize("payload", ["@@@@", "", None])
def test_corrupt_lzstring_raises_dataset_error(payload):
    with pytest.raises(DatasetError):
        decode_encoded_mask(payload, 10, 10)
