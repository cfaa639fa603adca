"""Tables of numeric features: CSV or TSV text (read with numpy) and Parquet (with pyarrow).

One row per datapoint, one column per feature: the table becomes a float32 ``[N, D]`` tensor
(counts keep their integer values). A first line that is not all numbers is the header and
names the columns. ``label_column`` names a column of integer class labels, taken out of the
features. Text files may be gzipped (``cells.csv.gz``); their delimiter follows the suffix:
``,`` for ``.csv``, a tab for ``.tsv`` and ``.tab``.

Parquet needs the optional package pyarrow (``pip install pyarrow``); without it, reading a
``.parquet`` file raises :class:`~pyro_vi.data.MissingDependencyError` saying so.
"""

from __future__ import annotations

import csv
import gzip
import warnings
from pathlib import Path

import numpy as np
import torch

from .errors import MissingDependencyError, corrupted
from .values import as_data_tensor, as_label_tensor

__all__ = ["PARQUET_SUFFIXES", "TEXT_SUFFIXES", "read_table"]

#: Text table suffixes and their delimiters (each also gzipped, ``.csv.gz``).
TEXT_SUFFIXES: dict[str, str] = {".csv": ",", ".tsv": "\t", ".tab": "\t"}
#: Parquet suffixes.
PARQUET_SUFFIXES = (".parquet", ".pq")

Split = tuple[torch.Tensor, torch.Tensor | None]


def table_suffix(path: Path) -> str | None:
    """The table suffix of ``path`` (``".csv"`` for ``cells.csv.gz``), or ``None``."""
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] == ".gz":
        suffixes = suffixes[:-1]
    if not suffixes:
        return None
    last = suffixes[-1]
    return last if last in TEXT_SUFFIXES or last in PARQUET_SUFFIXES else None


def read_table(path: Path, *, label_column: str | None = None) -> Split:
    """The features (and labels) of a CSV, TSV or Parquet table.

    Arguments:
        path: An existing table file (see the module docstring for the suffixes).
        label_column: The header name of a column of integer class labels, or ``None``.

    Returns:
        ``(features, labels)``: float32 ``[N, D]`` and int64 ``[N]`` (``None`` without a
        label column).

    Raises:
        DatasetCorruptedError: a file that cannot be parsed (ragged rows, text in a number
            column, an empty field, a broken gzip or Parquet file).
        MissingDependencyError: a Parquet file without pyarrow installed.
        ValueError: no rows, an unknown label column, NaN or infinite values.

    Example:
        >>> features, labels = read_table(Path("cells.csv"), label_column="cell_type")
    """
    suffix = table_suffix(path)
    if suffix in PARQUET_SUFFIXES:
        columns, values = _read_parquet(path)
    elif suffix in TEXT_SUFFIXES:
        columns, values = _read_text(path, TEXT_SUFFIXES[suffix], label_column)
    else:
        raise ValueError(
            f"{str(path)!r} is not a table: allowed suffixes {[*TEXT_SUFFIXES, *PARQUET_SUFFIXES]}"
            " (text tables may end in .gz)"
        )
    labels = None
    if label_column is not None:
        if columns is None or label_column not in columns:
            found = "it has no header row" if columns is None else f"its columns are {columns}"
            raise ValueError(
                f"label_column = {label_column!r} is not a column of {str(path)!r}: {found}"
            )
        if columns.count(label_column) > 1:
            raise ValueError(
                f"label_column = {label_column!r} names {columns.count(label_column)} columns of "
                f"{str(path)!r}; rename all but one"
            )
        index = columns.index(label_column)
        labels = values[:, index]
        values = np.delete(values, index, axis=1)
    name = f"the table {str(path)!r}"
    if values.shape[1] == 0:
        raise ValueError(f"{name} has no feature column besides the label column {label_column!r}")
    features = as_data_tensor(name, values)
    if labels is not None:
        labels = as_label_tensor(f"column {label_column!r} of {str(path)!r}", labels, len(values))
    return features, labels


def _first_row(path: Path) -> tuple[str, int]:
    """The first line that is neither blank nor a ``#`` comment, and its line number."""
    opener = gzip.open if path.suffix.lower() == ".gz" else open
    try:
        with opener(path, "rt", encoding=_ENCODING) as file:
            for number, line in enumerate(file, start=1):
                if line.strip() and not line.lstrip().startswith("#"):
                    return line, number
    except (OSError, UnicodeDecodeError, EOFError) as error:
        raise corrupted(path, f"it is not readable text ({error}).", hint=_TEXT_HINT) from None
    raise ValueError(f"the table {str(path)!r} is empty: it needs one row per datapoint")


_TEXT_HINT = "Write it as numbers separated by the delimiter, with an optional header row."
#: UTF-8, with the byte-order mark that Excel and Windows tools write skipped when present (read
#: as plain UTF-8, it would stick to the first field: a numeric first row taken for a header and
#: lost, or a first column named "\ufeffname").
_ENCODING = "utf-8-sig"


def _is_number(field: str) -> bool:
    try:
        float(field.strip().strip('"'))
    except ValueError:
        return False
    return True


def _first_non_number(path: Path, delimiter: str, skip: int) -> tuple[int, int, str] | None:
    """``(line number, column index, field)`` of the first field past line ``skip`` that is
    not a number (text, or empty), to name it; ``None`` when every field is one."""
    opener = gzip.open if path.suffix.lower() == ".gz" else open
    try:
        with opener(path, "rt", encoding=_ENCODING, newline="") as file:
            rows = csv.reader(file, delimiter=delimiter, quotechar='"')
            for row in rows:
                if rows.line_num <= skip or not "".join(row).strip():
                    continue
                if row[0].lstrip().startswith("#"):
                    continue
                for index, field in enumerate(row):
                    if not _is_number(field):
                        return rows.line_num, index, field
    except (OSError, UnicodeDecodeError, EOFError, csv.Error):
        return None
    return None


def _read_text(
    path: Path, delimiter: str, label_column: str | None = None
) -> tuple[list[str] | None, np.ndarray]:
    line, number = _first_row(path)
    # The csv module, as numpy reads the rows: a quoted name may hold the delimiter ("a,b").
    fields = next(csv.reader([line.rstrip("\r\n")], delimiter=delimiter, quotechar='"'), [""])
    header = not all(_is_number(field) for field in fields)
    columns = [field.strip().strip('"') for field in fields] if header else None
    try:
        with warnings.catch_warnings():
            # A header without rows is reported below, in words; numpy would also warn.
            warnings.filterwarnings("ignore", "loadtxt: input contained no data", UserWarning)
            # skiprows counts comment and blank lines too: skip every line up to the header.
            values = np.loadtxt(
                path,
                delimiter=delimiter,
                skiprows=number if header else 0,
                ndmin=2,
                dtype=np.float64,
                quotechar='"',
                encoding=_ENCODING,
            )
    except (ValueError, OSError, EOFError, UnicodeDecodeError) as error:
        problem = str(error).splitlines()[0].rstrip(".")
        found = _first_non_number(path, delimiter, number if header else 0)
        if found is not None:
            line_number, index, field = found
            name = columns[index] if columns is not None and index < len(columns) else None
            if name is not None and name == label_column:
                raise ValueError(
                    f"label_column = {label_column!r} of {str(path)!r} holds {field!r} on "
                    f"line {line_number}, not an integer: class labels must be integers "
                    "0..C-1 (write each class as its number)"
                ) from None
            column = f"column {name!r}" if name is not None else f"column {index + 1}"
            if field.strip():
                what = f"{field!r} on line {line_number}, not a number (a column of text: drop it)"
            else:
                what = f"an empty field on line {line_number}"
            problem = f"{column} holds {what}; {problem}"
        raise corrupted(path, f"numpy cannot parse it: {problem}.", hint=_TEXT_HINT) from None
    if values.size == 0:
        raise ValueError(f"the table {str(path)!r} has no data rows, only a header")
    if columns is not None:
        _check_header(path, columns, values.shape[1], number)
    return columns, values


def _check_header(path: Path, columns: list[str], width: int, line: int) -> None:
    """A header that names every column once: else a label column or a column name would
    point at the wrong values (a row index that pandas writes without a name among them)."""
    if len(columns) != width:
        raise corrupted(
            path,
            f"the header (line {line}) names {len(columns)} column(s) but the rows hold {width}",
            hint=_TEXT_HINT,
        )
    unnamed = [index + 1 for index, name in enumerate(columns) if not name]
    if unnamed:
        pandas = (
            " (a row index that pandas' to_csv writes looks like this: write with index=False)"
            if unnamed[0] == 1
            else ""
        )
        raise ValueError(
            f"column {unnamed[0]} of {str(path)!r} has no name in the header (line {line}); "
            f"name it or drop it{pandas}"
        )


def _read_parquet(path: Path) -> tuple[list[str], np.ndarray]:
    try:
        import pyarrow.parquet as parquet
        import pyarrow.types as types
    except ImportError:
        raise MissingDependencyError(
            f"reading the Parquet file {str(path)!r} needs pyarrow, which is not installed: "
            "pip install pyarrow (or pip install 'pyro-vi[parquet]'), or save the table as CSV"
        ) from None
    try:
        table = parquet.read_table(path)
    except Exception as error:  # pyarrow raises its own ArrowInvalid, OSError, ...
        problem = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise corrupted(path, f"pyarrow cannot read it ({problem}).", hint=_PARQUET_HINT) from None
    columns = list(table.column_names)
    arrays = []
    for name, column in zip(columns, table.columns, strict=True):
        if not (types.is_integer(column.type) or types.is_floating(column.type)) and not (
            types.is_boolean(column.type)
        ):
            raise TypeError(
                f"column {name!r} of {str(path)!r} holds {column.type}, not numbers; drop it or "
                "encode it as integers (labels: name it with label_column)"
            )
        if column.null_count:
            raise ValueError(
                f"column {name!r} of {str(path)!r} has {column.null_count} missing value(s); "
                "remove or impute them before training"
            )
        arrays.append(column.to_numpy().astype(np.float64))
    if not arrays or table.num_rows == 0:
        raise ValueError(f"the table {str(path)!r} is empty: it needs one row per datapoint")
    return columns, np.stack(arrays, axis=1)


_PARQUET_HINT = "Write it again, e.g. with pyarrow.parquet.write_table."
