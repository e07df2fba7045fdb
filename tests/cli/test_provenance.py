"""Provenance: what a run records about its data, model and software, and ``eval``'s check of
the data against it."""

from __future__ import annotations

import json
import shutil

from prunekit_toy.task import ToyTask

import prunekit as pk
from prunekit.runner.config import resolve

FAST = ["--steps", "1", "--set", "baseline.epochs=1", "--recovery", "none"]


def first_record(run_dir):
    return json.loads((run_dir / "log.jsonl").read_text().splitlines()[0])


def test_the_first_record_holds_the_provenance(toy_run):
    provenance = first_record(toy_run)["provenance"]
    assert provenance["data"] == ToyTask(resolve("toy")).describe_data()
    assert provenance["prunekit"] == pk.__version__
    assert {"torch", "device", "threads"} <= set(provenance)
    assert provenance["device"] == "cpu" and provenance["threads"] == 1  # the toy's default
    later = (json.loads(line) for line in (toy_run / "log.jsonl").read_text().splitlines()[1:])
    assert not any("provenance" in record for record in later)


def test_report_md_lists_the_provenance(toy_run):
    report = (toy_run / "report.md").read_text()
    assert "Provenance:" in report and f"- prunekit: {pk.__version__}" in report
    assert report.index("Provenance:") < report.index("| step")


def test_the_banner_names_the_provenance_in_singular_and_plural(tmp_path, cli):
    code, out, err = cli("run", "toy", "--criterion", "l1", *FAST, "--out", str(tmp_path / "r"))
    assert code == 0, err
    assert f"provenance: prunekit: {pk.__version__}" in out and "threads: 1" in out
    assert "in 1 step," in out and "trained from scratch for 1 epoch)" in out


def test_eval_names_its_data_and_accepts_the_runs(toy_run, cli):
    code, out, err = cli("eval", str(toy_run), "--quiet")
    assert code == 0, err
    assert out.startswith("data: synthetic 4-class") and "note:" not in out


def test_eval_refuses_other_data_unless_asked_for(toy_run, tmp_path, cli, monkeypatch):
    monkeypatch.setattr(ToyTask, "describe_data", lambda self: "other images")
    code, _, err = cli("eval", str(toy_run), "--quiet")
    assert code == 2 and len(err.splitlines()) == 1
    assert "not the data" in err and "-> other images" in err and "--data DIR" in err
    code, out, err = cli("eval", str(toy_run), "--data", str(tmp_path), "--quiet")
    assert code == 0, err
    assert "note: evaluating on other data than the run used" in out and "accuracy: " in out


def test_eval_of_a_checkpoint_without_provenance_says_so(toy_run, tmp_path, cli):
    bare = tmp_path / "bare.pt"
    model = pk.load(toy_run / "final.pt", ToyTask(resolve("toy")).build_model())
    pk.save(bare, model)
    code, out, err = cli("eval", str(bare), "--task", "toy", "--quiet")
    assert code == 0, err
    assert "records no data provenance" in out


def test_resume_on_other_data_notes_it(toy_run, tmp_path, cli, monkeypatch):
    run_dir = tmp_path / "run"
    shutil.copytree(toy_run, run_dir)
    monkeypatch.setattr(ToyTask, "describe_data", lambda self: "other images")
    code, out, err = cli("run", "--resume", str(run_dir))
    assert code == 0, err
    assert "note: the data differ from those the run started on" in out
    assert first_record(run_dir) == first_record(toy_run)  # the record keeps the run's start
