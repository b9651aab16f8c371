"""``evb-server``: the headless event orderer service.

Prints ``evb listening on HOST:PORT`` on stdout once it accepts connections, then logs to stderr.
SIGINT or SIGTERM: stop accepting, flush every queue, write all output, exit 0.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import inspect
import logging
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from evb.errors import ConfigError, EvbError
from evb.settings import ServerSettings, load_yaml_settings, settings_from_mapping

__all__ = ["add_server_arguments", "build_parser", "main", "run_server", "settings_from_args"]

log = logging.getLogger("evb.cli")

#: flag destination -> ServerSettings field
_FLAG_FIELDS = {
    "host": "host",
    "port": "port",
    "output": "output",
    "window": "window_s",
    "xoff_bytes": "xoff_bytes",
    "xon_bytes": "xon_bytes",
    "perq_xoff": "perq_xoff_fragments",
    "perq_xon": "perq_xon_fragments",
    "source_timeout": "source_timeout_s",
    "max_message_bytes": "max_message_bytes",
    "control": "control",
    "log_level": "log_level",
    "build_dt": "build_dt_ticks",
    "build_policy": "build_policy",
    "build_max_fragments": "build_max_fragments",
}

#: ring flag destination -> RingOptions key
_RING_FLAGS = {
    "ring": "name",
    "ring_slot_bytes": "slot_bytes",
    "ring_slots": "slots",
    "ring_groups": "groups",
    "ring_linger": "linger_s",
}


def add_server_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the server's flags to ``parser`` (``evb-shell`` reuses them).

    Every flag defaults to None so that :func:`settings_from_args` can tell a given flag from
    one left out: flags override the ``--config`` file, which overrides the built-in defaults.
    """
    d = ServerSettings()
    g = parser.add_argument_group("server")
    g.add_argument("--config", type=Path, metavar="FILE.yaml", help="YAML file of settings")
    g.add_argument("--host", metavar="H", help=f"address to listen on (default {d.host})")
    g.add_argument("--port", type=int, metavar="P", help="TCP port, 0 = any free port (default 0)")
    g.add_argument("--output", type=Path, metavar="FILE",
                   help="write the ordered stream (flattened fragments) to FILE or FIFO")
    g.add_argument("--window", type=float, metavar="SECONDS",
                   help=f"build window in seconds (default {d.window_s:g})")
    g.add_argument(
        "--xoff-bytes",
        type=int,
        metavar="B",
        help=f"XoffThreshold: bytes in flight that pause sources (default {d.xoff_bytes})",
    )
    g.add_argument("--xon-bytes", type=int, metavar="B",
                   help=f"XonThreshold: resume below this (default {d.xon_bytes})")
    g.add_argument("--perq-xoff", type=int, metavar="N",
                   help=f"perQXoffThreshold in fragments (default {d.perq_xoff_fragments})")
    g.add_argument("--perq-xon", type=int, metavar="N",
                   help=f"perQXonThreshold in fragments (default {d.perq_xon_fragments})")
    g.add_argument("--source-timeout", type=float, metavar="SECONDS",
                   help=f"sources silent this long are dead (default {d.source_timeout_s:g})")
    g.add_argument("--max-message-bytes", type=int, metavar="B",
                   help=f"largest message body accepted (default {d.max_message_bytes})")
    g.add_argument("--control", type=Path, metavar="PATH",
                   help="serve the Tcl control socket of the shell at PATH")
    g.add_argument("--log-level", metavar="LEVEL", help="DEBUG, INFO, WARNING... (default INFO)")
    r = parser.add_argument_group("ring buffer output and event building")
    r.add_argument("--ring", metavar="NAME", help="also write built events to the ring NAME")
    r.add_argument("--ring-slot-bytes", type=int, metavar="B", help="bytes per ring slot")
    r.add_argument("--ring-slots", type=int, metavar="N", help="number of ring slots")
    r.add_argument("--ring-groups", metavar="G1,G2", help="reader groups the EVB waits for")
    r.add_argument("--ring-linger", type=float, metavar="SECONDS",
                   help="commit a partly filled slot after this long")
    r.add_argument("--build-dt", type=int, metavar="TICKS",
                   help="build events: coincidence window in timestamp ticks")
    r.add_argument("--build-policy", choices=["earliest", "latest", "average"],
                   help="event timestamp policy (default earliest)")
    r.add_argument("--build-max-fragments", type=int, metavar="N",
                   help="most fragments per event (0: no limit)")
    r.add_argument("--nobuild", action="store_true", default=None,
                   help="no building (one fragment per event), also over a --config file")


def build_parser() -> argparse.ArgumentParser:
    """The ``evb-server`` argument parser."""
    parser = argparse.ArgumentParser(
        prog="evb-server",
        description="NSCLDAQ-compatible event orderer: TCP sources in, ordered fragments out.",
    )
    add_server_arguments(parser)
    return parser


def settings_from_args(args: argparse.Namespace) -> ServerSettings:
    """Settings from parsed flags: defaults, then ``--config`` YAML, then the flags given.

    Raises:
        ConfigError: an invalid file or value.
    """
    base = ServerSettings()
    config = getattr(args, "config", None)
    if config is not None:
        base = load_yaml_settings(config, base)
    flags: dict[str, Any] = {}
    for dest, field in _FLAG_FIELDS.items():
        value = getattr(args, dest, None)
        if value is not None:
            flags[field] = value
    ring = dict(base.ring_options)
    for dest, key in _RING_FLAGS.items():
        value = getattr(args, dest, None)
        if value is not None:
            ring[key] = value
    if ring != dict(base.ring_options):
        flags["ring_options"] = tuple(ring.items())
    settings = settings_from_mapping(flags, base)
    if getattr(args, "nobuild", None):
        settings = settings.replace(build_dt_ticks=None)
    return settings


async def _close_control(closer: object) -> None:
    for name in ("aclose", "close"):
        method = getattr(closer, name, None)
        if callable(method):
            result = method()
            if inspect.isawaitable(result):
                await result
            return
    if callable(closer):
        result = closer()
        if inspect.isawaitable(result):
            await result


async def run_server(settings: ServerSettings) -> int:
    """Serve until SIGINT/SIGTERM; return the exit status."""
    from evb.server import serve

    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    status = 0
    async with serve(settings) as server:
        closer: object = None
        if settings.control is not None:
            try:
                from shell.control import start_control  # type: ignore[import-not-found,unused-ignore]
            except ImportError as exc:
                print(f"evb-server: --control needs the shell package: {exc}", file=sys.stderr)
                return 2
            closer = await start_control(server, settings.control)
        host, port = server.address
        print(f"evb listening on {host}:{port}", flush=True)
        stop_wait = asyncio.create_task(stop.wait())
        try:
            while not stop_wait.done() and server.failed is None:
                await asyncio.wait({stop_wait}, timeout=1.0)
        finally:
            stop_wait.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await stop_wait
        log.info("stopping")
        if closer is not None:
            try:
                await _close_control(closer)
            except Exception:
                log.exception("closing the control socket failed")
    if server.failed is not None:
        status = 1
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.remove_signal_handler(sig)
    return status


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``evb-server``."""
    args = build_parser().parse_args(argv)
    try:
        settings = settings_from_args(args)
    except ConfigError as exc:
        print(f"evb-server: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=settings.log_level.upper(),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        return asyncio.run(run_server(settings))
    except (OSError, EvbError) as exc:
        print(f"evb-server: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
