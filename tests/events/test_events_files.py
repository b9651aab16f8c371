"""Recording built events, reading both kinds of files, evb-dump, replay (in process)."""

from __future__ import annotations

import asyncio
import io
from pathlib import Path

import numpy as np
import pytest
from testsupport import run_checked

from evb.batch import Fragment, FragmentBatch, build_batch
from evb.builder import BuildConfig
from evb.dump import main as dump_main
from evb.eventfmt import event_file_header
from evb.recording import EventFileWriter, RecordingError, open_recording
from evb.ringsink import BuildingSink
from evb.server import serve
from evb.settings import ServerSettings
from evb.sinks import FileSink
from sources.replay import message_ranges, plan_replay, replay
from sources.simulated import SimulatedSource

FRAGS = [
    Fragment(timestamp=5, source_id=1, barrier_type=1),
    Fragment(timestamp=5, source_id=2, barrier_type=1),
    Fragment(timestamp=100, source_id=1, payload=bytes(range(20))),
    Fragment(timestamp=120, source_id=2, payload=b"\xab\xcd"),
    Fragment(timestamp=300, source_id=2, payload=b"x"),
    Fragment(timestamp=900, source_id=1, barrier_type=2),
]


def _write_events(path: Path, frags: list[Fragment], cfg: BuildConfig) -> None:
    async def body() -> None:
        sink = BuildingSink([EventFileWriter(path)], cfg)
        await sink.write(build_batch(frags[:3]))
        await sink.write(build_batch(frags[3:]))
        await sink.close()

    run_checked(body())


def _write_fragments(path: Path, frags: list[Fragment]) -> None:
    async def body() -> None:
        sink = FileSink(path)
        await sink.write(build_batch(frags))
        await sink.close()

    run_checked(body())


def test_built_event_file_layout_and_reader(tmp_path: Path) -> None:
    path = tmp_path / "ev.evb"
    _write_events(path, FRAGS, BuildConfig(build=True, dt_ticks=50))
    raw = path.read_bytes()
    assert raw[:16] == event_file_header()
    body = raw[16:]
    # first event: the begin barrier of source 1 alone: size word = 4 + 20
    assert int.from_bytes(body[:4], "little") == 24
    rec = open_recording(path)
    assert rec.kind == "events" and rec.built
    assert rec.events.counts.tolist() == [1, 1, 2, 1, 1]
    assert rec.fragments.fragments() == FRAGS
    assert rec.events.flatten().tobytes() == body


def test_fragment_stream_is_read_one_fragment_per_event(tmp_path: Path) -> None:
    path = tmp_path / "frag.bin"
    _write_fragments(path, FRAGS)
    assert path.read_bytes() == build_batch(FRAGS).flatten().tobytes()  # NSCLDAQ, no header
    rec = open_recording(path)
    assert rec.kind == "fragments"
    assert len(rec.events) == len(FRAGS) and rec.fragments.fragments() == FRAGS


def test_corrupt_and_empty_files(tmp_path: Path) -> None:
    bad = tmp_path / "bad.evb"
    bad.write_bytes(event_file_header() + (100).to_bytes(4, "little") + b"\0" * 10)
    with pytest.raises(RecordingError, match="corrupt"):
        open_recording(bad)
    empty = tmp_path / "empty.bin"
    empty.write_bytes(b"")
    assert len(open_recording(empty).events) == 0
    err = io.StringIO()
    assert dump_main([str(bad)], out=err) == 1


def test_dump_prints_events_fragments_and_filters(tmp_path: Path) -> None:
    path = tmp_path / "ev.evb"
    _write_events(path, FRAGS, BuildConfig(build=True, dt_ticks=50))
    out = io.StringIO()
    assert dump_main([str(path)], out=out) == 0
    text = out.getvalue().splitlines()
    assert text[0].startswith(f"File {path}: built events, 5 events")
    assert text[1] == "Event barrier timestamp 5 fragments 1 size 24"
    assert text[2] == "  Fragment timestamp 5 source 1 barrier 1 (begin run) size 0: "
    assert "Event timestamp 100 fragments 2 size 66" in text
    assert ("  Fragment timestamp 100 source 1 barrier 0 size 20: "
            "00 01 02 03 04 05 06 07 08 09 0a 0b 0c 0d 0e 0f ...") in text
    assert "  Fragment timestamp 120 source 2 barrier 0 size 2: ab cd" in text
    assert text[-1] == "  Fragment timestamp 900 source 1 barrier 2 (end run) size 0: "

    out = io.StringIO()
    assert dump_main([str(path), "--source", "2", "--count", "2", "--hex-bytes", "1"],
                     out=out) == 0
    lines = out.getvalue().splitlines()[1:]
    assert lines == [
        "Event barrier timestamp 5 fragments 1 size 24",
        "  Fragment timestamp 5 source 2 barrier 1 (begin run) size 0: ",
        "Event timestamp 100 fragments 2 size 66",
        "  Fragment timestamp 120 source 2 barrier 0 size 2: ab ...",
    ]


def test_dump_fragment_stream(tmp_path: Path) -> None:
    path = tmp_path / "frag.bin"
    _write_fragments(path, FRAGS)
    out = io.StringIO()
    assert dump_main([str(path), "--count", "3"], out=out) == 0
    lines = out.getvalue().splitlines()
    assert lines[0].startswith(f"File {path}: fragment stream, 6 fragments")
    assert lines[1:] == [
        "Fragment timestamp 5 source 1 barrier 1 (begin run) size 0: ",
        "Fragment timestamp 5 source 2 barrier 1 (begin run) size 0: ",
        "Fragment timestamp 100 source 1 barrier 0 size 20: "
        "00 01 02 03 04 05 06 07 08 09 0a 0b 0c 0d 0e 0f ...",
    ]


def test_message_ranges_unpaced_and_paced() -> None:
    ts = np.array([0, 10, 20, 1000, 1005, 5000], np.uint64)
    assert list(message_ranges(ts, batch=4)) == [(0, 4, 0.0), (4, 6, 0.0)]
    # 1000 ticks per second: a message holds the fragments due within 10 ms (10 ticks)
    assert list(message_ranges(ts, batch=100, ticks_per_second=1000)) == [
        (0, 2, 0.0), (2, 3, 0.02), (3, 5, 1.0), (5, 6, 5.0)
    ]


def _record(path: Path, batches: list[FragmentBatch] | Path, cfg: BuildConfig) -> None:
    """Run an EVB in process with a built-event file output; feed it ``batches`` or a replay."""

    async def body() -> None:
        sink = BuildingSink([EventFileWriter(path)], cfg)
        async with serve(ServerSettings(host="127.0.0.1", port=0), sink) as server:
            port = server.address[1]
            if isinstance(batches, Path):
                plan = plan_replay(batches)
                await asyncio.to_thread(replay, plan, "127.0.0.1", port, batch=333)
            else:
                from sources.client import AsyncSourceClient

                async with await AsyncSourceClient.connect(
                    "127.0.0.1", port, "rec", [1, 2, 3], window=4
                ) as client:
                    for b in batches:
                        await client.send(b)

    run_checked(body())


def test_record_then_replay_gives_the_same_bytes(tmp_path: Path) -> None:
    sim = SimulatedSource([1, 2, 3], count=2000, payload_bytes=24, batch=500,
                          ticks_per_fragment=40, jitter_ticks=30, begin_barrier=True,
                          end_barrier=True, seed=9)
    cfg = BuildConfig(build=True, dt_ticks=25, max_fragments=3)
    first = tmp_path / "first.evb"
    second = tmp_path / "second.evb"
    _record(first, list(sim), cfg)
    _record(second, first, cfg)
    a = first.read_bytes()
    assert len(a) > 16 + 6000 * 20
    assert a == second.read_bytes()
    rec = open_recording(first)
    assert int(rec.events.counts.sum()) == 6000 + 6
    assert rec.events.is_barrier[:3].all() and rec.events.is_barrier[-3:].all()
