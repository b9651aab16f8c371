"""Columnar fragment batches: the unit that flows through evb.

A :class:`FragmentBatch` is a numpy structured array of fragment headers (one row a fragment)
plus the byte buffers that hold the fragments in NSCLDAQ's *flattened* form (20-byte header then
payload). Each row says which buffer (``buf``) and where in it (``offset``, the position of the
fragment's 20-byte header) the fragment lives, so slicing, merging and reordering never copy a
payload. Invariant: the 20 header bytes in the buffer always agree with the row (the orderer
patches both when it assigns a NULL timestamp), so writing the ordered stream is a pure gather.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

__all__ = [
    "FLAT_HEADER_BYTES",
    "HEADER_DTYPE",
    "INDEX_DTYPE",
    "NULL_TIMESTAMP",
    "Fragment",
    "FragmentBatch",
    "batch_from_columns",
    "build_batch",
    "fixed_size_batch",
]

NULL_TIMESTAMP = 0xFFFF_FFFF_FFFF_FFFF
FLAT_HEADER_BYTES = 20

#: The 20-byte flattened fragment header as it is on the wire (little-endian, packed).
HEADER_DTYPE = np.dtype(
    [("timestamp", "<u8"), ("source_id", "<u4"), ("payload_size", "<u4"), ("barrier_type", "<u4")]
)

#: One row per fragment: the wire header fields plus where the fragment lives and when it came.
INDEX_DTYPE = np.dtype(
    [
        # The first 20 bytes are the wire header, byte for byte: decoding copies them as a block.
        ("timestamp", "<u8"),
        ("source_id", "<u4"),
        ("payload_size", "<u4"),
        ("barrier_type", "<u4"),
        ("buf", "<u4"),
        ("offset", "<i8"),
        ("received", "<f8"),
    ]
)
assert INDEX_DTYPE.itemsize == 40 and INDEX_DTYPE.fields is not None
assert INDEX_DTYPE.fields["offset"][1] % 8 == 0 and INDEX_DTYPE.fields["received"][1] % 8 == 0
# Gathers and joins of rows go through a view of each row as five 64-bit words: numpy copies
# those as plain integers, several times faster than structured (field-by-field) copies.
_ROW_WORDS = INDEX_DTYPE.itemsize // 8


def _words(index: np.ndarray) -> npt.NDArray[np.uint64]:
    """The rows of an INDEX_DTYPE array as (n, 5) uint64 words (a view when possible)."""
    if not index.flags.c_contiguous:
        index = np.ascontiguousarray(index)
    return index.view(np.uint64).reshape(-1, _ROW_WORDS)


def take_rows(
    index: np.ndarray, rows: npt.NDArray[np.integer] | npt.NDArray[np.bool_]
) -> np.ndarray:
    """``index[rows]`` for INDEX_DTYPE arrays, fast."""
    if rows.dtype == np.bool_:
        rows = np.flatnonzero(rows)
    out: np.ndarray = np.take(_words(index), rows, axis=0).view(INDEX_DTYPE).reshape(-1)
    return out


def concat_rows(parts: Sequence[np.ndarray]) -> np.ndarray:
    """``np.concatenate(parts)`` for INDEX_DTYPE arrays, fast."""
    out: np.ndarray = np.concatenate([_words(p) for p in parts]).view(INDEX_DTYPE).reshape(-1)
    return out


U8Array = npt.NDArray[np.uint8]


@dataclass(frozen=True, slots=True, kw_only=True)
class Fragment:
    """One fragment as a plain value (tests, client API, shell; not the hot path).

    Attributes:
        timestamp: timestamp in ticks; ``NULL_TIMESTAMP`` asks the orderer to assign one.
        source_id: the fragment's source id.
        payload: the payload bytes.
        barrier_type: 0 for data, any other value for a barrier.
    """

    timestamp: int
    source_id: int
    payload: bytes = b""
    barrier_type: int = 0

    def __post_init__(self) -> None:
        if not 0 <= self.timestamp <= NULL_TIMESTAMP:
            raise ValueError(f"timestamp must fit in 64 unsigned bits, was {self.timestamp}")
        if not 0 <= self.source_id <= 0xFFFF_FFFF:
            raise ValueError(f"source_id must fit in 32 unsigned bits, was {self.source_id}")
        if not 0 <= self.barrier_type <= 0xFFFF_FFFF:
            raise ValueError(f"barrier_type must fit in 32 unsigned bits, was {self.barrier_type}")

    @property
    def is_barrier(self) -> bool:
        return self.barrier_type != 0


def _empty_buffers() -> tuple[U8Array, ...]:
    return ()


@dataclass(frozen=True, slots=True)
class FragmentBatch:
    """Fragments as columns over shared byte buffers.

    Attributes:
        index: structured array of :data:`INDEX_DTYPE`, one row per fragment.
        buffers: the uint8 arrays that ``index['buf']`` refers to.
    """

    index: np.ndarray
    buffers: tuple[U8Array, ...] = field(default_factory=_empty_buffers)

    @classmethod
    def empty(cls) -> FragmentBatch:
        return cls(np.empty(0, INDEX_DTYPE), ())

    def __len__(self) -> int:
        return int(self.index.shape[0])

    @property
    def timestamps(self) -> npt.NDArray[np.uint64]:
        return self.index["timestamp"]

    @property
    def source_ids(self) -> npt.NDArray[np.uint32]:
        return self.index["source_id"]

    @property
    def barrier_types(self) -> npt.NDArray[np.uint32]:
        return self.index["barrier_type"]

    @property
    def payload_sizes(self) -> npt.NDArray[np.uint32]:
        return self.index["payload_size"]

    def payload_bytes(self) -> int:
        """Total payload bytes (headers not counted)."""
        return int(self.index["payload_size"].sum(dtype=np.int64))

    def flat_bytes(self) -> int:
        """Size of the flattened form (20-byte header + payload per fragment)."""
        return self.payload_bytes() + FLAT_HEADER_BYTES * len(self)

    def __getitem__(
        self, key: slice | npt.NDArray[np.integer] | npt.NDArray[np.bool_]
    ) -> FragmentBatch:
        if isinstance(key, slice):
            return FragmentBatch(self.index[key], self.buffers)
        return FragmentBatch(take_rows(self.index, key), self.buffers)

    def payload(self, i: int) -> bytes:
        row = self.index[i]
        start = int(row["offset"]) + FLAT_HEADER_BYTES
        return bytes(self.buffers[int(row["buf"])][start : start + int(row["payload_size"])])

    def fragment(self, i: int) -> Fragment:
        row = self.index[i]
        return Fragment(
            timestamp=int(row["timestamp"]),
            source_id=int(row["source_id"]),
            payload=self.payload(i),
            barrier_type=int(row["barrier_type"]),
        )

    def fragments(self) -> list[Fragment]:
        return [self.fragment(i) for i in range(len(self))]

    @staticmethod
    def concat(batches: Sequence[FragmentBatch]) -> FragmentBatch:
        """Join batches end to end; buffers are shared, never copied."""
        batches = [b for b in batches if len(b)]
        if not batches:
            return FragmentBatch.empty()
        if len(batches) == 1:
            return batches[0]
        first = batches[0].buffers
        if all(b.buffers is first for b in batches):
            return FragmentBatch(concat_rows([b.index for b in batches]), first)
        index = concat_rows([b.index for b in batches])
        counts = [len(b.buffers) for b in batches]
        before = np.cumsum(counts) - counts
        # One vector op renumbers the buffers of every batch after the first.
        index["buf"] += np.repeat(before.astype(np.uint32), [len(b) for b in batches])
        buffers: list[U8Array] = []
        for b in batches:
            buffers.extend(b.buffers)
        return FragmentBatch(index, tuple(buffers))

    def compact(self) -> FragmentBatch:
        """Drop buffers no row refers to (keeps memory bounded after cuts)."""
        if len(self.buffers) <= 1:
            return self
        used = np.unique(self.index["buf"])
        if len(used) == len(self.buffers):
            return self
        remap = np.zeros(len(self.buffers), np.uint32)
        remap[used] = np.arange(len(used), dtype=np.uint32)
        index = self.index.copy()
        index["buf"] = remap[index["buf"]]
        return FragmentBatch(index, tuple(self.buffers[int(u)] for u in used))

    def flatten(self) -> U8Array:
        """The fragments in row order, flattened back to back (NSCLDAQ orderer output)."""
        n = len(self)
        if n == 0:
            return np.empty(0, np.uint8)
        idx = self.index
        lens = idx["payload_size"].astype(np.int64) + FLAT_HEADER_BYTES
        starts = idx["offset"]
        bufs = idx["buf"]
        out_ends = np.cumsum(lens)
        total = int(out_ends[-1])
        out = np.empty(total, np.uint8)
        # Runs: consecutive rows that are consecutive in the same buffer copy as one slice.
        brk = np.flatnonzero((bufs[1:] != bufs[:-1]) | (starts[1:] != starts[:-1] + lens[:-1]))
        nruns = len(brk) + 1
        if nruns * 64 <= total or nruns <= 16:
            run_first = np.concatenate(([0], brk + 1))
            run_last = np.concatenate((brk, [n - 1]))
            out_pos = 0
            for a, b in zip(run_first.tolist(), run_last.tolist(), strict=True):
                s = int(starts[a])
                e = int(starts[b] + lens[b])
                out[out_pos : out_pos + e - s] = self.buffers[int(bufs[a])][s:e]
                out_pos += e - s
            return out
        out_starts = out_ends - lens
        rec_len = int(lens[0])
        if bool((lens == rec_len).all()):
            # Equal-sized fragments: copy whole records through an opaque record view.
            rec = np.dtype((np.void, rec_len))
            out_rec = out.view(rec)
            for b in np.unique(bufs).tolist() if len(self.buffers) > 1 else [0]:
                sel = np.flatnonzero(bufs == b) if len(self.buffers) > 1 else slice(None)
                fs = starts[sel]
                src = self.buffers[b]
                if not (fs % rec_len).any() and len(src) % rec_len == 0:
                    out_rec[sel] = src.view(rec)[fs // rec_len]
                else:
                    width = np.arange(rec_len, dtype=np.int64)
                    fo = out_starts[sel]
                    out[(fo[:, None] + width).ravel()] = src[(fs[:, None] + width).ravel()]
            return out
        for b in np.unique(bufs).tolist() if len(self.buffers) > 1 else [0]:
            sel = np.flatnonzero(bufs == b) if len(self.buffers) > 1 else slice(None)
            fs = starts[sel]
            fo = out_starts[sel]
            ln = lens[sel]
            # dst: every output byte position of these fragments; src: the same, shifted.
            dst = np.repeat(fo - (np.cumsum(ln) - ln), ln) + np.arange(int(ln.sum()))
            out[dst] = self.buffers[b][dst + np.repeat(fs - fo, ln)]
        return out


def build_batch(fragments: Iterable[Fragment], *, received: float = 0.0) -> FragmentBatch:
    """Build a batch (and its flattened bytes) from plain fragments."""
    frags = list(fragments)
    n = len(frags)
    sizes = np.fromiter((len(f.payload) for f in frags), np.int64, n)
    lens = sizes + FLAT_HEADER_BYTES
    offsets = np.zeros(n, np.int64)
    if n:
        offsets[1:] = np.cumsum(lens)[:-1]
    total = int(lens.sum())
    buf = np.zeros(total, np.uint8)
    index = np.zeros(n, INDEX_DTYPE)
    index["timestamp"] = np.fromiter((f.timestamp for f in frags), np.uint64, n)
    index["source_id"] = np.fromiter((f.source_id for f in frags), np.uint32, n)
    index["payload_size"] = sizes
    index["barrier_type"] = np.fromiter((f.barrier_type for f in frags), np.uint32, n)
    index["offset"] = offsets
    index["received"] = received
    write_headers(buf, index)
    for f, off in zip(frags, offsets.tolist(), strict=True):
        if f.payload:
            buf[off + FLAT_HEADER_BYTES : off + FLAT_HEADER_BYTES + len(f.payload)] = np.frombuffer(
                f.payload, np.uint8
            )
    return FragmentBatch(index, (buf,))


def write_headers(buf: U8Array, index: np.ndarray) -> None:
    """Write the 20-byte headers of ``index`` rows into ``buf`` at their offsets."""
    if len(index) == 0:
        return
    hdr = np.empty(len(index), HEADER_DTYPE)
    for name in HEADER_DTYPE.names or ():
        hdr[name] = index[name]
    raw = hdr.view(np.uint8).reshape(-1, FLAT_HEADER_BYTES)
    pos = index["offset"][:, None] + np.arange(FLAT_HEADER_BYTES)
    buf[pos] = raw


def batch_from_columns(
    timestamps: npt.ArrayLike,
    source_ids: npt.ArrayLike,
    payloads: npt.NDArray[np.uint8] | Sequence[bytes],
    barrier_types: npt.ArrayLike | None = None,
    *,
    received: float = 0.0,
) -> FragmentBatch:
    """Build a batch from columns; ``payloads`` is an (n, size) uint8 array or n byte strings.

    Fixed-size payloads (a 2-D array) are laid out with a handful of numpy calls.
    """
    ts = np.asarray(timestamps, dtype=np.uint64).reshape(-1)
    n = len(ts)
    sids = np.broadcast_to(np.asarray(source_ids, dtype=np.uint32), (n,))
    bars = np.broadcast_to(
        np.asarray(0 if barrier_types is None else barrier_types, dtype=np.uint32), (n,)
    )
    if isinstance(payloads, np.ndarray) and payloads.ndim == 2:
        if len(payloads) != n:
            raise ValueError(
                f"payloads must have one row per fragment: {len(payloads)} rows for {n} timestamps"
            )
        batch, payload_view = fixed_size_batch(
            ts, sids, payloads.shape[1], bars, received=received
        )
        payload_view[:] = payloads
        return batch
    plist = list(payloads)
    if len(plist) != n:
        raise ValueError(f"{len(plist)} payloads for {n} timestamps")
    return build_batch(
        (
            Fragment(timestamp=int(t), source_id=int(s), payload=bytes(p), barrier_type=int(b))
            for t, s, p, b in zip(ts.tolist(), sids.tolist(), plist, bars.tolist(), strict=True)
        ),
        received=received,
    )


def fixed_size_batch(
    timestamps: npt.ArrayLike,
    source_ids: npt.ArrayLike,
    payload_bytes: int,
    barrier_types: npt.ArrayLike | None = None,
    *,
    received: float = 0.0,
) -> tuple[FragmentBatch, npt.NDArray[np.uint8]]:
    """A batch of equal-sized fragments with headers written and payloads to fill.

    Returns:
        the batch and a writable (n, payload_bytes) view of its payload bytes, so a producer
        can write payloads in place (one pass over the bytes).
    """
    ts = np.asarray(timestamps, dtype=np.uint64).reshape(-1)
    n = len(ts)
    rec_len = FLAT_HEADER_BYTES + payload_bytes
    rec = np.empty((n, rec_len), np.uint8)
    hdr = np.empty(n, HEADER_DTYPE)
    hdr["timestamp"] = ts
    hdr["source_id"] = np.broadcast_to(np.asarray(source_ids, dtype=np.uint32), (n,))
    hdr["payload_size"] = payload_bytes
    hdr["barrier_type"] = np.broadcast_to(
        np.asarray(0 if barrier_types is None else barrier_types, dtype=np.uint32), (n,)
    )
    rec[:, :FLAT_HEADER_BYTES] = hdr.view(np.uint8).reshape(n, FLAT_HEADER_BYTES)
    index = np.empty(n, INDEX_DTYPE)
    for name in ("timestamp", "source_id", "payload_size", "barrier_type"):
        index[name] = hdr[name]
    index["buf"] = 0
    index["offset"] = np.arange(n, dtype=np.int64) * rec_len
    index["received"] = received
    return FragmentBatch(index, (rec.reshape(-1),)), rec[:, FLAT_HEADER_BYTES:]
