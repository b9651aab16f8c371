"""The README's run command, as a user runs it: evb-demo end to end in real processes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def _demo(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    code = "import sys; from evb.demo import main; sys.exit(main())"
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=180,
    )


def test_demo_pipeline_delivers_every_fragment_to_the_analysis(tmp_path: Path) -> None:
    r = _demo("--count", "3000", "--run-dir", str(tmp_path / "run"), cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    out = r.stdout
    assert "every fragment reached the analysis" in out
    assert "3,000 events, 12,000 data fragments (12,000 sent), 8 barrier fragments" in out
    # Both barriers complete, each with all four sources (the hooks ran in the server).
    assert (
        "{complete {{1 1} {2 1} {3 1} {4 1}}} {complete {{1 2} {2 2} {3 2} {4 2}}}" in out
    )
    assert "EVB::outputStats get   12008 {{1 3002} {2 3002} {3 3002} {4 3002}}" in out
    rows = (tmp_path / "run" / "workers" / "hits.csv").read_text().splitlines()
    assert len(rows) > 12_000  # header + one row per fragment (+ padding rows of slots)


def test_demo_inprocess_orders_and_prints_statistics(tmp_path: Path) -> None:
    r = _demo("--inprocess", "--count", "20000", cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "output time-ordered: True" in r.stdout
    assert "EVB::outputStats   (80008, [(1, 20002), (2, 20002), (3, 20002), (4, 20002)])" in (
        r.stdout
    )
