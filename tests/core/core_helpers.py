"""Small builders shared by the core tests."""

from __future__ import annotations

from collections.abc import Iterable

from evb.batch import Fragment, FragmentBatch, build_batch
from evb.orderer import Orderer, Output


def frag(sid: int, ts: int, payload: bytes | None = None, barrier: int = 0) -> Fragment:
    if payload is None:
        payload = f"{sid}:{ts}".encode()
    return Fragment(timestamp=ts, source_id=sid, payload=payload, barrier_type=barrier)


def batch(*frags: Fragment) -> FragmentBatch:
    return build_batch(frags)


def send(o: Orderer, sid: int, tss: Iterable[int], now: float, conn: str | None = None) -> Output:
    """Submit one message of data fragments from ``sid`` and poll, like the server driver."""
    o.submit(build_batch([frag(sid, t) for t in tss]), now=now, connection=conn)
    return o.poll(now)


def timestamps(out: Output) -> list[int]:
    return [int(t) for b in out.batches for t in b.timestamps]


def pairs(out: Output) -> list[tuple[int, int]]:
    return [
        (int(s), int(t))
        for b in out.batches
        for s, t in zip(b.source_ids, b.timestamps, strict=True)
    ]
