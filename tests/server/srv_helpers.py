"""Shared test helpers: sinks that record or hold back output, ordering checks, raw clients."""

from __future__ import annotations

import asyncio

import numpy as np

from evb.batch import FragmentBatch
from evb.settings import ServerSettings


class MemorySink:
    """Keeps every batch written (a real sink, in memory)."""

    def __init__(self) -> None:
        self.batches: list[FragmentBatch] = []
        self.closed = False
        self.changed = asyncio.Event()

    async def write(self, batch: FragmentBatch) -> None:
        self.batches.append(batch)
        self.changed.set()

    async def close(self) -> None:
        self.closed = True

    def all(self) -> FragmentBatch:
        return FragmentBatch.concat(self.batches)

    def count(self) -> int:
        return sum(len(b) for b in self.batches)

    async def wait_count(self, n: int, timeout_s: float = 20) -> None:
        async with asyncio.timeout(timeout_s):
            while self.count() < n:
                self.changed.clear()
                await self.changed.wait()


class GatedSink(MemorySink):
    """A slow output: every write waits until the gate is open."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = asyncio.Event()
        self.waiting = asyncio.Event()

    async def write(self, batch: FragmentBatch) -> None:
        self.waiting.set()
        await self.gate.wait()
        await super().write(batch)


def settings(**kw: object) -> ServerSettings:
    base: dict[str, object] = {"host": "127.0.0.1", "port": 0}
    base.update(kw)
    return ServerSettings(**base)  # type: ignore[arg-type]


def assert_ordered(batch: FragmentBatch) -> None:
    ts = batch.timestamps
    sid = batch.source_ids
    ok = (ts[1:] > ts[:-1]) | ((ts[1:] == ts[:-1]) & (sid[1:] >= sid[:-1]))
    assert bool(np.all(ok)), "output not ordered by (timestamp, source_id)"


async def raw_connect(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", port)


async def reply(reader: asyncio.StreamReader, timeout_s: float = 10) -> bytes:
    async with asyncio.timeout(timeout_s):
        return await reader.readline()
