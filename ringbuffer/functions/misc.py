"""Prebuilt ``misc.copy``: duplicate a stream into one or more sinks."""

from __future__ import annotations

from ringbuffer.worker import BufferIO, Filter

__all__ = ["copy"]


def copy(buffer_io: BufferIO) -> None:
    """Filter: copy every slot of the source to every sink (same dtype and length)."""
    Filter(buffer_io)(lambda data: True)
