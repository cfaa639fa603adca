"""Read and write IDX files, the format of MNIST and Fashion-MNIST, gzipped or not.

An IDX file is a 4-byte magic number ``0x00 0x00 <dtype code> <ndim>``, then ``ndim`` big-endian
uint32 sizes, then the values in C order, big-endian. MNIST images are magic 2051 (``0x0803``:
uint8, 3-d) and labels 2049 (``0x0801``: uint8, 1-d). Every malformed case (bad magic, short
header, a payload that is not exactly the size the header promises, an unreadable gzip stream)
raises :class:`~pyro_vi.data.errors.DatasetCorruptedError` naming the file.

References:
    LeCun, Cortes & Burges, *The MNIST database of handwritten digits*, file formats section.
"""

from __future__ import annotations

import gzip
import os
import struct
import zlib
from pathlib import Path

import numpy as np

from .errors import DatasetNotFoundError, corrupted

__all__ = ["read_idx", "write_idx"]

# IDX type codes and the big-endian numpy dtypes they stand for.
_DTYPES = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_CODES = {dtype.newbyteorder("="): code for code, dtype in _DTYPES.items()}
_GZIP_MAGIC = b"\x1f\x8b"


def read_idx(path: str | os.PathLike[str]) -> np.ndarray:
    """Read one IDX file into a numpy array.

    The file is decompressed when its name ends in ``.gz`` or it starts with the gzip magic
    bytes (an IDX file never does), so a file gunzipped without renaming still reads.

    Arguments:
        path: the IDX file, e.g. ``"mnist/train-images-idx3-ubyte.gz"``.

    Returns:
        A writable array in native byte order with the shape and dtype the header declares
        (``uint8`` ``[60000, 28, 28]`` for MNIST training images).

    Raises:
        DatasetNotFoundError: there is no file at ``path``.
        DatasetCorruptedError: the header, the payload length or the gzip stream is wrong.

    Example:
        >>> images = read_idx("mnist/t10k-images-idx3-ubyte.gz")
        >>> images.shape, images.dtype
        ((10000, 28, 28), dtype('uint8'))
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise DatasetNotFoundError(f"IDX file {str(path)!r} does not exist") from None
    except IsADirectoryError:
        raise DatasetNotFoundError(f"IDX file {str(path)!r} is a folder, not a file") from None
    data = _decompress(path, raw) if path.suffix == ".gz" or raw[:2] == _GZIP_MAGIC else raw
    return _parse(path, data)


def write_idx(path: str | os.PathLike[str], array: np.ndarray) -> Path:
    """Write ``array`` as an IDX file, gzipped when ``path`` ends in ``.gz``.

    The inverse of :func:`read_idx`; handy for small test files and for exporting data.

    Arguments:
        path: where to write.
        array: an array of a dtype IDX can hold (uint8, int8, int16, int32, float32, float64)
            with at least one dimension.

    Returns:
        ``path``, as a :class:`~pathlib.Path`.

    Example:
        >>> write_idx("labels-idx1-ubyte.gz", np.array([3, 1, 4], dtype=np.uint8))
        PosixPath('labels-idx1-ubyte.gz')
    """
    path = Path(path)
    array = np.asarray(array)
    code = _CODES.get(array.dtype.newbyteorder("="))
    if code is None:
        allowed = ", ".join(str(dtype.newbyteorder("=")) for dtype in _DTYPES.values())
        raise TypeError(f"array must have one of the dtypes {allowed}; got {array.dtype}")
    if array.ndim == 0 or array.ndim > 255:
        raise ValueError(f"array must have 1 to 255 dimensions, got {array.ndim}")
    header = bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    payload = header + np.ascontiguousarray(array, dtype=_DTYPES[code]).tobytes()
    if path.suffix == ".gz":
        # mtime=0 makes the bytes (and so their checksum) depend on the content only.
        payload = gzip.compress(payload, mtime=0)
    path.write_bytes(payload)
    return path


def _decompress(path: Path, raw: bytes) -> bytes:
    # Reading the whole stream at once lets a bad CRC or a cut-off stream surface here, as our
    # error, rather than as a zlib.error / EOFError from deep inside gzip.
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as error:
        reason = str(error) or type(error).__name__
        raise corrupted(
            path, f"expected a complete gzip stream, but it cannot be decompressed ({reason})"
        ) from None


def _parse(path: Path, data: bytes) -> np.ndarray:
    if len(data) < 4:
        raise corrupted(path, f"expected an IDX header of at least 4 bytes, found {len(data)}")
    zero, code, ndim = struct.unpack(">HBB", data[:4])
    if zero != 0 or code not in _DTYPES or ndim == 0:
        codes = ", ".join(f"0x{code:02X}" for code in _DTYPES)
        raise corrupted(
            path,
            f"expected an IDX magic number 0x0000TTNN (type code TT one of {codes}, "
            f"NN >= 1 dimensions; 2051 = 0x00000803 for images, 2049 = 0x00000801 for labels), "
            f"found 0x{data[:4].hex().upper()} = {int.from_bytes(data[:4], 'big')}",
        )
    header_size = 4 + 4 * ndim
    if len(data) < header_size:
        raise corrupted(
            path,
            f"expected a {header_size}-byte header for {ndim} dimensions, "
            f"but the file holds only {len(data)} bytes",
        )
    shape = struct.unpack(f">{ndim}I", data[4:header_size])
    dtype = _DTYPES[code]
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    found = len(data) - header_size
    if found != expected:
        kind = "truncated" if found < expected else "has trailing bytes"
        raise corrupted(
            path,
            f"payload {kind}: the header declares shape {list(shape)} of {dtype.newbyteorder('=')}"
            f" ({expected} bytes after the header), found {found} bytes",
        )
    array = np.frombuffer(data, dtype=dtype, offset=header_size).reshape(shape)
    # astype copies: the result is writable (torch.from_numpy warns on read-only arrays) and in
    # native byte order (torch cannot hold big-endian data).
    return array.astype(dtype.newbyteorder("="))
