"""Prebuilt ``observers.oscilloscope``: waveform plots of the newest slot of a buffer."""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from ringbuffer.functions._plot import pyplot
from ringbuffer.worker import BufferIO, Observer

__all__ = ["oscilloscope"]


def oscilloscope(buffer_io: BufferIO) -> None:
    """Observer: plot the newest slot every ``update_interval`` seconds.

    Headless by default: writes ``oscilloscope_<buffer>.png`` into the run directory (also the
    last waveform as ``.npy`` when matplotlib is missing). ``interactive: true`` shows a window
    if a display exists. Configs: ylim, t_scaling (scale, offset, unit), y_scaling, channels,
    trigger_level, update_interval (s, default 1).
    """
    observer = Observer(buffer_io)
    bname = buffer_io.buffer_names_observe[0].rsplit(".", 1)[-1]
    names = list(observer.data_example.dtype.names or ())
    channels = buffer_io.get("channels") or names
    interval = float(buffer_io.get("update_interval", 1))
    ylim = buffer_io.get("ylim")
    t_scale, t_off, t_unit = buffer_io.get("t_scaling", (1, 0, "Samples"))
    y_scale, y_off, y_unit = buffer_io.get("y_scaling", (1, 0, "Value"))
    trigger = buffer_io.get("trigger_level")
    interactive = bool(buffer_io.get("interactive", False))
    plt = pyplot(interactive)
    png = buffer_io.run_directory / f"oscilloscope_{bname}.png"
    if plt is None:
        buffer_io.logger.warning("matplotlib missing (pip install evb[plot]): saving .npy only")
    last = 0.0
    fig: Any = None
    for data, _metadata in observer(timeout=None):
        if data is None:
            break
        now = time.monotonic()
        if now - last < interval:
            time.sleep(min(interval - (now - last), 0.1))
            continue
        last = now
        if plt is None:
            np.save(buffer_io.run_directory / f"oscilloscope_{bname}.npy", data)
            continue
        if fig is None:
            fig, ax = plt.subplots(figsize=(8, 4))
        ax.clear()
        t = np.arange(len(data)) * t_scale + t_off
        for ch in channels:
            ax.plot(t, np.asarray(data[ch], dtype=np.float64) * y_scale + y_off, label=ch)
        if trigger is not None:
            ax.axhline(trigger * y_scale + y_off, color="grey", linestyle="--")
        if ylim:
            ax.set_ylim(*ylim)
        ax.set_xlabel(t_unit)
        ax.set_ylabel(y_unit)
        ax.legend(loc="upper right")
        fig.savefig(png)
        if interactive:
            plt.pause(0.001)
    if fig is not None and plt is not None:
        plt.close(fig)
