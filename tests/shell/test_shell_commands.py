"""Every EVB:: command and its errors, through the real Tcl interpreter over a real Orderer."""

from __future__ import annotations

import pytest

from evb.batch import NULL_TIMESTAMP
from evb.batch import Fragment as F


def d(ts: int, sid: int, payload: bytes = b"", barrier: int = 0) -> F:
    return F(timestamp=ts, source_id=sid, payload=payload, barrier_type=barrier)


def test_fresh_input_stats(env):
    assert env.ok("EVB::inputStats") == "0 0 0 {} 0"


def test_input_stats_moves_with_data(env):
    env.ok("EVB::source sockB 2")  # an empty queue holds sid 1's data back
    env.svc.send(d(1, 1, b"abcd"), d(2, 1, b"ef"))
    out = env.ok("EVB::inputStats")
    assert out == "1 2 2 {{1 2 1 6 0 6} {2 0 0 0 0 0}} 0"
    assert env.ok("llength [lindex [EVB::inputStats] 3]") == "2"


def test_scenario_two_queues_output_stats(env):
    env.ok("EVB::source sockA 1 2")
    env.svc.send(d(1, 1), d(2, 1), d(3, 1), d(10, 1))
    assert env.svc.emitted == []
    env.svc.send(d(4, 2), d(5, 2), d(6, 2))
    assert [f.timestamp for f in env.svc.emitted] == [1, 2, 3, 4, 5, 6]
    assert env.ok("EVB::outputStats get") == "6 {{1 3} {2 3}}"
    assert env.ok("EVB::outputStats clear") == ""
    assert env.ok("EVB::outputStats get") == "0 {{1 0} {2 0}}"


def test_dupstat_spec_scenario(env):
    for ts in (100, 110, 110, 110, 110, 120):
        env.svc.send(d(ts, 1))
    for ts in (100, 120, 130, 140, 150):
        env.svc.send(d(ts, 2))
    for ts in (112, 112, 120, 125, 130, 132):
        env.svc.send(d(ts, 3))
    assert env.ok("EVB::dupstat") == "4 {{1 3 110} {3 1 112}}"
    assert env.ok("EVB::dupstat get") == "4 {{1 3 110} {3 1 112}}"
    assert env.ok("EVB::dupstat clear") == ""
    assert env.ok("EVB::dupstat") == "0 {}"


def test_null_timestamp_is_not_a_duplicate(env):
    env.svc.send(d(500, 1), d(NULL_TIMESTAMP, 1))
    env.ok("EVB::flushqueues")
    assert [f.timestamp for f in env.svc.emitted] == [500, 500]
    assert env.ok("EVB::dupstat") == "0 {}"


def test_dlatestats_and_clear(env):
    env.ok("EVB::config set window 1")
    env.svc.send(d(100, 1))
    env.svc.advance(2)
    env.svc.send(d(50, 2))
    env.svc.advance(2)
    assert env.ok("EVB::dlatestats") == "1 50 {{2 1 50}}"
    assert env.ok("EVB::dlatestats clear") == ""
    assert env.ok("EVB::dlatestats") == "0 0 {}"


def test_getoostats_and_clear(env):
    env.svc.send(d(10, 1), d(20, 1), d(15, 1))
    assert env.ok("EVB::getoostats") == "{1 20 15} {{1 1 20 15}}"
    assert env.ok("EVB::getoostats clear") == ""
    assert env.ok("EVB::getoostats") == "{0 0 0} {}"


def test_barrierstats_complete_homogeneous(env):
    env.ok("EVB::source sockA 1 2")
    env.svc.send(d(10, 1), d(20, 1), d(30, 1, barrier=1))
    env.svc.send(d(15, 2), d(25, 2), d(35, 2, barrier=1))
    assert [(f.timestamp, f.barrier_type) for f in env.svc.emitted] == [
        (10, 0), (15, 0), (20, 0), (25, 0), (30, 1), (35, 1)
    ]
    assert env.ok("EVB::barrierstats") == "{1 1 0 {{1 2}} {{1 {{1 1}}} {2 {{1 1}}}}} {0 0 0 {} {}}"
    assert env.ok("EVB::barrierstats clear") == ""
    assert env.ok("EVB::barrierstats") == "{0 0 0 {} {}} {0 0 0 {} {}}"


def test_barrierstats_incomplete_after_timeout(env):
    env.ok("EVB::config set window 1")
    env.ok("EVB::source sockA 1 2")
    env.svc.send(d(10, 1, barrier=2))
    env.svc.advance(4.5)
    assert env.ok("lindex [EVB::barrierstats] 1") == "1 1 0 {{1 1}} {{2 1}}"


def test_source_lists_and_binds(env):
    assert env.ok("EVB::source") == ""
    assert env.ok("EVB::source sockA 7 3") == ""
    assert env.ok("EVB::source") == "3 7"
    assert env.svc.orderer.connection_sources("sockA") == [7, 3]
    assert env.ok("EVB::inputStats") == "0 0 0 {{3 0 0 0 0 0} {7 0 0 0 0 0}} 0"


def test_deadsource_by_id_and_by_connection_and_revive(env):
    env.ok("EVB::source sockA 1 2")
    env.ok("EVB::source sockB 3")
    assert env.ok("EVB::deadsource 3") == ""
    assert env.svc.orderer.is_dead(3)
    assert env.ok("EVB::deadsource sockA") == ""
    assert env.svc.orderer.is_dead(1) and env.svc.orderer.is_dead(2)
    assert env.ok("EVB::reviveSocket sockA") == ""
    assert not env.svc.orderer.is_dead(1) and not env.svc.orderer.is_dead(2)
    assert env.svc.orderer.is_dead(3)


def test_dead_source_releases_pending_barrier(env):
    env.ok("EVB::source sockA 1")
    env.ok("EVB::source sockB 2")
    env.svc.send(d(10, 1, barrier=1))
    assert env.svc.emitted == []
    env.ok("EVB::deadsource 2")
    assert [(f.timestamp, f.barrier_type) for f in env.svc.emitted] == [(10, 1)]
    assert env.ok("lindex [EVB::barrierstats] 1 0") == "1"


def test_flushqueues_emits_everything(env):
    env.ok("EVB::source sockB 2")
    env.svc.send(d(5, 1), d(7, 1))
    assert env.svc.emitted == []
    assert env.ok("EVB::flushqueues") == ""
    assert [f.timestamp for f in env.svc.emitted] == [5, 7]
    assert env.ok("EVB::inputStats") == "0 0 0 {{1 0 0 0 0 0} {2 0 0 0 0 0}} 0"


def test_abortbarrier_emits_pending_barrier(env):
    env.ok("EVB::source sockA 1 2")
    env.svc.send(d(10, 1, barrier=1))
    assert env.svc.emitted == []
    assert env.ok("EVB::abortbarrier") == ""
    assert [(f.timestamp, f.barrier_type) for f in env.svc.emitted] == [(10, 1)]
    assert env.ok("lindex [EVB::barrierstats] 1") == "1 1 0 {{1 1}} {{2 1}}"


def test_reset_forgets_timestamps_keeps_data(env):
    env.ok("EVB::config set window 1")
    env.svc.send(d(100, 1))
    env.svc.advance(2)
    env.svc.send(d(200, 1))
    assert env.ok("EVB::reset") == ""
    env.svc.send(d(5, 2))
    env.svc.advance(2)
    # Data before the reset are not "late" relative to data after it.
    assert env.ok("lindex [EVB::dlatestats] 0") == "0"
    assert env.ok("lindex [EVB::outputStats get] 0") == "3"


@pytest.mark.parametrize(
    ("name", "value", "expect"),
    [
        ("window", "2", "2"),
        ("window", "0.5", "0.5"),
        ("XoffThreshold", "300000000", "300000000"),
        ("XonThreshold", "500", "500"),
        ("perQXoffThreshold", "3000000", "3000000"),
        ("perQXonThreshold", "50", "50"),
        ("sourceTimeout", "7.5", "7.5"),
    ],
)
def test_config_set_get_every_name(env, name, value, expect):
    assert env.ok(f"EVB::config set {name} {value}") == ""
    assert env.ok(f"EVB::config get {name}") == expect


def test_config_get_defaults(env):
    assert env.ok("EVB::config get window") == "20"
    assert env.ok("EVB::config get XoffThreshold") == str(256 * 1024 * 1024)


def test_connections(env):
    assert env.ok("EVB::connections") == ""
    from shell_fakes import Conn

    env.svc.conns.append(Conn(name="127.0.0.1:4000", description="my source"))
    assert env.ok("EVB::connections") == "{127.0.0.1:4000 127.0.0.1 {my source} active 0.25}"
    assert env.ok("lindex [EVB::connections] 0 2") == "my source"


def test_help_lists_and_describes(env):
    text = env.ok("help")
    for name in ("EVB::inputStats", "EVB::barrierTrace", "EVB::config", "EVB::connections"):
        assert name in text
    one = env.ok("help EVB::dupstat")
    assert one.startswith("Usage: EVB::dupstat ?get|clear?")
    assert "Also spelled: EVB::barriertrace" in env.ok("help EVB::barrierTrace")
    assert env.ok("help barriertrace").startswith("Usage: EVB::barrierTrace")
    assert env.error("help EVB::nope").startswith('no help for "EVB::nope": unknown command')


def test_both_spellings_share_state(env):
    env.ok("EVB::barrierTrace complete {puts a}")
    assert env.ok("EVB::barriertrace complete") == "puts a"
    assert env.ok("EVB::barriertrace partial {puts b}") == ""
    assert env.ok("EVB::barrierTrace incomplete") == "puts b"


def test_commands_work_inside_procs_and_namespace_import(env):
    env.ok("proc depth {} { lindex [EVB::inputStats] 2 }")
    env.ok("EVB::source sockB 2")
    env.svc.send(d(1, 1), d(2, 1))
    assert env.ok("depth") == "2"
    env.ok("namespace import EVB::input*")
    assert env.ok("inputStats") == env.ok("EVB::inputStats")


# -- errors: the message `catch` sees ---------------------------------------------------

WRONG_ARGS = [
    ("EVB::inputStats x", 'wrong # args: should be "EVB::inputStats"'),
    ("EVB::outputStats", 'wrong # args: should be "EVB::outputStats get|clear"'),
    ("EVB::outputStats get x", 'wrong # args: should be "EVB::outputStats get|clear"'),
    ("EVB::dlatestats clear x", 'wrong # args: should be "EVB::dlatestats ?clear?"'),
    ("EVB::dupstat get x", 'wrong # args: should be "EVB::dupstat ?get|clear?"'),
    ("EVB::getoostats a b", 'wrong # args: should be "EVB::getoostats ?clear?"'),
    ("EVB::barrierstats a b", 'wrong # args: should be "EVB::barrierstats ?clear?"'),
    ("EVB::onDataLate a b", 'wrong # args: should be "EVB::onDataLate ?script?"'),
    ("EVB::barrierTrace",
     'wrong # args: should be "EVB::barrierTrace complete|incomplete ?script?"'),
    ("EVB::barriertrace a b c",
     'wrong # args: should be "EVB::barriertrace complete|incomplete ?script?"'),
    ("EVB::onflow", 'wrong # args: should be "EVB::onflow add|remove xonScript xoffScript | list"'),
    ("EVB::onflow add x", 'wrong # args: should be "EVB::onflow add xonScript xoffScript"'),
    ("EVB::onflow remove x", 'wrong # args: should be "EVB::onflow remove xonScript xoffScript"'),
    ("EVB::onflow list x", 'wrong # args: should be "EVB::onflow list"'),
    ("EVB::source sockA", 'wrong # args: should be "EVB::source ?sock id ?id ...??"'),
    ("EVB::deadsource", 'wrong # args: should be "EVB::deadsource id|sock"'),
    ("EVB::reviveSocket", 'wrong # args: should be "EVB::reviveSocket sock"'),
    ("EVB::flushqueues now", 'wrong # args: should be "EVB::flushqueues"'),
    ("EVB::abortbarrier x", 'wrong # args: should be "EVB::abortbarrier"'),
    ("EVB::reset x", 'wrong # args: should be "EVB::reset"'),
    ("EVB::config", 'wrong # args: should be "EVB::config set name value | get name"'),
    ("EVB::config set window", 'wrong # args: should be "EVB::config set name value"'),
    ("EVB::config get", 'wrong # args: should be "EVB::config get name"'),
    ("EVB::connections x", 'wrong # args: should be "EVB::connections"'),
    ("help a b", 'wrong # args: should be "help ?command?"'),
]


@pytest.mark.parametrize(("script", "message"), WRONG_ARGS)
def test_wrong_number_of_args(env, script, message):
    assert env.error(script) == message


BAD_WORDS = [
    ("EVB::outputStats reset", 'bad subcommand "reset": must be get or clear'),
    ("EVB::dupstat wipe", 'bad subcommand "wipe": must be get or clear'),
    ("EVB::dlatestats get", 'bad subcommand "get": must be clear'),
    ("EVB::getoostats x", 'bad subcommand "x": must be clear'),
    ("EVB::barrierstats x", 'bad subcommand "x": must be clear'),
    ("EVB::onflow toggle", 'bad subcommand "toggle": must be add, remove, or list'),
    ("EVB::config put window 1", 'bad subcommand "put": must be set or get'),
    ("EVB::barrierTrace full",
     'Invalid barrier trace type "full": must be complete, incomplete, or partial'),
    ("EVB::source sockA x", 'expected integer but got "x"'),
    ("EVB::source sockA 1 2.5", 'expected integer but got "2.5"'),
    ("EVB::source sockA -1", "source id out of range (0..4294967295): -1"),
    ("EVB::source sockA 4294967296", "source id out of range (0..4294967295): 4294967296"),
    ("EVB::deadsource nosuch", 'expected a source id or a connection name but got "nosuch"'),
    ("EVB::deadsource 42", "no such source id: 42"),
    ("EVB::reviveSocket nosuch", 'no such connection: "nosuch"'),
    ("EVB::config set window 0", "Build time window must be > 0 was 0"),
    ("EVB::config set window -3", "Build time window must be > 0 was -3"),
    ("EVB::config set window x", 'expected floating-point number but got "x"'),
    ("EVB::config set XoffThreshold x", 'expected integer but got "x"'),
    ("EVB::config set XoffThreshold -5", "expected a non-negative integer but got -5"),
    ("EVB::config set perQXonThreshold 1.5", 'expected integer but got "1.5"'),
    ("EVB::config set sourceTimeout -1", "sourceTimeout must be >= 0 seconds was -1.0"),
    ("EVB::config set colour blue",
     'Invalid configuration parameter "colour": must be window, XoffThreshold, XonThreshold,'
     " perQXoffThreshold, perQXonThreshold, or sourceTimeout"),
    ("EVB::config get colour",
     'Invalid configuration parameter "colour": must be window, XoffThreshold, XonThreshold,'
     " perQXoffThreshold, perQXonThreshold, or sourceTimeout"),
    ("EVB::onflow remove {puts a} {puts b}",
     "No handler has been established for this pair of scripts: {puts a} {puts b}"),
]


@pytest.mark.parametrize(("script", "message"), BAD_WORDS)
def test_error_messages(env, script, message):
    assert env.error(script) == message


def test_errors_change_nothing(env):
    env.ok("EVB::config set window 3")
    env.error("EVB::config set window 0")
    assert env.ok("EVB::config get window") == "3"


def test_error_code_and_uncaught_error(env):
    env.error("EVB::config set window 0")
    assert env.ok("set ::errorCode") == "EVB COMMAND"
    r = env.shell.evaluate("EVB::dlatestats x")
    assert not r.ok and r.text == 'bad subcommand "x": must be clear'


def test_source_ids_accept_hex(env):
    env.ok("EVB::source sockA 0x10")
    assert env.ok("EVB::source") == "16"
