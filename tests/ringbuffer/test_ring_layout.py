"""Pure layout tests and the import rule for core modules."""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest

from ringbuffer.errors import ConfigError
from ringbuffer.layout import (
    CACHE_LINE,
    Layout,
    dtype_from_descr,
    dtype_from_setup,
    dtype_to_descr,
    validate_name,
)

FORBIDDEN = {"asyncio", "socket", "threading", "time", "tkinter", "prompt_toolkit"}
PKG = Path(__file__).resolve().parents[2] / "ringbuffer"
PURE = ["layout"]


def _imports(module: str, seen: set[str]) -> set[str]:
    """Top-level modules imported by ringbuffer.<module>, following ringbuffer imports."""
    if module in seen:
        return set()
    seen.add(module)
    tree = ast.parse((PKG / f"{module}.py").read_text())
    out: set[str] = set()
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module]
        for n in names:
            if n.startswith("ringbuffer."):
                out |= _imports(n.split(".", 1)[1], seen)
            else:
                out.add(n.split(".")[0])
    return out


@pytest.mark.parametrize("module", PURE)
def test_pure_modules_do_no_io(module: str) -> None:
    bad = _imports(module, set()) & FORBIDDEN
    assert not bad, f"ringbuffer.{module} imports {bad}"


def test_layout_alignment() -> None:
    lay = Layout.compute(128, 4250, 32)
    assert lay.slot_stride % CACHE_LINE == 0
    assert lay.data_offset % 4096 == 0
    assert lay.total_bytes >= lay.data_offset + 128 * lay.slot_stride
    offsets = [
        lay.commit_offset,
        lay.claimed_offset,
        lay.dropped_offset,
        lay.released_offset,
        lay.meta_offset,
        lay.data_offset,
    ]
    assert offsets == sorted(offsets)
    assert all(o % CACHE_LINE == 0 for o in offsets)


def test_layout_rejects_bad_sizes() -> None:
    for args in ((1, 1, 8), (0, 1, 8), (4, 0, 8), (4, 1, 0)):
        with pytest.raises(ConfigError):
            Layout.compute(*args)


def test_initial_released_marks_every_slot_free() -> None:
    lay = Layout.compute(5, 1, 8)
    row = lay.initial_released(7)
    for k in range(5):
        seq = 7 + k
        assert row[seq % 5] == seq - 5


def test_dtype_round_trip() -> None:
    dt = dtype_from_setup({"a": "float64", "b": "int32", "s": "S10"})
    assert dtype_from_descr(dtype_to_descr(dt)) == dt
    sub = np.dtype([("wave", "<f4", (3,))])
    assert dtype_from_descr(dtype_to_descr(sub)) == sub


def test_dtype_typo_names_field() -> None:
    with pytest.raises(ConfigError, match=r"x\.chA.*flaot64"):
        dtype_from_setup({"chA": "flaot64"}, where="x")


def test_names() -> None:
    validate_name("raw.w123-a_b")
    for bad in ("", "a/b", ".hidden", "x" * 101, "sp ace"):
        with pytest.raises(ConfigError):
            validate_name(bad)
