"""The event-building stage after ordering (NSCLDAQ glom's behaviour, spec section 6). Pure.

Consecutive data fragments whose timestamps lie within ``dt`` ticks of the event's first
fragment (inclusive) form one event, at most ``max_fragments`` of them. A barrier ends the
current event and passes on alone. ``build=False`` (glom's ``nobuild``) passes every fragment
through as an event of its own. The open event at the end of a batch is held until a later
fragment closes it or :meth:`EventBuilder.flush` is called.

A built event on the wire/in files: ``u32 size`` (self-inclusive, little-endian) followed by
the event's flattened fragments.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from enum import Enum

import numpy as np
import numpy.typing as npt

from evb.batch import FLAT_HEADER_BYTES, FragmentBatch
from evb.errors import ConfigError
from evb.stats import StatMode, Stats, StatsSchema, StatsSnapshot

__all__ = [
    "BUILD_NAMES",
    "EVENT_HEADER_BYTES",
    "BuildConfig",
    "EventBatch",
    "EventBuilder",
    "TimestampPolicy",
]

EVENT_HEADER_BYTES = 4
_U64_MAX = 0xFFFF_FFFF_FFFF_FFFF


class TimestampPolicy(Enum):
    """How an event's timestamp is chosen from its fragments'."""

    EARLIEST = "earliest"
    LATEST = "latest"
    AVERAGE = "average"


#: ``EVB::config set build <name>`` names -> BuildConfig fields.
BUILD_NAMES: dict[str, str] = {
    "build": "build",
    "dt": "dt_ticks",
    "maxFragments": "max_fragments",
    "timestampPolicy": "policy",
}


@dataclass(frozen=True, slots=True, kw_only=True)
class BuildConfig:
    """Settings of the event-building stage.

    Attributes:
        build: False passes fragments through one per event (glom ``nobuild``).
        dt_ticks: coincidence window in timestamp ticks, from the event's first fragment.
        max_fragments: most fragments in one event (0: no limit).
        policy: event timestamp from the earliest, latest or average fragment timestamp.
    """

    build: bool = False
    dt_ticks: int = 0
    max_fragments: int = 0
    policy: TimestampPolicy = TimestampPolicy.EARLIEST

    def __post_init__(self) -> None:
        if self.dt_ticks < 0:
            raise ConfigError(f"build dt must be >= 0 ticks was {self.dt_ticks}")
        if self.max_fragments < 0:
            raise ConfigError(f"maxFragments must be >= 0 was {self.max_fragments}")
        if not isinstance(self.policy, TimestampPolicy):
            raise ConfigError(f"timestamp policy must be a TimestampPolicy, was {self.policy!r}")

    def with_value(self, name: str, value: object) -> BuildConfig:
        """A copy with one ``build`` setting changed from a value or its text.

        Raises:
            ConfigError: unknown name or invalid value.
        """
        field = BUILD_NAMES.get(name)
        if field is None:
            raise ConfigError(
                f"Invalid build parameter {name!r}: expected one of {', '.join(BUILD_NAMES)}"
            )
        text = str(value).strip()
        parsed: object
        if field == "build":
            lowered = text.lower()
            if lowered in ("1", "true", "yes", "on", "build"):
                parsed = True
            elif lowered in ("0", "false", "no", "off", "nobuild"):
                parsed = False
            else:
                raise ConfigError(f'expected boolean value but got "{value}"')
        elif field == "policy":
            try:
                parsed = TimestampPolicy(text.lower())
            except ValueError:
                raise ConfigError(
                    f'bad timestamp policy "{value}": must be earliest, latest or average'
                ) from None
        else:
            try:
                parsed = int(text, 0)
            except ValueError:
                raise ConfigError(f'expected integer but got "{value}"') from None
        return dataclasses.replace(self, **{field: parsed})  # type: ignore[arg-type]

    def get(self, name: str) -> object:
        field = BUILD_NAMES.get(name)
        if field is None:
            raise ConfigError(
                f"Invalid build parameter {name!r}: expected one of {', '.join(BUILD_NAMES)}"
            )
        value = getattr(self, field)
        return value.value if isinstance(value, TimestampPolicy) else value


@dataclass(frozen=True, slots=True)
class EventBatch:
    """Built events as columns over their (ordered) fragments.

    Attributes:
        fragments: all fragments of the events, event after event.
        starts: index in ``fragments`` of each event's first fragment.
        counts: number of fragments of each event.
        timestamps: each event's timestamp (by the policy).
    """

    fragments: FragmentBatch
    starts: npt.NDArray[np.int64]
    counts: npt.NDArray[np.int64]
    timestamps: npt.NDArray[np.uint64]

    def __len__(self) -> int:
        return len(self.starts)

    @staticmethod
    def empty() -> EventBatch:
        e = np.empty(0, np.int64)
        return EventBatch(FragmentBatch.empty(), e, e.copy(), np.empty(0, np.uint64))

    @property
    def is_barrier(self) -> npt.NDArray[np.bool_]:
        """True for events that are a lone barrier fragment."""
        if not len(self):
            return np.zeros(0, bool)
        return self.fragments.barrier_types[self.starts] != 0  # type: ignore[no-any-return]

    def event_sizes(self) -> npt.NDArray[np.int64]:
        """Bytes of each built event, its 4-byte size word included."""
        lens = self.fragments.payload_sizes.astype(np.int64) + FLAT_HEADER_BYTES
        if not len(self):
            return np.zeros(0, np.int64)
        return np.add.reduceat(lens, self.starts) + EVENT_HEADER_BYTES

    def flatten(self) -> npt.NDArray[np.uint8]:
        """The events back to back: ``u32 size`` then the flattened fragments, per event."""
        if not len(self):
            return np.empty(0, np.uint8)
        flat = self.fragments.flatten()
        lens = self.fragments.payload_sizes.astype(np.int64) + FLAT_HEADER_BYTES
        sizes = np.add.reduceat(lens, self.starts)
        flat_starts = np.concatenate(([0], np.cumsum(sizes)[:-1]))
        words = (sizes + EVENT_HEADER_BYTES).astype("<u4").view(np.uint8)
        return np.insert(flat, np.repeat(flat_starts, EVENT_HEADER_BYTES), words)

    def payload_bytes(self) -> int:
        return self.fragments.payload_bytes()


BUILDER_SCHEMA = StatsSchema(
    [
        ("fragments_in", StatMode.COUNTER),
        ("events_out", StatMode.COUNTER),
        ("barrier_events", StatMode.COUNTER),
        ("fragments_out", StatMode.COUNTER),
        ("max_event_fragments", StatMode.MAXIMUM),
        ("pending_fragments", StatMode.GAUGE),
    ]
)


class EventBuilder:
    """Groups an ordered fragment stream into events.

    Args:
        config: the build settings; replace ``builder.config`` to change them between batches.
    """

    def __init__(self, config: BuildConfig | None = None) -> None:
        self.config = config or BuildConfig()
        self._pending = FragmentBatch.empty()
        self._stats = Stats(BUILDER_SCHEMA)

    @property
    def pending(self) -> int:
        """Fragments of the open event, held until it is known to be complete."""
        return len(self._pending)

    def stats(self) -> StatsSnapshot:
        self._stats.set(BUILDER_SCHEMA.get_stat_index("pending_fragments"), len(self._pending))
        return self._stats.snapshot()

    def feed(self, batch: FragmentBatch) -> EventBatch:
        """Add ordered fragments; return the events they complete."""
        self._stats.add(0, len(batch))
        if not self.config.build:
            return self._account(self._events(batch, np.arange(len(batch), dtype=np.int64)))
        work = FragmentBatch.concat([self._pending, batch]) if len(self._pending) else batch
        n = len(work)
        if n == 0:
            return EventBatch.empty()
        starts = self._starts(work)
        # The last event stays open unless a barrier, or the fragment limit, closed it.
        last = int(starts[-1])
        closed = work.barrier_types[last] != 0 or (
            self.config.max_fragments and n - last >= self.config.max_fragments
        )
        if closed:
            self._pending = FragmentBatch.empty()
            return self._account(self._events(work, starts))
        self._pending = work[last:]
        return self._account(self._events(work[:last], starts[:-1]))

    def flush(self) -> EventBatch:
        """Close the open event (end of data, or the stream went quiet)."""
        work = self._pending
        self._pending = FragmentBatch.empty()
        if not len(work):
            return EventBatch.empty()
        return self._account(self._events(work, np.zeros(1, np.int64)))

    def _account(self, events: EventBatch) -> EventBatch:
        v = self._stats.values
        v[1] += len(events)
        v[2] += int(np.count_nonzero(events.is_barrier))
        v[3] += len(events.fragments)
        if len(events):
            self._stats.maximum(4, int(events.counts.max()))
        return events

    def _starts(self, work: FragmentBatch) -> npt.NDArray[np.int64]:
        """Event start rows of ``work`` (greedy: first fragment, then all within dt of it)."""
        ts = work.timestamps
        n = len(ts)
        dt = self.config.dt_ticks
        maxf = self.config.max_fragments or n + 1
        bars = work.barrier_types != 0
        if n > 1 and bool((ts[1:] >= ts[:-1]).all()):
            reach = np.minimum(ts, np.uint64(_U64_MAX - dt)) + np.uint64(dt)
            nxt = np.searchsorted(ts, reach, "right").astype(np.int64)
            np.minimum(nxt, np.arange(n, dtype=np.int64) + maxf, out=nxt)
            if bars.any():
                # A barrier is an event of its own: events stop before it, and it stops at itself.
                bar_pos = np.flatnonzero(bars)
                next_bar = bar_pos[np.searchsorted(bar_pos, np.arange(n), "right").clip(
                    max=len(bar_pos) - 1)]
                after = np.arange(n) < next_bar
                nxt = np.where(after, np.minimum(nxt, next_bar), nxt)
                nxt[bar_pos] = bar_pos + 1
            chain = nxt.tolist()
            starts = []
            s = 0
            while s < n:
                starts.append(s)
                s = chain[s]
            return np.asarray(starts, np.int64)
        # Unsorted (late data) or tiny: the plain rule, one fragment at a time.
        tsl = ts.tolist()
        barl = bars.tolist()
        starts = []
        first = 0
        for j in range(n):
            if (
                j == 0
                or barl[j]
                or barl[j - 1]
                or not (first <= tsl[j] <= first + dt)
                or j - starts[-1] >= maxf
            ):
                starts.append(j)
                first = tsl[j]
        return np.asarray(starts, np.int64)

    def _events(self, work: FragmentBatch, starts: npt.NDArray[np.int64]) -> EventBatch:
        n = len(work)
        if not len(starts):
            return EventBatch.empty()
        counts = np.diff(np.append(starts, n))
        ts = work.timestamps
        policy = self.config.policy
        if policy is TimestampPolicy.EARLIEST:
            ets = np.minimum.reduceat(ts, starts)
        elif policy is TimestampPolicy.LATEST:
            ets = np.maximum.reduceat(ts, starts)
        else:
            # Average without overflow: mean of offsets from the event's first timestamp.
            first = ts[starts]
            offs = (ts - np.repeat(first, counts)).view(np.int64).astype(np.float64)
            ets = first + (np.add.reduceat(offs, starts) / counts).astype(np.uint64)
        return EventBatch(work, starts, counts, ets.astype(np.uint64))
