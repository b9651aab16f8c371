"""``evb-source replay FILE``: send a recorded file to an event builder again.

The file may be a fragment stream (``evb-server --output`` without building) or a built-event
file (told apart by the magic); the events' fragments are sent in file order, on one connection
that declares every source id of the file, so each fragment keeps its original source id,
timestamp and barrier type. By default as fast as the EVB accepts; with
``--ticks-per-second`` each message leaves when its first fragment is due by its timestamp.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from evb.batch import FragmentBatch
from evb.errors import EvbError
from evb.recording import open_recording

__all__ = ["ReplayPlan", "add_replay_parser", "main", "plan_replay", "replay", "run_replay"]

#: Pacing: a message holds at most the fragments due within this many seconds.
PACE_QUANTUM_S = 0.01


@dataclass(frozen=True, slots=True, kw_only=True)
class ReplayPlan:
    """What a replay sends.

    Attributes:
        fragments: every fragment of the file, in file order.
        source_ids: the distinct source ids, ascending (declared in CONNECT).
        built: the file held built events.
    """

    fragments: FragmentBatch
    source_ids: tuple[int, ...]
    built: bool


def plan_replay(path: str | Path) -> ReplayPlan:
    """Read ``path`` (either kind of recording) into a :class:`ReplayPlan`."""
    rec = open_recording(path)
    frags = rec.fragments
    ids = tuple(int(s) for s in np.unique(frags.source_ids).tolist())
    return ReplayPlan(fragments=frags, source_ids=ids, built=rec.built)


def message_ranges(
    timestamps: np.ndarray,
    *,
    batch: int,
    ticks_per_second: float = 0.0,
) -> Iterator[tuple[int, int, float]]:
    """``(lo, hi, due_s)`` per message: at most ``batch`` fragments; paced, those due within
    :data:`PACE_QUANTUM_S` of the first; ``due_s`` is seconds after the start (0 unpaced)."""
    n = len(timestamps)
    if n == 0:
        return
    if ticks_per_second <= 0:
        for lo in range(0, n, batch):
            yield lo, min(n, lo + batch), 0.0
        return
    ts = timestamps.astype(np.uint64)
    t0 = int(ts[0])
    quantum = np.uint64(max(1, int(PACE_QUANTUM_S * ticks_per_second)))
    lo = 0
    while lo < n:
        first = int(ts[lo])
        if first >= t0:
            limit = np.uint64(first) + quantum
            hi = int(np.searchsorted(ts[lo : lo + batch], limit, "right")) + lo
            hi = max(hi, lo + 1)
        else:  # out of order in the file (late data): send it alone, now
            hi = lo + 1
        yield lo, hi, max(0, first - t0) / ticks_per_second
        lo = hi


def replay(
    plan: ReplayPlan,
    host: str,
    port: int,
    *,
    batch: int = 1000,
    window: int = 4,
    ticks_per_second: float = 0.0,
    description: str = "evb-source replay",
) -> tuple[int, int]:
    """Send ``plan`` to the EVB at ``host:port``; returns (fragments, bytes) sent."""
    from sources.client import SourceClient, message_body

    frags = plan.fragments
    t0 = time.monotonic()
    with SourceClient.connect(host, port, description, plan.source_ids, window=window) as client:
        for lo, hi, due in message_ranges(
            frags.timestamps, batch=batch, ticks_per_second=ticks_per_second
        ):
            if due:
                delay = t0 + due - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
            part = frags[lo:hi]
            client.send_body(message_body(part), fragments=len(part))
        client.flush()
        return client.fragments_sent, client.bytes_sent


def add_replay_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``replay`` subcommand to ``evb-source``'s subparsers."""
    p = sub.add_parser("replay", help="send a recorded file (--output) to an event builder")
    p.add_argument("file", help="fragment stream or built-event file")
    p.add_argument("--host", default="127.0.0.1", help="event builder host")
    p.add_argument("--port", type=int, required=True, help="event builder port")
    p.add_argument("--ticks-per-second", type=float, default=0.0, metavar="F",
                   help="pace by the timestamps at F ticks per second (0: as fast as possible)")
    p.add_argument("--batch", type=int, default=1000, metavar="N",
                   help="fragments per message at most")
    p.add_argument("--window", type=int, default=4, metavar="N",
                   help="messages sent ahead of their OK")
    p.add_argument("--description", default="", help="CONNECT description")
    p.add_argument("--quiet", action="store_true", help="do not print the summary")


def run_replay(args: argparse.Namespace) -> int:
    if args.batch < 1:
        print("evb-source replay: --batch must be >= 1", file=sys.stderr)
        return 2
    plan = plan_replay(args.file)
    t0 = time.perf_counter()
    n, nbytes = replay(
        plan,
        args.host,
        args.port,
        batch=args.batch,
        window=args.window,
        ticks_per_second=args.ticks_per_second,
        description=args.description or f"evb-source replay {Path(args.file).name}",
    )
    dt = time.perf_counter() - t0
    if not args.quiet:
        kind = "built-event file" if plan.built else "fragment stream"
        print(
            f"replayed {n} fragments ({nbytes} bytes) of {kind} {args.file}, sources "
            f"{','.join(map(str, plan.source_ids))} in {dt:.3f} s",
            flush=True,
        )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m sources.replay FILE --port P`` (the same as ``evb-source replay``)."""
    parser = argparse.ArgumentParser(prog="evb-source")
    sub = parser.add_subparsers(dest="command", required=True)
    add_replay_parser(sub)
    args = parser.parse_args(["replay", *(sys.argv[1:] if argv is None else argv)])
    try:
        return run_replay(args)
    except (OSError, EvbError) as exc:
        print(f"evb-source replay: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
