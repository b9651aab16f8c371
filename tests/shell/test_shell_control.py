"""The control socket against the real server, in one process (asyncio)."""

from __future__ import annotations

import asyncio
import os
import socket
import stat
import struct
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import msgpack
import pytest

from evb.batch import Fragment as F
from evb.batch import FragmentBatch
from evb.errors import EvbError
from evb.server import EvbServer, serve
from evb.settings import ServerSettings
from shell.control import ControlClient, ControlServer, start_control
from shell.protocol import ControlProtocolError, FrameDecoder, check_request, encode_frame
from sources.client import AsyncSourceClient


def run(coro_fn: Callable[[], Any]) -> Any:
    async def guarded() -> Any:
        async with asyncio.timeout(30):
            return await coro_fn()

    return asyncio.run(guarded())


class EventSink:
    """A real sink that counts what it wrote and lets a test await it."""

    def __init__(self) -> None:
        self.fragments = 0
        self.changed = asyncio.Event()

    async def write(self, batch: FragmentBatch) -> None:
        self.fragments += len(batch)
        self.changed.set()

    async def close(self) -> None:
        pass

    async def wait_for(self, n: int) -> None:
        while self.fragments < n:
            self.changed.clear()
            await self.changed.wait()


@asynccontextmanager
async def running(
    path: Path, sink: EventSink | None = None, **kw: Any
) -> AsyncIterator[tuple[EvbServer, ControlServer]]:
    settings = ServerSettings(host="127.0.0.1", port=0, **kw)
    async with serve(settings, sink) as server:
        ctl = await start_control(server, path)
        try:
            yield server, ctl
        finally:
            await ctl.close()


def sock_path(tmp_path: Path) -> Path:
    return tmp_path / "c.sock"


# -- framing ----------------------------------------------------------------------------


def test_frames_round_trip_byte_at_a_time():
    data = encode_frame({"script": "EVB::inputStats"}) + encode_frame({"status": True})
    dec = FrameDecoder()
    got = []
    for i in range(len(data)):
        got += dec.feed(data[i : i + 1])
    assert got == [{"script": "EVB::inputStats"}, {"status": True}]
    assert dec.pending_bytes == 0


def test_frame_header_is_big_endian_length():
    frame = encode_frame({"script": "x"})
    body = msgpack.packb({"script": "x"})
    assert frame == struct.pack(">I", len(body)) + body


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (struct.pack(">I", 2) + b"\xc1\xc1", "frame is not valid msgpack"),
        (struct.pack(">I", 1) + msgpack.packb(5), "frame must be a msgpack map, was int"),
        (struct.pack(">I", 0xFFFFFFFF), "frame of 4294967295 bytes exceeds the maximum"),
    ],
)
def test_bad_frames_raise(data, message):
    with pytest.raises(ControlProtocolError, match=message):
        FrameDecoder().feed(data)


def test_check_request():
    assert check_request({"script": "a"}) == "a"
    assert check_request({"status": True}) is None
    with pytest.raises(ControlProtocolError, match="'script' must be a string, was int"):
        check_request({"script": 3})
    with pytest.raises(ControlProtocolError, match="request must have a 'script'"):
        check_request({"x": 1})


# -- the socket -------------------------------------------------------------------------


def test_eval_errors_output_and_status(tmp_path):
    path = sock_path(tmp_path)

    async def main() -> None:
        async with running(path, window_s=3.0):
            assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
            client = await ControlClient.connect(path)
            try:
                r = await client.evaluate("EVB::config get window")
                assert (r.ok, r.text) == (True, "3")
                r = await client.evaluate("puts hi; EVB::config set window 0")
                assert (r.ok, r.text, r.output) == (
                    False, "Build time window must be > 0 was 0", "hi\n"
                )
                r = await client.evaluate("catch {EVB::barrierTrace x} m; set m")
                assert r.text.startswith("Invalid barrier trace type")
                st = await client.status()
                assert st["xoff"] is False and st["queued_fragments"] == 0
                r = await client.evaluate("exit")
                assert not r.ok and "exit is not available here" in r.text
            finally:
                await client.close()
        assert not path.exists()

    run(main)


def test_malformed_frame_closes_only_that_connection(tmp_path):
    path = sock_path(tmp_path)

    async def main() -> None:
        async with running(path):
            good = await ControlClient.connect(path)
            reader, writer = await asyncio.open_unix_connection(str(path))
            writer.write(struct.pack(">I", 3) + b"\xc1\xc1\xc1")
            await writer.drain()
            reply = await reader.read(4096)
            (msg,) = FrameDecoder().feed(reply)
            assert msg["ok"] is False and msg["error"].startswith("protocol error:")
            assert await reader.read(4096) == b""  # closed
            writer.close()
            # Not a map / no script: closed too.
            reader, writer = await asyncio.open_unix_connection(str(path))
            writer.write(encode_frame({"nope": 1}))
            await writer.drain()
            (msg,) = FrameDecoder().feed(await reader.read(4096))
            assert "request must have a 'script'" in msg["error"]
            assert await reader.read(4096) == b""
            writer.close()
            # The other connection and new ones still work.
            assert (await good.evaluate("expr {1+1}")).text == "2"
            again = await ControlClient.connect(path)
            assert (await again.evaluate("EVB::source")).ok
            await again.close()
            await good.close()

    run(main)


def test_remote_hooks_run_in_the_server_with_real_sources(tmp_path):
    path = sock_path(tmp_path)

    async def main() -> None:
        sink = EventSink()
        async with running(path, sink) as (server, ctl):
            late_seen = asyncio.Event()
            ctl.shell.interp.createcommand("py_late_seen", late_seen.set)
            client = await ControlClient.connect(path)
            r = await client.evaluate(
                "proc onLate {sid ts newest payload} {"
                " binary scan $payload a* text;"
                " set ::late [list $sid $ts $newest $text]; py_late_seen }\n"
                "EVB::onDataLate onLate\n"
                "EVB::config set window 0.2"
            )
            assert r.ok, r.text
            await client.close()  # hooks outlive the connection that set them
            host, port = server.address
            src = await AsyncSourceClient.connect(host, port, "two ids", [1, 2])
            await src.send([F(timestamp=100, source_id=1, payload=b"first")])
            # Emitted after the window (queue 2 is empty), then sid 2 sends older data.
            await sink.wait_for(1)
            await src.send([F(timestamp=50, source_id=2, payload=b"late!")])
            await late_seen.wait()
            client = await ControlClient.connect(path)
            assert (await client.evaluate("set ::late")).text == "2 50 100 late!"
            assert (await client.evaluate("EVB::dlatestats")).text == "1 50 {{2 1 50}}"
            conns = (await client.evaluate("EVB::connections")).text
            assert "{two ids} active" in conns
            await client.close()
            await src.close()

    run(main)


def test_stale_socket_is_replaced_and_non_socket_refused(tmp_path):
    path = sock_path(tmp_path)
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(str(path))
    s.close()  # a socket file nobody listens on

    async def main() -> None:
        async with running(path):
            c = await ControlClient.connect(path)
            assert (await c.evaluate("set x 1")).text == "1"
            await c.close()
            # In use: a second server refuses it.
            settings = ServerSettings(host="127.0.0.1", port=0)
            async with serve(settings) as other:
                with pytest.raises(EvbError, match="in use by another server"):
                    await start_control(other, path)

    run(main)
    plain = tmp_path / "plain"
    plain.write_text("x")

    async def refuse() -> None:
        async with serve(ServerSettings(host="127.0.0.1", port=0)) as server:
            with pytest.raises(EvbError, match="exists and is not a socket"):
                await start_control(server, plain)

    run(refuse)


def test_attach_to_nothing_is_a_clear_error(tmp_path):
    async def main() -> None:
        with pytest.raises(EvbError, match="cannot attach to control socket"):
            await ControlClient.connect(tmp_path / "none.sock")

    run(main)


def test_remote_flow_hooks_see_xoff_and_xon_from_the_real_server(tmp_path):
    path = sock_path(tmp_path)

    async def main() -> None:
        async with running(path, EventSink()) as (server, ctl):
            changed = asyncio.Event()
            ctl.shell.interp.createcommand("py_flow", changed.set)
            client = await ControlClient.connect(path)
            r = await client.evaluate(
                "EVB::onflow add {apply {{} {lappend ::flow xon; py_flow}}}"
                " {apply {{} {lappend ::flow xoff; py_flow}}}\n"
                "EVB::config set XonThreshold 100\n"
                "EVB::config set XoffThreshold 1000"
            )
            assert r.ok, r.text
            host, port = server.address
            src = await AsyncSourceClient.connect(host, port, "flow", [1, 2])
            # sid 2 stays empty, so sid 1's 1200 payload bytes stay queued: XOFF.
            await src.send([F(timestamp=t, source_id=1, payload=b"z" * 400) for t in (1, 2, 3)])
            await changed.wait()
            assert (await client.evaluate("set ::flow")).text == "xoff"
            st = await client.status()
            assert st["xoff"] is True
            changed.clear()
            assert (await client.evaluate("EVB::flushqueues")).ok
            await changed.wait()
            assert (await client.evaluate("set ::flow")).text == "xoff xon"
            await client.close()
            await src.close()

    run(main)
