"""Remote control: a Unix-domain socket that evaluates Tcl in the server's interpreter.

``evb-server --control PATH`` calls :func:`start_control`; ``evb-shell --attach PATH`` talks to it
with :class:`ControlClient`. Frames are described in :mod:`shell.protocol` and docs/shell.md.
Scripts run in the server process, on its event loop, in one Tcl interpreter shared by every
control connection: hooks registered remotely run in the server and outlive the connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import socket
import stat
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from evb.errors import EvbError
from shell.commands import ServiceLike
from shell.protocol import ControlProtocolError, FrameDecoder, check_request, encode_frame
from shell.tcl import EvalResult, TclShell

__all__ = ["ControlClient", "ControlServer", "plain_status", "start_control"]

log = logging.getLogger(__name__)

_READ_BYTES = 64 * 1024
_CLOSE_TIMEOUT_S = 5.0


def plain_status(value: object) -> object:
    """``server.status()`` as plain msgpack-able values (numbers, strings, lists, maps)."""
    if isinstance(value, Mapping):
        return {str(k): plain_status(v) for k, v in value.items()}
    if isinstance(value, bool | int | float | str) or value is None:
        return value
    if isinstance(value, list | tuple | set | frozenset):
        return [plain_status(v) for v in value]
    if hasattr(value, "item"):  # numpy scalars
        return plain_status(value.item())
    return str(value)


def service_status(service: object) -> dict[str, Any]:
    """The service's status figures (empty if it has none)."""
    fn = getattr(service, "status", None)
    if fn is None:
        return {}
    try:
        st = plain_status(fn())
    except Exception:
        log.exception("status() failed")
        return {}
    return st if isinstance(st, dict) else {}


class ControlServer:
    """The listening control socket; :meth:`close` stops it (idempotent)."""

    def __init__(self, shell: TclShell, path: Path, *, owns_shell: bool) -> None:
        self.shell = shell
        self.path = path
        self._owns_shell = owns_shell
        self._server: asyncio.AbstractServer | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._closed = False

    async def _start(self) -> None:
        _clear_stale_socket(self.path)
        old = os.umask(0o177)  # the socket is created 0600: only its owner may control the EVB
        try:
            self._server = await asyncio.start_unix_server(self._handle, path=str(self.path))
        finally:
            os.umask(old)
        os.chmod(self.path, 0o600)
        log.info("control socket listening at %s", self.path)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        self._writers.add(writer)
        decoder = FrameDecoder()
        try:
            while not self._closed:
                data = await reader.read(_READ_BYTES)
                if not data:
                    break
                try:
                    for msg in decoder.feed(data):
                        writer.write(encode_frame(self._answer(msg)))
                except ControlProtocolError as e:
                    log.warning("control connection closed: %s", e)
                    with contextlib.suppress(Exception):
                        writer.write(encode_frame({"ok": False, "error": f"protocol error: {e}"}))
                    break
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            self._writers.discard(writer)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()
            if task is not None:
                self._tasks.discard(task)

    def _answer(self, msg: Mapping[str, Any]) -> dict[str, Any]:
        script = check_request(msg)
        if script is None:
            return {"ok": True, "result": service_status(self.shell.service)}
        r = self.shell.evaluate(script, capture=True, allow_exit=False)
        if r.ok:
            return {"ok": True, "result": r.text, "output": r.output}
        return {"ok": False, "error": r.text, "output": r.output}

    async def close(self) -> None:
        """Stop listening, close every control connection, remove the socket file."""
        if self._closed:
            return
        self._closed = True
        if self._server is not None:
            self._server.close()
        for w in list(self._writers):
            w.close()  # the handler sees EOF and ends by itself
        tasks = list(self._tasks)
        if tasks:
            _, stuck = await asyncio.wait(tasks, timeout=_CLOSE_TIMEOUT_S)
            for t in stuck:
                t.cancel()
        if self._server is not None:
            with contextlib.suppress(Exception):
                await self._server.wait_closed()
        with contextlib.suppress(FileNotFoundError):
            if stat.S_ISSOCK(os.lstat(self.path).st_mode):
                os.unlink(self.path)
        if self._owns_shell:
            await self.shell.close()


def _clear_stale_socket(path: Path) -> None:
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(st.st_mode):
        raise EvbError(f"control path {path} exists and is not a socket")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(str(path))
    except OSError as e:
        if e.errno in (errno.ECONNREFUSED, errno.ENOENT):
            os.unlink(path)  # left behind by a server that died
            return
        raise
    else:
        raise EvbError(f"control socket {path} is in use by another server")
    finally:
        probe.close()


async def start_control(
    server: ServiceLike, path: str | os.PathLike[str], *, shell: TclShell | None = None
) -> ControlServer:
    """Open the control socket of a running server (mode 0600).

    Args:
        server: the running service the EVB:: commands act on.
        path: where to create the Unix-domain socket.
        shell: an existing interpreter to share (``evb-shell --control``); else one is created
            and started, and closed with the control server.

    Raises:
        EvbError: the path exists and is not a stale socket.
    """
    owns = shell is None
    if shell is None:
        shell = TclShell(server)
        shell.start()
    ctl = ControlServer(shell, Path(path), owns_shell=owns)
    try:
        await ctl._start()
    except BaseException:
        if owns:
            await shell.close()
        raise
    return ctl


class ControlClient:
    """Client side of the control socket (``evb-shell --attach``)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer
        self._decoder = FrameDecoder()
        self._frames: list[dict[str, Any]] = []
        self._lock = asyncio.Lock()

    @classmethod
    async def connect(cls, path: str | os.PathLike[str]) -> ControlClient:
        """Connect to a control socket.

        Raises:
            EvbError: nothing listens there.
        """
        try:
            reader, writer = await asyncio.open_unix_connection(str(path))
        except OSError as e:
            raise EvbError(f"cannot attach to control socket {path}: {e.strerror or e}") from None
        return cls(reader, writer)

    async def request(self, message: Mapping[str, Any]) -> dict[str, Any]:
        """Send one request and wait for its reply (requests are serialised)."""
        async with self._lock:
            self._writer.write(encode_frame(message))
            await self._writer.drain()
            while not self._frames:
                data = await self._reader.read(_READ_BYTES)
                if not data:
                    raise EvbError("the EVB server closed the control connection")
                self._frames.extend(self._decoder.feed(data))
            return self._frames.pop(0)

    async def evaluate(self, script: str) -> EvalResult:
        """Evaluate a script in the server."""
        reply = await self.request({"script": script})
        output = str(reply.get("output") or "")
        if reply.get("ok"):
            return EvalResult(ok=True, text=str(reply.get("result", "")), output=output)
        return EvalResult(ok=False, text=str(reply.get("error", "")), output=output)

    async def status(self) -> dict[str, Any]:
        """The server's status figures."""
        reply = await self.request({"status": True})
        result = reply.get("result")
        return result if isinstance(result, dict) else {}

    async def close(self) -> None:
        self._writer.close()
        with contextlib.suppress(Exception):
            await self._writer.wait_closed()
