"""Properties of the event builder (glom stage), fed in arbitrary chunks."""

from __future__ import annotations

import numpy as np
from ev_helpers import reference_events
from hypothesis import given, settings
from hypothesis import strategies as st

from evb.batch import Fragment, FragmentBatch, build_batch
from evb.builder import BuildConfig, EventBatch, EventBuilder, TimestampPolicy
from evb.ringsink import concat_events

settings.load_profile("events")


@st.composite
def ordered_streams(draw: st.DrawFn) -> list[Fragment]:
    """An orderer's output: rising (timestamp, source id), barriers here and there."""
    n = draw(st.integers(0, 60))
    ts = 1000
    out = []
    for _ in range(n):
        ts += draw(st.integers(0, 40))
        bar = draw(st.sampled_from([0, 0, 0, 0, 0, 0, 1, 2]))
        out.append(
            Fragment(
                timestamp=ts,
                source_id=draw(st.integers(0, 4)),
                payload=bytes(draw(st.integers(0, 6))),
                barrier_type=bar,
            )
        )
    out.sort(key=lambda f: (f.timestamp, f.source_id))
    return out


configs = st.builds(
    BuildConfig,
    build=st.booleans(),
    dt_ticks=st.integers(0, 100),
    max_fragments=st.integers(0, 5),
    policy=st.sampled_from(list(TimestampPolicy)),
)


def _feed(frags: list[Fragment], cfg: BuildConfig, cuts: list[int]) -> EventBatch:
    b = EventBuilder(cfg)
    parts = []
    pos = 0
    for c in [*sorted(set(min(c, len(frags)) for c in cuts)), len(frags)]:
        parts.append(b.feed(build_batch(frags[pos:c]) if c > pos else FragmentBatch.empty()))
        pos = max(pos, c)
    parts.append(b.flush())
    assert b.pending == 0
    return concat_events(parts)


def _as_lists(ev: EventBatch) -> list[tuple[int, list[Fragment]]]:
    frags = ev.fragments.fragments()
    return [
        (int(t), frags[s : s + c])
        for s, c, t in zip(ev.starts.tolist(), ev.counts.tolist(), ev.timestamps.tolist(),
                           strict=True)
    ]


@given(ordered_streams(), configs, st.lists(st.integers(0, 60), max_size=6))
def test_builder_matches_plain_rule_whatever_the_chunks(
    frags: list[Fragment], cfg: BuildConfig, cuts: list[int]
) -> None:
    ev = _feed(frags, cfg, cuts)
    got = _as_lists(ev)
    # every fragment in exactly one event, in order
    assert [f for _, e in got for f in e] == frags
    assert got == reference_events(frags, cfg)


@given(ordered_streams(), configs, st.lists(st.integers(0, 60), max_size=4))
def test_builder_invariants(frags: list[Fragment], cfg: BuildConfig, cuts: list[int]) -> None:
    ev = _feed(frags, cfg, cuts)
    assert int(ev.counts.sum()) == len(frags)
    ts = ev.fragments.timestamps.astype(np.int64)
    firsts = ts[ev.starts] if len(ev) else ts[:0]
    # events ordered by their first fragment
    assert bool(np.all(np.diff(firsts) >= 0))
    for (s, c, t) in zip(ev.starts.tolist(), ev.counts.tolist(), ev.timestamps.tolist(),
                         strict=True):
        e_ts = ts[s : s + c]
        bars = ev.fragments.barrier_types[s : s + c]
        # an event spans at most dt ticks from its first fragment
        assert int(e_ts.max()) - int(e_ts[0]) <= cfg.dt_ticks or c == 1
        if cfg.max_fragments:
            assert c <= cfg.max_fragments
        if not cfg.build:
            assert c == 1
        # a barrier travels alone
        if bars.any():
            assert c == 1
        if cfg.policy is TimestampPolicy.EARLIEST:
            assert t == int(e_ts.min())
        elif cfg.policy is TimestampPolicy.LATEST:
            assert t == int(e_ts.max())
        else:
            assert t == int(e_ts[0]) + int((e_ts - e_ts[0]).sum()) // c


def test_build_example_dt_and_policies() -> None:
    frags = [Fragment(timestamp=t, source_id=s) for t, s in
             [(100, 1), (150, 2), (200, 3), (201, 1), (400, 2)]]
    frags.insert(4, Fragment(timestamp=300, source_id=1, barrier_type=2))
    for policy, want in [
        (TimestampPolicy.EARLIEST, [100, 201, 300, 400]),
        (TimestampPolicy.LATEST, [200, 201, 300, 400]),
        (TimestampPolicy.AVERAGE, [150, 201, 300, 400]),
    ]:
        ev = _feed(frags, BuildConfig(build=True, dt_ticks=100, policy=policy), [])
        assert ev.counts.tolist() == [3, 1, 1, 1]
        assert ev.timestamps.tolist() == want
        assert ev.is_barrier.tolist() == [False, False, True, False]
