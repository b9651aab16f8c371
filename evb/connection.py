"""One source connection of the ingest service: framing, decoding, replies, pause/resume.

:class:`Connection` is the asyncio protocol :class:`~evb.server.EvbServer` creates per accepted
client. Its state machine is ``forming -> active -> closed | lost | error``. It reads into a fixed
buffer of ``RECV_BUFFER_BYTES`` (one ``recv`` per event-loop iteration, the fairness quantum),
cuts the stream at message boundaries, decodes each message with :class:`~evb.wire.Decoder`,
submits fragments to the orderer and only then replies ``OK``. A large FRAGMENTS body is received
straight into its own buffer. Pausing and resuming its reads is decided by the server
(:meth:`EvbServer._update_reading <evb.server.EvbServer._update_reading>`); the connection
applies it with :meth:`Connection.set_reading`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import struct
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import numpy as np

from evb.errors import RemoteProtocolError
from evb.wire import (
    MESSAGE_HEADER_BYTES,
    Connect,
    Decoder,
    Disconnect,
    Fragments,
    MessageType,
    encode_error,
    parse_fragments,
)

if TYPE_CHECKING:
    from evb.server import EvbServer

__all__ = [
    "DIRECT_MIN_BYTES",
    "ERROR_LINGER_S",
    "RECV_BUFFER_BYTES",
    "REPLY_HIGH_WATER_BYTES",
    "REPLY_SNDBUF_BYTES",
    "Connection",
    "ConnectionInfo",
    "ConnectionState",
]

# The server's logger: connection events are logged as they were before the split.
log = logging.getLogger("evb.server")

ConnectionState = Literal["forming", "active", "closed", "lost", "error"]

#: Bytes read from one connection per event-loop iteration (the fairness quantum).
RECV_BUFFER_BYTES = 256 * 1024
#: FRAGMENTS bodies at least this large are received straight into their own buffer.
DIRECT_MIN_BYTES = 64 * 1024
#: Replies buffered for a client beyond which its connection stops being read.
REPLY_HIGH_WATER_BYTES = 64 * 1024
#: Kernel send buffer of a source connection (it carries replies only).
REPLY_SNDBUF_BYTES = 64 * 1024
#: After an ERROR reply, how long unread input is drained before the socket is closed.
ERROR_LINGER_S = 5.0

_OK = b"OK\n"
_EMPTY_VIEW = memoryview(b"")
# Where get_buffer() pointed the next read.
_STREAM, _HEADER_ONLY, _DIRECT = 0, 1, 2
_HEADER = struct.Struct("<II")


@dataclass(frozen=True, slots=True, kw_only=True)
class ConnectionInfo:
    """One source connection as ``EVB::connections`` shows it.

    Attributes:
        name: ``host:port`` of the peer.
        host: the peer's address.
        description: the description sent in CONNECT ("" while forming).
        state: ``forming``, ``active``, ``closed``, ``lost`` or ``error``.
        idle_s: seconds since data last arrived (0 once the connection is over).
    """

    name: str
    host: str
    description: str
    state: ConnectionState
    idle_s: float


class Connection(asyncio.BufferedProtocol):
    """One source connection: framing, decoding, replies, pause/resume."""

    def __init__(self, server: EvbServer) -> None:
        self.server = server
        self.decoder = Decoder(max_message_bytes=server.settings.max_message_bytes)
        self.buffer = bytearray(RECV_BUFFER_BYTES)
        self.view = memoryview(self.buffer)
        self.transport: asyncio.Transport | None = None
        self.name = "?"
        self.host = "?"
        self.description = ""
        self.source_ids: tuple[int, ...] = ()
        self.state: ConnectionState = "forming"
        self.last_data = time.monotonic()
        self.ended_at: float | None = None
        self.reading = True
        self.perq_paused = False
        self.write_paused = False
        self.discarding = False
        # Message framing, tracked here so a bad message never takes earlier ones with it.
        self._head = bytearray()
        self._body_left = 0
        self._stream_pos = 0
        self._hview = memoryview(bytearray(MESSAGE_HEADER_BYTES))
        self._header_only = False
        self._direct: np.ndarray | None = None
        self._direct_view = _EMPTY_VIEW
        self._direct_fill = 0
        self._target = _STREAM
        self._linger: asyncio.TimerHandle | None = None

    # ------------------------------------------------------------------ asyncio callbacks
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        peer = transport.get_extra_info("peername")
        if isinstance(peer, tuple) and len(peer) >= 2:
            self.host, port = str(peer[0]), int(peer[1])
            self.name = f"{self.host}:{port}"
        transport.set_write_buffer_limits(high=REPLY_HIGH_WATER_BYTES)
        sock = transport.get_extra_info("socket")
        if sock is not None:
            # Only short replies go this way; a small kernel buffer makes a client that never
            # reads them hit the high-water mark (and get paused) after a bounded backlog.
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, REPLY_SNDBUF_BYTES)
        self.server._connection_made(self)

    def get_buffer(self, sizehint: int) -> memoryview:
        if self._direct is not None:
            self._target = _DIRECT
            return self._direct_view[self._direct_fill :]
        if self._header_only and not self.discarding:
            self._target = _HEADER_ONLY
            return self._hview[: MESSAGE_HEADER_BYTES - len(self._head)]
        self._target = _STREAM
        return self.view

    def buffer_updated(self, nbytes: int) -> None:
        if self.discarding or self.state not in ("forming", "active"):
            return
        now = time.monotonic()
        self.last_data = now
        replies: list[bytes] = []
        try:
            if self._target == _DIRECT:
                self._direct_fill += nbytes
                self._body_left -= nbytes
                if self._body_left == 0:
                    replies.append(self._handle(self._finish_direct(now), now))
            else:
                data = self.view if self._target == _STREAM else self._hview
                self._consume(data[:nbytes], now, replies)
        except RemoteProtocolError as exc:
            self._flush_replies(replies)
            self._fail(exc.reason, now)
            return
        except Exception as exc:  # a bug or a core refusal: this connection only
            log.exception("connection %s: failed to handle a message", self.name)
            self._flush_replies(replies)
            self._fail(f"Internal error: {exc}", now)
            return
        self._flush_replies(replies)
        if self.server.orderer.xoff and self.reading:
            self.server._update_reading(self)  # an XOFF-exempt read may have filled its queue

    def _consume(self, data: memoryview, now: float, replies: list[bytes]) -> None:
        """Cut ``data`` at message boundaries; decode and handle each complete message.

        The decoder is fed one message at a time, so a bad message never takes the earlier
        ones of the same read with it. A large FRAGMENTS body is received straight into its
        own buffer (see :meth:`get_buffer`) instead of being copied by the decoder.
        """
        nbytes = len(data)
        pos = 0
        while pos < nbytes and self.state in ("forming", "active"):
            if self._body_left == 0:
                take = min(MESSAGE_HEADER_BYTES - len(self._head), nbytes - pos)
                self._head += data[pos : pos + take]
                pos += take
                if len(self._head) < MESSAGE_HEADER_BYTES:
                    break
                size, mtype = _HEADER.unpack(self._head)
                head = bytes(self._head)
                self._head.clear()
                self._stream_pos += MESSAGE_HEADER_BYTES
                if (
                    self.state == "active"
                    and mtype == MessageType.FRAGMENTS
                    and DIRECT_MIN_BYTES <= size <= self.decoder.max_message_bytes
                ):
                    self._direct = np.empty(size, np.uint8)
                    self._direct_view = self._direct.data.cast("B")
                    take = min(size, nbytes - pos)
                    self._direct_view[:take] = data[pos : pos + take]
                    pos += take
                    self._direct_fill = take
                    self._body_left = size - take
                    self._header_only = True
                    if self._body_left == 0:
                        replies.append(self._handle(self._finish_direct(now), now))
                    continue
                self._header_only = False
                self._body_left = size
                messages = self.decoder.feed(head, received=now)
            else:
                take = min(self._body_left, nbytes - pos)
                chunk = data[pos : pos + take]
                pos += take
                self._body_left -= take
                self._stream_pos += take
                messages = self.decoder.feed(chunk, received=now)
            for msg in messages:
                replies.append(self._handle(msg, now))

    def _finish_direct(self, now: float) -> Fragments:
        body = self._direct
        assert body is not None
        self._direct = None
        self._direct_view = _EMPTY_VIEW
        at = self._stream_pos
        self._stream_pos += len(body)
        return Fragments(parse_fragments(body, received=now, stream_offset=at))

    def eof_received(self) -> bool | None:
        return False  # close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        if self._linger is not None:
            self._linger.cancel()
        now = time.monotonic()
        if self.state in ("forming", "active"):
            try:
                if self._direct is not None:
                    raise RemoteProtocolError(
                        f"Connection closed in the middle of a message {len(self._direct)}-byte "
                        f"body ({self._direct_fill} bytes received)"
                    )
                self.decoder.feed_eof()
                if self.state == "active" or self._head or self._body_left:
                    log.warning("connection %s lost without DISCONNECT", self.name)
            except RemoteProtocolError as err:
                log.warning("connection %s lost: %s", self.name, err.reason)
            self.state = "lost"
            self.server._connection_ended(self, now)
        self.server._connection_gone(self)

    def pause_writing(self) -> None:
        self.write_paused = True
        self.server._update_reading(self)

    def resume_writing(self) -> None:
        self.write_paused = False
        self.server._update_reading(self)

    # ------------------------------------------------------------------ messages
    def _handle(self, msg: Connect | Fragments | Disconnect, now: float) -> bytes:
        server = self.server
        if isinstance(msg, Fragments):
            batch = msg.batch
            if len(batch):
                server.orderer.submit(batch, now, connection=self.name)
                server._note_input(len(batch), int(batch.buffers[0].nbytes))
            else:
                server.orderer.touch(self.name, now)
            return _OK
        if isinstance(msg, Connect):
            self.description = msg.description
            self.source_ids = msg.source_ids
            server.orderer.bind(self.name, msg.source_ids, now)
            self.state = "active"
            log.info(
                "connection %s active: %r sources %s",
                self.name,
                self.description,
                list(self.source_ids),
            )
            return _OK
        # DISCONNECT: reply, then close once the reply is out.
        self.state = "closed"
        log.info("connection %s closed by its source", self.name)
        server._connection_ended(self, now)
        return _OK

    def _flush_replies(self, replies: list[bytes]) -> None:
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        if replies:
            transport.write(replies[0] if len(replies) == 1 else b"".join(replies))
        if self.state == "closed":
            transport.close()
        else:
            self.server._kick()

    def _fail(self, reason: str, now: float) -> None:
        """Reply ``ERROR {reason}``, stop using the connection, drain then close it."""
        log.warning("connection %s: %s", self.name, reason)
        self.state = "error"
        self.discarding = True
        self.server._connection_ended(self, now)
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        transport.write(encode_error(reason))
        # Half-close and keep draining: closing with unread input would reset the connection
        # and could destroy the ERROR line before the client reads it.
        if transport.can_write_eof():
            transport.write_eof()
        self._linger = asyncio.get_running_loop().call_later(ERROR_LINGER_S, transport.abort)
        self.server._update_reading(self)

    # ------------------------------------------------------------------ flow
    def set_reading(self, want: bool) -> None:
        transport = self.transport
        if transport is None or transport.is_closing() or want == self.reading:
            return
        self.reading = want
        if want:
            transport.resume_reading()
        else:
            transport.pause_reading()

    def info(self, now: float) -> ConnectionInfo:
        end = self.ended_at
        return ConnectionInfo(
            name=self.name,
            host=self.host,
            description=self.description,
            state=self.state,
            idle_s=0.0 if end is not None else max(0.0, now - self.last_data),
        )
