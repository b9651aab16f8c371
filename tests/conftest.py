"""Fixtures shared by every test package."""

from __future__ import annotations

import itertools
import os
import subprocess
from collections.abc import Callable, Coroutine, Iterator
from typing import Any

import pytest
from testsupport import remove_rings, run_checked

_counter = itertools.count()


@pytest.fixture
def ring_name() -> Iterator[str]:
    """A unique ring-name prefix; every segment/semaphore starting with it is removed after."""
    prefix = f"t{os.getpid()}x{next(_counter)}"
    yield prefix
    remove_rings(prefix)


@pytest.fixture
def procs() -> Iterator[list[subprocess.Popen[bytes]]]:
    """Register child processes here; every one still running is killed at teardown."""
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for p in started:
        if p.poll() is None:
            p.kill()
        p.wait(10)


@pytest.fixture
def arun() -> Callable[[Coroutine[Any, Any, Any]], Any]:
    """``arun(coro)``: run an async test body, checking that no task is left running."""
    return run_checked
