"""EVB::config set/get build ...: the event builder's settings from Tcl, on a real server."""

from __future__ import annotations

import asyncio
from pathlib import Path

from evb.server import serve
from evb.settings import ServerSettings
from shell.control import ControlClient, start_control


async def _run(tmp_path: Path, scripts: list[str], **kw: object) -> list[tuple[bool, str]]:
    settings = ServerSettings(host="127.0.0.1", port=0, **kw)  # type: ignore[arg-type]
    async with serve(settings) as server:
        ctl = await start_control(server, tmp_path / "c.sock")
        try:
            client = await ControlClient.connect(tmp_path / "c.sock")
            results = []
            for s in scripts:
                r = await client.evaluate(s)
                results.append((r.ok, r.text))
            builder = getattr(server.sink, "builder", None)
            if builder is not None:
                results.append((True, f"dt={builder.config.dt_ticks}"))
            return results
        finally:
            await ctl.close()


def test_build_settings_set_and_get_through_tcl(tmp_path: Path) -> None:
    out = asyncio.run(
        _run(
            tmp_path,
            [
                "EVB::config get build dt",
                "EVB::config set build dt 250; EVB::config get build dt",
                "EVB::config set build timestampPolicy average;"
                " EVB::config get build timestampPolicy",
                "EVB::config set build maxFragments 8; EVB::config get build maxFragments",
                "EVB::config get build build",
                "catch {EVB::config set build dt x} msg; set msg",
                "catch {EVB::config set build bogus 1} msg; set msg",
                "catch {EVB::config set build timestampPolicy median} msg; set msg",
            ],
            output=tmp_path / "events.evb",
            build_dt_ticks=100,
        )
    )
    assert out[0] == (True, "100")
    assert out[1] == (True, "250")
    assert out[2] == (True, "average")
    assert out[3] == (True, "8")
    assert out[4] == (True, "1")
    assert out[5] == (True, 'expected integer but got "x"')
    assert out[6][1].startswith('Invalid build parameter "bogus": must be')
    assert "must be earliest, latest or average" in out[7][1]
    assert out[8] == (True, "dt=250")  # the running builder changed


def test_build_settings_when_the_evb_does_not_build(tmp_path: Path) -> None:
    out = asyncio.run(_run(tmp_path, ["EVB::config get build dt"]))
    assert out[0][0] is False
    assert "event building is off in this EVB" in out[0][1]
