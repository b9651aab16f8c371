"""Batches of consecutive slots, as :meth:`Writer.claim` and :meth:`Reader.claim` hand them out."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from ringbuffer.reader import Reader
    from ringbuffer.writer import Writer

__all__ = ["ReadBatch", "WriteBatch"]


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
