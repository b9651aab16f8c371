"""The ingest server in-process: real loopback sockets, the server on the test's event loop."""

from __future__ import annotations

import asyncio
import socket
import struct
from typing import Any

import numpy as np
import pytest
from srv_helpers import (
    GatedSink,
    MemorySink,
    assert_ordered,
    raw_connect,
    reply,
    settings,
)
from testsupport import until

from evb.batch import Fragment, FragmentBatch
from evb.errors import SourceError
from evb.notify import BarrierComplete, FlowChange, Notification
from evb.orderer import Orderer
from evb.server import RECV_BUFFER_BYTES, ConnectionInfo, serve
from evb.sinks import FileSink
from evb.wire import (
    MessageType,
    encode_connect,
    encode_disconnect,
    encode_fragments,
    encode_message_header,
)
from sources.client import AsyncSourceClient
from sources.simulated import SimulatedSource


def frags(sid: int, *ts: int, payload: bytes = b"p") -> list[Fragment]:
    return [Fragment(timestamp=t, source_id=sid, payload=payload + bytes([sid])) for t in ts]


def test_two_sources_ordered_and_acknowledged(arun: Any) -> None:
    async def body() -> None:
        sink = MemorySink()
        async with serve(settings(), sink) as server:
            host, port = server.address
            assert port != 0
            a = await AsyncSourceClient.connect(host, port, "a", [1])
            b = await AsyncSourceClient.connect(host, port, "b", [2])
            await a.send(frags(1, 1, 2, 3, 10))
            await b.send(frags(2, 4, 5, 6))
            await sink.wait_count(6)
            assert [f.timestamp for f in sink.all().fragments()] == [1, 2, 3, 4, 5, 6]
            states = {c.name: c for c in server.connections()}
            assert all(isinstance(c, ConnectionInfo) for c in states.values())
            assert {c.description for c in states.values()} == {"a", "b"}
            assert {c.state for c in states.values()} == {"active"}
            await a.disconnect()
            await b.disconnect()
            await until(lambda: {c.state for c in server.connections()} == {"closed"})
        # shutdown flushed the rest (10 was waiting for the window)
        assert [f.timestamp for f in sink.all().fragments()] == [1, 2, 3, 4, 5, 6, 10]
        assert sink.closed

    arun(body())


def test_file_output_is_byte_exact_flattened_fragments(arun: Any, tmp_path: Any) -> None:
    out = tmp_path / "out.bin"
    sims = [
        SimulatedSource([1, 3], count=3000, payload_bytes=24, batch=500, jitter_ticks=50, seed=1),
        SimulatedSource([2], count=3000, payload_bytes=70000, batch=40, seed=2),
    ]
    expected = FragmentBatch.concat([b for s in sims for b in s])

    async def body() -> None:
        async with serve(settings(), FileSink(out)) as server:
            host, port = server.address

            async def run(sim: SimulatedSource) -> None:
                async with await AsyncSourceClient.connect(
                    host, port, "sim", sim.plan.source_ids, window=4
                ) as c:
                    for batch in sim:
                        await c.send(batch)

            await asyncio.gather(
                *(
                    run(SimulatedSource(s.plan.source_ids, count=s.plan.count,
                                        payload_bytes=s.plan.payload_bytes, batch=s.plan.batch,
                                        jitter_ticks=s.plan.jitter_ticks, seed=s.plan.seed))
                    for s in sims
                )
            )

    arun(body())
    order = np.lexsort((expected.source_ids, expected.timestamps))
    want = expected[order].flatten()
    got = np.fromfile(out, np.uint8)
    assert len(got) == len(want)
    assert np.array_equal(got, want)


async def _healthy_roundtrip(port: int, sid: int, ts: int) -> None:
    c = await AsyncSourceClient.connect("127.0.0.1", port, "healthy", [sid])
    await c.send(frags(sid, ts))
    await c.disconnect()


@pytest.mark.parametrize(
    ("message", "reason"),
    [
        (b"garbage!garbage!", "Expected CONNECT"),
        (encode_message_header(MessageType.CONNECT, 50) + b"x" * 50,
         "Corrupt body in CONNECT message"),
        (encode_message_header(MessageType.CONNECT, 90) + b"\0" * 80 + struct.pack("<I", 5)
         + b"\0" * 6, "Corrupt body in CONNECT message"),
    ],
)
def test_bad_first_message(arun: Any, message: bytes, reason: str) -> None:
    async def body() -> None:
        sink = MemorySink()
        async with serve(settings(), sink) as server:
            port = server.address[1]
            other = await AsyncSourceClient.connect("127.0.0.1", port, "other", [7])
            await other.send(frags(7, 5))
            r, w = await raw_connect(port)
            w.write(message)
            line = await reply(r)
            assert line.decode().startswith("ERROR {" + reason)
            assert await reply(r) == b""  # then the server closes
            w.close()
            await w.wait_closed()
            await until(lambda: any(c.state == "error" for c in server.connections()))
            await other.send(frags(7, 6))
            await other.disconnect()
        assert [f.timestamp for f in sink.all().fragments()] == [5, 6]

    arun(body())


@pytest.mark.parametrize(
    ("tail", "reason"),
    [
        (encode_message_header(3, 0), "Unexpected header"),  # type: ignore[arg-type]
        # a fragment header claiming 100 payload bytes in a 30-byte body
        (encode_message_header(MessageType.FRAGMENTS, 30)
         + struct.pack("<QIII", 77, 1, 100, 0) + b"z" * 10, "Fragment overruns FRAGMENTS body"),
        # the same in a body large enough to be received in place
        (encode_message_header(MessageType.FRAGMENTS, 100_000)
         + struct.pack("<QIII", 77, 1, 200_000, 0) + b"z" * 99_980,
         "Fragment overruns FRAGMENTS body"),
        (encode_message_header(MessageType.FRAGMENTS, 1 << 20), "exceeds the maximum of 500000"),
    ],
)
def test_bad_message_after_good_ones(arun: Any, tail: bytes, reason: str) -> None:
    """Earlier messages of the connection stay queued and are emitted; other clients go on."""

    async def body() -> None:
        sink = MemorySink()
        async with serve(settings(max_message_bytes=500_000), sink) as server:
            port = server.address[1]
            other = await AsyncSourceClient.connect("127.0.0.1", port, "other", [2])
            r, w = await raw_connect(port)
            w.write(encode_connect("bad", [1]))
            assert await reply(r) == b"OK\n"
            # good message, then the bad one in the same write (same TCP segment)
            w.write(encode_fragments(frags(1, 10, 11)) + tail)
            assert await reply(r) == b"OK\n"
            line = (await reply(r)).decode()
            assert line.startswith("ERROR {") and reason in line, line
            assert await reply(r) == b""
            w.close()
            await w.wait_closed()
            await other.send(frags(2, 12))
            await other.disconnect()
        assert [(f.source_id, f.timestamp) for f in sink.all().fragments()] == [
            (1, 10), (1, 11), (2, 12)
        ]

    arun(body())


@pytest.mark.parametrize("payload_bytes", [1, 300_000])
def test_client_vanishing_mid_message(arun: Any, payload_bytes: int) -> None:
    async def body() -> None:
        sink = MemorySink()
        async with serve(settings(), sink) as server:
            port = server.address[1]
            other = await AsyncSourceClient.connect("127.0.0.1", port, "other", [2])
            r, w = await raw_connect(port)
            w.write(encode_connect("vanish", [1]))
            assert await reply(r) == b"OK\n"
            w.write(encode_fragments(frags(1, 3, 4)))
            assert await reply(r) == b"OK\n"
            half = encode_fragments(frags(1, 5, 6, payload=b"h" * payload_bytes))
            w.write(half[: len(half) // 2])
            await w.drain()
            w.transport.abort()
            await until(lambda: any(c.state == "lost" for c in server.connections()))
            assert server.orderer.is_dead(1)
            # the lost source no longer holds the mark back: source 2's data flows
            await other.send(frags(2, 4, 8))
            await sink.wait_count(3)
            await other.disconnect()
        got = [(f.source_id, f.timestamp) for f in sink.all().fragments()]
        assert got == [(1, 3), (1, 4), (2, 4), (2, 8)]

    arun(body())


def test_client_that_never_reads_replies_is_paused(arun: Any) -> None:
    """Its reply backlog stops its input; other connections are served meanwhile."""

    async def body() -> None:
        sink = MemorySink()
        async with serve(settings(), sink) as server:
            port = server.address[1]
            sock = socket.socket()
            # A small receive buffer so the reply backlog fills fast.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.connect(("127.0.0.1", port))
            r, w = await asyncio.open_connection(sock=sock)
            w.write(encode_connect("deaf", [1]))
            empty = encode_message_header(MessageType.FRAGMENTS, 0)
            transport = w.transport
            assert isinstance(transport, asyncio.Transport)
            transport.pause_reading()
            await until(lambda: len(server._live) == 1)
            conn = next(iter(server._live.values()))
            total = 0
            for _ in range(200):
                w.write(empty * 5000)
                total += 5000
                await asyncio.sleep(0)
                if not conn.reading:
                    break
            assert not conn.reading, "server kept reading a client that never reads replies"
            other = await AsyncSourceClient.connect("127.0.0.1", port, "other", [2])
            await other.send(frags(2, 1))
            await other.disconnect()
            # now read every reply: one OK per message, none lost
            transport.resume_reading()
            ok = 0
            w.write(encode_disconnect())
            async with asyncio.timeout(30):
                data = await r.read()
            ok = data.count(b"OK\n")
            assert ok == total + 2  # CONNECT + messages + DISCONNECT
            w.close()
            await w.wait_closed()

    arun(body())


def test_global_xoff_pauses_everyone_and_new_connections(arun: Any) -> None:
    """A slow sink: XOFF stops reading, a new connection starts paused, XON releases all."""

    async def body() -> None:
        sink = GatedSink()
        notes: list[Notification] = []
        cfg = dict(xoff_bytes=200_000, xon_bytes=100_000, window_s=0.05)
        async with serve(settings(**cfg), sink) as server:
            server.add_listener(notes.append)
            port = server.address[1]
            sim = SimulatedSource([1], count=400, payload_bytes=10_000, batch=10)
            client = await AsyncSourceClient.connect("127.0.0.1", port, "fast", [1])
            sender = asyncio.create_task(_send_all(client, sim))
            await until(lambda: server.orderer.xoff)
            assert FlowChange(xon=False) in notes
            assert not sender.done()
            # bounded: what the server holds is limited by the threshold, not by the input
            inflight = server.orderer.inflight_bytes
            assert inflight < 200_000 + 10 * 10_000 * 2
            # a connection accepted now starts paused: its CONNECT is not even read
            late = asyncio.create_task(
                AsyncSourceClient.connect("127.0.0.1", port, "late", [2])
            )
            await until(lambda: len(server._live) == 2)
            assert all(not c.reading for c in server._live.values())
            assert not late.done()
            sink.gate.set()
            await sender
            late_client = await late
            await late_client.send(frags(2, 10**9))
            await late_client.disconnect()
            assert FlowChange(xon=True) in notes
        assert sink.count() == 401
        assert_ordered(sink.all())

    arun(body())


async def _send_all(client: AsyncSourceClient, sim: SimulatedSource) -> None:
    for batch in sim:
        await client.send(batch)
    await client.disconnect()


def test_per_queue_xoff_pauses_only_that_connection(arun: Any) -> None:
    async def body() -> None:
        sink = MemorySink()
        async with serve(settings(perq_xoff_fragments=50, perq_xon_fragments=10), sink) as server:
            port = server.address[1]
            a = await AsyncSourceClient.connect("127.0.0.1", port, "a", [1])
            b = await AsyncSourceClient.connect("127.0.0.1", port, "b", [2])
            # b holds the mark back (nothing from it yet): a's queue grows past 50
            await a.send(frags(1, *range(100, 160)))
            await until(lambda: len(server.orderer.paused_connections) == 1)
            name_a = next(c.name for c in server.connections() if c.description == "a")
            assert server.orderer.paused_connections == frozenset({name_a})
            assert not server._live[name_a].reading
            # b is still served, and its data releases a's queue (XON for a)
            await b.send(frags(2, 1000))
            await until(lambda: not server.orderer.paused_connections)
            assert server._live[name_a].reading
            await a.send(frags(1, 2000))
            await a.disconnect()
            await b.disconnect()
        assert sink.count() == 62
        assert_ordered(sink.all())

    arun(body())


def test_source_timeout_marks_dead_and_data_revives(arun: Any) -> None:
    async def body() -> None:
        sink = MemorySink()
        async with serve(settings(source_timeout_s=0.2), sink) as server:
            port = server.address[1]
            a = await AsyncSourceClient.connect("127.0.0.1", port, "a", [1])
            b = await AsyncSourceClient.connect("127.0.0.1", port, "b", [2])
            await a.send(frags(1, 5))
            await until(lambda: server.orderer.is_dead(1) and server.orderer.is_dead(2))
            await b.send(frags(2, 6))
            assert not server.orderer.is_dead(2)
            await a.disconnect()
            await b.disconnect()
        assert sink.count() == 2

    arun(body())


def test_apply_listeners_and_status(arun: Any) -> None:
    async def body() -> None:
        sink = MemorySink()
        seen: list[Notification] = []

        def bad_listener(note: Notification) -> None:
            raise RuntimeError("listener bug")

        async with serve(settings(), sink) as server:
            server.add_listener(bad_listener)
            server.add_listener(seen.append)
            port = server.address[1]
            a = await AsyncSourceClient.connect("127.0.0.1", port, "a", [1])
            b = await AsyncSourceClient.connect("127.0.0.1", port, "b", [2])
            await a.send([Fragment(timestamp=10, source_id=1),
                          Fragment(timestamp=30, source_id=1, barrier_type=1)])
            await b.send([Fragment(timestamp=15, source_id=2),
                          Fragment(timestamp=35, source_id=2, barrier_type=1)])
            await sink.wait_count(4)
            assert BarrierComplete(barriers=((1, 1), (2, 1))) in seen
            await a.send(frags(1, 40))
            assert sink.count() == 4
            # EVB::flushqueues through apply: output shipped without waiting for the window
            out = server.apply(lambda o, now: o.flush(now))
            assert out.fragment_count == 1
            await sink.wait_count(5)
            server.remove_listener(bad_listener)
            st = server.status()
            assert st["fragments_in"] == 5 and st["fragments_out"] == 5
            assert st["connections"] == 2 and st["xoff"] is False
            assert server.apply(lambda o, now: o.get_config("window")) == 20.0
            await a.disconnect()
            await b.disconnect()

    arun(body())


def test_fast_source_does_not_starve_a_slow_one(arun: Any) -> None:
    async def body() -> None:
        sink = MemorySink()
        async with serve(settings(window_s=0.01), sink) as server:
            port = server.address[1]
            fast_sim = SimulatedSource([1], count=1500, payload_bytes=65536, batch=1)
            fast = await AsyncSourceClient.connect("127.0.0.1", port, "fast", [1], window=64)
            slow = await AsyncSourceClient.connect("127.0.0.1", port, "slow", [2])
            fast_task = asyncio.create_task(_send_all(fast, fast_sim))
            await until(lambda: server._frags_in > 10)
            for i in range(20):
                await slow.send(frags(2, 10**12 + i))
            slow_done_first = not fast_task.done()
            await fast_task
            await slow.disconnect()
        assert slow_done_first
        assert sink.count() == 1520

    arun(body())


def test_error_reply_raises_source_error(arun: Any) -> None:
    async def body() -> None:
        async with serve(settings(max_message_bytes=1000), MemorySink()) as server:
            c = await AsyncSourceClient.connect("127.0.0.1", server.address[1], "x", [1])
            with pytest.raises(SourceError, match="exceeds the maximum of 1000"):
                await c.send(frags(1, 1, payload=b"x" * 2000))
            await c.close()

    arun(body())


def test_shutdown_flushes_and_is_idempotent(arun: Any) -> None:
    async def body() -> None:
        sink = MemorySink()
        orderer = Orderer()
        async with serve(settings(), sink, orderer=orderer) as server:
            a = await AsyncSourceClient.connect("127.0.0.1", server.address[1], "a", [1, 2])
            await a.send(frags(1, 1, 2, 3))  # source 2 silent: all held back
            assert sink.count() == 0
            await server.shutdown()
            await server.shutdown()
            assert sink.count() == 3 and sink.closed
            await a.close()

    arun(body())


class FailingSink(MemorySink):
    async def write(self, batch: FragmentBatch) -> None:
        raise OSError(28, "No space left on device")


def test_output_failure_stops_the_server(arun: Any) -> None:
    async def body() -> None:
        sink = FailingSink()
        async with serve(settings(), sink) as server:
            port = server.address[1]
            c = await AsyncSourceClient.connect("127.0.0.1", port, "c", [1])
            await c.send(frags(1, 1, 2))
            server.apply(lambda o, now: o.flush(now))
            await until(lambda: server.failed is not None)
            assert isinstance(server.failed, OSError)
            await server.shutdown()
            assert sink.closed
            with pytest.raises(OSError):
                await AsyncSourceClient.connect("127.0.0.1", port, "late", [2])
            await c.close()

    arun(body())


def test_close_is_an_immediate_stop(arun: Any) -> None:
    async def body() -> None:
        sink = MemorySink()
        async with serve(settings(), sink) as server:
            c = await AsyncSourceClient.connect("127.0.0.1", server.address[1], "c", [1, 2])
            await c.send(frags(1, 1))
            server.close()
            server.close()
            with pytest.raises((SourceError, OSError)):
                await c.send(frags(1, 2))
            await c.close()

    arun(body())


def test_xoff_from_a_queue_backlog_still_reads_the_source_holding_the_mark(arun: Any) -> None:
    """XOFF caused by one source being behind: the lagging source is still read (bounded), so
    the mark advances and everything flows without waiting for the (here huge) window."""

    async def body() -> None:
        sink = MemorySink()
        cfg = dict(xoff_bytes=100_000, xon_bytes=50_000, window_s=1000.0)
        async with serve(settings(**cfg), sink) as server:
            port = server.address[1]
            a = await AsyncSourceClient.connect("127.0.0.1", port, "ahead", [1])
            b = await AsyncSourceClient.connect("127.0.0.1", port, "behind", [2])
            sim_a = SimulatedSource([1], count=2000, payload_bytes=1000, batch=10)
            sim_b = SimulatedSource([2], count=2000, payload_bytes=1000, batch=10)
            task_a = asyncio.create_task(_send_all(a, sim_a))
            await until(lambda: server.orderer.xoff)
            assert server.orderer.queued_bytes >= 100_000
            assert server.orderer.queued_bytes < 100_000 + 2 * RECV_BUFFER_BYTES
            async with asyncio.timeout(60):
                await asyncio.gather(task_a, _send_all(b, sim_b))
            await sink.wait_count(4000)
            assert int(server.orderer.stats()["late"]) == 0
        assert_ordered(sink.all())

    arun(body())
