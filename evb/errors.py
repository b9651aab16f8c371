"""The exception tree of the evb package, split by who is at fault."""

from __future__ import annotations

__all__ = ["ConfigError", "EvbError", "RemoteProtocolError", "SourceError"]


class EvbError(Exception):
    """Root of every error raised by evb."""


class RemoteProtocolError(EvbError):
    """The peer sent bytes that break the NSCLDAQ protocol.

    Attributes:
        reason: what was wrong, as sent back in the ``ERROR {reason}`` reply.
        offset: byte offset in the stream where the problem was found.
    """

    def __init__(self, message: str, *, offset: int | None = None) -> None:
        self.reason = message
        if offset is not None:
            message = f"{message} (at byte {offset})"
        super().__init__(message)
        self.offset = offset


class ConfigError(EvbError, ValueError):
    """The user asked for something invalid (a bad setting, an unknown name)."""


class SourceError(EvbError):
    """The event builder refused what a source client sent (an ``ERROR`` reply)."""
