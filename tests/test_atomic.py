"""Atomic writes: all or nothing, and a clear line for a path that cannot be written."""

from __future__ import annotations

import pytest

from prunekit import atomic
from prunekit.errors import PrunekitError


def test_a_failed_write_leaves_the_previous_file_and_no_temporary_file(tmp_path):
    path = tmp_path / "out.txt"
    atomic.write_text(path, "old")

    def half_then_fail(fh):
        fh.write(b"new, but only ha")
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError, match="No space left"):
        atomic.write_with(path, half_then_fail)
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]


def test_a_parent_that_is_a_file_is_named(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(PrunekitError, match="a parent of it is a file, not a folder"):
        atomic.write_text(tmp_path / "file" / "out.txt", "y")


def test_a_folder_is_not_overwritten(tmp_path):
    with pytest.raises(PrunekitError, match="it is a folder; choose another path"):
        atomic.write_text(tmp_path, "y")


def test_copy_and_bytes(tmp_path):
    atomic.write_bytes(tmp_path / "a", b"\x00\x01")
    atomic.copy(tmp_path / "a", tmp_path / "sub" / "b")
    assert (tmp_path / "sub" / "b").read_bytes() == b"\x00\x01"
