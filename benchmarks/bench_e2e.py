"""End-to-end benchmark: 4 source processes -> evb-server -> output -> consumer process.

Run: ``.venv/bin/python benchmarks/bench_e2e.py`` (``--quick`` for a smoke run).

For each payload size (32 bytes, 64 KiB), several runs of:

- an ``evb-server`` process (default settings) whose ``--output`` is either a FIFO (``fifo``) or
  a file on /dev/shm (``shm``);
- a consumer process checking that the stream is ordered by (timestamp, source id) and counting
  fragments and bytes: it reads the FIFO, or follows the growing /dev/shm file (reading only the
  headers of large fragments, as an mmap-ing consumer would);
- 4 source processes (``sources.client.SourceClient``), each owning one source id, released
  together; each resends one pre-built message whose header timestamps are rewritten in place
  (so the sources cost little CPU: the machine is shared with the server and the consumer);
- then, as reference, a raw loopback TCP copy of the same number of bytes between two processes.

Time: from the release of the sources to the consumer's last byte (CLOCK_MONOTONIC is system
wide on Linux, so the processes' clocks agree). Figures are medians over the runs; the ratio is
the evb rate over the raw loopback rate (flattened output bytes in both cases).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from evb.batch import FLAT_HEADER_BYTES
from sources.client import SourceClient
from sources.simulated import SimulatedSource

N_SOURCES = 4
BIN = Path(sys.executable).parent
F_SETPIPE_SZ = 1031


def source_worker(
    port: int, sid: int, fragments: int, payload: int, batch: int, go: Any, ready: Any
) -> None:
    sim = SimulatedSource([sid], count=batch, payload_bytes=payload, batch=batch, start_tick=1000)
    template = sim.data_batch(0, batch).buffers[0]
    rec = FLAT_HEADER_BYTES + payload
    ts_view = np.ndarray((batch,), "<u8", template, 0, (rec,))
    base = ts_view.copy()
    step = np.uint64(batch * 100)
    client = SourceClient.connect("127.0.0.1", port, f"bench {sid}", [sid], window=4)
    ready.release()
    go.wait()
    for k in range(fragments // batch):
        ts_view[:] = base + np.uint64(k) * step
        client.send_body(template, fragments=batch)
    client.disconnect()


class Checker:
    """Order check and counts over a stream of flattened fragments, chunk by chunk."""

    def __init__(self) -> None:
        self.count = 0
        self.ordered = True
        self.last_key = (-1, -1)

    def scan(self, buf: bytearray | bytes, fill: int) -> int:
        """Check the complete fragments in ``buf[:fill]``; return the bytes they span."""
        arr = np.frombuffer(buf, np.uint8, fill)
        pos = 0
        while pos + FLAT_HEADER_BYTES <= fill:
            size = int.from_bytes(buf[pos + 12 : pos + 16], "little")
            rec = FLAT_HEADER_BYTES + size
            k = (fill - pos) // rec
            if k == 0:
                break
            if k > 1:  # a run of equal-size fragments, checked as one strided view
                sizes = np.ndarray((k,), "<u4", arr, pos + 12, (rec,))
                bad = np.flatnonzero(sizes != size)
                k = k if len(bad) == 0 else int(bad[0])
            self.check(
                np.ndarray((k,), "<u8", arr, pos, (rec,)),
                np.ndarray((k,), "<u4", arr, pos + 8, (rec,)),
            )
            pos += k * rec
        return pos

    def check(self, ts: np.ndarray, sid: np.ndarray) -> None:
        k = len(ts)
        if (int(ts[0]), int(sid[0])) < self.last_key:
            self.ordered = False
        if k > 1:
            ok = (ts[1:] > ts[:-1]) | ((ts[1:] == ts[:-1]) & (sid[1:] >= sid[:-1]))
            if not bool(ok.all()):
                self.ordered = False
        self.last_key = (int(ts[-1]), int(sid[-1]))
        self.count += k


def consumer(path: str, expected: int, result_q: Any) -> None:
    """Reads the FIFO (every byte: a pipe cannot be skipped)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        import fcntl

        fcntl.fcntl(fd, F_SETPIPE_SZ, 1 << 20)
    except OSError:
        pass
    buf = bytearray(8 << 20)
    view = memoryview(buf)
    fill = 0
    nbytes = 0
    chk = Checker()
    while chk.count < expected:
        n = os.readv(fd, [view[fill:]])
        if n == 0:
            break
        nbytes += n
        fill += n
        pos = chk.scan(buf, fill)
        tail = fill - pos
        if tail:
            buf[:tail] = buf[pos:fill]
        fill = tail
    end = time.monotonic()
    os.close(fd)
    result_q.put({"count": chk.count, "bytes": nbytes, "ordered": chk.ordered, "end": end})


def consumer_shm(path: str, expected: int, result_q: Any) -> None:
    """Follows a growing file on /dev/shm; large fragments: only their headers are read."""
    while not os.path.exists(path):
        time.sleep(0.001)
    fd = os.open(path, os.O_RDONLY)
    chk = Checker()
    pos = 0
    hdr = np.empty(1, [("ts", "<u8"), ("sid", "<u4"), ("size", "<u4"), ("bt", "<u4")])
    hview = memoryview(hdr.view(np.uint8))
    buf = bytearray(8 << 20)
    while chk.count < expected:
        avail = os.fstat(fd).st_size
        progressed = False
        while pos + FLAT_HEADER_BYTES <= avail:
            os.preadv(fd, [hview], pos)
            size = int(hdr["size"][0])
            if size >= 4096:
                if pos + FLAT_HEADER_BYTES + size > avail:
                    break
                chk.check(hdr["ts"], hdr["sid"])
                pos += FLAT_HEADER_BYTES + size
            else:  # small fragments: read a chunk and scan it
                n = os.preadv(fd, [memoryview(buf)[: min(len(buf), avail - pos)]], pos)
                done = chk.scan(buf, n)
                if done == 0:
                    break
                pos += done
            progressed = True
        if not progressed:
            time.sleep(0.0002)
    end = time.monotonic()
    os.close(fd)
    result_q.put({"count": chk.count, "bytes": pos, "ordered": chk.ordered, "end": end})


def raw_receiver(sock: socket.socket, total: int, result_q: Any) -> None:
    conn, _ = sock.accept()
    buf = bytearray(1 << 20)
    got = 0
    while got < total:
        n = conn.recv_into(buf)
        if n == 0:
            break
        got += n
    result_q.put({"bytes": got, "end": time.monotonic()})
    conn.close()


def raw_sender(port: int, total: int, go: Any) -> None:
    s = socket.create_connection(("127.0.0.1", port))
    block = bytes(1 << 20)
    go.wait()
    left = total
    while left > 0:
        n = min(left, len(block))
        s.sendall(memoryview(block)[:n])
        left -= n
    s.close()


def raw_copy(total: int) -> float:
    ctx = mp.get_context("fork")
    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen()
    q = ctx.Queue()
    go = ctx.Event()
    rx = ctx.Process(target=raw_receiver, args=(lsock, total, q))
    tx = ctx.Process(target=raw_sender, args=(lsock.getsockname()[1], total, go))
    rx.start()
    tx.start()
    time.sleep(0.3)
    t0 = time.monotonic()
    go.set()
    res = q.get(timeout=300)
    rx.join(30)
    tx.join(30)
    lsock.close()
    return float(res["bytes"]) / float(res["end"] - t0)


SERVER_CMD = [str(BIN / "evb-server")]


def one_run(
    fragments_per_source: int, payload: int, batch: int, mode: str
) -> dict[str, float]:
    ctx = mp.get_context("fork")
    shm = "/dev/shm" if mode == "shm" and os.path.isdir("/dev/shm") else None
    with tempfile.TemporaryDirectory(dir=shm) as tmp:
        out = os.path.join(tmp, "out.fifo" if mode == "fifo" else "out.bin")
        if mode == "fifo":
            os.mkfifo(out)
        total = N_SOURCES * (fragments_per_source // batch) * batch
        q = ctx.Queue()
        target = consumer if mode == "fifo" else consumer_shm
        cons = ctx.Process(target=target, args=(out, total, q))
        cons.start()
        srv = subprocess.Popen(
            [*SERVER_CMD, "--output", out, "--log-level", "WARNING"],
            stdout=subprocess.PIPE,
        )
        try:
            assert srv.stdout is not None
            line = srv.stdout.readline().decode()
            port = int(line.rsplit(":", 1)[1])
            # Bind all source ids before any data, so nothing leaves ahead of a late source.
            holder = SourceClient.connect("127.0.0.1", port, "holder", range(1, N_SOURCES + 1))
            go = ctx.Event()
            ready = ctx.Semaphore(0)
            workers = [
                ctx.Process(
                    target=source_worker,
                    args=(port, sid, fragments_per_source, payload, batch, go, ready),
                )
                for sid in range(1, N_SOURCES + 1)
            ]
            for w in workers:
                w.start()
            for _ in workers:
                ready.acquire(timeout=60)
            t0 = time.monotonic()
            go.set()
            for w in workers:
                w.join(600)
            holder.disconnect()
            res = q.get(timeout=600)
            cons.join(60)
        finally:
            srv.terminate()
            srv.wait(60)
            if srv.stdout is not None:
                srv.stdout.close()
            if cons.is_alive():
                cons.kill()
        dt = res["end"] - t0
        if res["count"] != total or not res["ordered"]:
            raise SystemExit(f"consumer check failed: {res} expected {total} fragments")
        return {"fragments_per_s": total / dt, "bytes_per_s": res["bytes"] / dt,
                "bytes": res["bytes"], "seconds": dt}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--small-fragments", type=int, default=1_000_000,
                    help="32-byte fragments per source per run")
    ap.add_argument("--large-fragments", type=int, default=4000,
                    help="64 KiB fragments per source per run")
    ap.add_argument("--quick", action="store_true", help="smoke run: small volumes, 1 run")
    ap.add_argument("--json", action="store_true", help="print a JSON summary too")
    ap.add_argument("--server-cmd", help="command to run instead of evb-server (e.g. profiling)")
    ap.add_argument("--only", choices=["small", "large"], help="run one payload size only")
    ap.add_argument("--output-mode", choices=["fifo", "shm", "both"], default="both",
                    help="fifo: a FIFO read by the consumer; shm: a file on /dev/shm that the "
                    "consumer follows (reading only the headers of large fragments)")
    args = ap.parse_args()
    if args.server_cmd:
        SERVER_CMD[:] = args.server_cmd.split()
    if args.quick:
        args.runs, args.small_fragments, args.large_fragments = 1, 40_000, 200
    summary: dict[str, Any] = {"runs": args.runs}
    modes = ["fifo", "shm"] if args.output_mode == "both" else [args.output_mode]
    for label, payload, per_source, batch in (
        ("32 B", 32, args.small_fragments, 8192),
        ("64 KiB", 65536, args.large_fragments, 16),
    ):
        if args.only and (args.only == "small") != (payload == 32):
            continue
        for mode in modes:
            runs = [one_run(per_source, payload, batch, mode) for _ in range(args.runs)]
            fps = statistics.median(r["fragments_per_s"] for r in runs)
            bps = statistics.median(r["bytes_per_s"] for r in runs)
            volume = int(statistics.median(r["bytes"] for r in runs))
            raw = statistics.median(raw_copy(volume) for _ in range(args.runs))
            print(
                f"payload {label:>6} output {mode:>4}: {fps:12,.0f} fragments/s  "
                f"{bps / 1e9:6.3f} GB/s  raw loopback {raw / 1e9:6.3f} GB/s  "
                f"ratio {bps / raw:5.1%}  (median of {args.runs}, {volume / 1e6:,.0f} MB per run)",
                flush=True,
            )
            summary[f"{label} {mode}"] = {"fragments_per_s": fps, "bytes_per_s": bps,
                                          "raw_bytes_per_s": raw, "ratio": bps / raw}
    if args.json:
        print(json.dumps(summary))


if __name__ == "__main__":
    main()
