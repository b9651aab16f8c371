"""Shared-memory layout of one ring buffer: pure computation, no I/O.

One segment per buffer::

    offset 0        global header   (GLOBAL_WORDS int64 words, see ``G_*``)
    GROUPS_OFFSET   group table     (MAX_GROUPS x GROUP_WORDS int64, see ``GR_*``)
    NAMES_OFFSET    group names     (MAX_GROUPS x NAME_BYTES, NUL padded UTF-8)
    CLIENTS_OFFSET  client table    (MAX_CLIENTS x CLIENT_WORDS int64, see ``CL_*``)
    DTYPE_OFFSET    dtype blob      (msgpack of the data dtype description, DTYPE_BYTES max)
    commit_offset   commit[slot]    int64: sequence number last published in the slot
    claimed_offset  claimed[slot]   int64: sequence number last claimed for writing
    dropped_offset  dropped[slot]   int64: 1 if that sequence number carries no data
    released_offset released[g][slot] int64: sequence number group g released last
    meta_offset     metadata[slot]  (counter i8, timestamp f8, deadtime f8)
    data_offset     data[slot]      page aligned, each slot padded to a multiple of 64 bytes

Sequence numbers start at 0 and never wrap (int64); sequence ``s`` lives in slot
``s % slot_count``. All the state a process needs to claim, publish and release slots is in
these arrays, so no token travels through a pipe.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from ringbuffer.errors import ConfigError

__all__ = [
    "CACHE_LINE",
    "CLIENT_WORDS",
    "GLOBAL_WORDS",
    "GROUP_WORDS",
    "MAGIC",
    "MAX_CLIENTS",
    "MAX_GROUPS",
    "METADATA_DTYPE",
    "VERSION",
    "Layout",
    "Role",
    "align",
    "dtype_from_descr",
    "dtype_from_setup",
    "dtype_to_descr",
    "validate_name",
]

MAGIC = 0x31474E4952425645  # b"EVBRING1" little endian
VERSION = 2  # 2: waiter counters on cache lines of their own
CACHE_LINE = 64
PAGE = 4096
MAX_GROUPS = 16
MAX_CLIENTS = 64
GLOBAL_WORDS = 64
GROUP_WORDS = 16
CLIENT_WORDS = 16
NAME_BYTES = 32
DTYPE_BYTES = 4096

GROUPS_OFFSET = GLOBAL_WORDS * 8
NAMES_OFFSET = GROUPS_OFFSET + MAX_GROUPS * GROUP_WORDS * 8
CLIENTS_OFFSET = NAMES_OFFSET + MAX_GROUPS * NAME_BYTES
DTYPE_OFFSET = CLIENTS_OFFSET + MAX_CLIENTS * CLIENT_WORDS * 8
FIXED_BYTES = DTYPE_OFFSET + DTYPE_BYTES

# Global header words (int64 indices into the header).
G_MAGIC = 0
G_VERSION = 1
G_TOTAL_BYTES = 2
G_SLOT_COUNT = 3
G_DATA_LENGTH = 4
G_ITEMSIZE = 5
G_SLOT_STRIDE = 6
G_DATA_OFFSET = 7
G_CREATOR_PID = 8
G_CREATOR_START = 9
G_CREATED_NS = 10
G_DTYPE_LEN = 11
G_READY = 12
G_WRITE_CLAIM = 13  # next sequence number a writer claims
G_WLOCK_OWNER = 14
G_WLOCK_GEN = 15
G_WRITE_WAITERS = 40  # own cache line: readers load it on every release
G_LAST_COMMIT = 17  # highest published sequence number (observers copy it)
G_PAUSED = 18
G_SHUTDOWN = 19
G_EOD_SEQ = 20  # first sequence number after the end of data
G_DISCARDED_PAUSED = 21
G_DISCARDED_SHUTDOWN = 22
G_RECLAIMED_WRITES = 23
G_RECLAIMED_READS = 24
G_DEADTIME_SUM = 25  # float64 bits
G_PAUSE_COUNT = 26
G_TLOCK_OWNER = 27
G_TLOCK_GEN = 28
G_GROUPS_GEN = 29  # bumped when a group is added
G_UNUSED_CLAIMS = 30  # claimed but not published by a live writer (batch partly used)
G_DEADTIME_EVENTS = 31

# Group table words.
GR_ACTIVE = 0
GR_READ_CLAIM = 1  # next sequence number a reader of the group claims
GR_WAITERS = 8  # own cache line (second half of the row): writers load it on every publish
GR_LOCK_OWNER = 3
GR_LOCK_GEN = 4
GR_RECLAIMED = 5
GR_START = 6  # first sequence number the group sees
GR_SKIPPED = 7  # dropped sequence numbers the group skipped

# Client table words.
CL_PID = 0
CL_START = 1
CL_ROLE = 2
CL_GROUP = 3
CL_HELD_LO = 4  # [HELD_LO, HELD_HI): sequence numbers claimed and not yet finished
CL_HELD_HI = 5
CL_BEAT_NS = 6
CL_COUNT = 7
CL_DEADTIME = 8  # float64 bits: deadtime summed over the client's writes


class Role:
    """Client roles stored in the client table."""

    FREE = 0
    WRITER = 1
    READER = 2
    OBSERVER = 3
    NAMES = {0: "free", 1: "writer", 2: "reader", 3: "observer"}


METADATA_DTYPE = np.dtype([("counter", "<i8"), ("timestamp", "<f8"), ("deadtime", "<f8")])

_NAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]{0,99}$")


def align(value: int, to: int) -> int:
    """Round ``value`` up to a multiple of ``to``."""
    return (value + to - 1) // to * to


def validate_name(name: str, what: str = "buffer name") -> str:
    """Check a buffer or group name: 1-100 chars of ``[A-Za-z0-9_.-]``, no leading ``.``/``-``."""
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise ConfigError(
            f"invalid {what} {name!r}: expected 1-100 characters of letters, digits, '_', '.', '-'"
        )
    return name


def dtype_from_setup(spec: Any, *, where: str = "data_dtype") -> np.dtype[Any]:
    """Build a structured dtype from a mimoCoRB2 ``data_dtype`` mapping or a numpy dtype.

    Args:
        spec: ``{'field': 'float64', ...}``, a list of ``(name, type)`` pairs or a dtype.
        where: what to name in error messages (e.g. ``Buffers.raw.data_dtype``).
    """
    if isinstance(spec, np.dtype):
        dt = spec
    elif isinstance(spec, Mapping):
        if not spec:
            raise ConfigError(f"{where}: needs at least one field")
        fields = []
        for key, value in spec.items():
            try:
                fields.append((str(key), np.dtype(value)))
            except TypeError as exc:
                raise ConfigError(
                    f"{where}.{key}: {value!r} is not a numpy dtype "
                    "(expected e.g. 'float64', 'int32', 'u1', 'S10')"
                ) from exc
        dt = np.dtype(fields)
    else:
        try:
            dt = np.dtype(spec)
        except TypeError as exc:
            raise ConfigError(f"{where}: {spec!r} is not a numpy dtype") from exc
    if dt.names is None:
        dt = np.dtype([("data", dt)])
    if dt.hasobject:
        raise ConfigError(f"{where}: object fields cannot live in shared memory")
    return dt


def dtype_to_descr(dt: np.dtype[Any]) -> list[list[Any]]:
    """A msgpack/JSON friendly description of a structured dtype (``[[name, str, shape], ...]``)."""
    out: list[list[Any]] = []
    assert dt.names is not None
    for name in dt.names:
        sub = dt.fields[name][0] if dt.fields else dt
        base = sub.base if sub.shape else sub
        out.append([name, base.str, list(sub.shape)])
    return out


def dtype_from_descr(descr: list[list[Any]]) -> np.dtype[Any]:
    """Inverse of :func:`dtype_to_descr`."""
    fields: list[Any] = []
    for item in descr:
        name, typestr, shape = item[0], item[1], tuple(item[2]) if len(item) > 2 else ()
        fields.append((name, typestr, shape) if shape else (name, typestr))
    return np.dtype(fields)


@dataclass(frozen=True, slots=True, kw_only=True)
class Layout:
    """Byte offsets of every region of a buffer's segment.

    Attributes:
        slot_count: number of slots.
        data_length: elements per slot.
        itemsize: bytes per element (``data_dtype.itemsize``).
        slot_stride: bytes between consecutive slots (multiple of 64).
    """

    slot_count: int
    data_length: int
    itemsize: int
    slot_stride: int
    commit_offset: int
    claimed_offset: int
    dropped_offset: int
    released_offset: int
    meta_offset: int
    data_offset: int
    total_bytes: int

    @classmethod
    def compute(cls, slot_count: int, data_length: int, itemsize: int) -> Layout:
        """Compute the layout; raises :class:`ConfigError` for impossible sizes."""
        for label, value in (("slot_count", slot_count), ("data_length", data_length)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"{label} must be a positive integer, got {value!r}")
        if slot_count < 2:
            raise ConfigError(f"slot_count must be at least 2, got {slot_count}")
        if itemsize < 1:
            raise ConfigError(f"dtype itemsize must be positive, got {itemsize}")
        slot_stride = align(data_length * itemsize, CACHE_LINE)
        n8 = slot_count * 8
        commit = align(FIXED_BYTES, CACHE_LINE)
        claimed = align(commit + n8, CACHE_LINE)
        dropped = align(claimed + n8, CACHE_LINE)
        released = align(dropped + n8, CACHE_LINE)
        meta = align(released + MAX_GROUPS * n8, CACHE_LINE)
        data = align(meta + slot_count * METADATA_DTYPE.itemsize, PAGE)
        total = align(data + slot_count * slot_stride, PAGE)
        return cls(
            slot_count=slot_count,
            data_length=data_length,
            itemsize=itemsize,
            slot_stride=slot_stride,
            commit_offset=commit,
            claimed_offset=claimed,
            dropped_offset=dropped,
            released_offset=released,
            meta_offset=meta,
            data_offset=data,
            total_bytes=total,
        )

    @property
    def slot_bytes(self) -> int:
        """Payload bytes per slot (without padding)."""
        return self.data_length * self.itemsize

    def initial_released(self, start_seq: int) -> list[int]:
        """``released`` row for a group that starts at ``start_seq``: every slot counts as free.

        Slot ``i`` holds ``start_seq + k`` with ``(start_seq + k) % n == i``; the group marks the
        previous occupant ``start_seq + k - n`` as released.
        """
        n = self.slot_count
        row = [0] * n
        for k in range(n):
            seq = start_seq + k
            row[seq % n] = seq - n
        return row
