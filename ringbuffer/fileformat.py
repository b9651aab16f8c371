"""Recorded-buffer files: a msgpack header, then raw fixed-size records. No pickle.

Layout (all little endian)::

    8 bytes   magic  b"EVBRBUF1"
    4 bytes   uint32 header length H
    H bytes   msgpack map:
                format: "evb-ring-record", version: 1,
                data_dtype: [[name, numpy typestr, shape], ...],
                data_length: int,
                metadata_dtype: [[name, typestr, shape], ...]
                                (counter <i8, timestamp <f8, deadtime <f8)
                record_bytes: int  (= metadata itemsize + data_length * data itemsize)
                (any other keys: free-form, e.g. "buffer", "created")
    records   each = one metadata record followed by data_length data records, packed

Any language can read it: parse the msgpack map, then step through ``record_bytes`` chunks.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

import msgpack
import numpy as np

from ringbuffer.errors import ConfigError
from ringbuffer.layout import METADATA_DTYPE, dtype_from_descr, dtype_to_descr

__all__ = ["MAGIC", "RecordReader", "RecordWriter", "read_header"]

MAGIC = b"EVBRBUF1"
FORMAT = "evb-ring-record"


def _record_dtype(data_dtype: np.dtype[Any], data_length: int) -> np.dtype[Any]:
    return np.dtype([("metadata", METADATA_DTYPE), ("data", data_dtype, (data_length,))])


class RecordWriter:
    """Append ``(metadata, data)`` records to a file."""

    def __init__(
        self, path: str | Path, data_dtype: np.dtype[Any], data_length: int, **extra: Any
    ) -> None:
        self.path = Path(path)
        self.data_dtype = np.dtype(data_dtype)
        self.data_length = int(data_length)
        self.record_dtype = _record_dtype(self.data_dtype, self.data_length)
        header = {
            "format": FORMAT,
            "version": 1,
            "data_dtype": dtype_to_descr(self.data_dtype),
            "data_length": self.data_length,
            "metadata_dtype": dtype_to_descr(METADATA_DTYPE),
            "record_bytes": self.record_dtype.itemsize,
            **extra,
        }
        blob = msgpack.packb(header)
        self._f: BinaryIO = open(self.path, "wb")  # noqa: SIM115 - closed in close()
        self._f.write(MAGIC + struct.pack("<I", len(blob)) + blob)
        self._rec = np.zeros(1, dtype=self.record_dtype)
        self.count = 0

    def write(self, metadata: np.ndarray[Any, Any], data: np.ndarray[Any, Any]) -> None:
        """Write one record (``metadata`` shape (1,) or scalar record, ``data`` one slot)."""
        rec = self._rec
        rec["metadata"][0] = metadata.reshape(-1)[0] if metadata.ndim else metadata
        rec["data"][0] = data
        self._f.write(rec.tobytes())
        self.count += 1

    def write_batch(self, metadata: np.ndarray[Any, Any], data: np.ndarray[Any, Any]) -> None:
        """Write ``m`` records from arrays of shape (m,) and (m, data_length)."""
        recs = np.empty(len(metadata), dtype=self.record_dtype)
        recs["metadata"] = metadata
        recs["data"] = data
        self._f.write(recs.tobytes())
        self.count += len(recs)

    def flush(self) -> None:
        self._f.flush()

    def close(self) -> None:
        if not self._f.closed:
            self._f.close()

    def __enter__(self) -> RecordWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_header(f: BinaryIO) -> dict[str, Any]:
    """Read and check the header; leaves ``f`` at the first record."""
    magic = f.read(8)
    if magic != MAGIC:
        raise ConfigError(f"not an evb recorded-buffer file (magic {magic!r}, expected {MAGIC!r})")
    (length,) = struct.unpack("<I", f.read(4))
    if length > 1 << 24:
        raise ConfigError(f"recorded-buffer header too large ({length} bytes)")
    header = msgpack.unpackb(f.read(length))
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise ConfigError("recorded-buffer header is not an evb-ring-record map")
    return header


class RecordReader:
    """Read a recorded-buffer file; iterate for ``(metadata, data)`` chunks."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        with open(self.path, "rb") as f:
            self.header = read_header(f)
            self._offset = f.tell()
        self.data_dtype = dtype_from_descr(self.header["data_dtype"])
        self.data_length = int(self.header["data_length"])
        self.record_dtype = _record_dtype(self.data_dtype, self.data_length)
        if self.record_dtype.itemsize != self.header["record_bytes"]:
            raise ConfigError(
                f"{self.path}: record_bytes {self.header['record_bytes']} does not match the "
                f"dtype ({self.record_dtype.itemsize})"
            )

    def __len__(self) -> int:
        size = self.path.stat().st_size - self._offset
        return size // self.record_dtype.itemsize

    def records(self) -> np.ndarray[Any, Any]:
        """All records as a read-only memory map (fields ``metadata`` and ``data``)."""
        return np.memmap(
            self.path, dtype=self.record_dtype, mode="r", offset=self._offset, shape=(len(self),)
        )

    def __iter__(self) -> Iterator[tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]]:
        recs = self.records()
        for i in range(len(recs)):
            yield recs["metadata"][i : i + 1], recs["data"][i]
