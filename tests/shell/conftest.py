"""Fixtures of the shell tests: a real Tcl interpreter over a real Orderer."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import pytest
from shell_fakes import FakeService
from shell_procs import Server, control_server

from shell.tcl import TclShell


class Env:
    def __init__(self) -> None:
        self.svc = FakeService()
        self.out = io.StringIO()
        self.err = io.StringIO()
        self.shell = TclShell(self.svc, stdout=self.out, stderr=self.err)
        self.svc.add_listener(self.shell.notify)

    def ok(self, script: str) -> str:
        r = self.shell.evaluate(script)
        assert r.ok, f"{script!r} failed: {r.text}"
        return r.text

    def error(self, script: str) -> str:
        """The message `catch` sees when ``script`` fails."""
        self.shell.interp.setvar("::_t_script", script)
        code = self.ok("catch $::_t_script ::_t_msg")
        assert code == "1", f"{script!r} did not fail"
        return str(self.shell.interp.getvar("::_t_msg"))


@pytest.fixture
def env() -> Iterator[Env]:
    yield Env()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    """A running evb-server --control (separate process)."""
    with control_server(tmp_path) as srv:
        yield srv
