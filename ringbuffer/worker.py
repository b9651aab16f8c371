"""What a worker function receives (mimoCoRB2 ``BufferIO``) and the worker templates.

A mimoCoRB2 worker function runs unchanged apart from its imports::

    from ringbuffer.worker import BufferIO, Exporter, Filter, Importer, Observer, Processor

Differences that make the framework safer: ``shutdown_sinks()`` called by one process of a
multi-process stage does not flush the sinks while its siblings still write (the runner flushes
after all processes of the stage finished); a Filter only claims a slot in the sinks it accepts.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Generator, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ringbuffer.errors import SetupError
from ringbuffer.ring import Observer as RingObserver
from ringbuffer.ring import Reader, RingBuffer, Writer

__all__ = [
    "BufferIO",
    "Exporter",
    "Filter",
    "Importer",
    "IsAlive",
    "Observer",
    "Processor",
]


class BufferIO:
    """Sources, sinks, observed buffers and configuration of one worker process.

    Attributes:
        name: worker name from the setup.
        read: one :class:`~ringbuffer.reader.Reader` per source (its group is the worker's name).
        write: one :class:`~ringbuffer.writer.Writer` per sink.
        observe: one :class:`~ringbuffer.observer.Observer` per observed buffer.
        config: the worker's configuration mapping (``io['key']``, ``io.get('key', default)``).
        run_directory: directory of this run (also ``run_dir``).
        setup_dir: directory of the setup file.
        process_index: 0..number_of_processes-1.
    """

    def __init__(
        self,
        name: str,
        *,
        sources: Sequence[RingBuffer] = (),
        sinks: Sequence[RingBuffer] = (),
        observes: Sequence[RingBuffer] = (),
        config: Mapping[str, Any] | None = None,
        run_directory: str | Path = ".",
        setup_dir: str | Path = ".",
        process_index: int = 0,
        managed: bool = False,
        group: str | None = None,
    ) -> None:
        self.name = name
        self.config = dict(config or {})
        self.run_directory = Path(run_directory)
        self.run_dir = self.run_directory
        self.setup_dir = Path(setup_dir)
        self.process_index = process_index
        self.logger = logging.getLogger(f"ringbuffer.worker.{name}")
        self._managed = managed
        self.read: list[Reader] = [b.reader(group or name) for b in sources]
        self.write: list[Writer] = [b.writer() for b in sinks]
        self.observe: list[RingObserver] = [b.observer() for b in observes]
        self.data_in_examples = [r.data_example for r in self.read]
        self.metadata_in_examples = [r.metadata_example for r in self.read]
        self.buffer_names_in = [r.name for r in self.read]
        self.data_out_examples = [w.data_example for w in self.write]
        self.metadata_out_examples = [w.metadata_example for w in self.write]
        self.buffer_names_out = [w.name for w in self.write]
        self.data_observe_examples = [o.data_example for o in self.observe]
        self.metadata_observe_examples = [o.metadata_example for o in self.observe]
        self.buffer_names_observe = [o.name for o in self.observe]

    def __getitem__(self, key: str) -> Any:
        if key not in self.config:
            raise KeyError(f"key {key!r} not found in the configuration of worker {self.name!r}")
        return self.config[key]

    def get(self, key: str, default: Any = None) -> Any:
        return self.config.get(key, default)

    def __contains__(self, key: object) -> bool:
        return key in self.config

    def shutdown_sinks(self) -> None:
        """Signal end of data to the sinks.

        Under ``evb-workers`` this is deferred: the runner flushes a stage's sinks once *all*
        of its processes have finished (drain-then-flush), so calling it here is harmless.
        Outside the runner the sinks are shut down at once.
        """
        if self._managed:
            self.logger.debug("shutdown_sinks: deferred to the runner")
            return
        for w in self.write:
            w.ring.shutdown()

    def close(self) -> None:
        for c in (*self.read, *self.write, *self.observe):
            c.close()

    def __str__(self) -> str:
        return (
            f"BufferIO({self.name}: sources={self.buffer_names_in}, sinks={self.buffer_names_out},"
            f" observes={self.buffer_names_observe}, config={self.config})"
        )


class _Base:
    def __init__(self, io: BufferIO) -> None:
        self.io = io
        self.name = io.name
        self.read = io.read
        self.write = io.write
        self.observe = io.observe
        self.logger = io.logger
        self.config = io.config
        self.run_dir = io.run_directory
        self.run_directory = io.run_directory

    def _need(self, what: str, got: int, ok: Callable[[int], bool], expected: str) -> None:
        if not ok(got):
            raise SetupError(
                f"worker {self.name!r}: {type(self).__name__} needs {expected} {what}, got {got}"
            )

    def _check_same_layout(self) -> None:
        src = self.io.data_in_examples[0]
        for name, out in zip(self.io.buffer_names_out, self.io.data_out_examples, strict=True):
            if out.dtype != src.dtype or out.shape != src.shape:
                raise SetupError(
                    f"worker {self.name!r}: sink {name!r} must have the source's dtype and length"
                    f" ({src.dtype}, {src.shape}), has ({out.dtype}, {out.shape})"
                )


class Importer(_Base):
    """Put data from a generator into the single sink; metadata is filled in.

    ``ufunc`` is a generator function (or an iterable); it yields one slot's data at a time and
    may end with ``None``. Stops early when the sink is shut down (Ctrl-C).
    """

    def __init__(self, io: BufferIO) -> None:
        super().__init__(io)
        self._need("sources", len(self.read), lambda n: n == 0, "0")
        self._need("sinks", len(self.write), lambda n: n == 1, "1")
        self.data_example = io.data_out_examples[0]

    def __call__(self, ufunc: Callable[[], Any] | Any) -> None:
        gen = ufunc() if callable(ufunc) else iter(ufunc)
        writer = self.write[0]
        ring = writer.ring
        t_ready = time.time()
        for data in gen:
            if data is None:
                break
            if ring.is_shutdown:
                self.logger.info("sink shut down, importer stops")
                break
            t_data = time.time()
            with writer as (meta, slot):
                slot[...] = data
                t_slot = time.time()
                span = t_slot - t_ready
                meta["timestamp"] = t_data
                meta["deadtime"] = (t_slot - t_data) / span if span > 0 else 0.0
            t_ready = time.time()
        close = getattr(gen, "close", None)
        if close is not None:
            close()


class Exporter(_Base):
    """Iterate ``for data, metadata in Exporter(io)`` over the source until the end of data.

    If the worker has sinks (same dtype and length), every slot is copied to them first.
    """

    def __init__(self, io: BufferIO) -> None:
        super().__init__(io)
        self._need("sources", len(self.read), lambda n: n == 1, "1")
        self._need("observes", len(self.observe), lambda n: n == 0, "0")
        self.data_example = io.data_in_examples[0]
        self.metadata_example = io.metadata_in_examples[0]
        if self.write:
            self._check_same_layout()

    def __iter__(self) -> Iterator[tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]]:
        reader = self.read[0]
        while True:
            with reader as (metadata, data):
                if data is None:
                    self.logger.info("exporter finished")
                    return
                for w in self.write:
                    with w as (m_out, d_out):
                        d_out[...] = data
                        m_out[...] = metadata
                yield data, metadata


class Filter(_Base):
    """Copy source slots to the sinks ``ufunc(data)`` accepts.

    ``ufunc`` returns a bool (all sinks) or a list of bools (one per sink). A sink slot is only
    claimed when its copy is wanted: rejected sinks never see a slot.
    """

    def __init__(self, io: BufferIO) -> None:
        super().__init__(io)
        self._need("sources", len(self.read), lambda n: n == 1, "1")
        self._need("sinks", len(self.write), lambda n: n >= 1, ">= 1")
        self._need("observes", len(self.observe), lambda n: n == 0, "0")
        self.data_example = io.data_in_examples[0]
        self._check_same_layout()

    def __call__(self, ufunc: Callable[[np.ndarray[Any, Any]], Any]) -> None:
        reader = self.read[0]
        nsinks = len(self.write)
        while True:
            with reader as (metadata, data):
                if data is None:
                    return
                result = ufunc(data)
                if result is None or result is False:
                    continue
                if result is True or isinstance(result, np.bool_):
                    targets = [bool(result)] * nsinks
                else:
                    targets = [bool(x) for x in result]
                    if len(targets) != nsinks:
                        raise ValueError(
                            f"filter {self.name!r}: ufunc returned {len(targets)} flags "
                            f"for {nsinks} sinks"
                        )
                for w, want in zip(self.write, targets, strict=True):
                    if want:
                        with w as (m_out, d_out):
                            d_out[...] = data
                            m_out[...] = metadata


class Processor(_Base):
    """Write ``ufunc(data)`` results to the sinks, keeping the source's metadata.

    ``ufunc`` returns None (discard) or a list with one entry per sink (None: nothing for that
    sink); each entry is assigned to the sink slot's data.
    """

    def __init__(self, io: BufferIO) -> None:
        super().__init__(io)
        self._need("sources", len(self.read), lambda n: n == 1, "1")
        self._need("sinks", len(self.write), lambda n: n >= 1, ">= 1")
        self._need("observes", len(self.observe), lambda n: n == 0, "0")
        self.data_example = io.data_in_examples[0]

    def __call__(self, ufunc: Callable[[np.ndarray[Any, Any]], Any]) -> None:
        reader = self.read[0]
        nsinks = len(self.write)
        while True:
            with reader as (metadata, data):
                if data is None:
                    return
                results = ufunc(data)
                if results is None:
                    continue
                if not isinstance(results, list | tuple) or len(results) != nsinks:
                    raise ValueError(
                        f"processor {self.name!r}: ufunc must return None or a list of "
                        f"{nsinks} results, got {type(results).__name__}"
                    )
                for w, res in zip(self.write, results, strict=True):
                    if res is None:
                        continue
                    with w as (m_out, d_out):
                        _assign(d_out, res)
                        m_out[...] = metadata


def _assign(dst: np.ndarray[Any, Any], value: Any) -> None:
    if isinstance(value, np.ndarray) and value.dtype.names and dst.dtype.names:
        if value.shape == dst.shape and value.dtype == dst.dtype:
            dst[...] = value
            return
        flat = value.reshape(-1)
        n = min(len(flat), len(dst))
        for name in dst.dtype.names:
            if name in value.dtype.names:
                dst[name][:n] = flat[name][:n]
        return
    dst[...] = value


class Observer(_Base):
    """``for data, metadata in Observer(io)():`` copies of the newest slots until shutdown;
    yields ``(None, None)`` once at the end (as mimoCoRB2)."""

    def __init__(self, io: BufferIO) -> None:
        super().__init__(io)
        self._need("sources", len(self.read), lambda n: n == 0, "0")
        self._need("sinks", len(self.write), lambda n: n == 0, "0")
        self._need("observes", len(self.observe), lambda n: n == 1, "1")
        self.data_example = io.data_observe_examples[0]

    def __call__(self, timeout: float | None = None) -> Generator[tuple[Any, Any], None, None]:
        obs = self.observe[0]
        while True:
            got = obs.observe(timeout)
            if got is None:
                break
            meta, data = got
            yield data, meta
        self.logger.info("observer finished")
        yield None, None


class IsAlive(_Base):
    """``while IsAlive(io)(): ...`` until the observed buffer is shut down."""

    def __init__(self, io: BufferIO) -> None:
        super().__init__(io)
        self._need("observes", len(self.observe), lambda n: n == 1, "1")

    def __call__(self) -> bool:
        return not self.observe[0].is_shutdown
