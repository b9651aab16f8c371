"""Pure parts: settings parsing, simulated sources, message bodies, sink gathering."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from evb.batch import Fragment, FragmentBatch, build_batch
from evb.cli import build_parser, settings_from_args
from evb.config import OrdererConfig
from evb.errors import ConfigError
from evb.settings import ServerSettings, load_yaml_settings, settings_from_mapping
from evb.sinks import flat_pieces
from sources.client import message_body
from sources.simulated import SimulatedSource, flatten_columns


def test_default_settings_build_the_default_orderer_config() -> None:
    s = ServerSettings()
    assert (s.host, s.port, s.output) == ("127.0.0.1", 0, None)
    assert s.orderer_config() == OrdererConfig()


def test_yaml_field_names_and_evb_config_aliases(tmp_path: Path) -> None:
    f = tmp_path / "s.yaml"
    f.write_text(
        "host: 0.0.0.0\nport: 2345\noutput: /tmp/x.bin\nwindow: 2.5\nXoffThreshold: 1000\n"
        "xon_bytes: 10\nperQXoffThreshold: 50\nperq_xon_fragments: 5\nsourceTimeout: 3\n"
        "max_message_bytes: 4096\nring:\n  name: evb\n  slots: 8\n"
    )
    s = load_yaml_settings(f)
    assert s.host == "0.0.0.0" and s.port == 2345 and s.output == Path("/tmp/x.bin")
    cfg = s.orderer_config()
    assert (cfg.window_s, cfg.xoff_bytes, cfg.xon_bytes) == (2.5, 1000, 10)
    assert (cfg.perq_xoff_fragments, cfg.perq_xon_fragments, cfg.source_timeout_s) == (50, 5, 3.0)
    assert s.max_message_bytes == 4096
    assert dict(s.ring_options) == {"name": "evb", "slots": 8}


@pytest.mark.parametrize(
    ("values", "match"),
    [
        ({"windwo": 3}, "windwo"),
        ({"window": 0}, "Build time window must be > 0 was 0"),
        ({"port": "http"}, "expected integer"),
        ({"port": 70000}, "port must be in 0..65535"),
        ({"sourceTimeout": -1}, "sourceTimeout must be >= 0"),
        ({"max_message_bytes": 10}, "at least 84"),
        ({"output": 5}, "expected a path"),
    ],
)
def test_bad_settings_raise_config_error(values: dict[str, object], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        settings_from_mapping(values)


def test_yaml_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_yaml_settings(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("- a list\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_yaml_settings(bad)
    bad.write_text("window: [\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_yaml_settings(bad)


def test_flags_override_the_file(tmp_path: Path) -> None:
    f = tmp_path / "s.yaml"
    f.write_text("window: 9\nport: 1234\nhost: 127.0.0.2\n")
    args = build_parser().parse_args(
        ["--config", str(f), "--port", "0", "--window", "0.5", "--output", "o.bin",
         "--xoff-bytes", "100", "--xon-bytes", "50", "--control", "/tmp/ctl"]
    )
    s = settings_from_args(args)
    assert (s.host, s.port, s.window_s, s.output) == ("127.0.0.2", 0, 0.5, Path("o.bin"))
    assert (s.xoff_bytes, s.xon_bytes, s.control) == (100, 50, Path("/tmp/ctl"))
    assert settings_from_args(build_parser().parse_args([])) == ServerSettings()


def test_simulated_batches_match_the_reference_builder() -> None:
    for payload in (0, 5, 12, 40):
        sim = SimulatedSource([3, 1, 2], count=25, payload_bytes=payload, batch=7,
                              jitter_ticks=40, begin_barrier=True, end_barrier=True, seed=4)
        batches = list(sim)
        got = FragmentBatch.concat(batches)
        assert len(got) == sim.total_fragments == 3 * 27
        ref = build_batch(got.fragments())
        assert np.array_equal(got.flatten(), ref.flatten())
        assert list(batches[0].barrier_types) == [1, 1, 1]
        assert list(batches[-1].barrier_types) == [2, 2, 2]
        for sid in (1, 2, 3):
            ts = got.timestamps[(got.source_ids == sid) & (got.barrier_types == 0)]
            assert len(ts) == 25 and bool(np.all(ts[1:] > ts[:-1]))
        if payload >= 12:
            f = got.fragment(5)
            assert int.from_bytes(f.payload[:4], "little") == f.source_id


def test_flatten_columns_2d_and_list_payloads_agree() -> None:
    ts = [5, 6, 7]
    payload = np.arange(12, dtype=np.uint8).reshape(3, 4)
    a = flatten_columns(ts, 9, payload, barrier_types=[0, 1, 0])
    b = flatten_columns(ts, [9, 9, 9], [bytes(r) for r in payload], [0, 1, 0])
    assert np.array_equal(a.flatten(), b.flatten())
    assert a.fragment(1) == Fragment(timestamp=6, source_id=9, payload=bytes([4, 5, 6, 7]),
                                     barrier_type=1)
    with pytest.raises(ValueError, match="one row per fragment"):
        flatten_columns(ts, 9, payload[:2])


def test_message_body_is_zero_copy_for_flat_batches() -> None:
    batch = next(iter(SimulatedSource([1, 2], count=10, payload_bytes=8)))
    assert message_body(batch) is batch.buffers[0]
    shuffled = batch[np.arange(len(batch))[::-1]]
    body = message_body(shuffled)
    assert body is not batch.buffers[0]
    assert np.array_equal(np.asarray(body), shuffled.flatten())


def test_flat_pieces_gather_large_fragments_without_copy() -> None:
    sims = [SimulatedSource([s], count=6, payload_bytes=9000, batch=3, seed=s) for s in (1, 2)]
    merged = FragmentBatch.concat([b for s in sims for b in s])
    order = np.lexsort((merged.source_ids, merged.timestamps))
    out = merged[order]
    pieces = flat_pieces(out)
    assert pieces is not None
    assert b"".join(bytes(p) for p in pieces) == out.flatten().tobytes()
    small = FragmentBatch.concat(list(SimulatedSource([1, 2], count=50, payload_bytes=4)))
    assert flat_pieces(small[np.arange(len(small))[::-1]]) is None
