"""The interactive prompt: prompt_toolkit's ``prompt_async`` on the server's event loop.

The EVB keeps building while the user types (the prompt awaits keys, it does not block the loop).
Enter runs the command when it is complete Tcl (``info complete``), else starts a new line.
Tab completes EVB:: commands, their subcommands and config names from the registry. The bottom
toolbar shows rates, queue depth, XON/XOFF, late and duplicate counts, refreshed twice a second.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from collections.abc import Awaitable, Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, Protocol

from prompt_toolkit import PromptSession
from prompt_toolkit.completion import CompleteEvent, Completer, Completion
from prompt_toolkit.document import Document
from prompt_toolkit.formatted_text import HTML
from prompt_toolkit.history import FileHistory, History, InMemoryHistory
from prompt_toolkit.key_binding import KeyBindings, KeyPressEvent
from prompt_toolkit.patch_stdout import patch_stdout

from shell.commands import CommandRegistry
from shell.tcl import EvalResult

__all__ = [
    "Evaluator",
    "RegistryCompleter",
    "default_history_path",
    "format_toolbar",
    "run_repl",
]

STATUS_INTERVAL_S = 0.5


class Evaluator(Protocol):
    """Where the prompt's commands go: the in-process interpreter or a control connection."""

    async def evaluate(self, script: str) -> EvalResult: ...

    async def status(self) -> Mapping[str, Any]: ...


class RegistryCompleter(Completer):
    """Completes command names, subcommands and config names from the registry."""

    def __init__(self, registry: CommandRegistry) -> None:
        self.registry = registry

    def get_completions(
        self, document: Document, complete_event: CompleteEvent
    ) -> Iterable[Completion]:
        partial, candidates = self.registry.completions(document.text_before_cursor)
        for c in candidates:
            yield Completion(c, start_position=-len(partial))


def default_history_path() -> Path:
    """``$EVB_SHELL_HISTORY``, else ``~/.evb_shell_history``."""
    env = os.environ.get("EVB_SHELL_HISTORY")
    if env:
        return Path(env)
    return Path.home() / ".evb_shell_history"


def _si(value: float) -> str:
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(value) >= scale:
            return f"{value / scale:.1f}{unit}"
    return f"{value:.0f}"


def format_toolbar(status: Mapping[str, Any], *, attached: str | None = None) -> str:
    """The bottom toolbar text from ``server.status()`` figures (missing ones are left out)."""
    if not status:
        return "evb: no status" + (f"  [attached {attached}]" if attached else "")
    parts: list[str] = []
    if "in_fragments_per_s" in status:
        parts.append(f"in {_si(float(status['in_fragments_per_s']))} frag/s")
    if "fragments_per_s" in status:
        parts.append(f"out {_si(float(status['fragments_per_s']))} frag/s")
    if "bytes_per_s" in status:
        parts.append(f"{_si(float(status['bytes_per_s']))}B/s")
    if "queued_fragments" in status:
        parts.append(f"queued {status['queued_fragments']}")
    if "queued_bytes" in status:
        parts.append(f"({_si(float(status['queued_bytes']))}B)")
    if "xoff" in status:
        flow = "XOFF" if status["xoff"] else "XON"
        paused = status.get("paused_connections") or []
        if paused:
            flow += f" ({len(paused)} paused)"
        parts.append(flow)
    if "late" in status:
        parts.append(f"late {status['late']}")
    if "duplicates" in status:
        parts.append(f"dups {status['duplicates']}")
    if "connections" in status:
        parts.append(f"conns {status['connections']}")
    if attached:
        parts.append(f"[attached {attached}]")
    return " | ".join(parts)


class _StatusCache:
    def __init__(self, fetch: Callable[[], Awaitable[Mapping[str, Any]]]) -> None:
        self.fetch = fetch
        self.value: Mapping[str, Any] = {}

    async def run(self, interval_s: float) -> None:
        while True:
            with contextlib.suppress(Exception):
                self.value = await self.fetch()
            await asyncio.sleep(interval_s)


def _key_bindings(is_complete: Callable[[str], bool]) -> KeyBindings:
    kb = KeyBindings()

    @kb.add("enter")
    def _enter(event: KeyPressEvent) -> None:
        buf = event.current_buffer
        if buf.complete_state is not None and buf.complete_state.current_completion is not None:
            buf.apply_completion(buf.complete_state.current_completion)
            return
        if is_complete(buf.text):
            buf.validate_and_handle()
        else:
            buf.insert_text("\n")

    return kb


def _show(result: EvalResult) -> None:
    if result.output:
        sys.stdout.write(result.output)
        if not result.output.endswith("\n"):
            sys.stdout.write("\n")
    if result.ok:
        if result.text:
            print(result.text)
    else:
        print(f"error: {result.text}", file=sys.stderr)
    sys.stdout.flush()


async def run_repl(
    evaluator: Evaluator,
    registry: CommandRegistry,
    is_complete: Callable[[str], bool],
    *,
    history: History | Path | None = None,
    attached: str | None = None,
    stop: asyncio.Event | None = None,
) -> int:
    """Run the prompt until EOF (Ctrl-D), ``exit`` or ``stop``; returns the exit status.

    Args:
        evaluator: runs the scripts.
        registry: for completion.
        is_complete: Tcl's ``info complete``.
        history: a History, a file path for a persistent one, or None (in memory).
        attached: the control socket path, shown in the toolbar when attached.
        stop: set it to end the prompt (e.g. on SIGTERM).
    """
    if isinstance(history, Path):
        history.parent.mkdir(parents=True, exist_ok=True)
        history = FileHistory(str(history))
    cache = _StatusCache(evaluator.status)
    session: PromptSession[str] = PromptSession(
        HTML("<b>evb%</b> "),
        completer=RegistryCompleter(registry),
        complete_while_typing=False,
        history=history or InMemoryHistory(),
        key_bindings=_key_bindings(is_complete),
        multiline=True,
        prompt_continuation=lambda width, line, wrap: "> ".rjust(width),
        bottom_toolbar=lambda: format_toolbar(cache.value, attached=attached),
        refresh_interval=STATUS_INTERVAL_S,
    )
    poller = asyncio.get_running_loop().create_task(cache.run(STATUS_INTERVAL_S))
    stop_wait = asyncio.get_running_loop().create_task((stop or asyncio.Event()).wait())
    status = 0
    try:
        with patch_stdout(raw=True):
            while True:
                prompt = asyncio.get_running_loop().create_task(session.prompt_async())
                done, _ = await asyncio.wait(
                    {prompt, stop_wait}, return_when=asyncio.FIRST_COMPLETED
                )
                if stop_wait in done:
                    prompt.cancel()
                    with contextlib.suppress(BaseException):
                        await prompt
                    break
                try:
                    text = prompt.result()
                except KeyboardInterrupt:
                    continue
                except EOFError:
                    break
                if not text.strip():
                    continue
                result = await evaluator.evaluate(text)
                if result.exit_code is not None:
                    status = result.exit_code
                    break
                _show(result)
    finally:
        for task in (poller, stop_wait):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    return status
