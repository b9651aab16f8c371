"""Control-socket framing (pure): u32 big-endian length, then one msgpack map.

Requests: ``{"script": str}`` evaluates a script; ``{"status": true}`` asks for the toolbar
figures. Replies: ``{"ok": true, "result": str, "output": str}`` or ``{"ok": false, "error": str,
"output": str}``; ``output`` is what the script printed with ``puts`` (may be absent).
A frame that is not a msgpack map of that form is a protocol error: the server closes that
connection only.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from typing import Any

import msgpack

from evb.errors import EvbError

__all__ = [
    "MAX_FRAME_BYTES",
    "ControlProtocolError",
    "FrameDecoder",
    "check_request",
    "encode_frame",
]

#: Largest frame either side accepts (a script or a result).
MAX_FRAME_BYTES = 16 * 1024 * 1024
_LEN = struct.Struct(">I")


class ControlProtocolError(EvbError):
    """A control peer sent a frame that is not valid."""


def encode_frame(message: Mapping[str, Any]) -> bytes:
    """One frame: length prefix + msgpack map."""
    body: bytes = msgpack.packb(dict(message), use_bin_type=True)
    if len(body) > MAX_FRAME_BYTES:
        raise ControlProtocolError(
            f"frame of {len(body)} bytes exceeds the maximum of {MAX_FRAME_BYTES}"
        )
    return _LEN.pack(len(body)) + body


class FrameDecoder:
    """Bytes in, decoded maps out; limits are checked before buffering a body."""

    def __init__(self, max_frame_bytes: int = MAX_FRAME_BYTES) -> None:
        self._buf = bytearray()
        self._max = max_frame_bytes

    def feed(self, data: bytes) -> list[dict[str, Any]]:
        """Add bytes; returns the complete frames.

        Raises:
            ControlProtocolError: an oversized frame, bad msgpack, or not a map.
        """
        self._buf += data
        out: list[dict[str, Any]] = []
        while len(self._buf) >= _LEN.size:
            (size,) = _LEN.unpack_from(self._buf)
            if size > self._max:
                raise ControlProtocolError(
                    f"frame of {size} bytes exceeds the maximum of {self._max}"
                )
            if len(self._buf) < _LEN.size + size:
                break
            body = bytes(self._buf[_LEN.size : _LEN.size + size])
            del self._buf[: _LEN.size + size]
            try:
                msg = msgpack.unpackb(body, raw=False, strict_map_key=True)
            except Exception as e:
                raise ControlProtocolError(f"frame is not valid msgpack: {e}") from None
            if not isinstance(msg, dict):
                raise ControlProtocolError(
                    f"frame must be a msgpack map, was {type(msg).__name__}"
                )
            out.append(msg)
        return out

    @property
    def pending_bytes(self) -> int:
        return len(self._buf)


def check_request(msg: Mapping[str, Any]) -> str | None:
    """Validate a request; returns the script, or None for a status request.

    Raises:
        ControlProtocolError: neither a string ``script`` nor ``status``.
    """
    if "script" in msg:
        script = msg["script"]
        if not isinstance(script, str):
            raise ControlProtocolError(
                f"'script' must be a string, was {type(script).__name__}"
            )
        return script
    if msg.get("status") is True:
        return None
    raise ControlProtocolError(
        f"request must have a 'script' string or 'status': true, had keys {sorted(map(str, msg))}"
    )
