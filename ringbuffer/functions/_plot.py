"""Optional matplotlib, headless by default (Agg backend, PNG files in the run directory)."""

from __future__ import annotations

import os
from typing import Any


def pyplot(interactive: bool = False) -> Any | None:
    """``matplotlib.pyplot`` or None if matplotlib is missing (``pip install evb[plot]``)."""
    try:
        import matplotlib
    except ImportError:
        return None
    if not interactive or not os.environ.get("DISPLAY"):
        matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt
