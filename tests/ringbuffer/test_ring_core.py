"""Ring buffer behaviour with real processes and real shared memory."""

from __future__ import annotations

import multiprocessing as mp
import os
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import ring_helpers as H

from ringbuffer import BufferExistsError, RingBuffer, RingTimeoutError
from ringbuffer.shm import SHM_DIR, list_segment_names

REPO = Path(__file__).resolve().parents[2]


def _join(procs: list[mp.process.BaseProcess], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    for p in procs:
        p.join(max(0.1, deadline - time.monotonic()))
    alive = [p for p in procs if p.is_alive()]
    for p in alive:
        p.kill()
    assert not alive, f"processes hung: {alive}"
    assert all(p.exitcode == 0 for p in procs), [p.exitcode for p in procs]


def test_single_process_round_trip(ring_name: str) -> None:
    ring = RingBuffer.create(ring_name, slot_count=4, data_length=3, data_dtype=H.DTYPE)
    w, r = ring.writer(), ring.reader()
    for i in range(10):
        with w as (meta, data):
            data["seq"] = i
        with r as (meta, data):
            assert list(data["seq"]) == [i, i, i]
            assert meta["counter"][0] == i
    ring.shutdown()
    with r as (meta, data):
        assert meta is None and data is None
    assert ring.get_stats()["event_count"] == 10


def test_try_write_never_blocks_and_bytes_api(ring_name: str) -> None:
    ring = RingBuffer.create(ring_name, slot_count=2, data_length=16, data_dtype={"bytes": "u1"})
    w, r = ring.writer(), ring.reader()
    assert w.try_write(b"hello")
    assert w.try_write(memoryview(b"world!"))
    t0 = time.monotonic()
    assert not w.try_write(b"full")  # ring full: returns at once
    assert time.monotonic() - t0 < 1.0
    assert not w.try_write(b"full", timeout=0.05)
    b = r.claim(4)
    assert b is not None and len(b) == 2
    assert bytes(b.data[0][:5]) == b"hello" and bytes(b.data[1][:6]) == b"world!"
    b.release()
    assert w.write_many([b"a", b"b", b"c"]) == 2
    with pytest.raises(RingTimeoutError):
        w.claim(1, timeout=0.01)
    assert r.poll(8) is not None


def test_create_twice_fails_and_attach_does_not_unlink(ring_name: str) -> None:
    RingBuffer.create(ring_name, slot_count=4, data_length=1, data_dtype=H.DTYPE)
    with pytest.raises(BufferExistsError):
        RingBuffer.create(ring_name, slot_count=4, data_length=1, data_dtype=H.DTYPE)
    code = (
        f"from ringbuffer import RingBuffer; r = RingBuffer.attach({ring_name!r}); w = r.writer();"
        "w.try_write(r.data_example)"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO, timeout=30)
    assert ring_name in list_segment_names()  # the attaching process did not unlink it


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_every_group_sees_every_slot_once(ring_name: str, tmp_path: Path, method: str) -> None:
    ctx = mp.get_context(method)
    ring = RingBuffer.create(
        ring_name, slot_count=16, data_length=1, data_dtype=H.DTYPE, groups=["a", "b"]
    )
    n_per_writer = 3000 if method == "fork" else 1500
    writers = [
        ctx.Process(target=H.write_seq, args=(ring_name, k * n_per_writer, n_per_writer, k, b))
        for k, b in ((0, 1), (1, 7))
    ]
    readers = [
        ctx.Process(target=H.read_all, args=(ring_name, g, str(tmp_path / f"{g}{i}.npy"), b))
        for g in ("a", "b")
        for i, b in ((0, 1), (1, 5))
    ]
    for p in readers + writers:
        p.start()
    _join(writers)
    ring.shutdown()
    _join(readers)
    expected = np.arange(2 * n_per_writer)
    for g in ("a", "b"):
        got = np.concatenate([np.load(tmp_path / f"{g}{i}.npy") for i in range(2)])
        assert np.array_equal(np.sort(got), expected), f"group {g} lost or duplicated slots"
    st = ring.get_stats()
    assert st["event_count"] == 2 * n_per_writer
    assert st["groups"]["a"]["read"] == 2 * n_per_writer


def test_observer_never_torn(ring_name: str, tmp_path: Path) -> None:
    RingBuffer.create(ring_name, slot_count=4, data_length=2048, data_dtype=H.DTYPE)
    ctx = mp.get_context("fork")
    obs = ctx.Process(target=H.observe_check, args=(ring_name, str(tmp_path / "obs.npy")))
    rd = ctx.Process(target=H.read_all, args=(ring_name, "default", str(tmp_path / "r.npy")))
    wr = ctx.Process(target=H.write_uniform, args=(ring_name, 4000))
    for p in (obs, rd, wr):
        p.start()
    _join([wr, rd, obs])
    seen, bad, _retries = np.load(tmp_path / "obs.npy")
    assert seen > 0
    assert bad == 0
    assert len(np.load(tmp_path / "r.npy")) == 4000  # the observer took nothing from readers


def test_pause_resume_counts(ring_name: str) -> None:
    ring = RingBuffer.create(ring_name, slot_count=8, data_length=1, data_dtype=H.DTYPE)
    w, r = ring.writer(), ring.reader()
    with w as (_m, d):
        d["seq"] = 1
    ring.pause()
    for _ in range(5):
        with w as (_m, d):
            d["seq"] = 99
    b = w.try_claim(3)
    assert b is not None and b.discard
    b.commit()
    assert ring.get_stats()["paused"] and ring.get_stats()["paused_count"] == 8
    ring.resume()
    with w as (_m, d):
        d["seq"] = 2
    ring.shutdown()
    assert [int(d["seq"][0]) for _m, d in r] == [1, 2]
    assert ring.get_stats()["event_count"] == 2


def test_shutdown_cascade_through_three_buffers(ring_name: str, tmp_path: Path) -> None:
    names = [f"{ring_name}.{i}" for i in range(3)]
    rings = [
        RingBuffer.create(n, slot_count=8, data_length=1, data_dtype=H.DTYPE, groups=["g"])
        for n in names
    ]
    ctx = mp.get_context("fork")
    n = 5000
    procs = [
        ctx.Process(target=H.relay, args=(names[0], names[1], "g")),
        ctx.Process(target=H.relay, args=(names[1], names[2], "g")),
        ctx.Process(target=H.read_all, args=(names[2], "g", str(tmp_path / "out.npy"), 1, 0.0)),
    ]
    for p in procs:
        p.start()
    H.write_seq(names[0], 0, n, 0)
    rings[0].shutdown()
    _join(procs)
    assert np.array_equal(np.load(tmp_path / "out.npy"), np.arange(n))
    assert all(r.is_shutdown for r in rings)


def test_sigkill_reader_slot_reclaimed(ring_name: str, tmp_path: Path) -> None:
    ring = RingBuffer.create(
        ring_name, slot_count=4, data_length=1, data_dtype=H.DTYPE, groups=["g"]
    )
    ctx = mp.get_context("fork")
    ready = tmp_path / "ready"
    victim = ctx.Process(target=H.hold_forever, args=(ring_name, "g", str(ready)))
    victim.start()
    w = ring.writer()
    with w as (_m, d):
        d["seq"] = 0
    deadline = time.monotonic() + 20
    while not ready.exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert ready.exists()
    os.kill(victim.pid, signal.SIGKILL)
    victim.join(5)
    other = ctx.Process(target=H.read_all, args=(ring_name, "g", str(tmp_path / "o.npy")))
    other.start()
    # the held slot (seq 0) blocks slot 0 for seq 4: writing 20 more needs the reclaim
    for i in range(1, 21):
        with w.write(timeout=20) as (_m, d):
            d["seq"] = i
    ring.shutdown()
    _join([other])
    assert list(np.load(tmp_path / "o.npy")) == list(range(1, 21))
    st = ring.get_stats()
    assert st["reclaimed_reads"] == 1
    assert st["groups"]["g"]["reclaimed"] == 1
    assert all(c.pid != victim.pid for c in ring.clients())


def test_sigkill_writer_claims_are_skipped(ring_name: str, tmp_path: Path) -> None:
    ring = RingBuffer.create(ring_name, slot_count=8, data_length=1, data_dtype=H.DTYPE)
    ctx = mp.get_context("fork")
    p = ctx.Process(target=H.suicide_writer, args=(ring_name,))
    p.start()
    p.join(10)
    assert p.exitcode == -signal.SIGKILL
    w, r = ring.writer(), ring.reader()
    with w as (_m, d):
        d["seq"] = 42
    ring.shutdown()
    assert [int(d["seq"][0]) for _m, d in r] == [42]
    assert ring.get_stats()["reclaimed_writes"] == 2


def test_pickle_reattaches_by_name(ring_name: str) -> None:
    ring = RingBuffer.create(ring_name, slot_count=4, data_length=1, data_dtype=H.DTYPE)
    copy = pickle.loads(pickle.dumps(ring))
    assert copy.name == ring.name and copy.data_dtype == ring.data_dtype and not copy.is_owner


def test_late_group_starts_at_current_position(ring_name: str) -> None:
    ring = RingBuffer.create(ring_name, slot_count=4, data_length=1, data_dtype=H.DTYPE)
    w, r = ring.writer(), ring.reader()
    for i in range(3):
        with w as (_m, d):
            d["seq"] = i
    late = ring.reader("late")
    with w as (_m, d):
        d["seq"] = 3
    ring.shutdown()
    assert [int(d["seq"][0]) for _m, d in late] == [3]
    assert [int(d["seq"][0]) for _m, d in r] == [0, 1, 2, 3]


def test_exception_in_write_block_drops_slot(ring_name: str) -> None:
    ring = RingBuffer.create(ring_name, slot_count=4, data_length=1, data_dtype=H.DTYPE)
    w, r = ring.writer(), ring.reader()
    with pytest.raises(ZeroDivisionError), w as (_m, d):
        d["seq"] = 7
        1 / 0  # noqa: B018
    with w as (_m, d):
        d["seq"] = 8
    ring.shutdown()
    assert [int(d["seq"][0]) for _m, d in r] == [8]


def _evb_ring(*args: str) -> subprocess.CompletedProcess[str]:
    exe = REPO / ".venv" / "bin" / "evb-ring"
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "ringbuffer.cli"]
    return subprocess.run([*cmd, *args], capture_output=True, text=True, timeout=60, cwd=REPO)


def test_evb_ring_ls_and_rm_leftover(ring_name: str) -> None:
    name = f"{ring_name}.left"
    code = (
        "import os, signal; from ringbuffer import RingBuffer;"
        f"r = RingBuffer.create({name!r}, slot_count=4, data_length=1, data_dtype={{'x': 'f8'}});"
        "w = r.writer(); w.try_write(r.data_example); os.kill(os.getpid(), signal.SIGKILL)"
    )
    subprocess.run([sys.executable, "-c", code], cwd=REPO, timeout=30)
    assert name in list_segment_names()  # SIGKILLed creator left it behind
    ls = _evb_ring("ls")
    assert ls.returncode == 0
    assert name in ls.stdout and "DEAD" in ls.stdout and "writer" in ls.stdout
    rm = _evb_ring("rm", name)
    assert rm.returncode == 0, rm.stderr
    assert name not in list_segment_names()
    assert not [e for e in os.listdir(SHM_DIR) if f"evbr.{name}." in e]


def test_owner_unlinks_on_sigterm(ring_name: str) -> None:
    name = f"{ring_name}.term"
    code = (
        "import time; from ringbuffer import RingBuffer;"
        f"r = RingBuffer.create({name!r}, slot_count=4, data_length=1, data_dtype={{'x': 'f8'}});"
        "print('ready', flush=True); time.sleep(60)"
    )
    p = subprocess.Popen([sys.executable, "-c", code], cwd=REPO, stdout=subprocess.PIPE, text=True)
    assert p.stdout is not None and p.stdout.readline().strip() == "ready"
    assert name in list_segment_names()
    p.send_signal(signal.SIGTERM)
    p.wait(20)
    assert name not in list_segment_names()
