"""The registry as a whole: docs, completion, the formatter, layering."""

from __future__ import annotations

import _tkinter
import ast
import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prompt_toolkit.completion import CompleteEvent
from prompt_toolkit.document import Document

from evb.config import CONFIG_NAMES
from shell.commands import build_registry, to_tcl
from shell.repl import RegistryCompleter, format_toolbar
from shell.tclfmt import quote_element

ROOT = Path(__file__).resolve().parents[2]

SPEC_COMMANDS = [
    "EVB::inputStats", "EVB::outputStats", "EVB::dlatestats", "EVB::dupstat",
    "EVB::getoostats", "EVB::barrierstats", "EVB::onDataLate", "EVB::barrierTrace",
    "EVB::barriertrace", "EVB::onflow", "EVB::source", "EVB::deadsource",
    "EVB::reviveSocket", "EVB::flushqueues", "EVB::abortbarrier", "EVB::reset",
    "EVB::config", "EVB::connections", "help",
]


def test_registry_has_every_spec_command_and_spelling():
    assert sorted(build_registry().names()) == sorted(SPEC_COMMANDS)


def test_docs_commands_md_matches_the_registry():
    on_disk = (ROOT / "docs" / "commands.md").read_text()
    assert on_disk == build_registry().markdown(), "run: python -m shell.docs"


def test_docs_mention_every_command_with_its_usage():
    text = build_registry().markdown()
    for c in build_registry():
        assert f"## {c.name}" in text
        assert c.synopsis() in text


def test_every_command_has_help():
    reg = build_registry()
    for c in reg:
        assert c.summary and c.help and c.result
        assert reg.help_text(c.name).startswith(f"Usage: {c.synopsis()}")


# -- completion -------------------------------------------------------------------------


def complete(text: str) -> list[str]:
    comp = RegistryCompleter(build_registry())
    doc = Document(text, len(text))
    return [c.text for c in comp.get_completions(doc, CompleteEvent(completion_requested=True))]


def test_complete_command_names():
    assert complete("EVB::inp") == ["EVB::inputStats"]
    assert complete("EVB::bar") == ["EVB::barrierstats", "EVB::barrierTrace", "EVB::barriertrace"]
    assert len(complete("EVB::")) == len(SPEC_COMMANDS) - 1
    assert complete("he") == ["help"]


def test_complete_replaces_the_whole_namespaced_word():
    comp = RegistryCompleter(build_registry())
    doc = Document("EVB::dl", 7)
    (c,) = comp.get_completions(doc, CompleteEvent(completion_requested=True))
    assert (c.text, c.start_position) == ("EVB::dlatestats", -7)


def test_complete_subcommands_and_config_names():
    assert complete("EVB::outputStats ") == ["get", "clear"]
    assert complete("EVB::barrierTrace c") == ["complete"]
    assert complete("EVB::onflow ") == ["add", "remove", "list"]
    assert complete("EVB::config ") == ["set", "get"]
    assert complete("EVB::config set ") == list(CONFIG_NAMES)
    assert complete("EVB::config get perQ") == ["perQXoffThreshold", "perQXonThreshold"]
    assert complete("EVB::config set window ") == []
    assert complete("help EVB::conf") == ["EVB::config"]


def test_complete_inside_brackets_and_after_semicolon():
    assert complete("set x [EVB::dup") == ["EVB::dupstat"]
    assert complete("puts a; EVB::flush") == ["EVB::flushqueues"]
    assert complete("foreach q [lindex [EVB::inputStats] 3] {\n  EVB::config g") == ["get"]
    assert complete("puts ") == []


# -- the formatter ----------------------------------------------------------------------


def test_to_tcl_shapes():
    assert to_tcl((0, 0, 0, [], 0)) == "0 0 0 {} 0"
    assert to_tcl(((1, 20, 15), [(1, 1, 20, 15)])) == "{1 20 15} {{1 1 20 15}}"
    assert to_tcl(2**64 - 1) == "18446744073709551615"
    assert to_tcl(["a b", "", "x"]) == "{a b} {} x"
    assert to_tcl(2.5) == "2.5"
    assert to_tcl(2.0) == "2"  # whole numbers as NSCLDAQ prints them
    assert to_tcl(True) == "1"
    assert to_tcl(b"\x00\xff") == "\x00\xff"


@pytest.mark.parametrize(
    "s", ["a{b", "}", "a\\", "#x", "{a}", "x\\{", "a\nb", "$x", "[cmd]", '"q"', "a;b", "\\\n"]
)
def test_quote_element_hard_cases_read_back_in_tcl(s):
    tk = _tkinter.create(None, "t", "Tk", False, False, False, False, None)
    quoted = quote_element(s)
    assert tk.call("llength", quoted) == "1"
    assert tk.call("lindex", quoted, 0) == s


tcl_text = st.text(
    alphabet=st.sampled_from([*"ab {}[]$\\\"#;\t\n", "é", "\x00"]), max_size=12
)
tcl_values = st.recursive(
    st.one_of(st.integers(min_value=0, max_value=2**64 - 1), tcl_text),
    lambda inner: st.lists(inner, max_size=4),
    max_leaves=12,
)

_TK = _tkinter.create(None, "t", "Tk", False, False, False, False, None)


def _from_tcl(text: str, like: object) -> object:
    if isinstance(like, list):
        n = int(_TK.call("llength", text))
        assert n == len(like)
        return [_from_tcl(_TK.call("lindex", text, i), e) for i, e in enumerate(like)]
    return int(text) if isinstance(like, int) else text


@settings(max_examples=150, deadline=None)
@given(tcl_values)
def test_to_tcl_round_trips_through_real_tcl(value):
    if not isinstance(value, list):
        value = [value]
    assert _from_tcl(to_tcl(value), value) == value


# -- layering ---------------------------------------------------------------------------

PURE = ["shell/commands.py", "shell/tclfmt.py", "shell/protocol.py"]
FORBIDDEN = {"asyncio", "socket", "threading", "time", "tkinter", "_tkinter", "prompt_toolkit"}


@pytest.mark.parametrize("path", PURE)
def test_pure_modules_import_no_io(path):
    tree = ast.parse((ROOT / path).read_text())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module.split(".")[0])
    assert not imported & FORBIDDEN


def test_toolbar_text():
    text = format_toolbar({
        "in_fragments_per_s": 12345.0, "fragments_per_s": 12000.0, "bytes_per_s": 2.5e6,
        "queued_fragments": 17, "queued_bytes": 2048, "xoff": True,
        "paused_connections": ["a"], "late": 3, "duplicates": 4, "connections": 2,
    })
    assert re.fullmatch(
        r"in 12\.3k frag/s \| out 12\.0k frag/s \| 2\.5MB/s \| queued 17 \| \(2\.0kB\) \| "
        r"XOFF \(1 paused\) \| late 3 \| dups 4 \| conns 2",
        text,
    )
    assert "XON" in format_toolbar({"xoff": False})
    assert format_toolbar({}, attached="/x") == "evb: no status  [attached /x]"
