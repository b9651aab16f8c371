"""The inlined one-slot fast paths of ``with writer`` / ``with reader`` keep every guarantee."""

from __future__ import annotations

import multiprocessing as mp
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import ring_helpers as H

from ringbuffer import RingBuffer, RingTimeoutError


def _held(ring: RingBuffer, role: str) -> int:
    return sum(c.held for c in ring.clients() if c.role == role and c.pid == os.getpid())


def test_write_read_return_reusable_context_managers(ring_name: str) -> None:
    ring = RingBuffer.create(ring_name, slot_count=4, data_length=2, data_dtype=H.DTYPE)
    w, r = ring.writer(), ring.reader()
    assert w.write() is w and r.read() is r
    t0 = time.time()
    for i in range(50):
        with w.write() as (meta, data):
            assert meta["counter"][0] == i and meta["deadtime"][0] == 0.0
            assert meta["timestamp"][0] >= t0
            assert _held(ring, "writer") == 1  # crash safety: the claim is in the client table
            data["seq"] = i
        assert _held(ring, "writer") == 0
        with r.read() as (meta, data):
            assert meta["counter"][0] == i and list(data["seq"]) == [i, i]
            assert _held(ring, "reader") == 1
        assert _held(ring, "reader") == 0
    counts = {c.role: c.count for c in ring.clients()}
    assert counts == {"writer": 50, "reader": 50}
    with pytest.raises(RingTimeoutError), r.read(timeout=0.05):
        pass
    for _ in range(4):
        with w.write(timeout=0.05):
            pass
    with pytest.raises(RingTimeoutError), w.write(timeout=0.05):
        pass
    assert ring.get_stats()["event_count"] == 54


def test_writer_fast_path_follows_group_changes(ring_name: str) -> None:
    ring = RingBuffer.create(ring_name, slot_count=4, data_length=1, data_dtype=H.DTYPE)
    w, a = ring.writer(), ring.reader()
    for i in range(2):
        with w as (_m, d):
            d["seq"] = i
        with a as (_m, d):
            assert d["seq"][0] == i
    b = ring.reader("b")  # starts at sequence 2; the writer must now wait for it too
    for i in range(2, 6):
        with w.write(timeout=1.0) as (_m, d):
            d["seq"] = i
        with a as (_m, d):
            assert d["seq"][0] == i
    with pytest.raises(RingTimeoutError), w.write(timeout=0.05):
        pass  # slot of sequence 6 still holds sequence 2 for group b
    with b as (_m, d):
        assert d["seq"][0] == 2
    with w as (_m, d):
        d["seq"] = 6
    assert ring.remove_group("b")
    for i in range(7, 20):  # b is gone: only group "default" limits the writer
        with a as (_m, d):
            assert d["seq"][0] == i - 1
        with w.write(timeout=1.0) as (_m, d):
            d["seq"] = i
    ring.shutdown()
    assert [int(d["seq"][0]) for _m, d in a] == [19]


def test_reader_fast_path_skips_dropped_and_drains_at_shutdown(ring_name: str) -> None:
    ring = RingBuffer.create(ring_name, slot_count=4, data_length=1, data_dtype=H.DTYPE)
    w, r = ring.writer(), ring.reader()
    with w as (_m, d):
        d["seq"] = 0
    with pytest.raises(KeyError), w as (_m, d):
        d["seq"] = 1
        raise KeyError("dropped")
    with w as (_m, d):
        d["seq"] = 2
    got = []
    for _ in range(2):
        with r.read() as (_m, d):
            got.append(int(d["seq"][0]))
    assert got == [0, 2]
    assert ring.get_stats()["groups"]["default"]["skipped"] == 1
    _meta, data = w.__enter__()  # claimed before shutdown: readers still get it
    ring.shutdown()
    data["seq"] = 3
    w.__exit__(None, None, None)
    with w as (_m, d):  # after shutdown: scratch area, counted as discarded
        d["seq"] = 4
    assert [int(d["seq"][0]) for _m, d in r] == [3]
    assert ring.get_stats()["discarded_shutdown"] == 1


def test_pause_goes_around_the_fast_path(ring_name: str) -> None:
    ring = RingBuffer.create(ring_name, slot_count=4, data_length=1, data_dtype=H.DTYPE)
    w, r = ring.writer(), ring.reader()
    ring.pause()
    for _ in range(10):
        with w as (_m, d):
            d["seq"] = -1
    ring.resume()
    with w as (_m, d):
        d["seq"] = 5
    ring.shutdown()
    assert [int(d["seq"][0]) for _m, d in r] == [5]
    assert ring.get_stats()["paused_count"] == 10


def _child_writes(ring: RingBuffer, w: Any, n: int) -> None:
    for i in range(n):
        with w as (_m, d):
            d["seq"] = 100 + i


def test_client_used_after_fork_registers_in_child(ring_name: str, tmp_path: Path) -> None:
    ring = RingBuffer.create(ring_name, slot_count=8, data_length=1, data_dtype=H.DTYPE)
    w, r = ring.writer(), ring.reader()
    with w as (_m, d):
        d["seq"] = 99
    p = mp.get_context("fork").Process(target=_child_writes, args=(ring, w, 5))
    p.start()
    p.join(20)
    assert p.exitcode == 0
    ring.shutdown()
    assert [int(d["seq"][0]) for _m, d in r] == [99, 100, 101, 102, 103, 104]
    assert ring.get_stats()["event_count"] == 6
    assert np.all([c.held == 0 for c in ring.clients()])
    child = [c for c in ring.clients() if c.pid == p.pid]
    assert len(child) == 1 and child[0].role == "writer" and child[0].count == 5
    ring.reap(force=True)  # the child left through os._exit: its row goes with the reaper
    assert all(c.pid == os.getpid() for c in ring.clients())


def _latencies(name: str, out_path: str) -> None:
    ring = RingBuffer.attach(name)
    r = ring.reader()
    lat = []
    while True:
        with r as (meta, data):
            if data is None:
                break
            lat.append(time.time() - float(meta["timestamp"][0]))
    np.save(out_path, np.array(lat))


def test_sleeping_reader_is_woken_by_fast_path_publish(ring_name: str, tmp_path: Path) -> None:
    """A reader asleep on its bell gets each slot at once, not at its 20 ms poll."""
    ring = RingBuffer.create(ring_name, slot_count=8, data_length=1, data_dtype=H.DTYPE)
    out = tmp_path / "lat.npy"
    p = mp.get_context("fork").Process(target=_latencies, args=(ring_name, str(out)))
    p.start()
    w = ring.writer()
    time.sleep(0.2)
    gaps = np.random.default_rng(1).uniform(0.021, 0.049, 25)  # not in phase with POLL_S
    for i in range(25):
        time.sleep(gaps[i])  # the reader spins, yields, then sleeps on its bell
        with w as (_m, d):
            d["seq"] = i
    ring.shutdown()
    p.join(20)
    assert p.exitcode == 0
    lat = np.load(out)
    assert len(lat) == 25
    # without the wake-up a slot waits for the reader's next poll: median ~10 ms (POLL_S 20 ms)
    assert float(np.median(lat)) < 0.005, lat
