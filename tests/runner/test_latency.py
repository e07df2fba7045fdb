"""measure_latency(ies): shape of the result, interleaving, no side effects, bad settings, the
threads and trust a loaded machine allows, and the ONNX Runtime measurement."""

from __future__ import annotations

import math
import os
import re
import sys

import pytest
import torch
from torch import nn

from prunekit import latency
from prunekit.errors import PrunekitError
from prunekit.latency import free_cores, measure_latencies, measure_latency, own_load, reliability

KEYS = {
    "median_ms", "p10_ms", "p90_ms", "runtime", "fused",
    "threads", "threads_requested", "cores", "load_before", "load_after", "load_self",
}  # fmt: skip


class TwoInputs(nn.Module):
    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        assert a.shape[0] == b.shape[0] == 8
        return a + b


def test_latency_statistics_are_ordered():
    model = nn.Sequential(nn.Linear(16, 16), nn.ReLU())
    result = measure_latency(model, torch.randn(1, 16), batch_size=4, repeats=5, warmup=1)
    assert set(result) == KEYS and (result["runtime"], result["fused"]) == ("torch", False)
    assert 0 < result["p10_ms"] <= result["median_ms"] <= result["p90_ms"]


def test_latency_restores_mode_and_threads():
    model = nn.Sequential(nn.Linear(4, 4), nn.Dropout()).train()
    threads = torch.get_num_threads()
    measure_latency(model, torch.randn(1, 4), threads=1, repeats=1, warmup=0)
    assert model.training and torch.get_num_threads() == threads


def test_latency_repeats_every_input_to_the_batch_size():
    inputs = (torch.randn(1, 3), torch.randn(1, 3))
    assert measure_latency(TwoInputs(), inputs, batch_size=8, repeats=1, warmup=0)["median_ms"] > 0


class Counting(nn.Module):
    def __init__(self, calls: list[str], name: str) -> None:
        super().__init__()
        self.calls, self.name = calls, name
        self.linear = nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls.append(self.name)
        return self.linear(x)


def test_several_models_are_timed_in_interleaved_rounds():
    calls: list[str] = []
    a, b = Counting(calls, "a").train(), Counting(calls, "b").eval()
    results = measure_latencies([a, b], torch.randn(1, 4), batch_size=2, repeats=3, warmup=1)
    assert calls == ["a", "b", "a", "b", "a", "b", "a", "b"]  # warm-up each, then 3 rounds
    assert len(results) == 2 and all(r["median_ms"] > 0 for r in results)
    assert a.training and not b.training  # modes restored


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"repeats": 0}, "repeats=0 is invalid: give an integer in [1, 100000]"),
        ({"batch_size": 0}, "batch_size=0 is invalid: give an integer in [1, 100000]"),
        ({"warmup": -1}, "warmup=-1 is invalid: give an integer in [0, 100000]"),
        ({"threads": 0}, "threads=0 is invalid: give null or an integer in [1, 1024]"),
        ({"runtime": "cuda"}, "runtime='cuda' is invalid: give one of torch, onnxruntime"),
    ],
)
def test_out_of_range_settings_are_refused(kwargs, message):
    with pytest.raises(PrunekitError, match=re.escape(message)):
        measure_latency(nn.Linear(4, 4), torch.randn(1, 4), **kwargs)


@pytest.fixture
def machine(monkeypatch):
    """``machine(cores, load)``: this process sees ``cores`` cores and ``load`` threads of
    other processes ready to run."""

    def set_machine(cores: int, load: float) -> None:
        monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(cores)), raising=False)
        monkeypatch.setattr(latency, "_others_ready", lambda: load)

    return set_machine


class ThreadProbe(nn.Module):
    """Records torch's thread count at every forward pass."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[int] = []
        self.linear = nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append(torch.get_num_threads())
        return self.linear(x)


@pytest.mark.parametrize(
    ("cores", "load", "requested", "used"),
    [(4, 1.2, 4, 3), (2, 5.2, 2, 1), (4, 0.0, 2, 2), (8, 0.4, 3, 3)],
)
def test_threads_are_capped_to_the_free_cores(machine, cores, load, requested, used):
    machine(cores, load)
    probe, before = ThreadProbe(), torch.get_num_threads()
    result = measure_latency(probe, torch.randn(1, 4), threads=requested, repeats=2, warmup=1)
    assert probe.seen == [used] * 3
    assert (result["threads"], result["threads_requested"]) == (used, requested)
    assert (result["cores"], result["load_before"], result["load_after"]) == (cores, load, load)
    assert torch.get_num_threads() == before


def test_a_busy_machine_makes_the_measurement_unreliable(machine):
    machine(2, 5.2)
    result = measure_latency(nn.Linear(4, 4), torch.randn(1, 4), repeats=1, warmup=0)
    assert reliability(result) == "load 5.2 on 2 cores"


def test_without_proc_the_load_average_less_the_own_share_is_used(monkeypatch):
    monkeypatch.setattr(latency, "_others_ready", lambda: None)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    monkeypatch.setattr(os, "getloadavg", lambda: (5.2, 5.2, 5.2))
    probe = ThreadProbe()
    result = measure_latency(probe, torch.randn(1, 4), threads=2, repeats=1, warmup=0)
    assert probe.seen == [1] and result["load_before"] == result["load_after"] == 5.2
    assert 0.0 <= result["load_self"] < 0.1  # a measurement of milliseconds
    assert reliability(result) == "load 5.2 on 2 cores"


def test_other_processes_ready_to_run_count_and_this_one_and_its_children_do_not(tmp_path):
    me = os.getpid()

    def thread(pid: int, tid: int, state: str, ppid: int) -> None:
        path = tmp_path / str(pid) / "task" / str(tid) / "stat"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"{tid} (a (strange) name) {state} {ppid} 1 1 0 -1\n")

    (tmp_path / "self").mkdir()
    (tmp_path / "self" / "stat").write_text("")
    thread(me, me, "R", 1)  # this process: training threads
    thread(me, me + 1, "R", 1)
    thread(90001, 90001, "R", me)  # a child of it (a data-loader worker)
    thread(90002, 90002, "R", 1)  # others: two threads ready to run, one asleep
    thread(90002, 90003, "R", 1)
    thread(90004, 90004, "S", 1)
    assert latency._others_ready(samples=2, interval_s=0.0, proc=tmp_path) == 2.0
    assert latency._others_ready(proc=tmp_path / "missing") is None


def test_without_a_load_average_nothing_is_capped(monkeypatch):
    monkeypatch.setattr(latency, "_others_ready", lambda: None)
    monkeypatch.delattr(os, "getloadavg")
    probe = ThreadProbe()
    result = measure_latency(probe, torch.randn(1, 4), threads=2, repeats=1, warmup=0)
    assert probe.seen == [2] and result["load_before"] is result["load_after"] is None
    assert reliability(result) is None  # one pass: no spread either


def timing(median=10.0, p10=9.0, p90=11.0, cores=2, before=0.5, after=0.5, own=0.0) -> dict:
    """A hand-made result of measure_latency."""
    return {
        "median_ms": median, "p10_ms": p10, "p90_ms": p90, "threads": 2, "threads_requested": 2,
        "cores": cores, "load_before": before, "load_after": after, "load_self": own,
    }  # fmt: skip


@pytest.mark.parametrize(
    ("result", "reason"),
    [
        (timing(), None),  # idle, rounds within 20%
        (timing(p10=9.0, p90=11.5), None),  # a spread of exactly 25% is still trusted
        (timing(p10=8.0, p90=12.8), "rounds spread 48% > 25% of the median"),
        (timing(before=5.2), "load 5.2 on 2 cores"),
        (timing(before=2.0), None),  # as many runnable threads as cores: no waiting
        (timing(cores=1, before=1.25), "load 1.25 on 1 core"),
        (timing(after=2.4, own=1.0), None),  # the measurement's own load does not count
        (timing(after=2.4, own=0.3), "load 2.1 on 2 cores"),
        (timing(before=None, after=None), None),  # no load average (Windows)
        (timing(before=3.0, p10=1.0, p90=30.0), "load 3 on 2 cores"),  # load is named first
    ],
)
def test_reliability_judges_load_then_spread(result, reason):
    assert reliability(result) == reason


def test_free_cores_and_own_load():
    assert [free_cores(load, 2) for load in (0.0, 0.4, 0.6, 1.6, 5.2)] == [2, 2, 1, 1, 1]
    assert free_cores(1.2, 4) == 3
    # 2 busy threads for one time constant: 1 - 1/e of the way from 0 to 2
    assert own_load(cpu_s=120.0, wall_s=60.0) == pytest.approx(2 * (1 - math.exp(-1)))


def conv_net() -> nn.Module:
    """A small conv net whose BatchNorm has statistics worth folding."""
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 4),
    )  # fmt: skip
    net[1].running_mean.uniform_(-1.0, 1.0)
    net[1].running_var.uniform_(0.5, 2.0)
    return net.train()


@pytest.mark.parametrize("batch", [1, 4])
def test_onnxruntime_statistics_are_ordered(batch):
    net = conv_net()
    result = measure_latency(
        net, torch.randn(1, 3, 16, 16), batch_size=batch, repeats=3, warmup=1, runtime="onnxruntime"
    )
    assert set(result) == KEYS and (result["runtime"], result["fused"]) == ("onnxruntime", True)
    assert 0 < result["p10_ms"] <= result["median_ms"] <= result["p90_ms"]
    assert net.training and isinstance(net[1], nn.BatchNorm2d)  # the caller's model untouched


def test_the_measured_session_has_the_capped_threads_and_computes_what_torch_does(
    machine, monkeypatch
):
    machine(4, 1.2)  # 3 free cores
    sessions = []

    def recording(*args, **kwargs):
        sessions.append(original(*args, **kwargs))
        return sessions[-1]

    original = latency.onnx_session
    monkeypatch.setattr(latency, "onnx_session", recording)
    net = conv_net()
    result = measure_latency(
        net, torch.randn(1, 3, 16, 16), batch_size=4, threads=4, repeats=2, runtime="onnxruntime"
    )
    (session,) = sessions
    options = session.get_session_options()
    assert (options.intra_op_num_threads, options.inter_op_num_threads) == (3, 1)
    assert (result["threads"], result["threads_requested"]) == (3, 4)
    assert session.get_providers() == ["CPUExecutionProvider"]
    inputs = torch.randn(4, 3, 16, 16)
    (got,) = session.run(None, {session.get_inputs()[0].name: inputs.numpy()})
    with torch.no_grad():
        expected = net.eval()(inputs)
    assert torch.allclose(torch.from_numpy(got), expected, atol=1e-4, rtol=0)


def test_a_missing_onnxruntime_is_one_line_naming_the_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import onnxruntime now fails
    with pytest.raises(PrunekitError) as info:
        measure_latency(conv_net(), torch.randn(1, 3, 16, 16), runtime="onnxruntime")
    assert str(info.value) == (
        "latency runtime 'onnxruntime' needs the onnxruntime package, which is not installed: "
        "pip install onnxruntime"
    )


def test_cuda_on_onnxruntime_needs_its_cuda_provider(monkeypatch):
    import onnxruntime

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # torch would run on CUDA
    monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: ["CPUExecutionProvider"])
    with pytest.raises(PrunekitError, match=re.escape(
        "device 'cuda' on the onnxruntime runtime needs onnxruntime-gpu's CUDAExecutionProvider, "
        "which this onnxruntime lacks (it has CPUExecutionProvider): pip install onnxruntime-gpu, "
        "or use device cpu"
    )):  # fmt: skip
        measure_latency(conv_net(), torch.randn(1, 3, 16, 16), device="cuda", runtime="onnxruntime")


class DataDependent(nn.Module):
    """Slices by a value of its input: torch.export cannot trace it."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, : int(x.sum().item() > 0) + 1].nonzero()


def test_a_model_that_cannot_be_exported_is_named_with_the_reason():
    with pytest.raises(PrunekitError) as info:
        measure_latencies(
            [nn.Linear(3, 3), DataDependent()], torch.randn(1, 3), runtime="onnxruntime"
        )
    message = str(info.value)
    assert message.startswith(
        "model 2 of 2 (DataDependent) cannot be exported to ONNX for the onnxruntime latency: "
    )
    assert message.endswith("; measure it with runtime torch") and "\n" not in message


def test_onnxruntime_needs_a_single_tensor_input():
    with pytest.raises(PrunekitError, match="example input is one tensor, got tuple"):
        measure_latency(TwoInputs(), (torch.randn(1, 3), torch.randn(1, 3)), runtime="onnxruntime")


@pytest.mark.parametrize("keeps", [True, False])
def test_a_session_uses_its_own_arena_unless_the_process_keeps_freed_memory(
    tmp_path, monkeypatch, keeps
):
    """With both, the first of several sessions ran slower than the others (see onnx_session)."""
    pytest.importorskip("onnxruntime")
    monkeypatch.setattr(latency, "keeps_freed_memory", lambda: keeps)
    path = latency.export_onnx(conv_net(), torch.randn(1, 3, 16, 16), 2, tmp_path / "m.onnx")
    session = latency.onnx_session(path, threads=1)
    assert session.get_session_options().enable_cpu_mem_arena is not keeps
