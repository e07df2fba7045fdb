"""The decode-once image cache: reuse, keys, bad-image policies, atomic files."""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import pytest

from prunekit.errors import PrunekitError
from prunekit_face.data import Preprocess, cache_dir, load_images

PRE = Preprocess(size=16)


@pytest.fixture
def files(tmp_path, write_image) -> list[Path]:
    return [
        write_image(tmp_path / "img" / f"{i}.{ext}", seed=i)
        for i, ext in enumerate(["png", "jpg", "pgm", "png"])
    ]


@pytest.fixture
def truncated(tmp_path, write_image) -> Path:
    """A JPEG cut to half its bytes: Pillow opens it but cannot decode it."""
    path = write_image(tmp_path / "img" / "broken.jpg", seed=9, size=(64, 64))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def _forbid_decoding(monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(self, path):
        raise AssertionError(f"decoded {path} again")

    monkeypatch.setattr(Preprocess, "load", fail)


def test_cache_dir_follows_environment(cache, monkeypatch) -> None:
    assert cache_dir() == cache
    monkeypatch.delenv("PRUNEKIT_CACHE")
    assert cache_dir() == Path.home() / ".cache" / "prunekit"


def test_decodes_once_then_loads_from_disk(files, cache, monkeypatch) -> None:
    first = load_images(files, PRE, progress=False)
    assert first.images.shape == (4, 16, 16, 3) and first.images.dtype == np.uint8
    for pixels, path in zip(first.images, files):
        np.testing.assert_array_equal(pixels, PRE.load(path))
    assert first.paths == tuple(files) and first.skipped == ()
    assert first.file.parent == cache / "images"
    assert sorted(p.suffix for p in first.file.parent.iterdir()) == [".json", ".npy"]

    _forbid_decoding(monkeypatch)
    again = load_images(files, PRE, progress=False)
    np.testing.assert_array_equal(again.images, first.images)
    assert again.file == first.file


def test_paths_come_back_as_given(files, tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    relative = [str(f.relative_to(tmp_path)) for f in files]
    loaded = load_images(relative, PRE, progress=False)
    assert loaded.paths == tuple(Path(r) for r in relative)
    assert loaded.indices.tolist() == [0, 1, 2, 3]
    assert load_images(files, PRE, progress=False).file == loaded.file  # same files, same key


def test_mmap_or_memory(files) -> None:
    assert isinstance(load_images(files, PRE, progress=False).images, np.memmap)
    loaded = load_images(files, PRE, mmap=False, progress=False).images
    assert not isinstance(loaded, np.memmap) and loaded.flags.writeable


def test_key_changes_with_preprocessing_and_files(files) -> None:
    base = load_images(files, PRE, progress=False).file
    assert load_images(files, Preprocess(size=17), progress=False).file != base
    assert load_images(files, Preprocess(size=16, mean=None), progress=False).file == base
    assert load_images(files[:3], PRE, progress=False).file != base
    stat = files[0].stat()
    os.utime(files[0], ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    assert load_images(files, PRE, progress=False).file != base


def test_progress_bar_can_be_silenced(files, capsys) -> None:
    load_images(files, PRE, progress=False)
    assert capsys.readouterr().err == ""
    load_images(files, Preprocess(size=15), progress=True)
    assert "decoding images" in capsys.readouterr().err


def test_bad_image_fails_by_default(files, truncated) -> None:
    with pytest.raises(PrunekitError) as err:
        load_images([*files, truncated], PRE, progress=False)
    message = str(err.value)
    assert f"bad image {truncated}" in message and "on_bad_image='skip'" in message
    assert "\n" not in message


def test_bad_image_skipped_and_counted(files, truncated, monkeypatch) -> None:
    paths = [files[0], truncated, *files[1:]]
    loaded = load_images(paths, PRE, on_bad_image="skip", progress=False)
    assert loaded.images.shape == (4, 16, 16, 3)
    assert loaded.paths == tuple(files) and loaded.skipped == (truncated,)
    assert loaded.indices.tolist() == [0, 2, 3, 4]
    np.testing.assert_array_equal(loaded.images[1], PRE.load(files[1]))

    _forbid_decoding(monkeypatch)
    again = load_images(paths, PRE, on_bad_image="skip", progress=False)
    assert again.skipped == (truncated,) and again.paths == tuple(files)
    assert again.indices.tolist() == [0, 2, 3, 4]
    # The cache remembers the bad file: "fail" still fails without decoding anything.
    with pytest.raises(PrunekitError, match=re.escape(f"bad image {truncated}")):
        load_images(paths, PRE, progress=False)


def test_missing_image_fails_up_front_or_is_skipped(files, monkeypatch) -> None:
    missing = files[0].parent / "gone.png"
    _forbid_decoding(monkeypatch)
    with pytest.raises(PrunekitError, match=re.escape(f"bad image {missing} (No such file")):
        load_images([*files, missing], PRE, progress=False)
    monkeypatch.undo()
    loaded = load_images([*files, missing], PRE, on_bad_image="skip", progress=False)
    assert loaded.skipped == (missing,) and len(loaded.images) == 4


def test_rejects_unknown_policy(files) -> None:
    with pytest.raises(PrunekitError, match="on_bad_image='ignore' is not one of"):
        load_images(files, PRE, on_bad_image="ignore")  # type: ignore[arg-type]


def test_inconsistent_cache_is_rebuilt(files) -> None:
    first = load_images(files, PRE, progress=False)
    np.save(first.file, np.zeros((2, 16, 16, 3), np.uint8))  # not what the manifest says
    again = load_images(files, PRE, mmap=False, progress=False)
    assert again.images.shape == (4, 16, 16, 3)
    np.testing.assert_array_equal(again.images[3], PRE.load(files[3]))
