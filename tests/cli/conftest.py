"""A toy run shared by the CLI tests (it takes seconds; most tests only read its files)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from prunekit.cli.main import main

RUN_ARGS = ["run", "toy", "--criterion", "taylor", "--steps", "3", "--quiet"]


@pytest.fixture(scope="session")
def run_args() -> list[str]:
    """The arguments of the shared run, without ``--out``."""
    return list(RUN_ARGS)


@pytest.fixture(scope="session")
def toy_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The run dir of ``prunekit run toy --criterion taylor --steps 3``."""
    out = tmp_path_factory.mktemp("toy") / "run"
    assert main([*RUN_ARGS, "--out", str(out)]) == 0
    return out


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]) -> Callable[..., tuple[int, str, str]]:
    """``cli("run", "toy", ...)`` -> (exit status, stdout, stderr)."""

    def invoke(*argv: str) -> tuple[int, str, str]:
        code = main(list(argv))
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    return invoke
