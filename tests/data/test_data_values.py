"""A user's arrays as float32 tensors: what is refused, and which kind of values they hold."""

import numpy as np
import pytest
import torch

from pyro_vi.data import value_kind
from pyro_vi.data.values import as_data_tensor, as_label_tensor


def test_numbers_become_float32_and_counts_stay_exact():
    counts = np.array([[0, 3], [2**24, 7]], dtype=np.int64)
    tensor = as_data_tensor("x", counts)
    assert tensor.dtype == torch.float32 and tensor.shape == (2, 2)
    assert torch.equal(tensor.long(), torch.from_numpy(counts))
    assert torch.equal(as_data_tensor("x", np.array([[True, False]])), torch.tensor([[1.0, 0.0]]))


@pytest.mark.parametrize(
    ("array", "error", "match"),
    [
        (np.array([["a", "b"]]), TypeError, r"x must hold numbers .* got dtype <U1"),
        (np.array([[1 + 2j]]), TypeError, "got dtype complex128"),
        (np.zeros((0, 3)), ValueError, r"x is empty \(shape \[0, 3\]\)"),
        (np.zeros((4, 0)), ValueError, r"x has shape \[4, 0\]: each datapoint needs"),
        (np.array([[1.0, np.nan], [np.inf, 2.0]]), ValueError, r"2 NaN or infinite .* \[0, 1\]"),
        (np.array([[2**25]]), ValueError, "beyond 2\\*\\*24"),
        (np.array([[1e300]]), ValueError, "beyond float32's range"),
    ],
    ids=["strings", "complex", "no-rows", "no-columns", "nan-inf", "huge-integers", "huge-floats"],
)
def test_what_no_model_can_train_on_is_refused(array, error, match):
    with pytest.raises(error, match=match):
        as_data_tensor("x", array)


def test_labels():
    assert torch.equal(as_label_tensor("y", np.array([0.0, 2.0]), 2), torch.tensor([0, 2]))
    with pytest.raises(TypeError, match="integer class labels 0..C-1, got dtype <U3"):
        as_label_tensor("y", np.array(["cat", "dog"]), 2)
    with pytest.raises(ValueError, match=r"y must have shape \[3\] .* got shape \[2\]"):
        as_label_tensor("y", np.array([0, 1]), 3)
    with pytest.raises(ValueError, match="got the label -1"):
        as_label_tensor("y", np.array([0, -1]), 2)
    with pytest.raises(ValueError, match="got the label 0.5"):
        as_label_tensor("y", np.array([0, 0.5]), 2)
    with pytest.raises(ValueError, match="NaN or infinite labels"):
        as_label_tensor("y", np.array([0, np.nan]), 2)


@pytest.mark.parametrize(
    ("values", "kind"),
    [
        ([0.0, 1.0, 1.0], "binary"),
        ([0.0, 0.5, 1.0], "unit"),
        ([0.0, 1.0, 7.0], "counts"),
        ([0.0, 1.5, 7.0], "real"),
        ([-1.0, 0.0, 1.0], "real"),
    ],
)
def test_value_kind_is_the_narrowest(values, kind):
    assert value_kind(torch.tensor(values)) == kind
