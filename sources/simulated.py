"""Simulated fragment sources (pure: no I/O, no clock).

``flatten_columns`` (the core's :func:`evb.batch.batch_from_columns`) builds a batch from
columns. :class:`SimulatedSource` produces rising-timestamp batches for several source ids, with
optional begin/end barriers; the demo, the ``evb-source sim`` command and the benchmarks use it.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from evb.batch import FragmentBatch, batch_from_columns, fixed_size_batch

__all__ = ["BEGIN_BARRIER", "END_BARRIER", "SimulatedSource", "flatten_columns"]

BEGIN_BARRIER = 1
END_BARRIER = 2


#: Build a batch from columns (the core's builder; kept under this name for the client API).
flatten_columns = batch_from_columns


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
        # Payloads are written in place into the flattened buffer: one pass over the bytes.
        batch, payload = fixed_size_batch(ts, sids, p.payload_bytes)
        payload[:] = self._filler
        if p.payload_bytes >= 12:
            payload[:, 0:4] = sids.astype("<u4").view(np.uint8).reshape(-1, 4)
            payload[:, 4:12] = i.astype("<u8").view(np.uint8).reshape(-1, 8)
        return batch

    def __iter__(self) -> Iterator[FragmentBatch]:
        p = self.plan
        if p.begin_barrier:
            yield self.barrier_batch(BEGIN_BARRIER, max(p.start_tick - 1, 0))
        per_batch = max(p.batch // len(p.source_ids), 1)
        for first in range(0, p.count, per_batch):
            yield self.data_batch(first, min(first + per_batch, p.count))
        if p.end_barrier:
            yield self.barrier_batch(END_BARRIER, self.end_tick())
