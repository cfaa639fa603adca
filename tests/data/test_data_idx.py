"""read_idx / write_idx on small files written here: the format, and every way a file goes bad."""

from __future__ import annotations

import gzip

import numpy as np
import pytest

from pyro_vi.data import DatasetCorruptedError, DatasetNotFoundError, read_idx, write_idx

# Labels 3, 1, 4 as an MNIST label file would hold them: magic 2049, one size, the bytes.
LABELS_BYTES = bytes([0, 0, 8, 1, 0, 0, 0, 3, 3, 1, 4])


def test_reads_hand_written_bytes(tmp_path):
    path = tmp_path / "labels-idx1-ubyte"
    path.write_bytes(LABELS_BYTES)
    array = read_idx(path)
    assert array.dtype == np.uint8 and array.tolist() == [3, 1, 4]
    assert array.flags.writeable  # torch.from_numpy warns on read-only arrays


def test_reads_an_images_header(tmp_path):
    # magic 2051 (uint8, 3-d), 2 images of 2 x 3 pixels
    header = bytes([0, 0, 8, 3]) + (2).to_bytes(4, "big") + (2).to_bytes(4, "big")
    path = tmp_path / "images.gz"
    path.write_bytes(gzip.compress(header + (3).to_bytes(4, "big") + bytes(range(12))))
    assert read_idx(path).tolist() == np.arange(12).reshape(2, 2, 3).tolist()


@pytest.mark.parametrize("suffix", ["", ".gz"])
@pytest.mark.parametrize(
    "array",
    [
        np.arange(2 * 5 * 4, dtype=np.uint8).reshape(2, 5, 4),
        np.array([9, 0, 255], dtype=np.uint8),
        np.array([-3, 7], dtype=np.int8),
        np.array([[-300, 2], [1, 30000]], dtype=np.int16),  # multi-byte: tests byte order
        np.array([1.5, -2.25], dtype=np.float32),
        np.array([[1e300]], dtype=np.float64),
        np.zeros((0, 28, 28), dtype=np.uint8),
    ],
    ids=["images", "labels", "int8", "int16", "float32", "float64", "empty"],
)
def test_round_trip(tmp_path, array, suffix):
    path = write_idx(tmp_path / f"data-idx{suffix}", array)
    assert path.read_bytes()[:2] == (b"\x1f\x8b" if suffix else b"\x00\x00")
    result = read_idx(path)
    assert result.dtype == array.dtype and result.dtype.isnative
    np.testing.assert_array_equal(result, array)


def test_gzip_is_recognised_by_content_too(tmp_path):
    path = tmp_path / "labels-idx1-ubyte"  # gzipped, but named without .gz
    path.write_bytes(gzip.compress(LABELS_BYTES))
    assert read_idx(path).tolist() == [3, 1, 4]


@pytest.mark.parametrize(
    "magic",
    [b"\x12\x34\x08\x01", b"\x00\x00\x07\x01", b"\x00\x00\x08\x00", b"PK\x03\x04"],
    ids=["nonzero-prefix", "unknown-type", "zero-dimensions", "zip-file"],
)
def test_bad_magic(tmp_path, magic):
    path = tmp_path / "labels-idx1-ubyte"
    path.write_bytes(magic + LABELS_BYTES[4:])
    with pytest.raises(DatasetCorruptedError) as caught:
        read_idx(path)
    message = str(caught.value)
    assert str(path) in message and "magic number" in message and "2049" in message
    assert "0x" + magic.hex().upper() in message
    assert "download it again" in message


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        (LABELS_BYTES[:-1], "payload truncated"),
        (LABELS_BYTES + b"\x00", "payload has trailing bytes"),
        (LABELS_BYTES[:6], "expected a 8-byte header"),
        (LABELS_BYTES[:2], "at least 4 bytes"),
        (b"", "at least 4 bytes"),
    ],
    ids=["truncated", "trailing", "short-header", "short-magic", "empty"],
)
@pytest.mark.parametrize("compress", [False, True], ids=["raw", "gz"])
def test_wrong_length(tmp_path, data, fragment, compress):
    path = tmp_path / ("labels.gz" if compress else "labels")
    path.write_bytes(gzip.compress(data) if compress else data)
    with pytest.raises(DatasetCorruptedError) as caught:
        read_idx(path)
    assert fragment in str(caught.value) and str(path) in str(caught.value)


def test_length_message_states_shape_and_sizes(tmp_path):
    path = write_idx(tmp_path / "images", np.zeros((4, 3, 2), dtype=np.uint8))
    path.write_bytes(path.read_bytes()[:-5])
    with pytest.raises(DatasetCorruptedError, match=r"shape \[4, 3, 2\].*24 bytes.*found 19"):
        read_idx(path)


def _flip_byte(data: bytes, position: int) -> bytes:
    return data[:position] + bytes([data[position] ^ 0xFF]) + data[position + 1 :]


@pytest.mark.parametrize(
    "damage",
    [
        lambda gz: _flip_byte(gz, len(gz) - 6),  # inside the CRC-32 trailer
        lambda gz: _flip_byte(gz, 12),  # inside the deflate stream
        lambda gz: gz[: len(gz) // 2],  # the stream ends early
        lambda gz: gz[:-3],  # the trailer is cut
        lambda gz: b"\x1f\x8b" + b"not really gzip",
        lambda gz: b"plain text, but named .gz",
    ],
    ids=["bad-crc", "bad-deflate", "half-stream", "cut-trailer", "bad-header", "not-gzip"],
)
def test_corrupted_gzip(tmp_path, damage):
    array = np.random.default_rng(0).integers(0, 256, size=(20, 28, 28), dtype=np.uint8)
    path = write_idx(tmp_path / "images.gz", array)
    path.write_bytes(damage(path.read_bytes()))
    with pytest.raises(DatasetCorruptedError) as caught:
        read_idx(path)
    message = str(caught.value)
    assert str(path) in message and "gzip" in message and "download it again" in message


def test_missing_file(tmp_path):
    with pytest.raises(DatasetNotFoundError, match="does not exist"):
        read_idx(tmp_path / "absent.gz")


def test_write_refuses_what_idx_cannot_hold(tmp_path):
    with pytest.raises(TypeError, match="dtypes"):
        write_idx(tmp_path / "x", np.zeros(3, dtype=np.int64))
    with pytest.raises(ValueError, match="dimensions"):
        write_idx(tmp_path / "x", np.uint8(3))
