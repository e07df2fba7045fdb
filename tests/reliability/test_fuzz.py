"""Fuzzing the readers of untrusted input: whatever they get, they return a result or raise
one-line PrunekitError, never another exception. The examples are crashes fuzzing found."""

from __future__ import annotations

import copy
import re
import shutil
import signal
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace
from unittest import mock

import pytest
import torch
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import prunekit as pk
from prunekit.engine.groups import ChannelGroup
from prunekit.errors import PrunekitError
from prunekit.runner.config import load_yaml, resolve
from prunekit_face.data.lfw import read_pairs
from tests.engine.architectures import randomize_norms
from tests.engine.equivalence import assert_kept_weights_identical, masked_reference
from tests.reliability.fuzz_graphs import SHAPE, GraphNet, Program, programs

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


# ---------------------------------------------------------------------- random models
@contextmanager
def _time_limit(seconds: int) -> Iterator[None]:
    """A hang (torch-pruning once mapped channels round a loop forever) fails the example."""

    def expire(*_: object) -> None:
        raise TimeoutError(f"pruning took more than {seconds} s: a loop in the channel mapping?")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def _unshift(gone: list[int], idxs: list[int]) -> list[int]:
    """Indices into a side that has lost ``gone`` (original indices), as original indices."""
    out = []
    for i in idxs:
        for g in sorted(set(gone)):
            i += g <= i
        out.append(i)
    return out


@contextmanager
def _removals() -> Iterator[dict[str, dict[str, list[int]]]]:
    """What a step removes, in the indices of the model before the step.

    ``StepReport.removed`` gives each group's indices as they were when the group was pruned:
    a layer fed by several groups (through a concat) gets indices shifted by the groups pruned
    before (see :func:`test_the_removed_indices_are_those_of_the_model_before_the_step`).
    """
    removed: dict[str, dict[str, list[int]]] = {}
    real = ChannelGroup.prune

    def spy(group: ChannelGroup, units: list[int]) -> dict[str, dict[str, list[int]]]:
        pruned = real(group, units)
        for name, sides in pruned.items():
            for side, idxs in sides.items():
                done = removed.setdefault(name, {}).setdefault(side, [])
                done.extend(_unshift(done, idxs))
        return pruned

    with mock.patch.object(ChannelGroup, "prune", spy):
        yield removed


def _same(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def _check_step(model, before, report, removed, x, shape) -> None:
    """The pruned ``model`` runs, keeps its output shape, computes what ``before`` computes
    with the removed channels ignored, kept its other weights and is counted exactly."""
    done = SimpleNamespace(removed=removed)
    with torch.no_grad():
        out = model(x)
        assert list(out.shape) == shape
        torch.testing.assert_close(out, masked_reference(before, done)(x), atol=1e-5, rtol=1e-5)
    assert_kept_weights_identical(before, model, done)
    assert report.params == pk.measure(model, x)["params"]


@settings(max_examples=80, deadline=None, database=None)
@given(
    program=programs(),
    fraction=st.floats(0.02, 0.4),
    criterion=st.sampled_from(["l1", "random"]),
    steps=st.integers(1, 2),
)
# a split's sizes are constants in forward(): pruning through it silently moved its boundary
@example(Program((("conv", 0, 6, 1), ("split", 1, 3), ("relu", 3))), 0.25, "l1", 1)
# a depth-wise conv (behind a BatchNorm) of the model's input: the step broke the model
@example(Program((("conv", 0, 7, 1), ("dw", 0)), (True, True)), 0.25, "l1", 1)
@example(Program((("conv", 0, 6, 1), ("bn", 0), ("gconv", 2, 3, 3))), 0.25, "l1", 1)
def test_pruning_random_models(program, fraction, criterion, steps):
    """A random model is pruned into one that computes what it computed without the removed
    channels, or a group is left whole, or the Pruner refuses: never another exception."""
    torch.manual_seed(0)
    model = randomize_norms(GraphNet(program)).eval()
    x = torch.randn(*SHAPE)
    shape = list(model(x).shape)
    unpruned = copy.deepcopy(model)
    with _time_limit(60), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            pruner = pk.Pruner(
                model, x, criterion=criterion, target=pk.Target(params=fraction), steps=steps
            )
        except PrunekitError as err:
            one_line(err)
            assert _same(model, unpruned)
            return
    for warning in caught:  # only prunekit's: a group left whole, and why
        message = one_line(warning.message)
        assert re.fullmatch(r"prunekit leaves the channels of '[\w.]+' whole: .+", message)
    for _ in range(steps):
        before = copy.deepcopy(model)
        with _time_limit(60), _removals() as removed:
            try:
                report = pruner.step()
            except PrunekitError as err:  # a step that would break the model is undone
                one_line(err)
                assert _same(model, before)
                return
        _check_step(model, before, report, removed, x, shape)


# ---------------------------------------------------------------------- run directories
@settings(
    max_examples=40,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    name=st.sampled_from(["config.yaml", "log.jsonl"]),
    at=st.floats(0, 1),
    cut=st.booleans(),
    junk=st.one_of(YAMLISH.map(str.encode), st.binary(max_size=12)),
)
@example(name="log.jsonl", at=0.5, cut=True, junk=b"")  # a crash in the middle of a record
@example(name="config.yaml", at=0.0, cut=True, junk=b"")  # an empty config.yaml (full disk)
@example(name="log.jsonl", at=0.0, cut=True, junk=b"")  # an empty log: was IndexError
def test_damaged_run_directory_files(name, at, cut, junk, finished_run, tmp_path_factory, cli):
    """``report`` and ``--resume`` of a run whose config.yaml or log.jsonl is damaged (cut
    short, or with junk written into it) succeed, or fail with one line naming the file;
    the checkpoints, the run's truth, are left as they were."""
    run = Path(shutil.copytree(finished_run, tmp_path_factory.mktemp("damaged") / "run"))
    path = run / name
    data = path.read_bytes()
    where = int(at * len(data))
    path.write_bytes(data[:where] + junk + (b"" if cut else data[where + len(junk) :]))
    checkpoints = {p.name: p.read_bytes() for p in (run / "checkpoints").iterdir()}
    for argv in (["report", str(run)], ["run", "--resume", str(run), "--quiet"]):
        code, _, err = cli(*argv)
        assert code in (0, 2), err
        lines = err.splitlines()
        assert all(line.startswith(("note: ", "prunekit: error: ")) for line in lines), err
        assert sum(line.startswith("prunekit: error: ") for line in lines) == (code == 2), err
    assert {p.name: p.read_bytes() for p in (run / "checkpoints").iterdir()} == checkpoints
