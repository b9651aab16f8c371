"""Shared-memory multiple-in multiple-out ring buffers and a mimoCoRB2-style worker framework."""

from ringbuffer.errors import (
    BufferExistsError,
    BufferNotFoundError,
    ConfigError,
    RingBufferError,
    RingTimeoutError,
    SetupError,
    WorkerError,
)
from ringbuffer.layout import METADATA_DTYPE
from ringbuffer.ring import (
    BufferObserver,
    BufferReader,
    BufferWriter,
    Observer,
    ReadBatch,
    Reader,
    RingBuffer,
    WriteBatch,
    Writer,
    remove_buffer,
)

__all__ = [
    "METADATA_DTYPE",
    "BufferExistsError",
    "BufferNotFoundError",
    "BufferObserver",
    "BufferReader",
    "BufferWriter",
    "ConfigError",
    "Observer",
    "ReadBatch",
    "Reader",
    "RingBuffer",
    "RingBufferError",
    "RingTimeoutError",
    "SetupError",
    "WorkerError",
    "WriteBatch",
    "Writer",
    "remove_buffer",
]
