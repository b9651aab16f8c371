"""A crash-tolerant lock over processes: a named semaphore plus the holder's pid in the header.

Uncontended it stays in user space; a waiter that cannot get it within ``LOCK_TIMEOUT_S``
checks the holder, and a lock held by a dead process is recovered.
"""

from __future__ import annotations

import logging
from typing import Any

from ringbuffer.shm import flocked, follow_pid, pid_alive

__all__ = ["LOCK_TIMEOUT_S", "ProcessLock"]

log = logging.getLogger(__name__)

LOCK_TIMEOUT_S = 0.5  # a lock held this long makes a waiter check its owner

_PID = follow_pid(globals())


class ProcessLock:
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
