"""Why a pruned layer can be slower than its parent: one convolution of the paper's Fire2
expand 3x3 (16 -> 64 channels on 56x56 maps at 113x113 input, batch 32, 2 threads) timed at
output widths around 64, and its input width varied the same way (figures, no asserts; each
time ratio to the unpruned layer prints beside its MACs ratio at the end of a benchmark run).
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

PARENT = (16, 64)
SHAPES = [PARENT, (16, 63), (16, 61), (16, 57), (16, 56), (16, 48), (13, 64), (8, 64)]


@pytest.mark.parametrize(("cin", "cout"), SHAPES, ids=lambda v: str(v))
def test_bench_conv3x3_width(benchmark, cin, cout):
    torch.set_num_threads(2)
    torch.manual_seed(0)
    conv = nn.Conv2d(cin, cout, 3, padding=1).eval()
    x = torch.randn(32, cin, 56, 56)

    def forward():
        with torch.inference_mode():
            conv(x)

    benchmark.pedantic(forward, rounds=15, warmup_rounds=3)
    benchmark.extra_info["macs_ratio"] = cin * cout / (PARENT[0] * PARENT[1])
