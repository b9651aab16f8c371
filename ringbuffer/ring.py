"""Multiple-in multiple-out shared-memory ring buffers.

The state that decides who may touch which slot lives in the segment (see
:mod:`ringbuffer.layout`): writers claim sequence numbers from ``write_claim`` and publish by
storing the number into ``commit[slot]``; each reader group claims from its own ``read_claim``
and releases by storing into ``released[group][slot]``. A slot is free for sequence ``s`` when
every active group released ``s - slot_count``. Claims take a short named-semaphore lock (user
space when uncontended); publishing and releasing are single stores. Blocking waits sleep on
named semaphores ("bells") with a short timeout, so a missed wake-up costs at most
``POLL_S`` and a dead peer is noticed by the periodic :meth:`RingBuffer.reap`.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import signal
import threading
import time
import weakref
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import msgpack
import numpy as np

from ringbuffer import layout as L
from ringbuffer.errors import ConfigError, RingBufferError, RingTimeoutError
from ringbuffer.layout import METADATA_DTYPE, Layout, Role
from ringbuffer.shm import (
    create_segment,
    flocked,
    open_segment,
    pid_alive,
    proc_start_time,
    sem_create,
    sem_open,
    sem_unlink_all,
    unlink_segment,
)

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

SPIN_CHECKS = 50  # cheap re-checks before a waiter sleeps on its semaphore
# then re-checks after sched_yield: a peer sharing the CPU runs first and fills/drains a few
# slots, instead of a futex sleep + wake-up (two context switches) per slot
SPIN_YIELDS = 100
POLL_S = 0.02  # longest sleep of a blocked waiter before it re-checks the ring
REAP_EVERY_S = 0.25  # how often a blocked waiter looks for dead peers
LOCK_TIMEOUT_S = 0.5  # a lock held this long makes a waiter check its owner

# word indices used on the one-slot hot paths (module globals load faster than L.<name>)
_G_WRITE_CLAIM = L.G_WRITE_CLAIM
_G_WLOCK_OWNER = L.G_WLOCK_OWNER
_G_WLOCK_GEN = L.G_WLOCK_GEN
_G_WRITE_WAITERS = L.G_WRITE_WAITERS
_G_LAST_COMMIT = L.G_LAST_COMMIT
_G_PAUSED = L.G_PAUSED
_G_SHUTDOWN = L.G_SHUTDOWN
_G_GROUPS_GEN = L.G_GROUPS_GEN
_GR_READ_CLAIM = L.GR_READ_CLAIM
_GR_LOCK_OWNER = L.GR_LOCK_OWNER
_GR_LOCK_GEN = L.GR_LOCK_GEN
_CL_HELD_LO = L.CL_HELD_LO
_CL_HELD_HI = L.CL_HELD_HI
_CL_COUNT = L.CL_COUNT
_CL_DEADTIME = L.CL_DEADTIME
_now = time.time

_PID = os.getpid()
_START = proc_start_time(_PID)


def _after_fork_in_child() -> None:
    global _PID, _START
    _PID = os.getpid()
    _START = proc_start_time(_PID)
    _OWNED.clear()  # a forked child never unlinks its parent's buffers


os.register_at_fork(after_in_child=_after_fork_in_child)

# ---------------------------------------------------------------------------------------------
# owner cleanup: the creating process unlinks its buffers at exit, also on SIGTERM

_OWNED: dict[str, int] = {}
_cleanup_installed = False


def _cleanup_owned() -> None:
    for name, pid in list(_OWNED.items()):
        if pid == os.getpid():
            remove_buffer(name)
        _OWNED.pop(name, None)


def _on_sigterm(signum: int, frame: Any) -> None:
    _cleanup_owned()
    raise SystemExit(128 + signum)


def _install_cleanup() -> None:
    global _cleanup_installed
    if _cleanup_installed:
        return
    _cleanup_installed = True
    atexit.register(_cleanup_owned)
    if threading.current_thread() is threading.main_thread():
        with contextlib.suppress(ValueError, OSError):
            if signal.getsignal(signal.SIGTERM) in (signal.SIG_DFL, None):
                signal.signal(signal.SIGTERM, _on_sigterm)


def remove_buffer(name: str) -> bool:
    """Unlink the segment and semaphores of buffer ``name`` (mappings stay valid until closed)."""
    existed = unlink_segment(name)
    sem_unlink_all(name)
    _OWNED.pop(name, None)
    return existed


# ---------------------------------------------------------------------------------------------
# a crash-tolerant lock: named semaphore + owner pid in the header


class _Lock:
    """Mutex over processes; a holder that died is detected and the lock recovered."""

    __slots__ = ("_gen", "_h", "_label", "_name", "_owner", "_sem")

    def __init__(self, sem: Any, h: memoryview, owner: int, gen: int, name: str, label: str):
        self._sem = sem
        self._h = h
        self._owner = owner
        self._gen = gen
        self._name = name
        self._label = label

    def acquire(self) -> None:
        if not self._sem.acquire(True, LOCK_TIMEOUT_S):
            self._acquire_slow()
        h = self._h
        h[self._owner] = _PID
        h[self._gen] += 1

    def release(self) -> None:
        self._h[self._owner] = 0
        self._sem.release()

    def _acquire_slow(self) -> None:
        h = self._h
        seen = (h[self._owner], h[self._gen])
        strikes = 0
        while True:
            if self._sem.acquire(True, LOCK_TIMEOUT_S):
                return
            now = (h[self._owner], h[self._gen])
            if now != seen:
                seen, strikes = now, 0
                continue
            owner = now[0]
            if owner and pid_alive(owner):
                strikes = 0
                continue
            strikes += 1
            # owner == 0: killed between acquire and storing its pid; wait a second strike
            if owner or strikes >= 2:
                with flocked(self._name):
                    if (h[self._owner], h[self._gen]) == seen and self._sem._get_value() == 0:
                        log.warning(
                            "buffer %s: %s lock held by dead process %s, recovered",
                            self._name,
                            self._label,
                            owner or "?",
                        )
                        h[self._owner] = 0
                        self._sem.release()
                strikes = 0


# ---------------------------------------------------------------------------------------------


class ClientInfo:
    """One row of the client table (for ``evb-ring ls`` and tests)."""

    __slots__ = ("alive", "count", "group", "held", "index", "pid", "role")

    def __init__(
        self, index: int, pid: int, role: str, group: str, held: int, count: int, alive: bool
    ) -> None:
        self.index = index
        self.pid = pid
        self.role = role
        self.group = group
        self.held = held
        self.count = count
        self.alive = alive

    def __repr__(self) -> str:
        return (
            f"ClientInfo(pid={self.pid}, role={self.role}, group={self.group!r}, "
            f"held={self.held}, count={self.count}, alive={self.alive})"
        )


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
        self._wlock = _Lock(
            sem_open(name, "w", 1), h, L.G_WLOCK_OWNER, L.G_WLOCK_GEN, name, "writer"
        )
        self._tlock = _Lock(
            sem_open(name, "t", 1), h, L.G_TLOCK_OWNER, L.G_TLOCK_GEN, name, "table"
        )
        self._space_bell = sem_open(name, "s")
        self._glocks: dict[int, _Lock] = {}
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
        _OWNED[name] = _PID
        _install_cleanup()
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
        return self._is_owner and _OWNED.get(self._name) == _PID

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

    def _group_lock(self, g: int) -> _Lock:
        lock = self._glocks.get(g)
        if lock is None:
            base = g * L.GROUP_WORDS
            lock = _Lock(
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


# ---------------------------------------------------------------------------------------------
# batches


class WriteBatch:
    """Slots claimed by a writer: ``meta`` (m,) and ``data`` (m, data_length) views.

    Fill them, then :meth:`commit` (all or the first ``count``; the rest carry no data). As a
    context manager it commits on normal exit and drops the slots if the block raised.
    """

    __slots__ = ("_done", "_writer", "data", "discard", "meta", "seq")

    def __init__(
        self,
        writer: Writer,
        seq: int,
        meta: np.ndarray[Any, Any],
        data: np.ndarray[Any, Any],
        discard: bool,
    ) -> None:
        self._writer = writer
        self.seq = seq
        self.meta = meta
        self.data = data
        self.discard = discard  # True: paused or shut down, the data goes nowhere
        self._done = False

    def __len__(self) -> int:
        return len(self.meta)

    def commit(self, count: int | None = None) -> None:
        if not self._done:
            self._done = True
            self._writer._commit_batch(self, len(self.meta) if count is None else count)

    def __enter__(self) -> WriteBatch:
        return self

    def __exit__(self, et: Any, ev: Any, tb: Any) -> None:
        self.commit(None if et is None else 0)


class ReadBatch:
    """Slots claimed by a reader: ``meta`` (m,) and ``data`` (m, data_length) views.

    Valid until :meth:`release` (also on leaving a ``with`` block).
    """

    __slots__ = ("_done", "_reader", "data", "meta", "seq")

    def __init__(
        self, reader: Reader, seq: int, meta: np.ndarray[Any, Any], data: np.ndarray[Any, Any]
    ) -> None:
        self._reader = reader
        self.seq = seq
        self.meta = meta
        self.data = data
        self._done = False

    def __len__(self) -> int:
        return len(self.meta)

    def release(self) -> None:
        if not self._done:
            self._done = True
            self._reader._release_range(self.seq, self.seq + len(self.meta))

    def __enter__(self) -> ReadBatch:
        return self

    def __exit__(self, et: Any, ev: Any, tb: Any) -> None:
        self.release()


# ---------------------------------------------------------------------------------------------
# clients

_TIMEOUT = -1
_PAUSED = -2
_SHUTDOWN = -3
_END = -4


class _Client:
    role = Role.FREE

    def __init__(self, ring: RingBuffer, group: int = -1) -> None:
        self._ring = ring
        self._group = group
        self._pid = _PID
        self._idx = ring._register(self.role, group)
        self._base = self._idx * L.CLIENT_WORDS
        self._finalizer = weakref.finalize(self, _finalize_client, ring, self._idx, _PID)
        self.name = ring.name
        self.slot_count = ring.slot_count
        self.data_example = ring.data_example
        self.metadata_example = ring.metadata_example
        self.get_stats = ring.get_stats
        self.shutdown_buffer = ring.shutdown

    @property
    def ring(self) -> RingBuffer:
        return self._ring

    @property
    def is_shutdown(self) -> bool:
        return self._ring.is_shutdown

    def _check_pid(self) -> None:
        if self._pid != _PID:  # used after fork: become a client of our own
            self._pid = _PID
            self._idx = self._ring._register(self.role, self._group)
            self._base = self._idx * L.CLIENT_WORDS
            self._finalizer.detach()
            self._finalizer = weakref.finalize(self, _finalize_client, self._ring, self._idx, _PID)

    def _beat(self) -> None:
        self._ring._cl[self._base + L.CL_BEAT_NS] = time.time_ns()

    def close(self) -> None:
        """Leave the client table (slots still held are given back first)."""
        self._finalizer()


def _finalize_client(ring: RingBuffer, idx: int, pid: int) -> None:
    if os.getpid() != pid:
        return
    with contextlib.suppress(Exception):
        base = idx * L.CLIENT_WORDS
        cl = ring._cl
        lo, hi = cl[base + L.CL_HELD_LO], cl[base + L.CL_HELD_HI]
        if hi > lo and cl[base + L.CL_PID] == pid:
            role = cl[base + L.CL_ROLE]
            if role == Role.WRITER:
                ring._reclaim_writes(lo, hi)
            elif role == Role.READER:
                ring._reclaim_reads(cl[base + L.CL_GROUP], lo, hi)
            ring._wake_all()
        ring._unregister(idx, pid)


class Writer(_Client):
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
                status = _SHUTDOWN if h[L.G_SHUTDOWN] else _PAUSED
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
                return _TIMEOUT, 0
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
                return _TIMEOUT, 0
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
        if seq == _TIMEOUT:
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
        if status == _PAUSED:
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
        if seq == _TIMEOUT:
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


class Reader(_Client):
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
                return _END, 0
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
                return _TIMEOUT, 0
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
            if seq == _TIMEOUT:
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
                if seq == _TIMEOUT:
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


class Observer(_Client):
    """Copies of the latest published slot, never blocking writers nor taking readers' slots.

    The slot's ``claimed`` sequence number is checked before and after the copy; a copy that a
    writer overwrote meanwhile is retried (counted in :attr:`torn_retries`).
    """

    role = Role.OBSERVER

    def __init__(self, ring: RingBuffer) -> None:
        super().__init__(ring)
        self.last_seq = -1
        self.torn_retries = 0

    def observe(
        self, timeout: float | None = None, *, new_only: bool = True
    ) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]] | None:
        """Copy of the latest slot as ``(metadata, data)``; None at shutdown or on timeout.

        Args:
            timeout: seconds to wait for data (None: until shutdown).
            new_only: wait for a slot newer than the one returned last time.
        """
        ring = self._ring
        h = ring._h
        n = ring._n
        deadline = None if timeout is None else time.monotonic() + timeout
        pause = 0.0005
        while True:
            s = h[L.G_LAST_COMMIT]
            if s >= 0 and (s > self.last_seq or not new_only):
                slot = s % n
                if ring._claimed[slot] == s and ring._commit[slot] == s and not ring._dropped[slot]:
                    meta = ring._meta_np[slot : slot + 1].copy()
                    data = ring._data_np[slot].copy()
                    if ring._claimed[slot] == s:
                        self.last_seq = s
                        return meta, data
                    self.torn_retries += 1
                    continue
            if h[L.G_SHUTDOWN]:
                return None
            if deadline is not None and time.monotonic() >= deadline:
                return None
            time.sleep(pause)
            pause = min(pause * 2, POLL_S)
            ring.reap()

    def __enter__(self) -> Any:
        if self._ring.is_shutdown:
            return (None, None)
        got = self.observe(None, new_only=False)
        return (None, None) if got is None else got

    def __exit__(self, et: Any, ev: Any, tb: Any) -> None:
        return None


# mimoCoRB2 names
BufferWriter = Writer
BufferReader = Reader
BufferObserver = Observer
