"""Hypothesis properties of the orderer over any interleaving of per-source streams.

Several sources, random message splits, random arrival order, random poll times (including
polls at ``next_deadline()``, as the driver does), then a final flush:

- everything that goes in comes out exactly once;
- each data batch (one pass) is ordered by (timestamp, source_id);
- per-source order is kept (stable for equal timestamps);
- the late count equals the data fragments emitted behind the maximum of earlier data output;
- barriers come out as groups: only barriers, at most one per source;
- byte accounting returns to zero; ``next_deadline()`` is never at or before the last poll
  (a past deadline makes the driver spin);
- sources marked dead at random moments change none of this.
"""

from __future__ import annotations

import itertools
from collections import Counter
from dataclasses import dataclass

from hypothesis import given, settings
from hypothesis import strategies as st

from evb.batch import NULL_TIMESTAMP, Fragment, FragmentBatch, build_batch
from evb.config import OrdererConfig
from evb.notify import BarrierComplete, BarrierIncomplete, LateFragment
from evb.orderer import Orderer, Output

settings.load_profile("core")

WINDOW = 2.0
STEPS = [0.0, 0.0, 0.25, 0.5, 1.0, 2.0, 3.0, 9.0]  # dyadic: exact float arithmetic


@dataclass
class Scenario:
    streams: dict[int, list[Fragment]]  # per source, in sending order
    expected_ts: dict[bytes, int]  # payload -> timestamp after NULL assignment
    messages: list[tuple[int, list[Fragment]]]  # arrival order
    steps: list[float]
    extra_polls: list[int]  # 0 none, 1 poll later, 2 poll at next_deadline, 3 mark dead


@st.composite
def scenarios(draw: st.DrawFn, *, sorted_streams: bool, barriers: bool) -> Scenario:
    nsrc = draw(st.integers(1, 4))
    sids = draw(st.lists(st.integers(0, 9), min_size=nsrc, max_size=nsrc, unique=True))
    streams: dict[int, list[Fragment]] = {}
    expected: dict[bytes, int] = {}
    per_source_msgs: dict[int, list[list[Fragment]]] = {}
    for sid in sids:
        n = draw(st.integers(0, 20))
        if sorted_streams:
            start = draw(st.integers(0, 30))
            incs = draw(st.lists(st.integers(0, 4), min_size=n, max_size=n))
            ts = list(itertools.accumulate(incs, initial=start))[1:]
        else:
            ts = draw(st.lists(st.integers(0, 60), min_size=n, max_size=n))
        kinds = draw(
            st.lists(
                st.sampled_from(["d"] * 6 + ["n"] + (["b"] if barriers else [])),
                min_size=n,
                max_size=n,
            )
        )
        frags = []
        prev = 0
        for i, (t, kind) in enumerate(zip(ts, kinds, strict=True)):
            payload = f"{sid}:{i}".encode() + b"." * (i % 3)
            if kind == "n":
                frags.append(Fragment(timestamp=NULL_TIMESTAMP, source_id=sid, payload=payload))
                expected[payload] = prev
            else:
                bt = draw(st.integers(1, 3)) if kind == "b" else 0
                frags.append(
                    Fragment(timestamp=t, source_id=sid, payload=payload, barrier_type=bt)
                )
                expected[payload] = t
                prev = t
        streams[sid] = frags
        sizes = draw(st.lists(st.integers(1, 6), min_size=n, max_size=n))
        msgs, pos = [], 0
        for size in sizes:
            if pos >= n:
                break
            msgs.append(frags[pos : pos + size])
            pos += size
        per_source_msgs[sid] = msgs
    rnd = draw(st.randoms(use_true_random=False))
    pending = {sid: list(m) for sid, m in per_source_msgs.items() if m}
    messages = []
    while pending:
        sid = rnd.choice(sorted(pending))
        messages.append((sid, pending[sid].pop(0)))
        if not pending[sid]:
            del pending[sid]
    k = len(messages)
    steps = draw(st.lists(st.sampled_from(STEPS), min_size=k, max_size=k))
    extra = draw(st.lists(st.sampled_from([0, 0, 1, 2, 3]), min_size=k, max_size=k))
    return Scenario(streams, expected, messages, steps, extra)


def run(sc: Scenario, *, bind: bool, late_details: bool = False) -> tuple[Orderer, list[Output]]:
    o = Orderer(OrdererConfig(window_s=WINDOW, source_timeout_s=0))
    o.late_details = late_details
    if bind:
        for sid in sc.streams:
            o.bind(f"conn{sid}", [sid], now=0.0)
    outs: list[Output] = []
    now = 0.0

    def poll(at: float) -> None:
        outs.append(o.poll(at))
        d = o.next_deadline()
        assert d is None or d > at, f"deadline {d} not after the poll at {at}"

    for (sid, msg), step, extra in zip(sc.messages, sc.steps, sc.extra_polls, strict=True):
        now += step
        o.submit(build_batch(msg), now=now, connection=f"conn{sid}")
        poll(now)
        if extra == 1:
            now += 1.5
            poll(now)
        elif extra == 2:
            d = o.next_deadline()
            if d is not None:
                now = max(now, d)
                poll(now)
        elif extra == 3:
            # The source dies (it revives with its next fragment): nothing may be lost.
            outs.append(o.mark_dead(sid, now=now))
            d = o.next_deadline()
            assert d is None or d > now
    now += 0.25
    outs.append(o.flush(now))
    return o, outs


def out_batches(outs: list[Output]) -> list[FragmentBatch]:
    return [b for out in outs for b in out.batches if len(b)]


def check_common(sc: Scenario, o: Orderer, outs: list[Output]) -> None:
    batches = out_batches(outs)
    got = [f for b in batches for f in b.fragments()]
    sent = [f for frags in sc.streams.values() for f in frags]
    # Exactly once, with the assigned timestamp, in the flattened bytes too.
    assert Counter(f.payload for f in got) == Counter(f.payload for f in sent)
    for f in got:
        assert f.timestamp == sc.expected_ts[f.payload]
        assert f.timestamp != NULL_TIMESTAMP
    flat = FragmentBatch.concat(batches).flatten().tobytes()
    assert flat == build_batch(got).flatten().tobytes()
    # Each pass ordered by (timestamp, source id); barrier groups as groups.
    for b in batches:
        bars = b.barrier_types.tolist()
        if any(bars):
            assert all(bars), "a batch mixes barriers and data"
            sids = b.source_ids.tolist()
            assert sids == sorted(set(sids)), "a barrier group has a source twice or unsorted"
        else:
            keys = list(zip(b.timestamps.tolist(), b.source_ids.tolist(), strict=True))
            assert keys == sorted(keys)
    # Accounting drains.
    assert o.queued_fragments == 0
    assert o.queued_bytes == 0
    oldest, newest, total, rows, inflight = o.input_stats()
    assert (oldest, newest, total) == (0, 0, 0)
    assert all(r[1] == 0 and r[3] == 0 for r in rows)
    assert inflight == sum(len(f.payload) for f in sent)
    assert o.output_stats()[0] == len(sent)
    # Late: data behind the maximum of earlier data passes.
    late: Counter[int] = Counter()
    top: int | None = None
    for b in batches:
        if b.barrier_types.any():
            continue
        ts = b.timestamps.tolist()
        if top is not None:
            for sid, t in zip(b.source_ids.tolist(), ts, strict=True):
                if t < top:
                    late[sid] += 1
        top = max(ts) if top is None else max(top, *ts)
    count, _, late_rows = o.late_stats()
    assert count == sum(late.values())
    assert {sid: c for sid, c, _ in late_rows} == dict(late)


def check_per_source_order(sc: Scenario, outs: list[Output]) -> None:
    got: dict[int, list[bytes]] = {}
    for b in out_batches(outs):
        for f in b.fragments():
            got.setdefault(f.source_id, []).append(f.payload)
    for sid, frags in sc.streams.items():
        assert got.get(sid, []) == [f.payload for f in frags]


@given(sc=scenarios(sorted_streams=True, barriers=False), bind=st.booleans())
def test_sorted_streams(sc: Scenario, bind: bool) -> None:
    o, outs = run(sc, bind=bind)
    check_common(sc, o, outs)
    check_per_source_order(sc, outs)
    # Duplicates: equal to the previous fragment of the source, assigned NULLs excluded.
    dups = 0
    for frags in sc.streams.values():
        for a, b in itertools.pairwise(frags):
            if b.timestamp != NULL_TIMESTAMP and sc.expected_ts[a.payload] == b.timestamp:
                dups += 1
    assert o.duplicate_stats()[0] == dups
    assert o.out_of_order_stats()[0][0] == 0


@given(sc=scenarios(sorted_streams=False, barriers=False))
def test_unsorted_streams(sc: Scenario) -> None:
    o, outs = run(sc, bind=True, late_details=True)
    check_common(sc, o, outs)
    # Stable for equal timestamps: a source's equal-timestamp fragments keep arrival order.
    pos = {f.payload: i for frags in sc.streams.values() for i, f in enumerate(frags)}
    seen: dict[tuple[int, int], int] = {}
    for b in out_batches(outs):
        for f in b.fragments():
            key = (f.source_id, f.timestamp)
            assert pos[f.payload] > seen.get(key, -1)
            seen[key] = pos[f.payload]
    late_notes = [n for out in outs for n in out.notifications if isinstance(n, LateFragment)]
    assert len(late_notes) == o.late_stats()[0]


@given(sc=scenarios(sorted_streams=True, barriers=True), bind=st.booleans())
def test_streams_with_barriers(sc: Scenario, bind: bool) -> None:
    o, outs = run(sc, bind=bind)
    check_common(sc, o, outs)
    check_per_source_order(sc, outs)
    n_bars = sum(f.barrier_type != 0 for frags in sc.streams.values() for f in frags)
    complete, incomplete = o.barrier_stats()
    groups = [b for b in out_batches(outs) if b.barrier_types.any()]
    assert complete[0] + incomplete[0] == len(groups)
    assert sum(len(g) for g in groups) == n_bars
    notes = [n for out in outs for n in out.notifications]
    done = [n for n in notes if isinstance(n, BarrierComplete)]
    partial = [n for n in notes if isinstance(n, BarrierIncomplete)]
    assert len(done) == complete[0] and len(partial) == incomplete[0]
    assert sum(c for _, c in complete[3]) == sum(len(n.barriers) for n in done)
    # The notifications name exactly the groups, in output order.
    named = [n.barriers for n in notes if isinstance(n, BarrierComplete | BarrierIncomplete)]
    assert named == [
        tuple(zip(g.source_ids.tolist(), g.barrier_types.tolist(), strict=True)) for g in groups
    ]
