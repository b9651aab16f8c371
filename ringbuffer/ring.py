"""Multiple-in multiple-out shared-memory ring buffers.

The state that decides who may touch which slot lives in the segment (see
:mod:`ringbuffer.layout`): writers claim sequence numbers from ``write_claim`` and publish by
storing the number into ``commit[slot]``; each reader group claims from its own ``read_claim``
and releases by storing into ``released[group][slot]``. A slot is free for sequence ``s`` when
every active group released ``s - slot_count``. Claims take a short named-semaphore lock (user
space when uncontended); publishing and releasing are single stores. Blocking waits sleep on
named semaphores ("bells") with a short timeout, so a missed wake-up costs at most
``POLL_S`` (:mod:`ringbuffer.clients`) and a dead peer is noticed by the periodic
:meth:`RingBuffer.reap`.

This module holds :class:`RingBuffer`. The clients live in :mod:`ringbuffer.writer`,
:mod:`ringbuffer.reader` and :mod:`ringbuffer.observer` (batches in :mod:`ringbuffer.batches`,
their shared base and client-table rows in :mod:`ringbuffer.clients`), the lock in
:mod:`ringbuffer.lock`, owner cleanup in :mod:`ringbuffer.cleanup`; their public names are
importable from here as well.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Mapping, Sequence
from typing import Any

import msgpack
import numpy as np

from ringbuffer import layout as L
from ringbuffer.batches import ReadBatch, WriteBatch
from ringbuffer.cleanup import is_owned, mark_owned, remove_buffer
from ringbuffer.clients import REAP_EVERY_S, ClientInfo
from ringbuffer.errors import ConfigError, RingBufferError, RingTimeoutError
from ringbuffer.layout import METADATA_DTYPE, Layout, Role
from ringbuffer.lock import ProcessLock
from ringbuffer.observer import BufferObserver, Observer
from ringbuffer.reader import BufferReader, Reader
from ringbuffer.shm import (
    create_segment,
    follow_pid,
    open_segment,
    pid_alive,
    proc_start_time,
    sem_create,
    sem_open,
    sem_unlink_all,
)
from ringbuffer.writer import BufferWriter, Writer

__all__ = [
    "BufferObserver",
    "BufferReader",
    "BufferWriter",
    "ClientInfo",
    "Observer",
    "ReadBatch",
    "Reader",
    "RingBuffer",
    "WriteBatch",
    "Writer",
    "remove_buffer",
]

log = logging.getLogger(__name__)

_PID = follow_pid(globals())
_START = proc_start_time(_PID)


def _after_fork_in_child() -> None:
    global _START
    _START = proc_start_time(os.getpid())


os.register_at_fork(after_in_child=_after_fork_in_child)


class RingBuffer:
    """A named shared-memory ring buffer of ``slot_count`` slots of ``data_length`` records.

    Create it once (:meth:`create` / :meth:`from_setup`), attach anywhere by name
    (:meth:`attach`, or pickle the object: it re-attaches by name under ``spawn``). Get clients
    with :meth:`writer`, :meth:`reader` and :meth:`observer`.
    """

    def __init__(self, name: str, fd: int, mm: Any, *, owner: bool = False) -> None:
        self._name = name
        self._fd = fd
        self._mm = mm
        self._is_owner = owner
        mv = memoryview(mm)
        h = mv[: L.GROUPS_OFFSET].cast("q")
        if h[L.G_MAGIC] != L.MAGIC or h[L.G_VERSION] != L.VERSION:
            raise RingBufferError(f"/dev/shm segment of {name!r} is not an evb ring (v{L.VERSION})")
        self._h = h
        self._hd = mv[: L.GROUPS_OFFSET].cast("d")
        self._gr = mv[L.GROUPS_OFFSET : L.NAMES_OFFSET].cast("q")
        self._names = mv[L.NAMES_OFFSET : L.CLIENTS_OFFSET]
        self._cl = mv[L.CLIENTS_OFFSET : L.DTYPE_OFFSET].cast("q")
        self._cld = mv[L.CLIENTS_OFFSET : L.DTYPE_OFFSET].cast("d")
        dlen = h[L.G_DTYPE_LEN]
        self._dtype: np.dtype[Any] = L.dtype_from_descr(
            msgpack.unpackb(bytes(mv[L.DTYPE_OFFSET : L.DTYPE_OFFSET + dlen]))
        )
        lay = Layout.compute(h[L.G_SLOT_COUNT], h[L.G_DATA_LENGTH], self._dtype.itemsize)
        self.layout = lay
        n = lay.slot_count
        self._n = n
        self._commit = mv[lay.commit_offset : lay.commit_offset + 8 * n].cast("q")
        self._claimed = mv[lay.claimed_offset : lay.claimed_offset + 8 * n].cast("q")
        self._dropped = mv[lay.dropped_offset : lay.dropped_offset + 8 * n].cast("q")
        rel_len = 8 * n * L.MAX_GROUPS
        self._released = mv[lay.released_offset : lay.released_offset + rel_len].cast("q")
        buf = mm
        self._commit_np = np.ndarray((n,), np.int64, buf, lay.commit_offset)
        self._claimed_np = np.ndarray((n,), np.int64, buf, lay.claimed_offset)
        self._dropped_np = np.ndarray((n,), np.int64, buf, lay.dropped_offset)
        self._released_np = np.ndarray((L.MAX_GROUPS, n), np.int64, buf, lay.released_offset)
        self._meta_np = np.ndarray((n,), METADATA_DTYPE, buf, lay.meta_offset)
        self._meta_d = mv[lay.meta_offset : lay.meta_offset + 24 * n].cast("d")
        self._meta_q = mv[lay.meta_offset : lay.meta_offset + 24 * n].cast("q")
        self._data_np = np.ndarray(
            (n, lay.data_length),
            self._dtype,
            buf,
            lay.data_offset,
            strides=(lay.slot_stride, self._dtype.itemsize),
        )
        self._arange = np.arange(n, dtype=np.int64)
        self._wlock = ProcessLock(
            sem_open(name, "w", 1), h, L.G_WLOCK_OWNER, L.G_WLOCK_GEN, name, "writer"
        )
        self._tlock = ProcessLock(
            sem_open(name, "t", 1), h, L.G_TLOCK_OWNER, L.G_TLOCK_GEN, name, "table"
        )
        self._space_bell = sem_open(name, "s")
        self._glocks: dict[int, ProcessLock] = {}
        self._gbells: dict[int, Any] = {}
        self._groups_gen = -1
        self._active: list[int] = []
        self._active_np = np.zeros(0, dtype=np.intp)
        self._last_reap = 0.0
        self._stats_prev: tuple[float, int, float] | None = None

    # ----------------------------------------------------------------- construction

    @classmethod
    def create(
        cls,
        name: str,
        *,
        slot_count: int,
        data_length: int,
        data_dtype: Any,
        groups: Sequence[str] = ("default",),
        replace: bool = False,
    ) -> RingBuffer:
        """Create a new buffer (this process becomes its owner and unlinks it at exit).

        Args:
            name: buffer name, ``[A-Za-z0-9_.-]``, at most 100 characters.
            slot_count: number of slots (>= 2).
            data_length: records per slot.
            data_dtype: structured dtype or mimoCoRB2 mapping ``{'field': 'float64'}``.
            groups: reader groups that exist from sequence 0 (each sees every slot).
            replace: remove an existing buffer of that name first.
        """
        L.validate_name(name)
        dt = L.dtype_from_setup(data_dtype)
        lay = Layout.compute(slot_count, data_length, dt.itemsize)
        descr = msgpack.packb(L.dtype_to_descr(dt))
        if len(descr) > L.DTYPE_BYTES:
            raise ConfigError(f"data_dtype of {name!r} has too many fields for the header")
        if len(set(groups)) != len(groups) or len(groups) > L.MAX_GROUPS:
            raise ConfigError(f"groups must be at most {L.MAX_GROUPS} distinct names: {groups!r}")
        for g in groups:
            L.validate_name(g, "group name")
        if replace:
            remove_buffer(name)
        fd, mm = create_segment(name, lay.total_bytes)
        try:
            sem_unlink_all(name)
            mv = memoryview(mm)
            h = mv[: L.GROUPS_OFFSET].cast("q")
            h[L.G_MAGIC] = L.MAGIC
            h[L.G_VERSION] = L.VERSION
            h[L.G_TOTAL_BYTES] = lay.total_bytes
            h[L.G_SLOT_COUNT] = slot_count
            h[L.G_DATA_LENGTH] = data_length
            h[L.G_ITEMSIZE] = dt.itemsize
            h[L.G_SLOT_STRIDE] = lay.slot_stride
            h[L.G_DATA_OFFSET] = lay.data_offset
            h[L.G_CREATOR_PID] = _PID
            h[L.G_CREATOR_START] = _START
            h[L.G_CREATED_NS] = time.time_ns()
            h[L.G_DTYPE_LEN] = len(descr)
            h[L.G_LAST_COMMIT] = -1
            mv[L.DTYPE_OFFSET : L.DTYPE_OFFSET + len(descr)] = descr
            n = slot_count
            init = np.arange(n, dtype=np.int64) - n
            np.ndarray((n,), np.int64, mm, lay.commit_offset)[:] = init
            np.ndarray((n,), np.int64, mm, lay.claimed_offset)[:] = init
            del h, mv
            sem_create(name, "w", 1, 1)
            sem_create(name, "t", 1, 1)
            sem_create(name, "s", 0)
            ring = cls(name, fd, mm, owner=True)
            for g in groups:
                ring._activate_group(g, locked=True)
            ring._h[L.G_READY] = 1
        except BaseException:
            remove_buffer(name)
            raise
        mark_owned(name)
        log.debug("created buffer %s: %d slots x %d B", name, slot_count, lay.slot_bytes)
        return ring

    @classmethod
    def attach(cls, name: str, *, timeout: float = 5.0) -> RingBuffer:
        """Attach to an existing buffer by name (never unlinks it)."""
        L.validate_name(name)
        deadline = time.monotonic() + timeout
        while True:
            try:
                fd, mm = open_segment(name)
            except FileNotFoundError:
                if time.monotonic() >= deadline:
                    raise
                time.sleep(0.01)
                continue
            h = memoryview(mm)[: L.GROUPS_OFFSET].cast("q")
            ready = h[L.G_READY]
            h.release()
            if ready:
                return cls(name, fd, mm)
            mm.close()
            os.close(fd)
            if time.monotonic() >= deadline:
                raise RingTimeoutError(f"buffer {name!r} exists but was never initialised")
            time.sleep(0.01)

    @classmethod
    def from_setup(
        cls, name: str, setup: Mapping[str, Any], *, groups: Sequence[str] = ("default",)
    ) -> RingBuffer:
        """Create from a mimoCoRB2 buffer setup ``{slot_count, data_length, data_dtype}``."""
        for key in ("slot_count", "data_length", "data_dtype"):
            if key not in setup:
                raise ConfigError(f"buffer {name!r}: missing key {key!r}")
        return cls.create(
            name,
            slot_count=setup["slot_count"],
            data_length=setup["data_length"],
            data_dtype=L.dtype_from_setup(setup["data_dtype"], where=f"{name}.data_dtype"),
            groups=groups,
        )

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return (_attach_by_name, (self._name,))

    def __repr__(self) -> str:
        return (
            f"RingBuffer({self._name!r}, slot_count={self._n}, "
            f"data_length={self.layout.data_length}, dtype={self._dtype})"
        )

    # ----------------------------------------------------------------- properties

    @property
    def name(self) -> str:
        return self._name

    @property
    def slot_count(self) -> int:
        return self._n

    @property
    def data_length(self) -> int:
        return self.layout.data_length

    @property
    def data_dtype(self) -> np.dtype[Any]:
        return self._dtype

    @property
    def metadata_dtype(self) -> np.dtype[Any]:
        return METADATA_DTYPE

    @property
    def data_example(self) -> np.ndarray[Any, Any]:
        """A zero array shaped like one slot's data (mimoCoRB2 ``data_example``)."""
        return np.zeros(self.layout.data_length, dtype=self._dtype)

    @property
    def metadata_example(self) -> np.ndarray[Any, Any]:
        return np.zeros(1, dtype=METADATA_DTYPE)

    @property
    def is_owner(self) -> bool:
        return self._is_owner and is_owned(self._name)

    @property
    def is_shutdown(self) -> bool:
        return bool(self._h[L.G_SHUTDOWN])

    @property
    def paused(self) -> bool:
        return bool(self._h[L.G_PAUSED])

    @property
    def creator_pid(self) -> int:
        return int(self._h[L.G_CREATOR_PID])

    # ----------------------------------------------------------------- clients

    def writer(self) -> Writer:
        """A new writer client of this process."""
        return Writer(self)

    def reader(self, group: str = "default") -> Reader:
        """A new reader in ``group`` (created, starting at the current position, if unknown)."""
        return Reader(self, group)

    def observer(self) -> Observer:
        """A new observer (copies the latest slot, never blocks writers or readers)."""
        return Observer(self)

    # ----------------------------------------------------------------- control

    def pause(self) -> None:
        """Discard (and count) writes until :meth:`resume`."""
        self._h[L.G_PAUSED] = 1

    def resume(self) -> None:
        self._h[L.G_PAUSED] = 0

    def shutdown(self) -> None:
        """End of data: readers drain what was claimed so far, then see the end."""
        self._wlock.acquire()
        try:
            if not self._h[L.G_SHUTDOWN]:
                self._h[L.G_EOD_SEQ] = self._h[L.G_WRITE_CLAIM]
                self._h[L.G_SHUTDOWN] = 1
        finally:
            self._wlock.release()
        self._wake_all()

    send_flush_event = shutdown

    def close(self) -> None:
        """Forget this handle (does not unlink; the owner unlinks at exit or via :meth:`unlink`)."""

    def unlink(self) -> None:
        """Remove the buffer from the system now (existing mappings stay valid)."""
        remove_buffer(self._name)

    # ----------------------------------------------------------------- groups

    def groups(self) -> dict[str, int]:
        """Active reader groups: name -> index."""
        out: dict[str, int] = {}
        for g in range(L.MAX_GROUPS):
            if self._gr[g * L.GROUP_WORDS + L.GR_ACTIVE]:
                out[self._group_name(g)] = g
        return out

    def add_group(self, name: str) -> int:
        """Declare reader group ``name`` (no-op if it exists); it sees slots claimed from now on."""
        L.validate_name(name, "group name")
        existing = self.groups().get(name)
        if existing is not None:
            return existing
        return self._activate_group(name, locked=False)

    def remove_group(self, name: str) -> bool:
        """Deactivate reader group ``name``: writers stop waiting for it. False if unknown."""
        g = self.groups().get(name)
        if g is None:
            return False
        self._tlock.acquire()
        try:
            self._wlock.acquire()
            try:
                self._gr[g * L.GROUP_WORDS + L.GR_ACTIVE] = 0
                self._h[L.G_GROUPS_GEN] += 1
            finally:
                self._wlock.release()
        finally:
            self._tlock.release()
        self._wake_all()
        return True

    def _group_name(self, g: int) -> str:
        raw = bytes(self._names[g * L.NAME_BYTES : (g + 1) * L.NAME_BYTES])
        return raw.rstrip(b"\0").decode()

    def _activate_group(self, name: str, *, locked: bool) -> int:
        encoded = name.encode()
        if len(encoded) > L.NAME_BYTES:
            raise ConfigError(f"group name {name!r} longer than {L.NAME_BYTES} bytes")
        self._tlock.acquire()
        try:
            for g in range(L.MAX_GROUPS):
                if self._gr[g * L.GROUP_WORDS + L.GR_ACTIVE] and self._group_name(g) == name:
                    return g
            free = [g for g in range(L.MAX_GROUPS) if not self._gr[g * L.GROUP_WORDS]]
            if not free:
                raise ConfigError(f"buffer {self._name!r}: at most {L.MAX_GROUPS} reader groups")
            g = free[0]
            sem_create(self._name, f"g{g}l", 1, 1)
            sem_create(self._name, f"g{g}b", 0)
            self._wlock.acquire()
            try:
                start = self._h[L.G_WRITE_CLAIM]
                row = self.layout.initial_released(start)
                self._released_np[g, :] = row
                base = g * L.GROUP_WORDS
                for k in range(L.GROUP_WORDS):
                    self._gr[base + k] = 0
                self._gr[base + L.GR_READ_CLAIM] = start
                self._gr[base + L.GR_START] = start
                self._names[g * L.NAME_BYTES : (g + 1) * L.NAME_BYTES] = encoded.ljust(
                    L.NAME_BYTES, b"\0"
                )
                self._gr[base + L.GR_ACTIVE] = 1
                self._h[L.G_GROUPS_GEN] += 1
            finally:
                self._wlock.release()
            return g
        finally:
            self._tlock.release()

    def _group_lock(self, g: int) -> ProcessLock:
        lock = self._glocks.get(g)
        if lock is None:
            base = g * L.GROUP_WORDS
            lock = ProcessLock(
                sem_open(self._name, f"g{g}l", 1),
                self._gr,
                base + L.GR_LOCK_OWNER,
                base + L.GR_LOCK_GEN,
                self._name,
                f"group {g}",
            )
            self._glocks[g] = lock
        return lock

    def _group_bell(self, g: int) -> Any:
        bell = self._gbells.get(g)
        if bell is None:
            bell = sem_open(self._name, f"g{g}b")
            self._gbells[g] = bell
        return bell

    def _active_groups(self) -> list[int]:
        gen = self._h[L.G_GROUPS_GEN]
        if gen != self._groups_gen:
            self._active = [
                g for g in range(L.MAX_GROUPS) if self._gr[g * L.GROUP_WORDS + L.GR_ACTIVE]
            ]
            self._active_np = np.array(self._active, dtype=np.intp)
            for g in self._active:
                self._group_bell(g)
            self._groups_gen = gen
        return self._active

    # ----------------------------------------------------------------- wake-ups

    def _wake_readers(self) -> None:
        gr = self._gr
        for g in self._active_groups():
            waiters = gr[g * L.GROUP_WORDS + L.GR_WAITERS]
            if waiters > 0:
                bell = self._gbells[g]
                if bell._get_value() < waiters:
                    bell.release()

    def _wake_writers(self) -> None:
        waiters = self._h[L.G_WRITE_WAITERS]
        if waiters > 0 and self._space_bell._get_value() < waiters:
            self._space_bell.release()

    def _wake_all(self) -> None:
        for g in self._active_groups():
            waiters = max(1, self._gr[g * L.GROUP_WORDS + L.GR_WAITERS])
            bell = self._gbells[g]
            for _ in range(min(waiters, 64)):
                bell.release()
        for _ in range(max(1, min(self._h[L.G_WRITE_WAITERS], 64))):
            self._space_bell.release()

    # ----------------------------------------------------------------- free / ready scans

    def _scan_free(self, w: int, limit: int) -> int:
        """Number of consecutive free sequence numbers from ``w`` (at most ``limit``)."""
        act = self._active_groups()
        if not act:
            return limit
        n = self._n
        s0 = w % n
        k = min(limit, n)
        if k == 1 or (len(act) == 1 and k <= 4):
            rel = self._released
            count = 0
            while count < k:
                slot = (s0 + count) % n
                need = w + count - n
                for g in act:
                    if rel[g * n + slot] < need:
                        return count
                count += 1
            return count
        idx = (s0 + self._arange[:k]) % n
        rel2 = self._released_np[self._active_np][:, idx]
        ok = (rel2 >= (w - n) + self._arange[:k]).all(axis=0)
        if ok.all():
            return k
        return int(ok.argmin())

    # ----------------------------------------------------------------- client table

    def _register(self, role: int, group: int) -> int:
        for attempt in range(2):
            self._tlock.acquire()
            try:
                cl = self._cl
                for i in range(L.MAX_CLIENTS):
                    base = i * L.CLIENT_WORDS
                    if cl[base + L.CL_PID] == 0:
                        for k in range(L.CLIENT_WORDS):
                            cl[base + k] = 0
                        cl[base + L.CL_START] = _START
                        cl[base + L.CL_ROLE] = role
                        cl[base + L.CL_GROUP] = group
                        cl[base + L.CL_BEAT_NS] = time.time_ns()
                        cl[base + L.CL_PID] = _PID
                        return i
            finally:
                self._tlock.release()
            if attempt == 0:
                self.reap(force=True)
        raise RingBufferError(f"buffer {self._name!r}: client table full ({L.MAX_CLIENTS})")

    def _unregister(self, idx: int, pid: int) -> None:
        self._tlock.acquire()
        try:
            base = idx * L.CLIENT_WORDS
            if self._cl[base + L.CL_PID] == pid:
                self._hd[L.G_DEADTIME_SUM] += self._cld[base + L.CL_DEADTIME]
                self._cl[base + L.CL_PID] = 0
        finally:
            self._tlock.release()

    def clients(self) -> list[ClientInfo]:
        """Snapshot of the attached clients."""
        out = []
        for i in range(L.MAX_CLIENTS):
            base = i * L.CLIENT_WORDS
            pid = self._cl[base + L.CL_PID]
            if not pid:
                continue
            role = self._cl[base + L.CL_ROLE]
            group = self._cl[base + L.CL_GROUP]
            out.append(
                ClientInfo(
                    i,
                    pid,
                    Role.NAMES.get(role, "?"),
                    self._group_name(group) if role == Role.READER else "",
                    max(0, self._cl[base + L.CL_HELD_HI] - self._cl[base + L.CL_HELD_LO]),
                    self._cl[base + L.CL_COUNT],
                    pid_alive(pid, self._cl[base + L.CL_START]),
                )
            )
        return out

    def reap(self, *, force: bool = False) -> int:
        """Reclaim the slots of dead clients; returns how many clients were removed.

        Called periodically by blocked waiters. If the creating process died, the buffer is shut
        down so that nothing waits forever for an owner that will not come back.
        """
        now = time.monotonic()
        if not force and now - self._last_reap < REAP_EVERY_S:
            return 0
        self._last_reap = now
        if not self._h[L.G_SHUTDOWN] and not pid_alive(
            self._h[L.G_CREATOR_PID], self._h[L.G_CREATOR_START]
        ):
            log.warning("buffer %s: creator process died, shutting down", self._name)
            self.shutdown()
        cl = self._cl
        dead = []
        for i in range(L.MAX_CLIENTS):
            base = i * L.CLIENT_WORDS
            pid = cl[base + L.CL_PID]
            if pid and not pid_alive(pid, cl[base + L.CL_START]):
                dead.append((i, pid))
        if not dead:
            return 0
        removed = 0
        self._tlock.acquire()
        try:
            for i, pid in dead:
                base = i * L.CLIENT_WORDS
                if cl[base + L.CL_PID] != pid:
                    continue
                role = cl[base + L.CL_ROLE]
                lo, hi = cl[base + L.CL_HELD_LO], cl[base + L.CL_HELD_HI]
                if role == Role.WRITER and hi > lo:
                    self._reclaim_writes(lo, hi)
                elif role == Role.READER and hi > lo:
                    self._reclaim_reads(cl[base + L.CL_GROUP], lo, hi)
                self._hd[L.G_DEADTIME_SUM] += self._cld[base + L.CL_DEADTIME]
                cl[base + L.CL_PID] = 0
                removed += 1
                log.warning("buffer %s: removed dead %s pid %d", self._name, Role.NAMES[role], pid)
        finally:
            self._tlock.release()
        self._wake_all()
        return removed

    def _reclaim_writes(self, lo: int, hi: int) -> None:
        n = self._n
        self._wlock.acquire()
        try:
            count = 0
            for s in range(lo, min(hi, self._h[L.G_WRITE_CLAIM])):
                slot = s % n
                if self._commit[slot] < s:
                    self._dropped[slot] = 1
                    self._claimed[slot] = s
                    self._commit[slot] = s
                    count += 1
            self._h[L.G_RECLAIMED_WRITES] += count
        finally:
            self._wlock.release()

    def _reclaim_reads(self, g: int, lo: int, hi: int) -> None:
        n = self._n
        lock = self._group_lock(g)
        lock.acquire()
        try:
            count = 0
            rc = self._gr[g * L.GROUP_WORDS + L.GR_READ_CLAIM]
            for s in range(lo, min(hi, rc)):
                slot = s % n
                if self._released[g * n + slot] < s:
                    self._released[g * n + slot] = s
                    count += 1
            self._gr[g * L.GROUP_WORDS + L.GR_RECLAIMED] += count
            self._h[L.G_RECLAIMED_READS] += count
        finally:
            lock.release()

    # ----------------------------------------------------------------- statistics

    def get_stats(self) -> dict[str, Any]:
        """mimoCoRB2-style snapshot; ``rate`` and ``average_deadtime`` cover the time since the
        previous call on this handle."""
        h = self._h
        now = time.monotonic()
        wc = h[L.G_WRITE_CLAIM]
        events = wc - h[L.G_RECLAIMED_WRITES] - h[L.G_UNUSED_CLAIMS]
        dead_sum = self._hd[L.G_DEADTIME_SUM]
        for i in range(L.MAX_CLIENTS):
            base = i * L.CLIENT_WORDS
            if self._cl[base + L.CL_PID] and self._cl[base + L.CL_ROLE] == Role.WRITER:
                dead_sum += self._cld[base + L.CL_DEADTIME]
        groups = {}
        min_read = wc
        for name, g in self.groups().items():
            base = g * L.GROUP_WORDS
            rc = self._gr[base + L.GR_READ_CLAIM]
            min_read = min(min_read, rc)
            groups[name] = {
                "read": rc - self._gr[base + L.GR_START],
                "lag": wc - rc,
                "reclaimed": self._gr[base + L.GR_RECLAIMED],
                "skipped": self._gr[base + L.GR_SKIPPED],
            }
        filled = max(0, min(self._n, wc - min_read))
        prev = self._stats_prev
        if prev is None:
            rate = 0.0
            avg_dead = dead_sum / events if events else 0.0
        else:
            dt = now - prev[0]
            rate = (events - prev[1]) / dt if dt > 0 else 0.0
            de = events - prev[1]
            avg_dead = (dead_sum - prev[2]) / de if de > 0 else 0.0
        self._stats_prev = (now, events, dead_sum)
        return {
            "name": self._name,
            "event_count": events,
            "filled_slots": filled / self._n,
            "empty_slots": 1.0 - filled / self._n,
            "fill_level": filled / self._n,
            "flush_event_received": bool(h[L.G_SHUTDOWN]),
            "rate": rate,
            "average_deadtime": avg_dead,
            "paused_count": h[L.G_DISCARDED_PAUSED],
            "paused": bool(h[L.G_PAUSED]),
            "discarded_shutdown": h[L.G_DISCARDED_SHUTDOWN],
            "reclaimed_writes": h[L.G_RECLAIMED_WRITES],
            "reclaimed_reads": h[L.G_RECLAIMED_READS],
            "groups": groups,
            "clients": sum(1 for i in range(L.MAX_CLIENTS) if self._cl[i * L.CLIENT_WORDS]),
        }


def _attach_by_name(name: str) -> RingBuffer:
    return RingBuffer.attach(name)
