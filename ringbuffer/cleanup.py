"""Owner cleanup: the creating process unlinks its buffers at exit, also on SIGTERM.

A forked child never unlinks its parent's buffers.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import threading
from typing import Any

from ringbuffer.shm import sem_unlink_all, unlink_segment

__all__ = ["is_owned", "mark_owned", "remove_buffer"]

_OWNED: dict[str, int] = {}
_cleanup_installed = False


def _cleanup_owned() -> None:
    for name, pid in list(_OWNED.items()):
        if pid == os.getpid():
            remove_buffer(name)
        _OWNED.pop(name, None)


def _on_sigterm(signum: int, frame: Any) -> None:
    _cleanup_owned()
    raise SystemExit(128 + signum)


def _install_cleanup() -> None:
    global _cleanup_installed
    if _cleanup_installed:
        return
    _cleanup_installed = True
    atexit.register(_cleanup_owned)
    if threading.current_thread() is threading.main_thread():
        with contextlib.suppress(ValueError, OSError):
            if signal.getsignal(signal.SIGTERM) in (signal.SIG_DFL, None):
                signal.signal(signal.SIGTERM, _on_sigterm)


def remove_buffer(name: str) -> bool:
    """Unlink the segment and semaphores of buffer ``name`` (mappings stay valid until closed)."""
    existed = unlink_segment(name)
    sem_unlink_all(name)
    _OWNED.pop(name, None)
    return existed


def mark_owned(name: str) -> None:
    """Record that this process created buffer ``name``: it unlinks it at exit."""
    _OWNED[name] = os.getpid()
    _install_cleanup()


def is_owned(name: str) -> bool:
    """True if this process created buffer ``name`` (and has not removed it)."""
    return _OWNED.get(name) == os.getpid()


def _after_fork_in_child() -> None:
    _OWNED.clear()  # a forked child never unlinks its parent's buffers


os.register_at_fork(after_in_child=_after_fork_in_child)
