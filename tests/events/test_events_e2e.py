"""End to end with real processes: evb-server --ring/--build-dt, evb-source sim and replay,
consumer processes, evb-dump, evb-workers attached to the EVB's ring."""

from __future__ import annotations

import csv
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
from ev_helpers import VENV_BIN, reference_events

from evb.batch import FragmentBatch
from evb.builder import BuildConfig
from evb.recording import open_recording
from evb.wire import parse_fragments
from sources.client import SourceClient
from sources.simulated import SimulatedSource

HERE = Path(__file__).parent


class Server:
    """An evb-server child process; killed by the ``procs`` fixture if still running."""

    def __init__(self, procs: list[subprocess.Popen[bytes]], tmp: Path, *args: str) -> None:
        self.log_path = tmp / f"server{len(procs)}.log"
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in wait()
        self.proc = subprocess.Popen([str(VENV_BIN / "evb-server"), *args],
                                     stdout=subprocess.PIPE, stderr=self._log)
        procs.append(self.proc)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().decode()
        assert line.startswith("evb listening on "), (line, self.log())
        self.port = int(line.split()[-1].rsplit(":", 1)[1])

    def log(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors="replace")

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGINT)
        code = self.proc.wait(60)
        self._log.close()
        return code


def _sim(procs: list[subprocess.Popen[bytes]], port: int, ids: list[int], **kw: Any
         ) -> subprocess.Popen[bytes]:
    cmd = [str(VENV_BIN / "evb-source"), "sim", "--port", str(port),
           "--sources", ",".join(map(str, ids)), "--quiet"]
    for k, v in kw.items():
        cmd += [f"--{k.replace('_', '-')}"] + ([] if v is True else [str(v)])
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    procs.append(p)
    return p


def _finish(p: subprocess.Popen[bytes], timeout: float = 60) -> str:
    out, err = p.communicate(timeout=timeout)
    assert p.returncode == 0, err.decode()
    return out.decode()


def _expected(plans: list[dict[str, Any]]) -> FragmentBatch:
    return FragmentBatch.concat([b for p in plans for b in SimulatedSource(
        p["ids"], count=p["count"], payload_bytes=p["payload_bytes"], batch=p["batch"],
        jitter_ticks=p.get("jitter", 0), seed=p["seed"], begin_barrier=True, end_barrier=True)])


def _records(b: FragmentBatch) -> list[bytes]:
    """Each fragment's flattened bytes, sorted (a multiset to compare)."""
    flat = b.flatten()
    ends = np.cumsum(b.payload_sizes.astype(np.int64) + 20)[:-1]
    return sorted(bytes(x) for x in np.split(flat, ends))


def _run_sims(procs: list[subprocess.Popen[bytes]], port: int,
              plans: list[dict[str, Any]]) -> None:
    ids = [i for p in plans for i in p["ids"]]
    # bind every id first, so nothing leaves before all sources are connected
    holder = SourceClient.connect("127.0.0.1", port, "holder", ids)
    sims = [_sim(procs, port, p["ids"], count=p["count"], payload_bytes=p["payload_bytes"],
                 batch=p["batch"], jitter=p.get("jitter", 0), seed=p["seed"],
                 ticks=p.get("ticks", 100), begin_barrier=True, end_barrier=True, window=4)
            for p in plans]
    for s in sims:
        _finish(s)
    holder.disconnect()


PLANS = [
    dict(ids=[1, 2], count=3000, payload_bytes=24, batch=500, jitter=20, seed=1),
    dict(ids=[3], count=3000, payload_bytes=40, batch=700, jitter=50, seed=2),
]


def _consumer(procs: list[subprocess.Popen[bytes]], ring: str, group: str, out: Path,
              delay: float = 0.0) -> subprocess.Popen[bytes]:
    p = subprocess.Popen([sys.executable, str(HERE / "ev_consumer.py"), ring, group, str(out),
                          str(delay)], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    procs.append(p)
    return p


def _check_consumed(out: Path, cfg: BuildConfig) -> FragmentBatch:
    data = np.load(out)
    frags = parse_fragments(data["flat"])
    # every fragment, once, in output order: sorted by timestamp within the data
    data_rows = frags.barrier_types == 0
    ts = frags.timestamps[data_rows]
    assert bool(np.all(ts[1:] >= ts[:-1]))
    want = reference_events(frags.fragments(), cfg)
    assert data["counts"].tolist() == [len(e) for _, e in want]
    assert data["timestamps"].tolist() == [t for t, _ in want]
    assert bool(data["built"].all())
    return frags


def test_server_ring_to_consumer_process(
    procs: list[subprocess.Popen[bytes]], tmp_path: Path, ring_name: str
) -> None:
    srv = Server(procs, tmp_path, "--ring", ring_name, "--build-dt", "100",
                 "--ring-groups", "consumer", "--ring-slot-bytes", "65536", "--ring-slots", "8")
    out = tmp_path / "consumed.npz"
    cons = _consumer(procs, ring_name, "consumer", out)
    _run_sims(procs, srv.port, PLANS)
    assert srv.stop() == 0, srv.log()
    _finish(cons)
    frags = _check_consumed(out, BuildConfig(build=True, dt_ticks=100))
    total = sum(len(p["ids"]) * (p["count"] + 2) for p in PLANS)  # type: ignore[arg-type]
    assert len(frags) == total
    # the same multiset of fragments as the sources sent (payloads included)
    assert _records(frags) == _records(_expected(PLANS))
    bars = frags.barrier_types
    # begin-run barriers first; every barrier reaches the consumer (as an event of its own)
    assert bars[:3].tolist() == [1, 1, 1]
    assert np.count_nonzero(bars == 1) == 3 and np.count_nonzero(bars == 2) == 3


def test_slow_consumer_xoff_nothing_lost(
    procs: list[subprocess.Popen[bytes]], tmp_path: Path, ring_name: str
) -> None:
    srv = Server(procs, tmp_path, "--ring", ring_name, "--build-dt", "30",
                 "--ring-groups", "slow", "--ring-slot-bytes", "4096", "--ring-slots", "4",
                 "--xoff-bytes", "20000", "--xon-bytes", "10000")
    out = tmp_path / "slow.npz"
    cons = _consumer(procs, ring_name, "slow", out, delay=0.01)
    plans = [dict(ids=[1, 2, 3], count=1500, payload_bytes=32, batch=300, seed=3)]
    _run_sims(procs, srv.port, plans)
    assert srv.stop() == 0, srv.log()
    _finish(cons)
    frags = _check_consumed(out, BuildConfig(build=True, dt_ticks=30))
    assert len(frags) == 3 * 1502
    log = srv.log()
    assert "XOFF" in log and "XON" in log, log


def test_record_dump_replay_from_the_command_line(
    procs: list[subprocess.Popen[bytes]], tmp_path: Path
) -> None:
    # one source process: no source ends (and dies) before the others, so the first
    # recording's order does not depend on which process finished first
    plans = [dict(ids=[1, 2, 3], count=3000, payload_bytes=24, batch=500, jitter=40, seed=1)]
    for build in (["--build-dt", "40", "--build-policy", "average"], []):
        first = tmp_path / f"first{len(build)}.rec"
        second = tmp_path / f"second{len(build)}.rec"
        srv = Server(procs, tmp_path, "--output", str(first), *build)
        _run_sims(procs, srv.port, plans)
        assert srv.stop() == 0, srv.log()
        srv2 = Server(procs, tmp_path, "--output", str(second), *build)
        # the fragment stream is replayed paced by its timestamps (300000 ticks: 30 ms)
        pace = [] if build else ["--ticks-per-second", "1e7"]
        rp = subprocess.Popen([str(VENV_BIN / "evb-source"), "replay", str(first),
                               "--port", str(srv2.port), "--batch", "777", *pace],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        procs.append(rp)
        assert "replayed 9006 fragments" in _finish(rp)
        assert srv2.stop() == 0, srv2.log()
        a = first.read_bytes()
        assert a == second.read_bytes()
        rec = open_recording(first)
        assert rec.built == bool(build)
        assert len(rec.fragments) == 9006
        dump = subprocess.run([str(VENV_BIN / "evb-dump"), str(first), "--count", "4",
                               "--source", "3"], capture_output=True, timeout=60)
        assert dump.returncode == 0, dump.stderr.decode()
        lines = dump.stdout.decode().splitlines()
        kind = "built events" if build else "fragment stream"
        assert lines[0].startswith(f"File {first}: {kind}")
        frag_lines = [ln for ln in lines if "Fragment" in ln]
        assert len(frag_lines) == 4 and all(" source 3 " in ln for ln in frag_lines)
        assert "barrier 1 (begin run)" in frag_lines[0]


def test_dump_live_ring(
    procs: list[subprocess.Popen[bytes]], tmp_path: Path, ring_name: str
) -> None:
    srv = Server(procs, tmp_path, "--ring", ring_name, "--build-dt", "100",
                 "--ring-groups", "evb-dump", "--ring-slot-bytes", "8192", "--ring-slots", "4")
    dump = subprocess.Popen([str(VENV_BIN / "evb-dump"), "--ring", ring_name, "--count", "3",
                             "--slots"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    procs.append(dump)
    _run_sims(procs, srv.port, PLANS)
    text = _finish(dump)
    lines = text.splitlines()
    assert lines[0].startswith("Slot 0 events ")
    assert lines[1] == "Event barrier timestamp 999 fragments 1 size 24"
    assert sum(1 for ln in lines if ln.startswith("Event")) == 3
    # the dump left its group: the EVB does not wait for it and shuts down cleanly
    assert srv.stop() == 0, srv.log()


def test_evb_workers_pipeline_consumes_built_events(
    procs: list[subprocess.Popen[bytes]], tmp_path: Path, ring_name: str
) -> None:
    setup = (Path(__file__).parents[2] / "examples" / "evb_pipeline" / "setup.yaml").read_text()
    setup = setup.replace("  evb:\n    external: true", f"  {ring_name}:\n    external: true")
    setup = setup.replace("sources: [evb]", f"sources: [{ring_name}]")
    (tmp_path / "setup.yaml").write_text(setup)
    srv = Server(procs, tmp_path, "--ring", ring_name, "--build-dt", "100",
                 "--ring-groups", "unpack", "--ring-slot-bytes", "16384", "--ring-slots", "8")
    run_dir = tmp_path / "run"
    workers = subprocess.Popen([str(VENV_BIN / "evb-workers"), str(tmp_path / "setup.yaml"),
                                "--run-dir", str(run_dir)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    procs.append(workers)
    plans = [dict(ids=[1, 2, 3], count=2000, payload_bytes=16, batch=400, seed=4, ticks=1000)]
    _run_sims(procs, srv.port, plans)
    assert srv.stop() == 0, srv.log()
    out = _finish(workers)
    assert "finished" in out
    with open(run_dir / "hits.csv") as f:
        rows = list(csv.DictReader(f))
    real = [r for r in rows if int(r["n_fragments"]) > 0]
    assert len(real) == 3 * 2002
    data = [r for r in real if r["barrier_type"] == "0"]
    # one event per tick step: the three sources together, payloads decoded
    assert all(r["n_fragments"] == "3" for r in data)
    assert sorted({int(r["event"]) for r in data}) == list(range(3, 2003))
    assert all(r["sim_source"] == r["source_id"] for r in data)
    assert all(0 <= int(r["fragment_timestamp"]) - int(r["event_timestamp"]) <= 100
               for r in data)
    idx = sorted(int(r["sim_index"]) for r in data if r["source_id"] == "2")
    assert idx == list(range(2000))
    bars = [r for r in real if r["barrier_type"] != "0"]
    assert [int(r["barrier_type"]) for r in bars] == [1, 1, 1, 2, 2, 2]
    assert (run_dir / "Histograms_hits" / "n_fragments.npy").exists()


def test_event_larger_than_a_slot_stops_the_server_loudly(
    procs: list[subprocess.Popen[bytes]], tmp_path: Path, ring_name: str
) -> None:
    # events of 10 fragments of 120 bytes: 1200 bytes, in slots of 512
    srv = Server(procs, tmp_path, "--ring", ring_name, "--build-dt", "1000000",
                 "--build-max-fragments", "10", "--ring-slot-bytes", "512", "--ring-slots", "2")
    sim = _sim(procs, srv.port, [1, 2], count=50, payload_bytes=100, batch=100)
    sim.communicate(timeout=60)  # it may fail: the EVB stops taking data
    code = srv.proc.wait(60)
    assert code == 1
    log = srv.log()
    assert "a ring slot holds 512: raise --ring-slot-bytes" in log, log


def test_last_event_too_large_at_shutdown_is_an_error_exit(
    procs: list[subprocess.Popen[bytes]], tmp_path: Path, ring_name: str
) -> None:
    # one open event holds everything until the shutdown flush, then cannot be written
    srv = Server(procs, tmp_path, "--ring", ring_name, "--build-dt", "1000000",
                 "--ring-slot-bytes", "512", "--ring-slots", "2")
    _finish(_sim(procs, srv.port, [1, 2], count=50, payload_bytes=100, batch=100))
    assert srv.stop() == 1
    assert "(100 fragments) needs 12080 bytes, a ring slot holds 512" in srv.log()
