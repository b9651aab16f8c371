"""Python values -> Tcl lists: the one formatter every EVB:: result goes through.

Pure: no tkinter. The quoting follows Tcl's own list rules (``Tcl_ScanElement``): an element
that needs no quoting is written as is, one with balanced braces is braced, anything else gets
backslashes. Integers are written as unsigned decimal by construction (Python ints never wrap).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence

__all__ = ["TclValue", "quote_element", "to_tcl"]

TclValue = int | float | str | bytes | bool | Sequence["TclValue"] | None
"""What a command handler may return: scalars or (nested) sequences of them."""

# Characters that make an element need quoting in a list.
_SPECIAL = frozenset(' \t\n\r\v\f;"$[]{}\\')
_BACKSLASH_ESCAPES = {"\n": "\\n", "\t": "\\t", "\r": "\\r", "\v": "\\v", "\f": "\\f"}


def _braces_ok(s: str) -> bool:
    """True when ``{s}`` reads back as ``s`` (balanced braces, no escaping trouble)."""
    depth = 0
    prev_backslash = False
    for ch in s:
        if prev_backslash:
            # A backslash before a brace or a newline keeps its meaning inside braces.
            if ch in "{}\n":
                return False
            prev_backslash = False
            continue
        if ch == "\\":
            prev_backslash = True
        elif ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth < 0:
                return False
    return depth == 0 and not prev_backslash


def quote_element(s: str) -> str:
    """Quote one string so that it is exactly one element of a Tcl list."""
    if s == "":
        return "{}"
    if not any(ch in _SPECIAL for ch in s) and s[0] != "#":
        return s
    if _braces_ok(s):
        return "{" + s + "}"
    out: list[str] = []
    for ch in s:
        if ch in _BACKSLASH_ESCAPES:
            out.append(_BACKSLASH_ESCAPES[ch])
        elif ch in _SPECIAL:
            out.append("\\" + ch)
        else:
            out.append(ch)
    if out and out[0] == "#":
        out[0] = "\\#"
    return "".join(out)


def _scalar(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, numbers.Integral):
        return str(int(value))
    if isinstance(value, numbers.Real):
        f = float(value)
        if math.isnan(f):
            return "NaN"
        if math.isinf(f):
            return "Inf" if f > 0 else "-Inf"
        # Whole numbers print as integers (NSCLDAQ's `EVB::config get window` says 2, not 2.0).
        return str(int(f)) if f.is_integer() and abs(f) < 2**63 else repr(f)
    if isinstance(value, bytes | bytearray | memoryview):
        # A Tcl byte array's string form: one character per byte.
        return bytes(value).decode("latin-1")
    if isinstance(value, str):
        return value
    raise TypeError(f"cannot format {type(value).__name__} as Tcl: {value!r}")


def to_tcl(value: object) -> str:
    """Format a Python value as Tcl text.

    Scalars (int, float, str, bytes, bool, None) become their text; sequences (list, tuple,
    numpy arrays) become Tcl lists, nested sequences nested lists.

    Raises:
        TypeError: a value that has no Tcl form (a dict, an arbitrary object).
    """
    # Fast paths first: results are mostly ints and lists/tuples of them.
    t = type(value)
    if t is int:
        return str(value)
    if t is str:
        return value  # type: ignore[return-value]
    if t is list or t is tuple:
        return " ".join(_element(item) for item in value)  # type: ignore[attr-defined]
    if isinstance(value, str | bytes | bytearray | memoryview) or not isinstance(value, Sequence):
        if hasattr(value, "tolist") and not isinstance(value, numbers.Number):
            return to_tcl(value.tolist())
        return _scalar(value)
    return " ".join(_element(item) for item in value)


def _element(item: object) -> str:
    if type(item) is int:
        return str(item)  # digits never need quoting
    return quote_element(to_tcl(item))
