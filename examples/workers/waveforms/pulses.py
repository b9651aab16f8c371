"""Simulated detector pulses (exponential tails on noise), mimoCoRB2-style importer."""

import time

import numpy as np

from ringbuffer.worker import BufferIO, Importer


def simulate(buffer_io: BufferIO) -> None:
    importer = Importer(buffer_io)
    rng = np.random.default_rng(buffer_io.get("seed", 0))
    n = len(importer.data_example)
    t = np.arange(n)
    rate = float(buffer_io.get("rate", 1000))

    def ufunc():
        for _ in range(buffer_io["n_events"]):
            data = np.zeros_like(importer.data_example)
            for ch in data.dtype.names:
                wave = rng.normal(0, 0.02, n)
                for start in rng.uniform(50, n - 100, rng.integers(1, 4)):
                    tail = t - start
                    wave += np.where(tail >= 0, rng.uniform(0.4, 1.0) * np.exp(-tail / 30), 0)
                data[ch] = wave
            time.sleep(rng.exponential(1 / rate))
            yield data

    importer(ufunc)
