"""End to end with real processes: evb-server, evb-source sim, signals, a FIFO output."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from srv_helpers import assert_ordered

from evb.batch import Fragment, FragmentBatch
from evb.errors import SourceError
from evb.wire import parse_fragments
from sources.client import SourceClient
from sources.simulated import SimulatedSource

VENV_BIN = Path(sys.executable).parent


def _sim_cmd(port: int, ids: list[int], **kw: Any) -> list[str]:
    cmd = [str(VENV_BIN / "evb-source"), "sim", "--port", str(port),
           "--sources", ",".join(map(str, ids))]
    for k, v in kw.items():
        cmd += [f"--{k.replace('_', '-')}", str(v)]
    return cmd


def _read_output(path: Path) -> FragmentBatch:
    return parse_fragments(np.fromfile(path, np.uint8))


def test_sim_processes_to_ordered_byte_exact_file(
    server_process: Any, procs: list[subprocess.Popen[bytes]], tmp_path: Path
) -> None:
    out = tmp_path / "ordered.bin"
    srv = server_process("--output", str(out))
    plans = [
        dict(ids=[1, 4], count=20000, payload_bytes=32, batch=1000, jitter=60, seed=1),
        dict(ids=[2], count=15000, payload_bytes=100, batch=500, jitter=30, seed=2),
        dict(ids=[3, 5, 6], count=10000, payload_bytes=0, batch=3000, jitter=0, seed=3),
    ]
    all_ids = [i for p in plans for i in p["ids"]]  # type: ignore[attr-defined]
    # Bind every source id first, so no source's data leaves before the others have connected.
    holder = SourceClient.connect(srv.host, srv.port, "holder", all_ids)
    for p in plans:
        procs.append(subprocess.Popen(
            _sim_cmd(srv.port, p["ids"], count=p["count"],  # type: ignore[arg-type]
                     payload_bytes=p["payload_bytes"], batch=p["batch"], jitter=p["jitter"],
                     seed=p["seed"], window=4),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        ))
    for proc in procs:
        stdout, stderr = proc.communicate(timeout=60)
        assert proc.returncode == 0, stderr.decode()
        assert b"fragments/s" in stdout
    holder.disconnect()
    srv.signal(signal.SIGINT)
    assert srv.wait() == 0, srv.log()

    expected = FragmentBatch.concat([
        b
        for p in plans
        for b in SimulatedSource(p["ids"], count=p["count"],  # type: ignore[arg-type]
                                 payload_bytes=p["payload_bytes"],  # type: ignore[arg-type]
                                 batch=p["batch"], jitter_ticks=p["jitter"],  # type: ignore[arg-type]
                                 seed=p["seed"])  # type: ignore[arg-type]
    ])
    order = np.lexsort((expected.source_ids, expected.timestamps))
    want = expected[order].flatten()
    got = np.fromfile(out, np.uint8)
    assert len(got) == len(want)
    assert np.array_equal(got, want)
    assert "lost without DISCONNECT" not in srv.log()


def test_sigterm_with_data_queued_loses_nothing_acknowledged(
    server_process: Any, tmp_path: Path
) -> None:
    out = tmp_path / "out.bin"
    srv = server_process("--output", str(out), "--window", "1000")
    # A silent source holds the mark: everything stays queued in the server.
    silent = SourceClient.connect(srv.host, srv.port, "silent", [99])
    acked: list[int] = []
    started = threading.Event()
    errors: list[BaseException] = []

    def pump() -> None:
        try:
            with SourceClient.connect(srv.host, srv.port, "pump", [1]) as c:
                ts = 0
                for _ in range(100_000):  # bounded; the server stops it long before
                    batch = [Fragment(timestamp=ts + k, source_id=1, payload=b"x" * 16)
                             for k in range(50)]
                    c.send(batch)
                    acked.append(ts + 49)
                    ts += 50
                    started.set()
        except (SourceError, OSError) as exc:
            errors.append(exc)
        finally:
            started.set()

    t = threading.Thread(target=pump)
    t.start()
    try:
        assert started.wait(30)
        while len(acked) < 20:  # some data is queued (bounded: the pump stops on its own)
            if not t.is_alive():
                break
            time.sleep(0.01)
        srv.signal(signal.SIGTERM)
        assert srv.wait() == 0, srv.log()
    finally:
        t.join(30)
        silent.close()
    assert errors, "the pump should have been cut off by the shutdown"
    got = _read_output(out)
    assert len(acked) >= 20
    last_acked = acked[-1]
    ts = got.timestamps[got.source_ids == 1]
    # every acknowledged fragment is in the output, in order
    assert len(ts) >= last_acked + 1
    assert np.array_equal(ts[: last_acked + 1], np.arange(last_acked + 1, dtype=np.uint64))
    assert_ordered(got)


def test_xoff_from_outside_slow_fifo_reader(
    server_process: Any, procs: list[subprocess.Popen[bytes]], tmp_path: Path
) -> None:
    """A slow consumer: sources block, server memory stays bounded, then everything arrives."""
    fifo = tmp_path / "out.fifo"
    os.mkfifo(fifo)
    # Open the reading end first (non-blocking open), so the server's open for writing succeeds.
    rfd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    try:
        srv = server_process("--output", str(fifo), "--xoff-bytes", "4000000",
                             "--xon-bytes", "2000000", "--window", "0.2")
        os.set_blocking(rfd, True)
        baseline = srv.rss_bytes()
        count, payload = 2000, 65536  # 2 sources x 2000 x 64 KiB = 262 MB, far above XOFF
        for ids in ([1], [2]):
            procs.append(subprocess.Popen(
                _sim_cmd(srv.port, ids, count=count, payload_bytes=payload, batch=8),
                stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            ))
        # XOFF shows in the server's log; bounded wait, nothing read meanwhile.
        for _ in range(3000):
            if "XOFF" in srv.log():
                break
            time.sleep(0.01)
        assert "XOFF" in srv.log()
        rss = []
        for _ in range(20):
            rss.append(srv.rss_bytes())
            time.sleep(0.02)
        assert all(p.poll() is None for p in procs), "sources should be blocked"
        assert max(rss) - baseline < 100_000_000, (baseline, rss)
        total = 2 * count * (payload + 20)
        got = bytearray()
        while len(got) < total:
            chunk = os.read(rfd, 1 << 20)
            assert chunk, "output ended early"
            got += chunk
        for p in procs:
            _, err = p.communicate(timeout=60)
            assert p.returncode == 0, err.decode()
        srv.signal(signal.SIGINT)
        assert srv.wait() == 0
        assert os.read(rfd, 1) == b""
        assert "XON" in srv.log()
    finally:
        os.close(rfd)
    batch = parse_fragments(np.frombuffer(bytes(got), np.uint8))
    assert len(batch) == 2 * count
    # Sources started at different times with a short window, so global order is not the point
    # here: every fragment of every source arrived, each source's in order.
    want = 1000 + 100 * np.arange(count, dtype=np.uint64)
    for sid in (1, 2):
        assert np.array_equal(batch.timestamps[batch.source_ids == sid], want)


def test_config_file_and_flags(server_process: Any, tmp_path: Path) -> None:
    cfg = tmp_path / "evb.yaml"
    cfg.write_text("window: 7.5\nXoffThreshold: 5000000\nXonThreshold: 1000\nport: 1\n")
    srv = server_process("--config", str(cfg), "--port", "0")  # the flag overrides the file
    assert srv.port != 1
    c = SourceClient.connect(srv.host, srv.port, "c", [1])
    c.disconnect()
    srv.signal(signal.SIGINT)
    assert srv.wait() == 0

    bad = tmp_path / "bad.yaml"
    bad.write_text("window: 3\nwindwo: 4\n")
    r = subprocess.run([str(VENV_BIN / "evb-server"), "--config", str(bad)],
                       capture_output=True, timeout=60)
    assert r.returncode == 2
    assert b"windwo" in r.stderr
    r = subprocess.run([str(VENV_BIN / "evb-server"), "--window", "0"],
                       capture_output=True, timeout=60)
    assert r.returncode == 2
    assert b"Build time window must be > 0 was 0" in r.stderr


def test_control_socket_runs_evb_commands(server_process: Any, tmp_path: Path) -> None:
    from shell.control import ControlClient

    ctl = tmp_path / "ctl.sock"
    srv = server_process("--control", str(ctl))
    c = SourceClient.connect(srv.host, srv.port, "ctl test", [4, 5])

    async def ask() -> tuple[str, str]:
        client = await ControlClient.connect(ctl)
        try:
            sources = await client.evaluate("EVB::source")
            window = await client.evaluate("EVB::config get window")
        finally:
            await client.close()
        assert sources.ok and window.ok
        return sources.text, window.text

    sources, window = asyncio.run(ask())
    assert sources.split() == ["4", "5"]
    assert float(window) == 20.0
    c.disconnect()
    srv.signal(signal.SIGTERM)
    assert srv.wait() == 0, srv.log()
    assert not ctl.exists()


def test_blocking_client_error_reply_and_pipelining(server_process: Any) -> None:
    srv = server_process("--max-message-bytes", "1000")
    with SourceClient.connect(srv.host, srv.port, "pipelined", [1], window=8) as c:
        for t in range(100):
            c.send([Fragment(timestamp=t, source_id=1, payload=b"abc")])
        c.flush()
        assert c.messages_sent == 100
    bad = SourceClient.connect(srv.host, srv.port, "big", [2])
    try:
        with pytest.raises(SourceError, match="exceeds the maximum of 1000"):
            bad.send([Fragment(timestamp=1, source_id=2, payload=b"x" * 5000)])
    finally:
        bad.close()
    srv.signal(signal.SIGINT)
    assert srv.wait() == 0
