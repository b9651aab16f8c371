"""Micro-benchmarks of the shell: ``python -m shell.bench``.

Prints medians of 5 runs: EVB:: command calls per second through the real interpreter, late-data
hook calls per second (Tcl proc doing ``binary scan``), and control-socket round trips per second.
Run by hand; tests never assert on these figures.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from evb.batch import Fragment, build_batch
from evb.notify import LateFragment
from evb.orderer import Orderer
from evb.server import serve
from evb.settings import ServerSettings
from shell.commands import ConnectionLike
from shell.control import ControlClient, start_control
from shell.tcl import TclShell

__all__ = ["main"]

REPEATS = 5


class _Service:
    def __init__(self) -> None:
        self.orderer = Orderer()

    def apply(self, fn: Callable[[Orderer, float], object]) -> object:
        return fn(self.orderer, time.monotonic())

    def connections(self) -> list[ConnectionLike]:
        return []


def _median_rate(fn: Callable[[], int]) -> float:
    rates = []
    for _ in range(REPEATS):
        t0 = time.perf_counter()
        n = fn()
        rates.append(n / (time.perf_counter() - t0))
    return statistics.median(rates)


def bench_commands(n: int = 5000) -> float:
    svc = _Service()
    frags = [Fragment(timestamp=t, source_id=s, payload=b"x" * 16) for s in range(16)
             for t in range(100)]
    svc.orderer.bind("a", [99])  # an empty queue keeps the data queued
    svc.orderer.submit(build_batch(frags), 0.0)
    shell = TclShell(svc)
    script = f"for {{set i 0}} {{$i < {n}}} {{incr i}} {{ EVB::inputStats }}"

    def run() -> int:
        shell.eval(script)
        return n

    return _median_rate(run)


def bench_late_hooks(n: int = 5000) -> float:
    svc = _Service()
    shell = TclShell(svc)
    shell.eval("proc onLate {sid ts newest payload} {binary scan $payload cu* b; incr ::n}")
    shell.eval("EVB::onDataLate onLate")
    note = LateFragment(source_id=1, timestamp=5, newest=10, payload=b"\x01\x02" * 32)

    def run() -> int:
        for _ in range(n):
            shell.notify(note)
        return n

    return _median_rate(run)


async def _bench_control(n: int) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "c.sock"
        async with serve(ServerSettings(host="127.0.0.1", port=0)) as server:
            ctl = await start_control(server, path)
            client = await ControlClient.connect(path)
            rates = []
            for _ in range(REPEATS):
                t0 = time.perf_counter()
                for _ in range(n):
                    await client.evaluate("EVB::inputStats")
                rates.append(n / (time.perf_counter() - t0))
            await client.close()
            await ctl.close()
    return statistics.median(rates)


def main() -> int:
    print(f"EVB::inputStats in a Tcl loop (16 queues): {bench_commands():,.0f} calls/s (median)")
    print(f"onDataLate hook (Tcl proc, binary scan): {bench_late_hooks():,.0f} calls/s (median)")
    rate = asyncio.run(_bench_control(1000))
    print(f"control socket round trips (EVB::inputStats): {rate:,.0f} /s (median)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
