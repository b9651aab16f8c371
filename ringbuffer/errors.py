"""The exception tree of the ringbuffer package, split by who is at fault."""

from __future__ import annotations

__all__ = [
    "BufferExistsError",
    "BufferNotFoundError",
    "ConfigError",
    "RingBufferError",
    "RingTimeoutError",
    "SetupError",
    "WorkerError",
]


class RingBufferError(Exception):
    """Root of every error raised by :mod:`ringbuffer`."""


class ConfigError(RingBufferError, ValueError):
    """The user asked for something invalid (bad name, dtype, sizes, option)."""


class SetupError(ConfigError):
    """A worker setup (YAML) is invalid; the message names the key and, if known, the line."""


class BufferNotFoundError(RingBufferError, FileNotFoundError):
    """No shared-memory buffer with that name exists on this machine."""


class BufferExistsError(RingBufferError, FileExistsError):
    """A buffer with that name already exists (use ``evb-ring rm NAME`` to remove a leftover)."""


class RingTimeoutError(RingBufferError, TimeoutError):
    """A blocking call did not complete within its timeout."""


class WorkerError(RingBufferError):
    """A worker process failed (raised, or died)."""
