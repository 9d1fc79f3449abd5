"""load_image: formats, EXIF orientation, bit depth, alpha, and every kind of bad input."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from pp_helpers import encode, jpeg_with_orientation, png_header_only

from preprocessing.image_io import InvalidImageError, header_size, load_image, sniff_format


def marked_image() -> np.ndarray:
    """60x40 gray image with a red block in the top-left corner."""
    img = np.full((40, 60, 3), 90, np.uint8)
    img[:10, :20] = (255, 0, 0)
    return img


def red_bbox(img: np.ndarray) -> tuple[int, int, int, int]:
    ys, xs = np.nonzero((img[..., 0] > 180) & (img[..., 1] < 80))
    return int(ys.min()), int(xs.min()), int(ys.max()), int(xs.max())


# EXIF orientation -> where the top-left 10x20 block lands (rows, cols of the decoded image).
ORIENTATIONS = {
    1: ((40, 60), "top-left"),
    3: ((40, 60), "bottom-right"),  # rotated 180
    6: ((60, 40), "top-right"),  # rotate 90 clockwise to display
    8: ((60, 40), "bottom-left"),  # rotate 90 counter-clockwise to display
}


@pytest.mark.parametrize("orientation", sorted(ORIENTATIONS))
def test_exif_orientation_is_applied(orientation):
    jpeg = jpeg_with_orientation(
        encode(marked_image(), ".jpg", [cv2.IMWRITE_JPEG_QUALITY, 95]), orientation
    )
    img = load_image(jpeg)
    shape, corner = ORIENTATIONS[orientation]
    assert img.shape == (*shape, 3)
    y0, x0, y1, x1 = red_bbox(img)
    h, w = shape
    top, left = y0 < 3, x0 < 3
    bottom, right = y1 > h - 4, x1 > w - 4
    assert {
        "top-left": top and left,
        "bottom-right": bottom and right,
        "top-right": top and right,
        "bottom-left": bottom and left,
    }[corner]


@pytest.mark.parametrize("ext", [".png", ".webp", ".bmp", ".jpg"])
def test_formats_decode_to_rgb_uint8(ext):
    params = [cv2.IMWRITE_WEBP_QUALITY, 101] if ext == ".webp" else []
    img = load_image(encode(marked_image(), ext, params))
    assert img.dtype == np.uint8 and img.shape == (40, 60, 3)
    r, g, b = (int(v) for v in img[4, 8])
    assert r > 200 and g < 60 and b < 60  # red stays red: RGB order


def test_grayscale_16bit_and_alpha_become_rgb_uint8():
    gray16 = (np.arange(40 * 60, dtype=np.uint32).reshape(40, 60) * 27).astype(np.uint16)
    img = load_image(encode(gray16, ".png"))
    assert img.shape == (40, 60, 3) and img.dtype == np.uint8
    assert abs(int(img[39, 59, 1]) - int(gray16[39, 59]) / 257) <= 1
    assert (img[..., 0] == img[..., 2]).all()
    bgra = np.zeros((4, 4, 4), np.uint8)
    bgra[..., 2] = 200  # red in BGR order
    bgra[..., 3] = 0  # fully transparent -> white
    bgra[0, 0, 3] = 255  # one opaque red pixel
    img = load_image(encode(bgra, ".png"))
    assert tuple(img[0, 0]) == (200, 0, 0) and tuple(img[3, 3]) == (255, 255, 255)


def test_header_size_matches_decoded_size():
    for ext in (".png", ".jpg", ".bmp", ".webp"):
        data = encode(marked_image(), ext)
        assert header_size(data, sniff_format(data)) == (60, 40), ext


def test_file_path_and_bytes_give_the_same_image(tmp_path):
    data = encode(marked_image(), ".png")
    path = tmp_path / "a.png"
    path.write_bytes(data)
    np.testing.assert_array_equal(load_image(path), load_image(data))
    np.testing.assert_array_equal(load_image(str(path)), load_image(data))


def bad_inputs() -> dict[str, tuple[bytes, str]]:
    jpeg = encode(np.full((64, 64, 3), 128, np.uint8), ".jpg")
    png = encode(np.full((64, 64, 3), 128, np.uint8), ".png")
    return {
        "empty": (b"", "empty file"),
        "text renamed .jpg": (b"just some text, not an image\n", "not a supported image"),
        "gif (unsupported)": (b"GIF89a" + b"\0" * 40, "not a supported image"),
        "truncated jpeg": (jpeg[: len(jpeg) // 2], "truncated JPEG"),
        "truncated png": (png[:60], "corrupt or truncated PNG"),
        "corrupt png": (png[:40] + bytes(len(png) - 40), "corrupt or truncated PNG"),
        "zero size": (png_header_only(0, 0), "zero size"),
        "huge (header only)": (png_header_only(20_000, 20_000), "too large"),
        "jpeg header only": (jpeg[:4], "corrupt or truncated JPEG header"),
    }


@pytest.mark.parametrize("case", sorted(bad_inputs()))
def test_bad_input_raises_with_file_name(tmp_path, case):
    data, message = bad_inputs()[case]
    path = tmp_path / "face.jpg"
    path.write_bytes(data)
    with pytest.raises(InvalidImageError, match=message) as info:
        load_image(path)
    assert str(path) in str(info.value)


def test_max_pixels_is_checked_before_decoding():
    data = encode(marked_image(), ".jpg")
    with pytest.raises(InvalidImageError, match="60x40 = 2400 pixels, limit 2399"):
        load_image(data, max_pixels=2399)
    assert load_image(data, max_pixels=2400).shape == (40, 60, 3)


def test_missing_file(tmp_path):
    with pytest.raises(InvalidImageError, match="cannot read file"):
        load_image(tmp_path / "nope.png")
