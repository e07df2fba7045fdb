"""The command line's allocator settings: applied where glibc is, harmless elsewhere."""

from __future__ import annotations

import sys

import pytest

from prunekit import allocator


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt is Linux's")
def test_glibc_takes_the_settings():
    assert allocator.keep_freed_memory() is True
    assert allocator.keeps_freed_memory() is True  # what ONNX Runtime sessions ask


def test_another_platform_is_left_alone(monkeypatch):
    monkeypatch.setattr(allocator.sys, "platform", "darwin")
    monkeypatch.setattr(allocator, "_applied", False)
    assert allocator.keep_freed_memory() is False
    assert allocator.keeps_freed_memory() is False


def test_a_c_library_without_mallopt_is_left_alone(monkeypatch):
    class NoMallopt:
        def __init__(self, name: str) -> None:
            pass

    monkeypatch.setattr(allocator.ctypes, "CDLL", NoMallopt)
    assert allocator.keep_freed_memory() is False
