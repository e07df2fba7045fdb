"""``prunekit compare``: one shared baseline, every table format and the plot."""

from __future__ import annotations

import csv
import json

from prunekit_toy.task import ToyTask


def test_compare_two_seeds_trains_the_baseline_once(cli, tmp_path, monkeypatch):
    trained = []
    original = ToyTask.prepare_baseline

    def counting(self, model):
        trained.append(self.config["seed"])
        return original(self, model)

    monkeypatch.setattr(ToyTask, "prepare_baseline", counting)
    out = tmp_path / "cmp"
    code, stdout, err = cli(
        "compare", "toy", "--criteria", "taylor,random", "--seeds", "2", "--steps", "2",
        "--out", str(out), "--quiet",
    )  # fmt: skip
    assert code == 0, err
    assert trained == [0]  # once, for all 2 criteria x 2 seeds

    runs = sorted(p.name for p in (out / "runs").iterdir())
    assert runs == ["random-seed0", "random-seed1", "taylor-seed0", "taylor-seed1"]
    baselines = [(out / "runs" / r / "log.jsonl").read_text().splitlines()[0] for r in runs]
    assert len(set(baselines)) == 1  # every run starts from the very same baseline

    rows = json.loads((out / "results.json").read_text())
    assert [(r["criterion"], r["step"]) for r in rows] == [
        ("baseline", 0), ("taylor", 1), ("taylor", 2), ("random", 1), ("random", 2),
    ]  # fmt: skip
    assert [r["seeds"] for r in rows] == [1, 2, 2, 2, 2]
    for step in (1, 2):
        level = [r for r in rows if r["step"] == step]
        assert sum(r["best"] for r in level) == 1
        best = max(level, key=lambda r: r["accuracy_mean"])
        assert best["best"]
    assert all(r["accuracy_std"] >= 0 for r in rows)

    with open(out / "results.csv") as fh:
        assert [r["criterion"] for r in csv.DictReader(fh)] == [r["criterion"] for r in rows]
    markdown = (out / "results.md").read_text()
    assert "| baseline" in markdown and " ± " in markdown and "compare.png" in markdown
    assert "\\toprule" in (out / "results.tex").read_text()
    assert (out / "compare.png").read_bytes()[:4] == b"\x89PNG"
    assert "baseline" in stdout and "taylor" in stdout  # the terminal table


def test_compare_runs_criteria_in_parallel_processes(cli, tmp_path):
    out = tmp_path / "cmp"
    code, _, err = cli(
        "compare", "toy", "--criteria", "l1,demo_magnitude", "--steps", "1", "--jobs", "2",
        "--out", str(out), "--quiet",
    )  # fmt: skip
    assert code == 0, err
    rows = json.loads((out / "results.json").read_text())
    assert [r["criterion"] for r in rows] == ["baseline", "l1", "demo_magnitude"]


def test_parallel_jobs_time_the_baseline_with_the_runs_thread_share(cli, tmp_path, monkeypatch):
    import os

    import yaml

    from prunekit.runner import run

    threads = []
    original = run.measure_latency

    def spying(*args, **kwargs):
        threads.append(kwargs["threads"])
        return original(*args, **kwargs)

    monkeypatch.setattr(run, "measure_latency", spying)  # the baseline is timed in this process
    out = tmp_path / "cmp"
    code, _, err = cli(
        "compare",
        "toy",
        "--criteria",
        "l1,random",
        "--steps",
        "1",
        "--jobs",
        "2",
        "--set",
        "threads=null",
        "--out",
        str(out),
        "--quiet",
    )  # fmt: skip  (threads=null: the toy task pins 1 thread)
    assert code == 0, err
    share = max(1, (os.cpu_count() or 1) // 2)
    assert threads == [share]
    for name in ("l1-seed0", "random-seed0"):
        config = yaml.safe_load((out / "runs" / name / "config.yaml").read_text())
        assert config["threads"] == config["latency"]["threads"] == share
