"""The figures behind :meth:`EvbServer.status <evb.server.EvbServer.status>`.

The server counts fragments and bytes in and out and keeps a short history of
:data:`Sample` rows (at most one every ``SAMPLE_EVERY_S``); :func:`rates` turns that history into
rates over the last ``RATE_WINDOW_S``. :func:`sink_status` adds the output's own figures.
"""

from __future__ import annotations

import logging
from collections import deque
from typing import Any

from evb.sinks import Sink

__all__ = ["RATE_WINDOW_S", "SAMPLES_KEPT", "SAMPLE_EVERY_S", "Sample", "rates", "sink_status"]

# The server's logger: failures are logged as they were before the split.
log = logging.getLogger("evb.server")

#: (time, fragments in, bytes in, fragments out, bytes out) at one moment.
Sample = tuple[float, int, int, int, int]
#: A new sample is taken at most this often.
SAMPLE_EVERY_S = 0.05
#: Samples remembered (more than a rate window's worth).
SAMPLES_KEPT = 64
#: Rates are averaged over (at least) this much of the most recent history.
RATE_WINDOW_S = 1.0


def rates(samples: deque[Sample], now: float) -> dict[str, float]:
    """Output and input rates from the newest sample back to the first one ``RATE_WINDOW_S`` old.

    ``samples`` must not be empty (take a sample at ``now`` first).
    """
    cur = samples[-1]
    ref = cur
    for s in reversed(samples):
        ref = s
        if now - s[0] >= RATE_WINDOW_S:
            break
    dt = cur[0] - ref[0]

    def rate(i: int) -> float:
        return (cur[i] - ref[i]) / dt if dt > 0 else 0.0

    return {
        "fragments_per_s": rate(3),
        "bytes_per_s": rate(4),
        "in_fragments_per_s": rate(1),
        "in_bytes_per_s": rate(2),
    }


def sink_status(sink: Sink) -> dict[str, Any]:
    """The sink's own ``status()`` figures; ``{}`` if it has none or they fail (logged)."""
    fn = getattr(sink, "status", None)
    if not callable(fn):
        return {}
    try:
        return dict(fn())
    except Exception:
        log.exception("output status failed")
        return {}
