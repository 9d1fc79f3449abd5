"""core.atomic: a failed write leaves the old file and no temporary file behind."""

from __future__ import annotations

import json
import stat

import pytest

from core import atomic


def test_a_failed_json_write_keeps_the_old_file(tmp_path) -> None:
    target = atomic.write_json(tmp_path / "a.json", {"x": 1})
    with pytest.raises(TypeError):
        atomic.write_json(target, {"x": object()})
    assert json.loads(target.read_text()) == {"x": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]


def test_written_files_are_readable_and_copies_are_exact(tmp_path) -> None:
    src = atomic.write_text(tmp_path / "in" / "src.txt", "héllo\n")
    dst = atomic.copy_file(src, tmp_path / "out" / "dst.txt")
    assert dst.read_bytes() == src.read_bytes() == "héllo\n".encode()
    assert stat.S_IMODE(dst.stat().st_mode) == atomic.FILE_MODE
    assert atomic.write_json(tmp_path / "c.json", [1], indent=None).read_text() == "[1]"
