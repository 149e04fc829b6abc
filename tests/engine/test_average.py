from __future__ import annotations

import pytest
import torch
from torch import nn

from segtune.engine.average import WeightAverage


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2))


def test_the_average_moves_by_one_minus_the_ramped_decay() -> None:
    model = _net()
    average = WeightAverage(model, decay=0.99)
    start = {k: v.clone() for k, v in average.model.state_dict().items()}
    assert average.current_decay() == pytest.approx(0.1)  # (1 + 0) / (10 + 0)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    model(torch.randn(4, 1, 8, 8))  # train mode: BatchNorm's running statistics move
    average.update(model)
    trained = model.state_dict()
    for key, value in average.model.state_dict().items():
        if value.is_floating_point():
            expected = 0.1 * start[key] + 0.9 * trained[key]
            assert torch.allclose(value, expected, atol=1e-6), key
        else:  # num_batches_tracked is copied, not averaged
            assert torch.equal(value, trained[key])
    assert average.updates == 1
    assert average.current_decay() == pytest.approx(2 / 11)
    average.updates = 10_000
    assert average.current_decay() == 0.99  # the ramp ends at ema_decay


def test_the_average_is_a_frozen_copy_and_round_trips() -> None:
    model = _net()
    average = WeightAverage(model, decay=0.9)
    assert all(not p.requires_grad for p in average.model.parameters())
    assert not average.model.training
    with torch.no_grad():
        model[0].weight.mul_(2)
    assert not torch.equal(average.model[0].weight, model[0].weight)  # not shared
    average.update(model)
    other = WeightAverage(_net(), decay=0.9)
    other.load_state_dict(average.state_dict())
    assert other.updates == 1
    mine, theirs = other.model.state_dict(), average.model.state_dict()
    assert mine.keys() == theirs.keys()
    assert all(torch.equal(mine[k], theirs[k]) for k in mine)


@pytest.mark.parametrize("decay", [0.0, 1.0, 1.5])
def test_a_decay_outside_zero_one_is_refused(decay: float) -> None:
    with pytest.raises(ValueError, match="decay"):
        WeightAverage(_net(), decay)
