"""Inputs that used to give silently wrong results: a pruned model that no longer runs, a target
overshot without a word, an ignored layer that was pruned anyway, a config key silently dropped,
a checkpoint of another model loaded as if it fitted. Each is now an exact result or an error."""

from __future__ import annotations

import copy
import shutil
import warnings
from pathlib import Path

import pytest
import torch
from torch import nn

import prunekit as pk
from prunekit.engine.groups import ChannelGroup
from tests.engine.equivalence import masked_reference
from tests.reliability.conftest import Cli
from tests.reliability.support import TOY, snapshot
from tests.reliability.test_bad_input import error_line


def _same_weights(a: nn.Module, b: nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def _prune(
    model: nn.Module, x: torch.Tensor, **kwargs
) -> tuple[pk.Pruner, pk.StepReport, list[str]]:
    """One l1 step, unit by unit; also the warnings building the pruner gave."""
    torch.manual_seed(0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pruner = pk.Pruner(model, x, criterion="l1", round_to=None, **kwargs)
    return pruner, pruner.step(), [str(w.message) for w in caught]


# ---------------------------------------------------------------------- 1. broken models
class BatchMix(nn.Module):
    """Adds the two halves of the batch: torch-pruning takes the slices for channel slices."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 16), nn.ReLU())
        self.head = nn.Linear(16, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.body(x)
        n = z.shape[0] // 2
        return self.head(z[:n] + z[n:])


def test_a_batch_slice_leaves_its_group_whole_and_the_rest_is_pruned():
    torch.manual_seed(0)
    model, x = BatchMix(), torch.randn(4, 8)
    pruner, report, warned = _prune(model, x, target="params=0.3")
    reason = (
        "torch-pruning cannot map its channels through the slice along dim 0 of a [4, 16] "
        "tensor after 'body.2' in forward()"
    )
    assert pruner.left_whole == {"body.2": reason}
    assert warned == [f"prunekit leaves the channels of 'body.2' whole: {reason}"]
    assert model.body[0].out_features < 16 and model.body[2].out_features == 16
    with torch.no_grad():
        assert model(x).shape == (2, 4)
    measured = pk.measure(model, x)["params"]
    assert report.params == measured
    assert report.planned["params"] == report.achieved["params"] >= 0.3


class Conv1dHalves(nn.Module):
    """Adds the two channel halves of a Conv1d: torch-pruning sees no channel slice at all."""

    def __init__(self) -> None:
        super().__init__()
        self.c0 = nn.Conv1d(3, 8, 3, padding=1)
        self.c1 = nn.Conv1d(8, 16, 3, padding=1)
        self.head = nn.Conv1d(8, 4, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = torch.relu(self.c1(torch.relu(self.c0(x))))
        return self.head(z[:, :8] + z[:, 8:])


def test_a_channel_slice_torch_pruning_misses_leaves_its_group_whole():
    model, x = Conv1dHalves(), torch.randn(1, 3, 8)
    pruner, _, _ = _prune(model, x, target="params=0.1")
    assert pruner.left_whole == {
        "c1": "torch-pruning maps its channels past the 8 input channels of 'head' (Conv1d) "
        "(through a slice, view or indexing in forward()?)"
    }
    assert model.c0.out_channels < 8 and model.c1.out_channels == 16
    with torch.no_grad():
        assert model(x).shape == (1, 4, 8)


class ViewNet(nn.Module):
    """Folds channels into a view: torch-pruning would map them, but wrongly."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 16, 3)
        self.head = nn.Conv2d(4, 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.conv(x)
        n, c, h, w = z.shape
        return self.head(z.view(n, 4, c // 4, h, w).sum(2))


class BufferNet(nn.Module):
    """Adds a per-channel buffer, which torch-pruning does not know belongs to the channels."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 16, 3)
        self.head = nn.Conv2d(16, 2, 1)
        self.register_buffer("shift", torch.randn(1, 16, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.conv(x) + self.shift)


def test_a_view_that_regroups_the_channels_leaves_their_group_whole():
    model, x = ViewNet(), torch.randn(1, 3, 8, 8)
    with pytest.raises(pk.PrunekitError) as info:
        pk.Pruner(model, x, criterion="l1", target="params=0.3")
    assert str(info.value).endswith(
        "'conv' is left whole: torch-pruning cannot map its channels through the view/reshape "
        "after 'conv' in forward(): it regroups them ([1, 16, 6, 6] -> [1, 4, 4, 6, 6], a "
        "channel shuffle?)"
    )


def test_a_step_that_breaks_the_model_is_undone_and_names_the_group():
    torch.manual_seed(0)
    model, x = BufferNet(), torch.randn(1, 3, 8, 8)
    before = copy.deepcopy(model)
    pruner = pk.Pruner(model, x, criterion="l1", target="params=0.3", round_to=None)
    with pytest.raises(pk.PrunekitError) as info:
        pruner.step()
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(
        "step 1: pruning the channels of 'conv' broke BufferNet: its forward() fails on the "
        "example inputs (RuntimeError: "
    )
    assert message.endswith(
        "torch-pruning did not follow its channels through some operation in forward() (a "
        "slice, view or indexing, or one that reads the model's input?), so the step was "
        "undone: add 'conv' to ignored_layers"
    )
    assert _same_weights(model, before) and model.conv.out_channels == 16
    assert pruner.step_index == 0 and not pruner.history
    with torch.no_grad():
        assert torch.equal(model(x), before(x))


def test_a_failure_midway_through_a_step_leaves_no_half_pruned_model(monkeypatch):
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 8, 3), nn.ReLU()
    )
    model.append(nn.Conv2d(8, 4, 1))
    x = torch.randn(1, 3, 12, 12)
    before = copy.deepcopy(model)
    pruner = pk.Pruner(model.eval(), x, criterion="l1", target="params=0.3", round_to=None)
    assert [g.name for g in pruner.groups] == ["3", "0"]  # pruned in this order
    real = ChannelGroup.prune

    def second_group_fails(group: ChannelGroup, units: list[int]):
        if group.name == "0":
            raise RuntimeError("boom")
        return real(group, units)

    monkeypatch.setattr(ChannelGroup, "prune", second_group_fails)
    with pytest.raises(pk.PrunekitError) as info:
        pruner.step()
    assert str(info.value) == (
        "step 1: pruning the channels of '0' broke Sequential: torch-pruning failed "
        "(RuntimeError: boom); torch-pruning did not follow its channels through some operation "
        "in forward() (a slice, view or indexing, or one that reads the model's input?), so the "
        "step was undone: add '0' to ignored_layers"
    )
    assert model[3].out_channels == model[5].in_channels == 8  # group '3' was pruned: restored
    assert _same_weights(model, before)
    monkeypatch.setattr(ChannelGroup, "prune", real)
    report = pruner.step()  # the pruner is as it was: the step can be taken again
    assert report.achieved["params"] >= 0.3


# ---------------------------------------------------------------------- 2. exact cost
class Recurrent(nn.Module):
    """A Linear feeding an LSTM (optionally bidirectional), then a head on the last step."""

    def __init__(self, bidirectional: bool = False) -> None:
        super().__init__()
        self.fc = nn.Linear(8, 32)
        self.lstm = nn.LSTM(32, 16, batch_first=True, bidirectional=bidirectional)
        self.head = nn.Linear(16 * (2 if bidirectional else 1), 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y, _ = self.lstm(self.fc(x))
        return self.head(y[:, -1])


def test_the_lstm_inputs_are_counted_and_the_target_is_met_as_planned():
    model, x = Recurrent(), torch.randn(2, 5, 8)
    base = pk.measure(model, x)["params"]
    assert base == 3556
    _, report, _ = _prune(model, x, target="params=0.05")
    # a unit of fc: its 8 weights and bias, and one input column of the LSTM's 4 x 16 gates
    assert model.fc.out_features == model.lstm.input_size == 29  # 3 units of 73 parameters
    assert model.lstm.weight_ih_l0.shape == (64, 29)
    assert report.planned["params"] == report.achieved["params"]
    assert report.achieved["params"] == pytest.approx(3 * 73 / base, abs=1e-15)
    assert report.params == pk.measure(model, x)["params"] == base - 3 * 73


class EmbeddingSum(nn.Module):
    """An embedding added to a Linear's output: the embedding's columns go with its channels."""

    def __init__(self) -> None:
        super().__init__()
        self.emb = nn.Embedding(10, 16)
        self.fc = nn.Linear(8, 16)
        self.head = nn.Linear(16, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ids = torch.zeros(x.shape[0], dtype=torch.long)
        return self.head(torch.relu(self.fc(x) + self.emb(ids)))


def _instance_norm() -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, 8, 3), nn.InstanceNorm2d(8, affine=True), nn.Conv2d(8, 2, 1))


@pytest.mark.parametrize(
    ("build", "shape"),
    [
        pytest.param(lambda: Recurrent(bidirectional=True), (2, 5, 8), id="bidirectional-lstm"),
        pytest.param(EmbeddingSum, (2, 8), id="embedding"),
        pytest.param(_instance_norm, (1, 3, 8, 8), id="instance-norm"),
    ],
)
def test_every_parameter_the_removal_touches_is_counted(build, shape):
    torch.manual_seed(0)
    model, x = build(), torch.randn(*shape)
    base = pk.measure(model, x)["params"]
    _, report, _ = _prune(model, x, target="params=0.2")
    assert report.planned["params"] == report.achieved["params"]
    assert report.params == pk.measure(model, x)["params"]
    assert report.achieved["params"] == 1 - report.params / base >= 0.2


class LstmResidual(nn.Module):
    """An LSTM's output added to a Linear's: torch-pruning would prune its hidden size."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(8, 16)
        self.rnn = nn.LSTM(16, 16, batch_first=True)
        self.skip = nn.Linear(16, 16)
        self.head = nn.Linear(16, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.fc(x)
        y, _ = self.rnn(z)
        return self.head(y + self.skip(z))


class Scaled(nn.Module):
    """A bare nn.Parameter scales a Linear's channels per position (3 tokens of 16 channels):
    which of its dimensions holds the channels only the trace could say."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(8, 16)
        self.gamma = nn.Parameter(torch.ones(3, 16))
        self.mid = nn.Linear(16, 16)
        self.head = nn.Linear(16, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.relu(self.mid(torch.relu(self.fc(x)))) * self.gamma)


@pytest.mark.parametrize(
    ("build", "shape", "left_whole"),
    [
        pytest.param(
            LstmResidual,
            (2, 5, 8),
            {
                "skip": "pruning the output channels of 'rnn' (LSTM) changes parameters prunekit "
                "cannot count"
            },
            id="lstm-hidden",
        ),
        pytest.param(
            Scaled,
            (2, 3, 8),
            {
                "mid": "the bare nn.Parameter 'gamma' (3, 16) meets its channels along more "
                "than one dimension: wrap it in a module"
            },
            id="bare-parameter",
        ),
    ],
)
def test_layers_that_cannot_be_counted_are_left_whole_with_the_reason(build, shape, left_whole):
    torch.manual_seed(0)
    model, x = build(), torch.randn(*shape)
    base = pk.measure(model, x)["params"]
    pruner, report, warned = _prune(model, x, target="params=0.05")
    assert pruner.left_whole == left_whole
    [(name, reason)] = left_whole.items()
    assert warned == [f"prunekit leaves the channels of {name!r} whole: {reason}"]
    assert getattr(model, name).out_features == 16
    assert report.planned["params"] == report.achieved["params"] == 1 - report.params / base
    assert report.params == pk.measure(model, x)["params"]


def test_a_layer_torch_pruning_cannot_follow_is_named():
    class Gru(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(8, 32)
            self.gru = nn.GRU(32, 16, batch_first=True)
            self.head = nn.Linear(16, 4)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.head(self.gru(self.fc(x))[0][:, -1])

    with pytest.raises(pk.PrunekitError) as info:
        pk.Pruner(Gru(), torch.randn(2, 5, 8), target="params=0.05")
    assert str(info.value) == (
        "torch-pruning cannot follow the channels of 'fc' in Gru (IndexError: list index out of "
        "range); add 'fc' to ignored_layers"
    )


def test_nothing_left_to_prune_says_why():
    class OnlySlice(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(8, 16)
            self.head = nn.Linear(8, 4)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            z = torch.relu(self.fc(x))
            return self.head(z[:, :8] * z[:, 8:])

    with pytest.raises(pk.PrunekitError) as info:
        pk.Pruner(OnlySlice(), torch.randn(2, 8), target="params=0.1")
    assert str(info.value) == (
        "nothing to prune: every channel group is ignored, left whole or reaches the model "
        "output; check ignored_layers; 'fc' is left whole: torch-pruning cannot map its channels "
        "through the slice along dim 1 of a [2, 16] tensor after 'fc' in forward()"
    )


# ---------------------------------------------------------------------- 3. ignored layers
class Mlp(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 16), nn.ReLU())
        self.head = nn.Linear(16, 4)
        self.out = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.head(self.body(x)))


def _groups(ignored) -> list[str]:
    pruner = pk.Pruner(Mlp(), torch.randn(2, 8), target="params=0.05", ignored_layers=ignored)
    return sorted(g.name for g in pruner.groups)


def test_layers_are_ignored_by_module_or_by_name():
    model = Mlp()
    by_module = pk.Pruner(model, torch.randn(2, 8), ignored_layers=[model.head])
    assert sorted(g.name for g in by_module.groups) == _groups(["head"]) == ["body.0", "body.2"]
    assert _groups("head") == ["body.0", "body.2"]  # one name, not its letters
    assert _groups([]) == ["body.0", "body.2", "head"]


def test_an_ignored_block_keeps_every_layer_in_it():
    assert _groups(["body"]) == ["head"]


@pytest.mark.parametrize(
    ("ignored", "message"),
    [
        pytest.param(
            lambda m: [copy.deepcopy(m).head],
            "ignored_layers[0] is a Linear that is not part of Mlp (a copy of one of its "
            "layers?); did you mean 'head'?",
            id="a-copy",
        ),
        pytest.param(
            lambda m: ["body.0", "haed"],
            "ignored_layers: Mlp has no layer 'haed'; did you mean 'head'?",
            id="a-typo",
        ),
        pytest.param(
            lambda m: ["classifier"],
            "ignored_layers: Mlp has no layer 'classifier'; see model.named_modules()",
            id="an-unknown-name",
        ),
        pytest.param(
            lambda m: [m.head.weight],
            "ignored_layers[0] is a Parameter: give layers of Mlp (modules) or their names (str)",
            id="a-tensor",
        ),
        pytest.param(
            lambda m: [nn.Linear(3, 3)],
            "ignored_layers[0] is a Linear that is not part of Mlp (a copy of one of its "
            "layers?); pass a layer of the model itself",
            id="a-stranger",
        ),
    ],
)
def test_what_is_not_a_layer_of_the_model_is_refused(ignored, message):
    model = Mlp()
    with pytest.raises(pk.PrunekitError) as info:
        pk.Pruner(model, torch.randn(2, 8), ignored_layers=ignored(model))
    assert str(info.value) == message


# ---------------------------------------------------------------------- 4. duplicate keys
def test_a_config_file_with_a_duplicate_key_is_refused(cli: Cli, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "dup.yaml").write_text("prune:\n  steps: 3\nseed: 1\nprune:\n  scope: global\n")
    error_line(
        cli("run", "toy", "--config", "dup.yaml", "--out", "new"),
        "prunekit: error: malformed YAML in dup.yaml, line 4, column 1: duplicate key 'prune' "
        "(first on line 1): keep one of them",
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dup.yaml"]


# ---------------------------------------------------------------------- 5. checkpoints
@pytest.fixture(scope="session")
def narrow_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished toy run of width 8 (the other runs have the default width 16)."""
    from prunekit.cli.main import main

    out = tmp_path_factory.mktemp("narrow") / "run"
    args = ["run", "toy", "--criterion", "l1", *TOY, "--set", "toy.width=8", "--out", str(out)]
    assert main(args) == 0
    return out


def _misfit(path: Path) -> str:
    return (
        f"prunekit: error: checkpoint {path} does not fit ToyNet: tensor 'features.0.weight' is "
        "[8, 3, 3, 3] there (before pruning) but [16, 3, 3, 3] here; build the model the "
        "checkpoint was saved from (the same settings, e.g. width)"
    )


def test_resume_with_a_step_checkpoint_of_another_width(
    cli: Cli, finished_run, narrow_run, tmp_path
):
    run = Path(shutil.copytree(finished_run, tmp_path / "run"))
    latest = run / "checkpoints" / "step-2.pt"
    shutil.copy(narrow_run / "checkpoints" / "step-2.pt", latest)
    before = snapshot(run)
    assert error_line(cli("run", "--resume", str(run), "--quiet")) == _misfit(latest)
    assert snapshot(run) == before


def test_a_baseline_checkpoint_of_another_width(cli: Cli, narrow_run, tmp_path):
    baseline = narrow_run / "checkpoints" / "step-0.pt"
    out = tmp_path / "new"
    result = cli("run", "toy", *TOY, "--set", f"baseline.checkpoint={baseline}", "--out", str(out))
    assert error_line(result) == _misfit(baseline)
    assert not (out / "checkpoints" / "step-0.pt").exists()


def test_a_view_that_keeps_the_channels_in_dim_1_is_pruned_through():
    class Tokens(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 16, 3)
            self.head = nn.Linear(16, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            z = self.conv(x)
            return self.head(z.view(z.shape[0], z.shape[1], -1).transpose(1, 2).mean(1))

    model, x = Tokens().eval(), torch.randn(1, 3, 8, 8)
    before = copy.deepcopy(model)
    report = pk.Pruner(model, x, criterion="l1", target="params=0.3", round_to=None).step()
    assert model.conv.out_channels == model.head.in_features < 16
    with torch.no_grad():
        torch.testing.assert_close(model(x), masked_reference(before, report)(x), atol=1e-5, rtol=0)
