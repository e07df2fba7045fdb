"""Benchmark fixtures and the ratio summary printed after a benchmark run."""

from __future__ import annotations

import pytest
import torch

#: (numerator, denominator, goal) pairs the project tracks, as medians measured in one run
RATIOS = [
    ("test_bench_fwd_bwd_accumulate", "test_bench_fwd_bwd_plain", 1.10),
    ("test_bench_step_prunekit", "test_bench_step_torch_pruning", 1.5),
    ("test_bench_latency_pruned40", "test_bench_latency_unpruned", None),
]
#: throughputs compared as images/s (extra_info), numerator must be >= goal x denominator
THROUGHPUTS = [("test_bench_face_loader", "test_bench_face_train_step", 2.0)]


@pytest.fixture(scope="session")
def paper_squeezenet():
    """A builder of the SqueezerFaceNet paper's network (BatchNorm), 113x113 inputs."""
    models = pytest.importorskip("prunekit_face.models")
    torch.set_num_threads(2)
    return lambda: models.squeezefacenet(bn=True)


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    session = getattr(config, "_benchmarksession", None)
    if session is None or session.disabled:
        return
    medians = {b.name: b.stats.median for b in session.benchmarks if b.stats}
    # latency ratios sit beside their MACs ratio (the goal: latency <= MACs + 0.10)
    macs = {b.name: b.extra_info.get("macs") for b in session.benchmarks}
    lines = []
    for num, den, goal in RATIOS:
        if num in medians and den in medians:
            ratio = medians[num] / medians[den]
            verdict = ""
            if goal is not None:
                verdict = f" (goal <= {goal:.2f}: {'met' if ratio <= goal else 'NOT met'})"
            if macs.get(num) and macs.get(den):
                limit = macs[num] / macs[den] + 0.10
                verdict = (
                    f" (MACs ratio + 0.10 = {limit:.3f}: {'met' if ratio <= limit else 'NOT met'})"
                )
            lines.append(f"{num} / {den} = {ratio:.3f}{verdict}")
    rates = {b.name: b.extra_info.get("images_per_s") for b in session.benchmarks}
    for num, den, goal in THROUGHPUTS:
        if rates.get(num) and rates.get(den):
            ratio = rates[num] / rates[den]
            verdict = "met" if ratio >= goal else "NOT met"
            lines.append(f"{num} / {den} images/s = {ratio:.2f} (goal >= {goal:.1f}: {verdict})")
    if lines:
        terminalreporter.write_sep("-", "prunekit benchmark ratios (medians)")
        for line in lines:
            terminalreporter.write_line(line)
