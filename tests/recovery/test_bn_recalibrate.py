"""BatchNorm recalibration against statistics computed by hand."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from prunekit.recovery import recover
from tests.recovery.nets import RowCounter, batches


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.drop = nn.Dropout(0.5)  # must be off: the hand computation has no dropout
        self.bn = nn.BatchNorm2d(4)
        self.head = nn.Conv2d(4, 2, 1)
        self.bn2 = nn.BatchNorm2d(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn2(self.head(torch.relu(self.bn(self.drop(self.conv(x))))))


def test_statistics_equal_pooled_mean_and_unbiased_variance():
    torch.manual_seed(0)
    model = Net().eval()
    with torch.no_grad():
        model.bn.running_mean.fill_(5.0)
        model.bn.running_var.fill_(9.0)
    calib = [b * 2 + 1 for b in batches(3, 8)]
    counter = RowCounter(model)
    (report,) = recover(
        model, None, "bn_recalibrate", calib, options={"bn_recalibrate": {"images": 19}}
    )
    assert report.images == counter.rows == 19  # 8 + 8 + 3: the last batch is cut short
    assert not model.training and not model.bn.training
    with torch.no_grad():
        h = model.conv(torch.cat(calib)[:19]).double()
    mean = h.mean((0, 2, 3))
    var = h.transpose(0, 1).reshape(4, -1).var(1, unbiased=True)
    torch.testing.assert_close(model.bn.running_mean.double(), mean, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(model.bn.running_var.double(), var, rtol=1e-5, atol=1e-6)


def test_budget_cycles_epochs_and_counts_every_image():
    model = Net().eval()
    counter = RowCounter(model)
    (report,) = recover(
        model, None, "bn_recalibrate", batches(2, 5), options={"bn_recalibrate": {"images": 13}}
    )
    assert report.images == counter.rows == 13  # 5 + 5, then 3 of a second epoch


def test_net_without_batchnorm_warns_and_uses_no_image():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU()).eval()
    counter = RowCounter(model)
    with pytest.warns(UserWarning, match="no BatchNorm"):
        (report,) = recover(model, None, "bn_recalibrate", batches(2, 4))
    assert report.images == counter.rows == 0
