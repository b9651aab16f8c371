"""Hooks with real Tcl procs: late data, barriers, XON/XOFF, errors, `after`."""

from __future__ import annotations

import asyncio

from evb.batch import Fragment as F


def d(ts: int, sid: int, payload: bytes = b"", barrier: int = 0) -> F:
    return F(timestamp=ts, source_id=sid, payload=payload, barrier_type=barrier)


LATE_PROC = r"""
set ::late {}
proc onLate {sid ts newest payload} {
    binary scan $payload cu* bytes
    lappend ::late [list $sid $ts $newest [string length $payload] $bytes]
}
"""


def test_late_hook_gets_sid_ts_newest_and_a_byte_array(env):
    env.ok(LATE_PROC)
    assert env.ok("EVB::onDataLate onLate") == ""
    assert env.svc.orderer.late_details
    env.ok("EVB::config set window 1")
    env.svc.send(d(100, 1))
    env.svc.advance(2)
    env.svc.send(d(50, 2, b"\x00\x01\xfe\xff"))
    env.svc.advance(2)
    assert env.ok("set ::late") == "{2 50 100 4 {0 1 254 255}}"


def test_late_hook_script_prefix_gets_args_appended(env):
    env.ok("proc tagged {tag args} { lappend ::seen $tag {*}[lrange $args 0 2] }")
    env.ok("EVB::onDataLate {tagged mytag}")
    env.ok("EVB::config set window 1")
    env.svc.send(d(100, 1))
    env.svc.advance(2)
    env.svc.send(d(60, 2))
    env.svc.advance(2)
    assert env.ok("set ::seen") == "mytag 2 60 100"


def test_on_data_late_returns_previous_and_empty_removes(env):
    assert env.ok("EVB::onDataLate first") == ""
    assert env.ok("EVB::onDataLate second") == "first"
    assert env.ok("EVB::onDataLate") == "second"
    assert env.ok("EVB::onDataLate {}") == "second"
    assert env.ok("EVB::onDataLate") == ""
    assert not env.svc.orderer.late_details


def test_complete_barrier_trace(env):
    env.ok("proc onComplete {barriers} { lappend ::complete $barriers }")
    assert env.ok("EVB::barrierTrace complete onComplete") == ""
    env.ok("EVB::source sockA 1 2")
    env.svc.send(d(10, 1), d(20, 1), d(30, 1, barrier=1))
    env.svc.send(d(15, 2), d(25, 2), d(35, 2, barrier=1))
    assert env.ok("set ::complete") == "{{1 1} {2 1}}"
    assert env.ok("EVB::barrierTrace complete") == "onComplete"


def test_incomplete_barrier_trace_on_timeout(env):
    env.ok("proc onPartial {barriers missing} { lappend ::partial $barriers $missing }")
    env.ok("EVB::barriertrace partial onPartial")
    env.ok("EVB::config set window 1")
    env.ok("EVB::source sockA 1 2")
    env.svc.send(d(10, 1, barrier=2))
    env.svc.advance(3)
    assert env.ok("info exists ::partial") == "0"
    env.svc.advance(1.5)
    assert env.ok("set ::partial") == "{{1 2}} 2"


def test_incomplete_barrier_trace_on_abortbarrier(env):
    env.ok("EVB::barrierTrace incomplete {lappend ::partial}")
    env.ok("EVB::source sockA 1 2 3")
    env.svc.send(d(10, 1, barrier=1))
    env.svc.send(d(11, 3, barrier=5))
    env.ok("EVB::abortbarrier")
    assert env.ok("set ::partial") == "{{1 1} {3 5}} 2"


def test_hook_can_call_evb_commands(env):
    env.ok("proc onComplete {b} { set ::depth [lindex [EVB::inputStats] 2] }")
    env.ok("EVB::barrierTrace complete onComplete")
    env.ok("EVB::source sockA 1 2")
    env.svc.send(d(1, 1, barrier=1))
    env.svc.send(d(2, 2, barrier=1))
    assert env.ok("set ::depth") == "0"


def test_global_xon_xoff_scripts(env):
    env.ok("proc xon {args} { lappend ::flow xon {*}$args }")
    env.ok("proc xoff {args} { lappend ::flow xoff {*}$args }")
    assert env.ok("EVB::onflow add xon xoff") == ""
    assert env.ok("EVB::onflow list") == "{xon xoff}"
    env.ok("EVB::config set XonThreshold 10")
    env.ok("EVB::config set XoffThreshold 100")
    env.ok("EVB::source sockA 1 2")
    env.svc.send(d(1, 1, b"x" * 60))
    assert env.ok("info exists ::flow") == "0"
    env.svc.send(d(2, 1, b"x" * 60))
    assert env.ok("set ::flow") == "xoff"
    env.ok("EVB::flushqueues")
    assert env.ok("set ::flow") == "xoff xon"


def test_per_queue_flow_scripts_get_the_connection(env):
    env.ok("EVB::onflow add {lappend ::flow on} {lappend ::flow off}")
    env.ok("EVB::config set perQXonThreshold 1")
    env.ok("EVB::config set perQXoffThreshold 3")
    env.ok("EVB::source sockA 1")
    env.ok("EVB::source sockB 2")
    env.svc.send(d(1, 1), d(2, 1), d(3, 1), connection="sockA")
    assert env.ok("set ::flow") == "off sockA"
    env.svc.send(d(5, 2), connection="sockB")
    assert env.ok("set ::flow") == "off sockA on sockA"


def test_onflow_remove_and_several_pairs(env):
    env.ok("EVB::onflow add {lappend ::a on} {lappend ::a off}")
    env.ok("EVB::onflow add {lappend ::b on} {lappend ::b off}")
    assert env.ok("llength [EVB::onflow list]") == "2"
    assert env.ok("EVB::onflow remove {lappend ::a on} {lappend ::a off}") == ""
    assert env.ok("EVB::onflow list") == "{{lappend ::b on} {lappend ::b off}}"
    env.ok("EVB::config set XonThreshold 1; EVB::config set XoffThreshold 10")
    env.ok("EVB::source s 1 2")
    env.svc.send(d(1, 1, b"y" * 20))
    assert env.ok("info exists ::a") == "0"
    assert env.ok("set ::b") == "off"


def test_failing_hook_is_reported_and_evb_goes_on(env):
    env.ok("proc onComplete {b} { error \"boom in hook\" }")
    env.ok("EVB::barrierTrace complete onComplete")
    env.ok("EVB::barrierTrace incomplete {lappend ::after}")
    env.ok("EVB::source sockA 1 2")
    env.svc.send(d(1, 1, barrier=1))
    env.svc.send(d(2, 2, barrier=1))
    err = env.err.getvalue()
    assert "error in hook script {onComplete}: boom in hook" in err
    assert env.shell.hook_errors == 1
    # The EVB keeps ordering and the other hooks keep running.
    env.svc.send(d(10, 1, barrier=3))
    env.ok("EVB::abortbarrier")
    assert env.ok("set ::after") == "{{1 3}} 2"
    assert env.ok("lindex [EVB::outputStats get] 0") == "3"


def test_unknown_hook_command_is_reported(env):
    env.ok("EVB::onDataLate noSuchProc")
    env.ok("EVB::config set window 1")
    env.svc.send(d(100, 1))
    env.svc.advance(2)
    env.svc.send(d(50, 2))
    env.svc.advance(2)
    assert 'error in hook script {noSuchProc}: invalid command name "noSuchProc"' in (
        env.err.getvalue()
    )
    assert env.ok("lindex [EVB::dlatestats] 0") == "1"


def test_puts_goes_to_the_shell_streams(env):
    env.ok('puts hello; puts -nonewline stdout "a b"; puts stderr oops')
    assert env.out.getvalue() == "hello\na b"
    assert env.err.getvalue() == "oops\n"
    usage = 'wrong # args: should be "puts ?-nonewline? ?channelId? string"'
    assert env.error("puts a b c d") == usage


def test_capture_collects_puts(env):
    r = env.shell.evaluate("puts one; puts two; expr {6*7}", capture=True)
    assert (r.ok, r.text, r.output) == (True, "42", "one\ntwo\n")
    assert env.out.getvalue() == ""


def test_exit_ends_only_where_allowed(env):
    r = env.shell.evaluate("exit 3")
    assert r.exit_code == 3
    r = env.shell.evaluate("exit 3", allow_exit=False)
    assert not r.ok and "exit is not available here" in r.text


def test_after_fires_from_the_asyncio_loop(env):
    async def main() -> str:
        fired = asyncio.Event()
        env.shell.interp.createcommand("py_fired", fired.set)
        env.shell.start()
        try:
            env.ok("after 20 {set ::ticked yes; py_fired}")
            async with asyncio.timeout(10):
                await fired.wait()
            return env.ok("set ::ticked")
        finally:
            await env.shell.close()

    assert asyncio.run(main()) == "yes"


def test_background_error_is_reported(env):
    async def main() -> None:
        seen = asyncio.Event()
        env.shell.interp.createcommand("py_seen", seen.set)
        env.shell.start()
        try:
            env.ok("after 0 {error bad-after}; after 30 py_seen")
            async with asyncio.timeout(10):
                await seen.wait()
        finally:
            await env.shell.close()

    asyncio.run(main())
    assert "background error: bad-after" in env.err.getvalue()


def test_hooks_are_deferred_to_the_loop_when_one_runs(env):
    env.ok("EVB::barrierTrace complete {lappend ::done}")
    env.ok("EVB::source sockA 1")

    async def main() -> tuple[str, str]:
        env.svc.send(d(1, 1, barrier=1))
        before = env.ok("info exists ::done")
        await asyncio.sleep(0)
        return before, env.ok("set ::done")

    assert asyncio.run(main()) == ("0", "{{1 1}}")
