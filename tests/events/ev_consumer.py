"""A consumer process of an EVB ring: ``python ev_consumer.py NAME GROUP OUT.npz [DELAY_S]``.

Reads every slot until the end of data and saves the fragments (flattened), the event
starts/counts/timestamps and the slot counters. ``DELAY_S`` makes it a slow consumer.
"""

from __future__ import annotations

import sys
import time

import numpy as np

from evb.ringsink import EventRingReader, concat_events


def main() -> None:
    name, group, out = sys.argv[1], sys.argv[2], sys.argv[3]
    delay = float(sys.argv[4]) if len(sys.argv) > 4 else 0.0
    slots = []
    counters = []
    built = []
    with EventRingReader(name, group, timeout_s=20) as reader:
        print("attached", flush=True)
        while True:
            slot = reader.next_copy()
            if slot is None:
                break
            slots.append(slot.events())
            built.append(slot.built)
            counters.append(int(slot.header["n_events"][0]))
            if delay:
                time.sleep(delay)  # a slow analysis
    ev = concat_events(slots)
    np.savez(
        out,
        flat=ev.fragments.flatten(),
        starts=ev.starts,
        counts=ev.counts,
        timestamps=ev.timestamps,
        slot_events=np.asarray(counters, np.int64),
        built=np.asarray(built, bool),
    )


if __name__ == "__main__":
    main()
