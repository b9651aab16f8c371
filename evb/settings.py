"""Server settings: parsed once (YAML file, then command-line flags) into a frozen value.

YAML keys are the :class:`ServerSettings` field names (``window_s``, ``xoff_bytes``, ...); the
``EVB::config`` spellings (``window``, ``XoffThreshold``, ...) are accepted as aliases so one
vocabulary works in the shell and in the file. An unknown key is a :class:`~evb.errors.ConfigError`
naming it.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from evb.config import CONFIG_FIELDS, OrdererConfig
from evb.errors import ConfigError
from evb.wire import DEFAULT_MAX_MESSAGE_BYTES

__all__ = ["ServerSettings", "load_yaml_settings", "settings_from_mapping"]

_ORDERER_DEFAULTS = OrdererConfig()


def _no_ring_options() -> tuple[tuple[str, object], ...]:
    return ()


@dataclass(frozen=True, slots=True, kw_only=True)
class ServerSettings:
    """Everything the TCP ingest service needs, validated on construction.

    Attributes:
        host: address to listen on.
        port: TCP port; 0 picks any free port.
        output: file (or FIFO) receiving the ordered stream of flattened fragments; None: discard.
        window_s: build window in seconds.
        xoff_bytes: payload bytes queued (plus emitted-but-unwritten) that pause every source.
        xon_bytes: below this, sources are read again.
        perq_xoff_fragments: fragments queued for one source that pause its connection.
        perq_xon_fragments: below this, that connection is read again.
        source_timeout_s: a connection silent this long has its sources marked dead (0: never).
        max_message_bytes: largest message body accepted from a source.
        control: path of the shell's control socket (``--control``), None for none.
        ring_options: the ringbuffer output (``evb.ringsink.RingOptions`` keys), as (key, value)
            pairs; empty: no ring.
        build_dt_ticks: event building coincidence window in ticks; None: no building.
        build_policy: event timestamp policy (earliest, latest, average).
        build_max_fragments: most fragments in one built event (0: no limit).
        log_level: logging level name for the command-line edge.
    """

    host: str = "127.0.0.1"
    port: int = 0
    output: Path | None = None
    window_s: float = _ORDERER_DEFAULTS.window_s
    xoff_bytes: int = _ORDERER_DEFAULTS.xoff_bytes
    xon_bytes: int = _ORDERER_DEFAULTS.xon_bytes
    perq_xoff_fragments: int = _ORDERER_DEFAULTS.perq_xoff_fragments
    perq_xon_fragments: int = _ORDERER_DEFAULTS.perq_xon_fragments
    source_timeout_s: float = _ORDERER_DEFAULTS.source_timeout_s
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
    control: Path | None = None
    ring_options: tuple[tuple[str, object], ...] = field(default_factory=_no_ring_options)
    build_dt_ticks: int | None = None
    build_policy: str = "earliest"
    build_max_fragments: int = 0
    log_level: str = "INFO"

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 65535:
            raise ConfigError(f"port must be in 0..65535 was {self.port}")
        if not self.host:
            raise ConfigError("host must not be empty")
        if self.max_message_bytes < 84:
            raise ConfigError(
                "max_message_bytes must be at least 84 (a CONNECT body) "
                f"was {self.max_message_bytes}"
            )
        if self.build_policy not in ("earliest", "latest", "average"):
            raise ConfigError(
                f"build_policy must be earliest, latest or average was {self.build_policy!r}"
            )
        if self.build_dt_ticks is not None and self.build_dt_ticks < 0:
            raise ConfigError(f"build dt must be >= 0 ticks was {self.build_dt_ticks}")
        if not math.isfinite(self.window_s):
            raise ConfigError(f"Build time window must be > 0 was {self.window_s}")
        # Validates the orderer part now, so a bad file fails at startup with a clear message.
        self.orderer_config()

    def orderer_config(self) -> OrdererConfig:
        """The :class:`~evb.config.OrdererConfig` these settings ask for."""
        return OrdererConfig(
            window_s=self.window_s,
            xoff_bytes=self.xoff_bytes,
            xon_bytes=self.xon_bytes,
            perq_xoff_fragments=self.perq_xoff_fragments,
            perq_xon_fragments=self.perq_xon_fragments,
            source_timeout_s=self.source_timeout_s,
        )

    def replace(self, **changes: Any) -> ServerSettings:
        """A copy with ``changes`` applied (validated again)."""
        return dataclasses.replace(self, **changes)


#: EVB::config spellings accepted in YAML as aliases of the field names.
_ALIASES: dict[str, str] = {**CONFIG_FIELDS, "ring": "ring_options"}

_FIELD_TYPES: dict[str, str] = {
    "host": "str",
    "port": "int",
    "output": "path",
    "window_s": "float",
    "xoff_bytes": "int",
    "xon_bytes": "int",
    "perq_xoff_fragments": "int",
    "perq_xon_fragments": "int",
    "source_timeout_s": "float",
    "max_message_bytes": "int",
    "control": "path",
    "ring_options": "mapping",
    "build_dt_ticks": "int",
    "build_policy": "str",
    "build_max_fragments": "int",
    "log_level": "str",
}


def _convert(key: str, kind: str, value: object) -> object:
    if kind == "path":
        if value is None:
            return None
        if not isinstance(value, str | Path):
            raise ConfigError(f"setting {key!r}: expected a path but got {value!r}")
        return Path(value)
    if kind == "str":
        if not isinstance(value, str):
            raise ConfigError(f"setting {key!r}: expected a string but got {value!r}")
        return value
    if kind == "int":
        if isinstance(value, bool):
            raise ConfigError(f"setting {key!r}: expected integer but got {value!r}")
        if isinstance(value, int):
            return value
        try:
            return int(str(value).strip(), 0)
        except ValueError:
            raise ConfigError(f'setting {key!r}: expected integer but got "{value}"') from None
    if kind == "float":
        if isinstance(value, bool):
            raise ConfigError(f"setting {key!r}: expected a number but got {value!r}")
        try:
            return float(value)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            raise ConfigError(
                f'setting {key!r}: expected floating-point number but got "{value}"'
            ) from None
    if kind == "mapping":
        if value is None:
            return ()
        if isinstance(value, tuple):
            return value
        if not isinstance(value, Mapping):
            raise ConfigError(f"setting {key!r}: expected a mapping but got {value!r}")
        return tuple((str(k), v) for k, v in value.items())
    raise AssertionError(kind)


def settings_from_mapping(
    values: Mapping[str, object], base: ServerSettings | None = None
) -> ServerSettings:
    """Settings from a mapping of field names (or EVB::config aliases) to values.

    Raises:
        ConfigError: an unknown key, a value of the wrong kind, or an invalid combination.
    """
    changes: dict[str, Any] = {}
    for raw_key, value in values.items():
        key = _ALIASES.get(str(raw_key), str(raw_key))
        kind = _FIELD_TYPES.get(key)
        if kind is None:
            known = ", ".join(sorted(_FIELD_TYPES))
            raise ConfigError(f"Unknown setting {raw_key!r}: expected one of {known}")
        changes[key] = _convert(str(raw_key), kind, value)
    try:
        return dataclasses.replace(base or ServerSettings(), **changes)
    except TypeError as exc:  # pragma: no cover - guarded by _FIELD_TYPES
        raise ConfigError(str(exc)) from None


def load_yaml_settings(path: Path, base: ServerSettings | None = None) -> ServerSettings:
    """Settings from a YAML file whose top level is a mapping of settings.

    Raises:
        ConfigError: unreadable file, invalid YAML, or an invalid setting.
    """
    import yaml

    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read configuration file {path}: {exc.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"configuration file {path} is not valid YAML: {exc}") from None
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise ConfigError(f"configuration file {path} must hold a mapping of settings")
    return settings_from_mapping(data, base)
