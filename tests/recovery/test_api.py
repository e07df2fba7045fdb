"""The recovery API: names, options, budgets, failures undone, determinism, a parent untouched."""

from __future__ import annotations

import pytest
import torch

from prunekit.errors import PrunekitError
from prunekit.recovery import Budget, Recovery, make_recovery, recover
from prunekit.registry import RECOVERIES
from tests.recovery.nets import ConvNet, RowCounter, assert_same_state, batches, prune, randomize_bn
from tests.recovery.test_finetune import ToyTask

ALL = ["bn_recalibrate", "reconstruct", "distill"]


def _pruned(seed: int = 0):
    torch.manual_seed(seed)
    model = randomize_bn(ConvNet(), seed).eval()
    parent, kept = prune(model)
    return model, parent, kept


def test_every_builtin_is_registered():
    assert {*ALL, "finetune"} <= set(RECOVERIES.names())


def test_unknown_name_suggests_the_closest():
    with pytest.raises(PrunekitError, match="did you mean 'distill'"):
        make_recovery("distil")


def test_unknown_option_lists_the_options():
    with pytest.raises(
        PrunekitError, match=r"recovery 'distill' has no option 'lrr': its options are images, lr"
    ):
        make_recovery("distill", {"lrr": 1e-3})
    with pytest.raises(PrunekitError, match="'bn_recalibrate', which is not among the methods"):
        recover(*_pruned()[:2], "distill", batches(1, 2), options={"bn_recalibrate": {}})


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"images": 0}, "images=0 is invalid: give null or an integer >= 1"),
        ({"images": 2.5}, "images=2.5 is invalid: give null or an integer >= 1"),
        ({"seconds": -1}, "seconds=-1 is invalid: give null or a number > 0"),
        ({"seconds": 0}, "seconds=0 is invalid: give null or a number > 0"),
    ],
)
def test_bad_budgets_are_refused(kwargs, match):
    with pytest.raises(PrunekitError, match=match):
        Budget(**kwargs)


def test_missing_parent_or_task_is_refused_before_anything_runs():
    model, _, kept = _pruned()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(
        PrunekitError, match="recovery 'distill' needs the unpruned parent: pass parent="
    ):
        recover(model, None, ["bn_recalibrate", "distill"], batches(2, 4), kept=kept)
    with pytest.raises(PrunekitError, match="recovery 'finetune' needs a task"):
        recover(model, None, ["bn_recalibrate", "finetune"], batches(2, 4))
    assert_same_state(before, model.state_dict())


def test_budget_is_shared_by_the_methods_in_order():
    model, parent, kept = _pruned()
    counter = RowCounter(model)
    reports = recover(
        model,
        parent,
        ["bn_recalibrate", "distill", "finetune"],
        batches(3, 8),
        budget=Budget(images=37),
        options={"bn_recalibrate": {"images": 10}},
        task=ToyTask(),
        kept=kept,
    )
    assert [(r.method, r.images) for r in reports] == [("bn_recalibrate", 10), ("distill", 27)]
    assert counter.rows == 37  # finetune was skipped: the budget was spent


def test_nan_weights_are_refused_and_undone():
    model, parent, kept = _pruned()
    recover(
        model, parent, "bn_recalibrate", batches(2, 8), options={"bn_recalibrate": {"images": 16}}
    )
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(
        PrunekitError,
        match="recovery 'distill' diverged: it produced NaN/inf weights.*lower its lr",
    ):
        recover(
            model,
            parent,
            ["bn_recalibrate", "distill"],
            batches(2, 8),
            kept=kept,
            options={"bn_recalibrate": {"images": 16}, "distill": {"lr": 1e30, "images": 32}},
        )
    assert_same_state(before, model.state_dict())  # bn_recalibrate: same images, same statistics


class Poison(Recovery):
    """Writes NaN into one weight, or raises half-way."""

    def __init__(self, images: int | None = None, fail: bool = False) -> None:
        super().__init__(images)
        self.fail = fail

    def run(self, model, context, images, deadline):
        with torch.no_grad():
            next(model.parameters()).mul_(2)[0] = float("nan")
        if self.fail:
            raise RuntimeError("half-way")
        return {"images": 0}


@pytest.mark.parametrize("fail", [False, True])
def test_a_failing_method_is_undone(fail: bool):
    model, parent, _ = _pruned()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with RECOVERIES.temporarily("poison", Poison):
        error = RuntimeError if fail else PrunekitError
        with pytest.raises(
            error, match="half-way" if fail else "recovery 'poison' diverged: it produced NaN"
        ):
            recover(model, parent, "poison", batches(1, 2), options={"poison": {"fail": fail}})
    assert_same_state(before, model.state_dict())


def test_same_seed_gives_bitwise_equal_weights():
    weights = []
    for _ in range(2):
        model, parent, kept = _pruned(5)
        torch.manual_seed(11)
        recover(
            model,
            parent,
            ALL,
            batches(3, 8),
            kept=kept,
            options={"reconstruct": {"max_positions": 50}, "distill": {"images": 48}},
        )
        weights.append(model.state_dict())
    assert_same_state(*weights)


def test_no_method_modifies_the_parent():
    model, parent, kept = _pruned()
    parent.train()
    before = {k: v.clone() for k, v in parent.state_dict().items()}
    options = {"distill": {"images": 32, "flip": True, "layers": ["conv2"], "bn_train": True}}
    recover(
        model, parent, [*ALL, "finetune"], batches(2, 8), task=ToyTask(), kept=kept, options=options
    )
    assert_same_state(before, parent.state_dict())
    assert parent.training  # its mode is restored too
    assert all(p.grad is None for p in parent.parameters())


def test_parent_must_not_be_the_model_and_kept_must_be_indices():
    model, parent, _ = _pruned()
    with pytest.raises(PrunekitError, match="parent is the pruned model itself"):
        recover(model, model, "distill", batches(1, 2))
    with pytest.raises(PrunekitError, match=r"kept\['conv1'\] must be"):
        recover(model, parent, "distill", batches(1, 2), kept={"conv1": [0.5, 1.5]})
    with pytest.raises(PrunekitError, match="one-shot iterator"):
        recover(model, parent, "distill", iter(batches(1, 2)))
