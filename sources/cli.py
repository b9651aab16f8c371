"""``evb-source``: event-builder source clients from the command line.

``evb-source sim --host H --port P --sources 1,2,3 --count N`` sends simulated fragments and
prints its own rate when done.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence

from evb.errors import EvbError
from sources.client import SourceClient, message_body
from sources.simulated import SimulatedSource

__all__ = ["build_parser", "main"]


def _ids(text: str) -> list[int]:
    try:
        ids = [int(t, 0) for t in text.split(",") if t.strip()]
    except ValueError:
        msg = f"expected comma-separated source ids, got {text!r}"
        raise argparse.ArgumentTypeError(msg) from None
    if not ids:
        raise argparse.ArgumentTypeError("at least one source id is needed")
    return ids


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="evb-source", description="Event-builder source clients.")
    sub = parser.add_subparsers(dest="command", required=True)
    sim = sub.add_parser("sim", help="send simulated fragments")
    sim.add_argument("--host", default="127.0.0.1", help="event builder host")
    sim.add_argument("--port", type=int, required=True, help="event builder port")
    sim.add_argument("--sources", type=_ids, default=[1], metavar="1,2,3",
                     help="source ids this client owns")
    sim.add_argument("--rate", type=float, default=0.0, metavar="HZ",
                     help="fragments per second over all sources (0: as fast as possible)")
    sim.add_argument("--count", type=int, default=1000, metavar="N",
                     help="data fragments per source id")
    sim.add_argument("--payload-bytes", type=int, default=32, metavar="B")
    sim.add_argument("--batch", type=int, default=1000, metavar="N",
                     help="fragments per message (all sources together)")
    sim.add_argument("--ticks", type=int, default=100, metavar="T",
                     help="timestamp step between a source's fragments")
    sim.add_argument("--jitter", type=int, default=0, metavar="T",
                     help="random extra ticks (< --ticks)")
    sim.add_argument("--begin-barrier", action="store_true", help="start with a barrier of type 1")
    sim.add_argument("--end-barrier", action="store_true", help="finish with a barrier of type 2")
    sim.add_argument("--window", type=int, default=1, metavar="N",
                     help="messages sent ahead of their OK (pipelining)")
    sim.add_argument("--description", default="", help="CONNECT description")
    sim.add_argument("--seed", type=int, default=0)
    sim.add_argument("--quiet", action="store_true", help="do not print the rate")
    from sources.replay import add_replay_parser

    add_replay_parser(sub)
    return parser


def run_sim(args: argparse.Namespace) -> int:
    sim = SimulatedSource(
        args.sources,
        count=args.count,
        payload_bytes=args.payload_bytes,
        batch=args.batch,
        ticks_per_fragment=args.ticks,
        jitter_ticks=args.jitter,
        begin_barrier=args.begin_barrier,
        end_barrier=args.end_barrier,
        seed=args.seed,
    )
    description = args.description or f"evb-source sim {','.join(map(str, args.sources))}"
    sent = 0
    t0 = time.perf_counter()
    with SourceClient.connect(
        args.host, args.port, description, args.sources, window=args.window
    ) as client:
        for batch in sim:
            client.send_body(message_body(batch), fragments=len(batch))
            sent += len(batch)
            if args.rate > 0:
                # Pace to the requested rate: sleep until this many fragments are due.
                due = t0 + sent / args.rate
                delay = due - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
        client.flush()
        nbytes = client.bytes_sent
    dt = time.perf_counter() - t0
    if not args.quiet:
        print(
            f"sent {sent} fragments ({nbytes} bytes) in {dt:.3f} s: "
            f"{sent / dt:,.0f} fragments/s, {nbytes / dt / 1e6:,.1f} MB/s",
            flush=True,
        )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "sim":
            return run_sim(args)
        if args.command == "replay":
            from sources.replay import run_replay

            return run_replay(args)
    except (OSError, EvbError) as exc:
        print(f"evb-source: {exc}", file=sys.stderr)
        return 1
    return 2


if __name__ == "__main__":
    sys.exit(main())
