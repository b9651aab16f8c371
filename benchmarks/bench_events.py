"""Throughput of the event stages (run by hand: ``python benchmarks/bench_events.py``).

Prints medians over repeats of: building alone, building into a ring drained by a consumer
thread (EventRingReader), building into a built-event file. Ordered input: 3 sources, 32-byte
payloads, dt so that each event holds one fragment of each source.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import tempfile
import threading
import time

import numpy as np

from evb.batch import FragmentBatch
from evb.builder import BuildConfig, EventBuilder
from evb.recording import EventFileWriter
from evb.ringsink import (
    BuildingSink,
    EventRingReader,
    RingEventWriter,
    RingOptions,
    create_event_ring,
)
from sources.simulated import SimulatedSource

N_PER_SOURCE = 200_000
REPEATS = 5


def _input() -> list[FragmentBatch]:
    sim = SimulatedSource([1, 2, 3], count=N_PER_SOURCE, payload_bytes=32, batch=30_000,
                          ticks_per_fragment=100, seed=1)
    whole = FragmentBatch.concat(list(sim))
    order = np.lexsort((whole.source_ids, whole.timestamps))
    ordered = whole[order]
    return [ordered[i : i + 30_000] for i in range(0, len(ordered), 30_000)]


CFG = BuildConfig(build=True, dt_ticks=10)


def bench_builder(batches: list[FragmentBatch]) -> float:
    b = EventBuilder(CFG)
    t0 = time.perf_counter()
    for x in batches:
        b.feed(x)
    b.flush()
    return time.perf_counter() - t0


def bench_ring(batches: list[FragmentBatch]) -> float:
    name = f"bench{os.getpid()}"
    ring = create_event_ring(RingOptions(name=name, slot_bytes=1 << 20, slots=32,
                                         groups=("bench",)), replace=True)
    got = [0]

    def consume() -> None:
        with EventRingReader(name, "bench") as r:
            for slot in r:
                got[0] += len(slot.fragments)

    th = threading.Thread(target=consume)
    th.start()

    async def produce() -> float:
        sink = BuildingSink([RingEventWriter(ring)], CFG)
        t0 = time.perf_counter()
        for x in batches:
            await sink.write(x)
        await sink.close()
        await asyncio.to_thread(th.join)
        return time.perf_counter() - t0

    dt = asyncio.run(produce())
    ring.unlink()
    assert got[0] == sum(len(b) for b in batches)
    return dt


def bench_file(batches: list[FragmentBatch]) -> float:
    with tempfile.TemporaryDirectory() as d:
        async def produce() -> float:
            sink = BuildingSink([EventFileWriter(os.path.join(d, "x.evb"))], CFG)
            t0 = time.perf_counter()
            for x in batches:
                await sink.write(x)
            await sink.close()
            return time.perf_counter() - t0

        return asyncio.run(produce())


def main() -> None:
    batches = _input()
    n = sum(len(b) for b in batches)
    for label, fn in (("build only", bench_builder), ("build -> ring -> consumer", bench_ring),
                      ("build -> event file", bench_file)):
        times = [fn(batches) for _ in range(REPEATS)]
        med = statistics.median(times)
        print(f"{label:28s} median {med * 1e3:8.1f} ms  {n / med / 1e6:6.2f} M fragments/s")


if __name__ == "__main__":
    main()
