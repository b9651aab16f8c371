"""Command lines: ``evb-workers setup.yaml`` and ``evb-ring ls|rm|stats``."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from ringbuffer.errors import RingBufferError, SetupError
from ringbuffer.ring import RingBuffer, remove_buffer
from ringbuffer.shm import list_segment_names, pid_alive, sem_unlink_all

__all__ = ["ring_main", "workers_main"]


def workers_main(argv: Sequence[str] | None = None) -> int:
    """``evb-workers SETUP.yaml``: run buffers and workers of a mimoCoRB2-style setup."""
    parser = argparse.ArgumentParser(
        prog="evb-workers",
        description="Run the buffers and workers of a mimoCoRB2-style YAML setup (headless).",
    )
    parser.add_argument("setup", help="setup YAML file (Buffers:, Workers:)")
    parser.add_argument("--run-dir", help="run directory (default: <setup dir>/runs/<time>)")
    parser.add_argument("--start-method", choices=("fork", "spawn", "forkserver"), default="fork")
    parser.add_argument("--timeout", type=float, help="stop (drain) after this many seconds")
    parser.add_argument("--status-interval", type=float, help="seconds between status lines")
    parser.add_argument("--grace", type=float, default=10.0, help="seconds before terminating")
    parser.add_argument("--check", action="store_true", help="only validate the setup")
    args = parser.parse_args(argv)
    from ringbuffer.runner import Runner
    from ringbuffer.setup import load_setup

    try:
        setup = load_setup(args.setup)
    except SetupError as exc:
        print(f"evb-workers: {exc}", file=sys.stderr)
        return 2
    if args.check:
        print(f"{args.setup}: {len(setup.buffers)} buffers, {len(setup.workers)} workers, OK")
        return 0
    runner = Runner(
        setup,
        run_dir=args.run_dir,
        start_method=args.start_method,
        status_interval_s=args.status_interval,
        grace_s=args.grace,
    )
    print(f"evb-workers: run directory {runner.run_dir}", flush=True)
    try:
        return runner.run(args.timeout)
    except RingBufferError as exc:
        print(f"evb-workers: {exc}", file=sys.stderr)
        return 2


def _describe(name: str) -> dict[str, object]:
    try:
        ring = RingBuffer.attach(name, timeout=0.2)
    except (RingBufferError, OSError) as exc:
        return {"name": name, "error": str(exc)}
    st = ring.get_stats()
    return {
        "name": name,
        "slot_count": ring.slot_count,
        "slot_bytes": ring.layout.slot_bytes,
        "dtype": str(ring.data_dtype),
        "creator_pid": ring.creator_pid,
        "creator_alive": pid_alive(ring.creator_pid),
        "events": st["event_count"],
        "fill_level": st["fill_level"],
        "shutdown": st["flush_event_received"],
        "paused": st["paused"],
        "reclaimed_writes": st["reclaimed_writes"],
        "reclaimed_reads": st["reclaimed_reads"],
        "groups": st["groups"],
        "clients": [
            {"pid": c.pid, "role": c.role, "group": c.group, "alive": c.alive, "count": c.count}
            for c in ring.clients()
        ],
    }


def ring_main(argv: Sequence[str] | None = None) -> int:
    """``evb-ring ls`` / ``evb-ring rm NAME`` / ``evb-ring stats NAME``."""
    parser = argparse.ArgumentParser(prog="evb-ring", description="Inspect shared-memory rings.")
    sub = parser.add_subparsers(dest="cmd", required=True)
    p_ls = sub.add_parser("ls", help="list buffers on this machine with fill and clients")
    p_ls.add_argument("--json", action="store_true")
    p_rm = sub.add_parser("rm", help="remove leftover buffers")
    p_rm.add_argument("names", nargs="+")
    p_rm.add_argument("--force", action="store_true", help="even if the creator still runs")
    p_st = sub.add_parser("stats", help="statistics of one buffer (JSON)")
    p_st.add_argument("name")
    args = parser.parse_args(argv)
    if args.cmd == "ls":
        rows = [_describe(n) for n in list_segment_names()]
        if args.json:
            print(json.dumps(rows, indent=1))
            return 0
        if not rows:
            print("no buffers")
        for r in rows:
            if "error" in r:
                print(f"{r['name']}: {r['error']}")
                continue
            owner = "alive" if r["creator_alive"] else "DEAD (leftover?)"
            flags = "".join(f" {k}" for k in ("shutdown", "paused") if r[k])
            fill = float(r["fill_level"])  # type: ignore[arg-type]
            print(
                f"{r['name']}: {r['slot_count']} slots x {r['slot_bytes']} B, "
                f"fill {fill:.0%}, {r['events']} events, creator {r['creator_pid']} {owner}{flags}"
            )
            for c in r["clients"]:  # type: ignore[attr-defined]
                state = "alive" if c["alive"] else "dead"
                grp = f" group {c['group']}" if c["group"] else ""
                print(f"    {c['role']:8s} pid {c['pid']}{grp} {state}, {c['count']} slots")
        return 0
    if args.cmd == "rm":
        rc = 0
        for name in args.names:
            if name not in list_segment_names():
                removed = sem_unlink_all(name)
                if removed:
                    print(f"{name}: removed {removed} stale semaphores")
                    continue
                print(f"{name}: no such buffer", file=sys.stderr)
                rc = 1
                continue
            info = _describe(name)
            if info.get("creator_alive") and not args.force:
                print(
                    f"{name}: creator {info['creator_pid']} still runs; use --force",
                    file=sys.stderr,
                )
                rc = 1
                continue
            remove_buffer(name)
            print(f"{name}: removed")
        return rc
    if args.cmd == "stats":
        print(json.dumps(_describe(args.name), indent=1))
        return 0
    return 2


if __name__ == "__main__":
    cmd = sys.argv[1] if len(sys.argv) > 1 else ""
    if cmd == "workers":
        sys.exit(workers_main(sys.argv[2:]))
    sys.exit(ring_main(sys.argv[1:]))
