"""Client library for event-builder sources (NSCLDAQ 12 protocol), blocking and asyncio.

Example:
    >>> with SourceClient.connect("127.0.0.1", port, "my source", [1, 2]) as client:
    ...     client.send([Fragment(timestamp=10, source_id=1, payload=b"abc")])
    ...     client.send_columns(timestamps, 2, payload_matrix)

Every message is acknowledged by one reply line; an ``ERROR`` reply raises
:class:`~evb.errors.SourceError` carrying the server's reason. By default each ``send`` waits
for its ``OK``; ``window=N`` keeps up to N messages unacknowledged (pipelining), and
:meth:`SourceClient.flush` waits for all outstanding replies.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Iterable, Sequence
from types import TracebackType

import numpy as np
import numpy.typing as npt

from evb.batch import FLAT_HEADER_BYTES, Fragment, FragmentBatch, build_batch
from evb.errors import SourceError
from evb.wire import (
    MessageType,
    encode_connect,
    encode_disconnect,
    encode_message_header,
    parse_reply,
)
from sources.simulated import flatten_columns

__all__ = ["AsyncSourceClient", "SourceClient", "message_body"]

Sendable = FragmentBatch | Sequence[Fragment]
Body = bytes | bytearray | memoryview | npt.NDArray[np.uint8]


def message_body(fragments: Sendable) -> Body:
    """The FRAGMENTS body for ``fragments``, without a copy when a batch is already flat."""
    if not isinstance(fragments, FragmentBatch):
        return build_batch(fragments).buffers[0] if fragments else b""
    batch = fragments
    n = len(batch)
    if n == 0:
        return b""
    idx = batch.index
    if len(batch.buffers) == 1 and int(idx["offset"][0]) == 0:
        lens = idx["payload_size"].astype(np.int64) + FLAT_HEADER_BYTES
        buf = batch.buffers[0]
        if int(lens.sum()) == len(buf) and (n == 1 or bool(
            (idx["offset"][1:] == idx["offset"][:-1] + lens[:-1]).all()
        )):
            return buf
    return batch.flatten()


def _columns_body(
    timestamps: npt.ArrayLike,
    source_ids: npt.ArrayLike,
    payloads: npt.NDArray[np.uint8] | Sequence[bytes],
    barrier_types: npt.ArrayLike | None,
) -> Body:
    return flatten_columns(timestamps, source_ids, payloads, barrier_types).buffers[0]


def _view(body: Body) -> memoryview:
    if isinstance(body, np.ndarray):
        return body.data.cast("B")
    return memoryview(body).cast("B")


def _body_len(body: Body) -> int:
    return int(body.nbytes) if isinstance(body, np.ndarray | memoryview) else len(body)


class SourceClient:
    """A blocking connection to the event builder.

    Use :meth:`connect` to create one. Args of the constructor: a connected socket on which
    CONNECT has been acknowledged, and the pipelining ``window``.
    """

    def __init__(self, sock: socket.socket, *, window: int = 1) -> None:
        if window < 1:
            raise ValueError(f"window must be >= 1, was {window}")
        self._sock = sock
        self._window = window
        self._pending = 0
        self._rbuf = bytearray()
        self._closed = False
        self.messages_sent = 0
        self.fragments_sent = 0
        self.bytes_sent = 0

    @classmethod
    def connect(
        cls,
        host: str,
        port: int,
        description: str,
        source_ids: Iterable[int],
        *,
        window: int = 1,
        timeout_s: float | None = None,
    ) -> SourceClient:
        """Connect, send CONNECT and wait for its ``OK``.

        Raises:
            SourceError: the server refused the connection (``ERROR`` reply) or closed it.
            OSError: the connection could not be made.
        """
        sock = socket.create_connection((host, port), timeout=timeout_s)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            client = cls(sock, window=window)
            client._sendall([encode_connect(description, source_ids)])
            client._pending += 1
            client.flush()
        except BaseException:
            sock.close()
            raise
        return client

    @property
    def socket(self) -> socket.socket:
        return self._sock

    def send(self, fragments: Sendable) -> None:
        """Send one FRAGMENTS message (a batch or a list of fragments)."""
        n = len(fragments)
        self.send_body(message_body(fragments), fragments=n)

    def send_columns(
        self,
        timestamps: npt.ArrayLike,
        source_ids: npt.ArrayLike,
        payloads: npt.NDArray[np.uint8] | Sequence[bytes],
        barrier_types: npt.ArrayLike | None = None,
    ) -> None:
        """Send one FRAGMENTS message built from columns (payloads: 2-D uint8 or list of bytes)."""
        body = _columns_body(timestamps, source_ids, payloads, barrier_types)
        self.send_body(body, fragments=len(np.asarray(timestamps).reshape(-1)))

    def send_body(self, body: Body, *, fragments: int = 0) -> None:
        """Send an already flattened FRAGMENTS body (fragments back to back)."""
        size = _body_len(body)
        self._sendall([encode_message_header(MessageType.FRAGMENTS, size), body])
        self._pending += 1
        self.messages_sent += 1
        self.fragments_sent += fragments
        self.bytes_sent += size
        while self._pending >= self._window:
            self._read_reply()

    def flush(self) -> None:
        """Wait for the replies of every message sent."""
        while self._pending:
            self._read_reply()

    def disconnect(self) -> None:
        """Wait for outstanding replies, send DISCONNECT, wait for its reply, close. Idempotent."""
        if self._closed:
            return
        try:
            self.flush()
            self._sendall([encode_disconnect()])
            self._pending += 1
            self.flush()
        finally:
            self.close()

    def close(self) -> None:
        """Close the socket without the DISCONNECT handshake. Idempotent."""
        self._closed = True
        self._sock.close()

    def __enter__(self) -> SourceClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            self.disconnect()
        else:
            self.close()

    def _sendall(self, parts: list[Body]) -> None:
        views = [_view(p) for p in parts if _body_len(p)]
        while views:
            sent = self._sock.sendmsg(views)
            while views and sent >= len(views[0]):
                sent -= len(views[0])
                views.pop(0)
            if sent:
                views[0] = views[0][sent:]

    def _read_reply(self) -> None:
        while True:
            nl = self._rbuf.find(b"\n")
            if nl >= 0:
                line = bytes(self._rbuf[: nl + 1])
                del self._rbuf[: nl + 1]
                self._pending -= 1
                parse_reply(line)
                return
            chunk = self._sock.recv(65536)
            if not chunk:
                raise SourceError("the event builder closed the connection")
            self._rbuf += chunk


class AsyncSourceClient:
    """The asyncio flavour of :class:`SourceClient` (same methods, awaited)."""

    def __init__(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, window: int = 1
    ) -> None:
        if window < 1:
            raise ValueError(f"window must be >= 1, was {window}")
        self._reader = reader
        self._writer = writer
        self._window = window
        self._pending = 0
        self._closed = False
        self.messages_sent = 0
        self.fragments_sent = 0
        self.bytes_sent = 0

    @classmethod
    async def connect(
        cls,
        host: str,
        port: int,
        description: str,
        source_ids: Iterable[int],
        *,
        window: int = 1,
    ) -> AsyncSourceClient:
        """Connect, send CONNECT and wait for its ``OK`` (raises SourceError on ``ERROR``)."""
        reader, writer = await asyncio.open_connection(host, port)
        client = cls(reader, writer, window=window)
        try:
            writer.write(encode_connect(description, source_ids))
            client._pending += 1
            await client.flush()
        except BaseException:
            await client.close()
            raise
        return client

    async def send(self, fragments: Sendable) -> None:
        """Send one FRAGMENTS message (a batch or a list of fragments)."""
        await self.send_body(message_body(fragments), fragments=len(fragments))

    async def send_columns(
        self,
        timestamps: npt.ArrayLike,
        source_ids: npt.ArrayLike,
        payloads: npt.NDArray[np.uint8] | Sequence[bytes],
        barrier_types: npt.ArrayLike | None = None,
    ) -> None:
        """Send one FRAGMENTS message built from columns."""
        body = _columns_body(timestamps, source_ids, payloads, barrier_types)
        await self.send_body(body, fragments=len(np.asarray(timestamps).reshape(-1)))

    async def send_body(self, body: Body, *, fragments: int = 0) -> None:
        """Send an already flattened FRAGMENTS body."""
        size = _body_len(body)
        self._writer.write(encode_message_header(MessageType.FRAGMENTS, size))
        if size:
            self._writer.write(_view(body))
        self._pending += 1
        self.messages_sent += 1
        self.fragments_sent += fragments
        self.bytes_sent += size
        await self._writer.drain()
        while self._pending >= self._window:
            await self._read_reply()

    async def flush(self) -> None:
        """Wait for the replies of every message sent."""
        await self._writer.drain()
        while self._pending:
            await self._read_reply()

    async def disconnect(self) -> None:
        """Send DISCONNECT after outstanding replies, wait for its reply, close. Idempotent."""
        if self._closed:
            return
        try:
            await self.flush()
            self._writer.write(encode_disconnect())
            self._pending += 1
            await self.flush()
        finally:
            await self.close()

    async def close(self) -> None:
        """Close without the DISCONNECT handshake. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._writer.close()
        with contextlib.suppress(ConnectionError, OSError):
            await self._writer.wait_closed()

    async def __aenter__(self) -> AsyncSourceClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            await self.disconnect()
        else:
            await self.close()

    async def _read_reply(self) -> None:
        line = await self._reader.readline()
        if not line.endswith(b"\n"):
            raise SourceError("the event builder closed the connection")
        self._pending -= 1
        parse_reply(line)
