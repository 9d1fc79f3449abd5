"""Image encoders shared by the preprocessing tests (imported by file name)."""

from __future__ import annotations

import struct

import cv2
import numpy as np


def encode(image_rgb: np.ndarray, ext: str, params: list[int] | None = None) -> bytes:
    """Encode an RGB (or gray / 4-channel) array with OpenCV."""
    arr = image_rgb
    if arr.ndim == 3 and arr.shape[2] == 3:
        arr = cv2.cvtColor(arr, cv2.COLOR_RGB2BGR)
    ok, buf = cv2.imencode(ext, arr, params or [])
    assert ok
    return buf.tobytes()


def jpeg_with_orientation(jpeg: bytes, orientation: int) -> bytes:
    """Insert an EXIF APP1 segment holding only the Orientation tag (0x0112) after SOI."""
    entry = struct.pack("<HHIHH", 0x0112, 3, 1, orientation, 0)
    tiff = b"II*\x00" + struct.pack("<I", 8) + struct.pack("<H", 1) + entry + struct.pack("<I", 0)
    payload = b"Exif\x00\x00" + tiff
    return jpeg[:2] + b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload + jpeg[2:]


def png_header_only(width: int, height: int) -> bytes:
    """A PNG signature and IHDR declaring width x height, with no image data."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + b"IHDR" + ihdr + b"\0\0\0\0"
