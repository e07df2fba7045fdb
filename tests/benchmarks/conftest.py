"""Benchmark fixtures and the ratio summary printed after a benchmark run."""

from __future__ import annotations

import copy

import pytest
import torch

import prunekit as pk
from prunekit.allocator import keep_freed_memory

#: the coverage suite's largest graphs, for the prune-step benchmark (pytorchcv, random weights,
#: 224x224): DenseNet-121 has the most layers and concats, DarkNet-53 the most parameters
STEP_ZOO = {"densenet121": "pytorchcv.models.densenet", "darknet53": "pytorchcv.models.darknet53"}
#: (numerator, denominator, goal) pairs the project tracks, as medians measured in one run
#: (latency pairs are found by name, see ``_latency_lines``)
RATIOS = [
    ("test_bench_fwd_bwd_accumulate", "test_bench_fwd_bwd_plain", 1.10),
    ("test_bench_step_prunekit", "test_bench_step_torch_pruning", 1.5),
    *(
        (f"test_bench_step_zoo_prunekit[{name}]", f"test_bench_step_zoo_torch_pruning[{name}]", 1.5)
        for name in STEP_ZOO
    ),
]
#: throughputs compared as images/s (extra_info), numerator must be >= goal x denominator
THROUGHPUTS = [("test_bench_face_loader", "test_bench_face_train_step", 2.0)]


@pytest.fixture(scope="session", autouse=True)
def allocator_as_the_command_line_sets_it():
    """Benchmarks time what ``prunekit`` runs: its process keeps freed memory (see
    :mod:`prunekit.allocator`), which halves the CPU passes' time and much of their noise."""
    keep_freed_memory()


@pytest.fixture(scope="session")
def paper_squeezenet():
    """A builder of the SqueezerFaceNet paper's network (BatchNorm), 113x113 inputs."""
    models = pytest.importorskip("prunekit_face.models")
    torch.set_num_threads(2)
    return lambda: models.squeezefacenet(bn=True)


#: the paper network's input size
SIZE = 113


@pytest.fixture(scope="module")
def parent(paper_squeezenet):
    """The paper's network with seeded random weights, in eval mode."""
    torch.manual_seed(0)
    return paper_squeezenet().eval()


@pytest.fixture(scope="module")
def released_parent():
    """The authors' released SqueezeFacePoseNet-DWC (no BatchNorm), in eval mode."""
    pretrained = pytest.importorskip("prunekit_face.pretrained")
    torch.set_num_threads(2)
    return pretrained.released_model()


def pruned(parent: torch.nn.Module, criterion: str, scope: str, **options) -> pk.Pruner:
    """The Pruner of a copy of ``parent`` pruned in one step (``options`` go to ``pk.Pruner``;
    its ``model``, in eval mode, is the pruned copy); gradient criteria get two seeded batches
    first."""
    model = copy.deepcopy(parent)
    example = torch.randn(1, 3, SIZE, SIZE)
    pruner = pk.Pruner(model, example, criterion=criterion, scope=scope, **options)
    if pruner.needs_grad:
        gen = torch.Generator().manual_seed(0)
        for _ in range(2):
            model(torch.randn(4, 3, SIZE, SIZE, generator=gen)).pow(2).mean().backward()
            pruner.accumulate()
        model.zero_grad(set_to_none=True)
    pruner.step()
    model.eval()
    return pruner


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    session = getattr(config, "_benchmarksession", None)
    if session is None or session.disabled:
        return
    benchmarks = [b for b in session.benchmarks if b.stats]
    medians = {b.name: b.stats.median for b in benchmarks}
    lines = []
    for num, den, goal in RATIOS:
        if num in medians and den in medians:
            ratio = medians[num] / medians[den]
            verdict = "met" if ratio <= goal else "NOT met"
            lines.append(f"{num} / {den} = {ratio:.3f} (goal <= {goal:.2f}: {verdict})")
    lines += _latency_lines(benchmarks)
    lines += _latency_target_lines(benchmarks)
    lines += _conv_width_lines(benchmarks)
    lines += [
        f"{b.name}: copy / first {b.extra_info['copy_over_first_median']:.3f} "
        f"({b.extra_info['copy_over_first_min']:.3f}-{b.extra_info['copy_over_first_max']:.3f})"
        for b in benchmarks
        if b.name.startswith("test_bench_latency_copies")
    ]
    rates = {b.name: b.extra_info.get("images_per_s") for b in benchmarks}
    for num, den, goal in THROUGHPUTS:
        if rates.get(num) and rates.get(den):
            ratio = rates[num] / rates[den]
            verdict = "met" if ratio >= goal else "NOT met"
            lines.append(f"{num} / {den} images/s = {ratio:.2f} (goal >= {goal:.1f}: {verdict})")
    if lines:
        terminalreporter.write_sep("-", "prunekit benchmark ratios (medians)")
        for line in lines:
            terminalreporter.write_line(line)


def _latency_lines(benchmarks) -> list[str]:
    """Each pruned model's latency over its parent's at the same batch size (the two tests'
    medians, then the interleaved measurement the verdict uses), beside the goal: never slower
    than the parent, and at most its MACs ratio + 0.10."""
    parents = {
        b.extra_info["batch"]: b for b in benchmarks if b.name.startswith("test_bench_latency_unp")
    }
    lines = []
    for b in benchmarks:
        parent = parents.get(b.extra_info.get("batch"))
        if not b.name.startswith("test_bench_latency_pruned") or parent is None:
            continue
        ratio = b.stats.median / parent.stats.median
        limit = min(1.0, b.extra_info["macs"] / parent.extra_info["macs"] + 0.10)
        interleaved = b.extra_info["interleaved_ratio"]
        verdict = "met" if interleaved <= limit else "NOT met"
        lines.append(
            f"{b.name} / {parent.name} = {ratio:.3f}, interleaved {interleaved:.3f} "
            f"(goal <= {limit:.3f}: {verdict})"
        )
    return lines


#: ``Target(latency=0.6)``: the pruned model at batch 32 within this fraction of the parent's time
LATENCY_TARGET_GOAL = 0.63


def _latency_target_lines(benchmarks) -> list[str]:
    """Each latency-target case's measured time over its parent's, at batch 32 (goal <= 0.63)
    and batch 1 (goal: not slower than the parent), both interleaved."""
    lines = []
    for b in benchmarks:
        if not b.name.startswith("test_bench_latency_target"):
            continue
        b32, b1 = b.extra_info["ratio_b32"], b.extra_info["ratio_b1"]
        removed = b.extra_info["params_removed"]
        ok32 = "met" if b32 <= LATENCY_TARGET_GOAL else "NOT met"
        ok1 = "met" if b1 <= 1.0 else "NOT met"
        lines.append(
            f"{b.name}: batch 32 {b32:.3f} (goal <= {LATENCY_TARGET_GOAL}: {ok32}), "
            f"batch 1 {b1:.3f} (goal <= 1: {ok1}), params removed {removed:.3f}, "
            f"channel multiples {b.extra_info['multiples']} (probe {b.extra_info['probe']})"
        )
    return lines


def _conv_width_lines(benchmarks) -> list[str]:
    """Each width of the single-convolution benchmark against the unpruned 16 -> 64 layer."""
    convs = {b.name: b for b in benchmarks if b.name.startswith("test_bench_conv3x3_width")}
    parent = convs.get("test_bench_conv3x3_width[16-64]")
    if parent is None:
        return []
    return [
        f"{name} / [16-64] = {b.stats.median / parent.stats.median:.3f} "
        f"(MACs ratio {b.extra_info['macs_ratio']:.3f})"
        for name, b in convs.items()
        if b is not parent
    ]
