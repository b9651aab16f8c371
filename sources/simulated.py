"""Simulated fragment sources (pure: no I/O, no clock).

:func:`flatten_columns` builds a batch from columns with numpy (no per-fragment loop for fixed-size
payloads). :class:`SimulatedSource` produces rising-timestamp batches for several source ids, with
optional begin/end barriers; the demo, the ``evb-source sim`` command and the benchmarks use it.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from evb.batch import FLAT_HEADER_BYTES, HEADER_DTYPE, INDEX_DTYPE, FragmentBatch

__all__ = ["BEGIN_BARRIER", "END_BARRIER", "SimulatedSource", "flatten_columns"]

BEGIN_BARRIER = 1
END_BARRIER = 2


def flatten_columns(
    timestamps: npt.ArrayLike,
    source_ids: npt.ArrayLike,
    payloads: npt.NDArray[np.uint8] | Sequence[bytes],
    barrier_types: npt.ArrayLike | None = None,
    *,
    received: float = 0.0,
) -> FragmentBatch:
    """A batch whose single buffer holds the fragments flattened back to back, in row order.

    Args:
        timestamps: one timestamp per fragment (ticks).
        source_ids: one source id per fragment, or a scalar for all.
        payloads: a 2-D uint8 array (one row per fragment, fixed size) or a list of bytes.
        barrier_types: one barrier type per fragment, a scalar, or None for data.
    """
    ts = np.asarray(timestamps, dtype=np.uint64).reshape(-1)
    n = len(ts)
    if isinstance(payloads, np.ndarray):
        if payloads.ndim != 2 or payloads.shape[0] != n:
            raise ValueError(
                f"payloads must be a 2-D array with one row per fragment ({n}), "
                f"was shape {payloads.shape}"
            )
        size = int(payloads.shape[1])
        sizes = np.full(n, size, np.int64)
    else:
        if len(payloads) != n:
            raise ValueError(f"expected {n} payloads, got {len(payloads)}")
        sizes = np.fromiter((len(p) for p in payloads), np.int64, n)
    index = np.empty(n, INDEX_DTYPE)
    index["timestamp"] = ts
    index["source_id"] = np.broadcast_to(np.asarray(source_ids, dtype=np.uint32), (n,))
    index["payload_size"] = sizes
    index["barrier_type"] = (
        0
        if barrier_types is None
        else np.broadcast_to(np.asarray(barrier_types, dtype=np.uint32), (n,))
    )
    index["buf"] = 0
    index["received"] = received
    lens = sizes + FLAT_HEADER_BYTES
    offsets = np.zeros(n, np.int64)
    if n:
        np.cumsum(lens[:-1], out=offsets[1:])
    index["offset"] = offsets
    total = int(lens.sum())
    buf = np.empty(total, np.uint8)
    hdr = np.empty(n, HEADER_DTYPE)
    for name in ("timestamp", "source_id", "payload_size", "barrier_type"):
        hdr[name] = index[name]
    raw = hdr.view(np.uint8).reshape(n, FLAT_HEADER_BYTES)
    if isinstance(payloads, np.ndarray):
        rows = buf.reshape(n, FLAT_HEADER_BYTES + size) if n else buf.reshape(0, FLAT_HEADER_BYTES)
        rows[:, :FLAT_HEADER_BYTES] = raw
        if size:
            rows[:, FLAT_HEADER_BYTES:] = payloads
    else:
        for i, (off, p) in enumerate(zip(offsets.tolist(), payloads, strict=True)):
            buf[off : off + FLAT_HEADER_BYTES] = raw[i]
            if p:
                buf[off + FLAT_HEADER_BYTES : off + FLAT_HEADER_BYTES + len(p)] = np.frombuffer(
                    p, np.uint8
                )
    return FragmentBatch(index, (buf,))


@dataclass(frozen=True, slots=True, kw_only=True)
class _Plan:
    source_ids: tuple[int, ...]
    count: int
    payload_bytes: int
    batch: int
    ticks_per_fragment: int
    jitter_ticks: int
    start_tick: int
    begin_barrier: bool
    end_barrier: bool
    seed: int


class SimulatedSource:
    """Rising-timestamp fragments for several source ids, in batches.

    Fragment ``i`` of every source gets timestamp ``start_tick + i * ticks_per_fragment`` plus a
    jitter in ``[0, jitter_ticks)`` that keeps each source's timestamps strictly rising. Within
    a batch, fragments are interleaved by index (all sources' fragment ``i``, then ``i + 1``...).
    Processes simulating different source ids with the same settings share one time base, so
    their streams merge. The payload of each fragment starts with its source id and index
    (little-endian u32, u64) when ``payload_bytes >= 12``, which lets a consumer check contents.

    Args:
        source_ids: the ids simulated.
        count: data fragments per source id.
        payload_bytes: payload size of every data fragment.
        batch: fragments per batch (all sources together); barriers travel in their own batch.
        ticks_per_fragment: timestamp step between a source's consecutive fragments.
        jitter_ticks: random extra ticks, less than ``ticks_per_fragment``.
        start_tick: timestamp of fragment 0 (before jitter).
        begin_barrier: send a begin barrier (type 1) from every source first.
        end_barrier: send an end barrier (type 2) from every source last.
        seed: random seed of the jitter and payload filler.
    """

    def __init__(
        self,
        source_ids: Sequence[int],
        *,
        count: int,
        payload_bytes: int = 32,
        batch: int = 1000,
        ticks_per_fragment: int = 100,
        jitter_ticks: int = 0,
        start_tick: int = 1000,
        begin_barrier: bool = False,
        end_barrier: bool = False,
        seed: int = 0,
    ) -> None:
        if not source_ids:
            raise ValueError("at least one source id is needed")
        if count < 0 or payload_bytes < 0 or batch < 1:
            raise ValueError("count and payload_bytes must be >= 0 and batch >= 1")
        if not 0 <= jitter_ticks < max(ticks_per_fragment, 1):
            raise ValueError(
                f"jitter_ticks must be in [0, ticks_per_fragment={ticks_per_fragment}), "
                f"was {jitter_ticks}"
            )
        self.plan = _Plan(
            source_ids=tuple(int(s) for s in source_ids),
            count=count,
            payload_bytes=payload_bytes,
            batch=batch,
            ticks_per_fragment=ticks_per_fragment,
            jitter_ticks=jitter_ticks,
            start_tick=start_tick,
            begin_barrier=begin_barrier,
            end_barrier=end_barrier,
            seed=seed,
        )
        self._rng = np.random.default_rng(seed)
        self._filler = self._rng.integers(0, 256, payload_bytes, dtype=np.uint8)

    @property
    def total_fragments(self) -> int:
        """Fragments the iterator yields in all (barriers included)."""
        p = self.plan
        per_source = p.count + int(p.begin_barrier) + int(p.end_barrier)
        return per_source * len(p.source_ids)

    def end_tick(self) -> int:
        """A timestamp above every data fragment's."""
        p = self.plan
        return p.start_tick + p.count * p.ticks_per_fragment + 1

    def barrier_batch(self, barrier_type: int, timestamp: int) -> FragmentBatch:
        """One barrier fragment per source id, all at ``timestamp``, empty payloads."""
        ids = np.asarray(self.plan.source_ids, np.uint32)
        return flatten_columns(
            np.full(len(ids), timestamp, np.uint64),
            ids,
            np.empty((len(ids), 0), np.uint8),
            barrier_type,
        )

    def data_batch(self, first: int, last: int) -> FragmentBatch:
        """Data fragments ``first .. last - 1`` (per-source indices) of every source."""
        p = self.plan
        ids = np.asarray(p.source_ids, np.uint32)
        k = len(ids)
        i = np.repeat(np.arange(first, last, dtype=np.uint64), k)
        n = len(i)
        sids = np.tile(ids, last - first)
        ts = np.uint64(p.start_tick) + i * np.uint64(p.ticks_per_fragment)
        if p.jitter_ticks:
            ts = ts + self._rng.integers(0, p.jitter_ticks, n, dtype=np.uint64)
        # Written straight into the flattened buffer: one pass over the payload bytes.
        rec = FLAT_HEADER_BYTES + p.payload_bytes
        buf = np.empty(n * rec, np.uint8)
        rows = buf.reshape(n, rec)
        rows[:, FLAT_HEADER_BYTES:] = self._filler
        if p.payload_bytes >= 12:
            rows[:, 20:24] = sids.astype("<u4").view(np.uint8).reshape(-1, 4)
            rows[:, 24:32] = i.astype("<u8").view(np.uint8).reshape(-1, 8)
        index = np.empty(n, INDEX_DTYPE)
        index["timestamp"] = ts
        index["source_id"] = sids
        index["payload_size"] = p.payload_bytes
        index["barrier_type"] = 0
        index["buf"] = 0
        index["offset"] = np.arange(n, dtype=np.int64) * rec
        index["received"] = 0.0
        hdr = np.empty(n, HEADER_DTYPE)
        for name in ("timestamp", "source_id", "payload_size", "barrier_type"):
            hdr[name] = index[name]
        rows[:, :FLAT_HEADER_BYTES] = hdr.view(np.uint8).reshape(n, FLAT_HEADER_BYTES)
        return FragmentBatch(index, (buf,))

    def __iter__(self) -> Iterator[FragmentBatch]:
        p = self.plan
        if p.begin_barrier:
            yield self.barrier_batch(BEGIN_BARRIER, max(p.start_tick - 1, 0))
        per_batch = max(p.batch // len(p.source_ids), 1)
        for first in range(0, p.count, per_batch):
            yield self.data_batch(first, min(first + per_batch, p.count))
        if p.end_barrier:
            yield self.barrier_batch(END_BARRIER, self.end_tick())
