"""bench/runners.py runs end to end with tiny sizes: one row per runner count, each against
the 1-runner row (no speed is asserted: the machine is shared)."""

from __future__ import annotations

import pytest
from support.postgres import find_bin_dir
from test_bench_smoke import run_bench, table_rows


@pytest.mark.slow
@pytest.mark.skipif(find_bin_dir() is None,
                    reason="PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/initdb)")
def test_runners_bench_prints_a_row_per_runner_count() -> None:
    rows = table_rows(run_bench("runners.py", "--quick", "--counts", "1", "2"))
    assert [(r[0], r[1]) for r in rows] == [("1", "20"), ("2", "20")]
    assert rows[0][3] == rows[0][5] == "1.00x"
    assert all(float(r[2]) > 0 and float(r[4]) > 0 for r in rows)
