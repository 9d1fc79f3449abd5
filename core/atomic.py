"""Atomic file writes: a reader sees the old file or the new one, never half of one.

Every writer goes through a temporary file in the target's folder and ``os.replace``; on any
error the temporary file is removed and the target is left as it was. One implementation for
every package (JSON reports, model cards, thresholds, copied models, images asked for).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any


def _current_umask() -> int:
    """The process's umask (read by setting it and putting it back)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


# mkstemp creates 0600 files; outputs get the usual permissions of a new file.
FILE_MODE = 0o666 & ~_current_umask()


@contextlib.contextmanager
def _replacing(path: Path) -> Iterator[tuple[int, str]]:
    """A new temporary file beside `path` (its descriptor and name) that replaces `path` with
    the usual file permissions when the block ends, and is removed if the block fails."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        yield fd, tmp
        os.chmod(tmp, FILE_MODE)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write `data` to `path` atomically; returns the path.

    >>> import tempfile, pathlib
    >>> target = pathlib.Path(tempfile.mkdtemp()) / "sub" / "a.bin"
    >>> write_bytes(target, b"xy").read_bytes()
    b'xy'
    """
    path = Path(path)
    with _replacing(path) as (fd, _):
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
    return path


def write_text(path: str | os.PathLike, text: str) -> Path:
    """Write UTF-8 `text` to `path` atomically; returns the path."""
    return write_bytes(path, text.encode("utf-8"))


def write_json(path: str | os.PathLike, obj: Any, *, indent: int | None = 2) -> Path:
    """Write `obj` as JSON (with a final newline when indented) atomically; returns the path."""
    text = json.dumps(obj, indent=indent)
    return write_text(path, text + "\n" if indent is not None else text)


def copy_file(src: str | os.PathLike, dst: str | os.PathLike) -> Path:
    """Copy `src` to `dst` atomically (contents only); returns the destination."""
    dst = Path(dst)
    with _replacing(dst) as (fd, tmp):
        os.close(fd)
        shutil.copyfile(src, tmp)
    return dst
