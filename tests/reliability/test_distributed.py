"""Data-parallel runs: 2 processes on gloo (CPU), launched by torchrun and by ``--nproc 2``."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import prunekit as pk

WORKER = Path(__file__).with_name("dist_worker.py")
#: no baseline training, so that step 1 scores the same model as a single process does; a
#: whole epoch (4 batches) scored per step, 2 per rank; DDP fine-tuning between the steps
ARGS = [
    "run", "toy", "--criterion", "taylor", "--steps", "2", "--quiet",
    "--set", "toy.train_samples=256", "--set", "toy.test_samples=64",
    "--set", "baseline.epochs=0", "--set", "prune.score_batches=null",
]  # fmt: skip
TIMEOUT = 180  # seconds; a hung process group is killed


def launch(*cmd: str) -> tuple[int, str, str]:
    """Run ``cmd`` in its own process group; kill the whole group if it hangs."""
    with subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    ) as proc:
        try:
            out, err = proc.communicate(timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            raise
    return proc.returncode, out, err


@pytest.fixture(scope="module")
def torchrun(tmp_path_factory) -> Path:
    """``torchrun --standalone --nproc_per_node=2 dist_worker.py DUMP prunekit ARGS``."""
    root = tmp_path_factory.mktemp("torchrun")
    code, out, err = launch(
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
        str(WORKER), str(root), *ARGS, "--out", str(root / "run"),
    )  # fmt: skip
    assert code == 0, err
    assert out.count("done: ") == 1  # rank 0 alone reports
    return root


def seen(root: Path, rank: int, step: int) -> dict:
    return torch.load(root / f"rank{rank}-step{step}.pt", weights_only=True)


def test_ranks_hold_the_same_model_after_every_step(torchrun):
    for step in (1, 2):
        a, b = seen(torchrun, 0, step), seen(torchrun, 1, step)
        assert a["removed"] == b["removed"]
        assert a["model"].keys() == b["model"].keys()
        assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])


def test_rank_0_alone_writes_the_run(torchrun):
    run = torchrun / "run"
    steps = [json.loads(line)["step"] for line in (run / "log.jsonl").read_text().splitlines()]
    assert steps == [0, 1, 2]
    final = pk.read_checkpoint(run / "final.pt")["model"]
    trained = seen(torchrun, 0, 2)["model"]
    assert all(torch.equal(final[k], trained[k]) for k in trained)


def test_scores_are_those_of_one_process_seeing_every_batch(torchrun, cli, tmp_path, monkeypatch):
    prune, single = pk.Pruner.step, []

    def step(self):
        scores = self.criterion.scores(self.groups, self.step_index)
        report = prune(self)
        single.append({"scores": scores, "removed": report.removed})
        return report

    monkeypatch.setattr(pk.Pruner, "step", step)
    assert cli(*ARGS, "--out", str(tmp_path / "run"))[0] == 0
    parallel = seen(torchrun, 0, 1)  # step 1: both score the same, untrained model
    assert parallel["removed"] == single[0]["removed"]
    for a, b in zip(parallel["scores"], single[0]["scores"], strict=True):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=0.0)  # sums of 2 + 2 batches / 4


def test_nproc_flag_relaunches_and_matches_torchrun(torchrun, tmp_path):
    out = tmp_path / "run"
    code, stdout, err = launch(
        sys.executable, "-m", "prunekit", *ARGS, "--out", str(out), "--nproc", "2"
    )
    assert code == 0, err
    assert stdout.count(f"done: {out / 'report.md'}") == 1
    a = pk.read_checkpoint(out / "final.pt")["model"]
    b = pk.read_checkpoint(torchrun / "run" / "final.pt")["model"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_nproc_must_agree_with_torchrun(cli, tmp_path, monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")  # as if started by torchrun --nproc_per_node=2
    code, _, err = cli(*ARGS, "--nproc", "3", "--out", str(tmp_path / "run"))
    assert code == 2
    assert err == "prunekit: error: --nproc 3 disagrees with torchrun's 2 processes: drop --nproc\n"
    assert not (tmp_path / "run").exists()


FROZEN = """
import os, signal, sys
import torch
from prunekit.errors import PrunekitError
from prunekit.runner.distributed import joined

try:
    with joined(torch.device("cpu"), timeout_s=4) as world:
        world.barrier()  # both ranks are in the group and beating
        if world.rank == 1:
            os.kill(os.getpid(), signal.SIGSTOP)  # frozen, as by a debugger or the OOM path
        world.barrier()  # rank 0 waits here for a rank that never comes
except PrunekitError as error:
    print(error, file=sys.stderr)
    sys.exit(2)
"""


def test_a_frozen_rank_is_named_after_the_timeout_not_waited_for(tmp_path):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "WORLD_SIZE": "2"}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", FROZEN],
            env={**env, "RANK": str(r), "LOCAL_RANK": str(r)},
            stderr=subprocess.PIPE,
            text=True,
        )
        for r in (0, 1)
    ]
    try:
        _, err = procs[0].communicate(timeout=120)
    finally:
        procs[1].kill()
        procs[1].wait()
    assert procs[0].returncode == 2, err
    assert "waited timeout_s=4 s for the other processes: rank(s) 1 stopped answering" in err
