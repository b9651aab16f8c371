"""Run a worker setup: create the buffers, start the worker processes, watch, shut down.

End of data is drain-then-flush: the sinks of a stage are shut down only after *all* processes
of *every* worker writing into them have exited, so nothing written is lost. A stage that
exits (normally or not) also leaves its reader groups, so upstream writers never wait for it.
Ctrl-C (or a failed worker) shuts down the buffers fed by importers; everything downstream then
drains in order. A second Ctrl-C, or ``grace_s`` seconds after a stop without progress,
terminates what is left. The runner never reads stdin.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import logging
import multiprocessing as mp
import os
import shutil
import signal
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from ringbuffer.ring import RingBuffer, remove_buffer
from ringbuffer.setup import Setup, WorkerSpec, load_function

__all__ = ["Runner", "run_setup"]

log = logging.getLogger(__name__)
LOG_FORMAT = "%(asctime)s %(processName)s %(levelname)s %(name)s: %(message)s"


@dataclass(frozen=True, slots=True, kw_only=True)
class _ChildArgs:
    worker: WorkerSpec
    segments: dict[str, str]
    run_dir: str
    setup_dir: str
    log_path: str
    index: int


def _child_main(args: _ChildArgs) -> None:
    """Entry point of a worker process (fork or spawn)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    fd = os.open(args.log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    sys.stdout = open(1, "w", buffering=1, closefd=False)  # noqa: SIM115
    sys.stderr = open(2, "w", buffering=1, closefd=False)  # noqa: SIM115
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT, stream=sys.stderr, force=True)
    w = args.worker
    from ringbuffer.worker import BufferIO

    code = 0
    io = None
    try:
        rings = {b: RingBuffer.attach(seg) for b, seg in args.segments.items()}
        func = load_function(w)
        io = BufferIO(
            w.name,
            sources=[rings[b] for b in w.sources],
            sinks=[rings[b] for b in w.sinks],
            observes=[rings[b] for b in w.observes],
            config=w.config,
            run_directory=args.run_dir,
            setup_dir=args.setup_dir,
            process_index=args.index,
            managed=True,
        )
        func(io)
    except BaseException:
        tb = traceback.format_exc()
        logging.getLogger(f"ringbuffer.worker.{w.name}").error("worker failed:\n%s", tb)
        fail_dir = Path(args.run_dir) / "failures"
        fail_dir.mkdir(exist_ok=True)
        (fail_dir / f"{w.name}.{args.index}.txt").write_text(tb)
        code = 1
    finally:
        if io is not None:
            with contextlib.suppress(Exception):
                io.close()
        sys.stdout.flush()
        sys.stderr.flush()
    if code:
        os._exit(code)


class Runner:
    """Buffers and workers of one setup, in one run directory."""

    def __init__(
        self,
        setup: Setup,
        *,
        run_dir: str | Path | None = None,
        start_method: str = "fork",
        status_interval_s: float | None = None,
        grace_s: float = 10.0,
        out: TextIO | None = None,
    ) -> None:
        self.setup = setup
        if run_dir is None:
            stamp = _dt.datetime.now().strftime("%Y%m%d_%H%M%S_%f")
            run_dir = setup.setup_dir / "runs" / stamp
        self.run_dir = Path(run_dir).resolve()
        self.ctx: Any = mp.get_context(start_method)
        self.out = out or sys.stdout
        tty = bool(getattr(self.out, "isatty", lambda: False)())
        self.tty = tty
        self.status_interval_s = status_interval_s or (1.0 if tty else 5.0)
        self.grace_s = grace_s
        prefix = f"w{os.getpid()}"
        self.segments = {
            b: spec.ring_name if spec.external else f"{prefix}.{b}"
            for b, spec in setup.buffers.items()
        }
        self.external = {b for b, spec in setup.buffers.items() if spec.external}
        self.rings: dict[str, RingBuffer] = {}
        self.procs: dict[str, list[Any]] = {}
        self.failed: list[str] = []
        self._stop_requested = 0.0
        self._interrupts = 0
        self._handled_interrupts = 0

    # ---------------------------------------------------------------- helpers

    def _say(self, text: str) -> None:
        if self.tty:
            self.out.write("\r\x1b[K" + text + "\n")
        else:
            self.out.write(text + "\n")
        self.out.flush()

    def _start(self) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(OSError):
            shutil.copy(self.setup.path, self.run_dir / self.setup.path.name)
        self.log_path = self.run_dir / "workers.log"
        handler = logging.FileHandler(self.log_path)
        handler.setFormatter(logging.Formatter(LOG_FORMAT))
        logging.getLogger().addHandler(handler)
        logging.getLogger().setLevel(logging.INFO)
        self._handler = handler
        for bname, spec in self.setup.buffers.items():
            groups = [w.name for w in self.setup.workers.values() if bname in w.sources]
            if spec.external:
                self.rings[bname] = _attach_external(bname, spec, groups)
                continue
            assert spec.data_dtype is not None
            self.rings[bname] = RingBuffer.create(
                self.segments[bname],
                slot_count=spec.slot_count,
                data_length=spec.data_length,
                data_dtype=spec.data_dtype,
                groups=groups,
                replace=True,
            )
        for w in self.setup.workers.values():
            load_function(w)  # fail here, before any process starts
        for w in self.setup.workers.values():
            plist = []
            for i in range(w.number_of_processes):
                args = _ChildArgs(
                    worker=w,
                    segments=self.segments,
                    run_dir=str(self.run_dir),
                    setup_dir=str(self.setup.setup_dir),
                    log_path=str(self.log_path),
                    index=i,
                )
                p = self.ctx.Process(target=_child_main, args=(args,), name=f"{w.name}[{i}]")
                plist.append(p)
            self.procs[w.name] = plist
        for plist in self.procs.values():
            for p in plist:
                p.start()
        log.info(
            "run directory %s, %d buffers, %d workers",
            self.run_dir,
            len(self.rings),
            len(self.procs),
        )

    def _finished(self, wname: str) -> bool:
        return all(p.exitcode is not None for p in self.procs[wname])

    def request_stop(self, reason: str) -> None:
        """Shut down the buffers fed by importers; the rest drains in order."""
        if not self._stop_requested:
            self._stop_requested = time.monotonic()
            self._say(f"stopping ({reason}): draining buffers")
            log.info("stop requested: %s", reason)
        for w in self.setup.workers.values():
            if not w.sources:
                for b in w.sinks:
                    if b not in self.external:
                        self.rings[b].shutdown()
            elif any(b in self.external for b in w.sources):
                # an external ring ends when its owner says so: stop its readers instead
                for p in self.procs.get(w.name, []):
                    if p.exitcode is None:
                        with contextlib.suppress(Exception):
                            p.terminate()

    def _on_sigint(self, signum: int, frame: Any) -> None:
        # only count here: the main loop may hold a buffer lock right now
        self._interrupts += 1

    def _handle_interrupts(self) -> None:
        if self._interrupts > self._handled_interrupts:
            self._handled_interrupts = self._interrupts
            if self._interrupts == 1:
                self.request_stop("Ctrl-C")
            else:
                self._say("second Ctrl-C: terminating workers")
                self._terminate_all()

    def _terminate_all(self) -> None:
        for plist in self.procs.values():
            for p in plist:
                if p.exitcode is None:
                    with contextlib.suppress(Exception):
                        p.terminate()

    def _status(self, t0: float) -> str:
        parts = [f"{time.monotonic() - t0:6.1f}s"]
        for bname, ring in self.rings.items():
            st = ring.get_stats()
            flag = " END" if st["flush_event_received"] else ""
            parts.append(
                f"{bname}: {st['event_count']} ev {st['rate']:.0f}/s {st['fill_level']:.0%}{flag}"
            )
        ws = []
        for wname, plist in self.procs.items():
            alive = sum(1 for p in plist if p.exitcode is None)
            bad = sum(1 for p in plist if p.exitcode not in (None, 0))
            ws.append(f"{wname} {alive}/{len(plist)}" + (f" ({bad} failed)" if bad else ""))
        return " | ".join(parts) + " || " + ", ".join(ws)

    # ---------------------------------------------------------------- main loop

    def run(self, timeout_s: float | None = None) -> int:
        """Run until every worker exited; returns 0, or 1 if a worker failed."""
        old_int = None
        if sys.platform != "win32" and _is_main_thread():
            old_int = signal.signal(signal.SIGINT, self._on_sigint)
        t0 = time.monotonic()
        try:
            self._start()
            flushed: set[str] = set()
            left_groups: set[str] = set()
            next_status = t0 + self.status_interval_s
            while True:
                self._handle_interrupts()
                for wname, plist in self.procs.items():
                    for i, p in enumerate(plist):
                        if p.exitcode not in (None, 0) and f"{wname}[{i}]" not in self.failed:
                            self.failed.append(f"{wname}[{i}]")
                            self._report_failure(wname, i, p.exitcode)
                            self.request_stop(f"worker {wname}[{i}] failed")
                done = {w for w in self.procs if self._finished(w)}
                for wname in done - left_groups:
                    left_groups.add(wname)
                    for b in self.setup.workers[wname].sources:
                        self.rings[b].remove_group(wname)
                for bname, ring in self.rings.items():
                    if bname in flushed or bname in self.external:
                        continue
                    writers = [w.name for w in self.setup.workers.values() if bname in w.sinks]
                    if all(w in done for w in writers):
                        ring.shutdown()
                        flushed.add(bname)
                        log.info("buffer %s: all writers finished, end of data", bname)
                if len(done) == len(self.procs):
                    break
                now = time.monotonic()
                if timeout_s is not None and now - t0 > timeout_s and not self._stop_requested:
                    self.request_stop(f"timeout {timeout_s} s")
                if self._stop_requested and now - self._stop_requested > self.grace_s:
                    self._say(f"workers still running {self.grace_s} s after stop: terminating")
                    self._terminate_all()
                    self._stop_requested = now + 3600
                if now >= next_status:
                    self._say(self._status(t0))
                    next_status = now + self.status_interval_s
                time.sleep(0.05)
            for plist in self.procs.values():
                for p in plist:
                    p.join(1)
            self._say("finished: " + self._status(t0))
        finally:
            if old_int is not None:
                signal.signal(signal.SIGINT, old_int)
            self._terminate_all()
            for bname, ring in self.rings.items():
                if bname in self.external:
                    for w in self.setup.workers.values():
                        if bname in w.sources:
                            with contextlib.suppress(Exception):
                                ring.remove_group(w.name)
                else:
                    remove_buffer(ring.name)
            handler = getattr(self, "_handler", None)
            if handler is not None:
                logging.getLogger().removeHandler(handler)
                handler.close()
        return 1 if self.failed else 0

    def _report_failure(self, wname: str, index: int, code: int | None) -> None:
        tb_file = self.run_dir / "failures" / f"{wname}.{index}.txt"
        text = ""
        for _ in range(20):
            if tb_file.exists():
                text = tb_file.read_text()
                break
            time.sleep(0.05)
        msg = f"worker {wname}[{index}] failed (exit code {code})"
        self._say(msg + (":\n" + text.rstrip() if text else " (no traceback: killed?)"))
        log.error("%s\n%s", msg, text)


def _attach_external(bname: str, spec: Any, groups: list[str]) -> RingBuffer:
    """Attach to a ring created by another process and declare this setup's reader groups
    (they see the slots written from now on)."""
    from ringbuffer.errors import SetupError

    try:
        ring = RingBuffer.attach(spec.ring_name, timeout=2.0)
    except FileNotFoundError:
        raise SetupError(
            f"buffer {bname!r} is external but ring {spec.ring_name!r} does not exist "
            "(start its owner first, e.g. evb-server --ring NAME)"
        ) from None
    checks = (
        ("slot_count", spec.slot_count, ring.slot_count),
        ("data_length", spec.data_length, ring.data_length),
    )
    for key, want, have in checks:
        if want and want != have:
            raise SetupError(f"buffer {bname!r}: {key} {want} in the setup, the ring has {have}")
    if spec.data_dtype is not None and spec.data_dtype != ring.data_dtype:
        raise SetupError(
            f"buffer {bname!r}: data_dtype {spec.data_dtype} in the setup, "
            f"the ring has {ring.data_dtype}"
        )
    for g in groups:
        ring.add_group(g)
    log.info("buffer %s: attached to external ring %s", bname, spec.ring_name)
    return ring


def _is_main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


def run_setup(path: str | Path, **kwargs: Any) -> int:
    """Load ``path`` and run it (see :class:`Runner`)."""
    from ringbuffer.setup import load_setup

    timeout_s = kwargs.pop("timeout_s", None)
    return Runner(load_setup(path), **kwargs).run(timeout_s)
