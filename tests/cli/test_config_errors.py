"""Configuration mistakes: one clear line, exit status 2, and nothing written."""

from __future__ import annotations

import pytest

BAD_YAML = "prune:\n  steps: 3\n bad: [\n"


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--set", "prune.stesp=3"], ["'prune.stesp'", "did you mean 'prune.steps'?"]),
        (["--set", "steps=3"], ["'steps'", "did you mean 'prune.steps'?"]),
        (["--config", "cfg.yaml"], ["'baseline.lrr'", "cfg.yaml", "did you mean 'baseline.lr'?"]),
        (["--set", "prune.steps=three"], ["'prune.steps'", "must be an integer", "'three'"]),
        (["--set", "prune.target=0.4"], ["'prune.target'", "must be a mapping of one of"]),
        (["--steps", "0"], ["'prune.steps'", "must be an integer >= 1, got 0"]),
        (["--set", "baseline.lr=0"], ["'baseline.lr'", "must be a number > 0"]),
        (["--target", "params=1.5"], ["'prune.target.params'", "a fraction in (0, 1)"]),
        (["--target", "flops=0.3"], ["target 'flops=0.3' is malformed", "params|macs|channels"]),
        (["--scope", "sideways"], ["'prune.scope'", "local, global"]),
        (["--set", "toy.width=0"], ["'toy.width'", ">= 1"]),  # a task's own range
        (["--config", "bad.yaml"], ["malformed YAML", "bad.yaml, line 3, column 2"]),
        (["--criterion", "taylr"], ["unknown criterion 'taylr'", "'taylor'", "demo_magnitude"]),
        (["--schedule", "cosine"], ["unknown schedule 'cosine'", "linear"]),
        (["--set", "prune.criterion_options.x=1"], ["no option 'x'"]),
        (["--set", "prune.min_channels=64"], ["out of reach"]),  # found by the pruner
        # integers out of range are refused up front, before torch or itertools overflow
        (["--seed", str(10**20 - 1)], ["'seed'", "[0, 4294967295], got 99999999999999999999"]),
        (["--seed", str(2**64 - 1)], ["'seed'", "[0, 4294967295], got 18446744073709551615"]),
        (["--seed", "-1"], ["'seed'", "must be an integer in [0, 4294967295], got -1"]),
        (["--threads", str(10**20)], ["'threads'", f"in [1, 1024], got {10**20}"]),
        (["--threads", "0"], ["'threads'", "null or an integer in [1, 1024], got 0"]),
        (["--set", f"latency.repeats={10**20}"], ["'latency.repeats'", "[1, 100000]"]),
        (["--set", f"latency.batch_size={10**20}"], ["'latency.batch_size'", "[1, 100000]"]),
        (["--set", f"latency.threads={10**20}"], ["'latency.threads'", "[1, 1024]"]),
        (
            ["--set", f"prune.score_batches={2**63}"],
            ["'prune.score_batches'", "in [1, 2147483647], got 9223372036854775808"],
        ),
    ],
)
def test_config_error(args, expected, cli, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "cfg.yaml").write_text("baseline:\n  lrr: 0.1\n")
    (tmp_path / "bad.yaml").write_text(BAD_YAML)
    code, _, stderr = cli("run", "toy", *args, "--out", "out")
    assert code == 2
    assert stderr.startswith("prunekit: error: ") and stderr.count("\n") == 1
    for text in expected:
        assert text in stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.yaml", "cfg.yaml"]


def test_unknown_task_lists_known_tasks(cli, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, _, stderr = cli("run", "toyy")
    assert code == 2
    assert "unknown task 'toyy': did you mean 'toy'?" in stderr and "known tasks" in stderr
    assert list(tmp_path.iterdir()) == []  # not even runs/


def test_compare_validates_before_writing(cli, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, _, stderr = cli("compare", "toy", "--criteria", "taylor,nope", "--seeds", "2")
    assert code == 2 and "unknown criterion 'nope'" in stderr
    code, _, stderr = cli("compare", "toy", "--criteria", "l1", "--set", "prune.steps=-1")
    assert code == 2 and "'prune.steps'" in stderr
    # the seeds run are seed .. seed + seeds - 1: the last is checked before the baseline trains
    code, _, stderr = cli(
        "compare", "toy", "--criteria", "l1", "--seed", "4294967295", "--seeds", "2"
    )
    assert code == 2 and stderr == (
        "prunekit: error: config key 'seed' in --seeds 2 must be an integer in [0, 4294967295], "
        "got 4294967296\n"
    )
    assert list(tmp_path.iterdir()) == []


def test_usage_errors_exit_2(cli):
    assert cli("run", "toy", "--steps", "x")[0] == 2  # argparse's own check
    assert cli("run")[0] == 2  # neither a task nor --resume
