"""Built events into a shared-memory ringbuffer, and the consumer side (edge, see docs/events.md).

Producer: :class:`BuildingSink` implements the server's :class:`~evb.sinks.Sink` protocol. It
feeds the ordered stream to an :class:`~evb.builder.EventBuilder` and hands the completed
events to one or more *event writers* (:class:`RingEventWriter`, and
:class:`evb.recording.EventFileWriter` for ``--output``). :class:`RingEventWriter` packs events
into ring slots (:func:`evb.eventfmt.pack_slot`). A slot is committed when it is full, right
after a barrier event, or ``linger_s`` after its first event, so consumers see data promptly.
When the ring is full the writer waits (asyncio sleeps, the event loop stays free) and the
server's writer task does not report the batch written: in-flight bytes grow until XOFF, and
the sources block. Nothing is dropped.

Consumer: :class:`EventRingReader` iterates the slots of a ring as :class:`~evb.eventfmt.SlotEvents`
(zero-copy numpy views, valid until the next slot is taken).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from evb.batch import FragmentBatch
from evb.builder import BuildConfig, EventBatch, EventBuilder
from evb.errors import ConfigError, EvbError
from evb.eventfmt import (
    EVENT_ROW_DTYPE,
    SLOT_HEADER_BYTES,
    SlotEvents,
    pack_slot,
    read_slot,
)

__all__ = [
    "DEFAULT_LINGER_S",
    "DEFAULT_SLOTS",
    "DEFAULT_SLOT_BYTES",
    "BuildingSink",
    "EventRingReader",
    "EventTooLargeError",
    "EventWriter",
    "RingEventWriter",
    "RingOptions",
    "concat_events",
    "create_event_ring",
    "make_output_sink",
    "plan_slots",
    "slice_events",
]

log = logging.getLogger(__name__)

DEFAULT_SLOT_BYTES = 1 << 20
DEFAULT_SLOTS = 64
DEFAULT_LINGER_S = 0.02
#: Longest asyncio sleep while waiting for a free slot (the ring's own waiters poll at 20 ms).
_MAX_BACKOFF_S = 0.02


class EventTooLargeError(EvbError):
    """A built event does not fit in one ring slot (raise the slot size)."""


class EventWriter(Protocol):
    """Destination of built events (ring, file)."""

    async def write_events(self, events: EventBatch) -> None:
        """Take ``events`` (in order). May wait: that is back-pressure."""

    async def close(self) -> None:
        """Flush and release; idempotent."""


@dataclass(frozen=True, slots=True, kw_only=True)
class RingOptions:
    """Settings of the ring output.

    Attributes:
        name: ring buffer name (``/dev/shm`` segment).
        slot_bytes: bytes per slot (header, event table and fragments must fit).
        slots: number of slots.
        groups: reader groups declared when the ring is created; the EVB waits for each of
            them, so a consumer group declared here loses nothing even if it attaches late.
            Empty: consumers see data from the moment they attach.
        linger_s: a partly filled slot is committed this long after its first event.
    """

    name: str
    slot_bytes: int = DEFAULT_SLOT_BYTES
    slots: int = DEFAULT_SLOTS
    groups: tuple[str, ...] = ()
    linger_s: float = DEFAULT_LINGER_S

    @classmethod
    def from_mapping(cls, values: Any) -> RingOptions:
        """Options from a mapping (the YAML ``ring:`` entry) or ``(key, value)`` pairs.

        Keys: ``name``, ``slot_bytes``, ``slots``, ``groups`` (list or comma-separated),
        ``linger_s``.

        Raises:
            ConfigError: an unknown key or a bad value.
        """
        items = dict(values.items() if hasattr(values, "items") else values)
        known = {"name", "slot_bytes", "slots", "groups", "linger_s"}
        extra = sorted(set(items) - known)
        if extra:
            raise ConfigError(
                f"Unknown ring setting {extra[0]!r}: expected one of {', '.join(sorted(known))}"
            )
        if not items.get("name"):
            raise ConfigError("ring setting 'name' is missing")
        groups = items.get("groups", ())
        if isinstance(groups, str):
            groups = [g for g in (x.strip() for x in groups.split(",")) if g]
        try:
            return cls(
                name=str(items["name"]),
                slot_bytes=int(items.get("slot_bytes", DEFAULT_SLOT_BYTES)),
                slots=int(items.get("slots", DEFAULT_SLOTS)),
                groups=tuple(str(g) for g in groups),
                linger_s=float(items.get("linger_s", DEFAULT_LINGER_S)),
            )
        except (TypeError, ValueError) as exc:
            if isinstance(exc, ConfigError):
                raise
            raise ConfigError(f"bad ring setting: {exc}") from None

    def __post_init__(self) -> None:
        if self.slot_bytes < SLOT_HEADER_BYTES + 64:
            raise ConfigError(
                f"ring slot must hold at least {SLOT_HEADER_BYTES + 64} bytes, "
                f"was {self.slot_bytes}"
            )
        if self.slots < 2:
            raise ConfigError(f"ring needs at least 2 slots, was {self.slots}")
        if not self.linger_s >= 0:
            raise ConfigError(f"ring linger must be >= 0 seconds, was {self.linger_s}")
        from ringbuffer.errors import ConfigError as RingConfigError
        from ringbuffer.layout import validate_name

        try:
            validate_name(self.name, "ring name")
            for g in self.groups:
                validate_name(g, "ring reader group")
        except RingConfigError as exc:
            raise ConfigError(str(exc)) from None


def create_event_ring(options: RingOptions, *, replace: bool = False) -> Any:
    """Create (own) the ring of ``options``: ``slots`` slots of ``slot_bytes`` raw bytes.

    A leftover of the same name whose creator died is replaced; one whose creator is alive is
    refused (two EVBs must not share a ring).

    Returns:
        the :class:`ringbuffer.RingBuffer` (unlinked by this process at exit).

    Raises:
        ConfigError: the name is taken by a running process's ring.
    """
    from ringbuffer.errors import BufferExistsError, RingBufferError
    from ringbuffer.ring import RingBuffer
    from ringbuffer.shm import pid_alive

    def create(replace_it: bool) -> Any:
        return RingBuffer.create(
            options.name,
            slot_count=options.slots,
            data_length=options.slot_bytes,
            data_dtype=np.dtype("u1"),
            groups=options.groups,
            replace=replace_it,
        )

    try:
        return create(replace)
    except BufferExistsError:
        try:
            old = RingBuffer.attach(options.name, timeout=0.5)
            owner = old.creator_pid
            alive = pid_alive(owner)
        except (RingBufferError, OSError):
            owner, alive = 0, False
        if alive:
            raise ConfigError(
                f"ring {options.name!r} exists and belongs to running process {owner}: "
                "choose another --ring name"
            ) from None
        log.warning("ring %s: replacing a leftover of dead process %s", options.name, owner)
        return create(True)


def concat_events(parts: Sequence[EventBatch]) -> EventBatch:
    """Join event batches end to end (fragments shared, never copied)."""
    parts = [p for p in parts if len(p)]
    if not parts:
        return EventBatch.empty()
    if len(parts) == 1:
        return parts[0]
    frags = FragmentBatch.concat([p.fragments for p in parts])
    offsets = np.cumsum([0] + [len(p.fragments) for p in parts[:-1]])
    starts = np.concatenate([p.starts + int(o) for p, o in zip(parts, offsets, strict=True)])
    return EventBatch(
        frags,
        starts.astype(np.int64),
        np.concatenate([p.counts for p in parts]).astype(np.int64),
        np.concatenate([p.timestamps for p in parts]).astype(np.uint64),
    )


def slice_events(events: EventBatch, lo: int, hi: int) -> EventBatch:
    """Events ``lo:hi`` of ``events`` as their own batch (fragment rows re-based, no copy)."""
    if lo >= hi:
        return EventBatch.empty()
    f0 = int(events.starts[lo])
    f1 = int(events.starts[hi - 1] + events.counts[hi - 1])
    return EventBatch(
        events.fragments[f0:f1],
        events.starts[lo:hi] - f0,
        events.counts[lo:hi],
        events.timestamps[lo:hi],
    )


def plan_slots(events: EventBatch, slot_bytes: int) -> list[tuple[int, int]]:
    """Split ``events`` into runs that each fit a slot; a barrier event ends its run.

    Returns:
        ``(lo, hi)`` event ranges, in order, covering all events.

    Raises:
        EventTooLargeError: an event alone needs more than ``slot_bytes``.
    """
    n = len(events)
    if n == 0:
        return []
    frag_lens = events.fragments.payload_sizes.astype(np.int64) + 20
    per_event = np.add.reduceat(frag_lens, events.starts) + EVENT_ROW_DTYPE.itemsize
    room = slot_bytes - SLOT_HEADER_BYTES
    too_big = np.flatnonzero(per_event > room)
    if len(too_big):
        i = int(too_big[0])
        raise EventTooLargeError(
            f"built event at timestamp {int(events.timestamps[i])} "
            f"({int(events.counts[i])} fragments) needs {int(per_event[i]) + SLOT_HEADER_BYTES} "
            f"bytes, a ring slot holds {slot_bytes}: raise --ring-slot-bytes "
            "(or lower --build-max-fragments)"
        )
    cum = np.concatenate(([0], np.cumsum(per_event)))
    bar_after = np.flatnonzero(events.is_barrier) + 1  # a run must end at these positions
    runs: list[tuple[int, int]] = []
    lo = 0
    bi = 0
    nb = len(bar_after)
    while lo < n:
        hi = int(np.searchsorted(cum, cum[lo] + room, "right")) - 1
        hi = max(lo + 1, min(hi, n))
        while bi < nb and bar_after[bi] <= lo:
            bi += 1
        if bi < nb and bar_after[bi] < hi:
            hi = int(bar_after[bi])
        runs.append((lo, hi))
        lo = hi
    return runs


class RingEventWriter:
    """Packs built events into the slots of a ring (the EVB's ring output).

    Args:
        ring: a :class:`ringbuffer.RingBuffer` whose data is raw bytes (``u1``).
        built: True if the events are built (False: one fragment per event, ``nobuild``).
        linger_s: commit a partly filled slot this long after its first event.
        shutdown_on_close: shut the ring down on :meth:`close` (end of data for consumers).
    """

    def __init__(
        self,
        ring: Any,
        *,
        built: bool = True,
        linger_s: float = DEFAULT_LINGER_S,
        shutdown_on_close: bool = True,
    ) -> None:
        if ring.data_dtype.itemsize != 1:
            raise ConfigError(
                f"ring {ring.name!r} must hold raw bytes (u1), holds {ring.data_dtype}"
            )
        self.ring = ring
        self.built = built
        self.linger_s = linger_s
        self.slot_bytes = int(ring.data_length)
        self._shutdown_on_close = shutdown_on_close
        self._writer = ring.writer()
        self._pending: list[EventBatch] = []
        self._pending_since = 0.0
        self._lock = asyncio.Lock()
        self._linger_task: asyncio.Task[None] | None = None
        self._closed = False
        self.slots_written = 0
        self.events_written = 0
        self.fragments_written = 0
        self.bytes_written = 0
        self.full_waits = 0
        self.waiting_for_space = False
        self.wait_s = 0.0

    def status(self) -> dict[str, Any]:
        """Figures for the server status."""
        st = self.ring.get_stats()
        return {
            "ring": self.ring.name,
            "slots_written": self.slots_written,
            "events_written": self.events_written,
            "fragments_written": self.fragments_written,
            "ring_fill_level": st["fill_level"],
            "ring_full_waits": self.full_waits,
            "ring_waiting": self.waiting_for_space,
            "ring_wait_s": self.wait_s,
            "pending_events": sum(len(p) for p in self._pending),
        }

    async def write_events(self, events: EventBatch) -> None:
        if self._closed:
            raise ValueError(f"write to closed ring output {self.ring.name!r}")
        if not len(events):
            return
        async with self._lock:
            if not self._pending:
                self._pending_since = time.monotonic()
            self._pending.append(events)
            await self._commit(final=False)
        self._arm_linger()

    def _arm_linger(self) -> None:
        if self._pending and (self._linger_task is None or self._linger_task.done()):
            self._linger_task = asyncio.create_task(self._linger(), name="evb-ring-linger")

    async def _linger(self) -> None:
        while True:
            delay = self._pending_since + self.linger_s - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            async with self._lock:
                if not self._pending:
                    return
                if time.monotonic() >= self._pending_since + self.linger_s:
                    await self._commit(final=True)
                    return

    async def _commit(self, *, final: bool) -> None:
        """Write pending events: full slots and runs ending at a barrier; all if ``final``."""
        events = concat_events(self._pending)
        self._pending = []
        runs = plan_slots(events, self.slot_bytes)
        if not final and runs:
            # The last run stays pending unless it ends at a barrier (or is full: more than
            # one run means the earlier ones were cut because the slot was full).
            lo, hi = runs[-1]
            if not bool(events.is_barrier[hi - 1]):
                self._pending = [slice_events(events, lo, hi)]
                runs = runs[:-1]
        i = 0
        while i < len(runs):
            batch = await self._claim(len(runs) - i)
            m = len(batch)
            try:
                for k in range(m):
                    lo, hi = runs[i + k]
                    part = slice_events(events, lo, hi)
                    slot = batch.data[k].view(np.uint8)
                    used = pack_slot(part, slot, built=self.built)
                    self.events_written += hi - lo
                    self.fragments_written += len(part.fragments)
                    self.bytes_written += used
            except BaseException:
                batch.commit(0)
                raise
            batch.commit()
            self.slots_written += m
            i += m
        if self._pending and runs:
            self._pending_since = time.monotonic()

    async def _claim(self, k: int) -> Any:
        """Claim up to ``k`` slots, waiting on the event loop while the ring is full."""
        batch = self._writer.try_claim(k, 0.0)
        if batch is not None:
            return batch
        self.full_waits += 1
        self.waiting_for_space = True
        t0 = time.monotonic()
        backoff = 0.0005
        try:
            while True:
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, _MAX_BACKOFF_S)
                batch = self._writer.try_claim(k, 0.0)
                if batch is not None:
                    return batch
                self.ring.reap()
        finally:
            self.waiting_for_space = False
            self.wait_s += time.monotonic() - t0

    async def close(self) -> None:
        if self._closed:
            return
        task = self._linger_task
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        try:
            async with self._lock:
                if self._pending:
                    await self._commit(final=True)
        finally:
            self._closed = True
            if self._shutdown_on_close:
                self.ring.shutdown()
            self._writer.close()
            log.info(
                "ring %s closed: %d events in %d slots",
                self.ring.name,
                self.events_written,
                self.slots_written,
            )


class BuildingSink:
    """A :class:`~evb.sinks.Sink` that builds events and hands them to event writers.

    Args:
        writers: where the events go (ring, file), in that order for every batch.
        config: the build settings (``build=False``: one fragment per event).

    Attributes:
        builder: the :class:`~evb.builder.EventBuilder`; replace ``builder.config`` to change
            the build settings between batches (``EVB::config set build ...``).
    """

    def __init__(self, writers: Sequence[EventWriter], config: BuildConfig | None = None) -> None:
        self.writers = list(writers)
        self.builder = EventBuilder(config or BuildConfig())
        self._closed = False

    async def write(self, batch: FragmentBatch) -> None:
        if self._closed:
            raise ValueError("write to a closed BuildingSink")
        events = self.builder.feed(batch)
        if len(events):
            for w in self.writers:
                await w.write_events(events)

    def set_build(self, name: str, value: object) -> None:
        """``EVB::config set build <name> <value>``: takes effect with the next batch.

        Raises:
            ConfigError: unknown name or invalid value.
        """
        self.builder.config = self.builder.config.with_value(name, value)
        for w in self.writers:
            if isinstance(w, RingEventWriter):
                w.built = self.builder.config.build

    def get_build(self, name: str) -> object:
        """``EVB::config get build <name>``."""
        return self.builder.config.get(name)

    def status(self) -> dict[str, Any]:
        st = self.builder.stats()
        out: dict[str, Any] = {
            "events_built": int(st["events_out"]),
            "build_pending_fragments": int(st["pending_fragments"]),
        }
        for w in self.writers:
            fn = getattr(w, "status", None)
            if callable(fn):
                out.update(fn())
        return out

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        first: BaseException | None = None
        try:
            events = self.builder.flush()
            if len(events):
                for w in self.writers:
                    await w.write_events(events)
        except BaseException as exc:  # still close every writer
            first = exc
        for w in self.writers:
            try:
                await w.close()
            except BaseException as exc:
                log.exception("closing an event output failed")
                first = first or exc
        if first is not None:
            raise first


class EventRingReader:
    """Consumer of an EVB ring: ``for slot in reader: ...`` gives :class:`SlotEvents`.

    The views of a slot are valid until the next one is taken (the slot is released then).

    Args:
        name: the ring's name.
        group: reader group (each group sees every slot; readers of one group share them).
        timeout_s: how long to wait for the ring to exist.
        leave_group: remove the group from the ring on :meth:`close`, so the EVB stops
            waiting for it (a consumer that goes away must not stall the EVB).
    """

    def __init__(
        self,
        name: str,
        group: str = "default",
        *,
        timeout_s: float = 5.0,
        leave_group: bool = True,
    ) -> None:
        from ringbuffer.ring import RingBuffer

        self.ring = RingBuffer.attach(name, timeout=timeout_s)
        if self.ring.data_dtype.itemsize != 1:
            raise ConfigError(
                f"ring {name!r} is not an EVB event ring (dtype {self.ring.data_dtype})"
            )
        self.group = group
        self._leave = leave_group
        self._reader = self.ring.reader(group)
        self._current: Any = None
        #: ring metadata (``counter``, ``timestamp``, ``deadtime``) of the current slot
        self.meta: np.ndarray | None = None
        #: the current slot's bytes (a view; copy ``raw[:bytes_used]`` to keep a slot)
        self.raw: npt.NDArray[np.uint8] | None = None

    def __iter__(self) -> Iterator[SlotEvents]:
        while True:
            slot = self.next(None)
            if slot is None:
                return
            yield slot

    def next(self, timeout_s: float | None = None) -> SlotEvents | None:
        """The next slot (the previous one is released); None at the end of data.

        Raises:
            ringbuffer.RingTimeoutError: nothing arrived within ``timeout_s``.
        """
        self.release()
        batch = self._reader.claim(1, timeout_s)
        if batch is None:
            return None
        self._current = batch
        self.meta = batch.meta[0]
        raw: npt.NDArray[np.uint8] = batch.data[0].view(np.uint8)
        self.raw = raw
        return read_slot(raw)

    def next_copy(self, timeout_s: float | None = None) -> SlotEvents | None:
        """Like :meth:`next` but the slot is copied and released at once (keep it freely)."""
        slot = self.next(timeout_s)
        if slot is None or self.raw is None:
            return None
        used = int(slot.header["bytes_used"][0])
        copied = read_slot(self.raw[:used].copy())
        self.release()
        return copied

    def release(self) -> None:
        if self._current is not None:
            self._current.release()
            self._current = None
            self.meta = None
            self.raw = None

    def close(self) -> None:
        self.release()
        self._reader.close()
        if self._leave:
            with contextlib.suppress(Exception):
                self.ring.remove_group(self.group)

    def __enter__(self) -> EventRingReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def make_output_sink(
    *,
    output: Any = None,
    build: BuildConfig | None = None,
    ring: RingOptions | None = None,
) -> Any:
    """The server's output for ``--output``, the build settings and ``--ring``.

    Without building and without a ring: the NSCLDAQ fragment stream (``FileSink``) or
    nothing (``NullSink``), exactly as before. Otherwise a :class:`BuildingSink` feeding the
    ring (created here, owned by this process) and/or the file: a built-event file when
    building, the byte-exact fragment stream with ``nobuild``.
    """
    from evb.recording import EventFileWriter, FragmentFileWriter
    from evb.sinks import FileSink, NullSink

    build = build or BuildConfig()
    if ring is None and not build.build:
        return FileSink(output) if output is not None else NullSink()
    writers: list[EventWriter] = []
    if ring is not None:
        writers.append(
            RingEventWriter(create_event_ring(ring), built=build.build, linger_s=ring.linger_s)
        )
    if output is not None:
        writers.append(EventFileWriter(output) if build.build else FragmentFileWriter(output))
    return BuildingSink(writers, build)
