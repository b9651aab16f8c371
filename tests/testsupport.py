"""Helpers shared by the test packages (importable everywhere: pytest's pythonpath has tests/)."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def run_checked(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` in a fresh loop; fail if it leaves any asyncio task running."""

    async def wrapper() -> T:
        result = await coro
        # Let callbacks scheduled by closing transports run, then look for leftovers.
        for _ in range(5):
            await asyncio.sleep(0)
        me = asyncio.current_task()
        left = [t for t in asyncio.all_tasks() if t is not me and not t.done()]
        for t in left:
            t.cancel()
        assert not left, f"asyncio tasks left running: {left}"
        return result

    return asyncio.run(wrapper())


async def until(cond: Callable[[], bool], timeout_s: float = 20, step_s: float = 0.01) -> None:
    """Wait (bounded) for ``cond()`` where no event exists to await (another process)."""
    async with asyncio.timeout(timeout_s):
        while not cond():
            await asyncio.sleep(step_s)


def remove_rings(prefix: str) -> None:
    """Remove every ring segment and semaphore whose name starts with ``prefix``."""
    from ringbuffer import remove_buffer
    from ringbuffer.shm import SHM_DIR, list_segment_names

    for name in list_segment_names():
        if name.startswith(prefix):
            remove_buffer(name)
    for entry in os.listdir(SHM_DIR):
        if f"evbr.{prefix}" in entry:
            os.unlink(SHM_DIR / entry)
