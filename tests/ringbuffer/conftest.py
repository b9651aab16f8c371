from __future__ import annotations

import itertools
import os
from collections.abc import Iterator

import pytest

from ringbuffer import remove_buffer
from ringbuffer.shm import SHM_DIR, list_segment_names

_counter = itertools.count()


@pytest.fixture
def ring_name() -> Iterator[str]:
    """A unique buffer-name prefix; every segment/semaphore with it is removed afterwards."""
    prefix = f"t{os.getpid()}x{next(_counter)}"
    yield prefix
    for name in list_segment_names():
        if name.startswith(prefix):
            remove_buffer(name)
    for entry in os.listdir(SHM_DIR):
        if f"evbr.{prefix}" in entry:
            os.unlink(SHM_DIR / entry)
