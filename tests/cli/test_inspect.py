"""``prunekit inspect``: a task's or a factory's channel groups and layers left out, or one line
of error."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[2]
HERE = "tests.cli.test_inspect"

TOY = """\
ToyNet: 3 channel groups, 1 layer left out

group       units    min units    round to    layer       type         side
----------  -------  -----------  ----------  ----------  -----------  ------
features.0  16       1            1           features.0  Conv2d       out
                                              features.1  BatchNorm2d  out
                                              features.4  Conv2d       in
features.4  32       1            1           features.4  Conv2d       out
                                              features.5  BatchNorm2d  out
                                              features.8  Conv2d       in
features.8  64       8            8           features.8  Conv2d       out
                                              features.9  BatchNorm2d  out
                                              classifier  Linear       in

min units: the fewest a group may keep; round to: it keeps a multiple of this many

left out    type    reason
----------  ------  -----------------
classifier  Linear  in ignored_layers
"""


class Residual(nn.Module):
    """``stem`` and ``body`` coupled by an add; ``head`` returns its channels."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.body = nn.Conv2d(8, 8, 3, padding=1)
        self.head = nn.Conv2d(8, 4, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.stem(x)
        return self.head(y + self.body(y)).mean((2, 3))


def make_model() -> nn.Module:
    """The factory ``prunekit inspect tests.cli.test_inspect:make_model`` calls."""
    return Residual()


def make_flat() -> nn.Module:
    """Runs on 1x3x8x8 inputs only (its linear layer reads 4 x 6 x 6 values)."""
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(144, 2))


def not_a_model() -> str:
    return "resnet"


def broken() -> nn.Module:
    raise RuntimeError("weights not found")


@pytest.fixture(autouse=True)
def _in_the_repository(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)  # where `tests.cli.test_inspect` is importable


def test_the_toy_task_as_tables(cli):
    code, out, err = cli("inspect", "toy")
    assert (code, err) == (0, "")
    assert out == TOY


def test_the_toy_task_as_json(cli):
    code, out, _ = cli("inspect", "toy", "--format", "json", "--set", "prune.round_to=null")
    assert code == 0
    data = json.loads(out)
    assert data["model"] == "ToyNet"
    groups = [(g["name"], g["units"], g["min_units"], g["round_to"]) for g in data["groups"]]
    assert groups == [("features.0", 16, 1, 1), ("features.4", 32, 1, 1), ("features.8", 64, 1, 1)]
    assert data["groups"][2]["members"][2] == {
        "layer": "classifier",
        "type": "Linear",
        "side": "in",
    }
    assert data["left_out"] == [
        {"layer": "classifier", "type": "Linear", "reason": "in ignored_layers", "via": None}
    ]


def test_a_factory_as_github_tables(cli):
    code, out, err = cli("inspect", f"{HERE}:make_model", "--format", "github")
    assert (code, err) == (0, "")
    assert out.splitlines() == [
        "Residual: 1 channel group, 1 layer left out",
        "",
        "| group   | units   | min units   | round to   | layer   | type   | side   |",
        "|---------|---------|-------------|------------|---------|--------|--------|",
        "| stem    | 8       | 1           | 1          | stem    | Conv2d | out    |",
        "|         |         |             |            | body    | Conv2d | out    |",
        "|         |         |             |            | body    | Conv2d | in     |",
        "|         |         |             |            | head    | Conv2d | in     |",
        "",
        "min units: the fewest a group may keep; round to: it keeps a multiple of this many",
        "",
        "| left out   | type   | reason                              |",
        "|------------|--------|-------------------------------------|",
        "| head       | Conv2d | its channels reach the model output |",
    ]


def test_a_factory_on_the_given_input_shape(cli):
    code, out, _ = cli(
        "inspect", f"{HERE}:make_flat", "--input-shape", "1,3,8,8", "--format", "json"
    )
    assert code == 0
    [group] = json.loads(out)["groups"]
    assert (group["name"], group["units"]) == ("0", 4)
    assert [m["layer"] for m in group["members"]] == ["0", "3"]


@pytest.mark.parametrize(
    ("argv", "error"),
    [
        (["toyy"], "unknown task 'toyy': did you mean 'toy'?"),
        (["no_such_module:make"], "cannot import 'no_such_module' (ModuleNotFoundError: "),
        (
            [f"{HERE}:make_modle"],
            f"'{HERE}' has no function 'make_modle'; did you mean 'make_model'?",
        ),
        ([f"{HERE}:not_a_model"], f"{HERE}:not_a_model() returned str, not an nn.Module"),
        ([f"{HERE}:broken"], f"{HERE}:broken() failed (RuntimeError: weights not found)"),
        ([f"{HERE}:make_model", "--input-shape", "1,3,x"], "--input-shape '1,3,x' is not a list"),
        ([f"{HERE}:make_model", "--input-shape", "0,3,8,8"], "--input-shape '0,3,8,8' is not a"),
        ([f"{HERE}:make_flat"], "cannot trace Sequential in module '3' (RuntimeError: "),
        (["toy", "--input-shape", "1,3,8,8"], "--input-shape is for a module:function: task 'toy'"),
        ([f"{HERE}:make_model", "--set", "seed=1"], "--set configures a task, not the factory"),
    ],
)
def test_bad_input_is_one_line_of_error(cli, argv, error):
    code, out, err = cli("inspect", *argv)
    assert (code, out) == (2, "")
    assert err.startswith(f"prunekit: error: {error}")
    assert len(err.splitlines()) == 1


def test_help_does_not_import_torch():
    code = (
        "import sys; from prunekit.cli.main import main; status = main(['inspect', '--help']); "
        "print('torch' in sys.modules, status)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.stdout.splitlines()[-1] == "False 0", result.stderr
