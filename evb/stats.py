"""Statistics in the manner of spead2: a schema of named statistics, consistent snapshots.

A :class:`StatsSchema` names the statistics and their modes; :meth:`StatsSchema.add_stat`
registers user statistics and returns consecutive indices. A :class:`Stats` holds live values
(updated by index on the hot path); :meth:`Stats.snapshot` returns an internally consistent
:class:`StatsSnapshot`, readable by name (mapping), by index (sequence) and, for the schema's
core statistics, by attribute. Counters are never read-and-reset: :meth:`Stats.clear` records
a baseline that later snapshots subtract.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from enum import Enum
from typing import overload

__all__ = ["StatMode", "Stats", "StatsSchema", "StatsSnapshot"]


class StatMode(Enum):
    """How a statistic combines updates."""

    COUNTER = "counter"  # a count of events; only grows
    MAXIMUM = "maximum"  # a high-water mark
    GAUGE = "gauge"  # a level that goes up and down


class StatsSchema:
    """Names and modes of statistics; the first ones registered are the core ones.

    Args:
        core: (name, mode) pairs of the core statistics, readable by attribute in snapshots.
    """

    def __init__(self, core: Iterable[tuple[str, StatMode]] = ()) -> None:
        self._names: list[str] = []
        self._modes: list[StatMode] = []
        self._index: dict[str, int] = {}
        for name, mode in core:
            self.add_stat(name, mode)
        self.core_count = len(self._names)

    def add_stat(self, name: str, mode: StatMode = StatMode.COUNTER) -> int:
        """Register a statistic; returns its index (one more than the previous one's).

        Raises:
            ValueError: the name is taken or is not printable ASCII.
        """
        if not name or not name.isascii() or not name.isprintable():
            raise ValueError(f"statistic names must be printable ASCII, was {name!r}")
        if name in self._index:
            raise ValueError(f"statistic {name!r} already exists (index {self._index[name]})")
        self._index[name] = len(self._names)
        self._names.append(name)
        self._modes.append(StatMode(mode))
        return self._index[name]

    def get_stat_index(self, name: str) -> int:
        """Index of a statistic. Raises KeyError naming the statistic if unknown."""
        try:
            return self._index[name]
        except KeyError:
            raise KeyError(f"no statistic named {name!r}") from None

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self._names)

    @property
    def modes(self) -> tuple[StatMode, ...]:
        return tuple(self._modes)

    def __len__(self) -> int:
        return len(self._names)

    def __contains__(self, name: object) -> bool:
        return name in self._index


class StatsSnapshot(Mapping[str, int]):
    """An immutable, internally consistent set of statistic values.

    ``snap["fragments_in"]``, ``snap[0]`` and ``snap.fragments_in`` (core statistics) all work;
    iteration yields names, as for a mapping.
    """

    __slots__ = ("_schema", "_values")

    def __init__(self, schema: StatsSchema, values: Iterable[int]) -> None:
        self._schema = schema
        self._values = tuple(values)

    @overload
    def __getitem__(self, key: str) -> int: ...
    @overload
    def __getitem__(self, key: int) -> int: ...
    def __getitem__(self, key: str | int) -> int:
        if isinstance(key, int):
            return self._values[key]
        return self._values[self._schema.get_stat_index(key)]

    def __getattr__(self, name: str) -> int:
        schema: StatsSchema = object.__getattribute__(self, "_schema")
        idx = schema._index.get(name)
        if idx is None or idx >= schema.core_count:
            raise AttributeError(f"no core statistic named {name!r}")
        values: tuple[int, ...] = object.__getattribute__(self, "_values")
        return values[idx]

    def __iter__(self) -> Iterator[str]:
        return iter(self._schema.names[: len(self._values)])

    def __len__(self) -> int:
        return len(self._values)

    def values_list(self) -> list[int]:
        """The values in index order (the sequence view)."""
        return list(self._values)

    def __repr__(self) -> str:
        inner = ", ".join(f"{k}={v}" for k, v in self.items())
        return f"StatsSnapshot({inner})"


class Stats:
    """Live statistic values of one schema.

    The hot path updates ``values`` by index directly (a plain list of ints).
    """

    __slots__ = ("_baseline", "schema", "values")

    def __init__(self, schema: StatsSchema) -> None:
        self.schema = schema
        self.values: list[int] = [0] * len(schema)
        self._baseline: list[int] = [0] * len(schema)

    def _grow(self) -> None:
        missing = len(self.schema) - len(self.values)
        if missing > 0:
            self.values.extend([0] * missing)
            self._baseline.extend([0] * missing)

    def add(self, index: int, amount: int = 1) -> None:
        self._grow()
        self.values[index] += amount

    def maximum(self, index: int, value: int) -> None:
        self._grow()
        if value > self.values[index]:
            self.values[index] = value

    def set(self, index: int, value: int) -> None:
        self._grow()
        self.values[index] = value

    def snapshot(self) -> StatsSnapshot:
        """A consistent copy; counters read relative to the last :meth:`clear`."""
        self._grow()
        modes = self.schema.modes
        vals = [
            v - b if m is StatMode.COUNTER else v
            for v, b, m in zip(self.values, self._baseline, modes, strict=True)
        ]
        return StatsSnapshot(self.schema, vals)

    def clear(self, names: Iterable[str] | None = None) -> None:
        """Start counting again from now: a baseline for counters, maxima go to 0, gauges stay."""
        self._grow()
        idxs = (
            range(len(self.values))
            if names is None
            else [self.schema.get_stat_index(n) for n in names]
        )
        modes = self.schema.modes
        for i in idxs:
            if modes[i] is StatMode.COUNTER:
                self._baseline[i] = self.values[i]
            elif modes[i] is StatMode.MAXIMUM:
                self.values[i] = 0

    def since_clear(self, index: int) -> int:
        """One counter's value relative to the last :meth:`clear` (hot-path friendly)."""
        return self.values[index] - self._baseline[index]

