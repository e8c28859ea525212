"""`make demo` as a person runs it: the whole scenario, a summary, exit 0, nothing left running;
and a clear failure, exit 1, when a piece cannot start. Plus its formatting helpers."""

import datetime as dt
import os
import re
import socket
import subprocess
import sys

import pytest

from localdev.demo import describe
from localdev.pipeline import ROOT, Reaction, percentile, survey
from localdev.servers import free_port


def _run_demo(env_changes, timeout_s=240):
    env = {**os.environ, **env_changes}
    return subprocess.run(
        [sys.executable, "-m", "localdev.demo"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )


def _answers(port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(0.5)
        return probe.connect_ex(("127.0.0.1", port)) == 0


def test_the_demo_runs_the_scenario_prints_a_summary_and_stops_everything():
    # WHEN the demo runs (SecantusDB, or the deployment in MONGODB_URI)
    result = _run_demo({})

    # THEN it exits 0 after the scenario's reactions and a summary, naming the stand-ins
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    out = result.stdout
    assert "local stand-ins" in out
    assert "production code" in out
    assert "[11/11] delete Arroz largo" in out
    assert re.search(r"stock alerts\s+5\n", out)
    assert re.search(r"change notifications\s+8\n", out)
    assert re.search(r"audit records\s+16\n", out)
    assert re.search(r"events forwarded to the bus\s+16", out)
    assert re.search(r"end-to-end latency\s+p50 \d+ ms, p95 \d+ ms", out)
    assert "sms:" in out
    assert "email:" in out
    assert "NOT BUILT YET" not in out
    # ... and the servers it started no longer answer on their ports
    ports = [int(port) for port in re.findall(r"at (?:mongodb|http)://127\.0\.0\.1:(\d+)", out)]
    if os.environ.get("MONGODB_URI"):
        assert len(ports) == 1  # moto only
    else:
        assert len(ports) == 2
    assert not [port for port in ports if _answers(port)]


def test_the_demo_says_which_piece_failed_and_exits_non_zero():
    # GIVEN a MONGODB_URI where nothing listens
    dead = f"mongodb://127.0.0.1:{free_port()}/?directConnection=true"

    # WHEN the demo runs
    result = _run_demo({"MONGODB_URI": dead}, timeout_s=120)

    # THEN it names MongoDB and the reason, and exits 1
    assert result.returncode == 1
    assert "FAILED: MongoDB: no answer at" in result.stdout
    assert "stopped;" in result.stdout


def test_every_part_is_in_this_checkout():
    assert [piece.name for piece in survey() if not piece.built] == []


def test_percentile_is_nearest_rank():
    values = [0.1 * n for n in range(1, 21)]
    assert percentile(values, 0.5) == pytest.approx(1.0)
    assert percentile(values, 0.95) == pytest.approx(1.9)
    assert percentile([], 0.5) is None
    assert percentile([3.0], 0.95) == 3.0


def test_reactions_are_described_for_people():
    when = dt.datetime(2026, 12, 3, 12, 0, 1, 500000, tzinfo=dt.UTC)
    alert = Reaction(
        "alert", when, "d", subject="Sin stock (0): Café", email="l1\nl2", sms="Sin stock (0)"
    )
    lines = describe(alert)
    assert lines[0] == "  12:00:01.500 STOCK ALERT  Sin stock (0): Café"
    assert any("sms:   Sin stock (0)" in line for line in lines)
    assert any("email: l1" in line for line in lines)

    audit = Reaction(
        "audit",
        when,
        "update",
        record={
            "operationType": "update",
            "actor": "caja-01",
            "wallTime": when,
            "changedFields": ["cantidad"],
            "fullDocument": {"nombreProducto": "Pan"},
            "documentKey": {"_id": "x"},
        },
    )
    assert describe(audit) == [
        "  12:00:01.500 AUDIT        12:00:01.500 caja-01 update Pan fields: cantidad"
    ]


def test_operations_messages_are_shown_as_such():
    when = dt.datetime(2026, 12, 3, 12, 0, 1, tzinfo=dt.UTC)
    gap = Reaction("operations", when, "history lost", subject="Change stream gap")
    assert describe(gap)[0] == "  12:00:01.000 OPERATIONS   Change stream gap"
    assert describe(gap)[1].strip() == "history lost"
