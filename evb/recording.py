"""Recorded output files: the built-event writer and a reader for both kinds (see docs/formats.md).

* Fragment stream (``--output`` without building): NSCLDAQ's orderer output, flattened fragments
  back to back, no header. Written by :class:`evb.sinks.FileSink`.
* Built-event file (``--output`` with ``--build-dt``): the 16-byte header of
  :func:`evb.eventfmt.event_file_header`, then ``u32 size`` + flattened fragments per event.
  Written by :class:`EventFileWriter`.

:func:`open_recording` tells them apart by the magic and maps the file (no copy).
"""

from __future__ import annotations

import logging
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import numpy.typing as npt

from evb.batch import FragmentBatch
from evb.builder import EventBatch
from evb.errors import EvbError, RemoteProtocolError
from evb.eventfmt import (
    EVENT_FILE_HEADER_BYTES,
    event_file_header,
    is_event_file,
    parse_event_stream,
)
from evb.sinks import writable as _writable
from evb.wire import parse_fragments

__all__ = [
    "EventFileWriter",
    "FragmentFileWriter",
    "Recording",
    "RecordingError",
    "open_recording",
]

log = logging.getLogger(__name__)

RecordingKind = Literal["events", "fragments"]


class RecordingError(EvbError):
    """A recorded file is unreadable or corrupt."""


class EventFileWriter:
    """Writes built events to a file or FIFO: the file header, then the events back to back.

    Args:
        path: file to create (truncated) or FIFO to open for writing.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._fd: int | None = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        mode = os.fstat(self._fd).st_mode
        # A FIFO reader may be slow: write non-blocking and wait on the loop (back-pressure).
        self._nonblocking = stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode)
        if self._nonblocking:
            os.set_blocking(self._fd, False)
        self._header_done = False
        self.events = 0
        self.fragments = 0
        self.bytes = 0

    async def write_events(self, events: EventBatch) -> None:
        if self._fd is None:
            raise ValueError(f"write to closed EventFileWriter {self.path}")
        if not self._header_done:
            self._header_done = True
            await self._write(memoryview(event_file_header()))
        if not len(events):
            return
        flat = events.flatten()
        await self._write(flat.data.cast("B"))
        self.events += len(events)
        self.fragments += len(events.fragments)
        self.bytes += len(flat)

    async def _write(self, view: memoryview) -> None:
        fd = self._fd
        assert fd is not None
        while len(view):
            try:
                done = os.write(fd, view)
            except BlockingIOError:
                await _writable(fd)
                continue
            view = view[done:]

    def status(self) -> dict[str, object]:
        return {"output": str(self.path), "output_events": self.events}

    async def close(self) -> None:
        if self._fd is None:
            return
        try:
            if not self._header_done:
                self._header_done = True
                await self._write(memoryview(event_file_header()))
        finally:
            fd, self._fd = self._fd, None
            os.close(fd)
        log.info("output %s closed: %d events, %d bytes", self.path, self.events, self.bytes)


class FragmentFileWriter:
    """Events written as their fragments only: the NSCLDAQ fragment stream (``nobuild``).

    Args:
        path: file to create (truncated) or FIFO.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        from evb.sinks import FileSink

        self._sink = FileSink(path)
        self.path = self._sink.path

    async def write_events(self, events: EventBatch) -> None:
        await self._sink.write(events.fragments)

    async def close(self) -> None:
        await self._sink.close()


@dataclass(frozen=True, slots=True)
class Recording:
    """A recorded file, mapped.

    Attributes:
        kind: ``"events"`` (built-event file) or ``"fragments"`` (NSCLDAQ fragment stream).
        events: the events; for a fragment stream, one fragment per event.
        data: the file's bytes after the header (a read-only memory map).
    """

    kind: RecordingKind
    events: EventBatch
    data: npt.NDArray[np.uint8]

    @property
    def built(self) -> bool:
        return self.kind == "events"

    @property
    def fragments(self) -> FragmentBatch:
        return self.events.fragments


def _map(path: Path) -> npt.NDArray[np.uint8]:
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise RecordingError(f"cannot read {path}: {exc.strerror}") from None
    if size == 0:
        return np.empty(0, np.uint8)
    return np.memmap(path, np.uint8, mode="r")


def open_recording(path: str | os.PathLike[str]) -> Recording:
    """Map and index a recorded file (either kind, told apart by the magic).

    Raises:
        RecordingError: unreadable, an unknown version, or a record overruns the file.
    """
    p = Path(path)
    raw = _map(p)
    try:
        if is_event_file(bytes(raw[:8])):
            if len(raw) < EVENT_FILE_HEADER_BYTES:
                raise RecordingError(f"{p}: truncated built-event file header")
            version = int(raw[8:12].view("<u4")[0])
            if version != 1:
                raise RecordingError(f"{p}: built-event file version {version}, expected 1")
            body = raw[EVENT_FILE_HEADER_BYTES:]
            return Recording("events", parse_event_stream(body), body)
        frags = parse_fragments(raw)
    except RemoteProtocolError as exc:
        raise RecordingError(f"{p}: corrupt recording: {exc}") from None
    n = len(frags)
    events = EventBatch(
        frags,
        np.arange(n, dtype=np.int64),
        np.ones(n, np.int64),
        frags.timestamps.astype(np.uint64),
    )
    return Recording("fragments", events, raw)
