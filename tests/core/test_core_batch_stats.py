"""FragmentBatch (flatten against a naive reference, slicing, concat, compact) and evb.stats."""

from __future__ import annotations

import struct

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from evb.batch import (
    FLAT_HEADER_BYTES,
    INDEX_DTYPE,
    Fragment,
    FragmentBatch,
    batch_from_columns,
    build_batch,
)
from evb.stats import StatMode, Stats, StatsSchema, StatsSnapshot

settings.load_profile("core")


def naive_flatten(b: FragmentBatch) -> bytes:
    """Byte by byte: each row's header and payload from its buffer."""
    out = bytearray()
    for row in b.index:
        buf = b.buffers[int(row["buf"])]
        start = int(row["offset"])
        for k in range(FLAT_HEADER_BYTES + int(row["payload_size"])):
            out.append(int(buf[start + k]))
    return bytes(out)


@st.composite
def multi_buffer_batches(draw: st.DrawFn) -> tuple[FragmentBatch, list[Fragment]]:
    """Fragments in several buffers, with gaps, then rows picked in any order (repeats too)."""
    equal = draw(st.booleans())
    fixed = draw(st.integers(0, 12))
    nbuf = draw(st.integers(1, 4))
    buffers, rows, frags = [], [], []
    for b in range(nbuf):
        n = draw(st.integers(0, 40))
        gap = draw(st.sampled_from([0, 0, 3]))
        data = bytearray(draw(st.binary(min_size=gap, max_size=gap)))
        for i in range(n):
            size = fixed if equal else draw(st.integers(0, 12))
            f = Fragment(
                timestamp=draw(st.integers(0, 2**64 - 1)),
                source_id=b * 100 + i,
                payload=bytes((b * 31 + i + k) % 256 for k in range(size)),
                barrier_type=draw(st.sampled_from([0, 0, 1])),
            )
            row = np.zeros(1, INDEX_DTYPE)
            row["offset"] = len(data)
            row["buf"] = b
            row["timestamp"] = f.timestamp
            row["source_id"] = f.source_id
            row["payload_size"] = size
            row["barrier_type"] = f.barrier_type
            data += struct.pack("<QIII", f.timestamp, f.source_id, size, f.barrier_type)
            data += f.payload
            data += b"\xee" * gap
            rows.append(row)
            frags.append(f)
        buffers.append(np.frombuffer(bytes(data), np.uint8))
    index = np.concatenate(rows) if rows else np.empty(0, INDEX_DTYPE)
    whole = FragmentBatch(index, tuple(buffers))
    if not len(whole):
        return whole, []
    how = draw(st.sampled_from(["all", "perm", "pick", "slice"]))
    if how == "all":
        return whole, frags
    if how == "perm":
        perm = np.array(draw(st.permutations(range(len(whole)))), np.intp)
        return whole[perm], [frags[i] for i in perm]
    if how == "pick":
        pick = draw(st.lists(st.integers(0, len(whole) - 1), max_size=60))
        sel = np.array(pick, np.intp)
        return whole[sel], [frags[i] for i in pick]
    a = draw(st.integers(0, len(whole)))
    c = draw(st.integers(a, len(whole)))
    return whole[a:c], frags[a:c]


@given(multi_buffer_batches())
def test_flatten_matches_naive_reference(case: tuple[FragmentBatch, list[Fragment]]) -> None:
    b, frags = case
    flat = b.flatten()
    assert flat.dtype == np.uint8
    assert flat.tobytes() == naive_flatten(b)
    assert len(flat) == b.flat_bytes()
    assert b.fragments() == frags
    assert flat.tobytes() == build_batch(frags).flatten().tobytes()


@given(multi_buffer_batches(), multi_buffer_batches())
def test_concat_and_compact(
    x: tuple[FragmentBatch, list[Fragment]], y: tuple[FragmentBatch, list[Fragment]]
) -> None:
    joined = FragmentBatch.concat([x[0], FragmentBatch.empty(), y[0]])
    assert joined.fragments() == x[1] + y[1]
    assert joined.flatten().tobytes() == naive_flatten(x[0]) + naive_flatten(y[0])
    compacted = joined.compact()
    assert compacted.fragments() == x[1] + y[1]
    assert len(compacted.buffers) <= len(joined.buffers)
    used = set(np.unique(compacted.index["buf"]).tolist())
    assert used == set(range(len(compacted.buffers))) or not len(compacted)


def test_flatten_large_equal_and_mixed_paths() -> None:
    # Many short fragments: the record-view path (equal sizes) and the gather path (mixed).
    n = 3000
    eq = batch_from_columns(np.arange(n), 7, np.arange(n * 6, dtype=np.uint8).reshape(n, 6) % 251)
    rev = eq[np.arange(n)[::-1].copy()]
    assert rev.flatten().tobytes() == naive_flatten(rev)
    mixed = build_batch(
        Fragment(timestamp=i, source_id=i % 5, payload=b"z" * (i % 7)) for i in range(n)
    )
    sel = np.random.default_rng(1).permutation(n)
    joined = FragmentBatch.concat([mixed[sel], rev])
    assert joined.flatten().tobytes() == naive_flatten(joined)


def test_batch_from_columns_2d_and_bytes_agree() -> None:
    pay = np.arange(12, dtype=np.uint8).reshape(3, 4)
    a = batch_from_columns([5, 6, 7], [1, 2, 3], pay, [0, 1, 0], received=2.5)
    b = batch_from_columns([5, 6, 7], [1, 2, 3], [bytes(r) for r in pay], [0, 1, 0])
    assert a.fragments() == b.fragments()
    assert a.flatten().tobytes() == b.flatten().tobytes()
    assert a.index["received"].tolist() == [2.5] * 3
    assert a.payload(1) == bytes(pay[1])
    assert a.payload_bytes() == 12 and a.flat_bytes() == 72
    with pytest.raises(ValueError):
        batch_from_columns([1, 2], 1, np.zeros((3, 2), np.uint8))
    with pytest.raises(ValueError):
        batch_from_columns([1, 2], 1, [b"a"])


def test_fragment_validation() -> None:
    with pytest.raises(ValueError):
        Fragment(timestamp=-1, source_id=0)
    with pytest.raises(ValueError):
        Fragment(timestamp=2**64, source_id=0)
    with pytest.raises(ValueError):
        Fragment(timestamp=0, source_id=2**32)
    with pytest.raises(ValueError):
        Fragment(timestamp=0, source_id=0, barrier_type=-1)
    assert Fragment(timestamp=0, source_id=0, barrier_type=3).is_barrier


def test_empty_batch() -> None:
    e = FragmentBatch.empty()
    assert len(e) == 0 and e.flatten().tobytes() == b"" and e.fragments() == []
    assert len(build_batch([])) == 0
    assert FragmentBatch.concat([]).fragments() == []


# ---------------------------------------------------------------- stats


def test_add_stat_consecutive_indices_and_lookup() -> None:
    schema = StatsSchema([("a", StatMode.COUNTER), ("b", StatMode.MAXIMUM)])
    assert schema.core_count == 2
    assert schema.add_stat("c") == 2
    assert schema.add_stat("d", StatMode.GAUGE) == 3
    assert [schema.get_stat_index(n) for n in "abcd"] == [0, 1, 2, 3]
    assert schema.names == ("a", "b", "c", "d")
    assert schema.modes == (StatMode.COUNTER, StatMode.MAXIMUM, StatMode.COUNTER, StatMode.GAUGE)
    assert len(schema) == 4 and "c" in schema and "zz" not in schema
    with pytest.raises(KeyError, match="zz"):
        schema.get_stat_index("zz")
    with pytest.raises(ValueError, match="already exists"):
        schema.add_stat("a")
    with pytest.raises(ValueError):
        schema.add_stat("")
    with pytest.raises(ValueError):
        schema.add_stat("caf\u00e9")


def test_snapshot_by_name_index_attribute() -> None:
    schema = StatsSchema([("frags", StatMode.COUNTER), ("hwm", StatMode.MAXIMUM)])
    s = Stats(schema)
    extra = schema.add_stat("user")  # added after Stats was made: it grows
    s.add(0, 5)
    s.maximum(1, 7)
    s.maximum(1, 3)
    s.add(extra)
    snap = s.snapshot()
    assert isinstance(snap, StatsSnapshot)
    assert snap["frags"] == snap[0] == snap.frags == 5
    assert snap["hwm"] == snap[1] == snap.hwm == 7
    assert snap["user"] == snap[2] == 1
    with pytest.raises(AttributeError):
        _ = snap.user  # only core statistics by attribute
    with pytest.raises(AttributeError):
        _ = snap.nothing
    with pytest.raises(KeyError):
        _ = snap["nothing"]
    assert list(snap) == ["frags", "hwm", "user"]
    assert dict(snap) == {"frags": 5, "hwm": 7, "user": 1}
    assert snap.values_list() == [5, 7, 1]
    assert len(snap) == 3
    assert "frags=5" in repr(snap)
    # A snapshot does not move with later updates.
    s.add(0)
    assert snap.frags == 5 and s.snapshot().frags == 6


def test_clear_is_a_baseline_for_counters() -> None:
    schema = StatsSchema(
        [("c", StatMode.COUNTER), ("m", StatMode.MAXIMUM), ("g", StatMode.GAUGE)]
    )
    s = Stats(schema)
    s.add(0, 10)
    s.maximum(1, 9)
    s.set(2, 4)
    s.clear()
    snap = s.snapshot()
    assert (snap.c, snap.m, snap.g) == (0, 0, 4)
    assert s.values[0] == 10  # the live counter is never reset
    s.add(0, 3)
    s.maximum(1, 2)
    assert s.snapshot().c == 3 and s.since_clear(0) == 3
    assert s.snapshot().m == 2
    s.clear(["m"])
    assert s.snapshot().c == 3 and s.snapshot().m == 0
    with pytest.raises(KeyError):
        s.clear(["nope"])
