"""ImageData and DynamicBinarization: the contract every loader's result follows."""

from __future__ import annotations

import pytest
import torch

from pyro_vi.data import DynamicBinarization, ImageData


def _images(count: int, side: int = 4) -> torch.Tensor:
    return torch.rand(count, 1, side, side, generator=torch.Generator().manual_seed(count))


class TestDynamicBinarization:
    def test_indexing_shapes_match_a_tensor(self):
        probs = _images(10)
        data = DynamicBinarization(probs)
        assert len(data) == 10
        assert data.shape == probs.shape and data.size() == probs.size() and data.size(0) == 10
        assert data.dtype == torch.float32 and data.device == probs.device and data.dim() == 4
        for index in (3, slice(2, 5), torch.tensor([0, 7, 7, 2])):
            assert data[index].shape == probs[index].shape

    def test_draws_are_binary_and_fresh(self):
        data = DynamicBinarization(torch.full((200, 1, 8, 8), 0.5))
        first, second = data[torch.arange(200)], data[torch.arange(200)]
        assert set(first.unique().tolist()) == {0.0, 1.0}
        # 12800 fair coins: identical draws have probability 2**-12800.
        assert not torch.equal(first, second)

    def test_draws_follow_the_global_seed(self):
        data = DynamicBinarization(_images(50))
        torch.manual_seed(3)
        first = data[:]
        torch.manual_seed(3)
        assert torch.equal(first, data[:])

    def test_probabilities_zero_and_one_are_deterministic(self):
        probs = torch.tensor([0.0, 1.0]).repeat(5, 1, 2, 1)
        assert torch.equal(DynamicBinarization(probs)[:], probs)

    def test_mean_matches_the_grey_levels(self):
        probs = _images(500, side=8)
        draws = DynamicBinarization(probs)[:]
        # 32000 Bernoulli pixels: the mean's standard error is below 0.003; 0.015 is 5 of them.
        assert abs(draws.mean().item() - probs.mean().item()) < 0.015

    @pytest.mark.parametrize(
        ("probs", "error", "fragment"),
        [
            (torch.tensor([[0.5, 1.5]]), ValueError, "[0, 1]"),
            (torch.tensor([[-0.1, 0.5]]), ValueError, "[0, 1]"),
            (torch.tensor([[0, 1]]), TypeError, "floating-point"),
            ([[0.5]], TypeError, "floating-point"),
            (torch.tensor(0.5), ValueError, "scalar"),
        ],
    )
    def test_bad_probs_are_refused(self, probs, error, fragment):
        with pytest.raises(error, match="probs") as caught:
            DynamicBinarization(probs)
        assert fragment in str(caught.value)

    def test_to_moves_without_copying_when_already_there(self):
        data = DynamicBinarization(_images(3))
        assert data.to("cpu") is data
        moved = data.to("meta")  # the meta device moves tensors without any memory or GPU
        assert moved.device.type == "meta" and data.device.type == "cpu"
        assert "shape=[3, 1, 4, 4]" in repr(data)


class TestImageData:
    def test_fields_and_image_shape(self):
        data = ImageData(
            "toy",
            _images(6),
            _images(3),
            train_labels=torch.arange(6),
            test_labels=torch.arange(3),
            valid=_images(2),
        )
        assert data.image_shape == (1, 4, 4)
        assert data.valid_labels is None
        assert "train=6" in repr(data) and "valid=2" in repr(data)

    def test_optional_fields_are_keyword_only(self):
        with pytest.raises(TypeError):
            ImageData("toy", _images(6), _images(3), torch.arange(6))

    def test_to_moves_every_tensor_into_a_copy(self):
        data = ImageData(
            "toy",
            DynamicBinarization(_images(6)),
            _images(3),
            train_labels=torch.arange(6),
            valid=_images(2),
            valid_labels=torch.arange(2),
        )
        moved = data.to("meta")
        assert moved is not data and data.train.device.type == "cpu"
        assert isinstance(moved.train, DynamicBinarization)
        for field in ("train", "test", "valid", "train_labels", "valid_labels"):
            assert getattr(moved, field).device.type == "meta", field
        assert moved.test_labels is None

    @pytest.mark.parametrize(
        ("options", "error", "fragment"),
        [
            ({"train": torch.rand(6, 4, 4)}, ValueError, "train must have shape [N, C, H, W]"),
            ({"test": torch.rand(3, 1, 5, 5)}, ValueError, "every split must agree"),
            ({"train": torch.zeros(6, 1, 4, 4, dtype=torch.uint8)}, TypeError, "floating-point"),
            ({"train": [[0.0]]}, TypeError, "train must be a torch.Tensor"),
            ({"train_labels": torch.arange(5)}, ValueError, "5 labels for 6 images"),
            ({"test_labels": torch.arange(3.0)}, TypeError, "test_labels must be an int64"),
            ({"valid_labels": torch.arange(2)}, ValueError, "valid is None"),
            ({"name": 3}, TypeError, "name must be a str"),
        ],
    )
    def test_inconsistent_fields_are_refused(self, options, error, fragment):
        fields = {"name": "toy", "train": _images(6), "test": _images(3), **options}
        with pytest.raises(error) as caught:
            ImageData(**fields)
        assert fragment in str(caught.value)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_to_cuda_then_index_on_the_gpu():
    data = ImageData("toy", DynamicBinarization(_images(6)), _images(3)).to("cuda")
    index = torch.tensor([0, 5], device="cuda")
    assert data.train[index].device.type == "cuda"
    assert data.test[index[:1]].device.type == "cuda"
