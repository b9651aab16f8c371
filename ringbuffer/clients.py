"""What every ring client shares: its row in the segment's client table, claim results, waits.

Writers, readers and observers register a row (pid, start time, role, group, the sequence
numbers they hold, counts); :meth:`RingBuffer.reap` gives back what dead clients held, and a
client that is closed or collected gives back its own slots first.
"""

from __future__ import annotations

import contextlib
import os
import time
import weakref
from typing import TYPE_CHECKING

from ringbuffer import layout as L
from ringbuffer.layout import Role
from ringbuffer.shm import follow_pid

if TYPE_CHECKING:
    from ringbuffer.ring import RingBuffer

__all__ = [
    "CLAIM_END",
    "CLAIM_PAUSED",
    "CLAIM_SHUTDOWN",
    "CLAIM_TIMEOUT",
    "POLL_S",
    "REAP_EVERY_S",
    "SPIN_CHECKS",
    "SPIN_YIELDS",
    "Client",
    "ClientInfo",
]

SPIN_CHECKS = 50  # cheap re-checks before a waiter sleeps on its semaphore
# then re-checks after sched_yield: a peer sharing the CPU runs first and fills/drains a few
# slots, instead of a futex sleep + wake-up (two context switches) per slot
SPIN_YIELDS = 100
POLL_S = 0.02  # longest sleep of a blocked waiter before it re-checks the ring
REAP_EVERY_S = 0.25  # how often a blocked waiter looks for dead peers

_PID = follow_pid(globals())

# results of a claim that got no slot (a claim that got slots returns the sequence number)
CLAIM_TIMEOUT = -1
CLAIM_PAUSED = -2
CLAIM_SHUTDOWN = -3
CLAIM_END = -4

# ---------------------------------------------------------------------------------------------
# client table


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


# ---------------------------------------------------------------------------------------------
# the part every client shares


class Client:
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
