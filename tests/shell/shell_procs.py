"""Process helpers of the shell tests: the CLI tools and an evb-server --control fixture."""

from __future__ import annotations

import os
import select
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

BIN = Path(sys.executable).parent


def tool(name: str) -> list[str]:
    exe = BIN / name
    if exe.exists():
        return [str(exe)]
    module = {"evb-server": "evb.cli", "evb-shell": "shell.cli"}[name]
    return [sys.executable, "-m", module]


def shell_env(tmp_path: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["EVB_SHELL_HISTORY"] = str(tmp_path / "history")
    return env


def run_shell(
    tmp_path: Path, *args: str, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*tool("evb-shell"), *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        env=shell_env(tmp_path),
        stdin=None if stdin is not None else subprocess.DEVNULL,
    )


class Server:
    def __init__(self, proc: subprocess.Popen[str], host: str, port: int, control: Path) -> None:
        self.proc, self.host, self.port, self.control = proc, host, port, control


@contextmanager
def control_server(tmp_path: Path) -> Iterator[Server]:
    """evb-server --control in its own process; always terminated."""
    control = tmp_path / "ctl.sock"
    proc = subprocess.Popen(
        [*tool("evb-server"), "--port", "0", "--control", str(control),
         "--log-level", "WARNING"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], 30)
        line = proc.stdout.readline() if ready else ""
        assert line.startswith("evb listening on "), f"server did not start: {line!r}"
        host, port = line.split()[-1].rsplit(":", 1)
        yield Server(proc, host, int(port), control)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()


