"""Fixtures of the reliability tests: the CLI in-process, and a finished run to keep intact."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from prunekit.cli.main import main
from tests.reliability.support import TAYLOR_RUN, TOY

Cli = Callable[..., tuple[int, str, str]]


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Decoded face images go to a temporary cache, never to ~/.cache."""
    monkeypatch.setenv("PRUNEKIT_CACHE", str(tmp_path / "cache"))


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]) -> Cli:
    """``cli("run", "toy", ...)`` -> (exit status, stdout, stderr)."""

    def invoke(*argv: str) -> tuple[int, str, str]:
        code = main(list(argv))
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    return invoke


@pytest.fixture(scope="session")
def finished_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished toy run (l1 criterion): the earlier outputs a mistake must not touch."""
    out = tmp_path_factory.mktemp("earlier") / "run"
    assert main(["run", "toy", "--criterion", "l1", *TOY, "--out", str(out)]) == 0
    return out


@pytest.fixture(scope="session")
def taylor_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An uninterrupted toy run with the taylor criterion: the reference of resumed runs."""
    out = tmp_path_factory.mktemp("reference") / "run"
    assert main([*TAYLOR_RUN, "--out", str(out)]) == 0
    return out
