"""A fast command line: ``--help`` and usage errors answer without importing torch."""

from __future__ import annotations

import subprocess
import sys

import pytest

import prunekit as pk
from prunekit.cli.main import EXPORT_FORMATS
from prunekit.runner import export

#: runs ``main(ARGV)`` in a fresh interpreter, then prints whether torch got imported
PROBE = """
import sys
from prunekit.cli.main import main
status = main(sys.argv[1:])
print("torch imported:", "torch" in sys.modules, "status:", status)
"""


def probe(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", PROBE, *argv], capture_output=True, text=True, timeout=120
    )


@pytest.mark.parametrize(
    ("argv", "status"),
    [
        (["--help"], 0),
        (["run", "--help"], 0),
        (["run", "toy", "--no-such-flag"], 2),
        (["eval"], 2),  # the checkpoint is missing
        (["export", "final.pt", "--format", "tflite"], 2),
    ],
)
def test_help_and_usage_errors_do_not_import_torch(argv, status):
    result = probe(*argv)
    assert result.stdout.splitlines()[-1] == f"torch imported: False status: {status}", (
        result.stderr
    )
    if status:
        assert "usage: prunekit" in result.stderr


def test_import_prunekit_is_light_and_the_api_complete():
    code = (
        "import sys, prunekit as pk; light = 'torch' not in sys.modules; "
        "print(light, all(getattr(pk, n) is not None for n in pk.__all__), "
        "pk.Pruner.__module__, pk.criteria.__name__)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.stdout.split() == ["True", "True", "prunekit.pruner", "prunekit.criteria"]


def test_unknown_attributes_still_fail():
    with pytest.raises(AttributeError, match="no attribute 'Prunner'"):
        _ = pk.Prunner
    assert {"Pruner", "Target", "criteria"} <= set(dir(pk))


def test_a_registry_registers_the_built_ins_on_first_look_up():
    code = (
        "from prunekit.registry import registry; r = registry('criteria'); "
        "print(r.source('taylor'), 'l1' in r.names())"
    )
    result = subprocess.run([sys.executable, "-W", "error", "-c", code], capture_output=True)
    assert result.stdout.split() == [b"prunekit", b"True"], result.stderr


def test_the_cli_offers_every_export_format():
    assert EXPORT_FORMATS == export.FORMATS


def test_importing_the_registry_module_keeps_the_function():
    import prunekit.registry  # noqa: F401  (binds the module as an attribute of its package)

    assert callable(pk.registry) and pk.registry("tasks").names()
