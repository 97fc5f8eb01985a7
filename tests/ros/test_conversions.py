"""omama_ros.conversions: every encoding, row padding, endianness, truncation, compressed."""

from __future__ import annotations

import array
import time

import numpy as np
import pytest

pytest.importorskip("sensor_msgs.msg", reason="sensor_msgs (pip: ros-sensor-msgs) is not installed")

from sensor_msgs.msg import CompressedImage, Image  # noqa: E402

from omama_ros import conversions as conv  # noqa: E402

RNG = np.random.default_rng(0)
RGB = RNG.integers(0, 256, (7, 5, 3), dtype=np.uint8)  # odd sizes: row padding matters


def as_encoding(rgb: np.ndarray, encoding: str) -> np.ndarray:
    """The RGB test image in `encoding`'s own layout (alpha 200)."""
    alpha = np.full(rgb.shape[:2] + (1,), 200, np.uint8)
    return {"rgb8": rgb, "bgr8": rgb[:, :, ::-1], "rgba8": np.concatenate([rgb, alpha], 2),
            "bgra8": np.concatenate([rgb[:, :, ::-1], alpha], 2), "mono8": rgb[:, :, :1]}[encoding]


@pytest.mark.parametrize("encoding", ["rgb8", "bgr8", "rgba8", "bgra8"])
@pytest.mark.parametrize("padding", [0, 1, 16])
def test_colour_encodings_with_row_padding(encoding, padding):
    pixels = as_encoding(RGB, encoding)
    msg = conv.array_to_image(pixels, encoding, step=pixels.shape[1] * pixels.shape[2] + padding)
    assert msg.step == RGB.shape[1] * pixels.shape[2] + padding and len(msg.data) == msg.step * msg.height
    out = conv.image_to_rgb(msg)
    assert out.dtype == np.uint8 and out.shape == RGB.shape and out.flags.c_contiguous
    np.testing.assert_array_equal(out, RGB)


@pytest.mark.parametrize("padding", [0, 3])
def test_mono8_is_repeated_to_rgb(padding):
    gray = RGB[:, :, 0]
    out = conv.image_to_rgb(conv.array_to_image(gray, "mono8", step=gray.shape[1] + padding))
    np.testing.assert_array_equal(out, np.repeat(gray[:, :, None], 3, axis=2))


@pytest.mark.parametrize("big_endian", [False, True])
def test_mono16_scaled_full_range_and_endianness(big_endian):
    values = np.array([[0, 128, 129, 257], [32896, 65278, 65535, 1000]], np.uint16)
    raw = values.astype(">u2" if big_endian else "<u2").tobytes()
    msg = Image(height=2, width=4, encoding="mono16", is_bigendian=int(big_endian), step=8,
                data=array.array("B", raw))
    out = conv.image_to_rgb(msg)
    expected = ((values.astype(np.uint32) + 128) // 257).astype(np.uint8)  # as omama_core.image_io
    np.testing.assert_array_equal(out[:, :, 0], expected)
    np.testing.assert_array_equal(out[:, :, 0], out[:, :, 2])
    assert list(expected[0]) == [0, 0, 1, 1] and expected[1, 2] == 255


def test_mono16_with_padding_roundtrip():
    values = RNG.integers(0, 65536, (3, 5), dtype=np.uint16)
    msg = conv.array_to_image(values, "mono16", step=5 * 2 + 6)
    np.testing.assert_array_equal(conv.image_to_array(msg)[:, :, 0], values)


def test_last_row_without_padding_is_accepted():
    msg = conv.array_to_image(RGB, "rgb8", step=RGB.shape[1] * 3 + 4)
    msg.data = msg.data[:-4]
    np.testing.assert_array_equal(conv.image_to_rgb(msg), RGB)


def test_truncated_data_is_reported():
    msg = conv.rgb_to_image(RGB)
    msg.data = msg.data[:-1]
    with pytest.raises(conv.TruncatedDataError, match="needs 105 bytes, got 104"):
        conv.image_to_rgb(msg)
    msg.data = array.array("B")
    with pytest.raises(conv.TruncatedDataError):
        conv.image_to_rgb(msg)


def test_bad_geometry_is_reported():
    msg = conv.rgb_to_image(RGB)
    msg.step = 10  # smaller than a 5-pixel rgb8 row
    with pytest.raises(conv.ConversionError, match="step 10 is smaller than a row"):
        conv.image_to_rgb(msg)
    with pytest.raises(conv.ConversionError, match="empty"):
        conv.image_to_rgb(Image(encoding="rgb8"))


@pytest.mark.parametrize("encoding", ["yuv422", "32FC1", "bayer_rggb8", ""])
def test_unsupported_encodings_are_named(encoding):
    msg = conv.rgb_to_image(RGB)
    msg.encoding = encoding
    with pytest.raises(conv.UnsupportedEncodingError, match="unsupported image encoding"):
        conv.image_to_rgb(msg)


def test_masks():
    mask = RNG.random((7, 5)) > 0.5
    msg = conv.mask_to_image(mask)
    assert msg.encoding == "mono8" and set(msg.data) <= {0, 255}
    np.testing.assert_array_equal(conv.mask_to_bool(msg), mask)
    msg.encoding = "8UC1"
    np.testing.assert_array_equal(conv.mask_to_bool(msg), mask)
    with pytest.raises(conv.UnsupportedEncodingError, match="masks must be mono8"):
        conv.mask_to_bool(conv.rgb_to_image(RGB))
    labels = np.array([[0, 1], [2, 255]], np.uint8)
    np.testing.assert_array_equal(conv.image_to_array(conv.labels_to_image(labels))[:, :, 0], labels)


def test_wrong_arrays_are_refused():
    with pytest.raises(conv.ConversionError):
        conv.rgb_to_image(RGB[:, :, 0])
    with pytest.raises(conv.ConversionError):
        conv.array_to_image(RGB.astype(np.uint16), "rgb8")
    with pytest.raises(conv.UnsupportedEncodingError):
        conv.rgb_to_image(RGB, encoding="rgba8")


def test_bgr8_output_and_header():
    from std_msgs.msg import Header

    head = Header(frame_id="cam")
    msg = conv.rgb_to_image(RGB, head, encoding="bgr8")
    assert msg.header.frame_id == "cam" and msg.encoding == "bgr8"
    np.testing.assert_array_equal(conv.image_to_rgb(msg), RGB)


def test_compressed_png_is_lossless_and_jpeg_close():
    image = np.kron(RNG.integers(0, 256, (8, 8, 3), dtype=np.uint8), np.ones((8, 8, 1), np.uint8))
    png = conv.rgb_to_compressed(image, "png")
    assert png.format == "png"
    np.testing.assert_array_equal(conv.compressed_to_rgb(png), image)
    jpeg = conv.rgb_to_compressed(image, "jpeg", quality=95)
    assert jpeg.format == "jpeg"
    assert np.abs(conv.compressed_to_rgb(jpeg).astype(int) - image).mean() < 8


def test_compressed_gray_and_16_bit():
    import cv2

    gray = RNG.integers(0, 256, (6, 4), dtype=np.uint8)
    msg = CompressedImage(format="png", data=array.array("B", cv2.imencode(".png", gray)[1].tobytes()))
    np.testing.assert_array_equal(conv.compressed_to_rgb(msg), np.repeat(gray[:, :, None], 3, axis=2))
    deep = np.array([[0, 257, 65535]], np.uint16)
    msg = CompressedImage(format="png", data=array.array("B", cv2.imencode(".png", deep)[1].tobytes()))
    np.testing.assert_array_equal(conv.compressed_to_rgb(msg)[0, :, 0], [0, 1, 255])


def test_compressed_faults():
    with pytest.raises(conv.TruncatedDataError, match="no data"):
        conv.compressed_to_rgb(CompressedImage(format="jpeg"))
    with pytest.raises(conv.ConversionError, match="cannot decode"):
        conv.compressed_to_rgb(CompressedImage(format="jpeg", data=b"\xff\xd8\xff garbage"))
    good = conv.rgb_to_compressed(RGB, "png")
    good.data = good.data[: len(good.data) // 2]
    with pytest.raises(conv.ConversionError):
        conv.compressed_to_rgb(good)
    with pytest.raises(conv.UnsupportedEncodingError, match="depth"):
        conv.compressed_to_rgb(CompressedImage(format="16UC1; compressedDepth png", data=b"x"))
    with pytest.raises(conv.UnsupportedEncodingError):
        conv.rgb_to_compressed(RGB, "webp")


def test_stamps_are_exact():
    ns = 1_700_000_123_456_789_012
    stamp = conv.ns_to_stamp(ns)
    assert (stamp.sec, stamp.nanosec) == (1_700_000_123, 456_789_012)
    assert conv.stamp_to_ns(stamp) == ns


def test_full_hd_conversion_is_fast():
    """msg.data is filled from bytes, not element by element (that takes seconds at 1080p)."""
    image = RNG.integers(0, 256, (1080, 1920, 3), dtype=np.uint8)
    conv.image_to_rgb(conv.rgb_to_image(image))  # warm-up
    start = time.perf_counter()
    msg = conv.rgb_to_image(image)
    out = conv.image_to_rgb(msg)
    elapsed = time.perf_counter() - start
    np.testing.assert_array_equal(out, image)
    assert elapsed < 0.5, f"1080p rgb8 round trip took {elapsed:.2f} s"
