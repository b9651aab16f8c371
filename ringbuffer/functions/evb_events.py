"""Prebuilt ``evb_events.unpack``: built events from an EVB ring onto a typed buffer.

The source buffer is the ring of ``evb-server --ring NAME`` (raw ``u1`` slots, each a run of
built events, see docs/formats.md). Every event becomes one slot of the sink, one row per
fragment; the sink's ``data_dtype`` (from the YAML setup) picks the columns by name:

========================  ==============================================================
``event_timestamp``       the event's timestamp (builder policy)
``event``                 event number, counted from 0 by this worker process
``n_fragments``           fragments in the event (every row of the event)
``fragment_timestamp``    the fragment's timestamp (``timestamp`` works too, but the csv
                          exporter then shows two ``timestamp`` columns: slot and fragment)
``source_id``             the fragment's source id
``barrier_type``          0 for data; 1 begin run, 2 end run... for a barrier event
``payload_size``          payload bytes of the fragment
any ``payload_dtype`` field  decoded from the start of the fragment's payload
========================  ==============================================================

Rows beyond the event's fragments are zero. Configs: ``payload_dtype`` (mapping field ->
numpy type, the layout of a payload's first bytes; shorter payloads decode as zeros),
``barriers`` (bool, default true: barrier events are passed on, so begin/end of run reach the
analysis), ``sources`` (list of source ids to keep; default all), ``overflow`` (``error``
(default) or ``truncate``: what to do with an event of more fragments than ``data_length``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ringbuffer.errors import SetupError, WorkerError
from ringbuffer.layout import dtype_from_setup
from ringbuffer.worker import BufferIO

__all__ = ["HEADER_COLUMNS", "EventUnpacker", "unpack"]

#: Columns filled from the event structure (not from the payload).
HEADER_COLUMNS = (
    "event_timestamp",
    "event",
    "n_fragments",
    "fragment_timestamp",
    "timestamp",
    "source_id",
    "barrier_type",
    "payload_size",
)
_FLAT_HEADER_BYTES = 20


class EventUnpacker:
    """Turns one EVB ring slot into typed rows (pure numpy; used by :func:`unpack`).

    Args:
        out_dtype: the sink's record dtype.
        rows: rows per output slot (the sink's ``data_length``).
        payload_dtype: layout of the start of each payload (None: no payload columns).
        barriers: keep barrier events.
        sources: keep only fragments of these source ids (None: all).
        overflow: ``"error"`` or ``"truncate"`` for events with more fragments than ``rows``.
    """

    def __init__(
        self,
        out_dtype: np.dtype[Any],
        rows: int,
        *,
        payload_dtype: np.dtype[Any] | None = None,
        barriers: bool = True,
        sources: list[int] | None = None,
        overflow: str = "error",
    ) -> None:
        if overflow not in ("error", "truncate"):
            raise SetupError(f"overflow must be 'error' or 'truncate', was {overflow!r}")
        names = out_dtype.names or ()
        pnames = payload_dtype.names or () if payload_dtype is not None else ()
        unknown = [n for n in names if n not in HEADER_COLUMNS and n not in pnames]
        if unknown:
            raise SetupError(
                f"sink fields {unknown} are neither event columns {list(HEADER_COLUMNS)} "
                f"nor payload_dtype fields {list(pnames)}"
            )
        self.out_dtype = out_dtype
        self.rows = rows
        self.payload_dtype = payload_dtype
        self.payload_fields = [n for n in names if n in pnames]
        self.barriers = barriers
        self.sources = None if sources is None else np.asarray(sources, np.uint32)
        self.overflow = overflow
        self.events_seen = 0

    def unpack(self, slot: np.ndarray) -> np.ndarray:
        """Rows of the events of one slot: shape ``(n_events, rows)`` of ``out_dtype``."""
        from evb.eventfmt import read_slot

        se = read_slot(slot)
        frags = se.fragments
        idx = frags.index
        starts = se.table["first"].astype(np.int64)
        counts = se.table["count"].astype(np.int64)
        ets = se.table["timestamp"]
        n_ev = len(starts)
        ev_of = np.repeat(np.arange(n_ev), counts)
        keep = np.ones(len(idx), bool)
        if not self.barriers:
            keep &= idx["barrier_type"] == 0
        if self.sources is not None:
            # barriers always pass the source filter: they mark the run, not a detector
            keep &= np.isin(idx["source_id"], self.sources) | (idx["barrier_type"] != 0)
        kept_counts = np.bincount(ev_of[keep], minlength=n_ev)
        ev_keep = kept_counts > 0
        # new event numbering and row numbers among the kept fragments
        new_ev = np.cumsum(ev_keep) - 1
        n_out = int(ev_keep.sum())
        f_ev = ev_of[keep]
        first_kept = np.zeros(n_ev + 1, np.int64)
        first_kept[1:] = np.cumsum(kept_counts)
        row = np.arange(int(keep.sum())) - first_kept[f_ev]
        too_many = row >= self.rows
        if too_many.any() and self.overflow == "error":
            e = int(f_ev[too_many][0])
            raise WorkerError(
                f"event at timestamp {int(ets[e])} has {int(kept_counts[e])} fragments, "
                f"the sink holds {self.rows} rows per slot: raise its data_length or set "
                "overflow: truncate"
            )
        out = np.zeros((n_out, self.rows), self.out_dtype)
        sel = ~too_many
        oe = new_ev[f_ev][sel]
        orow = row[sel]
        names = self.out_dtype.names or ()
        kidx = idx[keep][sel]
        cols: dict[str, Any] = {
            "event_timestamp": ets[f_ev][sel],
            "event": (self.events_seen + new_ev[f_ev])[sel],
            "n_fragments": kept_counts[f_ev][sel],
            "fragment_timestamp": kidx["timestamp"],
            "timestamp": kidx["timestamp"],
            "source_id": kidx["source_id"],
            "barrier_type": kidx["barrier_type"],
            "payload_size": kidx["payload_size"],
        }
        for name in names:
            if name in cols:
                out[name][oe, orow] = cols[name]
        if self.payload_fields and self.payload_dtype is not None and len(kidx):
            size = self.payload_dtype.itemsize
            ok = kidx["payload_size"] >= size
            if ok.any():
                raw = frags.buffers[0]
                pos = kidx["offset"][ok] + _FLAT_HEADER_BYTES
                data = raw[(pos[:, None] + np.arange(size)).ravel()].view(self.payload_dtype)
                for name in self.payload_fields:
                    out[name][oe[ok], orow[ok]] = data[name]
        self.events_seen += n_out
        return out


def unpack(buffer_io: BufferIO) -> None:
    """Worker: EVB ring (source) -> one typed sink slot per built event (see module doc)."""
    if len(buffer_io.read) != 1 or len(buffer_io.write) != 1:
        raise SetupError(
            f"worker {buffer_io.name!r}: evb_events.unpack needs 1 source (the EVB ring) and "
            f"1 sink, got {len(buffer_io.read)} and {len(buffer_io.write)}"
        )
    reader = buffer_io.read[0]
    writer = buffer_io.write[0]
    if reader.ring.data_dtype.itemsize != 1:
        raise SetupError(
            f"worker {buffer_io.name!r}: source {reader.name!r} must be an EVB ring (u1 slots), "
            f"is {reader.ring.data_dtype}"
        )
    pd = buffer_io.get("payload_dtype")
    payload_dtype = dtype_from_setup(pd, where=f"{buffer_io.name}.payload_dtype") if pd else None
    sources = buffer_io.get("sources")
    unpacker = EventUnpacker(
        writer.ring.data_dtype,
        writer.ring.data_length,
        payload_dtype=payload_dtype,
        barriers=bool(buffer_io.get("barriers", True)),
        sources=None if sources is None else [int(s) for s in sources],
        overflow=str(buffer_io.get("overflow", "error")),
    )
    while True:
        batch = reader.claim(1)
        if batch is None:
            break
        try:
            rows = unpacker.unpack(batch.data[0].view(np.uint8))
        finally:
            batch.release()
        done = 0
        while done < len(rows):
            wb = writer.claim(len(rows) - done)
            m = len(wb)
            if not wb.discard:
                wb.data[:m] = rows[done : done + m]
            wb.commit()
            done += m
    buffer_io.logger.info("unpacked %d events", unpacker.events_seen)
