"""The non-finite guard of the training step: a fused Adam skips a NaN or infinite step on the
device, and the guard reports the first such step and their number."""

import math

import pytest
import torch

from pyro_vi.train.optim import FOLD_EVERY, NonFiniteGuard


def _guarded_adam():
    param = torch.nn.Parameter(torch.zeros(2))
    optimizer = torch.optim.Adam([param], lr=0.1, fused=True)
    return param, NonFiniteGuard(optimizer, torch.device("cpu"))


@pytest.mark.parametrize(
    "bad_steps", [[], [3], [0, 7], [FOLD_EVERY + 5, FOLD_EVERY + 9], [2, FOLD_EVERY + 3]]
)
def test_guard_skips_bad_steps_and_reports_the_first_across_folds(bad_steps):
    """Each non-finite loss skips its step; the report gives the first bad step and the count,
    also when the flags were folded on the device in between (FOLD_EVERY steps)."""
    param, guard = _guarded_adam()
    assert guard.on_device
    for step in range(FOLD_EVERY + 20):
        before = param.detach().clone()
        param.grad = torch.ones(2)
        loss = torch.tensor(math.nan if step in bad_steps else 1.0)
        guard.step(loss, step)
        assert torch.equal(param.detach(), before) == (step in bad_steps)
    expected = (bad_steps[0], len(bad_steps)) if bad_steps else None
    assert guard.report() == expected
    assert guard.report() is None  # a report resets the guard


def test_guard_reports_steps_that_were_not_consecutive():
    param, guard = _guarded_adam()
    for step, value in [(10, 1.0), (20, math.inf), (30, 1.0), (40, -math.inf)]:
        param.grad = torch.ones(2)
        guard.step(torch.tensor(value), step)
    assert guard.report() == (20, 2)
