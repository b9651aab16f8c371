"""Byte formats of built events: event files and ringbuffer slots (pure; documented in
docs/formats.md).

* Fragment stream (``--output`` without building): flattened fragments back to back, NSCLDAQ's
  orderer output, no file header.
* Built-event file (``--output`` with building): a 16-byte file header (``b"EVBBUILT"``,
  ``u32 version``, ``u32 0``), then events back to back, each ``u32 size`` (self-inclusive)
  followed by its flattened fragments (spec section 6).
* Ring slot (``--ring``): a 64-byte slot header, an event table (one 16-byte row per event:
  ``u64 timestamp, u32 first_fragment, u32 fragment_count``) and the events' flattened fragments
  back to back. Consumers get every column as a zero-copy numpy view.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from evb.batch import FLAT_HEADER_BYTES, FragmentBatch
from evb.builder import EVENT_HEADER_BYTES, EventBatch
from evb.errors import RemoteProtocolError
from evb.wire import parse_fragments

__all__ = [
    "EVENT_FILE_MAGIC",
    "EVENT_ROW_DTYPE",
    "SLOT_HEADER_BYTES",
    "SLOT_HEADER_DTYPE",
    "SlotEvents",
    "event_file_header",
    "events_fitting",
    "pack_slot",
    "parse_event_stream",
    "read_slot",
    "slot_bytes_needed",
]

EVENT_FILE_MAGIC = b"EVBBUILT"
EVENT_FILE_VERSION = 1
_FILE_HEADER = struct.Struct("<8sII")
EVENT_FILE_HEADER_BYTES = _FILE_HEADER.size

SLOT_MAGIC = 0x54_4F_4C_53  # "SLOT"
SLOT_VERSION = 1
SLOT_HEADER_BYTES = 64
SLOT_HEADER_DTYPE = np.dtype(
    [
        ("magic", "<u4"),
        ("version", "<u2"),
        ("built", "<u2"),
        ("n_events", "<u4"),
        ("n_fragments", "<u4"),
        ("bytes_used", "<u8"),
        ("first_timestamp", "<u8"),
        ("last_timestamp", "<u8"),
        ("n_barriers", "<u4"),
        ("reserved", "<u4", (5,)),
    ]
)
assert SLOT_HEADER_DTYPE.itemsize == SLOT_HEADER_BYTES
EVENT_ROW_DTYPE = np.dtype([("timestamp", "<u8"), ("first", "<u4"), ("count", "<u4")])


def event_file_header() -> bytes:
    """The 16 bytes that start a built-event file."""
    return _FILE_HEADER.pack(EVENT_FILE_MAGIC, EVENT_FILE_VERSION, 0)


def is_event_file(head: bytes) -> bool:
    """True if ``head`` (a file's first bytes) starts a built-event file."""
    return head[:8] == EVENT_FILE_MAGIC


def parse_event_stream(data: bytes | bytearray | memoryview | np.ndarray) -> EventBatch:
    """Decode built events (``u32 size`` + flattened fragments, back to back) without a header.

    Raises:
        RemoteProtocolError: an event or fragment overruns the data, or sizes disagree.
    """
    buf = data if isinstance(data, np.ndarray) else np.frombuffer(data, np.uint8)
    raw = buf.tobytes() if len(buf) < 1 << 16 else memoryview(buf.data)
    n = len(buf)
    pos = 0
    ev_starts: list[int] = []
    frag_off: list[int] = []
    unpack = struct.Struct("<I").unpack_from
    hdr = struct.Struct("<QIII").unpack_from
    while pos < n:
        if n - pos < EVENT_HEADER_BYTES:
            raise RemoteProtocolError("event size word overruns the data", offset=pos)
        (size,) = unpack(raw, pos)
        end = pos + size
        if size < EVENT_HEADER_BYTES or end > n:
            raise RemoteProtocolError(
                f"event of {size} bytes overruns the data ({n - pos} left)", offset=pos
            )
        ev_starts.append(len(frag_off))
        p = pos + EVENT_HEADER_BYTES
        while p < end:
            if end - p < FLAT_HEADER_BYTES:
                raise RemoteProtocolError("fragment header overruns its event", offset=p)
            _ts, _sid, psize, _bar = hdr(raw, p)
            if p + FLAT_HEADER_BYTES + psize > end:
                raise RemoteProtocolError("fragment overruns its event", offset=p)
            frag_off.append(p)
            p += FLAT_HEADER_BYTES + psize
        pos = end
    offs = np.asarray(frag_off, np.int64)
    index = _index_at(buf, offs)
    frags = FragmentBatch(index, (buf,))
    starts = np.asarray(ev_starts, np.int64)
    counts = np.diff(np.append(starts, len(offs)))
    if len(starts) and (counts == 0).any():
        raise RemoteProtocolError("an event holds no fragment", offset=0)
    ets = np.minimum.reduceat(frags.timestamps, starts) if len(starts) else np.empty(0, np.uint64)
    return EventBatch(frags, starts, counts, ets.astype(np.uint64))


def _index_at(buf: npt.NDArray[np.uint8], offs: npt.NDArray[np.int64]) -> np.ndarray:
    """Index rows for fragments whose headers sit at ``offs`` in ``buf``."""
    from evb.batch import HEADER_DTYPE, INDEX_DTYPE

    index = np.zeros(len(offs), INDEX_DTYPE)
    if len(offs):
        raw = buf[(offs[:, None] + np.arange(FLAT_HEADER_BYTES)).ravel()]
        hdr = raw.view(HEADER_DTYPE)
        for name in HEADER_DTYPE.names or ():
            index[name] = hdr[name]
        index["offset"] = offs
    return index


def slot_bytes_needed(events: EventBatch) -> npt.NDArray[np.int64]:
    """Cumulative slot bytes (header included) needed to hold the first k+1 events."""
    frag_lens = events.fragments.payload_sizes.astype(np.int64) + FLAT_HEADER_BYTES
    if not len(events):
        return np.zeros(0, np.int64)
    per_event = np.add.reduceat(frag_lens, events.starts) + EVENT_ROW_DTYPE.itemsize
    return np.cumsum(per_event) + SLOT_HEADER_BYTES


def events_fitting(events: EventBatch, capacity: int) -> int:
    """How many leading events of ``events`` fit in a slot of ``capacity`` bytes."""
    need = slot_bytes_needed(events)
    return int(np.searchsorted(need, capacity, "right"))


def pack_slot(events: EventBatch, slot: npt.NDArray[np.uint8], *, built: bool) -> int:
    """Write ``events`` into ``slot`` (a uint8 view of a ring slot); return bytes used.

    Raises:
        ValueError: they do not fit (check with :func:`events_fitting` first).
    """
    n_ev = len(events)
    frags = events.fragments
    flat = frags.flatten()
    table_bytes = n_ev * EVENT_ROW_DTYPE.itemsize
    used = SLOT_HEADER_BYTES + table_bytes + len(flat)
    if used > len(slot):
        raise ValueError(f"{n_ev} events need {used} bytes, the slot holds {len(slot)}")
    hdr = np.zeros(1, SLOT_HEADER_DTYPE)
    hdr["magic"] = SLOT_MAGIC
    hdr["version"] = SLOT_VERSION
    hdr["built"] = int(built)
    hdr["n_events"] = n_ev
    hdr["n_fragments"] = len(frags)
    hdr["bytes_used"] = used
    if n_ev:
        hdr["first_timestamp"] = events.timestamps[0]
        hdr["last_timestamp"] = events.timestamps[-1]
        hdr["n_barriers"] = int(np.count_nonzero(events.is_barrier))
    slot[:SLOT_HEADER_BYTES] = hdr.view(np.uint8)
    table = np.empty(n_ev, EVENT_ROW_DTYPE)
    table["timestamp"] = events.timestamps
    table["first"] = events.starts
    table["count"] = events.counts
    slot[SLOT_HEADER_BYTES : SLOT_HEADER_BYTES + table_bytes] = table.view(np.uint8)
    slot[SLOT_HEADER_BYTES + table_bytes : used] = flat
    return used


@dataclass(frozen=True, slots=True)
class SlotEvents:
    """The events of one ring slot, as zero-copy views.

    Attributes:
        header: the slot header (a one-element structured array).
        table: event table rows (``timestamp``, ``first``, ``count``).
        fragments: the fragments, event after event (``source_id``, ``timestamp``,
            ``barrier_type``, payloads through :meth:`FragmentBatch.payload`).
    """

    header: np.ndarray
    table: np.ndarray
    fragments: FragmentBatch

    def __len__(self) -> int:
        return len(self.table)

    @property
    def built(self) -> bool:
        return bool(self.header["built"][0])

    def events(self) -> EventBatch:
        return EventBatch(
            self.fragments,
            self.table["first"].astype(np.int64),
            self.table["count"].astype(np.int64),
            self.table["timestamp"],
        )

    def event(self, i: int) -> FragmentBatch:
        """The fragments of event ``i``."""
        first = int(self.table["first"][i])
        return self.fragments[first : first + int(self.table["count"][i])]

    def payloads(self, i: int) -> list[memoryview]:
        """Zero-copy payload views of event ``i``'s fragments."""
        ev = self.event(i)
        buf = memoryview(ev.buffers[0].data) if ev.buffers else memoryview(b"")
        out = []
        for off, size in zip(
            ev.index["offset"].tolist(), ev.index["payload_size"].tolist(), strict=True
        ):
            out.append(buf[off + FLAT_HEADER_BYTES : off + FLAT_HEADER_BYTES + size])
        return out


def read_slot(slot: npt.NDArray[np.uint8]) -> SlotEvents:
    """Decode a slot written by :func:`pack_slot` (views into ``slot``, no copy).

    Raises:
        RemoteProtocolError: the slot does not hold an evb event slot.
    """
    if len(slot) < SLOT_HEADER_BYTES:
        raise RemoteProtocolError(f"slot of {len(slot)} bytes is smaller than its header")
    header = slot[:SLOT_HEADER_BYTES].view(SLOT_HEADER_DTYPE)
    if int(header["magic"][0]) != SLOT_MAGIC:
        raise RemoteProtocolError("not an evb event slot (bad magic)", offset=0)
    n_ev = int(header["n_events"][0])
    used = int(header["bytes_used"][0])
    table_end = SLOT_HEADER_BYTES + n_ev * EVENT_ROW_DTYPE.itemsize
    if used > len(slot) or table_end > used:
        raise RemoteProtocolError(f"slot header claims {used} bytes, slot holds {len(slot)}")
    table = slot[SLOT_HEADER_BYTES:table_end].view(EVENT_ROW_DTYPE)
    frags = parse_fragments(slot[table_end:used], stream_offset=table_end)
    return SlotEvents(header, table, frags)
