"""numpy <-> the rosbags message classes of a bag (sensor_msgs and omama_ros types).

Only what writing and reading bags needs on the ROS-free side: the node decodes images with
omama_ros.conversions, which accepts these messages too (same field names).
"""

from __future__ import annotations

import cv2
import numpy as np

from ..errors import DatasetError
from .layout import NS
from .typestore import COMPRESSED_IMAGE, IMAGE, message_class


def stamp(ns: int):
    """Integer nanoseconds -> builtin_interfaces/msg/Time."""
    sec, nanosec = divmod(int(ns), NS)
    return message_class("builtin_interfaces/msg/Time")(sec=sec, nanosec=nanosec)


def stamp_ns(time) -> int:
    """builtin_interfaces/msg/Time -> integer nanoseconds."""
    return int(time.sec) * NS + int(time.nanosec)


def header(ns: int, frame_id: str):
    return message_class("std_msgs/msg/Header")(stamp=stamp(ns), frame_id=frame_id)


def image(pixels: np.ndarray, encoding: str, head) -> object:
    """(H, W, C) uint8 already in `encoding`'s channel order -> sensor_msgs/msg/Image."""
    pixels = np.ascontiguousarray(pixels, dtype=np.uint8)
    height, width = pixels.shape[:2]
    channels = 1 if pixels.ndim == 2 else pixels.shape[2]
    return message_class(IMAGE)(header=head, height=height, width=width, encoding=encoding, is_bigendian=0,
                                step=width * channels, data=pixels.reshape(-1))


def rgb_image(rgb: np.ndarray, head):
    """HxWx3 uint8 RGB -> rgb8 Image."""
    return image(rgb, "rgb8", head)


def mask_image(mask: np.ndarray, head):
    """(H, W) bool -> mono8 Image, 255 = object."""
    return image(np.asarray(mask, bool).astype(np.uint8) * 255, "mono8", head)


def compressed_image(rgb: np.ndarray, fmt: str, head):
    """HxWx3 uint8 RGB -> CompressedImage ("png": lossless, "jpeg": quality 95)."""
    extension, params = {"png": (".png", []), "jpeg": (".jpg", [cv2.IMWRITE_JPEG_QUALITY, 95])}[fmt]
    ok, encoded = cv2.imencode(extension, np.ascontiguousarray(rgb[:, :, ::-1]), params)
    if not ok:
        raise DatasetError(f"OpenCV could not encode a {rgb.shape} image as {fmt}")
    return message_class(COMPRESSED_IMAGE)(header=head, format=fmt, data=encoded.reshape(-1))


def mask_of(msg, where: str) -> np.ndarray:
    """mono8 (or 8UC1) Image -> (H, W) bool; DatasetError naming `where` when unusable."""
    if msg.encoding not in ("mono8", "8UC1"):
        raise DatasetError(f"{where}: mask encoding {msg.encoding!r}, expected mono8")
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    data = np.frombuffer(memoryview(msg.data), np.uint8) if not isinstance(msg.data, np.ndarray) else msg.data
    if height == 0 or width == 0 or step < width or data.size < step * (height - 1) + width:
        raise DatasetError(f"{where}: mask {width}x{height} (step {step}) has {data.size} bytes")
    rows = np.lib.stride_tricks.as_strided(data, shape=(height, width), strides=(step, 1))
    return rows != 0
