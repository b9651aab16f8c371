"""Prebuilt ``data.export`` (record a buffer to a file) and the importers replaying such files:
``data.simulate_importer`` (original timing) and ``data.clocked_importer`` (fixed rate, uniform or
Poisson). The file format (msgpack header, raw records, no pickle) is in
:mod:`ringbuffer.fileformat`."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from ringbuffer.errors import SetupError
from ringbuffer.fileformat import RecordReader, RecordWriter
from ringbuffer.worker import BufferIO, Exporter, Importer

__all__ = ["clocked_importer", "export", "simulate_importer"]


def export(buffer_io: BufferIO) -> None:
    """Exporter: write every slot of the source to ``<filename>.evbrec`` in the run directory.

    Configs: filename (str, default: the source buffer name).
    """
    exporter = Exporter(buffer_io)
    name = buffer_io.get("filename", buffer_io.buffer_names_in[0].rsplit(".", 1)[-1])
    path = buffer_io.run_directory / f"{name}.evbrec"
    if buffer_io.process_index:
        path = path.with_name(f"{name}.{buffer_io.process_index}.evbrec")
    data_example = exporter.data_example
    with RecordWriter(
        path, data_example.dtype, len(data_example), buffer=buffer_io.buffer_names_in[0]
    ) as out:
        for data, metadata in exporter:
            out.write(metadata, data)


def _open(buffer_io: BufferIO, importer: Importer) -> RecordReader:
    filename = buffer_io.get("filename")
    if not filename:
        raise SetupError(f"worker {buffer_io.name!r}: config 'filename' (recorded file) missing")
    path = Path(filename)
    if not path.is_absolute():
        path = buffer_io.setup_dir / path
    rec = RecordReader(path)
    ex = importer.data_example
    if rec.data_dtype != ex.dtype or rec.data_length != len(ex):
        raise SetupError(
            f"worker {buffer_io.name!r}: {path} holds {rec.data_length} x {rec.data_dtype}, "
            f"the sink expects {len(ex)} x {ex.dtype}"
        )
    return rec


def _sleep_until(t: float) -> None:
    delay = t - time.monotonic()
    if delay > 0:
        time.sleep(delay)


def simulate_importer(buffer_io: BufferIO) -> None:
    """Importer: replay a recorded file following its metadata timestamps (sub-second sleeps).

    Configs: filename (str, relative to the setup file).
    """
    importer = Importer(buffer_io)
    rec = _open(buffer_io, importer)
    recs = rec.records()

    def gen() -> Iterator[Any]:
        if len(recs) == 0:
            return
        ts = recs["metadata"]["timestamp"]
        t0_file = float(ts[0])
        t0 = time.monotonic()
        for i in range(len(recs)):
            _sleep_until(t0 + max(0.0, float(ts[i]) - t0_file))
            yield recs["data"][i]

    importer(gen)


def clocked_importer(buffer_io: BufferIO) -> None:
    """Importer: replay a recorded file at ``rate`` Hz, ``uniform`` or ``poisson`` spacing.

    Configs: filename (str), rate (float, Hz), distribution ('uniform' | 'poisson'),
    repeat (bool, default False: loop over the file), seed (int, optional).
    Sleeps are fractional seconds on an absolute schedule (no drift, no whole-second steps).
    """
    importer = Importer(buffer_io)
    rec = _open(buffer_io, importer)
    recs = rec.records()
    rate = float(buffer_io.get("rate", 0) or 0)
    if rate <= 0:
        raise SetupError(f"worker {buffer_io.name!r}: config 'rate' must be > 0 Hz")
    dist = buffer_io.get("distribution", "uniform")
    if dist not in ("uniform", "poisson"):
        raise SetupError(
            f"worker {buffer_io.name!r}: distribution {dist!r} (expected uniform or poisson)"
        )
    repeat = bool(buffer_io.get("repeat", False))
    rng = np.random.default_rng(buffer_io.get("seed"))

    def gen() -> Iterator[Any]:
        t = time.monotonic()
        while True:
            for i in range(len(recs)):
                t += rng.exponential(1.0 / rate) if dist == "poisson" else 1.0 / rate
                _sleep_until(t)
                yield recs["data"][i]
            if not repeat or len(recs) == 0:
                return

    importer(gen)
