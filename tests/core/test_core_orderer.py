"""The ordering core, behaviour by behaviour, with a fake clock (``now=``), no sleeping."""

from __future__ import annotations

import pytest
from core_helpers import batch, frag, pairs, send, timestamps

from evb.batch import NULL_TIMESTAMP, build_batch
from evb.config import CONFIG_NAMES, OrdererConfig
from evb.errors import ConfigError
from evb.notify import BarrierComplete, BarrierIncomplete, FlowChange
from evb.orderer import Orderer

# ---------------------------------------------------------------- NULL timestamps


def test_null_first_fragment_gets_zero_and_flattened_output_carries_it() -> None:
    o = Orderer()
    o.submit(batch(frag(3, NULL_TIMESTAMP, b"a"), frag(3, NULL_TIMESTAMP, b"b")), now=0.0)
    out = o.flush(0.0)
    assert timestamps(out) == [0, 0]
    flat = out.fragments_batch().flatten().tobytes()
    assert int.from_bytes(flat[0:8], "little") == 0
    assert int.from_bytes(flat[21:29], "little") == 0
    assert o.duplicate_stats() == (0, [])


def test_null_forward_fill_in_mixed_multi_source_message() -> None:
    o = Orderer()
    o.bind("c", [1, 2])
    msg = batch(
        frag(1, 10, b"a"),
        frag(2, 20, b"b"),
        frag(1, NULL_TIMESTAMP, b"c"),
        frag(1, 15, b"d"),
        frag(2, NULL_TIMESTAMP, b"e"),
        frag(1, NULL_TIMESTAMP, b"f"),
    )
    o.submit(msg, now=0.0)
    out = o.flush(0.0)
    got = [(f.source_id, f.timestamp, f.payload) for f in out.fragments_batch().fragments()]
    assert got == [
        (1, 10, b"a"),
        (1, 10, b"c"),
        (1, 15, b"d"),
        (1, 15, b"f"),
        (2, 20, b"b"),
        (2, 20, b"e"),
    ]
    # The flattened bytes carry the assigned timestamps (header invariant).
    flat = out.fragments_batch().flatten().tobytes()
    pos, seen = 0, []
    while pos < len(flat):
        seen.append(int.from_bytes(flat[pos : pos + 8], "little"))
        pos += 20 + int.from_bytes(flat[pos + 12 : pos + 16], "little")
    assert seen == [10, 10, 15, 15, 20, 20]
    assert o.duplicate_stats() == (0, [])
    assert o.stats().null_timestamps == 3
    assert o.source_stats(1).null_timestamps == 2


def test_null_uses_previous_message_of_the_source() -> None:
    o = Orderer()
    send(o, 1, [42], now=0.0)
    o.submit(batch(frag(1, NULL_TIMESTAMP)), now=0.0)
    assert timestamps(o.flush(0.0)) == [42]


def test_null_after_reset_is_zero() -> None:
    o = Orderer()
    send(o, 1, [42], now=0.0)
    o.reset()
    o.submit(batch(frag(1, NULL_TIMESTAMP)), now=0.0)
    assert timestamps(o.flush(0.0)) == [0]


# ---------------------------------------------------------------- duplicates


def test_first_fragment_is_never_a_duplicate() -> None:
    o = Orderer()
    send(o, 1, [0], now=0.0)
    send(o, 2, [0, 0], now=0.0)
    assert o.duplicate_stats() == (1, [(2, 1, 0)])


def test_duplicate_across_messages_and_clear() -> None:
    o = Orderer()
    send(o, 1, [5], now=0.0)
    send(o, 1, [5], now=0.0)
    assert o.duplicate_stats() == (1, [(1, 1, 5)])
    o.clear_duplicate_stats()
    assert o.duplicate_stats() == (0, [])
    send(o, 1, [6, 6], now=0.0)
    assert o.duplicate_stats() == (1, [(1, 1, 6)])


def test_assigned_null_after_duplicate_value_is_not_a_duplicate() -> None:
    o = Orderer()
    o.submit(batch(frag(1, 7), frag(1, NULL_TIMESTAMP), frag(1, NULL_TIMESTAMP)), now=0.0)
    assert o.duplicate_stats() == (0, [])
    # A real fragment equal to the assigned one is compared to the previous received (7).
    o.submit(batch(frag(1, 7)), now=0.0)
    assert o.duplicate_stats() == (1, [(1, 1, 7)])


# ---------------------------------------------------------------- out of order


def test_out_of_order_insert_and_getoostats() -> None:
    o = Orderer()
    o.bind("c", [1, 2])
    send(o, 1, [10, 20], now=0.0)
    send(o, 1, [15], now=0.0)
    send(o, 1, [30, 25, 40], now=0.0)
    assert o.out_of_order_stats() == ((2, 30, 25), [(1, 2, 30, 25)])
    out = o.flush(0.0)
    assert timestamps(out) == [10, 15, 20, 25, 30, 40]
    assert [f.payload for f in out.fragments_batch().fragments()] == [
        b"1:10", b"1:15", b"1:20", b"1:25", b"1:30", b"1:40"
    ]
    o.clear_out_of_order_stats()
    assert o.out_of_order_stats() == ((0, 0, 0), [])


def test_out_of_order_insert_keeps_byte_accounting() -> None:
    # Regression: an out-of-order insert used to forget the bytes already queued.
    o = Orderer()
    o.bind("c", [1, 2])
    o.submit(batch(frag(1, 10, b"x" * 10), frag(1, 20, b"x" * 20)), now=0.0)
    o.submit(batch(frag(1, 15, b"x" * 5)), now=0.0)
    assert o.queued_bytes == 35
    _, _, total, rows, _ = o.input_stats()
    assert total == 3
    assert rows[0] == (1, 3, 10, 35, 0, 35)
    o.flush(0.0)
    _, _, total, rows, inflight = o.input_stats()
    assert rows[0] == (1, 0, 0, 0, 35, 35)
    assert o.queued_bytes == 0
    assert inflight == 35


def test_out_of_order_equal_timestamps_stay_stable() -> None:
    o = Orderer()
    o.bind("c", [1, 2])
    o.submit(batch(frag(1, 10, b"a"), frag(1, 20, b"b")), now=0.0)
    o.submit(batch(frag(1, 10, b"c"), frag(1, 20, b"d")), now=0.0)
    out = o.flush(0.0)
    assert [f.payload for f in out.fragments_batch().fragments()] == [b"a", b"c", b"b", b"d"]


# ---------------------------------------------------------------- ties and merge


def test_pass_is_ordered_by_timestamp_then_source() -> None:
    o = Orderer()
    o.bind("c", [1, 2, 3])
    send(o, 3, [5, 5, 9], now=0.0)
    send(o, 1, [5, 9], now=0.0)
    out = send(o, 2, [9, 10], now=0.0)
    assert pairs(out) == [(1, 5), (3, 5), (3, 5), (1, 9), (2, 9), (3, 9)]


# ---------------------------------------------------------------- dead sources and barriers


def test_dead_source_does_not_hold_a_barrier() -> None:
    o = Orderer()
    o.bind("c", [1, 2, 3], now=0.0)
    o.mark_dead(3, now=0.0)
    assert o.is_dead(3)
    o.submit(batch(frag(1, 10, barrier=1)), now=0.0)
    assert o.poll(0.0).batches == []
    o.submit(batch(frag(2, 11, barrier=1)), now=0.0)
    out = o.poll(0.0)
    assert len(out.batches) == 1
    assert out.notifications == [BarrierComplete(barriers=((1, 1), (2, 1)))]


def test_marking_dead_releases_waiting_barrier_as_incomplete() -> None:
    o = Orderer()
    o.bind("a", [1, 2])
    o.bind("b", [3])
    o.submit(batch(frag(1, 10, barrier=1)), now=0.0)
    o.submit(batch(frag(2, 10, barrier=3)), now=0.0)
    assert o.poll(0.0).batches == []
    out = o.mark_connection_dead("b", now=0.5)
    assert len(out.batches) == 1
    assert out.batches[0].source_ids.tolist() == [1, 2]
    assert out.notifications == [BarrierIncomplete(barriers=((1, 1), (2, 3)), missing=(3,))]
    assert o.barrier_stats()[1] == (1, 0, 1, [(1, 1)], [(3, 1)])


def test_mark_dead_single_id_and_revive_by_fragment() -> None:
    o = Orderer()
    o.bind("c", [1, 2])
    o.mark_dead(2, now=0.0)
    assert o.is_dead(2)
    send(o, 2, [5], now=0.0)
    assert not o.is_dead(2)
    o.mark_connection_dead("c", now=0.0)
    assert o.is_dead(1) and o.is_dead(2)
    o.revive_connection("c")
    assert not o.is_dead(1) and not o.is_dead(2)
    with pytest.raises(KeyError):
        o.mark_dead(99, now=0.0)
    with pytest.raises(KeyError):
        o.mark_connection_dead("nope", now=0.0)


def test_dead_empty_queue_does_not_hold_the_window() -> None:
    o = Orderer()
    o.bind("c", [1, 2])
    o.mark_dead(2, now=0.0)
    assert timestamps(send(o, 1, [1, 2], now=0.0)) == [1, 2]


def test_barrier_behind_barrier_is_a_barrier_too() -> None:
    o = Orderer()
    o.bind("c", [1, 2])
    o.submit(batch(frag(1, 1, barrier=1), frag(1, 2, barrier=2), frag(1, 3)), now=0.0)
    o.submit(batch(frag(2, 1, barrier=1), frag(2, 2, barrier=2), frag(2, 4)), now=0.0)
    out = o.poll(0.0)
    kinds = [b.barrier_types.tolist() for b in out.batches]
    assert kinds[:2] == [[1, 1], [2, 2]]
    assert len(out.notifications) == 2


# ---------------------------------------------------------------- flush, abort, reset


def test_flush_emits_everything_with_barriers_at_their_place() -> None:
    o = Orderer()
    o.bind("c", [1, 2, 3])
    o.submit(batch(frag(1, 10), frag(1, 30, barrier=1), frag(1, 40)), now=0.0)
    o.submit(batch(frag(2, 20), frag(2, 50)), now=0.0)
    out = o.flush(0.0)
    assert [b.timestamps.tolist() for b in out.batches] == [[10, 20], [30], [40, 50]]
    assert out.batches[1].barrier_types.tolist() == [1]
    assert out.notifications == [BarrierIncomplete(barriers=((1, 1),), missing=(2, 3))]
    assert o.queued_fragments == 0
    assert o.input_stats()[:3] == (0, 0, 0)


def test_abort_barrier() -> None:
    o = Orderer()
    o.bind("c", [1, 2])
    o.submit(batch(frag(1, 10, barrier=2), frag(1, 20)), now=0.0)
    assert o.poll(0.0).batches == []
    out = o.abort_barrier(0.0)
    assert out.batches[0].barrier_types.tolist() == [2]
    assert out.notifications == [BarrierIncomplete(barriers=((1, 2),), missing=(2,))]
    # Nothing pending: a no-op.
    assert o.abort_barrier(0.0).notifications == []


def test_abort_barrier_complete() -> None:
    o = Orderer()
    o.submit(batch(frag(1, 10, barrier=2)), now=0.0)
    out = o.abort_barrier(0.0)
    assert out.notifications == [BarrierComplete(barriers=((1, 2),))]


def test_reset_forgets_timestamps_keeps_data_and_stats() -> None:
    o = Orderer(OrdererConfig(window_s=1.0))
    send(o, 1, [100, 100], now=0.0)  # emitted, one duplicate
    o.bind("c", [2])
    send(o, 2, [50], now=0.0)
    o.reset()
    out = o.poll(2.0)
    assert timestamps(out) == [50]
    assert o.late_stats() == (0, 0, [])  # nothing counted as late after reset
    assert o.duplicate_stats() == (1, [(1, 1, 100)])
    send(o, 1, [100], now=3.0)
    assert o.duplicate_stats()[0] == 1  # first fragment after reset is no duplicate


# ---------------------------------------------------------------- configuration


def test_config_set_get_and_validation() -> None:
    o = Orderer()
    assert o.get_config("window") == 20.0
    o.set_config("window", "2.5")
    assert o.get_config("window") == 2.5
    assert o.config.window_s == 2.5
    with pytest.raises(ConfigError) as info:
        o.set_config("window", 0)
    assert str(info.value) == "Build time window must be > 0 was 0"
    with pytest.raises(ConfigError, match="Build time window must be > 0 was -1"):
        o.set_config("window", "-1")
    with pytest.raises(ConfigError, match='expected floating-point number but got "x"'):
        o.set_config("window", "x")
    with pytest.raises(ConfigError, match='expected integer but got "x"'):
        o.set_config("XoffThreshold", "x")
    with pytest.raises(ConfigError, match="Invalid configuration parameter"):
        o.set_config("bogus", 1)
    with pytest.raises(ConfigError):
        o.get_config("bogus")
    assert o.get_config("window") == 2.5  # unchanged by failures
    # Thresholds can be set in either order (as in NSCLDAQ): lowering XoffThreshold below the
    # current XonThreshold is accepted, and the effective XON level is capped at XOFF.
    o.set_config("XoffThreshold", 100)
    assert o.get_config("XoffThreshold") == 100
    assert o.get_config("XonThreshold") > 100
    o.set_config("XonThreshold", 500)
    o.set_config("XoffThreshold", "1000")
    o.set_config("perQXonThreshold", 5)
    o.set_config("perQXoffThreshold", 10)
    o.set_config("sourceTimeout", 3)
    assert [o.get_config(n) for n in CONFIG_NAMES] == [2.5, 1000, 500, 10, 5, 3.0]
    o.set_config("perQXonThreshold", 11)  # accepted; acts as perQXoffThreshold (10)
    with pytest.raises(ConfigError):
        o.set_config("sourceTimeout", -1)


def test_config_constructor_window_zero() -> None:
    with pytest.raises(ConfigError, match=r"^Build time window must be > 0 was 0$"):
        OrdererConfig(window_s=0)


# ---------------------------------------------------------------- flow control


def test_global_xoff_xon_by_bytes_including_unwritten() -> None:
    o = Orderer(OrdererConfig(xoff_bytes=100, xon_bytes=50))
    o.bind("c", [1, 2])
    o.submit(batch(frag(1, 1, b"x" * 60)), now=0.0)
    assert o.poll(0.0).notifications == []
    o.submit(batch(frag(1, 2, b"x" * 40)), now=0.0)
    out = o.poll(0.0)
    assert out.notifications == [FlowChange(xon=False)]
    assert o.xoff
    assert o.poll(0.0).notifications == []  # no repeat
    # Emitting does not resume: the bytes are still unwritten.
    out = o.flush(0.0)
    assert out.fragment_count == 2 and out.notifications == []
    assert o.inflight_bytes == 100 and o.unwritten_bytes == 100
    assert o.written(50, now=1.0) == []  # 50 is not below 50
    assert o.written(1, now=1.0) == [FlowChange(xon=True)]
    assert not o.xoff
    assert o.stats().xoff_episodes == 1


def test_per_queue_xoff_xon_by_depth_names_the_connection() -> None:
    o = Orderer(OrdererConfig(perq_xoff_fragments=3, perq_xon_fragments=1))
    o.bind("conn-a", [1])
    o.bind("conn-b", [2])
    out = send(o, 1, [1, 2, 3], now=0.0)
    assert out.notifications == [FlowChange(xon=False, connection="conn-a")]
    assert o.paused_connections == frozenset({"conn-a"})
    out = send(o, 2, [2], now=0.0)  # emits 1, 2 from sid 1 (and 2): depth 1, not < 1
    assert out.notifications == []
    out = send(o, 2, [3], now=0.0)
    assert out.notifications == [FlowChange(xon=True, connection="conn-a")]
    assert o.paused_connections == frozenset()
    assert o.source_stats(1).xoff_episodes == 1


# ---------------------------------------------------------------- deadlines and timeouts


def test_next_deadline_window() -> None:
    o = Orderer(OrdererConfig(window_s=2.0, source_timeout_s=0))
    assert o.next_deadline() is None
    o.bind("c", [1, 2])
    send(o, 1, [5], now=10.0)
    assert o.next_deadline() == 12.0
    send(o, 1, [6], now=11.0)
    assert o.next_deadline() == 12.0
    assert timestamps(o.poll(11.9)) == []
    assert timestamps(o.poll(12.0)) == [5]
    assert o.next_deadline() == 13.0
    assert timestamps(o.poll(13.0)) == [6]
    assert o.next_deadline() is None


def test_next_deadline_barrier_timeout() -> None:
    o = Orderer(OrdererConfig(window_s=1.0, source_timeout_s=0))
    o.bind("c", [1, 2])
    o.submit(batch(frag(1, 3, barrier=1)), now=100.0)
    assert o.poll(100.0).batches == []
    assert o.next_deadline() == 104.0
    o.poll(101.0)
    # Regression: the window deadline of a barrier-headed queue used to stay in the past.
    assert o.next_deadline() == 104.0
    out = o.poll(104.0)
    assert len(out.notifications) == 1
    assert o.next_deadline() is None


def test_next_deadline_not_in_the_past_while_data_waits_for_the_mark() -> None:
    # All queues hold data: the mark decides, the window deadline does not apply.
    o = Orderer(OrdererConfig(window_s=1.0, source_timeout_s=0))
    o.bind("c", [1, 2])
    send(o, 1, [1, 2, 3], now=0.0)
    send(o, 2, [1], now=0.5)
    send(o, 2, [10], now=0.6)
    o.poll(5.0)
    d = o.next_deadline()
    assert d is None or d > 5.0


def test_next_deadline_after_out_of_order_merge_tracks_the_head() -> None:
    o = Orderer(OrdererConfig(window_s=1.0, source_timeout_s=0))
    o.bind("c", [1, 2])
    send(o, 1, [10], now=0.0)
    # Merged segment: ts 5 received at 3.0, then ts 10 received at 0.0. The head (5) gates
    # the window, so the deadline is 4.0, not the stale 1.0 of the older row behind it.
    send(o, 1, [5], now=3.0)
    assert o.next_deadline() == 4.0
    assert timestamps(o.poll(3.9)) == []
    assert timestamps(o.poll(4.0)) == [5, 10]
    assert o.next_deadline() is None


def test_source_timeout_marks_connection_dead() -> None:
    o = Orderer(OrdererConfig(source_timeout_s=5.0))
    o.bind("c", [1, 2], now=0.0)
    o.bind("d", [3], now=2.0)
    assert o.next_deadline() == 5.0
    o.poll(4.9)
    assert not o.is_dead(1)
    o.poll(5.0)
    assert o.is_dead(1) and o.is_dead(2) and not o.is_dead(3)
    assert o.next_deadline() == 7.0
    o.touch("d", now=6.0)
    assert o.next_deadline() == 11.0
    send(o, 1, [1], now=6.0, conn="c")
    assert not o.is_dead(1) and not o.is_dead(2)


def test_source_timeout_not_while_xoff() -> None:
    o = Orderer(OrdererConfig(source_timeout_s=5.0, xoff_bytes=10, xon_bytes=5))
    o.bind("c", [1], now=0.0)
    o.bind("d", [2], now=0.0)
    o.submit(batch(frag(1, 1, b"x" * 20)), now=0.0, connection="c")
    assert o.poll(0.0).notifications == [FlowChange(xon=False)]
    assert o.next_deadline() != 5.0
    o.poll(100.0)
    assert not o.is_dead(1) and not o.is_dead(2)
    o.flush(100.0)
    assert o.written(20, now=100.0) == [FlowChange(xon=True)]
    # The clock of silence restarts at XON.
    o.poll(104.0)
    assert not o.is_dead(2)
    o.poll(105.0)
    assert o.is_dead(2)


def test_source_timeout_not_while_connection_paused() -> None:
    o = Orderer(
        OrdererConfig(source_timeout_s=5.0, perq_xoff_fragments=2, perq_xon_fragments=1)
    )
    o.bind("c", [1], now=0.0)
    o.bind("d", [2], now=0.0)
    send(o, 1, [1, 2], now=0.0, conn="c")
    send(o, 2, [0], now=0.0, conn="d")
    assert o.paused_connections == frozenset({"c"})
    d = o.next_deadline()
    assert d == 5.0  # "d" only: "c" is paused, its silence does not count
    # At 10 "d" times out; with its empty queue dead, the mark lets sid 1's data out, which
    # resumes "c" and restarts its silence clock (regression: it was left stale, so "c" was
    # marked dead on the next poll, and the deadline sat in the past).
    out = o.poll(10.0)
    assert o.is_dead(2)
    assert timestamps(out) == [1, 2]
    assert FlowChange(xon=True, connection="c") in out.notifications
    assert not o.is_dead(1)
    assert o.next_deadline() == 15.0
    o.poll(14.9)
    assert not o.is_dead(1)
    o.poll(15.0)
    assert o.is_dead(1)


# ---------------------------------------------------------------- statistics shapes


def test_fresh_result_shapes() -> None:
    o = Orderer()
    assert o.input_stats() == (0, 0, 0, [], 0)
    assert o.output_stats() == (0, [])
    assert o.late_stats() == (0, 0, [])
    assert o.duplicate_stats() == (0, [])
    assert o.out_of_order_stats() == ((0, 0, 0), [])
    assert o.barrier_stats() == ((0, 0, 0, [], []), (0, 0, 0, [], []))
    assert o.source_ids() == []


def test_input_and_output_stats_shapes() -> None:
    o = Orderer()
    o.bind("c", [2, 1])
    assert o.source_ids() == [1, 2]
    assert o.connection_sources("c") == [2, 1]
    o.submit(batch(frag(2, 7, b"abcd"), frag(2, 9, b"ef")), now=0.0)
    o.submit(batch(frag(1, 5, b"x")), now=0.0)
    o.poll(0.0)  # mark 5: emits 5 (sid 1)
    assert o.input_stats() == (
        7,
        9,
        2,
        [(1, 0, 0, 0, 1, 1), (2, 2, 7, 6, 0, 6)],
        1,
    )
    assert o.output_stats() == (1, [(1, 1), (2, 0)])
    o.flush(0.0)
    assert o.output_stats() == (3, [(1, 1), (2, 2)])
    o.clear_output_stats()
    assert o.output_stats() == (0, [(1, 0), (2, 0)])
    send(o, 1, [10], now=0.0)
    o.flush(0.0)
    assert o.output_stats() == (1, [(1, 1), (2, 0)])
    assert o.input_stats()[4] == 11
    assert o.written(7, now=0.0) == []
    assert o.input_stats()[4] == 4


def test_late_stats_and_clear() -> None:
    o = Orderer(OrdererConfig(window_s=1.0))
    send(o, 1, [100], now=0.0)
    o.bind("c", [2, 3])
    send(o, 2, [40, 90], now=0.0)
    send(o, 3, [95], now=0.0)
    o.poll(1.0)
    assert o.late_stats() == (3, 60, [(2, 2, 60), (3, 1, 5)])
    o.clear_late_stats()
    assert o.late_stats() == (0, 0, [])
    assert o.stats().late == 0


def test_barrier_stats_heterogeneous_and_clear() -> None:
    o = Orderer()
    o.bind("c", [1, 2])
    o.submit(batch(frag(1, 1, barrier=1)), now=0.0)
    o.submit(batch(frag(2, 1, barrier=3)), now=0.0)
    out = o.poll(0.0)
    assert out.notifications == [BarrierComplete(barriers=((1, 1), (2, 3)))]
    assert o.barrier_stats()[0] == (1, 0, 1, [(1, 1), (3, 1)], [(1, [(1, 1)]), (2, [(3, 1)])])
    o.clear_barrier_stats()
    assert o.barrier_stats() == ((0, 0, 0, [], []), (0, 0, 0, [], []))


def test_overall_stats_snapshot() -> None:
    o = Orderer()
    o.bind("c", [1, 2])
    send(o, 1, [1, 2], now=0.0)
    snap = o.stats()
    assert snap.fragments_in == 2
    assert snap["messages_in"] == 1
    assert snap.queued_fragments == 2
    assert snap.sources == 2
    assert snap.queued_bytes == len(b"1:1") + len(b"1:2")
    o.flush(0.0)
    assert o.stats().fragments_out == 2
    assert o.stats().passes == 1


def test_empty_message_is_accepted_and_revives() -> None:
    o = Orderer()
    o.bind("c", [1])
    o.mark_dead(1, now=0.0)
    o.submit(build_batch([]), now=1.0, connection="c")
    assert not o.is_dead(1)
    assert o.stats().messages_in == 1
    assert o.stats().fragments_in == 0


def test_source_that_closed_after_queueing_its_barrier_still_takes_part() -> None:
    """Regression: a source whose connection closed while its end barrier was still queued
    behind data must not be left out of that barrier (seen in the demo as split groups)."""
    o = Orderer()
    for sid in (1, 2, 3):
        o.bind(f"c{sid}", [sid], 0.0)
    o.submit(batch(frag(1, 10), frag(1, 100, barrier=2)), now=0.0, connection="c1")
    o.submit(batch(frag(2, 50), frag(2, 100, barrier=2)), now=0.0, connection="c2")
    assert o.poll(0.0).batches == []  # source 3 is live and empty: window mode holds all
    # 2 closes while its barrier is still behind its data; 3 (empty) keeps the window mode.
    out = o.mark_connection_dead("c2", 1.0)
    assert timestamps(out) == []
    # 3 closes with nothing sent: 1 and 2 decide the mark, 1 reaches its barrier first, and
    # 2 (dead, barrier still queued) must still take part in it.
    out.extend(o.mark_connection_dead("c3", 1.0))
    assert timestamps(out) == [10, 50, 100, 100]
    notes = [n for n in out.notifications if isinstance(n, BarrierComplete | BarrierIncomplete)]
    assert notes == [BarrierComplete(barriers=((1, 2), (2, 2)))]
