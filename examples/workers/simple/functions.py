"""Worker functions of the simple example (mimoCoRB2 style: only the import differs)."""

import numpy as np

from ringbuffer.worker import BufferIO, Filter, Importer


def simulate(buffer_io: BufferIO) -> None:
    importer = Importer(buffer_io)
    rng = np.random.default_rng(buffer_io.get("seed", 0))
    example = importer.data_example

    def ufunc():
        for i in range(buffer_io["n_events"]):
            data = np.zeros_like(example)
            data["event"] = i
            data["height"] = rng.uniform(0, 10)
            data["channel"] = i % 4
            yield data
        yield None

    importer(ufunc)


def select_high(buffer_io: BufferIO) -> None:
    min_height = buffer_io["min_height"]
    Filter(buffer_io)(lambda data: bool(data["height"][0] > min_height))
