"""Distillation from the unpruned parent: lowers the loss on held-out images, to the image."""

from __future__ import annotations

import copy
import math
import time

import pytest
import torch

import prunekit as pk
from prunekit.errors import PrunekitError
from prunekit.recovery import RecoveryContext, make_recovery, recover
from prunekit.recovery.distill import output_loss, shifted
from tests.recovery.nets import ConvNet, RowCounter, batches, prune, randomize_bn


def _pruned(seed: int = 0):
    torch.manual_seed(seed)
    model = randomize_bn(ConvNet(), seed).eval()
    parent, kept = prune(model, 0.4)
    return model, parent, kept


def _held_out_loss(model, parent, loss: str) -> float:
    x = batches(1, 64, seed=123)[0]
    with torch.no_grad():
        return float(output_loss(model(x), parent(x), loss, 4.0))


@pytest.mark.parametrize(("outputs", "loss"), [("embedding", "cosine"), ("logits", "kl")])
def test_distill_lowers_the_loss_on_held_out_images(outputs: str, loss: str):
    model, parent, kept = _pruned()
    before = _held_out_loss(model, parent, loss)
    (report,) = recover(
        model,
        parent,
        "distill",
        batches(8, 16),
        outputs=outputs,
        kept=kept,
        options={"distill": {"images": 1024, "lr": 3e-3}},
    )
    after = _held_out_loss(model, parent, loss)
    assert report.images == 1024 and report.stats["steps"] == 64
    assert after < 0.5 * before, (before, after)
    assert not model.training


def test_default_options_lower_the_loss_too():
    model, parent, kept = _pruned(1)
    before = _held_out_loss(model, parent, "cosine")
    recover(model, parent, "distill", batches(8, 16), outputs="embedding", kept=kept)
    assert _held_out_loss(model, parent, "cosine") < 0.8 * before


@pytest.mark.parametrize("flip", [False, True])
@pytest.mark.parametrize("batch", [None, 3])
def test_budget_is_honoured_to_the_image(flip: bool, batch: int | None):
    model, parent, kept = _pruned()
    counter = RowCounter(model)
    (report,) = recover(
        model,
        parent,
        "distill",
        batches(3, 8),
        kept=kept,
        options={"distill": {"images": 29, "flip": flip, "batch": batch}},
    )
    assert report.images == counter.rows == 29
    # steps of at most `batch` rows within each calibration batch (8 rows, 16 with flips)
    per = 16 if flip else 8
    sizes = [per] * (29 // per) + [29 % per]
    expected = len(sizes) if batch is None else sum(-(-s // batch) for s in sizes)
    assert report.stats["steps"] == expected


def test_intermediate_layers_are_matched_on_kept_channels():
    model, parent, kept = _pruned()
    options = {"images": 64, "layers": ["conv2", "dw"], "layer_weight": 0.5}
    (report,) = recover(
        model, parent, "distill", batches(2, 8), kept=kept, options={"distill": options}
    )
    assert report.images == 64
    with pytest.raises(PrunekitError, match="no layer 'nope'"):
        recover(
            model,
            parent,
            "distill",
            batches(2, 8),
            kept=kept,
            options={"distill": {"layers": ["nope"]}},
        )


def _distill_in(context: RecoveryContext, model, parent, kept, data, **options) -> None:
    """One ``distill`` call that shares ``context`` (and its cache) with the others."""
    recover(
        model, parent, "distill", data, kept=kept, context=context, options={"distill": options}
    )


def test_teacher_outputs_are_cached_across_calls_and_recomputed_on_new_data():
    model, parent, kept = _pruned()
    calls = RowCounter(parent)
    context = RecoveryContext(parent=None, batches=list)
    data = batches(2, 8)
    for _ in range(2):
        _distill_in(context, model, parent, kept, data, images=32)
    assert calls.rows == 16  # 2 batches x 8, computed once for 2 calls of 2 epochs each
    data[1] = data[1] + 1  # same index, different batch
    _distill_in(context, model, parent, kept, data, images=16)
    assert calls.rows == 24


def test_deadline_stops_before_the_next_batch():
    model, parent, kept = _pruned()
    context = RecoveryContext(parent=parent, batches=lambda: iter(batches(2, 8)), kept=kept)
    stats = make_recovery("distill").run(model, context, 16, deadline=time.monotonic())
    assert stats["images"] == 0


@pytest.mark.parametrize("schedule", ["constant", "cosine"])
def test_schedule_sets_each_steps_learning_rate_from_the_images_done(monkeypatch, schedule):
    model, parent, kept = _pruned()
    seen: list[float] = []
    step = torch.optim.Adam.step

    def record(self, *args, **kwargs):
        seen.append(self.param_groups[0]["lr"])
        return step(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.Adam, "step", record)
    options = {"images": 32, "lr": 0.01, "batch": 4, "schedule": schedule}
    recover(model, parent, "distill", batches(4, 8), kept=kept, options={"distill": options})
    # 8 steps of 4 rows: step k starts after 4k of the 32 images
    expected = [
        0.01 if schedule == "constant" else 0.005 * (1 + math.cos(math.pi * 4 * k / 32))
        for k in range(8)
    ]
    assert seen == pytest.approx(expected)


def test_unknown_schedule_is_refused():
    with pytest.raises(PrunekitError, match="schedule='step' is unknown: use 'constant' or"):
        make_recovery("distill", {"schedule": "step"})


def test_a_pruned_output_is_matched_with_the_parents_kept_features():
    torch.manual_seed(5)
    model = randomize_bn(ConvNet(), 5).eval()
    parent = copy.deepcopy(model)
    pruner = pk.Pruner(model, torch.randn(1, 3, 8, 8), criterion="l1", round_to=None,
                       target="params=0.3", prune_outputs=True)  # fmt: skip
    pruner.step()
    kept = pruner.output_kept
    assert kept is not None and model.head.out_features == len(kept) < 6
    x = batches(1, 64, seed=123)[0]

    def held_out() -> float:
        with torch.no_grad():
            return float(output_loss(model(x), parent(x)[:, kept], "cosine", 4.0))

    before = held_out()
    recover(model, parent, "distill", batches(8, 16), outputs="embedding", kept=pruner.kept,
            output_kept=kept, options={"distill": {"images": 1024, "lr": 3e-3}})  # fmt: skip
    assert held_out() < 0.5 * before
    with pytest.raises(PrunekitError, match="has no feature 9 of the kept output"):
        recover(model, parent, "distill", batches(1, 16), outputs="embedding", output_kept=[9])


def test_shifted_views_are_reflect_padded_crops_within_the_shift():
    x = torch.arange(2 * 3 * 6 * 7, dtype=torch.float32).reshape(2, 3, 6, 7)
    out = shifted(x, 2, torch.Generator().manual_seed(0))
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2), mode="reflect")
    assert out.shape == x.shape
    for i in range(2):
        offsets = [
            (y, z)
            for y in range(5)
            for z in range(5)
            if torch.equal(out[i], padded[i, :, y : y + 6, z : z + 7])
        ]
        assert len(offsets) == 1  # one crop of the padded image, the same for every channel
    with pytest.raises(PrunekitError, match="shift=6 is not smaller than the 6x7 images"):
        shifted(x, 6, torch.Generator())


def test_shift_sends_each_new_view_through_the_parent_and_repeats_under_a_seed():
    weights = []
    for _ in range(2):
        model, parent, kept = _pruned()
        calls = RowCounter(parent)
        context = RecoveryContext(parent=None, batches=list)
        for _ in range(2):
            _distill_in(context, model, parent, kept, batches(2, 8), images=32, shift=2, flip=True)
        assert calls.rows == 64  # nothing cached: every shifted view is new
        weights.append(torch.cat([p.detach().flatten() for p in model.parameters()]))
    assert torch.equal(weights[0], weights[1])


def test_shift_lowers_the_loss_on_held_out_images():
    model, parent, kept = _pruned()
    before = _held_out_loss(model, parent, "cosine")
    options = {"images": 1024, "lr": 3e-3, "shift": 2}
    recover(
        model,
        parent,
        "distill",
        batches(8, 16),
        outputs="embedding",
        kept=kept,
        options={"distill": options},
    )
    assert _held_out_loss(model, parent, "cosine") < 0.5 * before


@pytest.mark.parametrize("shift", [-1, 1.5, True])
def test_a_shift_that_is_not_a_count_of_pixels_is_refused(shift):
    with pytest.raises(PrunekitError, match=f"shift={shift!r} is out of range: give an int >= 0"):
        make_recovery("distill", {"shift": shift})
