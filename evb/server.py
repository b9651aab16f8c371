"""The asyncio TCP ingest service: NSCLDAQ 12 sources in, an ordered stream out.

Layout (see docs/server.md):

- one :class:`~evb.connection.Connection` protocol per source connection (state machine
  ``forming -> active -> closed | lost | error``, in ``evb/connection.py``) reads into a fixed
  buffer, cuts the stream at message boundaries, decodes each message with
  :class:`~evb.wire.Decoder`, submits fragments to the orderer and only then replies ``OK``;
- one driver task polls the orderer after input and at its deadlines (window, barrier timeout,
  source timeout) and queues the emitted batches;
- one writer task hands batches to the :class:`~evb.sinks.Sink` and reports them written, which
  is where XON comes from when the output is the bottleneck;
- :meth:`EvbServer.status` reports rates computed in ``evb/status.py``.

Flow control is the orderer's accounting turned into ``pause_reading``/``resume_reading``: global
XOFF pauses every connection (and one accepted while XOFF is on starts paused), per-queue XOFF
pauses its connection, and a client that does not read its replies is paused when its reply
buffer passes the transport's high-water mark. Each connection gets one ``recv`` of at most
``RECV_BUFFER_BYTES`` per event-loop iteration, so a fast source cannot starve the others.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from typing import Any, TypeVar

from evb.batch import FragmentBatch
from evb.connection import DIRECT_MIN_BYTES as DIRECT_MIN_BYTES
from evb.connection import ERROR_LINGER_S as ERROR_LINGER_S
from evb.connection import RECV_BUFFER_BYTES as RECV_BUFFER_BYTES
from evb.connection import REPLY_HIGH_WATER_BYTES as REPLY_HIGH_WATER_BYTES
from evb.connection import REPLY_SNDBUF_BYTES as REPLY_SNDBUF_BYTES
from evb.connection import Connection, ConnectionInfo, ConnectionState
from evb.notify import FlowChange, Notification
from evb.orderer import Orderer, Output
from evb.settings import ServerSettings
from evb.sinks import FileSink, NullSink, Sink
from evb.status import SAMPLE_EVERY_S, SAMPLES_KEPT, Sample, rates, sink_status

__all__ = ["ConnectionInfo", "ConnectionState", "EvbServer", "default_sink", "serve"]

log = logging.getLogger(__name__)

Listener = Callable[[Notification], object]
T = TypeVar("T")

#: Output gathered into one sink write at most (flat bytes), so one write stays bounded.
MAX_WRITE_BYTES = 16 * 1024 * 1024
#: The driver polls at least this often even without input or deadlines.
IDLE_POLL_S = 1.0
#: Closed connections remembered for ``connections()``.
CLOSED_HISTORY = 256


class EvbServer:
    """A running ingest service. Create it with :func:`serve`.

    Attributes:
        settings: the settings it was started with.
        orderer: the ordering core (use it on the event loop's thread only).
        sink: where the ordered stream goes.
    """

    def __init__(
        self, settings: ServerSettings, sink: Sink | None = None, orderer: Orderer | None = None
    ) -> None:
        self.settings = settings
        self.orderer = orderer or Orderer(settings.orderer_config())
        if sink is None:
            sink = default_sink(settings)
        self.sink: Sink = sink
        self._server: asyncio.Server | None = None
        self._address: tuple[str, int] = (settings.host, settings.port)
        self._live: dict[str, Connection] = {}
        self._all: dict[int, Connection] = {}
        self._ended: deque[Connection] = deque(maxlen=CLOSED_HISTORY)
        self._listeners: list[Listener] = []
        self._outq: deque[FragmentBatch] = deque()
        self._out_ready = asyncio.Event()
        self._wake = asyncio.Event()
        self._output_done = False
        self._driver: asyncio.Task[None] | None = None
        self._writer: asyncio.Task[None] | None = None
        self._shutdown_task: asyncio.Task[None] | None = None
        self._closed = False
        self.failed: BaseException | None = None
        # Counters behind status(): (time, fragments in, bytes in, fragments out, bytes out).
        self._frags_in = 0
        self._bytes_in = 0
        self._frags_out = 0
        self._bytes_out = 0
        self._samples: deque[Sample] = deque(maxlen=SAMPLES_KEPT)

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        """Start listening and the driver and writer tasks."""
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: Connection(self),
            self.settings.host,
            self.settings.port,
            reuse_address=True,
        )
        sock = self._server.sockets[0]
        host, port = sock.getsockname()[:2]
        self._address = (str(host), int(port))
        self._driver = asyncio.create_task(self._drive(), name="evb-driver")
        self._writer = asyncio.create_task(self._write_output(), name="evb-writer")
        self._writer.add_done_callback(self._writer_done)
        log.info("listening on %s:%d", *self._address)

    @property
    def address(self) -> tuple[str, int]:
        """(host, port) actually listened on."""
        return self._address

    async def shutdown(self) -> None:
        """Stop accepting, flush every queue, write all output, close. Idempotent."""
        if self._shutdown_task is None:
            self._shutdown_task = asyncio.create_task(self._shutdown(), name="evb-shutdown")
        await asyncio.shield(self._shutdown_task)

    async def _shutdown(self) -> None:
        log.info("shutting down: flushing %d queued fragments", self.orderer.queued_fragments)
        if self._server is not None:
            self._server.close()
        for conn in list(self._live.values()):
            conn.set_reading(False)
        await _cancel(self._driver)
        if self.failed is None:
            self._ship(self.orderer.flush(time.monotonic()))
        self._output_done = True
        self._out_ready.set()
        if self._writer is not None:
            # wait() never raises: a writer that failed or was cancelled (close()) is done too.
            await asyncio.wait({self._writer})
        try:
            await self.sink.close()
        except Exception as exc:
            # e.g. the last built event does not fit a ring slot: data was not written
            log.exception("closing the output failed")
            if self.failed is None:
                self.failed = exc
        for conn in list(self._all.values()):
            if conn.transport is not None:
                conn.transport.close()
        if self._server is not None:
            await self._server.wait_closed()
        self._closed = True
        log.info("shut down: %d fragments written", self._frags_out)

    def close(self) -> None:
        """Stop at once without flushing (emergency stop). Idempotent; prefer :meth:`shutdown`."""
        if self._server is not None:
            self._server.close()
        for conn in list(self._all.values()):
            if conn.transport is not None:
                conn.transport.abort()
        for task in (self._driver, self._writer):
            if task is not None:
                task.cancel()
        self._closed = True

    # ------------------------------------------------------------------ shell API
    def connections(self) -> list[ConnectionInfo]:
        """Live connections, then recently ended ones."""
        now = time.monotonic()
        live = [c.info(now) for c in self._live.values()]
        return live + [c.info(now) for c in self._ended]

    def add_listener(self, fn: Listener) -> None:
        """Call ``fn(notification)`` for every notification (on the event loop's thread)."""
        self._listeners.append(fn)

    def remove_listener(self, fn: Listener) -> None:
        with contextlib.suppress(ValueError):
            self._listeners.remove(fn)

    def apply(self, fn: Callable[[Orderer, float], T]) -> T:
        """Run ``fn(orderer, now)``; ship an :class:`Output` it returns; re-arm the driver."""
        result = fn(self.orderer, time.monotonic())
        if isinstance(result, Output):
            self._ship(result)
        self._kick()
        return result

    def status(self) -> dict[str, Any]:
        """Figures for a live status bar (rates over the last second)."""
        now = time.monotonic()
        self._sample(now)
        st = self.orderer.stats()
        return {
            **rates(self._samples, now),
            "fragments_in": self._frags_in,
            "fragments_out": self._frags_out,
            "queued_fragments": self.orderer.queued_fragments,
            "queued_bytes": self.orderer.queued_bytes,
            "inflight_bytes": self.orderer.inflight_bytes,
            "xoff": self.orderer.xoff,
            "paused_connections": sorted(self.orderer.paused_connections),
            "late": int(st["late"]),
            "duplicates": int(st["duplicates"]),
            "connections": len(self._live),
            # the output's own figures (events built, ring waits and fill level), if it has any
            "output": sink_status(self.sink),
        }

    # ------------------------------------------------------------------ connections
    def _connection_made(self, conn: Connection) -> None:
        if self._shutdown_task is not None:
            assert conn.transport is not None
            conn.transport.abort()
            return
        self._all[id(conn)] = conn
        self._live[conn.name] = conn
        log.info("connection from %s", conn.name)
        self._update_reading(conn)

    def _connection_ended(self, conn: Connection, now: float) -> None:
        """The connection's sources stop holding barriers (closed, lost or failed)."""
        conn.ended_at = now
        if self._live.get(conn.name) is conn:
            del self._live[conn.name]
            self._ended.append(conn)
        if self._output_done:
            return
        # Unknown to the orderer (never sent CONNECT nor data): nothing to mark.
        with contextlib.suppress(KeyError):
            self._ship(self.orderer.mark_connection_dead(conn.name, now))
        self._kick()

    def _connection_gone(self, conn: Connection) -> None:
        self._all.pop(id(conn), None)
        if self._live.get(conn.name) is conn:
            del self._live[conn.name]
            self._ended.append(conn)

    def _update_reading(self, conn: Connection) -> None:
        if conn.discarding:
            conn.set_reading(True)
            return
        if self._shutdown_task is not None:
            conn.set_reading(False)
            return
        blocked = conn.perq_paused or conn.write_paused
        if self.orderer.xoff and not blocked:
            blocked = not self._holds_mark(conn, self._empty_live_sources())
        conn.set_reading(not blocked)

    def _empty_live_sources(self) -> set[int]:
        o = self.orderer
        if not o.xoff or o.unwritten_bytes >= o.config.xon_bytes or not o.queued_fragments:
            return set()
        return {row[0] for row in o.input_stats()[3] if row[1] == 0 and not o.is_dead(row[0])}

    @staticmethod
    def _holds_mark(conn: Connection, empty_live: set[int]) -> bool:
        """XOFF exemption: the connection owns a live empty queue that holds queued data back.

        Without it, an XOFF caused by a backlog *in the queues* (one source behind the others)
        can only end by the window: the lagging source cannot deliver the data the mark waits
        for. Only while the output keeps up (unwritten bytes below XonThreshold) are such
        connections read, and each read fills their queue, so memory stays bounded.
        """
        return bool(empty_live) and any(sid in empty_live for sid in conn.source_ids)

    def _recheck_xoff(self) -> None:
        if not self.orderer.xoff:
            return
        empty_live = self._empty_live_sources()
        for conn in list(self._live.values()):
            if conn.discarding or conn.perq_paused or conn.write_paused:
                continue
            conn.set_reading(self._holds_mark(conn, empty_live))

    def _note_input(self, fragments: int, nbytes: int) -> None:
        self._frags_in += fragments
        self._bytes_in += nbytes

    # ------------------------------------------------------------------ driver and output
    def _kick(self) -> None:
        self._wake.set()

    async def _drive(self) -> None:
        orderer = self.orderer
        while True:
            now = time.monotonic()
            self._ship(orderer.poll(now))
            self._recheck_xoff()
            self._sample(now)
            deadline = orderer.next_deadline()
            timeout = IDLE_POLL_S
            if deadline is not None:
                timeout = min(timeout, max(deadline - time.monotonic(), 0.001))
            if not self._wake.is_set():
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(timeout):
                        await self._wake.wait()
            self._wake.clear()

    def _ship(self, out: Output) -> None:
        for batch in out.batches:
            if len(batch):
                self._outq.append(batch)
        if self._outq:
            self._out_ready.set()
        self._dispatch(out.notifications)

    def _dispatch(self, notes: list[Notification]) -> None:
        for note in notes:
            if isinstance(note, FlowChange):
                self._on_flow(note)
            for fn in list(self._listeners):
                try:
                    fn(note)
                except Exception:
                    log.exception("notification listener %r failed on %r", fn, note)

    def _on_flow(self, note: FlowChange) -> None:
        if note.connection is None:
            state = "XON" if note.xon else "XOFF"
            log.info("%s: %d bytes in flight", state, self.orderer.inflight_bytes)
            for live in list(self._live.values()):
                self._update_reading(live)
            return
        conn = self._live.get(note.connection)
        if conn is not None:
            log.info("%s for connection %s", "XON" if note.xon else "XOFF", note.connection)
            conn.perq_paused = not note.xon
            self._update_reading(conn)

    async def _write_output(self) -> None:
        while True:
            if not self._outq:
                if self._output_done:
                    return
                self._out_ready.clear()
                await self._out_ready.wait()
                continue
            batches = [self._outq.popleft()]
            total = batches[0].flat_bytes()
            while self._outq and total < MAX_WRITE_BYTES:
                nxt = self._outq.popleft()
                batches.append(nxt)
                total += nxt.flat_bytes()
            batch = batches[0] if len(batches) == 1 else FragmentBatch.concat(batches)
            await self.sink.write(batch)
            self._frags_out += len(batch)
            self._bytes_out += total
            self._dispatch(self.orderer.written(batch.payload_bytes(), time.monotonic()))
            self._recheck_xoff()

    def _writer_done(self, task: asyncio.Task[None]) -> None:
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:
            self.failed = exc
            log.critical("writing the output failed, shutting down: %s", exc, exc_info=exc)
            # Nothing more can be written: stop taking data the sources would think is safe.
            if self._shutdown_task is None:
                self._shutdown_task = asyncio.ensure_future(self._shutdown())

    def _sample(self, now: float) -> None:
        if not self._samples or now - self._samples[-1][0] >= SAMPLE_EVERY_S:
            self._samples.append(
                (now, self._frags_in, self._bytes_in, self._frags_out, self._bytes_out)
            )


async def _cancel(task: asyncio.Task[None] | None) -> None:
    if task is None or task.done():
        return
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def default_sink(settings: ServerSettings) -> Sink:
    """The sink the settings ask for: file or nothing; ring and/or event building if set."""
    if not settings.ring_options and settings.build_dt_ticks is None:
        return FileSink(settings.output) if settings.output is not None else NullSink()
    from evb.builder import BuildConfig, TimestampPolicy
    from evb.ringsink import RingOptions, make_output_sink

    build = None
    if settings.build_dt_ticks is not None:
        build = BuildConfig(
            build=True,
            dt_ticks=settings.build_dt_ticks,
            max_fragments=settings.build_max_fragments,
            policy=TimestampPolicy(settings.build_policy),
        )
    ring = RingOptions.from_mapping(settings.ring_options) if settings.ring_options else None
    sink: Sink = make_output_sink(output=settings.output, build=build, ring=ring)
    return sink


@contextlib.asynccontextmanager
async def serve(
    settings: ServerSettings, sink: Sink | None = None, *, orderer: Orderer | None = None
) -> AsyncIterator[EvbServer]:
    """Run the ingest service for the duration of the ``async with`` block.

    Args:
        settings: listening address, orderer settings, limits.
        sink: where the ordered stream goes; default: a :class:`~evb.sinks.FileSink` on
            ``settings.output``, else a :class:`~evb.sinks.NullSink`.
        orderer: an orderer to use instead of a new one (tests, the shell).

    On exit the server shuts down gracefully: every acknowledged fragment is written.
    """
    server = EvbServer(settings, sink, orderer)
    try:
        await server.start()
    except BaseException:
        await server.sink.close()
        raise
    try:
        yield server
    finally:
        await server.shutdown()
