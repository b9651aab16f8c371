"""Statistics of the ordering core: the schema, and the ``EVB::`` result shapes (pure).

:class:`OrdererStatistics` is the part of :class:`~evb.orderer.Orderer` that answers the
statistics commands of spec section 5 (``inputStats``, ``outputStats``, ``dlatestats``,
``dupstat``, ``getoostats``, ``barrierstats``) as plain Python values of exactly the Tcl shapes,
and clears them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from evb.queues import S_DUPS, S_FRAGS_OUT, S_LATE, S_LATE_WORST, S_OO, SourceQueue
from evb.stats import StatMode, Stats, StatsSchema, StatsSnapshot

__all__ = ["ORDERER_SCHEMA", "BarrierTotals", "OrdererStatistics"]

ORDERER_SCHEMA = StatsSchema(
    [
        ("fragments_in", StatMode.COUNTER),
        ("bytes_in", StatMode.COUNTER),
        ("messages_in", StatMode.COUNTER),
        ("fragments_out", StatMode.COUNTER),
        ("bytes_out", StatMode.COUNTER),
        ("late", StatMode.COUNTER),
        ("late_worst", StatMode.MAXIMUM),
        ("duplicates", StatMode.COUNTER),
        ("out_of_order", StatMode.COUNTER),
        ("null_timestamps", StatMode.COUNTER),
        ("barriers_complete", StatMode.COUNTER),
        ("barriers_incomplete", StatMode.COUNTER),
        ("xoff_episodes", StatMode.COUNTER),
        ("perq_xoff_episodes", StatMode.COUNTER),
        ("passes", StatMode.COUNTER),
        ("max_batch", StatMode.MAXIMUM),
        ("queued_bytes_hwm", StatMode.MAXIMUM),
        ("queued_fragments", StatMode.GAUGE),
        ("queued_bytes", StatMode.GAUGE),
        ("inflight_bytes", StatMode.GAUGE),
        ("sources", StatMode.GAUGE),
        ("dead_sources", StatMode.GAUGE),
        ("xoff", StatMode.GAUGE),
    ]
)
_I = ORDERER_SCHEMA.get_stat_index
O_FRAGS_IN, O_BYTES_IN, O_MSGS_IN = _I("fragments_in"), _I("bytes_in"), _I("messages_in")
O_FRAGS_OUT, O_BYTES_OUT = _I("fragments_out"), _I("bytes_out")
O_LATE, O_LATE_WORST = _I("late"), _I("late_worst")
O_DUPS, O_OO = _I("duplicates"), _I("out_of_order")
O_NULLS, O_BC, O_BI = _I("null_timestamps"), _I("barriers_complete"), _I("barriers_incomplete")
O_XOFF, O_PQXOFF, O_PASSES = _I("xoff_episodes"), _I("perq_xoff_episodes"), _I("passes")
O_MAX_BATCH, O_HWM = _I("max_batch"), _I("queued_bytes_hwm")


@dataclass(slots=True)
class BarrierTotals:
    count: int = 0
    homogeneous: int = 0
    heterogeneous: int = 0
    by_type: dict[int, int] = field(default_factory=dict)  # complete: type -> fragments
    by_missing: dict[int, int] = field(default_factory=dict)  # incomplete: n missing -> times


class OrdererStatistics:
    """Statistics queries over the orderer's state (mixed into :class:`~evb.orderer.Orderer`)."""

    _ordered: list[SourceQueue]
    _queues: dict[int, SourceQueue]
    _stats: Stats
    _complete: BarrierTotals
    _incomplete: BarrierTotals
    _queued_fragments: int
    _queued_bytes: int
    _unwritten_bytes: int
    _oo_last_prior: int
    _oo_last_bad: int
    xoff: bool

    @property
    def inflight_bytes(self) -> int:
        """Payload bytes queued plus emitted but not yet reported written."""
        return self._queued_bytes + self._unwritten_bytes

    def stats(self) -> StatsSnapshot:
        """Overall statistics (counters since the last clear; gauges now)."""
        s = self._stats
        s.set(_I("queued_fragments"), self._queued_fragments)
        s.set(_I("queued_bytes"), self._queued_bytes)
        s.set(_I("inflight_bytes"), self.inflight_bytes)
        s.set(_I("sources"), len(self._ordered))
        s.set(_I("dead_sources"), sum(q.dead for q in self._ordered))
        s.set(_I("xoff"), int(self.xoff))
        return s.snapshot()

    def source_stats(self, source_id: int) -> StatsSnapshot:
        """Statistics of one source. Unknown ids raise KeyError."""
        return self._queues[source_id].stats.snapshot()

    def input_stats(self) -> tuple[int, int, int, list[tuple[int, int, int, int, int, int]], int]:
        """``EVB::inputStats``: oldest newest totalQueued {{sid depth headTs bytesQueued
        bytesDequeued totalBytesQueued} ...} inflight (unwritten payload bytes)."""
        full = [q for q in self._ordered if q.depth]
        oldest = min((q.head_ts() for q in full), default=0)
        newest = max((q.tail_ts() for q in full), default=0)
        rows = [
            (q.sid, q.depth, q.head_ts(), q.bytes_queued, q.bytes_dequeued, q.total_bytes_queued)
            for q in self._ordered
        ]
        return oldest, newest, self._queued_fragments, rows, self._unwritten_bytes

    def output_stats(self) -> tuple[int, list[tuple[int, int]]]:
        """``EVB::outputStats get``: total {{sid count} ...}."""
        rows = [(q.sid, q.stats.since_clear(S_FRAGS_OUT)) for q in self._ordered]
        return self._stats.since_clear(O_FRAGS_OUT), rows

    def clear_output_stats(self) -> None:
        names = ("fragments_out", "bytes_out")
        self._stats.clear(names)
        for q in self._ordered:
            q.stats.clear(names)

    def late_stats(self) -> tuple[int, int, list[tuple[int, int, int]]]:
        """``EVB::dlatestats``: count worst {{sid count worst} ...} (sources with late data)."""
        rows = [
            (q.sid, q.stats.since_clear(S_LATE), q.stats.values[S_LATE_WORST])
            for q in self._ordered
            if q.stats.since_clear(S_LATE)
        ]
        return self._stats.since_clear(O_LATE), self._stats.values[O_LATE_WORST], rows

    def clear_late_stats(self) -> None:
        self._stats.clear(("late", "late_worst"))
        for q in self._ordered:
            q.stats.clear(("late", "late_worst"))

    def duplicate_stats(self) -> tuple[int, list[tuple[int, int, int]]]:
        """``EVB::dupstat``: total {{sid count lastDupTs} ...} (sources with duplicates)."""
        rows = [
            (q.sid, q.stats.since_clear(S_DUPS), q.last_dup_ts)
            for q in self._ordered
            if q.stats.since_clear(S_DUPS)
        ]
        return self._stats.since_clear(O_DUPS), rows

    def clear_duplicate_stats(self) -> None:
        self._stats.clear(("duplicates",))
        for q in self._ordered:
            q.stats.clear(("duplicates",))
            q.last_dup_ts = 0

    def out_of_order_stats(
        self,
    ) -> tuple[tuple[int, int, int], list[tuple[int, int, int, int]]]:
        """``EVB::getoostats``: {count lastPriorTs lastBadTs} and per-source rows."""
        rows = [
            (q.sid, q.stats.since_clear(S_OO), q.oo_last_prior, q.oo_last_bad)
            for q in self._ordered
            if q.stats.since_clear(S_OO)
        ]
        total = (self._stats.since_clear(O_OO), self._oo_last_prior, self._oo_last_bad)
        return total, rows

    def clear_out_of_order_stats(self) -> None:
        self._stats.clear(("out_of_order",))
        self._oo_last_prior = self._oo_last_bad = 0
        for q in self._ordered:
            q.stats.clear(("out_of_order",))
            q.oo_last_prior = q.oo_last_bad = 0

    def barrier_stats(
        self,
    ) -> tuple[
        tuple[int, int, int, list[tuple[int, int]], list[tuple[int, list[tuple[int, int]]]]],
        tuple[int, int, int, list[tuple[int, int]], list[tuple[int, int]]],
    ]:
        """``EVB::barrierstats``: the complete part and the incomplete part (spec section 5)."""
        c, i = self._complete, self._incomplete
        complete = (
            c.count,
            c.homogeneous,
            c.heterogeneous,
            sorted(c.by_type.items()),
            [(q.sid, sorted(q.barrier_types.items())) for q in self._ordered if q.barrier_types],
        )
        incomplete = (
            i.count,
            i.homogeneous,
            i.heterogeneous,
            sorted(i.by_missing.items()),
            [(q.sid, q.missing_times) for q in self._ordered if q.missing_times],
        )
        return complete, incomplete

    def clear_barrier_stats(self) -> None:
        self._complete = BarrierTotals()
        self._incomplete = BarrierTotals()
        self._stats.clear(("barriers_complete", "barriers_incomplete"))
        for q in self._ordered:
            q.barrier_types.clear()
            q.missing_times = 0
