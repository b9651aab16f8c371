"""``evb-shell``: the EVB service with a Tcl prompt, or a prompt attached to a running server.

- ``evb-shell [server flags]``: starts the service in-process (same flags as ``evb-server``)
  and opens the prompt; ``-f FILE`` sources a script first; ``-c SCRIPT`` evaluates, prints the
  result and exits (status 1, message on stderr, on a Tcl error).
- ``evb-shell --attach PATH [-f FILE] [-c SCRIPT]``: the same against ``evb-server --control PATH``.

When stdin is not a terminal and no ``-c`` is given, complete commands are read from stdin and
evaluated one by one (a script on a pipe); otherwise the interactive prompt runs.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from evb.cli import add_server_arguments, settings_from_args
from evb.errors import ConfigError, EvbError
from shell.control import ControlClient, service_status, start_control
from shell.repl import default_history_path, run_repl
from shell.tcl import EvalResult, TclShell, tcl_is_complete

__all__ = ["build_parser", "main"]

log = logging.getLogger("shell.cli")


class _CurrentStderr:
    """Whatever ``sys.stderr`` is now: the prompt's ``patch_stdout`` replaces it while it runs,
    and log lines must go above the prompt too."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


def build_parser() -> argparse.ArgumentParser:
    """``evb-shell``'s flags: the server's plus -f, -c, --attach, --history."""
    parser = argparse.ArgumentParser(
        prog="evb-shell",
        description="Tcl shell of the NSCLDAQ-compatible event orderer (EVB:: commands).",
    )
    g = parser.add_argument_group("shell")
    g.add_argument("-f", dest="file", metavar="FILE", type=Path, help="source FILE first")
    g.add_argument("-c", dest="command", metavar="SCRIPT",
                   help="evaluate SCRIPT, print the result and exit")
    g.add_argument("--attach", metavar="PATH", type=Path,
                   help="attach to a running evb-server --control PATH instead of starting one")
    g.add_argument("--history", metavar="FILE", type=Path,
                   help="prompt history file (default $EVB_SHELL_HISTORY or ~/.evb_shell_history)")
    add_server_arguments(parser)
    return parser


class LocalEvaluator:
    """The prompt's evaluator in the server's own process."""

    def __init__(self, shell: TclShell) -> None:
        self.shell = shell

    async def evaluate(self, script: str) -> EvalResult:
        return self.shell.evaluate(script)

    async def status(self) -> Mapping[str, Any]:
        return service_status(self.shell.service)


def _print_result(r: EvalResult, *, quiet_empty: bool = True) -> None:
    if r.output:
        sys.stdout.write(r.output)
    if r.ok:
        if r.text or not quiet_empty:
            print(r.text)
    else:
        print(r.text, file=sys.stderr)
    sys.stdout.flush()


async def _read_stdin_commands(evaluate: Any, is_complete: Any) -> int:
    """Evaluate complete commands from a non-terminal stdin; returns the exit status."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    status = 0
    pending = ""
    while True:
        line = (await reader.readline()).decode("utf-8", "replace")
        if line:
            pending += line
            if not is_complete(pending):
                continue
        if pending.strip():
            r: EvalResult = await evaluate(pending)
            if r.exit_code is not None:
                return r.exit_code
            _print_result(r)
            if not r.ok:
                status = 1
        pending = ""
        if not line:
            return status


def _install_stop(stop: asyncio.Event) -> list[int]:
    loop = asyncio.get_running_loop()
    installed: list[int] = []
    for sig in (signal.SIGTERM, signal.SIGHUP):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
            installed.append(sig)
    return installed


async def _run_local(args: argparse.Namespace) -> int:
    from evb.server import serve

    settings = settings_from_args(args)
    async with serve(settings) as server:
        shell = TclShell(server)
        shell.start()
        control = None
        stop = asyncio.Event()
        signals = _install_stop(stop)
        try:
            if settings.control is not None:
                control = await start_control(server, settings.control, shell=shell)
            host, port = server.address
            interactive = args.command is None and sys.stdin.isatty()
            if interactive:
                print(f"evb listening on {host}:{port}; type 'help' for the EVB:: commands",
                      flush=True)
            if args.file is not None:
                r = shell.source(str(args.file))
                if r.exit_code is not None:
                    return r.exit_code
                if not r.ok:
                    print(f"evb-shell: {args.file}: {r.text}", file=sys.stderr)
                    return 1
            if args.command is not None:
                r = shell.evaluate(args.command)
                if r.exit_code is not None:
                    return r.exit_code
                _print_result(r)
                return 0 if r.ok else 1
            if not interactive:
                return await _read_stdin_commands(
                    LocalEvaluator(shell).evaluate, shell.is_complete
                )
            return await run_repl(
                LocalEvaluator(shell),
                shell.registry,
                shell.is_complete,
                history=args.history or default_history_path(),
                stop=stop,
            )
        finally:
            loop = asyncio.get_running_loop()
            for sig in signals:
                loop.remove_signal_handler(sig)
            if control is not None:
                await control.close()
            await shell.close()


async def _run_attach(args: argparse.Namespace) -> int:
    from shell.commands import build_registry

    client = await ControlClient.connect(args.attach)
    try:
        if args.file is not None:
            r = await client.evaluate(args.file.read_text())
            if not r.ok:
                _print_result(r)
                return 1
            if args.command is None:
                _print_result(r)
        if args.command is not None:
            r = await client.evaluate(args.command)
            _print_result(r)
            return 0 if r.ok else 1
        if not sys.stdin.isatty():
            return await _read_stdin_commands(client.evaluate, tcl_is_complete)
        stop = asyncio.Event()
        signals = _install_stop(stop)
        try:
            return await run_repl(
                client,
                build_registry(),
                tcl_is_complete,
                history=args.history or default_history_path(),
                attached=str(args.attach),
                stop=stop,
            )
        finally:
            for sig in signals:
                asyncio.get_running_loop().remove_signal_handler(sig)
    finally:
        await client.close()


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``evb-shell``."""
    args = build_parser().parse_args(argv)
    level = (args.log_level or "WARNING").upper()
    handler = logging.StreamHandler(_CurrentStderr())
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=level, handlers=[handler])
    try:
        if args.attach is not None:
            return asyncio.run(_run_attach(args))
        return asyncio.run(_run_local(args))
    except ConfigError as exc:
        print(f"evb-shell: {exc}", file=sys.stderr)
        return 2
    except (OSError, EvbError) as exc:
        print(f"evb-shell: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
