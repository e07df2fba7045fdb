"""Fuzzing the readers of untrusted input: whatever they get, they return a result or raise
one-line PrunekitError, never another exception. The examples are crashes fuzzing found."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
from hypothesis import example, given, settings
from hypothesis import strategies as st

import prunekit as pk
from prunekit.errors import PrunekitError
from prunekit.runner.config import load_yaml, resolve
from prunekit_face.data.lfw import read_pairs

fuzz = settings(max_examples=150, deadline=None, database=None)

#: text that looks like YAML often enough to get past the tokenizer
YAMLISH = st.text(alphabet="abc01.:-_ \n\t[]{},&*!|>'\"#%@`?=~", max_size=80)
KEYS = ["seed", "threads", "task", "device", "prune", "prune.steps", "prune.target"]
KEYS += ["prune.target.params", "prune.criterion", "prune.criterion_options", "toy.noise"]
VALUES = ["1", "-1", "0.5", "null", "[1]", "{a: 1}", "{params: 2}", ".nan", "-.inf", "true"]
VALUES += ["x", "!!binary aGk=", "&a [*a]", "1e400", "{1: 2}", "[", "2020-01-01", ""]
SETS = st.lists(
    st.one_of(
        st.builds("{}={}".format, st.sampled_from(KEYS), st.sampled_from(VALUES)),
        st.text(max_size=20),
    ),
    max_size=4,
)
PAIR_LINES = st.lists(
    st.one_of(
        st.sampled_from(["1 2", "2 1", "0 0", "Ann 1 2", "Ann 1 Bob 1", "Ann ² 2", "A 0 1", ""]),
        st.text(max_size=16),
    ),
    max_size=7,
)


@pytest.fixture(scope="module")
def scratch(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


def one_line(err: PrunekitError) -> str:
    message = str(err)
    assert message and "\n" not in message
    return message


@fuzz
@given(text=st.one_of(YAMLISH.map(str.encode), st.binary(max_size=80)))
@example(text=b"a: 1\n\x84: 2\n")  # not UTF-8: was UnicodeDecodeError
def test_load_yaml(text, scratch):
    path = scratch / "config.yaml"
    path.write_bytes(text)
    try:
        assert isinstance(load_yaml(path), dict)
    except PrunekitError as err:
        assert str(path) in one_line(err)


@fuzz
@given(items=SETS)
@example(items=["prune=1", "prune.steps=3"])  # was TypeError: 'int' ... item assignment
@example(items=["prune=!!binary aGk=", "prune.target.params=0.4"])  # was AttributeError
def test_set_parser(items):
    try:
        config = resolve("toy", sets=items)
    except PrunekitError as err:
        one_line(err)
    else:
        assert config["task"] == "toy" and config["prune"]["steps"] >= 1


@fuzz
@given(lines=PAIR_LINES, crlf=st.booleans())
@example(lines=["1 1", "Ann ² 2", "Ann 1 Bob 1"], crlf=False)  # was ValueError from int("²")
def test_lfw_pairs_parser(lines, crlf, scratch):
    path = scratch / "pairs.txt"
    path.write_text(("\r\n" if crlf else "\n").join(lines))
    try:
        pairs = read_pairs(path)
    except PrunekitError as err:
        number = re.match(re.escape(f"{path}:") + r"(\d+): ", one_line(err))
        assert number and 1 <= int(number.group(1)) <= len(lines) + 1
    else:
        assert len(pairs) == 2 * int(lines[0].split()[0]) * int(lines[0].split()[1])


@fuzz
@given(data=st.binary(max_size=80))
@example(data=b"\x84\x00\n")  # was UnicodeDecodeError
def test_lfw_pairs_parser_on_bytes(data, scratch):
    path = scratch / "pairs.txt"
    path.write_bytes(data)
    try:
        read_pairs(path)
    except PrunekitError as err:
        assert re.match(re.escape(f"{path}:") + r"\d+: ", one_line(err))


@pytest.fixture(scope="module")
def checkpoint(scratch) -> bytes:
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4))
    return pk.save(scratch / "good.pt", model, meta={"note": [1, "x"]}).read_bytes()


def assert_loads_or_refuses(path: Path) -> None:
    try:
        assert isinstance(pk.read_checkpoint(path), dict)
    except PrunekitError as err:
        assert str(path) in one_line(err)


@fuzz
@given(data=st.binary(max_size=300))
@example(data=b"\x80\x02)\x94")  # was IndexError: pop from empty list
def test_checkpoint_loader_on_random_bytes(data, scratch):
    path = scratch / "random.pt"
    path.write_bytes(data)
    assert_loads_or_refuses(path)


@fuzz
@given(
    cut=st.floats(0.0, 1.0),
    edits=st.lists(st.tuples(st.floats(0.0, 1.0, exclude_max=True), st.integers(0, 255))),
)
def test_checkpoint_loader_on_damaged_checkpoints(cut, edits, checkpoint, scratch):
    data = bytearray(checkpoint)
    for where, byte in edits:
        data[int(where * len(data))] = byte
    path = scratch / "damaged.pt"
    path.write_bytes(bytes(data[: max(1, int(cut * len(data)))] if not edits else data))
    assert_loads_or_refuses(path)
