"""Fixtures of the estimator tests."""

import pytest
from conjugate_cases import make_conjugate


@pytest.fixture
def normal_normal():
    """NormalNormal and eight datapoints drawn from it."""
    model = make_conjugate("normal_normal")
    return model, model.sample(8)
