"""Prebuilt exporters: ``exporters.drain``, ``exporters.csv``, ``exporters.histogram`` and the
histogram viewer ``exporters.visualize_histogram``."""

from __future__ import annotations

import csv as _csv
import time
from pathlib import Path
from typing import Any

import numpy as np

from ringbuffer.errors import SetupError
from ringbuffer.functions._plot import pyplot
from ringbuffer.worker import BufferIO, Exporter, IsAlive

__all__ = ["csv", "drain", "histogram", "visualize_histogram"]


def drain(buffer_io: BufferIO) -> None:
    """Exporter: read every slot of the single source and do nothing with it."""
    for _data, _metadata in Exporter(buffer_io):
        pass


def _fmt(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    if isinstance(value, np.floating | float):
        return repr(float(value))
    if isinstance(value, np.integer | int | np.bool_):
        return str(int(value))
    return str(value)


def csv(buffer_io: BufferIO) -> None:
    """Exporter: metadata and data fields as CSV columns; integers stay integers.

    Configs:
        filename (str, default: source buffer name): file in the run directory (``.csv`` added).
        save_interval (float, default 1): seconds between flushes to disk.
    Source: 1 buffer with data_length = 1 (or per-element rows if longer).
    """
    exporter = Exporter(buffer_io)
    name = buffer_io.get("filename", buffer_io.buffer_names_in[0].rsplit(".", 1)[-1])
    path = buffer_io.run_directory / f"{name}.csv"
    interval = float(buffer_io.get("save_interval", 1))
    meta_names = list(exporter.metadata_example.dtype.names or ())
    data_names = list(exporter.data_example.dtype.names or ())
    last = time.monotonic()
    with open(path, "w", newline="") as f:
        w = _csv.writer(f)
        w.writerow(meta_names + data_names)
        for data, metadata in exporter:
            m = metadata[0]
            mvals = [_fmt(m[k]) for k in meta_names]
            for rec in data:
                w.writerow(mvals + [_fmt(rec[k]) for k in data_names])
            now = time.monotonic()
            if now - last >= interval:
                f.flush()
                last = now


def _bins(buffer_io: BufferIO, names: list[str]) -> dict[str, tuple[float, float, int]]:
    bins = buffer_io.get("bins")
    if not isinstance(bins, dict) or not bins:
        raise SetupError(
            f"worker {buffer_io.name!r}: config 'bins' must map channel -> "
            "[min, max, number_of_bins]"
        )
    out = {}
    for ch, spec in bins.items():
        if ch not in names:
            raise SetupError(f"worker {buffer_io.name!r}: bins.{ch}: no such field ({names})")
        lo, hi, nb = spec
        if int(nb) < 1 or not float(hi) > float(lo):
            raise SetupError(f"worker {buffer_io.name!r}: bins.{ch}: need min < max, nbins >= 1")
        out[ch] = (float(lo), float(hi), int(nb))
    return out


def histogram_dir(run_dir: Path, buffer_name: str) -> Path:
    return run_dir / f"Histograms_{buffer_name.rsplit('.', 1)[-1]}"


def histogram(buffer_io: BufferIO) -> None:
    """Exporter: histogram fields into ``Histograms_<source>/<field>.npy`` (exactly nbins bins).

    Configs:
        bins (dict): field -> [min, max, number_of_bins].
        update_interval (float, default 1): seconds between saves.
    ``info.csv`` lists field, min, max, nbins; ``<field>.edges.npy`` has the nbins+1 edges.
    """
    exporter = Exporter(buffer_io)
    names = list(exporter.data_example.dtype.names or ())
    bins = _bins(buffer_io, names)
    out = histogram_dir(buffer_io.run_directory, buffer_io.buffer_names_in[0])
    out.mkdir(parents=True, exist_ok=True)
    edges = {ch: np.linspace(lo, hi, nb + 1) for ch, (lo, hi, nb) in bins.items()}
    counts = {ch: np.zeros(nb, dtype=np.int64) for ch, (_lo, _hi, nb) in bins.items()}
    with open(out / "info.csv", "w") as f:
        f.write("channel,min,max,nbins\n")
        for ch, (lo, hi, nb) in bins.items():
            f.write(f"{ch},{lo!r},{hi!r},{nb}\n")
            np.save(out / f"{ch}.edges.npy", edges[ch])
    interval = float(buffer_io.get("update_interval", 1))

    def save() -> None:
        for ch, c in counts.items():
            tmp = out / f".{ch}.tmp.npy"
            np.save(tmp, c)
            tmp.replace(out / f"{ch}.npy")

    last = time.monotonic()
    for data, _metadata in exporter:
        for ch, (lo, hi, nb) in bins.items():
            v = np.asarray(data[ch], dtype=np.float64).reshape(-1)
            idx = np.floor((v - lo) / (hi - lo) * nb).astype(np.int64)
            idx = idx[(idx >= 0) & (idx < nb) | (v == hi)]
            np.add.at(counts[ch], np.minimum(idx, nb - 1), 1)
        now = time.monotonic()
        if now - last >= interval:
            save()
            last = now
    save()


def visualize_histogram(buffer_io: BufferIO) -> None:
    """IsAlive: plot the histogram exporter's files while the observed buffer lives.

    Observes the exporter's source buffer. Headless by default: writes
    ``Histograms_<buffer>/histograms.png``; ``interactive: true`` opens a window if possible.
    Configs: update_interval (float, default 1), plot_type ('line' | 'bar' | 'step').
    """
    alive = IsAlive(buffer_io)
    folder = histogram_dir(buffer_io.run_directory, buffer_io.buffer_names_observe[0])
    interval = float(buffer_io.get("update_interval", 1))
    plot_type = buffer_io.get("plot_type", "line")
    interactive = bool(buffer_io.get("interactive", False))
    plt = pyplot(interactive)
    if plt is None:
        buffer_io.logger.warning("matplotlib missing (pip install evb[plot]): nothing plotted")

    def draw() -> None:
        if plt is None or not (folder / "info.csv").exists():
            return
        channels = [ln.split(",")[0] for ln in (folder / "info.csv").read_text().split()[1:]]
        fig, axes = plt.subplots(len(channels), 1, squeeze=False, figsize=(6, 3 * len(channels)))
        for ax, ch in zip(axes[:, 0], channels, strict=True):
            try:
                counts = np.load(folder / f"{ch}.npy")
                edges = np.load(folder / f"{ch}.edges.npy")
            except (OSError, ValueError):
                continue
            centres = 0.5 * (edges[1:] + edges[:-1])
            if plot_type == "bar":
                ax.bar(centres, counts, width=np.diff(edges))
            elif plot_type == "step":
                ax.stairs(counts, edges)
            else:
                ax.plot(centres, counts)
            ax.set_title(ch)
        fig.tight_layout()
        fig.savefig(folder / "histograms.png")
        if interactive:
            plt.pause(0.001)
        plt.close(fig)

    while alive():
        draw()
        time.sleep(interval)
    draw()
