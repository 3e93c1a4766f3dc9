"""Each benchmark runs end to end with tiny sizes and prints its table, so none can rot.
No figure is asserted except counts that do not depend on speed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"


def run_bench(name: str, *args: str) -> str:
    done = subprocess.run([sys.executable, str(BENCH / name), *args], capture_output=True,
                          text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Machine: nproc" in done.stdout
    return done.stdout


def table_rows(output: str) -> list[list[str]]:
    lines = [line for line in output.splitlines() if line.startswith("|")]
    return [[cell.strip() for cell in line.strip("|").split("|")] for line in lines[2:]]


@pytest.mark.slow
def test_ingest_bench_prints_every_row() -> None:
    rows = table_rows(run_bench("ingest.py", "--quick"))
    assert [r[0] for r in rows] == [
        "stdlib parse + body (baseline P)", "parse_email + trim",
        "SQLite insert, same bytes (baseline S)", "Bridge.receive: ingest + SqliteStore",
        "SMTP → bridge, 1 connection(s)", "SMTP → bridge, 4 connection(s)",
    ]
    assert all(r[1] == "40" for r in rows)


@pytest.mark.slow
def test_handoff_bench_two_round_trips_against_the_per_step_baseline() -> None:
    rows = table_rows(run_bench("handoff.py", "--quick"))
    # 2 modes x contact in {new, returning} x N in {1, 5} x workers in {1, 4}
    assert len(rows) == 16
    requests = {(r[0], r[1], r[2], r[3]): float(r[10]) for r in rows}
    for (mode, contact, n, workers), per in requests.items():
        if mode == "two round trips":
            assert per <= 2.0, (contact, n, workers, per)
            baseline = requests[("per step (baseline)", contact, n, workers)]
            assert baseline >= per + (4 if contact == "new" else 1)


@pytest.mark.slow
def test_memory_bench_measures_sessions_and_both_emails() -> None:
    output = run_bench("memory.py", "--quick")
    rows = table_rows(output)
    assert len(rows) == 8
    assert sum("open sessions" in r[0] for r in rows) == 3
    assert sum("MiB attachment" in r[0] for r in rows) == 2
    assert sum("MiB text body" in r[0] for r in rows) == 2
    assert all(float(r[2]) > 0 for r in rows)


@pytest.mark.slow
def test_hostile_input_bench_prints_every_row() -> None:
    rows = table_rows(run_bench("hostile_input.py", "--quick"))
    assert [r[0] for r in rows] == [
        "Subject of 12,000 encoded words", "Subject of 20,000 encoded words",
        "30,000 nested <div>s", "100,000 nested <div>s",
    ]


def test_claim_bench_prints_old_and_new_rows() -> None:
    rows = table_rows(run_bench("claim.py", "--quick", "--postgres", "off"))
    assert [(r[0], r[1]) for r in rows] == [
        ("SQLite, before (old claim SQL)", "0"), ("SQLite, before (old claim SQL)", "500"),
        ("SQLite, job heads", "0"), ("SQLite, job heads", "500"),
    ]


@pytest.mark.slow
def test_ingest_contention_bench_prints_both_rows() -> None:
    rows = table_rows(run_bench("ingest_contention.py", "--quick"))
    assert [r[0] for r in rows] == ["idle store", "4 claim loops, 300 backlog"]


@pytest.mark.slow
def test_burst_bench_threads_every_message_and_compares_with_the_ceiling() -> None:
    output = run_bench("burst.py", "--count", "60", "--connections", "2")
    rows = table_rows(output)
    assert [row[0] for row in rows] == ["aiosmtpd + SQLite commit (ceiling)", "casebridge run"]
    assert rows[0][2] == "1.00×" and rows[1][2].endswith("×")
    assert rows[1][3].endswith(" s")  # the drain was measured: all 60 were threaded
    assert "goal: >= 0.45× the ceiling" in output
