"""The pure core never imports I/O, clocks, threads or UI, directly or through project modules.

The walk follows every ``import`` statement (also inside functions) of a core module, then of the
project modules it imports, and the ``__init__`` of every package on the way (Python runs those).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PROJECT = {"evb", "ringbuffer", "shell", "sources"}
FORBIDDEN = {
    "asyncio",
    "socket",
    "threading",
    "time",
    "tkinter",
    "prompt_toolkit",
    "selectors",
    "subprocess",
    "multiprocessing",
}
CORE = [
    "evb/batch.py",
    "evb/wire.py",
    "evb/orderer.py",
    "evb/orderer_stats.py",
    "evb/queues.py",
    "evb/stats.py",
    "evb/config.py",
    "evb/notify.py",
    "evb/errors.py",
]
OPTIONAL_CORE = [
    "evb/builder.py",
    "ringbuffer/layout.py",
    "shell/commands.py",
    "sources/simulated.py",
]
# Package __init__ files known to pull in edge modules; the last test fails once they no longer
# do, so this list cannot go stale. (ringbuffer/__init__.py loads its names lazily.)
KNOWN_LEAKY_PACKAGES: set[str] = set()


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def module_file(name: str) -> Path | None:
    parts = name.split(".")
    if parts[0] not in PROJECT:
        return None
    base = ROOT.joinpath(*parts)
    if base.with_suffix(".py").is_file():
        return base.with_suffix(".py")
    if (base / "__init__.py").is_file():
        return base / "__init__.py"
    return None


def imports_of(path: Path) -> set[str]:
    me = module_name(path)
    package = me if path.name == "__init__.py" else me.rpartition(".")[0]
    names: set[str] = set()
    tree = ast.parse(path.read_text(), str(path))
    # Imports under `if TYPE_CHECKING:` never run.
    typing_only = {
        id(inner)
        for node in ast.walk(tree)
        if isinstance(node, ast.If)
        and isinstance(node.test, ast.Name)
        and node.test.id == "TYPE_CHECKING"
        for stmt in node.body
        for inner in ast.walk(stmt)
    }
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, node.module] if node.module else anchor)
            else:
                base = node.module or ""
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)  # submodules
    return names


def violations(start: str, *, skip_packages: set[str]) -> list[str]:
    """Forbidden imports reachable from module ``start``, each with its import chain."""
    found: list[str] = []
    seen: set[str] = set()
    todo: list[tuple[str, tuple[str, ...]]] = [(start, ())]
    while todo:
        name, chain = todo.pop()
        parts = name.split(".")
        # Importing a.b.c runs a/__init__ and a/b/__init__ first.
        for i in range(1, len(parts) + 1):
            mod = ".".join(parts[:i])
            if mod in seen:
                continue
            seen.add(mod)
            if parts[0] in FORBIDDEN:
                found.append(" -> ".join([*chain, mod]))
                break
            if mod in skip_packages and mod != start:
                continue
            path = module_file(mod)
            if path is None:
                continue
            for imported in sorted(imports_of(path)):
                todo.append((imported, (*chain, mod)))
    return found


CORE_MODULES = CORE + [p for p in OPTIONAL_CORE if (ROOT / p).is_file()]


@pytest.mark.parametrize("relpath", CORE_MODULES)
def test_core_module_imports_no_io(relpath: str) -> None:
    path = ROOT / relpath
    assert path.is_file(), f"core module {relpath} is missing"
    bad = violations(module_name(path), skip_packages=KNOWN_LEAKY_PACKAGES)
    assert not bad, f"{relpath} reaches forbidden modules: {bad}"


def test_walker_sees_edge_imports() -> None:
    # The walker itself works: the asyncio server is caught, and so is a relative import.
    assert any(v.endswith("asyncio") for v in violations("evb.server", skip_packages=set()))
    assert "evb.batch" in imports_of(ROOT / "evb" / "wire.py")


def test_known_leaky_packages_still_leak() -> None:
    for package in sorted(KNOWN_LEAKY_PACKAGES):
        assert violations(package, skip_packages=set()), (
            f"{package}/__init__.py no longer imports I/O modules: "
            "remove it from KNOWN_LEAKY_PACKAGES"
        )
