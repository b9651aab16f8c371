"""Prebuilt ``analyzers.pha``: pulse-height analysis reporting *every* peak of a waveform."""

from __future__ import annotations

from typing import Any

import numpy as np

from ringbuffer.errors import SetupError
from ringbuffer.worker import BufferIO

__all__ = ["find_peaks", "pha"]

_SCIPY_KEYS = (
    "height",
    "threshold",
    "distance",
    "prominence",
    "width",
    "wlen",
    "rel_height",
    "plateau_size",
)


def _find_peaks_numpy(
    x: np.ndarray[Any, Any],
    height: float | None = None,
    threshold: float | None = None,
    distance: int | None = None,
    **unsupported: Any,
) -> tuple[np.ndarray[Any, Any], dict[str, np.ndarray[Any, Any]]]:
    """Local maxima (plateaus: left edge) with height, threshold and distance; no scipy."""
    bad = {k: v for k, v in unsupported.items() if v is not None and k != "rel_height"}
    if bad:
        raise SetupError(f"without scipy, pha supports height/threshold/distance only, not {bad}")
    x = np.asarray(x, dtype=np.float64)
    if len(x) < 3:
        return np.zeros(0, dtype=np.intp), {}
    left = x[1:-1] > x[:-2]
    right = x[1:-1] >= x[2:]
    peaks = np.nonzero(left & right)[0] + 1
    # a plateau counts once: drop a candidate whose right neighbour is equal and also a candidate
    keep = np.ones(len(peaks), dtype=bool)
    for i, p in enumerate(peaks):
        j = p
        while j + 1 < len(x) and x[j + 1] == x[p]:
            j += 1
        if j + 1 < len(x) and x[j + 1] > x[p]:
            keep[i] = False
    peaks = peaks[keep]
    props: dict[str, np.ndarray[Any, Any]] = {}
    if height is not None:
        sel = x[peaks] >= height
        peaks = peaks[sel]
        props["peak_heights"] = x[peaks]
    if threshold is not None:
        lt = x[peaks] - x[peaks - 1]
        rt = x[peaks] - x[np.minimum(peaks + 1, len(x) - 1)]
        sel = np.minimum(lt, rt) >= threshold
        peaks = peaks[sel]
        for k in list(props):
            props[k] = props[k][sel]
        props["left_thresholds"] = lt[sel]
        props["right_thresholds"] = rt[sel]
    if distance is not None and distance > 1 and len(peaks) > 1:
        order = np.argsort(x[peaks])[::-1]
        taken = np.zeros(len(peaks), dtype=bool)
        removed = np.zeros(len(peaks), dtype=bool)
        for i in order:
            if removed[i]:
                continue
            taken[i] = True
            near = np.abs(peaks - peaks[i]) < distance
            removed |= near & ~taken
        peaks = peaks[taken]
        for k in list(props):
            props[k] = props[k][taken]
    return peaks, props


def find_peaks(
    x: np.ndarray[Any, Any], **kwargs: Any
) -> tuple[np.ndarray[Any, Any], dict[str, np.ndarray[Any, Any]]]:
    """``scipy.signal.find_peaks`` if scipy is importable, else a numpy fallback."""
    try:
        from scipy.signal import find_peaks as sp_find_peaks
    except ImportError:
        return _find_peaks_numpy(x, **kwargs)
    return sp_find_peaks(x, **kwargs)  # type: ignore[no-any-return]


def pha(buffer_io: BufferIO) -> None:
    """Processor: one sink slot per peak found in ``channel`` of each source waveform.

    Sink: data_length 1; fields among position, peak_heights, left_thresholds,
    right_thresholds, prominences, left_bases, right_bases, widths, width_heights, left_ips,
    right_ips, plateau_sizes, left_edges, right_edges (fields the analysis does not produce
    stay 0). The sink slot keeps the source's metadata (same counter for peaks of one event).
    Configs: channel (default: first field) and scipy's find_peaks arguments.
    """
    if len(buffer_io.read) != 1 or len(buffer_io.write) != 1:
        raise SetupError(f"worker {buffer_io.name!r}: pha needs 1 source and 1 sink")
    reader, writer = buffer_io.read[0], buffer_io.write[0]
    names = list(buffer_io.data_in_examples[0].dtype.names or ())
    channel = buffer_io.get("channel", names[0])
    if channel not in names:
        raise SetupError(f"worker {buffer_io.name!r}: channel {channel!r} not in {names}")
    kwargs = {k: buffer_io.get(k) for k in _SCIPY_KEYS if buffer_io.get(k) is not None}
    out_names = list(buffer_io.data_out_examples[0].dtype.names or ())
    while True:
        with reader as (metadata, data):
            if data is None:
                return
            peaks, props = find_peaks(data[channel], **kwargs)
            for i, pos in enumerate(peaks):
                with writer as (m_out, d_out):
                    m_out[...] = metadata
                    d_out[...] = 0
                    for name in out_names:
                        if name == "position":
                            d_out[name] = pos
                        elif name in props:
                            d_out[name] = props[name][i]
