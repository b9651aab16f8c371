"""Helpers of the event tests: a reference (one fragment at a time) builder, fragment lists."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TypeVar

from evb.batch import Fragment
from evb.builder import BuildConfig, TimestampPolicy

T = TypeVar("T")
VENV_BIN = Path(sys.executable).parent


def reference_events(
    frags: list[Fragment], cfg: BuildConfig
) -> list[tuple[int, list[Fragment]]]:
    """glom's rule, the plain way: (event timestamp, fragments) per event."""
    events: list[list[Fragment]] = []
    for f in frags:
        cur = events[-1] if events else None
        if (
            not cfg.build
            or cur is None
            or f.barrier_type
            or cur[0].barrier_type
            or not (cur[0].timestamp <= f.timestamp <= cur[0].timestamp + cfg.dt_ticks)
            or (cfg.max_fragments and len(cur) >= cfg.max_fragments)
        ):
            events.append([f])
        else:
            cur.append(f)
    out = []
    for ev in events:
        ts = [f.timestamp for f in ev]
        if cfg.policy is TimestampPolicy.EARLIEST:
            t = min(ts)
        elif cfg.policy is TimestampPolicy.LATEST:
            t = max(ts)
        else:
            t = ts[0] + sum(x - ts[0] for x in ts) // len(ts)
        out.append((t, ev))
    return out
