"""CSV/TSV tables (numpy) and Parquet (pyarrow, optional): headers, labels, and bad tables."""

import builtins
import gzip

import numpy as np
import pytest
import torch

from pyro_vi.data import DatasetCorruptedError, MissingDependencyError
from pyro_vi.data.tables import read_table


def test_csv_with_header_and_labels(tmp_path):
    path = tmp_path / "cells.csv"
    path.write_text("# counts per gene\ngene_a,gene_b,type\n1,0,2\n3,5,0\n")
    features, labels = read_table(path, label_column="type")
    assert torch.equal(features, torch.tensor([[1.0, 0.0], [3.0, 5.0]]))
    assert torch.equal(labels, torch.tensor([2, 0]))


def test_csv_without_header(tmp_path):
    path = tmp_path / "x.csv"
    path.write_text("0.5,1\n0.25,0\n")
    features, labels = read_table(path)
    assert features.shape == (2, 2) and labels is None


def test_tsv_gzipped_and_quoted(tmp_path):
    path = tmp_path / "x.tsv.gz"
    with gzip.open(path, "wt") as file:
        file.write('"a"\t"b"\n1\t2\n3\t4\n')
    features, _ = read_table(path)
    assert torch.equal(features, torch.tensor([[1.0, 2.0], [3.0, 4.0]]))


def test_one_column_is_a_table_of_one_feature(tmp_path):
    path = tmp_path / "x.csv"
    path.write_text("count\n1\n2\n3\n")
    assert read_table(path)[0].shape == (3, 1)


@pytest.mark.parametrize(
    ("text", "error", "match"),
    [
        ("a,b\n1,2\n3\n", DatasetCorruptedError, "numpy cannot parse it"),
        ("a,b\n1,2\n3,x\n", DatasetCorruptedError, "numpy cannot parse it.*'x'"),
        ("a,b\n1,\n", DatasetCorruptedError, "numpy cannot parse it"),
        ("a,b\n1,nan\n", ValueError, r"holds 1 NaN or infinite value\(s\), the first at index"),
        ("", ValueError, "is empty: it needs one row per datapoint"),
        ("# only a comment\n", ValueError, "is empty"),
        ("a,b\n", ValueError, "has no data rows, only a header"),
    ],
    ids=[
        "ragged",
        "text-in-numbers",
        "missing-field",
        "nan",
        "empty",
        "comments-only",
        "header-only",
    ],
)
def test_bad_tables(tmp_path, text, error, match):
    path = tmp_path / "bad.csv"
    path.write_text(text)
    with pytest.raises(error, match=match):
        read_table(path)


def test_bad_label_columns(tmp_path):
    path = tmp_path / "x.csv"
    path.write_text("a,b\n1,2\n3,4\n")
    with pytest.raises(ValueError, match=r"label_column = 'type' is not a column .* \['a', 'b'\]"):
        read_table(path, label_column="type")
    (tmp_path / "plain.csv").write_text("1,2\n")
    with pytest.raises(ValueError, match="it has no header row"):
        read_table(tmp_path / "plain.csv", label_column="type")
    (tmp_path / "only.csv").write_text("type\n1\n")
    with pytest.raises(ValueError, match="no feature column besides the label column"):
        read_table(tmp_path / "only.csv", label_column="type")
    (tmp_path / "neg.csv").write_text("a,type\n1,-1\n")
    with pytest.raises(ValueError, match="column 'type' of .* integers 0..C-1, got the label -1"):
        read_table(tmp_path / "neg.csv", label_column="type")


def test_a_binary_file_is_corrupt(tmp_path):
    path = tmp_path / "x.csv.gz"
    path.write_bytes(b"\x1f\x8bnot really gzip")
    with pytest.raises(DatasetCorruptedError, match="x.csv.gz"):
        read_table(path)


def test_parquet_without_pyarrow_says_to_install_it(tmp_path, monkeypatch):
    real_import = builtins.__import__

    def no_pyarrow(name, *args, **kwargs):
        if name.startswith("pyarrow"):
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_pyarrow)
    path = tmp_path / "cells.parquet"
    path.write_bytes(b"PAR1")
    with pytest.raises(MissingDependencyError, match="needs pyarrow.*pip install pyarrow"):
        read_table(path)
    # A ValueError too, so that the command line reports it in one line.
    assert issubclass(MissingDependencyError, ValueError)


def test_parquet(tmp_path):
    pyarrow = pytest.importorskip("pyarrow")
    import pyarrow.parquet as parquet

    table = pyarrow.table({"a": [1, 2, 3], "b": [0.5, 1.5, 2.5], "type": [0, 1, 0]})
    parquet.write_table(table, tmp_path / "cells.parquet")
    features, labels = read_table(tmp_path / "cells.parquet", label_column="type")
    assert torch.equal(features, torch.tensor([[1.0, 0.5], [2.0, 1.5], [3.0, 2.5]]))
    assert torch.equal(labels, torch.tensor([0, 1, 0]))
    parquet.write_table(pyarrow.table({"a": [1, None]}), tmp_path / "nulls.parquet")
    with pytest.raises(ValueError, match="column 'a' .* 1 missing value"):
        read_table(tmp_path / "nulls.parquet")
    parquet.write_table(pyarrow.table({"a": ["x", "y"]}), tmp_path / "text.parquet")
    with pytest.raises(TypeError, match="column 'a' .* not numbers"):
        read_table(tmp_path / "text.parquet")
    (tmp_path / "broken.parquet").write_bytes(b"PAR1 not really")
    with pytest.raises(DatasetCorruptedError, match="pyarrow cannot read it"):
        read_table(tmp_path / "broken.parquet")


def test_numpy_round_trip(tmp_path):
    counts = np.random.default_rng(0).poisson(3.0, size=(20, 4))
    np.savetxt(
        tmp_path / "counts.csv", counts, delimiter=",", fmt="%d", header="a,b,c,d", comments=""
    )
    assert torch.equal(read_table(tmp_path / "counts.csv")[0], torch.from_numpy(counts).float())
