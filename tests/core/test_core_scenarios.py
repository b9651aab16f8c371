"""Spec section 7: every scenario, through the Python API with a fake clock."""

from __future__ import annotations

from core_helpers import batch, frag, send, timestamps

from evb.batch import NULL_TIMESTAMP
from evb.config import OrdererConfig
from evb.notify import BarrierComplete, BarrierIncomplete, LateFragment
from evb.orderer import Orderer


def test_two_queues_mark() -> None:
    o = Orderer()
    o.bind("c", [1, 2], now=0.0)
    assert timestamps(send(o, 1, [1, 2, 3, 10], now=0.0)) == []
    assert timestamps(send(o, 2, [4, 5, 6], now=0.1)) == [1, 2, 3, 4, 5, 6]
    assert timestamps(send(o, 2, [7], now=0.2)) == [7]
    assert timestamps(send(o, 2, [12], now=0.3)) == [10]
    assert o.late_stats() == (0, 0, [])
    # 12 waits for the window (sid 1 is empty now), and leaves after it.
    assert timestamps(o.poll(20.2)) == []
    assert timestamps(o.poll(20.3)) == [12]


def test_dupstat_single_source() -> None:
    o = Orderer()
    send(o, 1, [100, 110, 110, 111], now=0.0)
    assert o.duplicate_stats() == (1, [(1, 1, 110)])


def test_dupstat_three_sources() -> None:
    o = Orderer()
    o.bind("c", [1, 2, 3], now=0.0)
    send(o, 1, [100, 110, 110, 110, 110, 120], now=0.0)
    send(o, 2, [100, 120, 130, 140, 150], now=0.0)
    send(o, 3, [112, 112, 120, 125, 130, 132], now=0.0)
    assert o.duplicate_stats() == (4, [(1, 3, 110), (3, 1, 112)])


def test_dupstat_fragment_by_fragment_messages() -> None:
    o = Orderer()
    for t in [100, 110, 110, 110, 110, 120]:
        send(o, 1, [t], now=0.0)
    assert o.duplicate_stats() == (3, [(1, 3, 110)])


def test_late() -> None:
    o = Orderer(OrdererConfig(window_s=0.5))
    o.late_details = True
    out = send(o, 1, [100], now=0.0)
    assert timestamps(out) == [100]
    o.submit(batch(frag(2, 50, b"late!")), now=1.0)
    assert timestamps(o.poll(1.0)) == []
    out = o.poll(1.5)
    assert timestamps(out) == [50]
    assert o.late_stats() == (1, 50, [(2, 1, 50)])
    assert out.notifications == [
        LateFragment(source_id=2, timestamp=50, newest=100, payload=b"late!")
    ]


def test_complete_homogeneous_barrier() -> None:
    o = Orderer()
    o.bind("c", [1, 2], now=0.0)
    o.submit(batch(frag(1, 10), frag(1, 20), frag(1, 30, barrier=1)), now=0.0)
    first = o.poll(0.0)
    o.submit(batch(frag(2, 15), frag(2, 25), frag(2, 35, barrier=1)), now=0.1)
    second = o.poll(0.1)
    assert timestamps(first) == []
    data = [b for b in second.batches if not b.barrier_types.any()]
    bars = [b for b in second.batches if b.barrier_types.any()]
    assert [int(t) for b in data for t in b.timestamps] == [10, 15, 20, 25]
    assert second.batches[-1] is bars[-1]
    assert len(bars) == 1
    assert bars[0].source_ids.tolist() == [1, 2]
    assert bars[0].barrier_types.tolist() == [1, 1]
    assert bars[0].timestamps.tolist() == [30, 35]
    assert o.barrier_stats() == (
        (1, 1, 0, [(1, 2)], [(1, [(1, 1)]), (2, [(1, 1)])]),
        (0, 0, 0, [], []),
    )
    assert second.notifications == [BarrierComplete(barriers=((1, 1), (2, 1)))]
    assert o.queued_fragments == 0


def test_incomplete_barrier_by_timeout() -> None:
    o = Orderer(OrdererConfig(window_s=1.0))
    o.bind("c", [1, 2], now=0.0)
    o.submit(batch(frag(1, 7, barrier=2)), now=0.0)
    assert o.poll(0.0).batches == []
    assert o.poll(3.9).batches == []
    out = o.poll(4.1)
    assert len(out.batches) == 1
    assert out.batches[0].barrier_types.tolist() == [2]
    assert out.notifications == [BarrierIncomplete(barriers=((1, 2),), missing=(2,))]
    assert o.barrier_stats()[1] == (1, 1, 0, [(1, 1)], [(2, 1)])
    assert o.barrier_stats()[0] == (0, 0, 0, [], [])


def test_null_timestamp() -> None:
    o = Orderer()
    first = send(o, 1, [500], now=0.0)
    o.submit(batch(frag(1, NULL_TIMESTAMP, b"n")), now=0.1)
    out = o.flush(0.1)
    assert timestamps(first) + timestamps(out) == [500, 500]
    assert out.batches[0].payload(0) == b"n"
    assert o.late_stats() == (0, 0, [])
    assert o.duplicate_stats() == (0, [])
    flat = out.batches[0].flatten().tobytes()
    assert int.from_bytes(flat[:8], "little") == 500
    assert o.stats().null_timestamps == 1
