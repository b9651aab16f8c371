"""Output sinks: where the ordered stream goes.

A sink receives :class:`~evb.batch.FragmentBatch` objects in output order from the server's single
writer task. ``write`` may wait (that is back-pressure: the orderer counts emitted-but-unwritten
bytes toward XOFF). The ringbuffer output of a later issue implements the same protocol.
"""

from __future__ import annotations

import asyncio
import logging
import os
import select
import stat
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from evb.batch import FLAT_HEADER_BYTES, FragmentBatch

__all__ = ["FileSink", "NullSink", "Sink", "flat_pieces"]

log = logging.getLogger(__name__)

# Below this average run size a numpy gather into one buffer beats a writev of many slices.
_WRITEV_MIN_AVG_RUN_BYTES = 4096
_IOV_MAX = 1024


@runtime_checkable
class Sink(Protocol):
    """Destination of the ordered stream."""

    async def write(self, batch: FragmentBatch) -> None:
        """Write ``batch`` (in row order). May wait: that is back-pressure."""

    async def close(self) -> None:
        """Flush and release; idempotent."""


class NullSink:
    """Discards everything, counting what it was given."""

    def __init__(self) -> None:
        self.fragments = 0
        self.flat_bytes = 0
        self.closed = False

    async def write(self, batch: FragmentBatch) -> None:
        self.fragments += len(batch)
        self.flat_bytes += batch.flat_bytes()

    async def close(self) -> None:
        self.closed = True


def flat_pieces(batch: FragmentBatch) -> list[memoryview] | None:
    """The flattened form of ``batch`` as buffer slices (no copy), or None if too fragmented.

    Consecutive rows that sit back to back in one buffer form one slice. When the average slice
    is small (many small interleaved fragments) None is returned: a numpy gather
    (:meth:`FragmentBatch.flatten`) is then cheaper than a system call vector of tiny slices.
    """
    n = len(batch)
    if n == 0:
        return []
    idx = batch.index
    lens = idx["payload_size"].astype(np.int64) + FLAT_HEADER_BYTES
    starts = idx["offset"]
    bufs = idx["buf"]
    brk = np.flatnonzero((bufs[1:] != bufs[:-1]) | (starts[1:] != starts[:-1] + lens[:-1]))
    nruns = len(brk) + 1
    total = int(lens.sum())
    if total < nruns * _WRITEV_MIN_AVG_RUN_BYTES:
        return None
    run_first = np.concatenate(([0], brk + 1))
    run_last = np.concatenate((brk, [n - 1]))
    run_start = starts[run_first]
    run_end = starts[run_last] + lens[run_last]
    run_buf = bufs[run_first]
    views = [b.data.cast("B") for b in batch.buffers]
    return [
        views[b][s:e]
        for b, s, e in zip(run_buf.tolist(), run_start.tolist(), run_end.tolist(), strict=True)
    ]


def _advance(pieces: list[memoryview], i: int, chunk: list[memoryview], done: int) -> int:
    """After a (possibly partial) write of ``chunk`` = ``pieces[i:...]``: the next index."""
    for p in chunk:
        if done >= len(p):
            done -= len(p)
            i += 1
        else:
            pieces[i] = p[done:]
            break
    return i


async def writable(fd: int) -> None:
    """Wait until the non-blocking file descriptor ``fd`` can be written."""
    loop = asyncio.get_running_loop()
    ready: asyncio.Future[None] = loop.create_future()

    def on_ready() -> None:
        if not ready.done():
            ready.set_result(None)

    loop.add_writer(fd, on_ready)
    try:
        await ready
    finally:
        loop.remove_writer(fd)


class FileSink:
    """Writes the ordered stream to a file (or FIFO) as flattened fragments, back to back.

    The output is NSCLDAQ's orderer output, byte for byte: each fragment's 20-byte header
    (timestamp, source id, payload size, barrier type) followed by its payload. Large fragments are
    written straight from the received buffers with ``writev``; small ones are gathered first.

    Writes of at least ``thread_min_bytes`` run in a worker thread (the system call releases the
    GIL), so copying the output overlaps with receiving input on a second core: measured with
    ``benchmarks/bench_e2e.py``, see docs/server.md.

    Args:
        path: file to create (truncated) or FIFO to open for writing.
        thread_min_bytes: smallest write handed to a worker thread; None: never.
    """

    def __init__(
        self, path: str | os.PathLike[str], *, thread_min_bytes: int | None = 256 * 1024
    ) -> None:
        self.path = Path(path)
        self.thread_min_bytes = thread_min_bytes
        # O_APPEND not used: a FIFO or /dev/shm file is written sequentially by one writer.
        self._fd: int | None = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        mode = os.fstat(self._fd).st_mode
        # A FIFO or socket can block for as long as its reader wants: write it non-blocking and
        # wait for room on the event loop, so the server stays responsive (and applies XOFF).
        self._nonblocking = stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode)
        if self._nonblocking:
            os.set_blocking(self._fd, False)
        self.fragments = 0
        self.flat_bytes = 0

    async def write(self, batch: FragmentBatch) -> None:
        if self._fd is None:
            raise ValueError(f"write to closed FileSink {self.path}")
        if len(batch) == 0:
            return
        flat = batch.flat_bytes()
        if self.thread_min_bytes is not None and flat >= self.thread_min_bytes:
            await asyncio.to_thread(self._write_batch_blocking, batch)
        else:
            pieces = flat_pieces(batch)
            if pieces is None:
                pieces = [batch.flatten().data.cast("B")]
            await self._write_all(pieces)
        self.fragments += len(batch)
        self.flat_bytes += flat

    def _write_batch_blocking(self, batch: FragmentBatch) -> None:
        """Worker-thread write: gather and write, waiting for room on a FIFO with select."""
        fd = self._fd
        assert fd is not None
        pieces = flat_pieces(batch)
        if pieces is None:
            pieces = [batch.flatten().data.cast("B")]
        i = 0
        while i < len(pieces):
            chunk = pieces[i : i + _IOV_MAX]
            try:
                done = os.writev(fd, chunk)
            except BlockingIOError:
                select.select([], [fd], [], 1.0)
                continue
            i = _advance(pieces, i, chunk, done)

    async def _write_all(self, pieces: list[memoryview]) -> None:
        fd = self._fd
        assert fd is not None
        i = 0
        while i < len(pieces):
            chunk = pieces[i : i + _IOV_MAX]
            try:
                done = os.writev(fd, chunk)
            except BlockingIOError:
                await writable(fd)
                continue
            i = _advance(pieces, i, chunk, done)

    async def close(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)
            log.info(
                "output %s closed: %d fragments, %d bytes",
                self.path,
                self.fragments,
                self.flat_bytes,
            )
