"""The shared data plate."""

import pyro
import pyro.distributions as dist
import pytest
import torch

from pyro_vi.plates import data_plate


def trace_of(x, num_data):
    def model():
        with data_plate(x, num_data):
            pyro.sample("z", dist.Normal(0.0, 1.0))

    return pyro.poutine.trace(model).get_trace().nodes["z"]


def test_unscaled_and_scaled():
    x = torch.zeros(4, 3)
    assert trace_of(x, None)["scale"] == 1.0
    node = trace_of(x, 20)
    assert node["scale"] == pytest.approx(5.0)
    assert node["value"].shape == (4,)


def test_num_data_smaller_than_batch_is_an_error():
    with pytest.raises(ValueError, match="num_data must be an integer >= 4"):
        trace_of(torch.zeros(4, 3), 2)
