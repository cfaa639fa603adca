"""as_batchable: a map-style Dataset as what fit batches, columns read together, bad datasets."""

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset, IterableDataset, TensorDataset

from pyro_vi.architectures import mlp_vae
from pyro_vi.data import DatasetColumn, as_batchable
from pyro_vi.train import fit


class Counted(Dataset):
    """Items (x, label, draw): ``draw`` is fresh on every read, and reads are counted."""

    def __init__(self, n=10):
        self.x = torch.arange(n * 3, dtype=torch.float32).reshape(n, 3)
        self.reads = 0

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        self.reads += 1
        return self.x[i], i % 2, torch.rand(())


def test_tensor_items_give_one_column():
    column = as_batchable(TensorDataset(torch.rand(6, 2)), fields=0)
    assert isinstance(column, DatasetColumn) and len(column) == 6
    assert column.shape == (6, 2)
    assert column[torch.tensor([4, 1])].shape == (2, 2)
    assert torch.equal(column[1:3], column[torch.tensor([1, 2])])
    assert column[2].shape == (2,)


def test_plain_tensor_items():
    class Plain(Dataset):
        def __len__(self):
            return 4

        def __getitem__(self, i):
            return torch.full((2,), float(i))

    column = as_batchable(Plain())
    assert isinstance(column, DatasetColumn)
    assert torch.equal(column[torch.tensor([3, 0])], torch.tensor([[3.0, 3.0], [0.0, 0.0]]))


def test_tuple_items_give_columns_read_together():
    dataset = Counted()
    x, label, draw = as_batchable(dataset)
    index = torch.tensor([3, 4])
    reads = dataset.reads
    batch = (x[index], label[index], draw[index])
    assert dataset.reads == reads + 2  # one read per item for all three columns
    assert torch.equal(batch[0], dataset.x[index]) and torch.equal(batch[1], torch.tensor([1, 0]))
    # Asked again, a column reads afresh: a dataset that draws on each read keeps drawing.
    assert not torch.equal(draw[index], batch[2])


def test_fields_choose_columns():
    x, label = as_batchable(Counted(), fields=[0, 1])
    assert x.field == 0 and label.field == 1
    with pytest.raises(ValueError, match="fields names field 3, but the dataset's items have 3"):
        as_batchable(Counted(), fields=3)
    with pytest.raises(TypeError, match="fields must be a field index"):
        as_batchable(Counted(), fields="x")


def test_fit_trains_on_a_dataset():
    torch.manual_seed(0)
    data = torch.rand(64, 5).round()
    train = as_batchable(TensorDataset(data), fields=0)
    model, guide = mlp_vae((5,), 2, (16,))
    history = fit(model, guide, train, test_data=train, epochs=2, batch_size=16, progress=False)
    assert len(history.train_loss) == 2 and all(np.isfinite(history.test_loss))


def test_to_moves_batches_not_the_dataset():
    column = as_batchable(TensorDataset(torch.rand(4, 2)), fields=0).to("meta")
    assert column.device == torch.device("meta")
    assert column[torch.tensor([0])].device == torch.device("meta")


def test_bad_datasets():
    with pytest.raises(
        TypeError, match=r"a DataLoader; pass its map-style dataset .*loader.dataset"
    ):
        as_batchable(DataLoader(TensorDataset(torch.rand(4, 2))))

    class Stream(IterableDataset):
        def __iter__(self):
            yield torch.rand(2)

    with pytest.raises(TypeError, match="must be a map-style dataset"):
        as_batchable(Stream())
    with pytest.raises(TypeError, match="must be a map-style dataset"):
        as_batchable(torch.rand(3, 2).tolist().__iter__())
    with pytest.raises(ValueError, match="dataset is empty"):
        as_batchable(TensorDataset(torch.rand(0, 2)))

    class Images(Dataset):
        def __len__(self):
            return 2

        def __getitem__(self, i):
            return Image.new("L", (4, 4)), 0

    with pytest.raises(TypeError, match=r"dataset\[0\] field 0 is .*Image.*not a tensor.*ToTensor"):
        as_batchable(Images())


def test_items_of_different_shapes_or_fields():
    class Ragged(Dataset):
        def __len__(self):
            return 3

        def __getitem__(self, i):
            return (torch.zeros(i + 1),) if i < 2 else (torch.zeros(1), 0)

    column = as_batchable(Ragged(), fields=0)
    with pytest.raises(ValueError, match=r"field 0 .* different shapes \[\(1,\), \(2,\)\]"):
        column[torch.tensor([0, 1])]
    with pytest.raises(TypeError, match=r"dataset\[2\] has 2 fields but dataset\[0\] has 1"):
        column[torch.tensor([2])]
    with pytest.raises(TypeError, match="indexed by an int, a slice or a LongTensor"):
        column[torch.tensor([0.0])]
