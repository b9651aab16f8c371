"""Fixtures of the server tests: evb-server child processes (shared fixtures: tests/conftest.py)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest

T = TypeVar("T")

VENV_BIN = Path(sys.executable).parent


class ServerProcess:
    """An ``evb-server`` child process (always killed at teardown)."""

    def __init__(self, args: list[str], tmp_path: Path) -> None:
        self.stderr_path = tmp_path / f"server-{os.getpid()}-{id(self)}.log"
        self._stderr = open(self.stderr_path, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [str(VENV_BIN / "evb-server"), *args],
            stdout=subprocess.PIPE,
            stderr=self._stderr,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().decode()
        if not line.startswith("evb listening on "):
            self.stop()
            raise AssertionError(f"server did not start: {line!r}\n{self.log()}")
        host, port = line.split()[-1].rsplit(":", 1)
        self.host = host
        self.port = int(port)

    def log(self) -> str:
        self._stderr.flush()
        return self.stderr_path.read_text(errors="replace")

    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def wait(self, timeout: float = 60) -> int:
        return self.proc.wait(timeout)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self._stderr.close()

    def rss_bytes(self) -> int:
        """Resident memory of the server process."""
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise AssertionError("no VmRSS")


@pytest.fixture
def server_process(tmp_path: Path) -> Iterator[Callable[..., ServerProcess]]:
    """``server_process(*args)`` starts ``evb-server`` with ``args``; all are killed at teardown."""
    started: list[ServerProcess] = []

    def start(*args: str) -> ServerProcess:
        sp = ServerProcess(list(args), tmp_path)
        started.append(sp)
        return sp

    yield start
    for sp in started:
        sp.stop()
