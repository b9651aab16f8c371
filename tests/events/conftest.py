"""Fixtures of the event tests: unique ring names (removed afterwards), child processes."""

from __future__ import annotations

import itertools
import os
import subprocess
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, settings

from ringbuffer import remove_buffer
from ringbuffer.shm import SHM_DIR, list_segment_names

settings.register_profile(
    "events",
    max_examples=80,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

_counter = itertools.count()


@pytest.fixture
def ring_name() -> Iterator[str]:
    """A unique ring name; every segment/semaphore starting with it is removed afterwards."""
    prefix = f"ev{os.getpid()}x{next(_counter)}"
    yield prefix
    for name in list_segment_names():
        if name.startswith(prefix):
            remove_buffer(name)
    for entry in os.listdir(SHM_DIR):
        if f"evbr.{prefix}" in entry:
            os.unlink(SHM_DIR / entry)


@pytest.fixture
def procs() -> Iterator[list[subprocess.Popen[bytes]]]:
    """Register child processes here; every one still running is killed at teardown."""
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for p in started:
        if p.poll() is None:
            p.kill()
        p.wait(10)
