"""Decode and validate input images (JPEG, PNG, WebP, BMP) into RGB uint8 arrays.

The format is recognised from its magic bytes and the pixel count read from the header
before anything is decoded, so a decompression bomb is refused cheaply. JPEG is decoded
with OpenCV's `IMREAD_COLOR`, which applies the EXIF orientation; PNG, WebP and BMP are
decoded unchanged so that 16-bit samples and alpha are handled here (alpha is composited
over white). Every failure raises `InvalidImageError` naming the input.

EXIF orientation of PNG and WebP is read here from the bytes already held and applied
after decoding with the eight transforms JPEG gets (`apply_orientation`): for PNG the
`eXIf` chunk, else an ImageMagick "Raw profile type exif" in a `tEXt` or `zTXt` chunk;
for WebP the `EXIF` chunk of an extended (`VP8X`) file. `tiff_orientation` reads tag
0x0112 from IFD0 of the TIFF block (byte order II or MM). Unreadable EXIF (bad chunk CRC,
truncated or malformed TIFF block, bad hex, an orientation outside 1-8) is ignored and the
image is returned as stored, as browsers and OpenCV's JPEG path do: metadata never makes
a photo fail. BMP carries no EXIF.
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import cv2
import numpy as np

DEFAULT_MAX_PIXELS = 50_000_000
SUPPORTED_FORMATS = ("BMP", "JPEG", "PNG", "WebP")
ORIENTATION_TAG = 0x0112
MAX_PROFILE_TEXT_BYTES = 3 << 20  # inflate no more zTXt text than this (a zip bomb in metadata)
RAW_PROFILE_EXIF = b"Raw profile type exif"


class InvalidImageError(ValueError):
    """The input is not a decodable, supported image of acceptable size."""


def sniff_format(data: bytes) -> str | None:
    """The format named by the magic bytes, or None.

    >>> sniff_format(b"\\x89PNG\\r\\n\\x1a\\n...")
    'PNG'
    """
    if data[:3] == b"\xff\xd8\xff":
        return "JPEG"
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return "PNG"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WebP"
    if data[:2] == b"BM":
        return "BMP"
    return None


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    pos = 2
    while pos + 4 <= len(data):
        if data[pos] != 0xFF:
            return None
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker in (0x01, *range(0xD0, 0xD9)):  # markers without a length
            pos += 2
            continue
        (length,) = struct.unpack(">H", data[pos + 2 : pos + 4])
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            if pos + 9 > len(data):
                return None
            height, width = struct.unpack(">HH", data[pos + 5 : pos + 9])
            return width, height
        if marker == 0xDA or length < 2:  # scan data before any frame header
            return None
        pos += 2 + length
    return None


def _webp_size(data: bytes) -> tuple[int, int] | None:
    chunk = data[12:16]
    if chunk == b"VP8 " and len(data) >= 30:
        w, h = struct.unpack("<HH", data[26:30])
        return w & 0x3FFF, h & 0x3FFF
    if chunk == b"VP8L" and len(data) >= 25:
        (bits,) = struct.unpack("<I", data[21:25])
        return 1 + (bits & 0x3FFF), 1 + ((bits >> 14) & 0x3FFF)
    if chunk == b"VP8X" and len(data) >= 30:
        w = int.from_bytes(data[24:27], "little") + 1
        h = int.from_bytes(data[27:30], "little") + 1
        return w, h
    return None


def header_size(data: bytes, fmt: str) -> tuple[int, int] | None:
    """(width, height) read from the header without decoding, or None if unreadable."""
    if fmt == "PNG":
        return struct.unpack(">II", data[16:24]) if len(data) >= 24 else None
    if fmt == "JPEG":
        return _jpeg_size(data)
    if fmt == "WebP":
        return _webp_size(data)
    if fmt == "BMP" and len(data) >= 26:
        (header_len,) = struct.unpack("<I", data[14:18])
        if header_len == 12:
            return struct.unpack("<HH", data[18:22])
        w, h = struct.unpack("<ii", data[18:26])
        return abs(w), abs(h)
    return None


def tiff_orientation(tiff: bytes) -> int:
    """EXIF orientation (1-8) from a TIFF/EXIF block; 1 when absent or unreadable.

    >>> tiff_orientation(bytes.fromhex("4d4d002a00000008 0001 0112 0003 00000001 0006 0000"))
    6
    """
    if tiff[:6] == b"Exif\x00\x00":  # the JPEG APP1 prefix; some PNG/WebP writers keep it
        tiff = tiff[6:]
    order = {b"II": "<", b"MM": ">"}.get(tiff[:2])
    if order is None or len(tiff) < 8:
        return 1
    magic, ifd = struct.unpack_from(order + "HI", tiff, 2)
    if magic != 42 or ifd + 2 > len(tiff):
        return 1
    (count,) = struct.unpack_from(order + "H", tiff, ifd)
    count = min(count, (len(tiff) - ifd - 2) // 12)
    for pos in range(ifd + 2, ifd + 2 + 12 * count, 12):
        tag, kind, num = struct.unpack_from(order + "HHI", tiff, pos)
        if tag != ORIENTATION_TAG:
            continue
        if num != 1 or kind not in (3, 4):  # SHORT, or LONG from a lax writer
            return 1
        (value,) = struct.unpack_from(order + ("H" if kind == 3 else "I"), tiff, pos + 8)
        return value if 1 <= value <= 8 else 1
    return 1


def png_chunks(data: bytes, kinds: tuple[bytes, ...]):
    """Yield (type, payload) of the PNG chunks of `kinds` whose CRC is valid, in file order."""
    pos = 8
    while pos + 12 <= len(data):
        length, kind = struct.unpack_from(">I4s", data, pos)
        end = pos + 8 + length
        if kind == b"IEND" or end + 4 > len(data):
            return
        if kind in kinds:
            (crc,) = struct.unpack_from(">I", data, end)
            if zlib.crc32(data[pos + 4 : end]) == crc:  # libpng drops such chunks too
                yield kind, data[pos + 8 : end]
        pos = end + 4


def raw_profile_exif(chunk: bytes, compressed: bool) -> bytes | None:
    """EXIF bytes of an ImageMagick "Raw profile type exif" tEXt/zTXt payload, else None.

    The text is "\\nexif\\n<length>\\n<hex lines>"; the bytes usually start with "Exif\\0\\0".
    """
    keyword, _, text = chunk.partition(b"\x00")
    if keyword != RAW_PROFILE_EXIF:
        return None
    try:
        if compressed:  # compression method byte (0 = zlib), then the stream
            text = zlib.decompressobj().decompress(text[1:], MAX_PROFILE_TEXT_BYTES)
        name, length, *hex_lines = text.split()
        exif = bytes.fromhex(b"".join(hex_lines).decode("ascii"))
    except (zlib.error, ValueError, UnicodeDecodeError):
        return None
    if name != b"exif" or not length.isdigit() or len(exif) < int(length):
        return None
    return exif[: int(length)]


def png_exif(data: bytes) -> bytes | None:
    """The EXIF block of a PNG: its eXIf chunk, else a raw profile in tEXt/zTXt, else None."""
    profile = None
    for kind, payload in png_chunks(data, (b"eXIf", b"tEXt", b"zTXt")):
        if kind == b"eXIf":
            return payload
        if profile is None:
            profile = raw_profile_exif(payload, compressed=kind == b"zTXt")
    return profile


def webp_exif(data: bytes) -> bytes | None:
    """The EXIF chunk of an extended (VP8X) WebP, or None."""
    if data[12:16] != b"VP8X":
        return None
    pos = 12
    while pos + 8 <= len(data):
        kind, length = struct.unpack_from("<4sI", data, pos)
        if kind == b"EXIF":
            payload = data[pos + 8 : pos + 8 + length]
            return payload if len(payload) == length else None
        pos += 8 + length + (length & 1)  # chunks are padded to an even size
    return None


def exif_orientation(data: bytes, fmt: str) -> int:
    """EXIF orientation (1-8) of a PNG or WebP file; 1 for other formats or without EXIF."""
    exif = png_exif(data) if fmt == "PNG" else webp_exif(data) if fmt == "WebP" else None
    return 1 if exif is None else tiff_orientation(exif)


# EXIF orientation -> the transform from the stored to the displayed (upright) pixels.
_ORIENT = {
    1: lambda a: a,
    2: lambda a: a[:, ::-1],  # mirrored left-right
    3: lambda a: a[::-1, ::-1],  # rotated 180
    4: lambda a: a[::-1],  # mirrored top-bottom
    5: lambda a: a.swapaxes(0, 1),  # transposed
    6: lambda a: np.rot90(a, -1),  # shown rotated 90 clockwise
    7: lambda a: a[::-1, ::-1].swapaxes(0, 1),  # transversed
    8: lambda a: np.rot90(a, 1),  # shown rotated 90 counter-clockwise
}


def apply_orientation(image: np.ndarray, orientation: int) -> np.ndarray:
    """The upright image [H, W, ...] for the stored pixels and their EXIF orientation (1-8)."""
    if orientation not in _ORIENT:
        raise ValueError(f"EXIF orientation must be one of 1..8, got {orientation}")
    return np.ascontiguousarray(_ORIENT[orientation](image))


def jpeg_complete(data: bytes) -> bool:
    """True when an end-of-image marker follows the last start-of-scan (not truncated)."""
    last_sos = data.rfind(b"\xff\xda")
    return last_sos >= 0 and data.find(b"\xff\xd9", last_sos) >= 0


def to_rgb_uint8(decoded: np.ndarray) -> np.ndarray:
    """OpenCV's BGR/BGRA/gray, 8- or 16-bit array -> RGB uint8 (alpha over white)."""
    img = decoded
    if img.dtype == np.uint16:
        img = ((img.astype(np.uint32) + 128) // 257).astype(np.uint8)
    elif img.dtype != np.uint8:
        raise TypeError(f"unsupported sample type {img.dtype}")
    if img.ndim == 2:
        return cv2.cvtColor(img, cv2.COLOR_GRAY2RGB)
    channels = img.shape[2]
    if channels == 1:
        return cv2.cvtColor(img[:, :, 0], cv2.COLOR_GRAY2RGB)
    if channels == 2:
        img = cv2.cvtColor(img[:, :, 0], cv2.COLOR_GRAY2BGR), img[:, :, 1]
        img = np.dstack(img)
        channels = 4
    if channels == 4:
        alpha = img[:, :, 3:4].astype(np.float32) / 255.0
        bgr = img[:, :, :3].astype(np.float32) * alpha + 255.0 * (1.0 - alpha)
        img = np.clip(np.rint(bgr), 0, 255).astype(np.uint8)
    return cv2.cvtColor(np.ascontiguousarray(img[:, :, :3]), cv2.COLOR_BGR2RGB)


def load_image(
    src: bytes | str | Path, *, max_pixels: int = DEFAULT_MAX_PIXELS, name: str | None = None
) -> np.ndarray:
    """Decode bytes or a file into an RGB uint8 array [H, W, 3], EXIF orientation applied.

    Raises InvalidImageError (message names the input) for missing, empty, unsupported,
    corrupt, truncated, zero-sized or too large (> max_pixels) images.
    """
    if isinstance(src, bytes | bytearray | memoryview):
        data = bytes(src)
        label = name or "<bytes>"
    else:
        label = name or str(src)
        try:
            data = Path(src).read_bytes()
        except OSError as err:
            raise InvalidImageError(f"{label}: cannot read file ({err.strerror})") from None
    if not data:
        raise InvalidImageError(f"{label}: empty file")
    fmt = sniff_format(data)
    if fmt is None:
        raise InvalidImageError(
            f"{label}: not a supported image (expected one of {', '.join(SUPPORTED_FORMATS)})"
        )
    size = header_size(data, fmt)
    if size is None:
        raise InvalidImageError(f"{label}: corrupt or truncated {fmt} header")
    width, height = size
    if width == 0 or height == 0:
        raise InvalidImageError(f"{label}: image has zero size ({width}x{height})")
    if width * height > max_pixels:
        raise InvalidImageError(
            f"{label}: image too large ({width}x{height} = {width * height} pixels, "
            f"limit {max_pixels})"
        )
    if fmt == "JPEG" and not jpeg_complete(data):
        raise InvalidImageError(f"{label}: truncated JPEG (no end-of-image marker)")
    flags = cv2.IMREAD_COLOR if fmt == "JPEG" else cv2.IMREAD_UNCHANGED
    decoded = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), flags)
    if decoded is None or decoded.size == 0:
        raise InvalidImageError(f"{label}: corrupt or truncated {fmt} data")
    try:
        rgb = to_rgb_uint8(decoded)
    except TypeError as err:
        raise InvalidImageError(f"{label}: {err}") from None
    return apply_orientation(rgb, exif_orientation(data, fmt))
