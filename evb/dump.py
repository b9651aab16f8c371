"""``evb-dump``: print recorded files or a live EVB ring readably (NSCLDAQ dumper style).

``evb-dump FILE`` reads a built-event file or a fragment stream (told apart by the magic);
``evb-dump --ring NAME`` reads the slots of a running EVB's ring until its end of data.
Every event shows its timestamp, fragment count and size; every fragment its timestamp,
source id, barrier type, payload size and the first payload bytes in hex.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable, Iterator, Sequence
from typing import TextIO

import numpy as np

from evb.batch import FLAT_HEADER_BYTES
from evb.builder import EventBatch
from evb.errors import EvbError

__all__ = ["BARRIER_NAMES", "EventPrinter", "build_parser", "main"]

#: Conventional barrier types (the orderer treats them as opaque).
BARRIER_NAMES = {1: "begin run", 2: "end run", 3: "sync"}


class EventPrinter:
    """Formats events; keeps the count so ``--count`` can stop across batches.

    Args:
        out: where to print.
        built: print events (True) or bare fragments (False, a fragment stream / nobuild).
        sources: only show fragments of these source ids (events with none are skipped).
        count: stop after this many events (0: no limit).
        hex_bytes: payload bytes shown per fragment.
    """

    def __init__(
        self,
        out: TextIO,
        *,
        built: bool,
        sources: Iterable[int] = (),
        count: int = 0,
        hex_bytes: int = 16,
    ) -> None:
        self.out = out
        self.built = built
        self.sources = np.asarray(sorted(set(sources)), np.uint32)
        self.count = count
        self.hex_bytes = hex_bytes
        self.printed = 0

    @property
    def done(self) -> bool:
        return bool(self.count) and self.printed >= self.count

    def print_events(self, events: EventBatch) -> None:
        frags = events.fragments
        if not len(events) or self.done:
            return
        keep = (
            np.isin(frags.source_ids, self.sources)
            if len(self.sources)
            else np.ones(len(frags), bool)
        )
        idx = frags.index
        ts = idx["timestamp"].tolist()
        sid = idx["source_id"].tolist()
        size = idx["payload_size"].tolist()
        bar = idx["barrier_type"].tolist()
        off = idx["offset"].tolist()
        bufno = idx["buf"].tolist()
        keepl = keep.tolist()
        bufs = frags.buffers
        ev_bytes = events.event_sizes().tolist()
        w = self.out.write
        for e, (first, cnt, ets) in enumerate(
            zip(
                events.starts.tolist(),
                events.counts.tolist(),
                events.timestamps.tolist(),
                strict=True,
            )
        ):
            rows = [r for r in range(first, first + cnt) if keepl[r]]
            if not rows:
                continue
            if self.built:
                is_bar = cnt == 1 and bar[first] != 0
                kind = " barrier" if is_bar else ""
                w(f"Event{kind} timestamp {ets} fragments {cnt} size {ev_bytes[e]}\n")
            for r in rows:
                w(self._fragment_line(ts[r], sid[r], bar[r], size[r], bufs[bufno[r]], off[r]))
            self.printed += 1
            if self.done:
                return

    def _fragment_line(
        self, ts: int, sid: int, bar: int, size: int, buf: np.ndarray, off: int
    ) -> str:
        indent = "  " if self.built else ""
        start = off + FLAT_HEADER_BYTES
        head = bytes(buf[start : start + min(size, self.hex_bytes)]).hex(" ")
        more = " ..." if size > self.hex_bytes else ""
        btxt = f"{bar}"
        if bar:
            btxt += f" ({BARRIER_NAMES.get(bar, 'barrier')})"
        return (
            f"{indent}Fragment timestamp {ts} source {sid} barrier {btxt} "
            f"size {size}: {head}{more}\n"
        )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="evb-dump",
        description="Print recorded evb files (built events or fragments) or a live EVB ring.",
    )
    parser.add_argument("file", nargs="?", help="recorded file (--output of evb-server)")
    parser.add_argument("--ring", metavar="NAME", help="read the slots of the EVB ring NAME")
    parser.add_argument("--group", default="evb-dump", metavar="G",
                        help="reader group in the ring (default evb-dump; left on exit)")
    parser.add_argument("--count", type=int, default=0, metavar="N",
                        help="stop after N events (0: all)")
    parser.add_argument("--source", type=int, action="append", default=[], metavar="SID",
                        help="only fragments of this source id (repeatable)")
    parser.add_argument("--hex-bytes", type=int, default=16, metavar="B",
                        help="payload bytes shown in hex per fragment (default 16)")
    parser.add_argument("--timeout", type=float, default=5.0, metavar="S",
                        help="seconds to wait for the ring to exist (default 5)")
    parser.add_argument("--slots", action="store_true",
                        help="with --ring: print a line per slot (counter, timestamps, sizes)")
    return parser


def _dump_file(path: str, printer: EventPrinter, out: TextIO) -> None:
    from evb.recording import open_recording

    rec = open_recording(path)
    printer.built = rec.built
    kind = "built events" if rec.built else "fragment stream"
    out.write(
        f"File {path}: {kind}, {len(rec.events)} "
        f"{'events' if rec.built else 'fragments'}, {len(rec.data)} bytes\n"
    )
    # Per chunk of events, so the per-line work stays bounded for --count on big files.
    n = len(rec.events)
    step = 4096
    from evb.ringsink import slice_events

    for lo in range(0, n, step):
        printer.print_events(slice_events(rec.events, lo, min(n, lo + step)))
        if printer.done:
            return


def _ring_slots(name: str, group: str, timeout_s: float) -> Iterator[tuple[object, object]]:
    from evb.ringsink import EventRingReader

    with EventRingReader(name, group, timeout_s=timeout_s) as reader:
        for slot in reader:
            yield reader.meta, slot


def _dump_ring(args: argparse.Namespace, printer: EventPrinter, out: TextIO) -> None:
    from evb.eventfmt import SlotEvents

    for meta, slot in _ring_slots(args.ring, args.group, args.timeout):
        assert isinstance(slot, SlotEvents)
        printer.built = slot.built
        if args.slots:
            h = slot.header[0]
            counter = int(meta["counter"]) if meta is not None else -1  # type: ignore[index]
            out.write(
                f"Slot {counter} events {int(h['n_events'])} fragments {int(h['n_fragments'])} "
                f"bytes {int(h['bytes_used'])} first {int(h['first_timestamp'])} "
                f"last {int(h['last_timestamp'])} barriers {int(h['n_barriers'])}\n"
            )
        printer.print_events(slot.events())
        out.flush()
        if printer.done:
            return


def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    """Entry point of ``evb-dump``."""
    parser = build_parser()
    args = parser.parse_args(argv)
    out = out or sys.stdout
    if (args.file is None) == (args.ring is None):
        parser.print_usage(sys.stderr)
        print("evb-dump: give a FILE or --ring NAME (one of them)", file=sys.stderr)
        return 2
    if args.count < 0 or args.hex_bytes < 0:
        print("evb-dump: --count and --hex-bytes must be >= 0", file=sys.stderr)
        return 2
    printer = EventPrinter(
        out, built=True, sources=args.source, count=args.count, hex_bytes=args.hex_bytes
    )
    try:
        if args.file is not None:
            _dump_file(args.file, printer, out)
        else:
            _dump_ring(args, printer, out)
    except BrokenPipeError:
        return 0
    except KeyboardInterrupt:
        return 130
    except (OSError, EvbError) as exc:
        print(f"evb-dump: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:  # ringbuffer errors (not EvbError), reported without a traceback
        if type(exc).__module__.startswith("ringbuffer"):
            print(f"evb-dump: {exc}", file=sys.stderr)
            return 1
        raise
    out.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
