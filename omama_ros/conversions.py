"""sensor_msgs <-> numpy, as pure functions (no node state, no cv_bridge).

Images go to the model as HxWx3 uint8 RGB; masks as HxW bool. Messages are built with
`array.array('B', ...)` for their data: assigning a numpy array to `msg.data` copies it
element by element and is very slow. The message classes are imported lazily, so the
numpy half of this module works without ROS installed.
"""

from __future__ import annotations

import array

import cv2
import numpy as np

# encoding -> (channels, bytes per channel)
ENCODINGS = {
    "rgb8": (3, 1), "bgr8": (3, 1), "rgba8": (4, 1), "bgra8": (4, 1),
    "mono8": (1, 1), "mono16": (1, 2), "8UC1": (1, 1),
}
IMAGE_ENCODINGS = ("rgb8", "bgr8", "rgba8", "bgra8", "mono8", "mono16")
MASK_ENCODINGS = ("mono8", "8UC1")


class ConversionError(ValueError):
    """A message cannot be converted (bad sizes, truncated data, undecodable bytes)."""


class UnsupportedEncodingError(ConversionError):
    """The message's encoding is not one this module converts."""


class TruncatedDataError(ConversionError):
    """The message carries fewer bytes than its height, width and step need."""


# ---- stamps ---------------------------------------------------------------------------------
def stamp_to_ns(stamp) -> int:
    """builtin_interfaces/Time -> integer nanoseconds (exact, no float rounding)."""
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


def ns_to_stamp(ns: int):
    """Integer nanoseconds -> builtin_interfaces/Time."""
    from builtin_interfaces.msg import Time

    sec, nanosec = divmod(int(ns), 1_000_000_000)
    return Time(sec=sec, nanosec=nanosec)


# ---- sensor_msgs/Image -> numpy ---------------------------------------------------------------
def image_to_array(msg) -> np.ndarray:
    """sensor_msgs/Image -> (H, W, C) array in the message's own channel order.

    uint8 for 8-bit encodings, native-endian uint16 for mono16. Honours `step` (row
    padding) and `is_bigendian`. Raises UnsupportedEncodingError or TruncatedDataError.
    """
    encoding = msg.encoding
    if encoding not in ENCODINGS:
        raise UnsupportedEncodingError(
            f"unsupported image encoding {encoding!r}; supported: {', '.join(sorted(ENCODINGS))}")
    channels, depth = ENCODINGS[encoding]
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    row_bytes = width * channels * depth
    if height == 0 or width == 0:
        raise ConversionError(f"empty {encoding} image ({width}x{height})")
    if step < row_bytes:
        raise ConversionError(f"{encoding} image {width}x{height}: step {step} is smaller than a row "
                              f"({row_bytes} bytes)")
    buffer = _bytes_of(msg.data)
    # The last row's padding may be left out; anything shorter is truncated.
    needed = step * (height - 1) + row_bytes
    if buffer.size < needed:
        raise TruncatedDataError(f"{encoding} image {width}x{height} (step {step}) needs {needed} bytes, "
                                 f"got {buffer.size}")
    rows = np.lib.stride_tricks.as_strided(buffer, shape=(height, row_bytes), strides=(step, 1),
                                           writeable=False)
    if depth == 2:
        order = ">" if msg.is_bigendian else "<"
        pixels = np.ascontiguousarray(rows).view(f"{order}u2").astype(np.uint16, copy=False)
    else:
        pixels = rows
    return pixels.reshape(height, width, channels)


def _bytes_of(data) -> np.ndarray:
    """A message's uint8[] field (array.array, bytes or list) as a flat uint8 array, no copy
    where the field supports the buffer protocol."""
    if isinstance(data, (bytes, bytearray, memoryview, array.array, np.ndarray)):
        return np.frombuffer(data, dtype=np.uint8)
    return np.asarray(data, dtype=np.uint8).reshape(-1)


def image_to_rgb(msg) -> np.ndarray:
    """sensor_msgs/Image (rgb8, bgr8, rgba8, bgra8, mono8, mono16) -> HxWx3 uint8 RGB.

    mono16 is scaled full range to full range (value / 257, rounded), as omama_core does.
    """
    if msg.encoding not in IMAGE_ENCODINGS:
        raise UnsupportedEncodingError(
            f"unsupported image encoding {msg.encoding!r}; supported: {', '.join(IMAGE_ENCODINGS)}")
    return _to_rgb(image_to_array(msg), msg.encoding)


def mask_to_bool(msg) -> np.ndarray:
    """sensor_msgs/Image mono8 (or 8UC1) mask -> HxW bool, non-zero pixels True."""
    if msg.encoding not in MASK_ENCODINGS:
        raise UnsupportedEncodingError(
            f"unsupported mask encoding {msg.encoding!r}; masks must be {' or '.join(MASK_ENCODINGS)}")
    return image_to_array(msg)[:, :, 0] != 0


def _to_rgb(pixels: np.ndarray, encoding: str) -> np.ndarray:
    """(H, W, C) pixels in `encoding`'s channel order -> contiguous HxWx3 uint8 RGB."""
    if pixels.dtype == np.uint16:
        pixels = ((pixels.astype(np.uint32) + 128) // 257).astype(np.uint8)
    if pixels.shape[2] == 1:
        return np.ascontiguousarray(np.repeat(pixels, 3, axis=2))
    if encoding.startswith("bgr"):
        return np.ascontiguousarray(pixels[:, :, 2::-1])
    return np.ascontiguousarray(pixels[:, :, :3])


# ---- sensor_msgs/CompressedImage -> numpy ------------------------------------------------------
def compressed_to_rgb(msg) -> np.ndarray:
    """sensor_msgs/CompressedImage (jpeg or png, 8 or 16 bit) -> HxWx3 uint8 RGB."""
    fmt = msg.format.lower()
    if "compresseddepth" in fmt:
        raise UnsupportedEncodingError(f"unsupported compressed format {msg.format!r} (depth images)")
    buffer = _bytes_of(msg.data)
    if buffer.size == 0:
        raise TruncatedDataError(f"compressed image ({msg.format!r}) has no data")
    decoded = cv2.imdecode(buffer, cv2.IMREAD_UNCHANGED)
    if decoded is None:
        raise ConversionError(f"cannot decode compressed image with format {msg.format!r} "
                              f"({buffer.size} bytes): corrupt, truncated or not jpeg/png")
    if decoded.ndim == 2:
        decoded = decoded[:, :, None]
    encoding = "bgr" if decoded.shape[2] in (3, 4) else "mono"  # OpenCV decodes to BGR(A)
    return _to_rgb(decoded, encoding)


# ---- numpy -> messages ------------------------------------------------------------------------
def array_to_image(pixels: np.ndarray, encoding: str, header=None, step: int | None = None):
    """(H, W[, C]) array already in `encoding`'s layout -> sensor_msgs/Image.

    `step` larger than a row pads each row with zeros (used by tests); mono16 is written
    little-endian.
    """
    from sensor_msgs.msg import Image

    if encoding not in ENCODINGS:
        raise UnsupportedEncodingError(f"unsupported image encoding {encoding!r}")
    channels, depth = ENCODINGS[encoding]
    pixels = np.asarray(pixels)
    if pixels.ndim == 2:
        pixels = pixels[:, :, None]
    expected_dtype = np.uint16 if depth == 2 else np.uint8
    if pixels.ndim != 3 or pixels.shape[2] != channels or pixels.dtype != expected_dtype:
        raise ConversionError(f"{encoding} needs an (H, W, {channels}) {np.dtype(expected_dtype).name} array, "
                              f"got {pixels.shape} {pixels.dtype}")
    height, width = pixels.shape[:2]
    row = pixels.astype(pixels.dtype.newbyteorder("<"), copy=False).reshape(height, width * channels)
    raw = row.view(np.uint8)
    step = raw.shape[1] if step is None else int(step)
    if step < raw.shape[1]:
        raise ConversionError(f"step {step} is smaller than a row ({raw.shape[1]} bytes)")
    if step > raw.shape[1]:
        raw = np.pad(raw, ((0, 0), (0, step - raw.shape[1])))
    msg = Image(height=height, width=width, encoding=encoding, is_bigendian=0, step=step)
    if header is not None:
        msg.header = header
    msg.data = array.array("B", np.ascontiguousarray(raw).tobytes())
    return msg


def rgb_to_image(rgb: np.ndarray, header=None, encoding: str = "rgb8"):
    """HxWx3 uint8 RGB -> sensor_msgs/Image in rgb8 (default) or bgr8."""
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ConversionError(f"expected an HxWx3 RGB image, got shape {rgb.shape}")
    if encoding == "bgr8":
        rgb = rgb[:, :, ::-1]
    elif encoding != "rgb8":
        raise UnsupportedEncodingError(f"rgb_to_image writes rgb8 or bgr8, not {encoding!r}")
    return array_to_image(rgb, encoding, header)


def mask_to_image(mask: np.ndarray, header=None):
    """HxW bool mask -> mono8 sensor_msgs/Image (255 = object)."""
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ConversionError(f"expected an HxW mask, got shape {mask.shape}")
    return array_to_image((mask != 0).astype(np.uint8) * 255, "mono8", header)


def labels_to_image(labels: np.ndarray, header=None):
    """HxW uint8 label image (0 = background) -> mono8 sensor_msgs/Image."""
    labels = np.asarray(labels)
    if labels.ndim != 2 or labels.dtype != np.uint8:
        raise ConversionError(f"expected an HxW uint8 label image, got {labels.shape} {labels.dtype}")
    return array_to_image(labels, "mono8", header)


def rgb_to_compressed(rgb: np.ndarray, fmt: str = "jpeg", header=None, quality: int = 90):
    """HxWx3 uint8 RGB -> sensor_msgs/CompressedImage ("jpeg" or "png")."""
    from sensor_msgs.msg import CompressedImage

    extension = {"jpeg": ".jpg", "jpg": ".jpg", "png": ".png"}.get(fmt)
    if extension is None:
        raise UnsupportedEncodingError(f"unsupported compressed format {fmt!r}; use jpeg or png")
    params = [cv2.IMWRITE_JPEG_QUALITY, int(quality)] if extension == ".jpg" else []
    ok, encoded = cv2.imencode(extension, np.ascontiguousarray(np.asarray(rgb)[:, :, ::-1]), params)
    if not ok:
        raise ConversionError(f"OpenCV could not encode a {rgb.shape} image as {fmt}")
    msg = CompressedImage(format="jpeg" if extension == ".jpg" else "png")
    if header is not None:
        msg.header = header
    msg.data = array.array("B", encoded.tobytes())
    return msg
