"""The Tcl edge: one real Tcl 8.6 interpreter hosting the EVB:: commands and running the hooks.

The interpreter lives on the thread that creates it, which must be the event loop's thread (every
call below happens there). Python callbacks registered with ``createcommand`` never raise
(tkinter would drop the message): ``::_evb::call`` returns ``{ok result}`` or ``{error message}``
and a small Tcl wrapper proc per command turns the second into ``return -code error`` so that
``catch`` sees the message.

Hooks: :meth:`TclShell.notify` is the server listener. Notifications are queued and their scripts
run from the event loop soon after (never inside the core call that produced them, so a hook may
itself call EVB:: commands). A hook that fails is reported on stderr with its script and message;
the EVB keeps running.
"""

from __future__ import annotations

import _tkinter
import asyncio
import contextlib
import logging
import sys
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TextIO

from evb.notify import BarrierComplete, BarrierIncomplete, FlowChange, LateFragment
from shell.commands import (
    CommandError,
    CommandRegistry,
    Context,
    Hooks,
    ServiceLike,
    build_registry,
)
from shell.tclfmt import quote_element, to_tcl

__all__ = ["EvalResult", "TclShell", "tcl_is_complete"]

log = logging.getLogger(__name__)

#: Hook notifications waiting beyond this many are dropped (and counted) to bound memory.
MAX_PENDING_HOOKS = 10_000
#: How often Tcl's event queue (``after``, ``fileevent``) is serviced from the asyncio loop.
TCL_EVENT_INTERVAL_S = 0.02

_SETUP = r"""
namespace eval ::_evb {}
namespace eval ::EVB { namespace export * }
proc ::_evb::invoke {script args} {
    uplevel #0 [linsert $script end {*}$args]
}
rename ::puts ::_evb::tcl_puts
proc ::puts args {
    set nl 1
    if {[lindex $args 0] eq "-nonewline"} {
        set nl 0
        set args [lrange $args 1 end]
    }
    switch [llength $args] {
        1 { set chan stdout; set s [lindex $args 0] }
        2 { lassign $args chan s }
        default {
            return -code error {wrong # args: should be "puts ?-nonewline? ?channelId? string"}
        }
    }
    if {$chan in {stdout stderr}} {
        ::_evb::write $chan $s $nl
        return
    }
    if {$nl} { ::_evb::tcl_puts $chan $s } else { ::_evb::tcl_puts -nonewline $chan $s }
}
proc ::exit {{code 0}} {
    set r [::_evb::exit $code]
    return -code error -errorcode [list EVB EXIT $code] [lindex $r 1]
}
proc ::_evb::bgerror {message options} {
    ::_evb::report "background error" [dict get $options -errorinfo]
}
interp bgerror {} ::_evb::bgerror
"""

_WRAPPER = r"""
proc %(proc)s args {
    set r [::_evb::call %(name)s {*}$args]
    if {[lindex $r 0] eq "ok"} { return [lindex $r 1] }
    return -code error -errorcode {EVB COMMAND} [lindex $r 1]
}
"""


@dataclass(frozen=True, slots=True, kw_only=True)
class EvalResult:
    """Outcome of evaluating a script.

    Attributes:
        ok: no Tcl error.
        text: the result, or the error message.
        output: what the script printed to stdout/stderr with ``puts`` (when captured).
        exit_code: set when the script called ``exit``.
    """

    ok: bool
    text: str
    output: str = ""
    exit_code: int | None = None


def _create_interp() -> Any:
    # _tkinter.create directly: tkinter.Tcl() would also source ~/.Tk.tcl and exec ~/.Tk.py.
    return _tkinter.create(None, "evb-shell", "Tk", False, False, False, False, None)


_bare_interp: Any = None


def tcl_is_complete(script: str) -> bool:
    """``info complete`` in a bare interpreter (for a prompt attached to a remote server)."""
    global _bare_interp
    if _bare_interp is None:
        _bare_interp = _create_interp()
    return bool(_bare_interp.getboolean(_bare_interp.call("info", "complete", script)))


class TclShell:
    """A Tcl interpreter with the EVB:: commands bound to one service.

    Args:
        service: the running EVB (``evb.server.Server``) or a test double.
        registry: the commands (default: :func:`shell.commands.build_registry`).
        stdout, stderr: where ``puts`` and hook error reports go (default ``sys.stdout``/``stderr``,
            looked up at write time so prompt_toolkit's ``patch_stdout`` works).
    """

    def __init__(
        self,
        service: ServiceLike,
        registry: CommandRegistry | None = None,
        *,
        stdout: TextIO | None = None,
        stderr: TextIO | None = None,
    ) -> None:
        self.registry = registry or build_registry()
        self.hooks = Hooks()
        self.service = service
        self.context = Context(service, self.hooks, self.registry, self._hooks_changed)
        self._stdout = stdout
        self._stderr = stderr
        self._tk = _create_interp()
        self._capture: list[str] | None = None
        self._allow_exit = True
        self._exit_code: int | None = None
        self._pending: deque[object] = deque()
        self._drain_scheduled = False
        self.hooks_dropped = 0
        self.hook_errors = 0
        self._pump_task: asyncio.Task[None] | None = None
        self._listening = False
        self._closed = False
        self._tk.createcommand("::_evb::call", self._call)
        self._tk.createcommand("::_evb::write", self._write)
        self._tk.createcommand("::_evb::exit", self._exit)
        self._tk.createcommand("::_evb::report", self._report_cmd)
        self._tk.eval(_SETUP)
        for command in self.registry:
            for name in command.names:
                proc = "::" + name
                self._tk.eval(_WRAPPER % {"proc": proc, "name": quote_element(name)})

    # -- evaluation ----------------------------------------------------------------------

    @property
    def interp(self) -> Any:
        """The underlying ``_tkinter`` application object (for tests and advanced use)."""
        return self._tk

    def eval(self, script: str) -> str:
        """Evaluate and return the result; a Tcl error raises :class:`CommandError`."""
        r = self.evaluate(script)
        if not r.ok:
            raise CommandError(r.text)
        return r.text

    def evaluate(
        self, script: str, *, capture: bool = False, allow_exit: bool = True
    ) -> EvalResult:
        """Evaluate a script at global level.

        Args:
            script: Tcl text.
            capture: collect ``puts`` to stdout/stderr into :attr:`EvalResult.output` instead of
                writing it (remote sessions).
            allow_exit: ``exit`` ends the session; else it is an error (control connections,
                where it would stop the server).
        """
        saved = self._capture, self._allow_exit
        self._capture = [] if capture else None
        self._allow_exit = allow_exit
        self._exit_code = None
        try:
            try:
                text = str(self._tk.eval(script))
                ok = True
            except _tkinter.TclError as e:
                text = str(e)
                ok = False
            output = "".join(self._capture) if self._capture is not None else ""
            exit_code = self._exit_code
        finally:
            self._capture, self._allow_exit = saved
            self._exit_code = None
        if exit_code is not None:
            return EvalResult(ok=True, text="", output=output, exit_code=exit_code)
        return EvalResult(ok=ok, text=text, output=output)

    def is_complete(self, script: str) -> bool:
        """Tcl's ``info complete``: False while braces, brackets or quotes are open."""
        return bool(self._tk.getboolean(self._tk.call("info", "complete", script)))

    def source(self, path: str) -> EvalResult:
        """``source path``."""
        return self.evaluate("source " + quote_element(path))

    # -- Python callbacks (must never raise) ---------------------------------------------

    def _call(self, name: str, *args: str) -> tuple[str, str]:
        try:
            return ("ok", self.registry.eval_to_tcl(self.context, name, args))
        except CommandError as e:
            return ("error", str(e))
        except Exception as e:
            log.exception("internal error in %s", name)
            return ("error", f"internal error in {name}: {type(e).__name__}: {e}")

    def _write(self, channel: str, text: str, newline: str) -> str:
        try:
            data = text + ("\n" if newline not in ("0", "") else "")
            if self._capture is not None:
                self._capture.append(data)
                return ""
            stream = self._stream(channel)
            stream.write(data)
            stream.flush()
        except Exception:  # a closed stream must not break Tcl
            log.exception("puts failed")
        return ""

    def _stream(self, channel: str) -> TextIO:
        if channel == "stderr":
            return self._stderr or sys.stderr
        return self._stdout or sys.stdout

    def _exit(self, code: str) -> tuple[str, str]:
        if not self._allow_exit:
            return ("error", "exit is not available here: it would stop the EVB server"
                    " (detach with Ctrl-D)")
        try:
            self._exit_code = int(code)
        except ValueError:
            return ("error", f'expected integer but got "{code}"')
        return ("ok", "exit")

    def _report_cmd(self, what: str, text: str) -> str:
        self.report(f"evb-shell: {what}: {text}")
        return ""

    def report(self, message: str) -> None:
        """Write a problem (hook error, background error) on stderr and to the log."""
        log.debug("%s", message)  # stderr is the report; logging it too would print it twice
        with contextlib.suppress(Exception):
            stream = self._stream("stderr")
            stream.write(message + "\n")
            stream.flush()

    # -- hooks ---------------------------------------------------------------------------

    def _hooks_changed(self) -> None:
        # Late details cost per-fragment work in the core: only on while a script wants them.
        with contextlib.suppress(AttributeError):
            self.service.orderer.late_details = bool(self.hooks.data_late)

    def notify(self, notification: object) -> None:
        """Server listener: queue the notification; its hook runs from the loop soon after."""
        if not self._wants(notification):
            return
        if len(self._pending) >= MAX_PENDING_HOOKS:
            self.hooks_dropped += 1
            return
        self._pending.append(notification)
        if self._drain_scheduled:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self.run_pending_hooks()
            return
        self._drain_scheduled = True
        loop.call_soon(self.run_pending_hooks)

    def _wants(self, n: object) -> bool:
        if isinstance(n, LateFragment):
            return bool(self.hooks.data_late)
        if isinstance(n, BarrierComplete):
            return bool(self.hooks.barrier_complete)
        if isinstance(n, BarrierIncomplete):
            return bool(self.hooks.barrier_incomplete)
        if isinstance(n, FlowChange):
            return bool(self.hooks.flow)
        return False

    def run_pending_hooks(self) -> int:
        """Run the scripts of queued notifications; returns how many ran."""
        self._drain_scheduled = False
        ran = 0
        while self._pending and not self._closed:
            n = self._pending.popleft()
            for script, args in self._invocations(n):
                self._run_hook(script, args)
                ran += 1
        return ran

    def _invocations(self, n: object) -> list[tuple[str, tuple[object, ...]]]:
        h = self.hooks
        if isinstance(n, LateFragment) and h.data_late:
            return [(h.data_late, (str(n.source_id), str(n.timestamp), str(n.newest),
                                   bytes(n.payload)))]
        if isinstance(n, BarrierComplete) and h.barrier_complete:
            return [(h.barrier_complete, (to_tcl(n.barriers),))]
        if isinstance(n, BarrierIncomplete) and h.barrier_incomplete:
            return [(h.barrier_incomplete, (to_tcl(n.barriers), to_tcl(n.missing)))]
        if isinstance(n, FlowChange):
            extra: tuple[object, ...] = () if n.connection is None else (n.connection,)
            return [((xon if n.xon else xoff), extra) for xon, xoff in list(h.flow)]
        return []

    def _run_hook(self, script: str, args: tuple[object, ...]) -> None:
        if not script:
            return
        try:
            self._tk.call("::_evb::invoke", script, *args)
        except _tkinter.TclError as e:
            self.hook_errors += 1
            self.report(f"evb-shell: error in hook script {{{script}}}: {e}")

    # -- lifetime ------------------------------------------------------------------------

    def pump_tcl_events(self, limit: int = 1000) -> int:
        """Service Tcl's event queue without blocking (``after`` scripts); bounded."""
        n = 0
        while n < limit and self._tk.dooneevent(_tkinter.DONT_WAIT):
            n += 1
        return n

    async def _pump(self) -> None:
        while True:
            self.pump_tcl_events()
            await asyncio.sleep(TCL_EVENT_INTERVAL_S)

    def start(self) -> None:
        """Listen to the server's notifications and service Tcl events; call on the loop."""
        add: Callable[[Callable[[object], None]], object] | None = getattr(
            self.service, "add_listener", None
        )
        if add is not None and not self._listening:
            add(self.notify)
            self._listening = True
        if self._pump_task is None:
            self._pump_task = asyncio.get_running_loop().create_task(
                self._pump(), name="evb-shell tcl events"
            )

    async def close(self) -> None:
        """Stop listening and servicing events (idempotent). The interpreter stays usable."""
        if self._listening:
            remove = getattr(self.service, "remove_listener", None)
            if remove is not None:
                remove(self.notify)
            self._listening = False
        task, self._pump_task = self._pump_task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self.hooks.data_late:
            self.hooks.data_late = ""
            self._hooks_changed()
