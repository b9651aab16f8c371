"""End to end, in separate processes: evb-server --control, evb-shell --attach -c, evb-shell -c."""

from __future__ import annotations

import select
import subprocess
import time
from pathlib import Path

from shell_procs import Server, run_shell, shell_env, tool

from evb.batch import Fragment as F
from sources.client import SourceClient


def attach(tmp_path: Path, server: Server, script: str) -> subprocess.CompletedProcess[str]:
    return run_shell(tmp_path, "--attach", str(server.control), "-c", script)


def test_attach_sees_queues_move_config_and_late_hook(tmp_path, server):
    r = attach(tmp_path, server, "EVB::inputStats")
    assert (r.returncode, r.stdout) == (0, "0 0 0 {} 0\n"), r.stderr

    with SourceClient.connect(server.host, server.port, "test source", [1, 2]) as src:
        # sid 2 sends nothing: sid 1's data wait in the queue until the window passes.
        src.send([F(timestamp=t, source_id=1, payload=b"abcd") for t in (10, 20, 30)])
        r = attach(tmp_path, server, "EVB::config set window 2; lindex [EVB::inputStats] 3 0")
        assert r.returncode == 0, r.stderr
        sid, depth, head, queued, _, _ = map(int, r.stdout.split())
        assert (sid, depth, head, queued) == (1, 3, 10, 12)
        r = attach(tmp_path, server, "EVB::config get window")
        assert r.stdout == "2\n"

        hook = (
            "proc onLate {sid ts newest payload} {"
            " binary scan $payload H* hex; lappend ::late $sid $ts $newest $hex }\n"
            "EVB::onDataLate onLate\n"
            "EVB::config set window 0.2"
        )
        assert attach(tmp_path, server, hook).returncode == 0
        r = attach(tmp_path, server, "EVB::flushqueues; lindex [EVB::outputStats get] 0")
        assert r.stdout == "3\n"
        src.send([F(timestamp=5, source_id=2, payload=b"\x00\xff")])
        deadline = time.monotonic() + 30
        while True:  # bounded: the hook runs once the window passed
            r = attach(tmp_path, server, "if {[info exists ::late]} {set ::late}")
            if r.stdout.strip() or time.monotonic() > deadline:
                break
        assert r.stdout == "2 5 30 00ff\n"
        r = attach(tmp_path, server, "EVB::dlatestats")
        assert r.stdout == "1 25 {{2 1 25}}\n"
        r = attach(tmp_path, server, "lindex [EVB::connections] 0 2")
        assert r.stdout == "test source\n"


def test_attach_errors_exit_1_with_message(tmp_path, server):
    r = attach(tmp_path, server, "EVB::config set window 0")
    assert (r.returncode, r.stdout, r.stderr) == (1, "", "Build time window must be > 0 was 0\n")
    r = attach(tmp_path, server, "EVB::barrierTrace sideways")
    assert r.returncode == 1 and r.stderr.startswith("Invalid barrier trace type")
    r = attach(tmp_path, server, "catch {EVB::dupstat x} m; set m")
    assert (r.returncode, r.stdout) == (0, 'bad subcommand "x": must be get or clear\n')


def test_attach_without_server_fails_cleanly(tmp_path):
    r = run_shell(tmp_path, "--attach", str(tmp_path / "nothing.sock"), "-c", "EVB::source")
    assert r.returncode == 1
    assert "cannot attach to control socket" in r.stderr


def test_in_process_c_f_and_errors(tmp_path):
    r = run_shell(tmp_path, "-c", "EVB::inputStats")
    assert (r.returncode, r.stdout) == (0, "0 0 0 {} 0\n"), r.stderr
    script = tmp_path / "setup.tcl"
    script.write_text(
        "proc double {x} { expr {2*$x} }\n"
        "EVB::config set window 4\n"
        "foreach name {window XoffThreshold} { lappend ::cfg [EVB::config get $name] }\n"
    )
    r = run_shell(tmp_path, "--xoff-bytes", "5000", "--xon-bytes", "100", "-f", str(script),
                  "-c", "list [double 21] $::cfg")
    assert (r.returncode, r.stdout) == (0, "42 {4 5000}\n"), r.stderr
    r = run_shell(tmp_path, "-c", "EVB::config set window 0")
    assert (r.returncode, r.stderr) == (1, "Build time window must be > 0 was 0\n")
    r = run_shell(tmp_path, "-c", "exit 4")
    assert r.returncode == 4
    bad = tmp_path / "bad.tcl"
    bad.write_text("EVB::nosuch\n")
    r = run_shell(tmp_path, "-f", str(bad), "-c", "EVB::source")
    assert r.returncode == 1 and 'invalid command name "EVB::nosuch"' in r.stderr


def test_in_process_script_on_stdin(tmp_path):
    r = run_shell(
        tmp_path,
        "--window", "7",
        stdin="proc f {} {\n  return [EVB::config get window]\n}\nf\nEVB::nope\nputs done\n",
    )
    assert r.stdout == "7\ndone\n"
    assert 'invalid command name "EVB::nope"' in r.stderr
    assert r.returncode == 1


def test_shell_with_control_shares_its_interpreter(tmp_path):
    control = tmp_path / "own.sock"
    proc = subprocess.Popen(
        [*tool("evb-shell"), "--control", str(control)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env=shell_env(tmp_path),
    )
    try:
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.write("proc shared {} { return from-the-shell }\nset ready yes\n")
        proc.stdin.flush()
        ready, _, _ = select.select([proc.stdout], [], [], 30)
        assert ready and proc.stdout.readline() == "yes\n"
        r = run_shell(tmp_path, "--attach", str(control), "-c", "shared")
        assert (r.returncode, r.stdout) == (0, "from-the-shell\n"), r.stderr
        proc.stdin.close()
        assert proc.wait(timeout=30) == 0
        assert not control.exists()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()
