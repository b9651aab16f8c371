"""Benchmark: decode + order + emit in one process (issue: foundation).

8 sources, 2,048,000 fragments with 32-byte payloads, 1000 fragments per source message, source
messages interleaved with jitter. Each message is decoded (evb.wire.Decoder), submitted and the
orderer polled, as the server does; the ordered output batches are the product. The same work runs
through a straightforward per-fragment reference (struct decode, per-source lists, heapq merge)
written here, and the ratio is printed.

Run: .venv/bin/python benchmarks/bench_orderer.py [--fragments N] [--runs R]
"""

from __future__ import annotations

import argparse
import heapq
import statistics
import struct
import time
from collections import deque

import numpy as np

from evb.batch import batch_from_columns
from evb.orderer import Orderer
from evb.wire import Decoder, Fragments, encode_connect, encode_fragments

HDR = struct.Struct("<QIII")
MSG = struct.Struct("<II")


def make_messages(n_sources: int, total: int, per_msg: int, payload: int, seed: int) -> list[bytes]:
    """Per-source FRAGMENTS messages, interleaved in a jittered arrival order."""
    rng = np.random.default_rng(seed)
    per_source = total // n_sources
    msgs_per_source = per_source // per_msg
    streams: list[list[bytes]] = []
    for s in range(n_sources):
        ts = np.arange(per_source, dtype=np.uint64) * 10 + rng.integers(0, 8, per_source).astype(
            np.uint64
        )
        ts.sort()
        body = rng.integers(0, 256, (per_source, payload), dtype=np.uint8)
        msgs = []
        for m in range(msgs_per_source):
            sl = slice(m * per_msg, (m + 1) * per_msg)
            msgs.append(encode_fragments(batch_from_columns(ts[sl], s + 1, body[sl])))
        streams.append(msgs)
    # Arrival order: message m of every source arrives in [m, m + 0.95): sources interleave
    # randomly while each connection stays in order, as TCP keeps it.
    arrivals = []
    for s, msgs in enumerate(streams):
        for m, msg in enumerate(msgs):
            arrivals.append((m + rng.uniform(0.0, 0.95), s, msg))
    arrivals.sort(key=lambda a: a[0])
    return [a[2] for a in arrivals]


def run_evb(messages: list[bytes], n_sources: int) -> tuple[float, int, int]:
    orderer = Orderer()
    decoders = {}
    for s in range(n_sources):
        d = Decoder()
        d.feed(encode_connect(f"src{s + 1}", [s + 1]))
        decoders[s + 1] = d
        orderer.bind(f"c{s + 1}", [s + 1], 0.0)
    emitted = 0
    out_bytes = 0
    t0 = time.perf_counter()
    for msg in messages:
        sid = int.from_bytes(msg[16:20], "little")
        for m in decoders[sid].feed(msg):
            assert isinstance(m, Fragments)
            orderer.submit(m.batch, 0.0, f"c{sid}")
        for b in orderer.poll(0.0).batches:
            emitted += len(b)
            out_bytes += b.payload_bytes()
            orderer.written(b.payload_bytes(), 0.0)
    for b in orderer.flush(0.0).batches:
        emitted += len(b)
        out_bytes += b.payload_bytes()
    return time.perf_counter() - t0, emitted, out_bytes


def run_evb_flat(messages: list[bytes], n_sources: int) -> tuple[float, int]:
    """As run_evb, plus flattening every output batch to bytes (what a file sink writes)."""
    orderer = Orderer()
    decoders = {s + 1: Decoder(expect_connect=False) for s in range(n_sources)}
    for s in range(n_sources):
        orderer.bind(f"c{s + 1}", [s + 1], 0.0)
    emitted = 0
    t0 = time.perf_counter()
    for msg in messages:
        sid = int.from_bytes(msg[16:20], "little")
        for m in decoders[sid].feed(msg):
            assert isinstance(m, Fragments)
            orderer.submit(m.batch, 0.0, f"c{sid}")
        for b in orderer.poll(0.0).batches:
            emitted += len(b.flatten()) and len(b)
            orderer.written(b.payload_bytes(), 0.0)
    for b in orderer.flush(0.0).batches:
        emitted += len(b.flatten()) and len(b)
    return time.perf_counter() - t0, emitted


def run_reference(messages: list[bytes], n_sources: int) -> tuple[float, int]:
    """The same work, one Python object per fragment.

    struct decode, NULL-timestamp assignment, duplicate and out-of-order checks and per-source
    input counters, per-source deques, the mark, a heapq merge of what leaves, the late check and
    per-source output counters: what the orderer does, written the straightforward way.
    """
    null = 0xFFFF_FFFF_FFFF_FFFF
    Frag = tuple[int, int, int, bytes]
    queues: dict[int, deque[Frag]] = {s + 1: deque() for s in range(n_sources)}
    last: dict[int, int] = {}
    top: dict[int, int] = {}
    counts = {k: {s + 1: 0 for s in range(n_sources)} for k in ("in", "bytes", "dup", "oo", "out")}
    late = 0
    emitted_max = -1
    emitted = 0
    t0 = time.perf_counter()

    def emit(heads: list[list[tuple[int, int, int, bytes]]]) -> None:
        nonlocal late, emitted_max, emitted
        prev_max = emitted_max
        for ts, sid, _barrier, _payload in heapq.merge(*heads):
            if ts < prev_max:
                late += 1
            emitted_max = max(emitted_max, ts)
            counts["out"][sid] += 1
            emitted += 1

    for msg in messages:
        size, _mtype = MSG.unpack_from(msg, 0)
        pos, end = 8, 8 + size
        while pos < end:
            ts, sid, psize, barrier = HDR.unpack_from(msg, pos)
            payload = msg[pos + 20 : pos + 20 + psize]
            pos += 20 + psize
            if ts == null:
                ts = last.get(sid, 0)
            elif sid in last and ts == last[sid]:
                counts["dup"][sid] += 1
            if ts < top.get(sid, 0):
                counts["oo"][sid] += 1
            last[sid] = ts
            top[sid] = max(top.get(sid, 0), ts)
            counts["in"][sid] += 1
            counts["bytes"][sid] += psize
            queues[sid].append((ts, sid, barrier, payload))
        if all(queues.values()):
            mark = min(q[-1][0] for q in queues.values())
            heads = []
            for q in queues.values():
                taken = []
                while q and q[0][0] <= mark:
                    taken.append(q.popleft())
                heads.append(taken)
            emit(heads)
    emit([list(q) for q in queues.values()])
    return time.perf_counter() - t0, emitted


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--fragments", type=int, default=2_048_000)
    ap.add_argument("--sources", type=int, default=8)
    ap.add_argument("--per-message", type=int, default=1000)
    ap.add_argument("--payload-bytes", type=int, default=32)
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    messages = make_messages(args.sources, args.fragments, args.per_message, args.payload_bytes, 1)
    total = sum(len(m) for m in messages)
    n = (args.fragments // args.sources // args.per_message) * args.per_message * args.sources
    print(f"{len(messages)} messages, {n:,} fragments, {total / 1e6:.1f} MB on the wire")
    evb_t, flat_t, ref_t = [], [], []
    for _ in range(args.runs):
        t, emitted, out_bytes = run_evb(messages, args.sources)
        assert emitted == n, (emitted, n)
        assert out_bytes == n * args.payload_bytes
        evb_t.append(t)
        t, emitted = run_evb_flat(messages, args.sources)
        assert emitted == n
        flat_t.append(t)
        t, emitted = run_reference(messages, args.sources)
        assert emitted == n, (emitted, n)
        ref_t.append(t)
    me, mf, mr = (statistics.median(x) for x in (evb_t, flat_t, ref_t))
    print(
        f"evb decode+order+emit:        {n / me / 1e6:6.2f} M fragments/s  "
        f"{total / me / 1e6:7.1f} MB/s   (median of {args.runs}: {me:.3f} s)"
    )
    print(
        f"evb ... + flatten output:     {n / mf / 1e6:6.2f} M fragments/s  "
        f"{total / mf / 1e6:7.1f} MB/s   (median of {args.runs}: {mf:.3f} s)"
    )
    print(
        f"per-fragment reference:       {n / mr / 1e6:6.2f} M fragments/s  "
        f"{total / mr / 1e6:7.1f} MB/s   (median of {args.runs}: {mr:.3f} s)"
    )
    print(f"ratio evb / reference: {mr / me:.1f}x  (with flatten: {mr / mf:.1f}x)")


if __name__ == "__main__":
    main()
