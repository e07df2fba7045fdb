"""The one YAML loader: a key given twice is an error naming the file and both lines."""

from __future__ import annotations

import pytest

from prunekit import yamlfile
from prunekit.errors import PrunekitError


@pytest.mark.parametrize(
    ("text", "message"),
    [
        pytest.param(
            "prune:\n  steps: 2\nseed: 1\nprune:\n  scope: global\n",
            "malformed YAML in c.yaml, line 4, column 1: duplicate key 'prune' (first on line 1): "
            "keep one of them",
            id="top-level",
        ),
        pytest.param(
            "prune:\n  steps: 2\n  scope: local\n  steps: 3\n",
            "malformed YAML in c.yaml, line 4, column 3: duplicate key 'steps' (first on line 2): "
            "keep one of them",
            id="nested",
        ),
        pytest.param(
            "recovery:\n  options: {finetune: {lr: 1}, finetune: {lr: 2}}\n",
            "malformed YAML in c.yaml, line 2, column 32: duplicate key 'finetune' (first on line "
            "2): keep one of them",
            id="flow",
        ),
        pytest.param(
            "- a: 1\n  a: 2\n",
            "malformed YAML in c.yaml, line 2, column 3: duplicate key 'a' (first on line 1): "
            "keep one of them",
            id="in-a-list",
        ),
    ],
)
def test_a_duplicate_key_names_both_lines(text, message):
    with pytest.raises(PrunekitError) as info:
        yamlfile.parse(text, "c.yaml")
    assert str(info.value) == message


def test_a_duplicate_key_in_a_file_names_the_file(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("prune:\n  steps: 2\nprune:\n  scope: global\n")
    with pytest.raises(PrunekitError) as info:
        yamlfile.load_mapping(path)
    assert str(info.value) == (
        f"malformed YAML in {path}, line 3, column 1: duplicate key 'prune' (first on line 1): "
        "keep one of them"
    )


def test_a_merge_may_be_overridden():
    text = "base: &b\n  lr: 1\n  epochs: 2\nrun:\n  <<: *b\n  lr: 3\n"
    assert yamlfile.parse(text, "c.yaml") == {
        "base": {"lr": 1, "epochs": 2},
        "run": {"lr": 3, "epochs": 2},
    }


def test_the_same_key_in_two_mappings_is_no_duplicate():
    text = "baseline:\n  lr: 0.1\nfinetune:\n  lr: 1e-4\n"
    assert yamlfile.parse(text, "c.yaml") == {"baseline": {"lr": 0.1}, "finetune": {"lr": 1e-4}}
