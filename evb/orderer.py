"""The pure ordering core (spec sections 2 to 4): per-source queues, marks, windows, barriers.

Time is an argument (``now``, float seconds from any monotonic clock); the core does no I/O.
One driver at the edge calls :meth:`Orderer.submit` for each received message, then
:meth:`Orderer.poll`, and polls again by :meth:`Orderer.next_deadline`. What leaves comes back
as an :class:`Output`: ordered :class:`~evb.batch.FragmentBatch` es and notifications.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from evb.batch import NULL_TIMESTAMP, FragmentBatch
from evb.config import OrdererConfig
from evb.notify import BarrierComplete, BarrierIncomplete, FlowChange, LateFragment, Notification
from evb.orderer_stats import (
    O_BC,
    O_BI,
    O_BYTES_IN,
    O_BYTES_OUT,
    O_DUPS,
    O_FRAGS_IN,
    O_FRAGS_OUT,
    O_HWM,
    O_LATE,
    O_LATE_WORST,
    O_MAX_BATCH,
    O_MSGS_IN,
    O_NULLS,
    O_OO,
    O_PASSES,
    O_PQXOFF,
    O_XOFF,
    ORDERER_SCHEMA,
    BarrierTotals,
    OrdererStatistics,
)
from evb.queues import (
    S_BARRIERS,
    S_BYTES_IN,
    S_BYTES_OUT,
    S_DEAD,
    S_DUPS,
    S_FRAGS_IN,
    S_FRAGS_OUT,
    S_LATE,
    S_LATE_WORST,
    S_MAX_BATCH,
    S_NULLS,
    S_OO,
    S_XOFF,
    SourceQueue,
)
from evb.stats import Stats

__all__ = ["ORDERER_SCHEMA", "Orderer", "Output"]

_U64 = np.uint64


@dataclass(slots=True)
class Output:
    """What one call of the core let out.

    Attributes:
        batches: ordered fragment batches, in output order (barrier groups are batches too).
        notifications: late fragments, barriers, flow changes, in the order they happened.
    """

    batches: list[FragmentBatch] = field(default_factory=list)
    notifications: list[Notification] = field(default_factory=list)

    @property
    def fragment_count(self) -> int:
        return sum(len(b) for b in self.batches)

    def extend(self, other: Output) -> None:
        self.batches.extend(other.batches)
        self.notifications.extend(other.notifications)

    def fragments_batch(self) -> FragmentBatch:
        """All batches joined into one."""
        return FragmentBatch.concat(self.batches)


class Orderer(OrdererStatistics):
    """Timestamp-ordering of fragments from many sources (NSCLDAQ's EvbOrderer semantics).

    Args:
        config: initial settings; change them later with :meth:`set_config`.
    """

    def __init__(self, config: OrdererConfig | None = None) -> None:
        self.config = config or OrdererConfig()
        self.late_details = False
        self._queues: dict[int, SourceQueue] = {}
        self._ordered: list[SourceQueue] = []  # ascending source id
        self._connections: dict[str, list[int]] = {}
        self._last_seen: dict[str, float] = {}
        self._seen_floor = float("-inf")  # no activity time is older (see _check_timeouts)
        self._stats = Stats(ORDERER_SCHEMA)
        self._complete = BarrierTotals()
        self._incomplete = BarrierTotals()
        self._has_emitted = False
        self._emitted_max = 0
        self._newest = 0  # highest timestamp received since start/reset
        self._round: set[int] | None = None  # live sources when the pending barrier started
        self._queued_bytes = 0
        self._queued_fragments = 0
        self._barriers_queued = 0
        self._unwritten_bytes = 0
        self._oo_last_prior = 0
        self._oo_last_bad = 0
        self.xoff = False
        self._paused: set[str] = set()

    # ------------------------------------------------------------------ configuration
    def set_config(self, name: str, value: object) -> None:
        """Set an ``EVB::config`` name (``window``, ``XoffThreshold``, ...) from a value or text.

        Raises:
            ConfigError: unknown name or invalid value; nothing is changed.
        """
        self.config = self.config.with_value(name, value)

    def get_config(self, name: str) -> float | int:
        return self.config.get(name)

    # ------------------------------------------------------------------ sources
    def _queue(self, sid: int, connection: str | None) -> SourceQueue:
        q = self._queues.get(sid)
        if q is None:
            q = SourceQueue(sid, connection)
            self._queues[sid] = q
            self._ordered = sorted(self._queues.values(), key=lambda x: x.sid)
            if connection is not None:
                self._connections.setdefault(connection, []).append(sid)
        elif connection is not None and q.connection != connection:
            if q.connection is not None and sid in self._connections.get(q.connection, []):
                self._connections[q.connection].remove(sid)
            q.connection = connection
            self._connections.setdefault(connection, []).append(sid)
        return q

    def bind(self, connection: str, source_ids: Iterable[int], now: float | None = None) -> None:
        """Create (or rebind) the queues of ``source_ids`` for a connection; they are live."""
        for sid in source_ids:
            q = self._queue(int(sid), connection)
            q.dead = False
        self._connections.setdefault(connection, [])
        if now is not None:
            self._seen(connection, now)

    def source_ids(self) -> list[int]:
        return [q.sid for q in self._ordered]

    def connection_sources(self, connection: str) -> list[int]:
        return list(self._connections.get(connection, []))

    def is_dead(self, source_id: int) -> bool:
        return self._queues[source_id].dead

    def mark_dead(self, source_id: int, now: float) -> Output:
        """Mark one source dead: it no longer holds barriers. Unknown ids raise KeyError."""
        q = self._queues.get(source_id)
        if q is None:
            raise KeyError(f"no source with id {source_id}")
        self._set_dead(q)
        return self.poll(now)

    def mark_connection_dead(self, connection: str, now: float) -> Output:
        """Mark every source of a connection dead (it closed or stalled)."""
        if connection not in self._connections:
            raise KeyError(f"no connection named {connection!r}")
        for sid in self._connections[connection]:
            self._set_dead(self._queues[sid])
        self._last_seen.pop(connection, None)
        return self.poll(now)

    def _set_dead(self, q: SourceQueue) -> None:
        if not q.dead:
            q.dead = True
            q.stats.values[S_DEAD] += 1

    def revive_connection(self, connection: str, now: float | None = None) -> None:
        """Mark every source of a connection alive again."""
        if connection not in self._connections:
            raise KeyError(f"no connection named {connection!r}")
        for sid in self._connections[connection]:
            self._queues[sid].dead = False
        if now is not None:
            self._seen(connection, now)

    def touch(self, connection: str, now: float) -> None:
        """Note activity on a connection (e.g. an empty FRAGMENTS message)."""
        if connection in self._connections:
            self._seen(connection, now)
            for sid in self._connections[connection]:
                self._queues[sid].dead = False

    # ------------------------------------------------------------------ input
    def submit(self, batch: FragmentBatch, now: float, connection: str | None = None) -> None:
        """Accept one message's fragments into the queues.

        NULL timestamps are assigned, duplicates and out-of-order fragments counted, queues for
        unknown source ids created (bound to ``connection``), and the sources revived.
        """
        st = self._stats.values
        st[O_MSGS_IN] += 1
        if connection is not None:
            self._seen(connection, now)
            self._connections.setdefault(connection, [])
            for sid in self._connections[connection]:
                self._queues[sid].dead = False
        n = len(batch)
        if n == 0:
            return
        idx = batch.index
        idx["received"] = now
        sids = idx["source_id"]
        first_sid = int(sids[0])
        if n == 1 or not (sids != first_sid).any():
            self._submit_source(first_sid, batch, now, connection)
        else:
            order = np.argsort(sids, kind="stable")
            sorted_sids = sids[order]
            cuts = np.flatnonzero(sorted_sids[1:] != sorted_sids[:-1]) + 1
            bounds = [0, *cuts.tolist(), n]
            for a, b in itertools.pairwise(bounds):
                rows = order[a:b]
                self._submit_source(int(sorted_sids[a]), batch[rows], now, connection)
        st[O_FRAGS_IN] += n
        if n > st[O_MAX_BATCH]:
            st[O_MAX_BATCH] = n
        if self._queued_bytes > st[O_HWM]:
            st[O_HWM] = self._queued_bytes

    def _submit_source(
        self, sid: int, batch: FragmentBatch, now: float, connection: str | None
    ) -> None:
        q = self._queue(sid, connection)
        q.dead = False
        idx = batch.index
        n = len(idx)
        ts: npt.NDArray[np.uint64] = idx["timestamp"].copy()
        qs = q.stats.values
        n_null = 0
        if int(ts.max()) == NULL_TIMESTAMP:
            nulls = ts == _U64(NULL_TIMESTAMP)
            n_null = int(np.count_nonzero(nulls))
            # Forward-fill from the previous fragment of this source (0 if none since reset).
            pos = np.where(nulls, -1, np.arange(n))
            np.maximum.accumulate(pos, out=pos)
            prev = q.last_ts if q.has_last else 0
            ext = np.concatenate(([_U64(prev)], ts))
            ts = ext[pos + 1]
            idx["timestamp"] = ts
            _patch_timestamps(batch, np.flatnonzero(nulls))
            qs[S_NULLS] += n_null
            self._stats.values[O_NULLS] += n_null
        # Duplicates: equal to the previous fragment received (assigned NULLs excluded; a
        # source's first fragment since start/reset is never one).
        same = ts[1:] == ts[:-1]
        first_dup = q.has_last and int(ts[0]) == q.last_ts
        if n_null:
            same &= ~nulls[1:]
            first_dup = first_dup and not bool(nulls[0])
        n_dup = int(np.count_nonzero(same)) + int(first_dup)
        if n_dup:
            qs[S_DUPS] += n_dup
            self._stats.values[O_DUPS] += n_dup
            inner = np.flatnonzero(same)
            q.last_dup_ts = int(ts[inner[-1] + 1]) if len(inner) else int(ts[0])
        # Out of order: below the highest timestamp received before it from this source.
        base = q.max_ts if q.has_last else 0
        sorted_within = n == 1 or bool((ts[1:] >= ts[:-1]).all())
        top = int(ts[-1])
        if not (sorted_within and int(ts[0]) >= base):
            runmax = np.maximum.accumulate(ts)
            top = int(runmax[-1])
            prior = np.maximum(np.concatenate(([_U64(base)], runmax[:-1])), _U64(base))
            oo_pos = np.flatnonzero(ts < prior)
            if len(oo_pos):
                qs[S_OO] += len(oo_pos)
                self._stats.values[O_OO] += len(oo_pos)
                last = int(oo_pos[-1])
                q.oo_last_prior = self._oo_last_prior = int(prior[last])
                q.oo_last_bad = self._oo_last_bad = int(ts[last])
        append_in_order = sorted_within and (not q.segments or int(ts[0]) >= q.tail_ts())
        q.has_last = True
        q.last_ts = int(ts[-1])
        if top > q.max_ts:
            q.max_ts = top
        if top > self._newest:
            self._newest = top
        bars = idx["barrier_type"]
        if bars.any():
            n_bar = int(np.count_nonzero(bars))
            qs[S_BARRIERS] += n_bar
            self._barriers_queued += n_bar
        nbytes = q.append(batch, ts, in_order=append_in_order)
        qs[S_FRAGS_IN] += n
        qs[S_BYTES_IN] += nbytes
        if n > qs[S_MAX_BATCH]:
            qs[S_MAX_BATCH] = n
        self._stats.values[O_BYTES_IN] += nbytes
        self._queued_bytes += nbytes
        self._queued_fragments += n

    # ------------------------------------------------------------------ output
    def poll(self, now: float) -> Output:
        """Emit everything that may leave at ``now`` (mark, window, barriers, timeouts)."""
        out = Output()
        self._check_timeouts(now)
        self._run(now, out, force=False)
        self._flow(out, now)
        return out

    def flush(self, now: float) -> Output:
        """Emit everything queued (``EVB::flushqueues``); barriers leave at their timestamp."""
        out = Output()
        self._run(now, out, force=True)
        self._flow(out, now)
        return out

    def abort_barrier(self, now: float) -> Output:
        """Emit the pending barrier now, complete or incomplete (``EVB::abortbarrier``)."""
        out = Output()
        group = self._barriers(now, force=True, out=out)
        if group is not None:
            out.batches.append(group)
        self._run(now, out, force=False)
        self._flow(out, now)
        return out

    def _run(self, now: float, out: Output, *, force: bool) -> None:
        while True:
            progressed = False
            data = self._data_pass(now, out, force=force)
            if data is not None:
                out.batches.append(data)
                progressed = True
            group = self._barriers(now, force=force, out=out)
            if group is not None:
                out.batches.append(group)
                progressed = True
            if not progressed:
                if force and self._queued_fragments:
                    raise AssertionError("flush made no progress")  # pragma: no cover
                return

    def _data_pass(self, now: float, out: Output, *, force: bool) -> FragmentBatch | None:
        queues = [q for q in self._ordered if q.depth or not q.dead]
        if not self._queued_fragments or not queues:
            return None
        limit: int | None = None
        cutoff: float | None = None
        if force:
            # Everything may leave, but not past the lowest queued barrier: barriers keep their
            # place in timestamp order.
            bar_ts = [b for q in queues if (b := q.first_barrier_ts()) is not None]
            limit = min(bar_ts) if bar_ts else None
        elif all(q.depth for q in queues):
            if self._barriers_queued:
                limits = [q.newest_data_ts() for q in queues if not q.head_is_barrier()]
            else:
                limits = [q.newest_data_ts() for q in queues]
            if not limits:
                return None
            limit = min(x for x in limits if x is not None)
            # Cheap exit (most polls): nothing queued is at or below the mark.
            if all(q.head_ts() > limit for q in queues):
                return None
        else:
            cutoff = now - self.config.window_s
            # Cheap exit: no queue's head has waited the window yet.
            if all(not q.depth or q.segments[0].received_min > cutoff for q in queues):
                return None
        pieces: list[FragmentBatch] = []
        tss: list[npt.NDArray[np.uint64]] = []
        late_total = 0
        st = self._stats.values
        emitted_max = self._emitted_max
        for q in queues:
            if not q.depth:
                continue
            qp, qt, n, nbytes = q.take(limit, cutoff)
            if not n:
                continue
            qs = q.stats.values
            for p, t in zip(qp, qt, strict=True):
                if self._has_emitted and int(t[0]) < emitted_max:
                    n_late = int(np.searchsorted(t, _U64(emitted_max), "left"))
                    late_total += n_late
                    qs[S_LATE] += n_late
                    worst = self._newest - int(t[0])
                    if worst > qs[S_LATE_WORST]:
                        qs[S_LATE_WORST] = worst
                    if worst > st[O_LATE_WORST]:
                        st[O_LATE_WORST] = worst
                    if self.late_details:
                        for i in range(n_late):
                            out.notifications.append(
                                LateFragment(
                                    source_id=q.sid,
                                    timestamp=int(t[i]),
                                    newest=self._newest,
                                    payload=p.payload(i),
                                )
                            )
            qs[S_FRAGS_OUT] += n
            qs[S_BYTES_OUT] += nbytes
            st[O_FRAGS_OUT] += n
            st[O_BYTES_OUT] += nbytes
            self._queued_fragments -= n
            self._queued_bytes -= nbytes
            self._unwritten_bytes += nbytes
            pieces.extend(qp)
            tss.extend(qt)
        if not pieces:
            return None
        st[O_LATE] += late_total
        st[O_PASSES] += 1
        if len(pieces) == 1:
            merged = pieces[0]
            top = int(tss[0][-1])
        else:
            all_ts = np.concatenate(tss)
            order = np.argsort(all_ts, kind="stable")
            merged = FragmentBatch.concat(pieces)[order]
            top = int(all_ts[order[-1]])
        if top > self._emitted_max or not self._has_emitted:
            self._emitted_max = max(top, self._emitted_max)
        self._has_emitted = True
        return merged

    def _barriers(self, now: float, *, force: bool, out: Output) -> FragmentBatch | None:
        if not self._barriers_queued:
            self._round = None
            return None
        heads = [q for q in self._ordered if q.head_is_barrier()]
        if not heads:
            self._round = None
            return None
        # Sources still expected to contribute: the live ones, and dead ones whose queue still
        # holds a barrier (a source that sent its barrier and then closed still takes part).
        expected = {q.sid for q in self._ordered if not q.dead or q.has_barrier_queued()}
        if self._round is None:
            self._round = set(expected)
        present = {q.sid for q in heads}
        required = self._round | expected
        if required <= present:
            complete = True
        elif (required & expected) <= present or force:
            # Only sources that died with nothing more to contribute are missing.
            complete = False
        else:
            oldest = min(
                float(q.segments[0].batch.index["received"][q.segments[0].start]) for q in heads
            )
            if now - oldest < 4 * self.config.window_s:
                return None
            complete = False
        pieces = [q.pop_head() for q in heads]
        self._barriers_queued -= len(pieces)
        self._round = None
        pairs = tuple((q.sid, int(p.barrier_types[0])) for q, p in zip(heads, pieces, strict=True))
        types = {t for _, t in pairs}
        nbytes = sum(int(p.payload_sizes[0]) for p in pieces)
        st = self._stats.values
        st[O_FRAGS_OUT] += len(pieces)
        st[O_BYTES_OUT] += nbytes
        self._queued_fragments -= len(pieces)
        self._queued_bytes -= nbytes
        self._unwritten_bytes += nbytes
        for q, p in zip(heads, pieces, strict=True):
            q.stats.values[S_FRAGS_OUT] += 1
            q.stats.values[S_BYTES_OUT] += int(p.payload_sizes[0])
        totals = self._complete if complete else self._incomplete
        totals.count += 1
        if len(types) == 1:
            totals.homogeneous += 1
        else:
            totals.heterogeneous += 1
        if complete:
            st[O_BC] += 1
            for sid, t in pairs:
                totals.by_type[t] = totals.by_type.get(t, 0) + 1
                bt = self._queues[sid].barrier_types
                bt[t] = bt.get(t, 0) + 1
            out.notifications.append(BarrierComplete(barriers=pairs))
        else:
            st[O_BI] += 1
            missing = tuple(sorted(required - present))
            totals.by_missing[len(missing)] = totals.by_missing.get(len(missing), 0) + 1
            for sid in missing:
                self._queues[sid].missing_times += 1
            out.notifications.append(BarrierIncomplete(barriers=pairs, missing=missing))
        return FragmentBatch.concat(pieces)

    def _seen(self, connection: str, now: float) -> None:
        """Note activity on a connection at ``now``."""
        self._last_seen[connection] = now
        if now < self._seen_floor:
            self._seen_floor = now

    def _check_timeouts(self, now: float) -> None:
        timeout = self.config.source_timeout_s
        # Activity times only grow, so the oldest one seen at the last check is a lower bound:
        # most polls stop here without looking at every connection.
        if timeout <= 0 or self.xoff or now - self._seen_floor < timeout:
            return
        for conn, seen in list(self._last_seen.items()):
            if conn in self._paused or now - seen < timeout:
                continue
            for sid in self._connections.get(conn, []):
                self._set_dead(self._queues[sid])
            del self._last_seen[conn]
        self._seen_floor = min(self._last_seen.values(), default=now)

    def next_deadline(self) -> float | None:
        """Latest time at which :meth:`poll` must be called again (None: only on new input)."""
        deadlines: list[float] = []
        w = self.config.window_s
        if self._queued_fragments:
            heads = (
                [q for q in self._ordered if q.head_is_barrier()] if self._barriers_queued else []
            )
            if heads:
                oldest = min(
                    float(q.segments[0].batch.index["received"][q.segments[0].start])
                    for q in heads
                )
                deadlines.append(oldest + 4 * w)
            # The window only applies while a counted queue is empty (else the mark decides),
            # and only to data at a queue's head (a barrier head waits for its own timeout);
            # what gates ``take`` is the head row's receipt time. A deadline that poll cannot
            # act on would stay in the past and make the driver spin.
            queues = [q for q in self._ordered if q.depth or not q.dead]
            if not all(q.depth for q in queues):
                earliest = min(
                    (
                        float(q.segments[0].batch.index["received"][q.segments[0].start])
                        for q in queues
                        if q.depth and not q.head_is_barrier()
                    ),
                    default=None,
                )
                if earliest is not None:
                    deadlines.append(earliest + w)
        timeout = self.config.source_timeout_s
        if timeout > 0 and not self.xoff:
            # Paused connections are not timed out (see _check_timeouts).
            seen = [t for c, t in self._last_seen.items() if c not in self._paused]
            if seen:
                deadlines.append(min(seen) + timeout)
        return min(deadlines) if deadlines else None

    # ------------------------------------------------------------------ flow control
    @property
    def unwritten_bytes(self) -> int:
        return self._unwritten_bytes

    @property
    def queued_bytes(self) -> int:
        return self._queued_bytes

    @property
    def queued_fragments(self) -> int:
        return self._queued_fragments

    @property
    def paused_connections(self) -> frozenset[str]:
        return frozenset(self._paused)

    def written(self, payload_bytes: int, now: float) -> list[Notification]:
        """The output sink wrote emitted fragments with this many payload bytes."""
        self._unwritten_bytes = max(0, self._unwritten_bytes - payload_bytes)
        out = Output()
        self._flow(out, now)
        return out.notifications

    def _flow(self, out: Output, now: float | None = None) -> None:
        cfg = self.config
        total = self._queued_bytes + self._unwritten_bytes
        st = self._stats.values
        if total > st[O_HWM]:
            st[O_HWM] = total
        if not self.xoff and total >= cfg.xoff_bytes > 0:
            self.xoff = True
            st[O_XOFF] += 1
            out.notifications.append(FlowChange(xon=False))
        elif self.xoff and total < max(min(cfg.xon_bytes, cfg.xoff_bytes), 1):
            self.xoff = False
            if now is not None:
                for conn in self._last_seen:
                    self._seen(conn, now)
            out.notifications.append(FlowChange(xon=True))
        if not self._paused and (
            cfg.perq_xoff_fragments <= 0
            or max((q.depth for q in self._ordered), default=0) < cfg.perq_xoff_fragments
        ):
            return
        for conn, sids in self._connections.items():
            depths = [self._queues[s].depth for s in sids]
            if conn not in self._paused:
                limit = cfg.perq_xoff_fragments
                if limit > 0 and any(d >= limit for d in depths):
                    self._paused.add(conn)
                    st[O_PQXOFF] += 1
                    for s in sids:
                        self._queues[s].stats.values[S_XOFF] += 1
                    out.notifications.append(FlowChange(xon=False, connection=conn))
            elif (
                cfg.perq_xoff_fragments <= 0
                or not any(depths)
                or max(depths) < min(cfg.perq_xon_fragments, cfg.perq_xoff_fragments)
            ):
                self._paused.discard(conn)
                if now is not None and conn in self._last_seen:
                    self._seen(conn, now)
                out.notifications.append(FlowChange(xon=True, connection=conn))

    # ------------------------------------------------------------------ reset
    def reset(self) -> None:
        """Forget timestamps (``EVB::reset``); queued data and statistics stay."""
        self._has_emitted = False
        self._emitted_max = 0
        self._newest = 0
        for q in self._ordered:
            q.has_last = False
            q.last_ts = 0
            q.max_ts = 0

def _patch_timestamps(batch: FragmentBatch, rows: npt.NDArray[np.intp]) -> None:
    """Write assigned timestamps into the flattened headers of ``rows`` (keeps the invariant)."""
    idx = batch.index
    for b in np.unique(idx["buf"][rows]).tolist():
        sel = rows[idx["buf"][rows] == b]
        raw = idx["timestamp"][sel].astype("<u8").view(np.uint8).reshape(-1, 8)
        pos = idx["offset"][sel][:, None] + np.arange(8)
        batch.buffers[b][pos] = raw

