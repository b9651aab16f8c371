"""``evb-demo``: order (and build) a simulated multi-source stream in-process, print statistics.

This is the quickest look at what the orderer does: several simulated sources send interleaved
batches with jittered timestamps and begin/end barriers; the orderer merges them, the event
builder groups them, and the NSCLDAQ-style statistics are printed at the end.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence

import numpy as np

from evb.batch import FragmentBatch
from evb.builder import BuildConfig, EventBuilder
from evb.config import OrdererConfig
from evb.orderer import Orderer
from sources.simulated import SimulatedSource


def run_inprocess(
    *, sources: int, count: int, payload_bytes: int, batch: int, dt: int, seed: int
) -> dict[str, object]:
    """Order and build a simulated stream; return a summary (and print progress)."""
    sims = [
        SimulatedSource(
            [sid],
            count=count,
            payload_bytes=payload_bytes,
            batch=batch,
            ticks_per_fragment=100,
            jitter_ticks=40,
            begin_barrier=True,
            end_barrier=True,
            seed=seed + sid,
        )
        for sid in range(1, sources + 1)
    ]
    streams = [iter(s) for s in sims]
    rng = np.random.default_rng(seed)
    orderer = Orderer(OrdererConfig(window_s=1.0))
    for sid in range(1, sources + 1):
        orderer.bind(f"sim{sid}", [sid], 0.0)
    builder = EventBuilder(BuildConfig(build=dt > 0, dt_ticks=dt))
    emitted = 0
    events = 0
    last_ts = -1
    in_order = True
    t0 = time.perf_counter()
    live = list(range(sources))
    now = 0.0
    while live:
        k = live[int(rng.integers(len(live)))]  # sources interleave in random order
        b = next(streams[k], None)
        if b is None:
            live.remove(k)
            continue
        now += 1e-4
        orderer.submit(b, now, f"sim{k + 1}")
        for out in orderer.poll(now).batches:
            emitted, events, last_ts, in_order = _consume(
                out, builder, orderer, now, emitted, events, last_ts, in_order
            )
    for out in orderer.flush(now).batches:
        emitted, events, last_ts, in_order = _consume(
            out, builder, orderer, now, emitted, events, last_ts, in_order
        )
    events += len(builder.flush())
    elapsed = time.perf_counter() - t0
    return {
        "fragments": emitted,
        "events": events,
        "ordered": in_order,
        "seconds": elapsed,
        "orderer": orderer,
        "builder": builder,
    }


def _consume(
    out: FragmentBatch,
    builder: EventBuilder,
    orderer: Orderer,
    now: float,
    emitted: int,
    events: int,
    last_ts: int,
    in_order: bool,
) -> tuple[int, int, int, bool]:
    data = out.timestamps[out.barrier_types == 0]
    if len(data):
        in_order = in_order and int(data[0]) >= last_ts and bool((data[1:] >= data[:-1]).all())
        last_ts = int(data[-1])
    orderer.written(out.payload_bytes(), now)
    return emitted + len(out), events + len(builder.feed(out)), last_ts, in_order


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="evb-demo", description=__doc__)
    ap.add_argument("--sources", type=int, default=4, help="simulated sources (default 4)")
    ap.add_argument("--count", type=int, default=250_000, help="fragments per source")
    ap.add_argument("--payload-bytes", type=int, default=32)
    ap.add_argument("--batch", type=int, default=1000, help="fragments per source message")
    ap.add_argument("--build-dt", type=int, default=50, help="event window in ticks (0: nobuild)")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args(argv)
    print(
        f"evb demo: {args.sources} simulated sources x {args.count:,} fragments "
        f"({args.payload_bytes}-byte payloads, {args.batch} per message), ordered in-process"
    )
    r = run_inprocess(
        sources=args.sources,
        count=args.count,
        payload_bytes=args.payload_bytes,
        batch=args.batch,
        dt=args.build_dt,
        seed=args.seed,
    )
    orderer = r["orderer"]
    assert isinstance(orderer, Orderer)
    secs = float(r["seconds"])  # type: ignore[arg-type]
    frags = int(r["fragments"])  # type: ignore[call-overload]
    print(f"ordered {frags:,} fragments into {r['events']:,} events in {secs:.2f} s "
          f"({frags / secs / 1e6:.2f} M fragments/s); output time-ordered: {r['ordered']}")
    print("EVB::inputStats   ", orderer.input_stats())
    print("EVB::outputStats  ", orderer.output_stats())
    print("EVB::dlatestats   ", orderer.late_stats())
    print("EVB::dupstat      ", orderer.duplicate_stats())
    print("EVB::getoostats   ", orderer.out_of_order_stats())
    print("EVB::barrierstats ", orderer.barrier_stats())
    print("statistics        ", dict(orderer.stats().items()))
    return 0 if r["ordered"] else 1


if __name__ == "__main__":
    sys.exit(main())
