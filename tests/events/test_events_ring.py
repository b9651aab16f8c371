"""Built events through a real ring in one process: packing, linger, barriers, errors,
back-pressure from a full ring to XOFF, and the prebuilt unpack worker."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import numpy as np
import pytest
from ev_helpers import reference_events
from testsupport import run_checked, until

from evb.batch import Fragment, FragmentBatch, build_batch
from evb.builder import BuildConfig, TimestampPolicy
from evb.eventfmt import SlotEvents
from evb.notify import FlowChange, Notification
from evb.ringsink import (
    BuildingSink,
    EventRingReader,
    EventTooLargeError,
    RingEventWriter,
    RingOptions,
    concat_events,
    create_event_ring,
    plan_slots,
)
from evb.server import serve
from evb.settings import ServerSettings
from ringbuffer.errors import RingTimeoutError
from sources.client import SourceClient
from sources.simulated import SimulatedSource


def _frags(
    n: int, *, sids: tuple[int, ...] = (1, 2), step: int = 7, size: int = 8
) -> list[Fragment]:
    return [
        Fragment(timestamp=100 + i * step, source_id=s, payload=bytes([i % 251]) * size)
        for i in range(n)
        for s in sids
    ]


def _read_all(name: str, group: str) -> list[SlotEvents]:
    """Every slot until the end of data, copied (the views die with the slot)."""
    out = []
    with EventRingReader(name, group) as r:
        while (slot := r.next_copy()) is not None:
            out.append(slot)
    return out


def test_plan_slots_cuts_full_slots_and_after_barriers() -> None:
    frags = _frags(10, sids=(1,), size=20)
    frags.insert(3, Fragment(timestamp=110, source_id=1, barrier_type=1))
    frags.sort(key=lambda f: f.timestamp)
    b = BuildingSink([], BuildConfig(build=False))
    ev = concat_events([b.builder.feed(build_batch(frags)), b.builder.flush()])
    # one event = 16 (row) + 20 (header) + payload
    runs = plan_slots(ev, 64 + 3 * 56)
    assert runs[0][1] - runs[0][0] <= 3
    flat = [i for lo, hi in runs for i in range(lo, hi)]
    assert flat == list(range(len(ev)))
    bar = int(np.flatnonzero(ev.is_barrier)[0])
    assert any(hi == bar + 1 for _, hi in runs)
    with pytest.raises(EventTooLargeError, match="raise --ring-slot-bytes"):
        plan_slots(ev, 64 + 50)


def test_ring_carries_built_events_with_barriers_and_metadata(ring_name: str) -> None:
    opts = RingOptions(name=ring_name, slot_bytes=2048, slots=8, groups=("c",), linger_s=0.005)
    ring = create_event_ring(opts)
    frags = [Fragment(timestamp=50, source_id=1, barrier_type=1),
             Fragment(timestamp=50, source_id=2, barrier_type=1)]
    frags += _frags(200, step=30)
    frags += [Fragment(timestamp=10_000, source_id=1, barrier_type=2),
              Fragment(timestamp=10_000, source_id=2, barrier_type=2)]
    cfg = BuildConfig(build=True, dt_ticks=40, policy=TimestampPolicy.LATEST)
    got: list[SlotEvents] = []
    t = threading.Thread(target=lambda: got.extend(_read_all(ring_name, "c")))
    t.start()

    async def produce() -> None:
        sink = BuildingSink([RingEventWriter(ring, built=True, linger_s=opts.linger_s)], cfg)
        for lo in range(0, len(frags), 37):
            await sink.write(build_batch(frags[lo : lo + 37]))
        await sink.close()

    run_checked(produce())
    t.join(20)
    assert not t.is_alive()
    want = reference_events(frags, cfg)
    events = concat_events([s.events() for s in got])
    assert [f for f in events.fragments.fragments()] == frags
    assert events.counts.tolist() == [len(e) for _, e in want]
    assert events.timestamps.tolist() == [t for t, _ in want]
    assert all(s.built for s in got)
    # barriers reach the consumer: first and last events, each closing its slot
    assert events.is_barrier[:2].all() and events.is_barrier[-2:].all()
    for s in got:
        h = s.header[0]
        ev = s.events()
        assert int(h["n_events"]) == len(ev)
        assert int(h["first_timestamp"]) == int(ev.timestamps[0])
        assert int(h["last_timestamp"]) == int(ev.timestamps[-1])
        assert int(h["n_fragments"]) == len(s.fragments)
        if int(h["n_barriers"]):
            assert bool(ev.is_barrier[-1])


def test_partly_filled_slot_is_committed_after_linger(ring_name: str) -> None:
    ring = create_event_ring(RingOptions(name=ring_name, slot_bytes=1 << 16, slots=4,
                                         groups=("c",)))
    reader = EventRingReader(ring_name, "c")

    async def body() -> None:
        w = RingEventWriter(ring, built=False, linger_s=0.01)
        sink = BuildingSink([w], BuildConfig(build=False))
        await sink.write(build_batch(_frags(3)))
        with pytest.raises(RingTimeoutError):
            reader.next(0.0)  # not committed yet: the slot has room and no barrier

        def ready() -> bool:
            try:
                slot = reader.next(0.0)
            except RingTimeoutError:
                return False
            assert slot is not None and len(slot) == 6 and not slot.built
            return True

        await until(ready)
        await sink.close()

    try:
        run_checked(body())
        assert reader.next(5.0) is None  # close shut the ring down: end of data
    finally:
        reader.close()


def test_event_larger_than_a_slot_fails_loudly(ring_name: str) -> None:
    ring = create_event_ring(RingOptions(name=ring_name, slot_bytes=256, slots=2))

    async def body() -> None:
        sink = BuildingSink([RingEventWriter(ring)], BuildConfig(build=True, dt_ticks=1000))
        await sink.write(build_batch(_frags(5, size=40)))
        with pytest.raises(EventTooLargeError, match="ring slot holds 256"):
            await sink.close()

    run_checked(body())


def test_full_ring_gives_xoff_then_everything_arrives(ring_name: str) -> None:
    """A consumer that does not read: the ring fills, the EVB's output waits, in-flight bytes
    pass XoffThreshold, the server stops reading and the source blocks. Then the consumer
    reads and every fragment arrives, in order, built."""
    opts = RingOptions(name=ring_name, slot_bytes=8192, slots=4, groups=("slow",), linger_s=0.002)
    ring = create_event_ring(opts)
    cfg = BuildConfig(build=True, dt_ticks=50)
    writer = RingEventWriter(ring, built=True, linger_s=opts.linger_s)
    sink = BuildingSink([writer], cfg)
    settings = ServerSettings(host="127.0.0.1", port=0, xoff_bytes=60_000, xon_bytes=30_000)
    sim = SimulatedSource([1, 2, 3], count=3000, payload_bytes=64, batch=300,
                          ticks_per_fragment=100, seed=5)
    batches = list(sim)
    total = sum(len(b) for b in batches)
    sent = {"n": 0, "done": False}
    flow: list[FlowChange] = []
    consumed: list[SlotEvents] = []

    def source(port: int) -> None:
        with SourceClient.connect("127.0.0.1", port, "bp", [1, 2, 3]) as client:
            for b in batches:
                client.send(b)
                sent["n"] += len(b)
        sent["done"] = True

    def on_note(note: Notification) -> None:
        if isinstance(note, FlowChange) and note.connection is None:
            flow.append(note)

    async def body() -> dict[str, Any]:
        async with serve(settings, sink) as server:
            server.add_listener(on_note)
            port = server.address[1]
            th = threading.Thread(target=source, args=(port,))
            th.start()
            await until(lambda: any(not f.xon for f in flow))
            status = server.status()
            await until(lambda: writer.waiting_for_space)
            # the status shows it: XOFF, bytes in flight, the ring output waiting for a slot
            waiting = server.status()
            assert waiting["xoff"] is True
            assert waiting["output"]["ring_waiting"] is True
            assert waiting["output"]["ring_fill_level"] == 1.0
            blocked_at = sent["n"]
            # nothing is read: the source stays blocked, the ring stays full
            await asyncio.sleep(0.1)
            assert sent["n"] == blocked_at < total and not sent["done"]
            assert sink.status()["ring_waiting"] is True
            reader = threading.Thread(
                target=lambda: consumed.extend(_read_all(ring_name, "slow"))
            )
            reader.start()
            await until(lambda: sent["done"], timeout_s=60)
            th.join(5)
        reader.join(20)
        assert not reader.is_alive()
        return status

    status = run_checked(body())
    assert status["xoff"] is True and status["inflight_bytes"] >= 60_000
    assert [f.xon for f in flow][:2] == [False, True]
    events = concat_events([s.events() for s in consumed])
    assert int(events.counts.sum()) == total
    expected = FragmentBatch.concat(batches)
    order = np.lexsort((expected.source_ids, expected.timestamps))
    assert np.array_equal(events.fragments.flatten(), expected[order].flatten())
    assert writer.full_waits > 0
    # 3 sources 100 ticks apart with the same timestamps: each event = one of each source
    assert set(events.counts.tolist()) == {3}


def test_unpack_worker_decodes_payloads_onto_a_user_dtype(ring_name: str) -> None:
    from ringbuffer.functions.evb_events import unpack
    from ringbuffer.ring import RingBuffer
    from ringbuffer.worker import BufferIO

    src = create_event_ring(RingOptions(name=ring_name, slot_bytes=4096, slots=4,
                                        groups=("unpack",)))
    out_dtype = {"event_timestamp": "u8", "event": "i8", "n_fragments": "u4",
                 "source_id": "u4", "barrier_type": "u4", "adc": "u2", "tdc": "i4"}
    sink_ring = RingBuffer.create(f"{ring_name}.hits", slot_count=64, data_length=3,
                                  data_dtype=out_dtype, groups=("check",))
    pay = np.dtype([("adc", "<u2"), ("tdc", "<i4")])
    frags = [Fragment(timestamp=10, source_id=1, barrier_type=1)]
    for i in range(20):
        for s in (1, 2):
            rec = np.array([(100 * s + i, -i)], pay)
            frags.append(Fragment(timestamp=1000 + 100 * i + s, source_id=s,
                                  payload=rec.tobytes() + b"tail"))
    frags.append(Fragment(timestamp=9000, source_id=1, barrier_type=2))

    async def produce() -> None:
        sink = BuildingSink([RingEventWriter(src)], BuildConfig(build=True, dt_ticks=10))
        await sink.write(build_batch(frags))
        await sink.close()

    run_checked(produce())
    io = BufferIO("unpack", sources=[src], sinks=[sink_ring],
                  config={"payload_dtype": {"adc": "<u2", "tdc": "<i4"}})
    unpack(io)
    io.shutdown_sinks()
    rows = []
    reader = sink_ring.reader("check")
    for _meta, data in reader:
        rows.append(data.copy())
    reader.close()
    assert len(rows) == 22  # begin barrier, 20 events, end barrier
    assert rows[0]["barrier_type"][0] == 1 and rows[-1]["barrier_type"][0] == 2
    for i, r in enumerate(rows[1:-1]):
        assert r["event"].tolist() == [i + 1, i + 1, 0]
        assert r["n_fragments"].tolist() == [2, 2, 0]
        assert r["source_id"].tolist() == [1, 2, 0]
        assert r["adc"].tolist() == [100 + i, 200 + i, 0]
        assert r["tdc"].tolist() == [-i, -i, 0]
        assert r["event_timestamp"][0] == 1000 + 100 * i + 1


def test_ring_name_of_a_running_evb_is_refused_and_sinks_compose(
    ring_name: str, tmp_path: Any
) -> None:
    from evb.errors import ConfigError
    from evb.recording import EventFileWriter, FragmentFileWriter
    from evb.ringsink import make_output_sink
    from evb.sinks import FileSink, NullSink

    opts = RingOptions(name=ring_name, slot_bytes=1024, slots=2)
    create_event_ring(opts)
    with pytest.raises(ConfigError, match="belongs to running process"):
        create_event_ring(opts)
    with pytest.raises(ConfigError, match="Unknown ring setting 'slot'"):
        RingOptions.from_mapping({"name": "x", "slot": 3})
    assert isinstance(make_output_sink(), NullSink)
    out = tmp_path / "o.bin"
    assert isinstance(make_output_sink(output=out), FileSink)
    built = make_output_sink(output=out, build=BuildConfig(build=True, dt_ticks=5),
                             ring=RingOptions(name=f"{ring_name}.b", slot_bytes=1024, slots=2))
    assert isinstance(built, BuildingSink)
    assert [type(w) for w in built.writers] == [RingEventWriter, EventFileWriter]
    flat = make_output_sink(output=out, ring=RingOptions(name=f"{ring_name}.c", slots=2))
    assert [type(w) for w in flat.writers] == [RingEventWriter, FragmentFileWriter]
    assert flat.writers[0].built is False
    built.set_build("dt", "7")
    assert built.get_build("dt") == 7
    with pytest.raises(ConfigError):
        built.set_build("dt", "x")
    run_checked(built.close())
    run_checked(flat.close())


def test_unpacker_filters_sources_barriers_and_overflow() -> None:
    from evb.eventfmt import pack_slot
    from ringbuffer.errors import WorkerError
    from ringbuffer.functions.evb_events import EventUnpacker
    from ringbuffer.setup import SetupError

    frags = [Fragment(timestamp=1, source_id=1, barrier_type=1)]
    frags += [Fragment(timestamp=100 * i + s, source_id=s, payload=bytes([s, i]))
              for i in range(1, 4) for s in (1, 2, 3)]
    sink = BuildingSink([], BuildConfig(build=True, dt_ticks=10))
    ev = concat_events([sink.builder.feed(build_batch(frags)), sink.builder.flush()])
    slot = np.zeros(4096, np.uint8)
    pack_slot(ev, slot, built=True)
    out = np.dtype([("event", "i8"), ("source_id", "u4"), ("fragment_timestamp", "u8"),
                    ("a", "u1"), ("b", "u1")])
    pay = np.dtype([("a", "u1"), ("b", "u1")])
    rows = EventUnpacker(out, 2, payload_dtype=pay, barriers=False, sources=[3, 1]).unpack(slot)
    assert rows.shape == (3, 2)
    assert rows["source_id"].tolist() == [[1, 3]] * 3
    assert rows["b"].tolist() == [[1, 1], [2, 2], [3, 3]]
    assert rows["fragment_timestamp"][:, 1].tolist() == [103, 203, 303]
    with pytest.raises(WorkerError, match="has 3 fragments, the sink holds 2 rows"):
        EventUnpacker(out, 2, payload_dtype=pay).unpack(slot)
    cut = EventUnpacker(out, 2, payload_dtype=pay, overflow="truncate").unpack(slot)
    assert cut.shape == (4, 2) and cut["event"][:, 0].tolist() == [0, 1, 2, 3]
    with pytest.raises(SetupError, match="neither event columns"):
        EventUnpacker(np.dtype([("adc", "u2")]), 2)
