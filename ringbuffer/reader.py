"""The reader client of a group: one slot per ``with reader as (metadata, data):`` (the inlined
hot path) or several per :meth:`Reader.claim` batch."""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import numpy as np

from ringbuffer import layout as L
from ringbuffer.batches import ReadBatch
from ringbuffer.clients import CLAIM_END, CLAIM_TIMEOUT, POLL_S, SPIN_CHECKS, SPIN_YIELDS, Client
from ringbuffer.errors import ConfigError, RingTimeoutError
from ringbuffer.layout import Role
from ringbuffer.shm import follow_pid

if TYPE_CHECKING:
    from ringbuffer.ring import RingBuffer

__all__ = ["BufferReader", "Reader"]

# word indices used on the one-slot hot path (module globals load faster than L.<name>)
_G_WRITE_WAITERS = L.G_WRITE_WAITERS
_GR_READ_CLAIM = L.GR_READ_CLAIM
_GR_LOCK_OWNER = L.GR_LOCK_OWNER
_GR_LOCK_GEN = L.GR_LOCK_GEN
_CL_HELD_LO = L.CL_HELD_LO
_CL_HELD_HI = L.CL_HELD_HI
_CL_COUNT = L.CL_COUNT

_PID = follow_pid(globals())


class Reader(Client):
    """A reader in a group: ``with reader as (metadata, data):`` gives ``(None, None)`` at the
    end of data; :meth:`claim` hands out batches. The views are valid inside the block only."""

    role = Role.READER

    def __init__(self, ring: RingBuffer, group: str = "default") -> None:
        g = ring.add_group(group)
        self.group = group
        super().__init__(ring, g)
        self._g = g
        self._glock = ring._group_lock(g)
        self._bell = ring._group_bell(g)
        self._gbase = g * L.GROUP_WORDS
        self._rbase = g * ring._n
        self._views: list[tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]] | None] = [
            None
        ] * ring.slot_count
        self._cur = -1
        self._stash: tuple[int, int] | None = None  # claimed slots not handed out yet
        self.finished = False
        # shared-memory views and the group lock, cached for the one-slot hot path
        self._h = ring._h
        self._gr = ring._gr
        self._cl = ring._cl
        self._commit = ring._commit
        self._dropped = ring._dropped
        self._released = ring._released
        self._n = ring._n
        self._gsem = self._glock._sem

    def _claim(self, k: int, timeout: float | None) -> tuple[int, int]:
        ring = self._ring
        gr = ring._gr
        n = ring._n
        commit = ring._commit
        gbase = self._gbase
        lock = self._glock
        waiting = False
        spun = False
        deadline = None
        while True:
            lock.acquire()
            r = gr[gbase + L.GR_READ_CLAIM]
            slot = r % n
            if commit[slot] == r:
                m = 1
                if k > 1:
                    lim = min(k, n - slot)
                    ok = ring._commit_np[slot : slot + lim] == r + ring._arange[:lim]
                    m = lim if ok.all() else int(ok.argmin())
                base = self._base
                cl = ring._cl
                cl[base + L.CL_HELD_LO] = r
                cl[base + L.CL_HELD_HI] = r + m
                gr[gbase + L.GR_READ_CLAIM] = r + m
                if waiting:
                    gr[gbase + L.GR_WAITERS] -= 1
                lock.release()
                return r, m
            h = ring._h
            if h[L.G_SHUTDOWN] and r >= h[L.G_EOD_SEQ]:
                if waiting:
                    gr[gbase + L.GR_WAITERS] -= 1
                lock.release()
                return CLAIM_END, 0
            if not spun and (timeout is None or timeout > 0):
                lock.release()
                spun = True
                for _ in range(SPIN_CHECKS):
                    if commit[slot] == r or h[L.G_SHUTDOWN]:
                        break
                else:
                    for _ in range(SPIN_YIELDS):
                        os.sched_yield()
                        if commit[slot] == r or h[L.G_SHUTDOWN]:
                            break
                continue
            if not waiting:
                gr[gbase + L.GR_WAITERS] += 1
                waiting = True
            lock.release()
            if commit[slot] == r:
                continue
            now = time.monotonic()
            if deadline is None and timeout is not None:
                deadline = now + timeout
            sleep = POLL_S if deadline is None else min(POLL_S, deadline - now)
            if sleep <= 0:
                lock.acquire()
                gr[gbase + L.GR_WAITERS] -= 1
                lock.release()
                return CLAIM_TIMEOUT, 0
            self._bell.acquire(True, sleep)
            ring.reap()

    def _next(self, k: int, timeout: float | None) -> tuple[int, int]:
        stash = self._stash
        if stash is not None:
            lo, hi = stash
            m = min(k, hi - lo)
            self._stash = (lo + m, hi) if lo + m < hi else None
            return lo, m
        return self._claim(k, timeout)

    def _skip_dropped(self, seq: int, m: int) -> int:
        """Release leading dropped slots; returns how many were skipped."""
        ring = self._ring
        n = ring._n
        skipped = 0
        while skipped < m and ring._dropped[(seq + skipped) % n]:
            skipped += 1
        if skipped:
            s0 = seq % n
            ring._released_np[self._g, s0 : s0 + skipped] = seq + ring._arange[:skipped]
            ring._cl[self._base + L.CL_HELD_LO] = seq + skipped
            self._glock.acquire()
            ring._gr[self._gbase + L.GR_SKIPPED] += skipped
            self._glock.release()
            ring._wake_writers()
        return skipped

    def _view(self, slot: int) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
        v = self._views[slot]
        if v is None:
            r = self._ring
            v = (r._meta_np[slot : slot + 1], r._data_np[slot])
            self._views[slot] = v
        return v

    def _enter(self, timeout: float | None = None) -> Any:
        # (metadata, data) views, or (None, None) at the end of data.
        # Fast path: the group lock is free, nothing stashed and the group's next sequence
        # number is published. Same protocol as _claim(1), inlined; anything else (contention,
        # nothing ready, end of data, after fork) goes to _enter_slow.
        sem = self._gsem
        if self._pid == _PID and self._stash is None and sem.acquire(False):
            gr = self._gr
            gbase = self._gbase
            gr[gbase + _GR_LOCK_OWNER] = _PID
            gr[gbase + _GR_LOCK_GEN] += 1
            r = gr[gbase + _GR_READ_CLAIM]
            slot = r % self._n
            if self._commit[slot] == r:
                cl = self._cl
                base = self._base
                cl[base + _CL_HELD_LO] = r
                cl[base + _CL_HELD_HI] = r + 1
                gr[gbase + _GR_READ_CLAIM] = r + 1
                gr[gbase + _GR_LOCK_OWNER] = 0
                sem.release()
                if not self._dropped[slot]:
                    self._cur = r
                    v = self._views[slot]
                    return v if v is not None else self._view(slot)
                self._skip_dropped(r, 1)
            else:
                gr[gbase + _GR_LOCK_OWNER] = 0
                sem.release()
        return self._enter_slow(timeout)

    __enter__ = _enter

    def _enter_slow(
        self, timeout: float | None
    ) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]] | tuple[None, None]:
        if self._pid != _PID:
            self._check_pid()
        ring = self._ring
        while True:
            seq, m = self._next(1, timeout)
            if m:
                if ring._dropped[seq % ring._n]:
                    self._skip_dropped(seq, 1)
                    continue
                self._cur = seq
                return self._view(seq % ring._n)
            if seq == CLAIM_TIMEOUT:
                raise RingTimeoutError(f"no data in {ring.name!r} within {timeout} s")
            self.finished = True
            return (None, None)

    def __exit__(self, et: Any, ev: Any, tb: Any) -> None:
        seq = self._cur
        if seq >= 0:
            self._cur = -1
            self._released[self._rbase + seq % self._n] = seq
            cl = self._cl
            base = self._base
            cl[base + _CL_HELD_LO] = seq + 1
            cl[base + _CL_COUNT] += 1
            if self._h[_G_WRITE_WAITERS] > 0:
                self._ring._wake_writers()

    def read(self, timeout: float | None = None) -> contextlib.AbstractContextManager[Any]:
        """Context manager for one slot with an optional timeout (RingTimeoutError)."""
        if timeout is None:
            return self  # the reader is its own (reusable) context manager
        return _ReadCtx(self, timeout)

    def claim(self, max_slots: int = 1, timeout: float | None = None) -> ReadBatch | None:
        """Claim 1..max_slots consecutive filled slots; None at the end of data.

        Raises:
            RingTimeoutError: nothing arrived within ``timeout`` seconds.
        """
        if self._pid != _PID:
            self._check_pid()
        if max_slots < 1:
            raise ConfigError("max_slots must be >= 1")
        ring = self._ring
        n = ring._n
        while True:
            seq, m = self._next(max_slots, timeout)
            if not m:
                if seq == CLAIM_TIMEOUT:
                    raise RingTimeoutError(f"no data in {ring.name!r} within {timeout} s")
                self.finished = True
                return None
            skipped = self._skip_dropped(seq, m)
            seq += skipped
            m -= skipped
            if not m:
                continue
            s0 = seq % n
            if m > 1:
                drop = ring._dropped_np[s0 : s0 + m]
                if drop.any():  # keep the tail from the first dropped slot for the next call
                    keep = int(drop.argmax())
                    self._stash = (seq + keep, seq + m)
                    m = keep
            return ReadBatch(self, seq, ring._meta_np[s0 : s0 + m], ring._data_np[s0 : s0 + m])

    def poll(self, max_slots: int = 1) -> ReadBatch | None:
        """Non-blocking :meth:`claim`: None if nothing is ready (see :attr:`finished`)."""
        try:
            return self.claim(max_slots, timeout=0.0)
        except RingTimeoutError:
            return None

    def _release_range(self, lo: int, hi: int) -> None:
        ring = self._ring
        n = ring._n
        s0 = lo % n
        m = hi - lo
        if m == 1:
            ring._released[self._rbase + s0] = lo
        else:
            ring._released_np[self._g, s0 : s0 + m] = lo + ring._arange[:m]
        cl = ring._cl
        cl[self._base + L.CL_HELD_LO] = hi
        cl[self._base + L.CL_COUNT] += m
        if ring._h[L.G_WRITE_WAITERS] > 0:
            ring._wake_writers()

    def __iter__(self) -> Iterator[tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]]:
        """Yield ``(metadata, data)`` views until the end of data (each valid until the next)."""
        while True:
            meta, data = self._enter()
            if meta is None or data is None:
                return
            try:
                yield meta, data
            finally:
                self.__exit__(None, None, None)


class _ReadCtx:
    __slots__ = ("_r", "_timeout")

    def __init__(self, r: Reader, timeout: float | None) -> None:
        self._r = r
        self._timeout = timeout

    def __enter__(self) -> Any:
        return self._r._enter(self._timeout)

    def __exit__(self, et: Any, ev: Any, tb: Any) -> None:
        self._r.__exit__(et, ev, tb)


BufferReader = Reader  # mimoCoRB2 name
