"""Sans-I/O codec of the NSCLDAQ 12 event-builder client protocol (spec section 1).

Bytes in, messages out: :class:`Decoder` is fed received bytes in chunks of any size and returns
:class:`Connect`, :class:`Fragments` and :class:`Disconnect` messages. ``FRAGMENTS`` bodies are
decoded into a columnar :class:`~evb.batch.FragmentBatch` whose buffer is the received body itself.
The encoders are pure functions that invert the decoder, plus the one-line replies.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import IntEnum

import numpy as np

from evb.batch import (
    FLAT_HEADER_BYTES,
    INDEX_DTYPE,
    Fragment,
    FragmentBatch,
    build_batch,
    concat_rows,
)
from evb.errors import RemoteProtocolError, SourceError

__all__ = [
    "DEFAULT_MAX_MESSAGE_BYTES",
    "DESCRIPTION_BYTES",
    "MESSAGE_HEADER_BYTES",
    "Connect",
    "Decoder",
    "Disconnect",
    "Fragments",
    "Message",
    "MessageType",
    "encode_connect",
    "encode_disconnect",
    "encode_error",
    "encode_fragments",
    "encode_message_header",
    "encode_ok",
    "parse_fragments",
    "parse_reply",
]

MESSAGE_HEADER_BYTES = 8
# The 20 wire-header bytes as one opaque field, in the index rows and in the received body
# (copied as raw 20-byte blocks: several times faster than field-by-field).
_WIRE_HEAD = np.dtype((np.void, FLAT_HEADER_BYTES))
_INDEX_HEAD = np.dtype(
    {"names": ["head"], "formats": [_WIRE_HEAD], "offsets": [0], "itemsize": INDEX_DTYPE.itemsize}
)
DESCRIPTION_BYTES = 80
DEFAULT_MAX_MESSAGE_BYTES = 64 * 1024 * 1024
_HEADER = struct.Struct("<II")
_U32 = struct.Struct("<I")


class MessageType(IntEnum):
    """Message types of the client-to-orderer protocol."""

    CONNECT = 1
    FRAGMENTS = 2
    DISCONNECT = 4


@dataclass(frozen=True, slots=True, kw_only=True)
class Connect:
    """First message of a connection: who the client is and which source ids it owns."""

    description: str
    source_ids: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class Fragments:
    """A batch of fragments (possibly empty)."""

    batch: FragmentBatch


@dataclass(frozen=True, slots=True)
class Disconnect:
    """The client is leaving; the server replies and closes."""


Message = Connect | Fragments | Disconnect


class Decoder:
    """Incremental decoder of one client connection's byte stream.

    Args:
        max_message_bytes: largest body accepted; a larger one is rejected from its header,
            before any of it is buffered.
        expect_connect: the first message must be ``CONNECT`` (true for servers).

    Raises from :meth:`feed`:
        RemoteProtocolError: with ``reason`` set to the text for the ``ERROR {...}`` reply.
    """

    def __init__(
        self, *, max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES, expect_connect: bool = True
    ) -> None:
        if max_message_bytes < 84:
            raise ValueError(f"max_message_bytes must be at least 84, was {max_message_bytes}")
        self.max_message_bytes = max_message_bytes
        self._need_connect = expect_connect
        self._head = bytearray()
        self._body: bytearray | None = None
        self._body_fill = 0
        self._type = 0
        self._stream_pos = 0  # bytes consumed before the current message header
        self._closed = False
        self.messages = 0

    @property
    def stream_position(self) -> int:
        """Bytes of the stream consumed so far."""
        return self._stream_pos + len(self._head) + self._body_fill

    @property
    def in_message(self) -> bool:
        """True while a message is partly received."""
        return bool(self._head) or self._body is not None

    def feed(self, data: bytes | bytearray | memoryview, *, received: float = 0.0) -> list[Message]:
        """Consume ``data``; return the messages it completed.

        ``received`` stamps the fragments' receipt time (seconds, the caller's clock).
        """
        if self._closed:
            if len(data):
                raise RemoteProtocolError("Data after DISCONNECT", offset=self.stream_position)
            return []
        out: list[Message] = []
        view = memoryview(data).cast("B")
        pos = 0
        n = len(view)
        while pos < n:
            if self._body is None:
                take = min(MESSAGE_HEADER_BYTES - len(self._head), n - pos)
                self._head += view[pos : pos + take]
                pos += take
                if len(self._head) < MESSAGE_HEADER_BYTES:
                    break
                self._start_body()
                if self._body is not None and len(self._body) == 0:
                    out.append(self._finish(received))
                    if self._closed and pos < n:
                        # A DISCONNECT (empty body) followed by more bytes in the same chunk.
                        raise RemoteProtocolError(
                            "Data after DISCONNECT", offset=self.stream_position
                        )
                continue
            body = self._body
            take = min(len(body) - self._body_fill, n - pos)
            body[self._body_fill : self._body_fill + take] = view[pos : pos + take]
            self._body_fill += take
            pos += take
            if self._body_fill == len(body):
                out.append(self._finish(received))
                if self._closed and pos < n:
                    raise RemoteProtocolError("Data after DISCONNECT", offset=self.stream_position)
        return out

    def feed_eof(self) -> None:
        """The peer closed its side. Raises if a message was cut off."""
        if self.in_message:
            got = len(self._head) if self._body is None else self._body_fill
            what = "header" if self._body is None else f"{len(self._body)}-byte body"
            raise RemoteProtocolError(
                f"Connection closed in the middle of a message {what} ({got} bytes received)",
                offset=self.stream_position,
            )

    def _start_body(self) -> None:
        size, mtype = _HEADER.unpack(self._head)
        at = self._stream_pos
        if self._need_connect and mtype != MessageType.CONNECT:
            raise RemoteProtocolError("Expected CONNECT", offset=at)
        if mtype not in (MessageType.CONNECT, MessageType.FRAGMENTS, MessageType.DISCONNECT):
            raise RemoteProtocolError(
                f"Unexpected header: type {mtype} body size {size}", offset=at
            )
        if mtype == MessageType.CONNECT and not self._need_connect:
            raise RemoteProtocolError("Unexpected header: CONNECT after CONNECT", offset=at)
        if size > self.max_message_bytes:
            raise RemoteProtocolError(
                f"Message body of {size} bytes exceeds the maximum of {self.max_message_bytes}",
                offset=at,
            )
        if mtype == MessageType.CONNECT and (size < 84 or (size - 84) % 4):
            raise RemoteProtocolError("Corrupt body in CONNECT message", offset=at)
        if mtype == MessageType.DISCONNECT and size != 0:
            raise RemoteProtocolError("Corrupt body in DISCONNECT message", offset=at)
        self._type = mtype
        self._body = bytearray(size)
        self._body_fill = 0

    def _finish(self, received: float) -> Message:
        body = self._body
        assert body is not None
        body_at = self._stream_pos + MESSAGE_HEADER_BYTES
        self._stream_pos += MESSAGE_HEADER_BYTES + len(body)
        self._head.clear()
        self._body = None
        self._body_fill = 0
        self.messages += 1
        if self._type == MessageType.CONNECT:
            self._need_connect = False
            return _decode_connect(body, body_at)
        if self._type == MessageType.DISCONNECT:
            self._closed = True
            return Disconnect()
        return Fragments(parse_fragments(body, received=received, stream_offset=body_at))


def _decode_connect(body: bytearray, at: int) -> Connect:
    (count,) = _U32.unpack_from(body, DESCRIPTION_BYTES)
    if len(body) != 84 + 4 * count:
        raise RemoteProtocolError("Corrupt body in CONNECT message", offset=at)
    desc = bytes(body[:DESCRIPTION_BYTES]).rstrip(b"\0 ").decode("latin-1")
    ids = struct.unpack_from(f"<{count}I", body, 84)
    return Connect(description=desc, source_ids=tuple(ids))


def parse_fragments(
    body: bytes | bytearray | memoryview | np.ndarray,
    *,
    received: float = 0.0,
    stream_offset: int = 0,
) -> FragmentBatch:
    """Decode back-to-back flattened fragments into a batch over ``body`` (no copy).

    Equal-sized neighbours are checked as one strided numpy view, so a body of same-size
    fragments costs a handful of numpy calls whatever its length.

    Raises:
        RemoteProtocolError: a fragment header or payload overruns the body.
    """
    buf = body if isinstance(body, np.ndarray) else np.frombuffer(body, np.uint8)
    n = len(buf)
    pieces: list[np.ndarray] = []
    pos = 0
    lookahead = 1024
    while pos < n:
        remaining = n - pos
        if remaining < FLAT_HEADER_BYTES:
            raise RemoteProtocolError(
                f"Fragment header overruns FRAGMENTS body: {remaining} bytes left, "
                f"a header needs {FLAT_HEADER_BYTES}",
                offset=stream_offset + pos,
            )
        (size,) = _U32.unpack_from(buf.data, pos + 12)
        rec_len = FLAT_HEADER_BYTES + size
        if rec_len > remaining:
            raise RemoteProtocolError(
                f"Fragment overruns FRAGMENTS body: payload of {size} bytes, "
                f"{remaining - FLAT_HEADER_BYTES} left",
                offset=stream_offset + pos,
            )
        k = min(remaining // rec_len, lookahead)
        # Copy the k candidate headers as one 20-byte block per row (the index starts with the
        # wire header's layout), then keep the leading run of equal-sized fragments.
        piece = np.empty(k, INDEX_DTYPE)
        piece.view(_INDEX_HEAD)["head"] = np.ndarray((k,), _WIRE_HEAD, buf, pos, (rec_len,))
        if k > 1:
            sizes = piece["payload_size"]
            if sizes[-1] != size or (sizes != size).any():
                run = int(np.argmax(sizes != size))
                piece = piece[:run]
            else:
                run = k
        else:
            run = 1
        piece["offset"] = np.arange(pos, pos + run * rec_len, rec_len, dtype=np.int64)
        pieces.append(piece)
        pos += run * rec_len
        lookahead = 4096 if run == k else max(8, run * 2)
    if not pieces:
        index = np.empty(0, INDEX_DTYPE)
    elif len(pieces) == 1:
        index = pieces[0]
    else:
        index = concat_rows(pieces)
    index["buf"] = 0
    index["received"] = received
    return FragmentBatch(index, (buf,))


def encode_message_header(mtype: MessageType, body_size: int) -> bytes:
    """The 8-byte message header."""
    return _HEADER.pack(body_size, int(mtype))


def encode_connect(description: str, source_ids: Iterable[int]) -> bytes:
    """A complete ``CONNECT`` message."""
    desc = description.encode("latin-1")
    if len(desc) > DESCRIPTION_BYTES:
        raise ValueError(f"description must be at most {DESCRIPTION_BYTES} bytes, was {len(desc)}")
    ids = [int(i) for i in source_ids]
    for i in ids:
        if not 0 <= i <= 0xFFFF_FFFF:
            raise ValueError(f"source id must fit in 32 unsigned bits, was {i}")
    body = desc.ljust(DESCRIPTION_BYTES, b"\0") + struct.pack(f"<I{len(ids)}I", len(ids), *ids)
    return encode_message_header(MessageType.CONNECT, len(body)) + body


def encode_fragments(fragments: FragmentBatch | Sequence[Fragment]) -> bytes:
    """A complete ``FRAGMENTS`` message."""
    batch = fragments if isinstance(fragments, FragmentBatch) else build_batch(fragments)
    body = batch.flatten()
    return encode_message_header(MessageType.FRAGMENTS, len(body)) + body.tobytes()


def encode_disconnect() -> bytes:
    """A complete ``DISCONNECT`` message."""
    return encode_message_header(MessageType.DISCONNECT, 0)


def encode_ok() -> bytes:
    return b"OK\n"


def encode_error(reason: str) -> bytes:
    """The ``ERROR {reason}`` reply line (newlines and braces in ``reason`` are neutralised)."""
    clean = reason.replace("\n", " ").replace("\r", " ").replace("{", "(").replace("}", ")")
    return f"ERROR {{{clean}}}\n".encode("latin-1", "replace")


def parse_reply(line: bytes) -> None:
    """Check one reply line; raise :class:`SourceError` with the server's reason on ``ERROR``."""
    text = line.decode("latin-1").rstrip("\r\n")
    if text == "OK":
        return
    if text.startswith("ERROR"):
        reason = text[5:].strip()
        if reason.startswith("{") and reason.endswith("}"):
            reason = reason[1:-1]
        raise SourceError(reason)
    raise SourceError(f"unexpected reply from the event builder: {text!r}")
