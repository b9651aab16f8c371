"""Process targets for the ring tests (module level so spawn can import them)."""

from __future__ import annotations

import os
import signal
import time

import numpy as np

from ringbuffer import RingBuffer

DTYPE = {"seq": "i8", "writer": "i4", "value": "f8"}


def write_seq(name: str, start: int, count: int, writer_id: int, batch: int = 1) -> None:
    ring = RingBuffer.attach(name)
    w = ring.writer()
    i = start
    end = start + count
    while i < end:
        if batch == 1:
            with w as (_meta, data):
                data["seq"] = i
                data["writer"] = writer_id
                data["value"] = i * 0.5
            i += 1
        else:
            b = w.claim(min(batch, end - i))
            k = len(b)
            b.data["seq"] = (i + np.arange(k))[:, None]
            b.data["writer"] = writer_id
            b.commit()
            i += k
    w.close()


def read_all(name: str, group: str, out_path: str, batch: int = 1, delay: float = 0.0) -> None:
    ring = RingBuffer.attach(name)
    r = ring.reader(group)
    got: list[int] = []
    if batch == 1:
        while True:
            with r as (_meta, data):
                if data is None:
                    break
                got.append(int(data["seq"][0]))
                if delay:
                    time.sleep(delay)
    else:
        while (b := r.claim(batch)) is not None:
            got.extend(int(x) for x in b.data["seq"][:, 0])
            b.release()
    np.save(out_path, np.array(got, dtype=np.int64))


def relay(src: str, dst: str, group: str) -> None:
    """Copy every slot of ``src`` to ``dst``; shut ``dst`` down at the end of ``src``."""
    a = RingBuffer.attach(src)
    b = RingBuffer.attach(dst)
    r = a.reader(group)
    w = b.writer()
    while True:
        with r as (meta, data):
            if data is None:
                break
            with w as (m2, d2):
                d2[...] = data
                m2[...] = meta
    b.shutdown()


def hold_forever(name: str, group: str, ready_path: str) -> None:
    """Take one slot and hang inside it (to be SIGKILLed)."""
    ring = RingBuffer.attach(name)
    r = ring.reader(group)
    with r as (_meta, data):
        with open(ready_path, "w") as f:
            f.write(str(int(data["seq"][0])))
        while True:
            time.sleep(1)


def observe_check(name: str, out_path: str) -> None:
    """Observe until shutdown; record torn copies (all fields of a slot must agree)."""
    ring = RingBuffer.attach(name)
    obs = ring.observer()
    seen = 0
    bad = 0
    while True:
        got = obs.observe(timeout=5)
        if got is None:
            break
        meta, data = got
        seen += 1
        uniform = np.all(data["seq"] == data["seq"][0])
        if not (uniform and int(meta["counter"][0]) == int(data["seq"][0])):
            bad += 1
    np.save(out_path, np.array([seen, bad, obs.torn_retries]))


def write_uniform(name: str, count: int) -> None:
    """Fill every record of a slot with the slot's sequence number (torn copies are visible)."""
    ring = RingBuffer.attach(name)
    w = ring.writer()
    for _ in range(count):
        with w as (meta, data):
            data["seq"] = meta["counter"][0]
            data["value"] = meta["counter"][0]
    ring.shutdown()


def suicide_writer(name: str) -> None:
    ring = RingBuffer.attach(name)
    w = ring.writer()
    w.claim(2)  # claim and never publish
    os.kill(os.getpid(), signal.SIGKILL)
