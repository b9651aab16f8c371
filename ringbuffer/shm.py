"""Operating-system side of the ring buffers: /dev/shm segments, named semaphores, liveness.

Segments are plain files in ``/dev/shm`` (``evbring.<name>``) mapped with :mod:`mmap`; we do not
use :class:`multiprocessing.shared_memory.SharedMemory`, so the resource tracker never learns
about them and an attaching process can never unlink a buffer at exit (CPython gh-82300).
Named POSIX semaphores (``/dev/shm/sem.evbr.<name>.<tag>``) come from
:class:`_multiprocessing.SemLock`: uncontended acquire/release stay in user space (~0.1 us).
"""

from __future__ import annotations

import _multiprocessing
import contextlib
import fcntl
import mmap
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ringbuffer.errors import BufferExistsError, BufferNotFoundError

__all__ = [
    "SEGMENT_PREFIX",
    "SHM_DIR",
    "SemLock",
    "create_segment",
    "flocked",
    "follow_pid",
    "list_segment_names",
    "open_segment",
    "pid_alive",
    "proc_start_time",
    "segment_path",
    "sem_create",
    "sem_name",
    "sem_open",
    "sem_unlink_all",
    "unlink_segment",
]

SHM_DIR = Path("/dev/shm")
SEGMENT_PREFIX = "evbring."
SEM_PREFIX = "evbr."
SEM_VALUE_MAX = 2**31 - 1
_SEMAPHORE = 1  # _multiprocessing kind: plain counting semaphore

SemLock = _multiprocessing.SemLock


def segment_path(name: str) -> Path:
    """The /dev/shm file of buffer ``name``."""
    return SHM_DIR / f"{SEGMENT_PREFIX}{name}"


def create_segment(name: str, size: int) -> tuple[int, mmap.mmap]:
    """Create and map a new zero-filled segment; fails if it exists."""
    path = segment_path(name)
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o600)
    except FileExistsError as exc:
        raise BufferExistsError(
            f"buffer {name!r} already exists ({path}); remove a leftover with 'evb-ring rm {name}'"
        ) from exc
    try:
        os.ftruncate(fd, size)
        mm = mmap.mmap(fd, size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
    except BaseException:
        os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(path)
        raise
    return fd, mm


def open_segment(name: str) -> tuple[int, mmap.mmap]:
    """Map an existing segment read-write."""
    path = segment_path(name)
    try:
        fd = os.open(path, os.O_RDWR)
    except FileNotFoundError as exc:
        raise BufferNotFoundError(f"no buffer named {name!r} ({path} does not exist)") from exc
    try:
        size = os.fstat(fd).st_size
        if size == 0:
            raise BufferNotFoundError(f"buffer {name!r} is still being created (size 0)")
        mm = mmap.mmap(fd, size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
    except BaseException:
        os.close(fd)
        raise
    return fd, mm


def unlink_segment(name: str) -> bool:
    """Remove the segment file; True if it existed."""
    try:
        os.unlink(segment_path(name))
    except FileNotFoundError:
        return False
    return True


def list_segment_names() -> list[str]:
    """Names of all ring-buffer segments on this machine."""
    try:
        entries = os.listdir(SHM_DIR)
    except FileNotFoundError:
        return []
    return sorted(e[len(SEGMENT_PREFIX) :] for e in entries if e.startswith(SEGMENT_PREFIX))


@contextlib.contextmanager
def flocked(name: str) -> Iterator[None]:
    """Exclusive ``flock`` on a fresh descriptor of the segment (released by the kernel on death).

    Used only on the slow recovery paths; a fresh ``open`` gives a new open file description so a
    forked parent and child exclude each other.
    """
    fd = os.open(segment_path(name), os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def sem_name(name: str, tag: str) -> str:
    """POSIX name of semaphore ``tag`` of buffer ``name``."""
    return f"/{SEM_PREFIX}{name}.{tag}"


def sem_create(name: str, tag: str, value: int, maxvalue: int = SEM_VALUE_MAX) -> Any:
    """Create a named semaphore (replacing a stale one of the same name)."""
    full = sem_name(name, tag)
    try:
        return SemLock(_SEMAPHORE, value, maxvalue, full, False)
    except FileExistsError:
        with contextlib.suppress(FileNotFoundError):
            _multiprocessing.sem_unlink(full)
        return SemLock(_SEMAPHORE, value, maxvalue, full, False)


def sem_open(name: str, tag: str, maxvalue: int = SEM_VALUE_MAX) -> Any:
    """Open an existing named semaphore."""
    return SemLock._rebuild(0, _SEMAPHORE, maxvalue, sem_name(name, tag))


def sem_unlink_all(name: str) -> int:
    """Unlink every semaphore of buffer ``name``; returns how many were removed."""
    prefix = f"sem.{SEM_PREFIX}{name}."
    removed = 0
    try:
        entries = os.listdir(SHM_DIR)
    except FileNotFoundError:
        return 0
    for entry in entries:
        if entry.startswith(prefix):
            with contextlib.suppress(FileNotFoundError):
                _multiprocessing.sem_unlink("/" + entry[len("sem.") :])
                removed += 1
    return removed


def proc_start_time(pid: int) -> int:
    """Start time of ``pid`` in clock ticks since boot (0 if unknown)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return 0
    fields = stat[stat.rfind(b")") + 2 :].split()
    try:
        return int(fields[19])
    except (IndexError, ValueError):
        return 0


def follow_pid(namespace: dict[str, Any]) -> int:
    """This process's pid; stored again as ``namespace["_PID"]`` in every forked child.

    For a module global that hot paths compare with, ``_PID = follow_pid(globals())``: a global
    of the module itself loads faster than an attribute of another module.
    """

    def refresh() -> None:
        namespace["_PID"] = os.getpid()

    os.register_at_fork(after_in_child=refresh)
    return os.getpid()


def pid_alive(pid: int, start_time: int = 0) -> bool:
    """True if ``pid`` runs (not a zombie) and, if given, started at ``start_time``."""
    if pid <= 0:
        return False
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except FileNotFoundError:
        return False
    except OSError:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    fields = stat[stat.rfind(b")") + 2 :].split()
    if not fields or fields[0] in (b"Z", b"X", b"x"):
        return False
    if start_time:
        try:
            return int(fields[19]) == start_time
        except (IndexError, ValueError):
            return True
    return True
