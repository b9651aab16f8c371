"""Per-source input queues of the orderer: sorted segments of fragment batches (pure)."""

from __future__ import annotations

from collections import deque

import numpy as np
import numpy.typing as npt

from evb.batch import FragmentBatch
from evb.stats import StatMode, Stats, StatsSchema

__all__ = ["SOURCE_SCHEMA", "Segment", "SourceQueue"]

#: Statistics kept for every source (the orderer's per-source view).
SOURCE_SCHEMA = StatsSchema(
    [
        ("fragments_in", StatMode.COUNTER),
        ("bytes_in", StatMode.COUNTER),
        ("fragments_out", StatMode.COUNTER),
        ("bytes_out", StatMode.COUNTER),
        ("late", StatMode.COUNTER),
        ("late_worst", StatMode.MAXIMUM),
        ("duplicates", StatMode.COUNTER),
        ("out_of_order", StatMode.COUNTER),
        ("null_timestamps", StatMode.COUNTER),
        ("barriers_in", StatMode.COUNTER),
        ("max_batch", StatMode.MAXIMUM),
        ("dead_marks", StatMode.COUNTER),
        ("xoff_episodes", StatMode.COUNTER),
    ]
)
S_FRAGS_IN = SOURCE_SCHEMA.get_stat_index("fragments_in")
S_BYTES_IN = SOURCE_SCHEMA.get_stat_index("bytes_in")
S_FRAGS_OUT = SOURCE_SCHEMA.get_stat_index("fragments_out")
S_BYTES_OUT = SOURCE_SCHEMA.get_stat_index("bytes_out")
S_LATE = SOURCE_SCHEMA.get_stat_index("late")
S_LATE_WORST = SOURCE_SCHEMA.get_stat_index("late_worst")
S_DUPS = SOURCE_SCHEMA.get_stat_index("duplicates")
S_OO = SOURCE_SCHEMA.get_stat_index("out_of_order")
S_NULLS = SOURCE_SCHEMA.get_stat_index("null_timestamps")
S_BARRIERS = SOURCE_SCHEMA.get_stat_index("barriers_in")
S_MAX_BATCH = SOURCE_SCHEMA.get_stat_index("max_batch")
S_DEAD = SOURCE_SCHEMA.get_stat_index("dead_marks")
S_XOFF = SOURCE_SCHEMA.get_stat_index("xoff_episodes")

_EMPTY_POS = np.empty(0, np.int64)


class Segment:
    """A run of fragments sorted by timestamp, consumed from ``start``.

    Attributes:
        batch: the fragments.
        ts: contiguous copy of their timestamps (for ``searchsorted``).
        barriers: sorted row positions of barrier fragments.
        start: first row not yet emitted.
    """

    __slots__ = ("_bar_ptr", "barriers", "batch", "cum_bytes", "last_data_pos", "received_min",
                 "start", "ts", "uniform_received")

    def __init__(self, batch: FragmentBatch, ts: npt.NDArray[np.uint64], *, uniform: bool) -> None:
        self.batch = batch
        self.ts = ts
        self.start = 0
        # cum_bytes[i]: payload bytes of rows before i (cuts cost O(1) to account).
        self.cum_bytes = np.zeros(len(ts) + 1, np.int64)
        np.cumsum(batch.index["payload_size"], out=self.cum_bytes[1:])
        bar = batch.index["barrier_type"]
        self.barriers: npt.NDArray[np.int64] = np.flatnonzero(bar) if bar.any() else _EMPTY_POS
        self._bar_ptr = 0
        n = len(ts)
        if len(self.barriers) == 0:
            self.last_data_pos = n - 1
        else:
            data_pos = np.flatnonzero(bar == 0)
            self.last_data_pos = int(data_pos[-1]) if len(data_pos) else -1
        self.uniform_received = uniform
        rec = batch.index["received"]
        self.received_min = float(rec[0]) if uniform else float(rec.min())

    def __len__(self) -> int:
        return len(self.ts) - self.start

    def next_barrier(self) -> int:
        """Row position of the first barrier at or after ``start`` (``len(ts)`` if none)."""
        bars = self.barriers
        while self._bar_ptr < len(bars) and bars[self._bar_ptr] < self.start:
            self._bar_ptr += 1
        return int(bars[self._bar_ptr]) if self._bar_ptr < len(bars) else len(self.ts)

    def rest(self) -> tuple[FragmentBatch, npt.NDArray[np.uint64]]:
        return self.batch[self.start :], self.ts[self.start :]


class SourceQueue:
    """The input queue and bookkeeping of one source id."""

    __slots__ = (
        "barrier_types",
        "bytes_dequeued",
        "bytes_queued",
        "connection",
        "dead",
        "depth",
        "has_last",
        "last_dup_ts",
        "last_ts",
        "max_ts",
        "missing_times",
        "oo_last_bad",
        "oo_last_prior",
        "paused",
        "segments",
        "sid",
        "stats",
        "total_bytes_queued",
    )

    def __init__(self, sid: int, connection: str | None) -> None:
        self.sid = sid
        self.connection = connection
        self.segments: deque[Segment] = deque()
        self.depth = 0
        self.bytes_queued = 0
        self.bytes_dequeued = 0
        self.total_bytes_queued = 0
        self.dead = False
        self.paused = False
        self.has_last = False  # a fragment was received since start/reset
        self.last_ts = 0  # timestamp of the previous fragment received
        self.max_ts = 0  # highest timestamp received since start/reset
        self.stats = Stats(SOURCE_SCHEMA)
        self.last_dup_ts = 0
        self.oo_last_prior = 0
        self.oo_last_bad = 0
        self.barrier_types: dict[int, int] = {}  # complete barriers: type -> count
        self.missing_times = 0  # incomplete barriers this source was absent from

    def head_segment(self) -> Segment | None:
        return self.segments[0] if self.segments else None

    def head_is_barrier(self) -> bool:
        if not self.segments:
            return False
        seg = self.segments[0]
        return len(seg.barriers) > 0 and seg.next_barrier() == seg.start

    def first_barrier_ts(self) -> int | None:
        """Timestamp of the first barrier queued (None: no barrier in the queue)."""
        for seg in self.segments:
            if len(seg.barriers):
                pos = seg.next_barrier()
                if pos < len(seg.ts):
                    return int(seg.ts[pos])
        return None

    def has_barrier_queued(self) -> bool:
        """True if a barrier is anywhere in the queue."""
        return self.first_barrier_ts() is not None

    def head_ts(self) -> int:
        seg = self.head_segment()
        return int(seg.ts[seg.start]) if seg is not None else 0

    def tail_ts(self) -> int:
        return int(self.segments[-1].ts[-1]) if self.segments else 0

    def newest_data_ts(self) -> int | None:
        """Highest data (non-barrier) timestamp still queued."""
        for seg in reversed(self.segments):
            if seg.last_data_pos >= seg.start:
                return int(seg.ts[seg.last_data_pos])
        return None

    def append(self, batch: FragmentBatch, ts: npt.NDArray[np.uint64], *, in_order: bool) -> int:
        """Queue fragments; ``in_order`` promises ``ts`` is sorted and not below the tail.

        Returns:
            the payload bytes queued.
        """
        n_new = len(ts)
        if not in_order:
            parts = [seg.rest() for seg in self.segments if len(seg)]
            parts.append((batch, ts))
            merged = FragmentBatch.concat([p[0] for p in parts])
            all_ts = np.concatenate([p[1] for p in parts]) if len(parts) > 1 else ts
            order = np.argsort(all_ts, kind="stable")
            self.segments.clear()
            self.segments.append(Segment(merged[order], all_ts[order], uniform=False))
            # The merged segment holds the old rest plus the new batch.
            bytes_new = int(self.segments[0].cum_bytes[-1]) - self.bytes_queued
        else:
            seg = Segment(batch, ts, uniform=True)
            self.segments.append(seg)
            bytes_new = int(seg.cum_bytes[-1])
        self.depth += n_new
        self.bytes_queued += bytes_new
        self.total_bytes_queued += bytes_new
        return bytes_new

    def take(
        self, limit: int | None, cutoff: float | None
    ) -> tuple[list[FragmentBatch], list[npt.NDArray[np.uint64]], int, int]:
        """Remove data from the head: up to timestamp ``limit`` (inclusive), received no later
        than ``cutoff``, never past a barrier. Either bound may be None (no bound).

        Returns:
            pieces, their timestamps, the number of fragments and their payload bytes.
        """
        pieces: list[FragmentBatch] = []
        tss: list[npt.NDArray[np.uint64]] = []
        segs = self.segments
        n = 0
        nbytes = 0
        while segs:
            seg = segs[0]
            start = seg.start
            end = len(seg.ts)
            stop = seg.next_barrier() if len(seg.barriers) else end
            if stop == start:
                break
            if limit is not None and int(seg.ts[stop - 1]) > limit:
                stop = int(np.searchsorted(seg.ts, np.uint64(limit), "right"))
            if cutoff is not None and stop > start:
                if seg.uniform_received:
                    if seg.received_min > cutoff:
                        stop = start
                else:
                    late = np.flatnonzero(seg.batch.index["received"][start:stop] > cutoff)
                    if len(late):
                        stop = start + int(late[0])
            if stop > start:
                pieces.append(seg.batch[start:stop])
                tss.append(seg.ts[start:stop])
                seg.start = stop
                n += stop - start
                nbytes += int(seg.cum_bytes[stop] - seg.cum_bytes[start])
            if stop == end:
                segs.popleft()
                continue
            break
        if n:
            self.depth -= n
            self.bytes_queued -= nbytes
            self.bytes_dequeued += nbytes
        return pieces, tss, n, nbytes

    def pop_head(self) -> FragmentBatch:
        """Remove the head fragment (a barrier) and return it."""
        seg = self.segments[0]
        piece = seg.batch[seg.start : seg.start + 1]
        seg.start += 1
        if seg.start == len(seg.ts):
            self.segments.popleft()
        nbytes = int(piece.payload_sizes[0])
        self.depth -= 1
        self.bytes_queued -= nbytes
        self.bytes_dequeued += nbytes
        return piece
