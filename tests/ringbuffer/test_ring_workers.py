"""Worker framework: YAML setups, templates, prebuilt functions, evb-workers end to end."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from ringbuffer import RingBuffer, SetupError
from ringbuffer.fileformat import MAGIC, RecordReader, RecordWriter
from ringbuffer.functions.analyzers import _find_peaks_numpy, find_peaks
from ringbuffer.setup import load_setup
from ringbuffer.shm import list_segment_names
from ringbuffer.worker import BufferIO

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "workers" / "simple"


def _evb_workers(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    exe = REPO / ".venv" / "bin" / "evb-workers"
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "ringbuffer.cli", "workers"]
    return subprocess.run(
        [*cmd, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO,
        stdin=subprocess.DEVNULL,
    )


def _write(tmp: Path, text: str, name: str = "setup.yaml") -> Path:
    p = tmp / name
    p.write_text(textwrap.dedent(text))
    return p


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_filter_and_two_exporters_end_to_end(tmp_path: Path, method: str) -> None:
    for f in ("setup.yaml", "functions.py", "filter_config.yaml"):
        shutil.copy(EXAMPLE / f, tmp_path / f)
    before = set(list_segment_names())
    run = tmp_path / "run"
    res = _evb_workers(
        str(tmp_path / "setup.yaml"), "--run-dir", str(run), "--start-method", method
    )
    assert res.returncode == 0, res.stdout + res.stderr
    assert "finished" in res.stdout
    rows = (run / "accepted.csv").read_text().splitlines()
    header = rows[0].split(",")
    assert header == ["counter", "timestamp", "deadtime", "event", "height", "channel"]
    body = [r.split(",") for r in rows[1:]]
    assert 700 < len(body) < 1300  # ~half of 2000 uniform heights are above 5
    assert all(float(r[4]) > 5.0 for r in body)
    assert all(r[3].isdigit() and r[5].isdigit() for r in body)  # ints stay ints
    events = sorted(int(r[3]) for r in body)
    assert len(set(events)) == len(events)  # two filter processes, nothing duplicated
    hist = np.load(run / "Histograms_raw" / "height.npy")
    assert hist.shape == (50,) and hist.sum() == 2000  # every raw event, exactly nbins bins
    assert (run / "workers.log").exists()
    assert set(list_segment_names()) <= before  # buffers removed


def test_failing_worker_reported_and_rest_shut_down(tmp_path: Path) -> None:
    (tmp_path / "f.py").write_text(
        textwrap.dedent("""
        import numpy as np
        from ringbuffer.worker import Importer, Exporter
        def source(io):
            imp = Importer(io)
            def gen():
                i = 0
                while True:
                    i += 1
                    yield np.full_like(imp.data_example, i)
            imp(gen)
        def crash(io):
            for n, (data, meta) in enumerate(Exporter(io)):
                if n == 10:
                    raise RuntimeError("boom in worker")
        def slow(io):
            for data, meta in Exporter(io):
                print("got", data["x"][0])
    """)
    )
    setup = _write(
        tmp_path,
        """
        Buffers:
          a: {slot_count: 8, data_length: 1, data_dtype: {x: int64}}
        Workers:
          src: {file: f.py, function: source, sinks: [a]}
          bad: {file: f.py, function: crash, sources: [a]}
          ok: {file: f.py, function: slow, sources: [a]}
    """,
    )
    res = _evb_workers(str(setup), "--run-dir", str(tmp_path / "run"))
    assert res.returncode == 1
    assert "worker bad[0] failed" in res.stdout
    assert "RuntimeError: boom in worker" in res.stdout
    log = (tmp_path / "run" / "workers.log").read_text()
    assert "got 1" in log  # worker print output captured in the run directory


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        (
            """
        Buffers:
          a: {slot_count: 8, data_length: 1, data_dtype: {x: int64}}
        Workers:
          w: {function: exporters.drain, sources: [nope]}
        """,
            "Workers.w.sources[0]: unknown buffer 'nope'",
        ),
        (
            """
        Buffers:
          a: {slot_count: 8, data_length: 1, data_dtype: {x: flaot64}}
        Workers:
          w: {function: exporters.drain, sources: [a]}
        """,
            "Buffers.a.data_dtype.x",
        ),
        (
            """
        Buffers:
          a: {slot_count: 8, data_length: 1, data_dtype: {x: int64}}
        Workers:
          w: {function: exporters.no_such_thing, sources: [a]}
        """,
            "Workers.w.function",
        ),
        (
            """
        Buffers:
          a: {slot_count: 8, data_length: 1, data_dtype: {x: int64}}
        Workers:
          w: {file: missing.py, function: f, sources: [a]}
        """,
            "Workers.w.file: file 'missing.py' not found",
        ),
        (
            """
        Buffers:
          a: {slot_count: 8, data_lenght: 1, data_dtype: {x: int64}}
        Workers:
          w: {function: exporters.drain, sources: [a]}
        """,
            "missing key 'data_length'",
        ),
    ],
)
def test_bad_yaml_names_key_and_line(tmp_path: Path, text: str, needle: str) -> None:
    setup = _write(tmp_path, text)
    with pytest.raises(SetupError) as err:
        load_setup(setup)
    assert needle in str(err.value)
    assert f"{setup}:" in str(err.value)  # file:line


def test_bad_yaml_via_cli(tmp_path: Path) -> None:
    setup = _write(
        tmp_path,
        """
        Buffers:
          a: {slot_count: 8, data_length: 1, data_dtype: {x: int64}}
        Workers:
          w:
            function: exporters.drain
            sources: [b]
    """,
    )
    res = _evb_workers(str(setup))
    assert res.returncode == 2
    assert "setup.yaml:7: Workers.w.sources[0]: unknown buffer 'b'" in res.stderr


def test_record_file_round_trip_and_header_is_msgpack(tmp_path: Path) -> None:
    dt = np.dtype([("a", "<f8"), ("b", "<i4")])
    path = tmp_path / "x.evbrec"
    meta = np.zeros(1, dtype=[("counter", "<i8"), ("timestamp", "<f8"), ("deadtime", "<f8")])
    with RecordWriter(path, dt, 3) as w:
        for i in range(5):
            meta["counter"] = i
            w.write(meta, np.array([(i, i), (i, i), (i, i)], dtype=dt))
    raw = path.read_bytes()
    assert raw[:8] == MAGIC and b"pickle" not in raw and b"\x80\x04" not in raw[:16]
    rec = RecordReader(path)
    assert len(rec) == 5 and rec.data_dtype == dt and rec.data_length == 3
    recs = rec.records()
    assert list(recs["metadata"]["counter"]) == list(range(5))
    assert list(recs["data"]["b"][:, 1]) == list(range(5))


def test_clocked_importer_and_export(tmp_path: Path) -> None:
    dt = np.dtype([("v", "<f8")])
    with RecordWriter(tmp_path / "in.evbrec", dt, 2) as w:
        for i in range(20):
            w.write(
                np.zeros(1, dtype=[("counter", "<i8"), ("timestamp", "<f8"), ("deadtime", "<f8")]),
                np.full(2, i, dtype=dt),
            )
    setup = _write(
        tmp_path,
        """
        Buffers:
          a: {slot_count: 8, data_length: 2, data_dtype: {v: float64}}
        Workers:
          imp:
            function: data.clocked_importer
            config: {filename: in.evbrec, rate: 400, distribution: poisson, seed: 3}
            sinks: [a]
          rec:
            function: data.export
            config: {filename: out}
            sources: [a]
    """,
    )
    res = _evb_workers(str(setup), "--run-dir", str(tmp_path / "run"))
    assert res.returncode == 0, res.stdout + res.stderr
    out = RecordReader(tmp_path / "run" / "out.evbrec").records()
    assert list(out["data"]["v"][:, 0]) == list(range(20))


def test_pha_reports_all_peaks_numpy_fallback() -> None:
    x = np.zeros(100)
    x[[10, 40, 70]] = [5.0, 3.0, 8.0]
    peaks, props = _find_peaks_numpy(x, height=1.0)
    assert list(peaks) == [10, 40, 70]
    assert list(props["peak_heights"]) == [5.0, 3.0, 8.0]
    peaks, _ = _find_peaks_numpy(x, height=1.0, distance=35)
    assert list(peaks) == [10, 70]
    peaks2, _ = find_peaks(x, height=1.0)
    assert list(peaks2) == [10, 40, 70]


def test_pha_processor_writes_one_slot_per_peak(ring_name: str) -> None:
    src = RingBuffer.create(
        f"{ring_name}.w", slot_count=4, data_length=64, data_dtype={"ch1": "f8"}, groups=["pha"]
    )
    dst = RingBuffer.create(
        f"{ring_name}.p",
        slot_count=16,
        data_length=1,
        data_dtype={"position": "i8", "peak_heights": "f8"},
    )
    out = dst.reader()
    io = BufferIO("pha", sources=[src], sinks=[dst], config={"height": 0.5})
    w = src.writer()
    with w as (m, d):
        d["ch1"] = 0
        d["ch1"][[5, 20, 50]] = [1.0, 2.0, 3.0]
        m["counter"] = 77
    src.shutdown()
    from ringbuffer.functions.analyzers import pha

    pha(io)
    dst.shutdown()
    rows = [
        (int(d["position"][0]), float(d["peak_heights"][0]), int(m["counter"][0])) for m, d in out
    ]
    assert rows == [(5, 1.0, 77), (20, 2.0, 77), (50, 3.0, 77)]


def test_bufferio_config_access(ring_name: str) -> None:
    io = BufferIO("w", config={"a": 1}, run_directory="/tmp")
    assert io["a"] == 1 and io.get("b", 2) == 2 and io.run_directory == Path("/tmp")
    with pytest.raises(KeyError, match="'b'"):
        io["b"]


def test_sigint_drains_and_exits(tmp_path: Path) -> None:
    (tmp_path / "f.py").write_text(
        textwrap.dedent("""
        import time
        import numpy as np
        from ringbuffer.worker import Importer
        def forever(io):
            imp = Importer(io)
            def gen():
                i = 0
                while True:
                    i += 1
                    time.sleep(0.001)
                    yield np.full_like(imp.data_example, i)
            imp(gen)
    """)
    )
    setup = _write(
        tmp_path,
        """
        Buffers:
          a: {slot_count: 8, data_length: 1, data_dtype: {x: int64}}
          b: {slot_count: 8, data_length: 1, data_dtype: {x: int64}}
        Workers:
          src: {file: f.py, function: forever, sinks: [a]}
          cp: {function: misc.copy, sources: [a], sinks: [b], number_of_processes: 2}
          out: {function: data.export, sources: [b], config: {filename: out}}
    """,
    )
    exe = REPO / ".venv" / "bin" / "evb-workers"
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "ringbuffer.cli", "workers"]
    run = tmp_path / "run"
    p = subprocess.Popen(
        [*cmd, str(setup), "--run-dir", str(run)],
        cwd=REPO,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    deadline = time.monotonic() + 30
    out = run / "out.evbrec"
    while time.monotonic() < deadline and (not out.exists() or out.stat().st_size < 2000):
        time.sleep(0.05)
    p.send_signal(signal.SIGINT)
    text, _ = p.communicate(timeout=30)
    assert p.returncode == 0, text
    assert "stopping (Ctrl-C)" in text
    counters = RecordReader(out).records()["data"]["x"][:, 0]
    # everything the importer published went through both stages: consecutive, no gaps
    assert len(counters) > 10
    assert sorted(counters) == list(range(1, len(counters) + 1))


def test_waveform_example_prebuilt_functions(tmp_path: Path) -> None:
    src = REPO / "examples" / "workers" / "waveforms"
    for f in ("setup.yaml", "pulses.py"):
        shutil.copy(src / f, tmp_path / f)
    run = tmp_path / "run"
    res = _evb_workers(str(tmp_path / "setup.yaml"), "--run-dir", str(run))
    assert res.returncode == 0, res.stdout + res.stderr
    rec = RecordReader(run / "waveforms.evbrec")
    assert len(rec) == 500
    rows = (run / "peaks.csv").read_text().splitlines()[1:]
    assert len(rows) > 500  # several peaks per waveform: all of them reported
    assert list((run).glob("oscilloscope_waveforms.*"))  # headless observer output
