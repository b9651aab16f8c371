"""The full ``evb-demo``: real processes for the EVB, the worker pipeline and the sources."""

from __future__ import annotations

import asyncio
import csv
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from shell.control import ControlClient

_LAUNCH = {
    "evb-server": "from evb.cli import main",
    "evb-workers": "from ringbuffer.cli import workers_main as main",
    "evb-source": "from sources.cli import main",
}


@dataclass(frozen=True, slots=True, kw_only=True)
class DemoPlan:
    """What the demo runs."""

    run_dir: Path
    sources: tuple[tuple[int, ...], ...] = ((1, 2), (3, 4))
    count: int = 50_000
    payload_bytes: int = 32
    rate_hz: float = 0.0
    build_dt: int = 100
    ticks: int = 1000


def _command(tool: str, *args: str) -> list[str]:
    """Run one of our commands with this interpreter (works without the venv on PATH)."""
    code = f"import sys; sys.argv[0] = {tool!r}; {_LAUNCH[tool]}; sys.exit(main())"
    return [sys.executable, "-c", code, *args]


async def _wait_line(proc: asyncio.subprocess.Process, prefix: str, timeout_s: float) -> str:
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout_s
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise RuntimeError(f"no {prefix!r} line within {timeout_s} s")
        line = (await asyncio.wait_for(proc.stdout.readline(), left)).decode()
        if not line:
            raise RuntimeError(f"the process exited before printing {prefix!r}")
        if line.startswith(prefix):
            return line.strip()


async def run_pipeline(plan: DemoPlan) -> int:
    """Run the demo; return the exit status (0: every fragment reached the analysis)."""
    run = plan.run_dir
    run.mkdir(parents=True, exist_ok=True)
    ring = f"evbdemo{os.getpid()}"
    sock = run / "evb.sock"
    setup = run / "setup.yaml"
    template = resources.files("evb").joinpath("data/demo_setup.yaml").read_text()
    setup.write_text(template.replace("RING", ring))
    all_ids = [sid for group in plan.sources for sid in group]
    print(f"run directory: {run}")
    print(f"1. evb-server: builds events (dt {plan.build_dt} ticks) into ring {ring!r}")
    server_log = open(run / "evb-server.log", "wb")  # noqa: SIM115 - lives as long as the server
    server = await asyncio.create_subprocess_exec(
        *_command(
            "evb-server", "--port", "0", "--window", "2", "--ring", ring,
            "--build-dt", str(plan.build_dt), "--ring-groups", "unpack",
            "--control", str(sock), "--log-level", "WARNING",
        ),
        stdout=asyncio.subprocess.PIPE,
        stderr=server_log,
    )
    procs: list[asyncio.subprocess.Process] = [server]
    try:
        line = await _wait_line(server, "evb listening on ", 30)
        port = line.rsplit(":", 1)[1]
        print(f"   {line}")
        control = await ControlClient.connect(sock)
        # Declare the sources before they connect, as NSCLDAQ's EVB::source does, so the
        # orderer waits for all of them from the first fragment on.
        await control.evaluate(f"EVB::source demo {' '.join(map(str, all_ids))}")
        # Hooks are Tcl procs that run in the server: record every barrier as it completes.
        await control.evaluate(
            "set ::barriers {}; proc trace {kind args} {lappend ::barriers [list $kind {*}$args]};"
            " EVB::barrierTrace complete {trace complete};"
            " EVB::barrierTrace incomplete {trace incomplete}"
        )
        print("2. evb-workers: unpack built events -> typed rows -> hits.csv")
        workers_log = open(run / "evb-workers.log", "wb")  # noqa: SIM115
        workers = await asyncio.create_subprocess_exec(
            *_command("evb-workers", str(setup), "--run-dir", str(run / "workers")),
            stdout=workers_log,
            stderr=subprocess.STDOUT,
        )
        procs.append(workers)
        print(f"3. evb-source sim x{len(plan.sources)}: source ids {plan.sources}, "
              f"{plan.count:,} fragments each, begin/end barriers")
        sims = []
        for i, group in enumerate(plan.sources):
            sims.append(
                await asyncio.create_subprocess_exec(
                    *_command(
                        "evb-source", "sim", "--port", port,
                        "--sources", ",".join(map(str, group)),
                        "--count", str(plan.count), "--payload-bytes", str(plan.payload_bytes),
                        "--ticks", str(plan.ticks), "--jitter", str(plan.ticks // 20),
                        "--rate", str(plan.rate_hz), "--begin-barrier", "--end-barrier",
                        "--description", f"demo sim {i + 1}", "--seed", str(i + 1),
                    ),
                    stdout=asyncio.subprocess.PIPE,
                    stderr=asyncio.subprocess.STDOUT,
                )
            )
        procs.extend(sims)
        waits = [asyncio.ensure_future(s.communicate()) for s in sims]
        while not all(w.done() for w in waits):
            await asyncio.wait(waits, timeout=0.5)
            out = await control.evaluate("EVB::outputStats get")
            inp = await control.evaluate("lrange [EVB::inputStats] 0 2")
            print(f"   EVB::outputStats {out.text:<60.60}  queued {inp.text}")
        for s, w in zip(sims, waits, strict=True):
            text = w.result()[0].decode().strip()
            if s.returncode != 0:
                raise RuntimeError(f"evb-source sim failed: {text}")
            print(f"   {text.splitlines()[-1] if text else 'sim done'}")
        print("4. final statistics (EVB:: commands over the control socket):")
        await control.evaluate("EVB::flushqueues")
        for cmd in ("EVB::outputStats get", "EVB::barrierstats", "EVB::dlatestats",
                    "EVB::dupstat", "EVB::getoostats", "EVB::connections",
                    "set ::barriers"):
            r = await control.evaluate(cmd)
            print(f"   {cmd:<22} {r.text}")
        print("5. stopping evb-server (SIGINT): it flushes, writes and shuts the ring down")
        server.send_signal(signal.SIGINT)
        await asyncio.wait_for(server.wait(), 60)
        await asyncio.wait_for(workers.wait(), 120)
        return _report(run, plan, len(all_ids), server.returncode, workers.returncode)
    finally:
        for p in procs:
            if p.returncode is None:
                p.kill()
                await p.wait()


def _report(run: Path, plan: DemoPlan, n_sources: int, server_rc: int | None,
            workers_rc: int | None) -> int:
    csv_path = next((run / "workers").rglob("hits.csv"), None)
    data_rows = 0
    barrier_rows = 0
    events: set[int] = set()
    per_source: dict[int, int] = {}
    if csv_path is not None:
        with open(csv_path, newline="") as f:
            for row in csv.DictReader(f):
                if int(row["n_fragments"]) == 0:
                    continue  # padding rows of a typed slot
                if int(row["barrier_type"]):
                    barrier_rows += 1
                    continue
                data_rows += 1
                events.add(int(row["event"]))
                sid = int(row["source_id"])
                per_source[sid] = per_source.get(sid, 0) + 1
    expected = plan.count * n_sources
    print(f"6. analysis: {csv_path}")
    print(f"   {len(events):,} events, {data_rows:,} data fragments "
          f"({expected:,} sent), {barrier_rows} barrier fragments; per source {per_source}")
    ok = server_rc == 0 and workers_rc == 0 and data_rows == expected
    print(f"   evb-server exit {server_rc}, evb-workers exit {workers_rc}: "
          f"{'every fragment reached the analysis' if ok else 'FRAGMENTS MISSING'}")
    return 0 if ok else 1


def main_pipeline(plan: DemoPlan) -> int:
    return asyncio.run(run_pipeline(plan))
