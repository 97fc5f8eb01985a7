"""Reading and normalising images and masks.

Everything downstream takes images as HxWx3 uint8 RGB and masks as bool arrays. This module
is the one place that turns files and other array formats (grayscale, RGBA, 16-bit, float)
into that form, with errors that say what was wrong.
"""

from __future__ import annotations

import os

import cv2
import numpy as np

from .errors import InputError


def to_rgb_uint8(image: np.ndarray, name: str = "image") -> np.ndarray:
    """Convert an image array to HxWx3 uint8 RGB.

    Accepts HxW (gray), HxWx1, HxWx3 (RGB), HxWx4 (RGBA, alpha dropped) in uint8, uint16
    (scaled by 1/257, full range to full range), bool, or float in [0, 1].
    """
    image = np.asarray(image)
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] not in (3, 4)):
        raise InputError(f"{name}: expected an HxW, HxWx3 or HxWx4 image, got shape {image.shape}")
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise InputError(f"{name}: image is empty (shape {image.shape})")
    if image.dtype == np.uint16:
        image = (image.astype(np.uint32) + 128) // 257
    elif image.dtype == bool:
        image = image.astype(np.uint8) * 255
    elif np.issubdtype(image.dtype, np.floating):
        image = np.clip(np.nan_to_num(image) * 255.0 + 0.5, 0, 255)
    elif image.dtype != np.uint8:
        raise InputError(f"{name}: unsupported pixel type {image.dtype} (use uint8, uint16 or float)")
    image = image.astype(np.uint8, copy=False)
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    elif image.shape[2] == 4:
        image = image[:, :, :3]
    return np.ascontiguousarray(image)


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Read an image file (any format OpenCV reads, 8 or 16 bit) as HxWx3 uint8 RGB."""
    raw = _read_raw(path, "image")
    if raw.ndim == 3:
        # OpenCV gives BGR(A); reorder before the shared conversion.
        raw = raw[:, :, [2, 1, 0, 3][: raw.shape[2]]] if raw.shape[2] in (3, 4) else raw
    return to_rgb_uint8(raw, name=str(path))


def read_mask(path: str | os.PathLike) -> np.ndarray:
    """Read a mask image as an HxW bool array: any non-zero pixel (in any channel) is True."""
    raw = _read_raw(path, "mask")
    return as_mask(raw, name=str(path))


def as_mask(mask: np.ndarray, name: str = "mask") -> np.ndarray:
    """Convert a mask array (HxW or HxWxC, any numeric type) to HxW bool."""
    mask = np.asarray(mask)
    if mask.ndim == 3:
        mask = mask.any(axis=2) if mask.dtype == bool else (mask != 0).any(axis=2)
    if mask.ndim != 2:
        raise InputError(f"{name}: expected an HxW mask, got shape {mask.shape}")
    return mask.astype(bool, copy=False)


def as_mask_stack(masks: np.ndarray, name: str = "source_masks") -> np.ndarray:
    """Convert (H, W) or (K, H, W) masks to a (K, H, W) bool array."""
    masks = np.asarray(masks)
    if masks.ndim == 2:
        masks = masks[None]
    if masks.ndim != 3:
        raise InputError(f"{name}: expected (H, W) or (K, H, W) masks, got shape {masks.shape}")
    return masks.astype(bool, copy=False)


def write_mask(path: str | os.PathLike, mask: np.ndarray) -> None:
    """Write a bool mask as a 0/255 single-channel PNG."""
    _write(path, mask.astype(np.uint8) * 255)


def write_image(path: str | os.PathLike, image: np.ndarray) -> None:
    """Write an HxWx3 uint8 RGB image (format from the file extension)."""
    _write(path, cv2.cvtColor(image, cv2.COLOR_RGB2BGR))


def _write(path: str | os.PathLike, array: np.ndarray) -> None:
    directory = os.path.dirname(os.fspath(path))
    try:
        if directory:
            os.makedirs(directory, exist_ok=True)
        written = cv2.imwrite(os.fspath(path), array)
    except (OSError, cv2.error):  # OpenCV raises for an extension it has no writer for
        written = False
    if not written:
        raise InputError(f"could not write {path} (unknown extension or unwritable folder)")


def _read_raw(path: str | os.PathLike, what: str) -> np.ndarray:
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise InputError(f"{what} file not found: {path}")
    data = np.fromfile(path, dtype=np.uint8)
    image = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
    if image is None:
        raise InputError(f"{what} file {path} is not an image OpenCV can read (corrupt or another format)")
    return image
