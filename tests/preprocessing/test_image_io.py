"""load_image: formats, EXIF orientation, bit depth, alpha, and every kind of bad input."""

from __future__ import annotations

import io
import struct
import zlib

import cv2
import numpy as np
import pytest
from PIL import Image, ImageOps, PngImagePlugin
from pp_helpers import encode, jpeg_with_orientation, png_header_only

from preprocessing.image_io import (
    InvalidImageError,
    apply_orientation,
    header_size,
    load_image,
    sniff_format,
    tiff_orientation,
)


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


# EXIF orientation -> the stored pixels of an upright image, from the tag's definition (row 0
# and column 0 of the stored image are the visual ...): 1 top/left, 2 top/right, 3 bottom/right,
# 4 bottom/left, 5 left/top, 6 right/top, 7 right/bottom, 8 left/bottom. Each test file is
# also checked against Pillow's ImageOps.exif_transpose, an independent implementation.
STORED = {
    1: lambda a: a,
    2: lambda a: a[:, ::-1],
    3: lambda a: a[::-1, ::-1],
    4: lambda a: a[::-1],
    5: lambda a: a.swapaxes(0, 1),
    6: lambda a: np.rot90(a, 1),
    7: lambda a: a[::-1, ::-1].swapaxes(0, 1),
    8: lambda a: np.rot90(a, -1),
}
PIL_OPTIONS = {"JPEG": {"quality": 95}, "PNG": {}, "WEBP": {"lossless": True}}


@pytest.fixture(scope="module")
def upright(astronaut) -> np.ndarray:
    """A 48x64 crop of a real photo (face, helmet edge): no orientation looks like another."""
    return np.ascontiguousarray(astronaut[60:108, 170:234])


def pil_encode(image: np.ndarray, fmt: str, orientation: int | None = None, **options) -> bytes:
    """Encode an RGB array with Pillow, with an EXIF orientation tag unless None."""
    if orientation is not None:
        exif = Image.Exif()
        exif[0x0112] = orientation
        options["exif"] = exif
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(image)).save(buf, fmt, **options)
    return buf.getvalue()


def mean_abs_diff(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean())


def test_orientations_of_the_crop_differ(upright):
    variants = [np.ascontiguousarray(STORED[o](upright)) for o in range(1, 9)]
    for i, a in enumerate(variants):
        for b in variants[i + 1 :]:
            assert a.shape != b.shape or mean_abs_diff(a, b) > 15  # JPEG tolerance below is 3


@pytest.mark.parametrize("orientation", range(1, 9))
@pytest.mark.parametrize("fmt", sorted(PIL_OPTIONS))
def test_exif_orientation_gives_the_upright_photo(upright, fmt, orientation):
    data = pil_encode(STORED[orientation](upright), fmt, orientation, **PIL_OPTIONS[fmt])
    reference = np.asarray(ImageOps.exif_transpose(Image.open(io.BytesIO(data))).convert("RGB"))
    img = load_image(data)
    assert img.shape == upright.shape
    if fmt == "JPEG":
        assert mean_abs_diff(img, upright) < 3
        assert mean_abs_diff(reference, upright) < 3
    else:
        np.testing.assert_array_equal(img, upright)
        np.testing.assert_array_equal(reference, upright)


def png_with_chunk(png: bytes, kind: bytes, payload: bytes, *, crc: int | None = None) -> bytes:
    """Insert a chunk right after IHDR (CRC computed unless given)."""
    crc = zlib.crc32(kind + payload) if crc is None else crc
    chunk = struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", crc)
    return png[:33] + chunk + png[33:]


def tiff_block(orientation: int, order: str = "<", kind: int = 3) -> bytes:
    """A TIFF header and IFD0 with one Orientation entry (SHORT or LONG)."""
    head = (b"II" if order == "<" else b"MM") + struct.pack(order + "HI", 42, 8)
    value = struct.pack(order + ("HH" if kind == 3 else "I"), orientation, *([0] * (kind == 3)))
    return head + struct.pack(order + "HHHI", 1, 0x0112, kind, 1) + value + bytes(4)


def raw_profile(exif: bytes) -> str:
    """ImageMagick's "Raw profile type exif" text: name, length, hex in lines of 72."""
    hexed = exif.hex()
    lines = [hexed[i : i + 72] for i in range(0, len(hexed), 72)]
    return "\nexif\n" + f"{len(exif):8d}\n" + "\n".join(lines) + "\n"


@pytest.mark.parametrize(
    "exif, expected",
    [
        (tiff_block(6, "<"), 6),
        (tiff_block(8, ">"), 8),
        (tiff_block(3, "<", kind=4), 3),
        (b"Exif\x00\x00" + tiff_block(5, ">"), 5),
        (tiff_block(9), 1),
        (tiff_block(0), 1),
        (tiff_block(6)[:12], 1),  # IFD cut off
        (b"MM\x00*\x00\x00\x03\xe8", 1),  # IFD0 offset past the end
        (b"XX\x00*\x00\x00\x00\x08", 1),
        (b"", 1),
    ],
)
def test_tiff_orientation(exif, expected):
    assert tiff_orientation(exif) == expected


def test_little_endian_exif_in_png_and_raw_profiles(upright):
    png = pil_encode(STORED[6](upright), "PNG")
    np.testing.assert_array_equal(load_image(png_with_chunk(png, b"eXIf", tiff_block(6))), upright)
    exif = b"Exif\x00\x00" + tiff_block(6)
    for zip_ in (False, True):  # tEXt, zTXt
        info = PngImagePlugin.PngInfo()
        info.add_text("Raw profile type exif", raw_profile(exif), zip=zip_)
        data = pil_encode(STORED[6](upright), "PNG", pnginfo=info)
        assert (b"zTXt" if zip_ else b"tEXt") in data
        np.testing.assert_array_equal(load_image(data), upright)


def corrupt_exif_files(stored: np.ndarray) -> dict[str, bytes]:
    png = pil_encode(stored, "PNG")
    webp = pil_encode(stored, "WEBP", 1, lossless=True)
    jpeg = pil_encode(stored, "JPEG", quality=95)
    garbage = b"Exif\x00\x00" + b"\xde\xad\xbe\xef" * 8
    at = webp.index(b"EXIF") + 8  # overwrite the payload, keep the chunk size
    (size,) = struct.unpack_from("<I", webp, at - 4)
    assert size <= len(garbage)
    webp_garbage = webp[:at] + garbage[:size] + webp[at + size :]
    app1 = b"\xff\xe1" + struct.pack(">H", len(garbage) + 2) + garbage
    bad_profile = PngImagePlugin.PngInfo()
    bad_profile.add_text("Raw profile type exif", "\nexif\n      30\nnot hex at all\n", zip=True)
    return {
        "png: eXIf garbage": png_with_chunk(png, b"eXIf", garbage),
        "png: eXIf IFD past the end": png_with_chunk(png, b"eXIf", b"MM\x00*\x00\x00\x03\xe8"),
        "png: eXIf orientation 9": png_with_chunk(png, b"eXIf", tiff_block(9)),
        "png: eXIf bad CRC": png_with_chunk(png, b"eXIf", tiff_block(6), crc=1234),
        "png: zTXt raw profile, bad hex": pil_encode(stored, "PNG", pnginfo=bad_profile),
        "png: zTXt not zlib": png_with_chunk(png, b"zTXt", b"Raw profile type exif\x00\x00junk"),
        "webp: EXIF garbage": webp_garbage,
        "jpeg: APP1 garbage": jpeg[:2] + app1 + jpeg[2:],
    }


@pytest.mark.parametrize("case", sorted(corrupt_exif_files(np.zeros((2, 3, 3), np.uint8))))
def test_corrupt_exif_is_ignored(upright, case):
    stored = STORED[6](upright)  # as stored: any orientation applied would change the shape
    img = load_image(corrupt_exif_files(stored)[case])
    assert img.shape == stored.shape
    assert mean_abs_diff(img, stored) < 3


def test_apply_orientation_rejects_unknown_values(upright):
    with pytest.raises(ValueError, match="one of 1..8, got 9"):
        apply_orientation(upright, 9)
