"""Reading and converting images and masks: everything ends as HxWx3 uint8 RGB / bool."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from omama_core.errors import InputError
from omama_core.image_io import (as_mask, as_mask_stack, read_image, read_mask, to_rgb_uint8, write_image,
                                 write_mask)


def gradient_rgb(height: int = 20, width: int = 30) -> np.ndarray:
    """An RGB image whose three channels all differ, so a channel swap is visible."""
    y, x = np.mgrid[0:height, 0:width]
    return np.stack([x * 255 // (width - 1), y * 255 // (height - 1), 255 - x * 255 // (width - 1)],
                    axis=2).astype(np.uint8)


# ---- read_image -----------------------------------------------------------------------------

@pytest.mark.parametrize("extension", [".png", ".jpg"])
def test_pure_red_written_by_opencv_reads_as_red_in_channel_0(tmp_path, extension):
    bgr = np.zeros((16, 24, 3), np.uint8)
    bgr[:, :, 2] = 255  # OpenCV's channel order: this is pure red
    path = tmp_path / f"red{extension}"
    assert cv2.imwrite(str(path), bgr)
    image = read_image(path)
    assert image.shape == (16, 24, 3) and image.dtype == np.uint8
    assert image[:, :, 0].min() >= 250  # JPEG may shift by a level or two
    assert image[:, :, 1:].max() <= 5


def test_png_round_trip_is_exact_and_rgb(tmp_path):
    rgb = gradient_rgb()
    write_image(tmp_path / "g.png", rgb)
    np.testing.assert_array_equal(read_image(tmp_path / "g.png"), rgb)
    # and the file on disk is BGR, as any other OpenCV program expects
    np.testing.assert_array_equal(cv2.imread(str(tmp_path / "g.png"))[:, :, ::-1], rgb)


def test_jpeg_reads_close_to_what_was_written(tmp_path):
    rgb = gradient_rgb(40, 60)
    write_image(tmp_path / "g.jpg", rgb)
    image = read_image(tmp_path / "g.jpg")
    assert image.shape == rgb.shape
    assert np.abs(image.astype(int) - rgb.astype(int)).mean() < 4


def test_16_bit_png_is_scaled_to_8_bit(tmp_path):
    rgb16 = gradient_rgb().astype(np.uint16) * 257  # 8-bit levels in the 16-bit range
    rgb16[0, 0] = (65535, 0, 32896)
    assert cv2.imwrite(str(tmp_path / "deep.png"), rgb16[:, :, ::-1])
    image = read_image(tmp_path / "deep.png")
    assert image.dtype == np.uint8
    np.testing.assert_array_equal(image[1:], (rgb16[1:] // 257).astype(np.uint8))
    assert tuple(image[0, 0]) == (255, 0, 128)


def test_16_bit_grayscale_png(tmp_path):
    gray16 = np.linspace(0, 65535, 12 * 10).reshape(12, 10).astype(np.uint16)
    assert cv2.imwrite(str(tmp_path / "gray16.png"), gray16)
    image = read_image(tmp_path / "gray16.png")
    assert image.shape == (12, 10, 3) and image.dtype == np.uint8
    assert image[0, 0, 0] == 0 and image[-1, -1, 0] == 255
    np.testing.assert_array_equal(image[:, :, 0], image[:, :, 2])


def test_grayscale_png_becomes_three_equal_channels(tmp_path):
    gray = np.arange(0, 200, dtype=np.uint8).reshape(10, 20)
    assert cv2.imwrite(str(tmp_path / "gray.png"), gray)
    image = read_image(tmp_path / "gray.png")
    assert image.shape == (10, 20, 3)
    for channel in range(3):
        np.testing.assert_array_equal(image[:, :, channel], gray)


def test_rgba_png_drops_alpha_and_keeps_rgb_order(tmp_path):
    rgb = gradient_rgb()
    alpha = np.full(rgb.shape[:2], 7, np.uint8)  # nearly transparent: alpha must not be applied
    bgra = np.dstack([rgb[:, :, ::-1], alpha])
    assert cv2.imwrite(str(tmp_path / "rgba.png"), bgra)
    image = read_image(tmp_path / "rgba.png")
    assert image.shape == rgb.shape
    np.testing.assert_array_equal(image, rgb)


def test_non_image_file_is_an_input_error_naming_the_path(tmp_path):
    path = tmp_path / "notes.png"
    path.write_text("this is not an image")
    with pytest.raises(InputError) as error:
        read_image(path)
    assert str(path) in str(error.value)


def test_empty_file_is_an_input_error(tmp_path):
    path = tmp_path / "empty.jpg"
    path.write_bytes(b"")
    with pytest.raises(InputError, match="empty.jpg"):
        read_image(path)


def test_missing_file_is_an_input_error_naming_the_path(tmp_path):
    path = tmp_path / "nowhere" / "missing.png"
    with pytest.raises(InputError) as error:
        read_image(path)
    assert str(path) in str(error.value) and "not found" in str(error.value)
    with pytest.raises(InputError) as error:
        read_mask(path)
    assert str(path) in str(error.value) and "not found" in str(error.value)


def test_directory_is_not_an_image(tmp_path):
    with pytest.raises(InputError, match="not found"):
        read_image(tmp_path)


# ---- masks ----------------------------------------------------------------------------------

def test_read_mask_any_non_zero_pixel_is_true(tmp_path):
    values = np.zeros((8, 9), np.uint8)
    values[1, 1], values[2, 3], values[7, 8] = 1, 128, 255
    assert cv2.imwrite(str(tmp_path / "m.png"), values)
    mask = read_mask(tmp_path / "m.png")
    assert mask.dtype == bool and mask.shape == (8, 9)
    np.testing.assert_array_equal(mask, values != 0)


def test_read_mask_of_a_colour_image_is_true_where_any_channel_is_set(tmp_path):
    bgr = np.zeros((6, 6, 3), np.uint8)
    bgr[0, 0, 0] = 3  # blue only
    bgr[5, 5, 2] = 200  # red only
    assert cv2.imwrite(str(tmp_path / "colour.png"), bgr)
    mask = read_mask(tmp_path / "colour.png")
    assert mask.shape == (6, 6)
    assert mask[0, 0] and mask[5, 5] and mask.sum() == 2


def test_write_mask_round_trip(tmp_path):
    mask = np.zeros((11, 13), bool)
    mask[2:7, 3:9] = True
    write_mask(tmp_path / "sub" / "mask.png", mask)  # creates the folder
    on_disk = cv2.imread(str(tmp_path / "sub" / "mask.png"), cv2.IMREAD_UNCHANGED)
    assert on_disk.ndim == 2 and set(np.unique(on_disk)) == {0, 255}
    np.testing.assert_array_equal(read_mask(tmp_path / "sub" / "mask.png"), mask)


def test_write_to_an_unknown_extension_is_an_input_error(tmp_path):
    with pytest.raises(InputError, match="mask.nope"):
        write_mask(tmp_path / "mask.nope", np.ones((4, 4), bool))


def test_write_below_a_file_is_an_input_error(tmp_path):
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(InputError, match="overlay.png"):
        write_image(tmp_path / "file.txt" / "overlay.png", gradient_rgb())


def test_as_mask_and_as_mask_stack():
    assert as_mask(np.array([[0, 2], [0, 0]], np.int32)).tolist() == [[False, True], [False, False]]
    single = as_mask_stack(np.eye(3, dtype=np.uint8))
    assert single.shape == (1, 3, 3) and single.dtype == bool
    assert as_mask_stack(np.zeros((4, 3, 5))).shape == (4, 3, 5)
    with pytest.raises(InputError, match="shape"):
        as_mask_stack(np.zeros((2, 2, 3, 5), bool))
    with pytest.raises(InputError, match="shape"):
        as_mask(np.zeros(5, bool))


# ---- to_rgb_uint8 ---------------------------------------------------------------------------

def test_float_image_in_0_1_is_scaled_and_rounded():
    image = np.array([[[0.0, 0.5, 1.0], [-0.2, 1.7, 0.25]]], np.float32)
    out = to_rgb_uint8(image)
    assert out.dtype == np.uint8
    assert out.tolist() == [[[0, 128, 255], [0, 255, 64]]]  # 0.5 -> 127.5 rounds up; out of range clipped


def test_float64_with_nan_does_not_produce_garbage():
    image = np.full((2, 2, 3), np.nan)
    assert to_rgb_uint8(image).max() == 0


def test_uint16_full_range_maps_to_full_range():
    image = np.array([[0, 257, 32896, 65535]], np.uint16)
    assert to_rgb_uint8(image)[0, :, 0].tolist() == [0, 1, 128, 255]


def test_bool_and_hxwx1_images():
    gray = to_rgb_uint8(np.array([[True, False]]))
    assert gray.tolist() == [[[255, 255, 255], [0, 0, 0]]]
    single = to_rgb_uint8(np.full((3, 4, 1), 9, np.uint8))
    assert single.shape == (3, 4, 3) and (single == 9).all()


def test_rgba_array_drops_alpha_and_result_is_contiguous():
    rgba = np.zeros((5, 6, 4), np.uint8)
    rgba[..., 0], rgba[..., 3] = 50, 0
    out = to_rgb_uint8(rgba)
    assert out.shape == (5, 6, 3) and out.flags["C_CONTIGUOUS"]
    assert (out[..., 0] == 50).all() and (out[..., 1:] == 0).all()


def test_uint8_rgb_passes_through_unchanged():
    rgb = gradient_rgb()
    np.testing.assert_array_equal(to_rgb_uint8(rgb), rgb)


@pytest.mark.parametrize("shape", [(4, 4, 2), (4, 4, 5), (2, 4, 4, 3), (7,)])
def test_bad_shapes_are_named(shape):
    with pytest.raises(InputError, match=r"source image.*shape"):
        to_rgb_uint8(np.zeros(shape, np.uint8), "source image")


def test_empty_image_is_an_input_error():
    with pytest.raises(InputError, match="empty"):
        to_rgb_uint8(np.zeros((0, 5, 3), np.uint8))


def test_unsupported_pixel_type_is_named():
    with pytest.raises(InputError, match="int64"):
        to_rgb_uint8(np.zeros((3, 3, 3), np.int64))
