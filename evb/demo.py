"""``evb-demo``: simulated sources -> evb-server -> ring -> evb-workers, with live statistics.

By default it runs the whole product on its embedded defaults, as separate processes: an
``evb-server`` that builds events into a shared-memory ring (with its Tcl control socket), an
``evb-workers`` pipeline that unpacks the built events into typed rows and saves them as CSV,
and two ``evb-source sim`` clients (four source ids, begin/end barriers). It prints the EVB's
statistics while data flows (read through the control socket, as ``evb-shell --attach`` does),
stops the server as a user would (SIGINT: flush, write, shut the ring down), lets the pipeline
drain, and checks that every fragment sent reached the CSV file.

``evb-demo --inprocess`` instead orders and builds a simulated stream inside one process and
prints the statistics: the quickest look at the ordering core alone.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path

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
    ap = argparse.ArgumentParser(prog="evb-demo", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--inprocess", action="store_true",
                    help="order and build in this process only (no server, ring or workers)")
    ap.add_argument("--sources", type=int, default=4, help="simulated source ids (default 4)")
    ap.add_argument("--count", type=int, default=None,
                    help="fragments per source (default 50,000; in-process 250,000)")
    ap.add_argument("--payload-bytes", type=int, default=32)
    ap.add_argument("--batch", type=int, default=1000, help="fragments per source message")
    ap.add_argument("--build-dt", type=int, default=100, help="event window in ticks")
    ap.add_argument("--rate", type=float, default=0.0,
                    help="fragments/s per source client (0: as fast as possible)")
    ap.add_argument("--run-dir", help="where the demo writes (default runs/demo-<time>)")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args(argv)
    if not args.inprocess:
        from evb.demo_pipeline import DemoPlan, main_pipeline

        ids = list(range(1, args.sources + 1))
        half = (len(ids) + 1) // 2
        groups = tuple(tuple(g) for g in (ids[:half], ids[half:]) if g)
        run_dir = Path(args.run_dir or f"runs/demo-{time.strftime('%Y%m%d-%H%M%S')}")
        return main_pipeline(
            DemoPlan(
                run_dir=run_dir.resolve(),
                sources=groups,
                count=args.count or 50_000,
                payload_bytes=args.payload_bytes,
                rate_hz=args.rate,
                build_dt=args.build_dt,
            )
        )
    count = args.count or 250_000
    print(
        f"evb demo: {args.sources} simulated sources x {count:,} fragments "
        f"({args.payload_bytes}-byte payloads, {args.batch} per message), ordered in-process"
    )
    r = run_inprocess(
        sources=args.sources,
        count=count,
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
