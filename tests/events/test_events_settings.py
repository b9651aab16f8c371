"""Build and ring settings: flags, YAML, precedence, errors, the sink they make."""

from __future__ import annotations

from pathlib import Path

import pytest
from testsupport import run_checked

from evb.builder import BuildConfig, TimestampPolicy
from evb.cli import build_parser, settings_from_args
from evb.errors import ConfigError
from evb.recording import EventFileWriter, FragmentFileWriter
from evb.ringsink import BuildingSink, RingEventWriter, RingOptions
from evb.server import default_sink
from evb.settings import ServerSettings, load_yaml_settings, settings_from_mapping
from evb.sinks import FileSink, NullSink


def _args(*argv: str) -> ServerSettings:
    return settings_from_args(build_parser().parse_args(list(argv)))


def test_flags_turn_building_and_the_ring_on() -> None:
    s = _args("--build-dt", "100", "--build-max-fragments", "4", "--build-policy", "average",
              "--ring", "evb", "--ring-slot-bytes", "4096", "--ring-slots", "8",
              "--ring-groups", "unpack,dump", "--ring-linger", "0.05")
    assert (s.build_dt_ticks, s.build_max_fragments, s.build_policy) == (100, 4, "average")
    assert RingOptions.from_mapping(s.ring_options) == RingOptions(
        name="evb", slot_bytes=4096, slots=8, groups=("unpack", "dump"), linger_s=0.05)
    plain = _args()
    assert plain.build_dt_ticks is None and plain.ring_options == ()
    assert _args("--build-dt", "5", "--nobuild").build_dt_ticks is None


def test_yaml_then_flags(tmp_path: Path) -> None:
    cfg = tmp_path / "evb.yaml"
    cfg.write_text(
        "window: 2\nbuild_dt_ticks: 50\nbuild_max_fragments: 3\nbuild_policy: latest\n"
        "ring:\n  name: evb\n  slots: 16\n  groups: [unpack]\n"
    )
    s = load_yaml_settings(cfg)
    assert (s.build_dt_ticks, s.build_max_fragments, s.build_policy) == (50, 3, "latest")
    assert RingOptions.from_mapping(s.ring_options) == RingOptions(
        name="evb", slots=16, groups=("unpack",))
    s2 = _args("--config", str(cfg), "--build-dt", "70", "--ring-slots", "4")
    assert s2.build_dt_ticks == 70 and s2.build_max_fragments == 3
    ring = RingOptions.from_mapping(s2.ring_options)
    assert ring.slots == 4 and ring.name == "evb"
    assert _args("--config", str(cfg), "--nobuild").build_dt_ticks is None


def test_settings_make_the_right_sink(tmp_path: Path, ring_name: str) -> None:
    out = tmp_path / "out.bin"
    assert isinstance(default_sink(ServerSettings()), NullSink)
    assert isinstance(default_sink(ServerSettings(output=out)), FileSink)
    built = default_sink(ServerSettings(output=out, build_dt_ticks=10, build_policy="latest",
                                        build_max_fragments=2,
                                        ring_options=(("name", ring_name), ("slots", 2))))
    assert isinstance(built, BuildingSink)
    assert built.builder.config == BuildConfig(build=True, dt_ticks=10, max_fragments=2,
                                               policy=TimestampPolicy.LATEST)
    assert [type(w) for w in built.writers] == [RingEventWriter, EventFileWriter]
    run_checked(built.close())
    flat = default_sink(ServerSettings(output=out, ring_options=(("name", f"{ring_name}.f"),)))
    assert isinstance(flat, BuildingSink) and not flat.builder.config.build
    assert [type(w) for w in flat.writers] == [RingEventWriter, FragmentFileWriter]
    run_checked(flat.close())


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"build_dt_ticks": -1}, "build dt must be >= 0"),
        ({"build_policy": "median"}, "must be earliest, latest or average"),
        ({"ring": {"slots": 4}}, "'name' is missing"),
        ({"ring": {"name": "evb", "slots": 1}}, "at least 2 slots"),
        ({"ring": {"name": "e v b"}}, "invalid ring name"),
        ({"ring": {"name": "evb", "colour": 1}}, "Unknown ring setting 'colour'"),
    ],
)
def test_bad_build_and_ring_settings(values: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        default_sink(settings_from_mapping(values))
