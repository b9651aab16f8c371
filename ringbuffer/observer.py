"""The observer client: copies of the latest published slot, for monitors and displays."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import numpy as np

from ringbuffer import layout as L
from ringbuffer.clients import POLL_S, Client
from ringbuffer.layout import Role

if TYPE_CHECKING:
    from ringbuffer.ring import RingBuffer

__all__ = ["BufferObserver", "Observer"]


class Observer(Client):
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


BufferObserver = Observer  # mimoCoRB2 name
