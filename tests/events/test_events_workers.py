"""evb-workers attached to a ring created by another process (``external: true``)."""

from __future__ import annotations

import csv
import subprocess
from pathlib import Path

import pytest
from ev_helpers import VENV_BIN
from testsupport import run_checked

from evb.batch import Fragment, build_batch
from evb.builder import BuildConfig
from evb.ringsink import BuildingSink, RingEventWriter, RingOptions, create_event_ring
from ringbuffer.errors import SetupError
from ringbuffer.setup import load_setup

SETUP = """
Buffers:
  {ring}:
    external: true
  hits:
    slot_count: 16
    data_length: 2
    data_dtype: {{event: int64, source_id: uint32, barrier_type: uint32, value: int32}}
Workers:
  unpack:
    function: evb_events.unpack
    config:
      payload_dtype: {{value: "<i4"}}
    sources: [{ring}]
    sinks: [hits]
  save:
    function: exporters.csv
    config: {{filename: hits}}
    sources: [hits]
"""


def test_external_buffer_in_a_setup(tmp_path: Path) -> None:
    path = tmp_path / "setup.yaml"
    path.write_text(SETUP.format(ring="evbring"))
    setup = load_setup(path)
    spec = setup.buffers["evbring"]
    assert spec.external and spec.ring_name == "evbring" and spec.data_dtype is None
    path.write_text("Buffers:\n  b:\n    external: true\n    colour: red\n"
                    "Workers:\n  w:\n    function: exporters.drain\n    sources: [b]\n")
    with pytest.raises(SetupError, match=r"Buffers\.b\.colour: unknown key"):
        load_setup(path)


def test_missing_external_ring_is_a_clear_error(tmp_path: Path, ring_name: str) -> None:
    path = tmp_path / "setup.yaml"
    path.write_text(SETUP.format(ring=ring_name))
    res = subprocess.run([str(VENV_BIN / "evb-workers"), str(path), "--run-dir",
                          str(tmp_path / "run")], capture_output=True, timeout=60)
    assert res.returncode != 0
    assert f"ring {ring_name!r} does not exist" in res.stderr.decode() + res.stdout.decode()


def test_workers_consume_a_ring_they_did_not_create(
    tmp_path: Path, ring_name: str, procs: list[subprocess.Popen[bytes]]
) -> None:
    ring = create_event_ring(RingOptions(name=ring_name, slot_bytes=2048, slots=4,
                                         groups=("unpack",)))
    path = tmp_path / "setup.yaml"
    path.write_text(SETUP.format(ring=ring_name))
    run_dir = tmp_path / "run"
    workers = subprocess.Popen([str(VENV_BIN / "evb-workers"), str(path), "--run-dir",
                                str(run_dir)], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    procs.append(workers)
    frags = [Fragment(timestamp=1, source_id=1, barrier_type=1)]
    frags += [Fragment(timestamp=100 * i + s, source_id=s,
                       payload=(i * 10 + s).to_bytes(4, "little", signed=True))
              for i in range(1, 301) for s in (1, 2)]

    async def produce() -> None:
        sink = BuildingSink([RingEventWriter(ring)], BuildConfig(build=True, dt_ticks=5))
        for lo in range(0, len(frags), 50):
            await sink.write(build_batch(frags[lo : lo + 50]))
        await sink.close()  # shuts the ring down: the pipeline drains and ends

    run_checked(produce())
    out, err = workers.communicate(timeout=60)
    assert workers.returncode == 0, err.decode() + out.decode()
    with open(run_dir / "hits.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 2 * 301  # one slot (2 rows) per event
    assert rows[0]["barrier_type"] == "1"
    data = rows[2:]
    assert [int(r["value"]) for r in data] == [i * 10 + s for i in range(1, 301) for s in (1, 2)]
    assert [int(r["event"]) for r in data[::2]] == list(range(1, 301))
    # the EVB's ring is not removed by the pipeline
    from ringbuffer.ring import RingBuffer

    assert RingBuffer.attach(ring_name, timeout=0.1).is_shutdown
