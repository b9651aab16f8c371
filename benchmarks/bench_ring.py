"""Ring-buffer throughput: evb's ``ringbuffer`` against mimoCoRB2 on the same work.

One writer process -> one reader process (fork), 128 slots:

* small slots: data_length 1, four fields (the writer sets one field, the reader reads it);
* large slots: data_length 4250 of four float64 fields (136 kB, a 4-channel waveform): the
  writer copies a prepared waveform into the slot, the reader reads one sample of it.

evb is measured one slot per call (the mimoCoRB2-style context manager) and with the batch API
(several slots per claim). mimoCoRB2 0.0.4 (PyPI) declares Python >= 3.12, so it is fetched with
``pip download --no-deps --python-version 3.12`` into ~/.cache/evb-bench (never into the repo)
and its ``mimo_buffer.py`` (numpy-only) is loaded from the unpacked wheel. Printed figures are
medians over ``--runs`` runs, the cases taking turns (run 1 of every case, then run 2, ...)
so that both systems see the same background load; nothing is asserted.

    .venv/bin/python benchmarks/bench_ring.py [--runs 5] [--quick]
"""

from __future__ import annotations

import argparse
import importlib.util
import multiprocessing as mp
import os
import statistics
import subprocess
import sys
import time
import zipfile
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ringbuffer import RingBuffer

CACHE = Path(os.environ.get("EVB_BENCH_CACHE", Path.home() / ".cache" / "evb-bench"))
MIMO_VERSION = "0.0.4"
SMALL_DTYPE = {"a": "f8", "b": "f8", "c": "f8", "d": "i8"}
LARGE_DTYPE = {"chA": "f8", "chB": "f8", "chC": "f8", "chD": "f8"}
LARGE_LENGTH = 4250
SLOTS = 128
CTX = mp.get_context("fork")


# ------------------------------------------------------------------------------ mimoCoRB2


def _waveform_bytes() -> np.ndarray[Any, Any]:
    """A 4 x 4250 float64 waveform as raw bytes: both systems copy it with one memcpy (a
    structured-dtype assignment would cost numpy ~6x more than the copy itself)."""
    wave = np.zeros(LARGE_LENGTH, dtype=list(LARGE_DTYPE.items()))
    for k, name in enumerate(LARGE_DTYPE):
        wave[name] = np.sin(np.arange(LARGE_LENGTH) / (10.0 + k))
    return wave.view(np.uint8)


def load_mimocorb2() -> tuple[ModuleType | None, str]:
    """mimocorb2.mimo_buffer from the cached wheel (downloaded once), or None and why not."""
    wheel_dir = CACHE / f"mimocorb2-{MIMO_VERSION}"
    module_path = wheel_dir / "mimocorb2" / "mimo_buffer.py"
    if not module_path.exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        wheels = list(CACHE.glob(f"mimocorb2-{MIMO_VERSION}-*.whl"))
        if not wheels:
            cmd = [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--no-deps",
                "--python-version",
                "3.12",
                "--only-binary=:all:",
                f"mimocorb2=={MIMO_VERSION}",
                "-d",
                str(CACHE),
            ]
            try:
                subprocess.run(cmd, check=True, capture_output=True, timeout=300)
            except (subprocess.SubprocessError, OSError) as exc:
                return None, f"pip download failed: {exc}"
            wheels = list(CACHE.glob(f"mimocorb2-{MIMO_VERSION}-*.whl"))
        if not wheels:
            return None, "wheel not found after pip download"
        with zipfile.ZipFile(wheels[0]) as zf:
            zf.extractall(wheel_dir)
    spec = importlib.util.spec_from_file_location("mimo_buffer_bench", module_path)
    if spec is None or spec.loader is None:
        return None, f"cannot load {module_path}"
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module, str(module_path)


def _mimo_writer(mb: Any, buf: Any, n: int, large: bool, start: Any) -> None:
    w = mb.BufferWriter(buf)
    src = _waveform_bytes() if large else None
    start.wait()
    for i in range(n):
        with w as (_meta, data):
            if large:
                data.view(np.uint8)[:] = src
            else:
                data["a"] = i
    w.send_flush_event()


def _mimo_reader(mb: Any, buf: Any, field: str, q: Any) -> None:
    r = mb.BufferReader(buf)
    count = 0
    acc = 0.0
    while True:
        with r as (_meta, data):
            if data is None:
                break
            acc += data[field][0]
            count += 1
    q.put(count)


def _result(q: Any, wr: Any, rd: Any) -> int:
    """The reader's count; fails instead of hanging if a benchmark process died."""
    import queue

    while True:
        try:
            return int(q.get(timeout=1.0))
        except queue.Empty:
            if wr.exitcode not in (None, 0) or rd.exitcode not in (None, 0):
                rd.kill()
                wr.kill()
                raise RuntimeError(
                    f"benchmark process failed: {wr.exitcode}, {rd.exitcode}"
                ) from None


def run_mimo(mb: ModuleType, n: int, large: bool) -> float:
    length, dtype = (LARGE_LENGTH, LARGE_DTYPE) if large else (1, SMALL_DTYPE)
    buf = mb.mimoBuffer("bench", SLOTS, length, np.dtype(list(dtype.items())))
    start = CTX.Event()
    q = CTX.Queue()
    field = "chA" if large else "a"
    rd = CTX.Process(target=_mimo_reader, args=(mb, buf, field, q))
    wr = CTX.Process(target=_mimo_writer, args=(mb, buf, n, large, start))
    rd.start()
    wr.start()
    time.sleep(0.3)
    t0 = time.perf_counter()
    start.set()
    count = _result(q, wr, rd)
    dt = time.perf_counter() - t0
    wr.join()
    rd.join()
    del buf  # mimoBuffer.__del__ closes and unlinks its shared memory
    assert count == n
    return n / dt


# ------------------------------------------------------------------------------ evb


def _evb_writer(name: str, n: int, large: bool, batch: int, start: Any) -> None:
    ring = RingBuffer.attach(name)
    w = ring.writer()
    src = _waveform_bytes() if large else None
    start.wait()
    if batch == 1:
        for i in range(n):
            with w as (_meta, data):
                if large:
                    data.view(np.uint8)[:] = src
                else:
                    data["a"] = i
    else:
        i = 0
        while i < n:
            b = w.claim(min(batch, n - i))
            k = len(b)
            if large:
                for j in range(k):
                    b.data[j].view(np.uint8)[:] = src
            else:
                b.data["a"][:, 0] = np.arange(i, i + k)
            b.commit()
            i += k
    ring.shutdown()


def _evb_reader(name: str, field: str, batch: int, q: Any) -> None:
    ring = RingBuffer.attach(name)
    r = ring.reader()
    count = 0
    acc = 0.0
    if batch == 1:
        while True:
            with r as (_meta, data):
                if data is None:
                    break
                acc += data[field][0]
                count += 1
    else:
        while (b := r.claim(batch)) is not None:
            acc += float(b.data[field][:, 0].sum())
            count += len(b)
            b.release()
    q.put(count)


def run_evb(n: int, large: bool, batch: int) -> float:
    length, dtype = (LARGE_LENGTH, LARGE_DTYPE) if large else (1, SMALL_DTYPE)
    name = f"bench{os.getpid()}"
    ring = RingBuffer.create(
        name, slot_count=SLOTS, data_length=length, data_dtype=dtype, replace=True
    )
    try:
        start = CTX.Event()
        q = CTX.Queue()
        field = "chA" if large else "a"
        rd = CTX.Process(target=_evb_reader, args=(name, field, batch, q))
        wr = CTX.Process(target=_evb_writer, args=(name, n, large, batch, start))
        rd.start()
        wr.start()
        time.sleep(0.3)
        t0 = time.perf_counter()
        start.set()
        count = _result(q, wr, rd)
        dt = time.perf_counter() - t0
        wr.join()
        rd.join()
        assert count == n, (count, n)
    finally:
        ring.unlink()
    return n / dt


# ------------------------------------------------------------------------------ main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="fewer slots per run")
    args = parser.parse_args()
    scale = 0.2 if args.quick else 1.0
    runs = args.runs
    n_small_evb_batch = int(2_000_000 * scale)
    n_small_evb_single = int(500_000 * scale)
    n_small_mimo = int(100_000 * scale)
    n_large_evb = int(40_000 * scale)
    n_large_mimo = int(20_000 * scale)
    slot_bytes = LARGE_LENGTH * 32

    print(
        f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, {SLOTS} slots, "
        f"1 writer process -> 1 reader process, median of {runs} runs"
    )
    mb, where = load_mimocorb2()
    if mb is None:
        print(f"mimoCoRB2 UNAVAILABLE ({where}): printing evb figures only")
    else:
        print(f"mimoCoRB2 {MIMO_VERSION}: {where}")

    # round robin: run k of every case before run k+1 of any, so that evb and mimoCoRB2 see
    # the same background load (the machine may be shared)
    cases: dict[str, tuple[Any, tuple[Any, ...]]] = {
        "small_single": (run_evb, (n_small_evb_single, False, 1)),
        "small_mimo": (run_mimo, (mb, n_small_mimo, False)),
        "small_batch": (run_evb, (n_small_evb_batch, False, 256)),
        "large_single": (run_evb, (n_large_evb, True, 1)),
        "large_mimo": (run_mimo, (mb, n_large_mimo, True)),
        "large_batch": (run_evb, (n_large_evb, True, 8)),
    }
    if mb is None:
        del cases["small_mimo"], cases["large_mimo"]
    rates: dict[str, list[float]] = {key: [] for key in cases}
    for _ in range(runs):
        for key, (fn, fn_args) in cases.items():
            rates[key].append(fn(*fn_args))
    med = {key: statistics.median(values) for key, values in rates.items()}
    nan = float("nan")
    small_single, small_batch = med["small_single"], med["small_batch"]
    large_single, large_batch = med["large_single"], med["large_batch"]
    small_mimo, large_mimo = med.get("small_mimo", nan), med.get("large_mimo", nan)

    def line(label: str, evb: float, mimo: float, per: str, gb: bool) -> None:
        extra = f" ({evb * slot_bytes / 1e9:.2f} GB/s)" if gb else ""
        mextra = f" ({mimo * slot_bytes / 1e9:.2f} GB/s)" if gb and mb else ""
        ratio = f"ratio {evb / mimo:.1f}x" if mb else "ratio n/a"
        mtxt = f"{mimo:,.0f} slots/s{mextra}" if mb else "unavailable"
        print(
            f"{label}: evb {evb:,.0f} slots/s{extra} ({per}, median of {runs}), "
            f"mimoCoRB2 {mtxt}, {ratio}"
        )

    line("small slots, batch API", small_batch, small_mimo, "256 slots/claim", False)
    line("small slots, 1 slot/call", small_single, small_mimo, "context manager", False)
    line("large slots, batch API", large_batch, large_mimo, "8 slots/claim", True)
    line("large slots, 1 slot/call", large_single, large_mimo, "context manager", True)


if __name__ == "__main__":
    main()
