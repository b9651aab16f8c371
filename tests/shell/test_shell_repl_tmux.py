"""The prompt driven as a user would: a real terminal (tmux), typing, Tab, reading the screen."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from shell_procs import Server, tool

from evb.batch import Fragment as F
from sources.client import SourceClient

TMUX = shutil.which("tmux")  # required: .ci/run installs it


class Terminal:
    """One tmux server (own socket) with one 120x32 pane running a command."""

    def __init__(self, command: list[str], env: dict[str, str]) -> None:
        assert TMUX is not None, "these tests need tmux"
        self.base = [TMUX, "-L", f"evbtest-{uuid.uuid4().hex[:10]}"]
        exports = " ".join(f"{k}={shlex.quote(v)}" for k, v in env.items())
        line = f"env {exports} {shlex.join(command)}; echo EXITED $?; sleep 60"
        subprocess.run(
            [*self.base, "-f", "/dev/null", "new-session", "-d", "-s", "t", "-x", "120",
             "-y", "32", line],
            check=True,
        )

    def screen(self) -> str:
        return subprocess.run(
            [*self.base, "capture-pane", "-p", "-t", "t"],
            capture_output=True, text=True, check=True,
        ).stdout

    def keys(self, *keys: str) -> None:
        subprocess.run([*self.base, "send-keys", "-t", "t", *keys], check=True)

    def type(self, text: str) -> None:
        subprocess.run([*self.base, "send-keys", "-t", "t", "-l", text], check=True)

    def wait_for(self, pattern: str, timeout_s: float = 30) -> re.Match[str]:
        """Read the screen until ``pattern`` shows (bounded)."""
        deadline = time.monotonic() + timeout_s
        while True:
            screen = self.screen()
            m = re.search(pattern, screen, re.S)
            if m:
                return m
            if time.monotonic() > deadline:
                raise AssertionError(f"{pattern!r} never showed; screen:\n{screen}")
            time.sleep(0.1)

    def close(self) -> None:
        subprocess.run([*self.base, "kill-server"], capture_output=True)


@pytest.fixture
def terminals() -> Iterator[list[Terminal]]:
    started: list[Terminal] = []
    yield started
    for t in started:
        t.close()


def open_terminal(terminals: list[Terminal], tmp_path: Path, *args: str) -> Terminal:
    env = {"EVB_SHELL_HISTORY": str(tmp_path / "history"), "TERM": "xterm-256color"}
    t = Terminal([*tool("evb-shell"), *args], env)
    terminals.append(t)
    return t


def test_in_process_prompt_as_a_user(tmp_path, terminals):
    t = open_terminal(terminals, tmp_path, "--port", "0")
    m = t.wait_for(r"evb listening on 127\.0\.0\.1:(\d+)")
    port = int(m.group(1))
    t.wait_for(r"(?m)^evb%")
    t.wait_for(r"XON \| late 0 \| dups 0")  # the toolbar

    with SourceClient.connect("127.0.0.1", port, "tmux source", [1, 2]) as src:
        src.send([F(timestamp=ts, source_id=1, payload=b"abcd") for ts in (10, 20, 30)])
        t.type("EVB::inp")
        t.keys("Tab")
        t.wait_for(r"evb% EVB::inputStats")
        t.keys("Enter")
        t.wait_for(re.escape("10 30 3 {{1 3 10 12 0 12} {2 0 0 0 0 0}} 0"))
        src.send([F(timestamp=ts, source_id=1, payload=b"ef") for ts in (40, 50)])
        t.type("EVB::inputStats")
        t.keys("Enter")
        t.wait_for(re.escape("10 50 5 {{1 5 10 16 0 16} {2 0 0 0 0 0}} 0"))
        t.wait_for(r"queued 5 ")  # the toolbar moves too

        t.type("EVB::config set window 2")
        t.keys("Enter")
        t.type("EVB::config get window")
        t.keys("Enter")
        t.wait_for(r"EVB::config get window\s*\n2\s*\n")

        # A multi-line proc: Enter on an incomplete command continues it.
        t.type("proc onLate {sid ts newest payload} {")
        t.keys("Enter")
        t.wait_for(r"> $|>\s*\n", 10)
        t.type('binary scan $payload H* hex; puts "LATE $sid $ts $newest $hex"')
        t.keys("Enter")
        t.type("}")
        t.keys("Enter")
        t.type("EVB::onDataLate onLate")
        t.keys("Enter")
        t.type("EVB::flushqueues")
        t.keys("Enter")
        t.wait_for(r"evb% EVB::flushqueues\s*\nevb%")
        src.send([F(timestamp=5, source_id=2, payload=b"\xbe\xef")])
        t.wait_for(r"LATE 2 5 50 beef")
        t.wait_for(r"late 1 \|")

        t.type("EVB::config set window 0")
        t.keys("Enter")
        t.wait_for(r"error: Build time window must be > 0 was 0")
        t.type("help EVB::onfl")
        t.keys("Tab")
        t.wait_for(r"evb% help EVB::onflow")
        t.keys("Enter")
        t.wait_for(r"Usage: EVB::onflow add\|remove xonScript xoffScript \| list")

    t.keys("C-d")
    t.wait_for(r"EXITED 0")
    history = (tmp_path / "history").read_text()
    assert "+EVB::config set window 2" in history
    assert "+proc onLate {sid ts newest payload} {" in history


def test_attached_prompt_as_a_user(tmp_path, terminals, server: Server):
    t = open_terminal(terminals, tmp_path, "--attach", str(server.control))
    t.wait_for(r"(?m)^evb%")
    t.wait_for(r"\[attached ")
    with SourceClient.connect(server.host, server.port, "remote source", [7, 8]) as src:
        src.send([F(timestamp=ts, source_id=7, payload=b"xyz") for ts in (100, 200)])
        # Completion runs asynchronously: like a user, look before typing on.
        t.type("EVB::dup")
        t.keys("Tab")
        t.wait_for(r"evb% EVB::dupstat")
        t.type(" ")
        t.keys("Tab")
        t.wait_for(r"get\s+\n?.*clear")  # subcommand menu
        t.keys("C-u")
        t.type("EVB::inputStats")
        t.keys("Enter")
        t.wait_for(re.escape("100 200 2 {{7 2 100 6 0 6} {8 0 0 0 0 0}} 0"))
        t.wait_for(r"queued 2 ")

        t.type("EVB::config set window 2; EVB::config get window")
        t.keys("Enter")
        t.wait_for(r"window\s*\n2\s*\n")
        t.type("proc onLate {sid ts newest payload} { set ::late [list $sid $ts $newest] }")
        t.keys("Enter")
        t.type("EVB::onDataLate onLate; EVB::flushqueues; puts flushed")
        t.keys("Enter")
        t.wait_for(r"\nflushed")
        src.send([F(timestamp=50, source_id=8, payload=b"q")])
        t.wait_for(r"late 1 \|")  # the server's toolbar figures, fetched over the socket
        t.type("set ::late")
        t.keys("Enter")
        t.wait_for(r"set ::late\s*\n8 50 200")
        t.type("exit")
        t.keys("Enter")
        t.wait_for(r"error: exit is not available here")

    t.keys("C-d")
    t.wait_for(r"EXITED 0")
    assert server.proc.poll() is None  # detaching leaves the server running
