"""The writer client: one slot per ``with writer as (metadata, data):`` (the inlined hot path)
or several per :meth:`Writer.claim` batch."""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from ringbuffer import layout as L
from ringbuffer.batches import WriteBatch
from ringbuffer.clients import (
    CLAIM_PAUSED,
    CLAIM_SHUTDOWN,
    CLAIM_TIMEOUT,
    POLL_S,
    SPIN_CHECKS,
    SPIN_YIELDS,
    Client,
)
from ringbuffer.errors import ConfigError, RingTimeoutError
from ringbuffer.layout import METADATA_DTYPE, Role
from ringbuffer.shm import follow_pid

if TYPE_CHECKING:
    from ringbuffer.ring import RingBuffer

__all__ = ["BufferWriter", "Writer"]

# word indices used on the one-slot hot path (module globals load faster than L.<name>)
_G_WRITE_CLAIM = L.G_WRITE_CLAIM
_G_WLOCK_OWNER = L.G_WLOCK_OWNER
_G_WLOCK_GEN = L.G_WLOCK_GEN
_G_LAST_COMMIT = L.G_LAST_COMMIT
_G_PAUSED = L.G_PAUSED
_G_SHUTDOWN = L.G_SHUTDOWN
_G_GROUPS_GEN = L.G_GROUPS_GEN
_CL_HELD_LO = L.CL_HELD_LO
_CL_HELD_HI = L.CL_HELD_HI
_CL_COUNT = L.CL_COUNT
_CL_DEADTIME = L.CL_DEADTIME
_now = time.time

_PID = follow_pid(globals())


class Writer(Client):
    """A writer: one slot at a time (``with writer as (metadata, data):``) or in batches.

    The metadata is pre-filled (``counter`` = sequence number, ``timestamp`` = time.time(),
    ``deadtime`` = fraction of time since the previous write spent waiting for a free slot);
    overwrite it if you have better values. If the block raises, the slot is dropped, never
    published half-written. While the buffer is paused or shut down, writes go to a scratch
    area and are counted as discarded.
    """

    role = Role.WRITER

    def __init__(self, ring: RingBuffer) -> None:
        super().__init__(ring)
        n = ring.slot_count
        self._views: list[tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]] | None] = [None] * n
        self._scratch = (
            np.zeros(1, dtype=METADATA_DTYPE),
            np.zeros(ring.data_length, dtype=ring.data_dtype),
        )
        self._cur = -1
        self._cur_status = 0
        self._last_t = time.time()
        # shared-memory views and the writer lock, cached for the one-slot hot path
        self._h = ring._h
        self._gr = ring._gr
        self._cl = ring._cl
        self._cld = ring._cld
        self._commit = ring._commit
        self._claimed = ring._claimed
        self._dropped = ring._dropped
        self._released = ring._released
        self._meta_q = ring._meta_q
        self._meta_d = ring._meta_d
        self._n = n
        self._wsem = ring._wlock._sem
        # active reader groups as of groups generation _ggen: released-row offsets and
        # (waiters word, bell) pairs; refreshed by _refresh_groups when the generation moves
        self._ggen = -1
        self._roffs: tuple[int, ...] = ()
        self._wake: tuple[tuple[int, Any], ...] = ()
        self._roff1 = -1  # the one active group's released-row offset (-1: not exactly one)

    def _refresh_groups(self) -> None:
        ring = self._ring
        act = ring._active_groups()
        n = self._n
        self._roffs = tuple(g * n for g in act)
        self._roff1 = act[0] * n if len(act) == 1 else -1
        self._wake = tuple((g * L.GROUP_WORDS + L.GR_WAITERS, ring._gbells[g]) for g in act)
        self._ggen = ring._groups_gen

    # -- claiming

    def _claim(self, k: int, timeout: float | None) -> tuple[int, int]:
        """Claim up to ``k`` consecutive slots; returns ``(seq, m)`` or ``(status, 0)``."""
        ring = self._ring
        h = ring._h
        n = ring._n
        cl = ring._cl
        lock = ring._wlock
        deadline = None
        waiting = False
        spun = False
        t_wait = 0.0
        while True:
            lock.acquire()
            if h[L.G_SHUTDOWN] or h[L.G_PAUSED]:
                status = CLAIM_SHUTDOWN if h[L.G_SHUTDOWN] else CLAIM_PAUSED
                if waiting:
                    h[L.G_WRITE_WAITERS] -= 1
                lock.release()
                return status, 0
            w = h[L.G_WRITE_CLAIM]
            limit = min(k, n - w % n)
            m = ring._scan_free(w, limit)
            if m:
                base = self._base
                cl[base + L.CL_HELD_LO] = w
                cl[base + L.CL_HELD_HI] = w + m
                if m == 1:
                    ring._claimed[w % n] = w
                else:
                    s0 = w % n
                    ring._claimed_np[s0 : s0 + m] = w + ring._arange[:m]
                h[L.G_WRITE_CLAIM] = w + m
                if waiting:
                    h[L.G_WRITE_WAITERS] -= 1
                lock.release()
                if waiting:
                    now = time.time()
                    span = now - self._last_t
                    self._dead = min(1.0, t_wait / span) if span > 0 else 0.0
                return w, m
            if not spun and (timeout is None or timeout > 0):
                # spin briefly before sleeping: a futex wake-up costs more than a short wait
                lock.release()
                spun = True
                for _ in range(SPIN_CHECKS):
                    if h[L.G_SHUTDOWN] or h[L.G_PAUSED] or ring._scan_free(w, 1):
                        break
                else:
                    for _ in range(SPIN_YIELDS):
                        os.sched_yield()
                        if h[L.G_SHUTDOWN] or h[L.G_PAUSED] or ring._scan_free(w, 1):
                            break
                continue
            if not waiting:
                h[L.G_WRITE_WAITERS] += 1
                waiting = True
            lock.release()
            if timeout is not None and timeout <= 0:
                lock.acquire()
                h[L.G_WRITE_WAITERS] -= 1
                lock.release()
                return CLAIM_TIMEOUT, 0
            # registered as waiter: re-check before sleeping (a release may have raced us)
            if ring._scan_free(w, 1):
                continue
            t0 = time.monotonic()
            if deadline is None and timeout is not None:
                deadline = t0 + timeout
            sleep = POLL_S if deadline is None else min(POLL_S, deadline - t0)
            if sleep <= 0:
                lock.acquire()
                h[L.G_WRITE_WAITERS] -= 1
                lock.release()
                return CLAIM_TIMEOUT, 0
            ring._space_bell.acquire(True, sleep)
            t_wait += time.monotonic() - t0
            ring.reap()

    _dead = 0.0

    def _view(self, slot: int) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
        v = self._views[slot]
        if v is None:
            r = self._ring
            v = (r._meta_np[slot : slot + 1], r._data_np[slot])
            self._views[slot] = v
        return v

    # -- single slot, mimoCoRB2 style

    def _enter(
        self, timeout: float | None = None
    ) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
        # Fast path: the writer lock is free and the next slot is free for every active group.
        # Same protocol as _claim(1) + metadata pre-fill, inlined; anything else (contention,
        # full ring, pause, shutdown, after fork) goes to _enter_slow.
        sem = self._wsem
        if self._pid == _PID and sem.acquire(False):
            h = self._h
            h[_G_WLOCK_OWNER] = _PID
            h[_G_WLOCK_GEN] += 1
            if not (h[_G_SHUTDOWN] or h[_G_PAUSED]):
                if h[_G_GROUPS_GEN] != self._ggen:
                    self._refresh_groups()  # under the writer lock: the generation cannot move
                w = h[_G_WRITE_CLAIM]
                n = self._n
                slot = w % n
                need = w - n
                rel = self._released
                roff = self._roff1
                if roff >= 0:  # one group (the common case): no loop
                    free = rel[roff + slot] >= need
                else:
                    free = True
                    for off in self._roffs:
                        if rel[off + slot] < need:
                            free = False
                            break
                if free:
                    cl = self._cl
                    base = self._base
                    cl[base + _CL_HELD_LO] = w
                    cl[base + _CL_HELD_HI] = w + 1
                    self._claimed[slot] = w
                    h[_G_WRITE_CLAIM] = w + 1
                    h[_G_WLOCK_OWNER] = 0
                    sem.release()
                    self._cur = w
                    i = 3 * slot
                    self._meta_q[i] = w
                    now = _now()
                    d = self._meta_d
                    d[i + 1] = now
                    d[i + 2] = 0.0
                    self._last_t = now
                    v = self._views[slot]
                    return v if v is not None else self._view(slot)
            h[_G_WLOCK_OWNER] = 0
            sem.release()
        return self._enter_slow(timeout)

    __enter__ = _enter

    def _enter_slow(
        self, timeout: float | None
    ) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
        if self._pid != _PID:
            self._check_pid()
        self._dead = 0.0
        seq, m = self._claim(1, timeout)
        if m:
            if self._h[_G_GROUPS_GEN] != self._ggen:
                self._refresh_groups()  # after the claim: includes every group it waited for
            slot = seq % self._ring._n
            self._cur = seq
            q = self._ring._meta_q
            d = self._ring._meta_d
            q[3 * slot] = seq
            now = time.time()
            d[3 * slot + 1] = now
            d[3 * slot + 2] = self._dead
            self._last_t = now
            return self._view(slot)
        if seq == CLAIM_TIMEOUT:
            raise RingTimeoutError(f"no free slot in {self._ring.name!r} within {timeout} s")
        self._cur = -1
        self._cur_status = seq
        return self._scratch

    def __exit__(self, et: Any, ev: Any, tb: Any) -> None:
        seq = self._cur
        if seq < 0:
            self._count_discard(self._cur_status, 1)
            return
        self._cur = -1
        if et is not None:
            self._publish1(seq, True)
            return
        # publish (as _publish1 without the drop): dropped, then commit, then wake-ups
        slot = seq % self._n
        base = self._base
        dead = self._meta_d[3 * slot + 2]
        if dead:
            self._cld[base + _CL_DEADTIME] += dead
        self._dropped[slot] = 0
        self._commit[slot] = seq
        h = self._h
        if seq > h[_G_LAST_COMMIT]:
            h[_G_LAST_COMMIT] = seq
        cl = self._cl
        cl[base + _CL_HELD_LO] = seq + 1
        cl[base + _CL_COUNT] += 1
        # _wake holds every group active at our claim (refreshed under the writer lock or right
        # after a slow claim); a group added later starts after our sequence number
        gr = self._gr
        for wi, bell in self._wake:  # ring a group's bell only if one of its readers sleeps
            waiters = gr[wi]
            if waiters > 0 and bell._get_value() < waiters:
                bell.release()

    def write(self, timeout: float | None = None) -> contextlib.AbstractContextManager[Any]:
        """Context manager for one slot with an optional timeout (RingTimeoutError)."""
        if timeout is None:
            return self  # the writer is its own (reusable) context manager
        return _WriteCtx(self, timeout)

    def _publish1(self, seq: int, drop: bool) -> None:
        ring = self._ring
        slot = seq % ring._n
        dead = ring._meta_d[3 * slot + 2]
        if dead:
            ring._cld[self._base + L.CL_DEADTIME] += dead
        ring._dropped[slot] = 1 if drop else 0
        ring._commit[slot] = seq
        h = ring._h
        if seq > h[L.G_LAST_COMMIT]:
            h[L.G_LAST_COMMIT] = seq
        cl = ring._cl
        cl[self._base + L.CL_HELD_LO] = seq + 1
        cl[self._base + L.CL_COUNT] += 1
        if drop:
            self._add_unused(1)
        ring._wake_readers()

    def _add_unused(self, count: int) -> None:
        ring = self._ring
        ring._wlock.acquire()
        ring._h[L.G_UNUSED_CLAIMS] += count
        ring._wlock.release()

    def _count_discard(self, status: int, count: int) -> None:
        ring = self._ring
        ring._wlock.acquire()
        if status == CLAIM_PAUSED:
            ring._h[L.G_DISCARDED_PAUSED] += count
        else:
            ring._h[L.G_DISCARDED_SHUTDOWN] += count
        ring._wlock.release()

    # -- batches

    def claim(self, max_slots: int = 1, timeout: float | None = None) -> WriteBatch:
        """Claim 1..max_slots consecutive slots (fewer if the ring wraps or is nearly full).

        Raises:
            RingTimeoutError: no slot became free within ``timeout`` seconds.
        """
        batch = self.try_claim(max_slots, timeout)
        if batch is None:
            raise RingTimeoutError(f"no free slot in {self._ring.name!r} within {timeout} s")
        return batch

    def try_claim(self, max_slots: int = 1, timeout: float | None = 0.0) -> WriteBatch | None:
        """Like :meth:`claim` but returns None on timeout (``timeout=0``: never blocks)."""
        if self._pid != _PID:
            self._check_pid()
        if max_slots < 1:
            raise ConfigError("max_slots must be >= 1")
        self._dead = 0.0
        seq, m = self._claim(max_slots, timeout)
        ring = self._ring
        if m:
            s0 = seq % ring._n
            meta = ring._meta_np[s0 : s0 + m]
            meta["counter"] = seq + ring._arange[:m]
            now = time.time()
            meta["timestamp"] = now
            meta["deadtime"] = self._dead
            self._last_t = now
            return WriteBatch(self, seq, meta, ring._data_np[s0 : s0 + m], False)
        if seq == CLAIM_TIMEOUT:
            return None
        return WriteBatch(
            self,
            seq,
            np.zeros(max_slots, dtype=METADATA_DTYPE),
            np.zeros((max_slots, ring.data_length), dtype=ring.data_dtype),
            True,
        )

    def _commit_batch(self, batch: WriteBatch, count: int) -> None:
        if batch.discard:
            self._count_discard(batch.seq, len(batch.meta))
            return
        ring = self._ring
        m = len(batch.meta)
        count = max(0, min(count, m))
        seq = batch.seq
        n = ring._n
        s0 = seq % n
        dead = float(batch.meta["deadtime"][:count].sum()) if count else 0.0
        if dead:
            ring._cld[self._base + L.CL_DEADTIME] += dead
        ring._dropped_np[s0 : s0 + count] = 0
        if count < m:
            ring._dropped_np[s0 + count : s0 + m] = 1
        ring._commit_np[s0 : s0 + m] = seq + ring._arange[:m]
        last = seq + m - 1
        h = ring._h
        if last > h[L.G_LAST_COMMIT]:
            h[L.G_LAST_COMMIT] = last
        cl = ring._cl
        cl[self._base + L.CL_HELD_LO] = seq + m
        cl[self._base + L.CL_COUNT] += count
        if count < m:
            self._add_unused(m - count)
        ring._wake_readers()

    def try_write(
        self,
        data: Any,
        *,
        timeout: float | None = 0.0,
        counter: int | None = None,
        timestamp: float | None = None,
    ) -> bool:
        """Copy ``data`` into one slot; False (nothing written) if no slot is free in time.

        ``data`` may be an array matching the slot (``data_length`` records) or, for a plain
        ``u1`` buffer, any bytes-like object of at most ``data_length`` bytes (the rest of the
        slot is left as it was: use self-describing records such as NSCLDAQ ring items).
        Returns True also when the write was discarded because the buffer is paused or shut down
        (check :attr:`RingBuffer.paused` / :attr:`is_shutdown`).
        """
        batch = self.try_claim(1, timeout)
        if batch is None:
            return False
        try:
            _copy_into(batch.data[0], data)
            if counter is not None:
                batch.meta["counter"][0] = counter
            if timestamp is not None:
                batch.meta["timestamp"][0] = timestamp
        except BaseException:
            batch.commit(0)
            raise
        batch.commit()
        return True

    def write_many(self, items: Sequence[Any], *, timeout: float | None = 0.0) -> int:
        """Copy several items (as in :meth:`try_write`) with as few claims as possible.

        Returns how many were written (the first ones, in order) before the timeout.
        """
        done = 0
        total = len(items)
        while done < total:
            batch = self.try_claim(total - done, timeout)
            if batch is None:
                break
            m = len(batch)
            try:
                for i in range(m):
                    _copy_into(batch.data[i], items[done + i])
            except BaseException:
                batch.commit(0)
                raise
            batch.commit()
            done += m
        return done

    def send_flush_event(self) -> None:
        """Shut the buffer down (end of data), mimoCoRB2 name."""
        self._ring.shutdown()


def _copy_into(dst: np.ndarray[Any, Any], data: Any) -> None:
    if isinstance(data, bytes | bytearray | memoryview):
        raw = dst.view(np.uint8)
        mv = memoryview(data).cast("B")
        if mv.nbytes > raw.nbytes:
            raise ConfigError(f"payload of {mv.nbytes} bytes does not fit a {raw.nbytes}-byte slot")
        raw[: mv.nbytes] = np.frombuffer(mv, dtype=np.uint8)
    else:
        dst[...] = data


class _WriteCtx:
    __slots__ = ("_timeout", "_w")

    def __init__(self, w: Writer, timeout: float | None) -> None:
        self._w = w
        self._timeout = timeout

    def __enter__(self) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
        return self._w._enter(self._timeout)

    def __exit__(self, et: Any, ev: Any, tb: Any) -> None:
        self._w.__exit__(et, ev, tb)


BufferWriter = Writer  # mimoCoRB2 name
