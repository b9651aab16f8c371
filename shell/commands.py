"""The EVB:: command layer: one registry, handlers that return Python values.

Pure (no tkinter, asyncio or prompt_toolkit): a handler gets a :class:`Context` (the service it
controls and the hook table) plus the Tcl words after the command name, and returns a Python value
or raises :class:`CommandError`. :func:`to_tcl` turns every result into a Tcl list. The same
:class:`CommandRegistry` gives dispatch (``shell.tcl``), help, completion (``shell.repl``) and the
command reference (``docs/commands.md``).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from evb.builder import BUILD_NAMES
from evb.config import CONFIG_NAMES
from evb.errors import EvbError
from evb.orderer import Orderer
from shell.tclfmt import TclValue, quote_element, to_tcl

__all__ = [
    "Command",
    "CommandError",
    "CommandRegistry",
    "ConnectionLike",
    "Context",
    "Hooks",
    "ServiceLike",
    "TclValue",
    "build_registry",
    "to_tcl",
]

MAX_SOURCE_ID = 0xFFFF_FFFF
_INT_RE = re.compile(r"[+-]?(?:(0[xX][0-9a-fA-F]+|0[oO][0-7]+|0[bB][01]+)|[0-9]+)")


class CommandError(EvbError):
    """A command was used wrongly; the message is the Tcl error message."""


class ConnectionLike(Protocol):
    """One source connection as ``EVB::connections`` reports it."""

    @property
    def name(self) -> str: ...
    @property
    def host(self) -> str: ...
    @property
    def description(self) -> str: ...
    @property
    def state(self) -> str: ...
    @property
    def idle_s(self) -> float: ...


class ServiceLike(Protocol):
    """What the commands need from the running service (``evb.server.Server`` or a test double).

    ``orderer`` is read directly for statistics; every change goes through ``apply(fn)``, which
    calls ``fn(orderer, now)`` and ships the ``Output`` it returns (or nothing for ``None``).
    """

    @property
    def orderer(self) -> Orderer: ...

    def apply(self, fn: Callable[[Orderer, float], Any]) -> object: ...

    def connections(self) -> Sequence[ConnectionLike]: ...


@dataclass(slots=True)
class Hooks:
    """The Tcl scripts the hook commands install (run by ``shell.tcl`` on notifications).

    Attributes:
        data_late: ``EVB::onDataLate`` script, empty for none.
        barrier_complete: ``EVB::barrierTrace complete`` script.
        barrier_incomplete: ``EVB::barrierTrace incomplete`` script.
        flow: ``EVB::onflow`` (xonScript, xoffScript) pairs in the order added.
    """

    data_late: str = ""
    barrier_complete: str = ""
    barrier_incomplete: str = ""
    flow: list[tuple[str, str]] = field(default_factory=list)


@dataclass(slots=True)
class Context:
    """What a handler works on."""

    service: ServiceLike
    hooks: Hooks
    registry: CommandRegistry
    #: Called after the onDataLate script changed (the edge turns late details on or off).
    on_hooks_changed: Callable[[], None] | None = None


Handler = Callable[[Context, str, Sequence[str]], TclValue]
"""handler(context, invoked_name, args) -> Python value; raises CommandError."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Command:
    """One registry entry.

    Attributes:
        name: the canonical name, e.g. ``EVB::inputStats``.
        aliases: other accepted spellings (``EVB::barriertrace``).
        subcommands: words accepted as the first argument (for completion and help).
        usage: the argument synopsis, as in ``wrong # args: should be "name usage"``.
        summary: one line for ``help``.
        help: the full description.
        result: the shape of the result.
        handler: the implementation.
    """

    name: str
    aliases: tuple[str, ...] = ()
    subcommands: tuple[str, ...] = ()
    usage: str = ""
    summary: str
    help: str
    result: str
    handler: Handler

    @property
    def names(self) -> tuple[str, ...]:
        return (self.name, *self.aliases)

    def synopsis(self, invoked: str | None = None) -> str:
        head = invoked or self.name
        return f"{head} {self.usage}".rstrip()


class CommandRegistry:
    """All commands by every spelling."""

    def __init__(self, commands: Iterable[Command] = ()) -> None:
        self._commands: list[Command] = []
        self._by_name: dict[str, Command] = {}
        for c in commands:
            self.add(c)

    def add(self, command: Command) -> None:
        for n in command.names:
            if n in self._by_name:
                raise ValueError(f"command {n!r} registered twice")
        self._commands.append(command)
        for n in command.names:
            self._by_name[n] = command

    def __iter__(self) -> Any:
        return iter(self._commands)

    def __len__(self) -> int:
        return len(self._commands)

    def names(self) -> list[str]:
        """Every accepted spelling, canonical names first."""
        out = [c.name for c in self._commands]
        out += [a for c in self._commands for a in c.aliases]
        return out

    def lookup(self, name: str) -> Command | None:
        """The command for a spelling; also accepts a name without ``EVB::``/``::``."""
        name = name.removeprefix("::")
        return self._by_name.get(name) or self._by_name.get("EVB::" + name)

    def call(self, ctx: Context, name: str, args: Sequence[str]) -> TclValue:
        """Run a command by any of its spellings.

        Raises:
            CommandError: unknown command or a handler's error; core errors are wrapped.
        """
        command = self.lookup(name)
        if command is None:
            raise CommandError(f'invalid command name "{name}"')
        try:
            return command.handler(ctx, name, list(args))
        except CommandError:
            raise
        except EvbError as e:
            raise CommandError(str(e)) from e

    def eval_to_tcl(self, ctx: Context, name: str, args: Sequence[str]) -> str:
        """:meth:`call`, formatted as Tcl."""
        return to_tcl(self.call(ctx, name, args))

    # -- completion ----------------------------------------------------------------------

    def completions(self, text_before_cursor: str) -> tuple[str, list[str]]:
        """Completion candidates for the word being typed.

        Returns:
            (partial word, candidates that start with it).
        """
        # Only the current command matters: after the last ``[``, ``;`` or newline.
        cut = max(text_before_cursor.rfind(c) for c in "[;\n")
        segment = text_before_cursor[cut + 1 :]
        words = segment.split()
        partial = words.pop() if segment and not segment[-1].isspace() and words else ""
        if not words:
            bare = partial.removeprefix("::")
            return partial, [n for n in self.names() if n.startswith(bare)]
        command = self.lookup(words[0])
        if command is None:
            return partial, []
        if command.name == "help" and len(words) == 1:
            pool = [n for n in self.names() if n != "help"]
        elif len(words) == 1:
            pool = list(command.subcommands)
        elif command.name == "EVB::config" and len(words) == 2 and words[1] in ("set", "get"):
            pool = list(CONFIG_NAMES)
        else:
            pool = []
        return partial, [p for p in pool if p.startswith(partial)]

    # -- help and docs -------------------------------------------------------------------

    def help_text(self, name: str | None = None) -> str:
        """``help`` (a list of commands) or ``help name`` (one command)."""
        if name is None:
            width = max(len(c.name) for c in self._commands)
            lines = [f"{c.name:<{width}}  {c.summary}" for c in self._commands]
            lines.append("Type 'help EVB::name' for one command.")
            return "\n".join(lines)
        command = self.lookup(name)
        if command is None:
            raise CommandError(
                f'no help for "{name}": unknown command, try one of {", ".join(self.names())}'
            )
        parts = [f"Usage: {command.synopsis()}"]
        if command.aliases:
            parts.append("Also spelled: " + ", ".join(command.aliases))
        parts += ["", command.help, "", f"Result: {command.result}"]
        return "\n".join(parts)

    def markdown(self) -> str:
        """The command reference (``docs/commands.md``), generated from the entries."""
        out = [
            "# EVB:: command reference",
            "",
            "Generated from `shell.commands.build_registry()` by `python -m shell.docs`;",
            "a test checks that this file matches the registry. Results are Tcl lists; numbers are",
            "unsigned decimal. Errors are Tcl errors (`catch` sees the message).",
            "",
            "| command | result |",
            "| --- | --- |",
        ]
        for c in self._commands:
            out.append(f"| `{_md_cell(c.synopsis())}` | {_md_cell(c.result)} |")
        for c in self._commands:
            out += ["", f"## {c.name}", "", "```tcl", c.synopsis(), "```", ""]
            if c.aliases:
                out += ["Also spelled " + ", ".join(f"`{a}`" for a in c.aliases) + ".", ""]
            out += [c.help, "", f"**Result:** {c.result}"]
        return "\n".join(out) + "\n"


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|")


# -- argument helpers ----------------------------------------------------------------------


def wrong_args(command: str, usage: str) -> CommandError:
    """Tcl's own wording: ``wrong # args: should be "cmd usage"``."""
    synopsis = f"{command} {usage}" if usage else command
    return CommandError(f'wrong # args: should be "{synopsis}"')


def _choices(options: Sequence[str]) -> str:
    if len(options) == 1:
        return options[0]
    if len(options) == 2:
        return f"{options[0]} or {options[1]}"
    return ", ".join(options[:-1]) + f", or {options[-1]}"


def bad_subcommand(word: str, options: Sequence[str]) -> CommandError:
    return CommandError(f'bad subcommand "{word}": must be {_choices(options)}')


def parse_int(word: str, what: str = "integer", *, maximum: int | None = None) -> int:
    """Parse a Tcl integer word (decimal, 0x hex, 0o/0b), unsigned.

    Raises:
        CommandError: ``expected integer but got "x"`` or an out-of-range message.
    """
    text = word.strip()
    m = _INT_RE.fullmatch(text)
    if m is None:
        raise CommandError(f'expected {what} but got "{word}"')
    value = int(text, 0) if m.group(1) else int(text, 10)
    if value < 0 or (maximum is not None and value > maximum):
        hi = "" if maximum is None else f"..{maximum}"
        raise CommandError(f"{what} out of range (0{hi}): {word}")
    return value


def parse_source_id(word: str) -> int:
    try:
        return parse_int(word, maximum=MAX_SOURCE_ID)
    except CommandError as e:
        if str(e).startswith("expected"):
            raise
        raise CommandError(f"source id out of range (0..{MAX_SOURCE_ID}): {word}") from None


# -- handlers ------------------------------------------------------------------------------


def _no_args(name: str, args: Sequence[str]) -> None:
    if args:
        raise wrong_args(name, "")


def _stats_with_clear(
    get: Callable[[Orderer], TclValue], clear: Callable[[Orderer], None]
) -> Handler:
    def handler(ctx: Context, name: str, args: Sequence[str]) -> TclValue:
        if not args:
            return get(ctx.service.orderer)
        if len(args) == 1:
            if args[0] == "clear":
                clear(ctx.service.orderer)
                return ""
            raise bad_subcommand(args[0], ["clear"])
        raise wrong_args(name, "?clear?")

    return handler


def _input_stats(ctx: Context, name: str, args: Sequence[str]) -> TclValue:
    _no_args(name, args)
    return ctx.service.orderer.input_stats()


def _output_stats(ctx: Context, name: str, args: Sequence[str]) -> TclValue:
    if len(args) != 1:
        raise wrong_args(name, "get|clear")
    if args[0] == "get":
        return ctx.service.orderer.output_stats()
    if args[0] == "clear":
        ctx.service.orderer.clear_output_stats()
        return ""
    raise bad_subcommand(args[0], ["get", "clear"])


def _dupstat(ctx: Context, name: str, args: Sequence[str]) -> TclValue:
    if len(args) > 1:
        raise wrong_args(name, "?get|clear?")
    sub = args[0] if args else "get"
    if sub == "get":
        return ctx.service.orderer.duplicate_stats()
    if sub == "clear":
        ctx.service.orderer.clear_duplicate_stats()
        return ""
    raise bad_subcommand(sub, ["get", "clear"])


def _on_data_late(ctx: Context, name: str, args: Sequence[str]) -> TclValue:
    if len(args) > 1:
        raise wrong_args(name, "?script?")
    previous = ctx.hooks.data_late
    if args:
        ctx.hooks.data_late = args[0]
        if ctx.on_hooks_changed is not None:
            ctx.on_hooks_changed()
    return previous


_TRACE_TYPES = ("complete", "incomplete", "partial")


def _barrier_trace(ctx: Context, name: str, args: Sequence[str]) -> TclValue:
    if not 1 <= len(args) <= 2:
        raise wrong_args(name, "complete|incomplete ?script?")
    kind = args[0]
    if kind not in _TRACE_TYPES:
        raise CommandError(
            f'Invalid barrier trace type "{kind}": must be {_choices(_TRACE_TYPES)}'
        )
    attr = "barrier_complete" if kind == "complete" else "barrier_incomplete"
    previous: str = getattr(ctx.hooks, attr)
    if len(args) == 2:
        setattr(ctx.hooks, attr, args[1])
    return previous


def _onflow(ctx: Context, name: str, args: Sequence[str]) -> TclValue:
    if not args:
        raise wrong_args(name, "add|remove xonScript xoffScript | list")
    sub = args[0]
    if sub == "list":
        if len(args) != 1:
            raise wrong_args(f"{name} list", "")
        return [list(pair) for pair in ctx.hooks.flow]
    if sub in ("add", "remove"):
        if len(args) != 3:
            raise wrong_args(f"{name} {sub}", "xonScript xoffScript")
        pair = (args[1], args[2])
        if sub == "add":
            ctx.hooks.flow.append(pair)
        else:
            try:
                ctx.hooks.flow.remove(pair)
            except ValueError:
                raise CommandError(
                    "No handler has been established for this pair of scripts: "
                    f"{to_tcl(list(pair))}"
                ) from None
        return ""
    raise bad_subcommand(sub, ["add", "remove", "list"])


def _source(ctx: Context, name: str, args: Sequence[str]) -> TclValue:
    if not args:
        return sorted(ctx.service.orderer.source_ids())
    if len(args) < 2:
        raise wrong_args(name, "?sock id ?id ...??")
    sock = args[0]
    ids = [parse_source_id(w) for w in args[1:]]
    ctx.service.apply(lambda orderer, now: orderer.bind(sock, ids, now))
    return ""


def _connection_names(ctx: Context) -> list[str]:
    return [c.name for c in ctx.service.connections()]


def _dead_source(ctx: Context, name: str, args: Sequence[str]) -> TclValue:
    if len(args) != 1:
        raise wrong_args(name, "id|sock")
    word = args[0]
    if _is_connection(ctx, word):
        ctx.service.apply(lambda orderer, now: orderer.mark_connection_dead(word, now))
        return ""
    try:
        sid = parse_source_id(word)
    except CommandError:
        raise CommandError(
            f'expected a source id or a connection name but got "{word}"'
        ) from None
    if sid not in ctx.service.orderer.source_ids():
        raise CommandError(f"no such source id: {sid}")
    ctx.service.apply(lambda orderer, now: orderer.mark_dead(sid, now))
    return ""


def _is_connection(ctx: Context, word: str) -> bool:
    """A live connection of the server, or a name queues were bound to (``EVB::source``)."""
    if word in _connection_names(ctx):
        return True
    return bool(ctx.service.orderer.connection_sources(word))


def _revive_socket(ctx: Context, name: str, args: Sequence[str]) -> TclValue:
    if len(args) != 1:
        raise wrong_args(name, "sock")
    sock = args[0]
    if not _is_connection(ctx, sock):
        raise CommandError(f'no such connection: "{sock}"')
    ctx.service.apply(lambda orderer, now: orderer.revive_connection(sock, now))
    return ""


def _simple_apply(method: str) -> Handler:
    def handler(ctx: Context, name: str, args: Sequence[str]) -> TclValue:
        _no_args(name, args)
        ctx.service.apply(lambda orderer, now: getattr(orderer, method)(now))
        return ""

    return handler


def _reset(ctx: Context, name: str, args: Sequence[str]) -> TclValue:
    _no_args(name, args)
    ctx.service.apply(lambda orderer, now: orderer.reset())
    return ""


def _check_config_name(cname: str) -> None:
    if cname not in CONFIG_NAMES:
        raise CommandError(
            f'Invalid configuration parameter "{cname}": must be {_choices(CONFIG_NAMES)}'
        )


def _builder_of(ctx: Context) -> Any:
    """The service's event-building output stage (a ``BuildingSink``), or a clear error."""
    sink = getattr(ctx.service, "sink", None)
    if sink is None or not callable(getattr(sink, "set_build", None)):
        raise CommandError(
            "event building is off in this EVB: start it with --build-dt TICKS or --ring NAME"
        )
    return sink


def _config_build(ctx: Context, name: str, args: Sequence[str]) -> TclValue:
    """``EVB::config set build NAME VALUE`` / ``EVB::config get build NAME``."""
    sub = args[0]
    want = 4 if sub == "set" else 3
    if len(args) != want:
        raise wrong_args(f"{name} {sub} build", "name value" if sub == "set" else "name")
    if args[2] not in BUILD_NAMES:
        raise CommandError(
            f'Invalid build parameter "{args[2]}": must be {_choices(tuple(BUILD_NAMES))}'
        )
    sink = _builder_of(ctx)
    if sub == "set":
        sink.set_build(args[2], args[3])
        return ""
    value = sink.get_build(args[2])
    return int(value) if isinstance(value, bool) else value


def _config(ctx: Context, name: str, args: Sequence[str]) -> TclValue:
    if not args:
        raise wrong_args(name, "set name value | get name")
    sub = args[0]
    if sub in ("set", "get") and len(args) >= 2 and args[1] == "build":
        return _config_build(ctx, name, args)
    if sub == "set":
        if len(args) != 3:
            raise wrong_args(f"{name} set", "name value")
        cname, value = args[1], args[2]
        _check_config_name(cname)
        ctx.service.apply(lambda orderer, now: orderer.set_config(cname, value))
        return ""
    if sub == "get":
        if len(args) != 2:
            raise wrong_args(f"{name} get", "name")
        _check_config_name(args[1])
        return ctx.service.orderer.get_config(args[1])
    raise bad_subcommand(sub, ["set", "get"])


def _connections(ctx: Context, name: str, args: Sequence[str]) -> TclValue:
    _no_args(name, args)
    return [
        [c.name, c.host, c.description, c.state, round(float(c.idle_s), 3)]
        for c in ctx.service.connections()
    ]


def _help(ctx: Context, name: str, args: Sequence[str]) -> TclValue:
    if len(args) > 1:
        raise wrong_args(name, "?command?")
    return ctx.registry.help_text(args[0] if args else None)


# -- the registry --------------------------------------------------------------------------


def build_registry() -> CommandRegistry:
    """The registry of every EVB:: command plus ``help``."""
    r = CommandRegistry()
    r.add(Command(
        name="EVB::inputStats",
        summary="input queue statistics",
        help=(
            "Statistics of the input queues: the oldest and newest timestamps queued, the total"
            " number of fragments queued, one entry per source queue (ascending source id) and"
            " the payload bytes emitted but not yet written (in flight)."
        ),
        result="`oldest newest totalQueued {{sid depth headTs bytesQueued bytesDequeued"
        " totalBytesQueued} ...} inflight` (fresh: `0 0 0 {} 0`)",
        handler=_input_stats,
    ))
    r.add(Command(
        name="EVB::outputStats",
        subcommands=("get", "clear"),
        usage="get|clear",
        summary="counts of fragments emitted, per source",
        help="`get` returns the number of fragments emitted, in total and per source;"
        " `clear` resets these counters.",
        result="get: `total {{sid count} ...}`; clear: empty",
        handler=_output_stats,
    ))
    r.add(Command(
        name="EVB::dlatestats",
        subcommands=("clear",),
        usage="?clear?",
        summary="data-late statistics",
        help="Counts of late fragments (timestamp below data already emitted). `worst` is the"
        " largest `newest - timestamp`. `clear` resets these counters only.",
        result="`count worst {{sid count worst} ...}`; clear: empty",
        handler=_stats_with_clear(
            lambda o: o.late_stats(), lambda o: o.clear_late_stats()
        ),
    ))
    r.add(Command(
        name="EVB::dupstat",
        subcommands=("get", "clear"),
        usage="?get|clear?",
        summary="duplicate timestamp statistics",
        help="Fragments whose timestamp equals the previous one of the same source (assigned"
        " NULL timestamps excluded). No argument means `get`.",
        result="`total {{sid count lastDupTs} ...}`; clear: empty",
        handler=_dupstat,
    ))
    r.add(Command(
        name="EVB::getoostats",
        subcommands=("clear",),
        usage="?clear?",
        summary="out-of-order statistics",
        help="Fragments that arrived with a timestamp below their source's previous one (they"
        " are sorted into place). `clear` resets these counters only.",
        result="`{count lastPriorTs lastBadTs} {{sid count lastPriorTs lastBadTs} ...}`",
        handler=_stats_with_clear(
            lambda o: o.out_of_order_stats(), lambda o: o.clear_out_of_order_stats()
        ),
    ))
    r.add(Command(
        name="EVB::barrierstats",
        subcommands=("clear",),
        usage="?clear?",
        summary="complete and incomplete barrier statistics",
        help="Complete barriers: count, homogeneous, heterogeneous, fragments per type and"
        " per source. Incomplete barriers: count, homogeneous, heterogeneous (by the types"
        " present), how often n sources were missing, and per source how often it was missing.",
        result="`{nComplete nHomog nHeterog {{type fragCount} ...} {{sid {{type count} ...}}"
        " ...}} {nIncomplete nHomog nHeterog {{nMissing times} ...} {{sid timesMissing} ...}}`",
        handler=_stats_with_clear(
            lambda o: o.barrier_stats(), lambda o: o.clear_barrier_stats()
        ),
    ))
    r.add(Command(
        name="EVB::onDataLate",
        usage="?script?",
        summary="get or set the data-late script",
        help="Sets the script run for every late fragment, called as"
        " `{*}$script sid ts newest payload` with the payload as a Tcl byte array (read it with"
        " `binary scan`). An empty script removes it; no argument leaves it unchanged.",
        result="the previous script",
        handler=_on_data_late,
    ))
    r.add(Command(
        name="EVB::barrierTrace",
        aliases=("EVB::barriertrace",),
        subcommands=("complete", "incomplete", "partial"),
        usage="complete|incomplete ?script?",
        summary="get or set a barrier trace script",
        help="`complete` scripts are called with `{{sid type} ...}`; `incomplete` (also"
        " `partial`) scripts with `{{sid type} ...} {missingSid ...}`. An empty script removes"
        " the trace; no script leaves it unchanged.",
        result="the previous script",
        handler=_barrier_trace,
    ))
    r.add(Command(
        name="EVB::onflow",
        subcommands=("add", "remove", "list"),
        usage="add|remove xonScript xoffScript | list",
        summary="XON/XOFF scripts",
        help="`add` registers a pair of scripts run on XON and XOFF: with no argument for global"
        " flow control, with the connection name appended for per-queue flow control."
        " `remove` removes the matching pair; `list` lists the pairs.",
        result="add/remove: empty; list: `{{xonScript xoffScript} ...}`",
        handler=_onflow,
    ))
    r.add(Command(
        name="EVB::source",
        usage="?sock id ?id ...??",
        summary="list source ids, or bind source queues to a connection",
        help="With no argument, the known source ids. With a connection name and ids, creates"
        " the queues of those ids bound to that connection (beware: a queue nobody feeds makes"
        " barriers incomplete).",
        result="no args: `{sid ...}`; else empty",
        handler=_source,
    ))
    r.add(Command(
        name="EVB::deadsource",
        usage="id|sock",
        summary="mark a source id, or every source of a connection, dead",
        help="A dead source takes no part in barriers until it sends data again or its"
        " connection is revived with `EVB::reviveSocket`.",
        result="empty",
        handler=_dead_source,
    ))
    r.add(Command(
        name="EVB::reviveSocket",
        usage="sock",
        summary="mark the sources of a connection alive",
        help="Every source bound to the connection takes part in barriers again.",
        result="empty",
        handler=_revive_socket,
    ))
    r.add(Command(
        name="EVB::flushqueues",
        summary="emit everything queued now",
        help="Sorts and emits every queued fragment, barriers by timestamp (e.g. at end of run).",
        result="empty",
        handler=_simple_apply("flush"),
    ))
    r.add(Command(
        name="EVB::abortbarrier",
        summary="emit a pending barrier now",
        help="Emits the pending barrier now, as complete or incomplete as it is.",
        result="empty",
        handler=_simple_apply("abort_barrier"),
    ))
    r.add(Command(
        name="EVB::reset",
        summary="reset timestamps",
        help="Resets oldest/newest, the last emitted timestamp and every source's last"
        " timestamp (after sources reset their clocks). Queued data and statistics stay.",
        result="empty",
        handler=_reset,
    ))
    r.add(Command(
        name="EVB::config",
        subcommands=("set", "get"),
        usage="set name value | get name | set build name value | get build name",
        summary="set or get a setting",
        help="Names: `window` (float > 0, seconds), `XoffThreshold`, `XonThreshold` (payload"
        " bytes), `perQXoffThreshold`, `perQXonThreshold` (fragments), `sourceTimeout`"
        " (seconds, 0 = never). Event building (when the EVB builds: `--build-dt` or `--ring`):"
        " `set build dt TICKS`, `set build maxFragments N` (0 = no limit),"
        " `set build timestampPolicy earliest|latest|average`, `set build build 0|1`"
        " (0 = nobuild); `get build NAME`.",
        result="set: empty; get: the value",
        handler=_config,
    ))
    r.add(Command(
        name="EVB::connections",
        summary="the source connections",
        help="One entry per source client connection: its name (the `sock` of the other"
        " commands), peer host, CONNECT description, state and seconds since it was last heard.",
        result="`{{name host description state idleSeconds} ...}`",
        handler=_connections,
    ))
    r.add(Command(
        name="help",
        usage="?command?",
        summary="this list, or the help of one command",
        help="`help` lists the commands; `help EVB::name` describes one.",
        result="text",
        handler=_help,
    ))
    return r


def format_list(values: Iterable[str]) -> str:
    """A Tcl list of strings (for callers building hook invocations)."""
    return " ".join(quote_element(v) for v in values)
