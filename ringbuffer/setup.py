"""Parse a mimoCoRB2-style worker setup (YAML) once, into frozen dataclasses.

Every error names the key path (``Workers.filter.sources[0]``) and the line in the file.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from ringbuffer.errors import ConfigError, SetupError
from ringbuffer.layout import Layout, dtype_from_setup, validate_name

__all__ = ["BufferSpec", "Setup", "WorkerSpec", "load_function", "load_setup"]

PREBUILT_PACKAGE = "ringbuffer.functions"


@dataclass(frozen=True, slots=True, kw_only=True)
class BufferSpec:
    """One buffer of a setup.

    ``external``: the buffer is created by another process (e.g. ``evb-server --ring NAME``);
    the runner attaches to the ring named ``ring_name`` instead of creating it, and never
    shuts it down nor removes it. Its slot_count/data_length/data_dtype, when given, are
    checked against the ring (0 / None: take the ring's).
    """

    name: str
    slot_count: int
    data_length: int
    data_dtype: np.dtype[Any] | None
    external: bool = False
    ring_name: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkerSpec:
    name: str
    function: str
    file: Path | None  # None: prebuilt ``ringbuffer.functions.<function>``
    config: dict[str, Any]
    number_of_processes: int
    sources: tuple[str, ...]
    sinks: tuple[str, ...]
    observes: tuple[str, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class Setup:
    path: Path
    buffers: dict[str, BufferSpec]
    workers: dict[str, WorkerSpec]
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def setup_dir(self) -> Path:
        return self.path.parent


def _line_map(node: yaml.Node, path: str, out: dict[str, int]) -> None:
    out[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        for k, v in node.value:
            key = str(k.value)
            sub = f"{path}.{key}" if path else key
            out[sub] = k.start_mark.line + 1
            _line_map(v, sub, out)
            out[sub] = k.start_mark.line + 1
    elif isinstance(node, yaml.SequenceNode):
        for i, v in enumerate(node.value):
            _line_map(v, f"{path}[{i}]", out)


class _Ctx:
    def __init__(self, path: Path, lines: dict[str, int]) -> None:
        self.path = path
        self.lines = lines

    def error(self, key: str, message: str) -> SetupError:
        probe = key
        line = None
        while probe:
            line = self.lines.get(probe)
            if line is not None:
                break
            probe = probe.rsplit(".", 1)[0] if "." in probe else ""
        where = f"{self.path}:{line}" if line else str(self.path)
        return SetupError(f"{where}: {key}: {message}")


def _load_yaml(path: Path) -> tuple[Any, dict[str, int]]:
    try:
        text = path.read_text()
    except OSError as exc:
        raise SetupError(f"cannot read setup file {path}: {exc}") from exc
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise SetupError(f"{path}: invalid YAML: {exc}") from exc
    lines: dict[str, int] = {}
    if node is not None:
        _line_map(node, "", lines)
    return data, lines


def _names(ctx: _Ctx, key: str, value: Any, buffers: Mapping[str, Any]) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list):
        raise ctx.error(key, f"expected a list of buffer names, got {value!r}")
    for i, item in enumerate(value):
        if item not in buffers:
            known = ", ".join(sorted(buffers)) or "none"
            raise ctx.error(f"{key}[{i}]", f"unknown buffer {item!r} (defined buffers: {known})")
    return tuple(value)


def _load_config(ctx: _Ctx, key: str, value: Any, base: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    items = value if isinstance(value, list) else [value]
    for i, item in enumerate(items):
        sub = f"{key}[{i}]" if isinstance(value, list) else key
        if item is None:
            continue
        if isinstance(item, Mapping):
            out.update(item)
        elif isinstance(item, str):
            p = (ctx.path.parent / item).resolve()
            if not p.is_file():
                raise ctx.error(sub, f"config file {item!r} not found (looked at {p})")
            try:
                loaded = yaml.safe_load(p.read_text())
            except yaml.YAMLError as exc:
                raise ctx.error(sub, f"config file {item!r} is not valid YAML: {exc}") from exc
            if loaded is None:
                continue
            if not isinstance(loaded, Mapping):
                raise ctx.error(sub, f"config file {item!r} must contain a mapping")
            out.update(loaded)
        else:
            raise ctx.error(sub, f"expected a mapping or a YAML path, got {item!r}")
    return out


def load_setup(path: str | Path, *, check_functions: bool = True) -> Setup:
    """Read and validate a setup file; raises :class:`SetupError` naming key and line."""
    path = Path(path).resolve()
    data, lines = _load_yaml(path)
    ctx = _Ctx(path, lines)
    if not isinstance(data, Mapping):
        raise ctx.error("(top level)", "expected a mapping with 'Buffers' and 'Workers'")
    unknown = set(data) - {"Buffers", "Workers", "Options", "Config"}
    if unknown:
        raise ctx.error(sorted(unknown)[0], "unknown top-level key (expected Buffers, Workers)")
    raw_buffers = data.get("Buffers")
    if not isinstance(raw_buffers, Mapping) or not raw_buffers:
        raise ctx.error("Buffers", "expected a mapping of buffer names to their setup")
    buffers: dict[str, BufferSpec] = {}
    for bname, spec in raw_buffers.items():
        key = f"Buffers.{bname}"
        try:
            validate_name(str(bname))
        except ConfigError as exc:
            raise ctx.error(key, str(exc)) from None
        if not isinstance(spec, Mapping):
            raise ctx.error(key, "expected slot_count, data_length, data_dtype")
        if spec.get("external"):
            buffers[str(bname)] = _external_spec(ctx, key, str(bname), spec)
            continue
        for req in ("slot_count", "data_length", "data_dtype"):
            if req not in spec:
                raise ctx.error(key, f"missing key {req!r}")
        extra = set(spec) - {"slot_count", "data_length", "data_dtype", "external"}
        if extra:
            raise ctx.error(f"{key}.{sorted(extra)[0]}", "unknown key")
        try:
            dt = dtype_from_setup(spec["data_dtype"], where=f"{key}.data_dtype")
        except ConfigError as exc:
            msg = str(exc)
            bad = msg.split(":", 1)[0]
            raise ctx.error(bad, msg.split(":", 1)[1].strip()) from None
        try:
            Layout.compute(spec["slot_count"], spec["data_length"], dt.itemsize)
        except ConfigError as exc:
            which = "slot_count" if "slot_count" in str(exc) else "data_length"
            raise ctx.error(f"{key}.{which}", str(exc)) from None
        buffers[str(bname)] = BufferSpec(
            name=str(bname),
            slot_count=int(spec["slot_count"]),
            data_length=int(spec["data_length"]),
            data_dtype=dt,
        )
    raw_workers = data.get("Workers")
    if not isinstance(raw_workers, Mapping) or not raw_workers:
        raise ctx.error("Workers", "expected a mapping of worker names to their setup")
    base_config = data.get("Config") or {}
    if not isinstance(base_config, Mapping):
        raise ctx.error("Config", "expected a mapping")
    allowed = {"file", "function", "config", "number_of_processes", "sources", "sinks", "observes"}
    workers: dict[str, WorkerSpec] = {}
    for wname, spec in raw_workers.items():
        key = f"Workers.{wname}"
        try:
            validate_name(str(wname), "worker name")
        except ConfigError as exc:
            raise ctx.error(key, str(exc)) from None
        if not isinstance(spec, Mapping):
            raise ctx.error(key, "expected a mapping (function, sources, sinks, ...)")
        extra = set(spec) - allowed
        if extra:
            raise ctx.error(
                f"{key}.{sorted(extra)[0]}", f"unknown key (expected {sorted(allowed)})"
            )
        function = spec.get("function")
        if not isinstance(function, str) or not function:
            raise ctx.error(f"{key}.function", "missing function name")
        file_value = spec.get("file")
        file: Path | None = None
        if file_value:
            file = (path.parent / str(file_value)).resolve()
            if not file.is_file():
                raise ctx.error(f"{key}.file", f"file {file_value!r} not found (looked at {file})")
        nproc = spec.get("number_of_processes", 1)
        if not isinstance(nproc, int) or isinstance(nproc, bool) or nproc < 1:
            raise ctx.error(
                f"{key}.number_of_processes", f"expected an integer >= 1, got {nproc!r}"
            )
        worker = WorkerSpec(
            name=str(wname),
            function=function,
            file=file,
            config=_load_config(ctx, f"{key}.config", spec.get("config"), dict(base_config)),
            number_of_processes=nproc,
            sources=_names(ctx, f"{key}.sources", spec.get("sources"), buffers),
            sinks=_names(ctx, f"{key}.sinks", spec.get("sinks"), buffers),
            observes=_names(ctx, f"{key}.observes", spec.get("observes"), buffers),
        )
        if check_functions:
            try:
                load_function(worker)
            except SetupError as exc:
                raise ctx.error(f"{key}.function", str(exc)) from None
        workers[str(wname)] = worker
    options = data.get("Options") or {}
    return Setup(path=path, buffers=buffers, workers=workers, options=dict(options))


def _external_spec(ctx: _Ctx, key: str, bname: str, spec: Mapping[str, Any]) -> BufferSpec:
    """``external: true`` (ring named like the buffer) or ``external: RING_NAME``."""
    extra = set(spec) - {"slot_count", "data_length", "data_dtype", "external"}
    if extra:
        raise ctx.error(f"{key}.{sorted(extra)[0]}", "unknown key")
    ext = spec["external"]
    ring_name = bname if ext is True else str(ext)
    try:
        validate_name(ring_name)
    except ConfigError as exc:
        raise ctx.error(f"{key}.external", str(exc)) from None
    dt = None
    if spec.get("data_dtype") is not None:
        try:
            dt = dtype_from_setup(spec["data_dtype"], where=f"{key}.data_dtype")
        except ConfigError as exc:
            raise ctx.error(f"{key}.data_dtype", str(exc)) from None
    sizes = {}
    for k in ("slot_count", "data_length"):
        v = spec.get(k, 0)
        if not isinstance(v, int) or isinstance(v, bool) or v < 0:
            raise ctx.error(f"{key}.{k}", f"expected a positive integer, got {v!r}")
        sizes[k] = v
    return BufferSpec(
        name=bname,
        slot_count=sizes["slot_count"],
        data_length=sizes["data_length"],
        data_dtype=dt,
        external=True,
        ring_name=ring_name,
    )


def load_function(worker: WorkerSpec) -> Callable[..., Any]:
    """Import the worker's function (from its file, or the prebuilt ``ringbuffer.functions``)."""
    if worker.file is None:
        if "." not in worker.function:
            raise SetupError(
                f"prebuilt function {worker.function!r} must be 'module.function' "
                "(e.g. exporters.drain); or give 'file'"
            )
        module_name, func_name = worker.function.rsplit(".", 1)
        try:
            module = importlib.import_module(f"{PREBUILT_PACKAGE}.{module_name}")
        except ModuleNotFoundError as exc:
            raise SetupError(f"no prebuilt module {module_name!r} ({exc})") from None
    else:
        func_name = worker.function
        mod_name = f"_evb_worker_{worker.file.stem}_{abs(hash(str(worker.file)))}"
        module = sys.modules.get(mod_name)  # type: ignore[assignment]
        if module is None:
            spec = importlib.util.spec_from_file_location(mod_name, worker.file)
            if spec is None or spec.loader is None:
                raise SetupError(f"cannot import {worker.file}")
            module = importlib.util.module_from_spec(spec)
            sys.path.insert(0, str(worker.file.parent))
            try:
                spec.loader.exec_module(module)
            except Exception as exc:
                raise SetupError(f"importing {worker.file} failed: {exc!r}") from exc
            finally:
                with __import__("contextlib").suppress(ValueError):
                    sys.path.remove(str(worker.file.parent))
            sys.modules[mod_name] = module
    func = getattr(module, func_name, None)
    if not callable(func):
        where = worker.file or f"{PREBUILT_PACKAGE}.{worker.function.rsplit('.', 1)[0]}"
        raise SetupError(f"function {func_name!r} not found in {where}")
    return func  # type: ignore[no-any-return]
