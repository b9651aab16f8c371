"""Orderer settings and the ``EVB::config`` names that set them."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from evb.errors import ConfigError

__all__ = ["CONFIG_NAMES", "OrdererConfig"]

#: ``EVB::config`` name -> OrdererConfig field.
CONFIG_FIELDS: dict[str, str] = {
    "window": "window_s",
    "XoffThreshold": "xoff_bytes",
    "XonThreshold": "xon_bytes",
    "perQXoffThreshold": "perq_xoff_fragments",
    "perQXonThreshold": "perq_xon_fragments",
    "sourceTimeout": "source_timeout_s",
}
CONFIG_NAMES: tuple[str, ...] = tuple(CONFIG_FIELDS)


@dataclass(frozen=True, slots=True, kw_only=True)
class OrdererConfig:
    """Settings of the ordering core.

    Attributes:
        window_s: build window in seconds: how long a fragment may wait while a queue is empty.
            Barriers time out after ``4 * window_s``.
        xoff_bytes: payload bytes queued plus emitted-but-unwritten at which sources are paused.
        xon_bytes: below this many bytes, sources are resumed (never above ``xoff_bytes``: a
            larger value acts as ``xoff_bytes``, so the two can be set in either order).
        perq_xoff_fragments: a queue this deep pauses its own connection (0: off).
        perq_xon_fragments: a paused queue this shallow resumes its connection (capped at
            ``perq_xoff_fragments`` like ``xon_bytes``).
        source_timeout_s: a connection silent this long has its sources marked dead (0: never).
    """

    window_s: float = 20.0
    xoff_bytes: int = 256 * 1024 * 1024
    xon_bytes: int = 128 * 1024 * 1024
    perq_xoff_fragments: int = 4_000_000
    perq_xon_fragments: int = 2_000_000
    source_timeout_s: float = 60.0

    def __post_init__(self) -> None:
        if not (self.window_s > 0 and math.isfinite(self.window_s)):
            raise ConfigError(f"Build time window must be > 0 was {_num(self.window_s)}")
        for name in ("xoff_bytes", "xon_bytes", "perq_xoff_fragments", "perq_xon_fragments"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must be >= 0 was {getattr(self, name)}")
        if not (self.source_timeout_s >= 0 and math.isfinite(self.source_timeout_s)):
            raise ConfigError(f"sourceTimeout must be >= 0 seconds was {self.source_timeout_s}")

    def get(self, name: str) -> float | int:
        """Value of an ``EVB::config`` name."""
        return getattr(self, _field(name))  # type: ignore[no-any-return]

    def with_value(self, name: str, value: object) -> OrdererConfig:
        """A copy with ``EVB::config`` name set from a number or its text.

        Raises:
            ConfigError: unknown name, unparsable value, or a value out of range.
        """
        field = _field(name)
        parsed: float | int
        if field.endswith("_s"):
            parsed = _parse_float(value)
            if field == "window_s" and not parsed > 0:
                raise ConfigError(f"Build time window must be > 0 was {_num(parsed)}")
        else:
            parsed = _parse_int(value)
        return dataclasses.replace(self, **{field: parsed})  # type: ignore[arg-type]


def _field(name: str) -> str:
    try:
        return CONFIG_FIELDS[name]
    except KeyError:
        raise ConfigError(
            f"Invalid configuration parameter {name!r}: expected one of {', '.join(CONFIG_NAMES)}"
        ) from None


def _num(v: float) -> str:
    return str(int(v)) if float(v).is_integer() else repr(v)


def _parse_float(value: object) -> float:
    try:
        v = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ConfigError(f'expected floating-point number but got "{value}"') from None
    if not math.isfinite(v):
        raise ConfigError(f'expected a finite number but got "{value}"')
    return v


def _parse_int(value: object) -> int:
    if isinstance(value, int):
        v = value
    else:
        try:
            v = int(str(value).strip(), 0)
        except ValueError:
            raise ConfigError(f'expected integer but got "{value}"') from None
    if v < 0:
        raise ConfigError(f"expected a non-negative integer but got {v}")
    return v
