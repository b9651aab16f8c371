"""Shared-memory multiple-in multiple-out ring buffers and a mimoCoRB2-style worker framework.

The names below are loaded on first use (PEP 562), so importing the pure layout module
(``ringbuffer.layout``) does not pull in the I/O modules.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ringbuffer.batches import ReadBatch, WriteBatch
    from ringbuffer.cleanup import remove_buffer
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
    from ringbuffer.observer import BufferObserver, Observer
    from ringbuffer.reader import BufferReader, Reader
    from ringbuffer.ring import RingBuffer
    from ringbuffer.writer import BufferWriter, Writer

_WHERE = {
    "BufferExistsError": "ringbuffer.errors",
    "BufferNotFoundError": "ringbuffer.errors",
    "ConfigError": "ringbuffer.errors",
    "RingBufferError": "ringbuffer.errors",
    "RingTimeoutError": "ringbuffer.errors",
    "SetupError": "ringbuffer.errors",
    "WorkerError": "ringbuffer.errors",
    "METADATA_DTYPE": "ringbuffer.layout",
    "BufferObserver": "ringbuffer.observer",
    "BufferReader": "ringbuffer.reader",
    "BufferWriter": "ringbuffer.writer",
    "Observer": "ringbuffer.observer",
    "ReadBatch": "ringbuffer.batches",
    "Reader": "ringbuffer.reader",
    "RingBuffer": "ringbuffer.ring",
    "WriteBatch": "ringbuffer.batches",
    "Writer": "ringbuffer.writer",
    "remove_buffer": "ringbuffer.cleanup",
}

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


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'ringbuffer' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
