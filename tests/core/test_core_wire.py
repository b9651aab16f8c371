"""The sans-I/O wire codec: byte-at-a-time decoding, round trips, every malformed input class."""

from __future__ import annotations

import itertools
import struct

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from evb.batch import Fragment, build_batch
from evb.errors import RemoteProtocolError, SourceError
from evb.wire import (
    Connect,
    Decoder,
    Disconnect,
    Fragments,
    MessageType,
    encode_connect,
    encode_disconnect,
    encode_error,
    encode_fragments,
    encode_message_header,
    encode_ok,
    parse_fragments,
    parse_reply,
)

settings.load_profile("core")

FRAGS = [
    Fragment(timestamp=10, source_id=1, payload=b"abc"),
    Fragment(timestamp=11, source_id=2, payload=b""),
    Fragment(timestamp=2**64 - 1, source_id=2**32 - 1, payload=b"\x00\xff" * 5, barrier_type=2),
]


def stream() -> bytes:
    return (
        encode_connect("my source", [1, 2, 7])
        + encode_fragments(FRAGS)
        + encode_fragments([])
        + encode_fragments(FRAGS[:1])
        + encode_disconnect()
    )


def fragments_of(msgs: list[object]) -> list[list[Fragment]]:
    return [m.batch.fragments() for m in msgs if isinstance(m, Fragments)]


def check_stream_messages(msgs: list[object]) -> None:
    assert len(msgs) == 5
    assert msgs[0] == Connect(description="my source", source_ids=(1, 2, 7))
    assert fragments_of(msgs) == [FRAGS, [], FRAGS[:1]]
    assert isinstance(msgs[4], Disconnect)


def test_whole_stream_at_once() -> None:
    d = Decoder()
    msgs = d.feed(stream(), received=3.5)
    check_stream_messages(msgs)
    assert d.messages == 5
    assert d.stream_position == len(stream())
    assert not d.in_message
    assert float(msgs[1].batch.index["received"][0]) == 3.5
    d.feed_eof()


def test_one_byte_at_a_time() -> None:
    d = Decoder()
    data = stream()
    msgs: list[object] = []
    for i in range(len(data)):
        got = d.feed(data[i : i + 1])
        msgs.extend(got)
        assert d.stream_position == i + 1
        if got:
            assert not d.in_message
    check_stream_messages(msgs)
    d.feed_eof()


def test_memoryview_and_bytearray_input() -> None:
    data = stream()
    msgs = Decoder().feed(memoryview(bytearray(data)))
    check_stream_messages(msgs)


def test_decoded_batch_is_a_view_of_the_body() -> None:
    body = encode_fragments(FRAGS)
    (msg,) = Decoder(expect_connect=False).feed(body)
    assert isinstance(msg, Fragments)
    b = msg.batch
    assert len(b.buffers) == 1
    assert b.flatten().tobytes() == body[8:]
    assert b.index["offset"].tolist() == [0, 23, 43]


def test_fragments_with_no_connect_when_not_expected() -> None:
    d = Decoder(expect_connect=False)
    (msg,) = d.feed(encode_fragments(FRAGS))
    assert isinstance(msg, Fragments)


# ---------------------------------------------------------------- round trips (Hypothesis)

fragment_st = st.builds(
    Fragment,
    timestamp=st.integers(0, 2**64 - 1),
    source_id=st.integers(0, 2**32 - 1),
    payload=st.binary(max_size=40),
    barrier_type=st.one_of(st.just(0), st.integers(0, 2**32 - 1)),
)
description_st = (
    st.text(st.characters(min_codepoint=1, max_codepoint=255), max_size=80)
    .filter(lambda s: not s.endswith((" ", "\0")))
)


@given(
    description=description_st,
    ids=st.lists(st.integers(0, 2**32 - 1), max_size=20),
    messages=st.lists(st.lists(fragment_st, max_size=12), max_size=5),
    cuts=st.lists(st.integers(0, 10_000), max_size=12),
)
def test_round_trip_any_split(
    description: str, ids: list[int], messages: list[list[Fragment]], cuts: list[int]
) -> None:
    data = (
        encode_connect(description, ids)
        + b"".join(encode_fragments(m) for m in messages)
        + encode_disconnect()
    )
    points = sorted({min(c, len(data)) for c in cuts} | {0, len(data)})
    d = Decoder()
    msgs: list[object] = []
    for a, b in itertools.pairwise(points):
        msgs.extend(d.feed(data[a:b]))
    d.feed_eof()
    assert msgs[0] == Connect(description=description, source_ids=tuple(ids))
    assert fragments_of(msgs) == messages
    assert isinstance(msgs[-1], Disconnect)
    assert len(msgs) == len(messages) + 2


@given(st.lists(fragment_st, max_size=30))
def test_parse_fragments_inverts_flatten(frags: list[Fragment]) -> None:
    body = build_batch(frags).flatten()
    parsed = parse_fragments(body.tobytes())
    assert parsed.fragments() == frags
    assert parsed.flatten().tobytes() == body.tobytes()


def test_parse_fragments_long_equal_runs_then_other_sizes() -> None:
    # Exercises the strided fast path across its look-ahead boundaries.
    frags = [Fragment(timestamp=i, source_id=i % 3, payload=bytes([i % 256]) * 4)
             for i in range(5000)]
    frags += [Fragment(timestamp=9, source_id=1, payload=b"xyz")]
    frags += [Fragment(timestamp=i, source_id=2, payload=b"q" * 4) for i in range(10)]
    body = build_batch(frags).flatten().tobytes()
    assert parse_fragments(body).fragments() == frags


# ---------------------------------------------------------------- malformed input


def _error(d: Decoder, data: bytes, *, one_byte: bool = False) -> RemoteProtocolError:
    with pytest.raises(RemoteProtocolError) as info:
        if one_byte:
            for i in range(len(data)):
                d.feed(data[i : i + 1])
        else:
            d.feed(data)
    return info.value


@pytest.mark.parametrize("one_byte", [False, True])
def test_wrong_first_message(one_byte: bool) -> None:
    err = _error(Decoder(), encode_fragments(FRAGS), one_byte=one_byte)
    assert err.reason == "Expected CONNECT"
    assert err.offset == 0
    assert "at byte 0" in str(err)


def test_disconnect_as_first_message() -> None:
    err = _error(Decoder(), encode_disconnect())
    assert err.reason == "Expected CONNECT"


@pytest.mark.parametrize("size", [0, 4, 80, 83, 85, 86, 87])
def test_short_or_odd_connect_rejected_from_header(size: int) -> None:
    d = Decoder()
    err = _error(d, encode_message_header(MessageType.CONNECT, size))
    assert err.reason == "Corrupt body in CONNECT message"
    assert err.offset == 0


def test_connect_count_disagrees_with_size() -> None:
    body = b"x" * 80 + struct.pack("<I", 3) + struct.pack("<2I", 1, 2)  # says 3, carries 2
    data = encode_message_header(MessageType.CONNECT, len(body)) + body
    err = _error(Decoder(), data)
    assert err.reason == "Corrupt body in CONNECT message"
    assert err.offset == 8  # the body


@pytest.mark.parametrize("mtype", [0, 3, 5, 99, 2**32 - 1])
def test_unknown_type_while_active(mtype: int) -> None:
    d = Decoder()
    connect = encode_connect("c", [1])
    d.feed(connect)
    err = _error(d, struct.pack("<II", 0, mtype))
    assert err.reason.startswith("Unexpected header: ")
    assert str(mtype) in err.reason
    assert err.offset == len(connect)


def test_second_connect_is_unexpected() -> None:
    d = Decoder()
    connect = encode_connect("c", [1])
    d.feed(connect)
    err = _error(d, connect)
    assert err.reason.startswith("Unexpected header: ")
    assert err.offset == len(connect)


@pytest.mark.parametrize("one_byte", [False, True])
def test_overrun_fragment_rejects_the_whole_message(one_byte: bool) -> None:
    good = encode_fragments(FRAGS[:1])
    body = build_batch(FRAGS).flatten().tobytes()
    # Last fragment says 10 payload bytes; keep only 4 of them.
    bad_body = body[:-6]
    bad = encode_message_header(MessageType.FRAGMENTS, len(bad_body)) + bad_body
    connect = encode_connect("c", [1, 2])
    d = Decoder()
    msgs = d.feed(connect + good)
    assert len(msgs) == 2
    err = _error(d, bad, one_byte=one_byte)
    last_frag_at = len(connect) + len(good) + 8 + 23 + 20
    assert err.offset == last_frag_at
    assert "overruns" in err.reason


def test_fragment_header_overrun() -> None:
    body = build_batch(FRAGS[:1]).flatten().tobytes() + b"\x01" * 7
    data = encode_message_header(MessageType.FRAGMENTS, len(body)) + body
    err = _error(Decoder(expect_connect=False), data)
    assert "header" in err.reason
    assert err.offset == 8 + 23


def test_parse_fragments_overrun_offsets() -> None:
    body = build_batch(FRAGS).flatten().tobytes()
    with pytest.raises(RemoteProtocolError) as info:
        parse_fragments(body[:-1], stream_offset=100)
    assert info.value.offset == 100 + 43


def test_oversized_body_rejected_before_buffering() -> None:
    d = Decoder(max_message_bytes=1000)
    d.feed(encode_connect("c", [1]))
    before = d.stream_position
    header = encode_message_header(MessageType.FRAGMENTS, 1001)
    err = _error(d, header + b"\0" * 50)
    assert "1001" in err.reason and "1000" in err.reason
    assert err.offset == before
    # Nothing of the body was taken in or allocated.
    assert d._body is None
    assert d._body_fill == 0
    assert d.stream_position == before + 8


def test_oversized_body_rejected_from_header_fed_byte_by_byte() -> None:
    d = Decoder(max_message_bytes=100)
    d.feed(encode_connect("c", [1]))
    header = encode_message_header(MessageType.FRAGMENTS, 2**32 - 1)
    for b in header[:-1]:
        assert d.feed(bytes([b])) == []
    with pytest.raises(RemoteProtocolError):
        d.feed(header[-1:])
    assert d._body is None


def test_max_size_exactly_is_accepted() -> None:
    body = build_batch([Fragment(timestamp=1, source_id=1, payload=b"p" * 80)]).flatten()
    d = Decoder(max_message_bytes=len(body), expect_connect=False)
    (msg,) = d.feed(encode_fragments([Fragment(timestamp=1, source_id=1, payload=b"p" * 80)]))
    assert isinstance(msg, Fragments)


def test_max_message_bytes_must_hold_a_connect() -> None:
    with pytest.raises(ValueError, match="at least 84"):
        Decoder(max_message_bytes=83)


@pytest.mark.parametrize("cut", [1, 7, 8, 9, 30])
def test_truncated_stream_at_eof(cut: int) -> None:
    d = Decoder()
    connect = encode_connect("c", [1])
    msg = encode_fragments(FRAGS)
    d.feed(connect + msg[:cut])
    assert d.in_message
    with pytest.raises(RemoteProtocolError) as info:
        d.feed_eof()
    assert info.value.offset == len(connect) + cut
    assert "closed in the middle" in info.value.reason


def test_eof_between_messages_is_clean() -> None:
    d = Decoder()
    d.feed(encode_connect("c", [1]) + encode_fragments(FRAGS))
    d.feed_eof()


def test_disconnect_with_body_is_corrupt() -> None:
    d = Decoder()
    d.feed(encode_connect("c", [1]))
    err = _error(d, encode_message_header(MessageType.DISCONNECT, 4) + b"abcd")
    assert "DISCONNECT" in err.reason


@pytest.mark.parametrize("split", [False, True])
def test_data_after_disconnect(split: bool) -> None:
    d = Decoder()
    d.feed(encode_connect("c", [1]))
    tail = encode_fragments(FRAGS)
    if split:
        assert isinstance(d.feed(encode_disconnect())[0], Disconnect)
        err = _error(d, tail)
    else:
        err = _error(d, encode_disconnect() + tail)
    assert err.reason == "Data after DISCONNECT"
    assert d.feed(b"") == []


# ---------------------------------------------------------------- encoders and replies


def test_encode_connect_layout() -> None:
    data = encode_connect("abc", [5, 6])
    assert struct.unpack_from("<II", data) == (84 + 8, 1)
    assert data[8:11] == b"abc" and data[11:88] == b"\0" * 77
    assert struct.unpack_from("<III", data, 88) == (2, 5, 6)


def test_encode_connect_validation() -> None:
    with pytest.raises(ValueError):
        encode_connect("x" * 81, [1])
    with pytest.raises(ValueError):
        encode_connect("x", [2**32])


def test_description_trailing_nuls_and_spaces_stripped() -> None:
    body = b"name  \0 ".ljust(80, b"\0") + struct.pack("<I", 0)
    data = encode_message_header(MessageType.CONNECT, len(body)) + body
    (msg,) = Decoder().feed(data)
    assert msg == Connect(description="name", source_ids=())


def test_encode_fragments_layout() -> None:
    data = encode_fragments(FRAGS[:1])
    assert struct.unpack_from("<II", data) == (23, 2)
    assert struct.unpack_from("<QIII", data, 8) == (10, 1, 3, 0)
    assert data[28:] == b"abc"
    assert encode_fragments(build_batch(FRAGS[:1])) == data


def test_replies() -> None:
    assert encode_ok() == b"OK\n"
    assert encode_error("Expected CONNECT") == b"ERROR {Expected CONNECT}\n"
    assert encode_error("a{b}\nc") == b"ERROR {a(b) c}\n"
    parse_reply(b"OK\n")
    with pytest.raises(SourceError) as info:
        parse_reply(encode_error("Corrupt body in CONNECT message"))
    assert str(info.value) == "Corrupt body in CONNECT message"
    with pytest.raises(SourceError, match="unexpected reply"):
        parse_reply(b"WHAT\n")


def test_empty_fragments_body_gives_empty_batch() -> None:
    (msg,) = Decoder(expect_connect=False).feed(encode_fragments([]))
    assert isinstance(msg, Fragments)
    assert len(msg.batch) == 0
    assert msg.batch.flatten().dtype == np.uint8
