"""Prefect-style retries from the scheduler config, against a loopback server that fails on purpose."""
from __future__ import annotations

import pytest
from support import markers, month_counts, serve

pytestmark = pytest.mark.slow   # real processes end to end


def flaky_url(http_root, run, mode: str, failures: int) -> str:
    return f"{http_root.url}/flaky/{mode}/{failures}/{run.serve_dir.name}/{{dataset}}_tripdata_{{month}}.parquet"


@pytest.mark.parametrize("mode", ["500", "reset", "short"])
def test_transient_failures_below_the_retry_limit_still_load(run_luigi, http_root, db, mode):
    serve(run_luigi, "2022-01", 1500)
    proc = run_luigi("--month", "2022-01", "--DownloadMonth-retries", "3",
                     url=flaky_url(http_root, run_luigi, mode, 2))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stderr.count("failed    Download yellow 2022-01") == 2   # two failures, then success
    assert month_counts(db, run_luigi.table) == {"2022-01": 1500}


def test_failures_at_the_retry_limit_stop_the_run_and_load_nothing(run_luigi, http_root, db):
    serve(run_luigi, "2022-01", 1500)
    proc = run_luigi("--month", "2022-01", "--DownloadMonth-retries", "2",
                     url=flaky_url(http_root, run_luigi, "500", 3))
    assert proc.returncode == 30
    assert proc.stderr.count("failed    Download yellow 2022-01") == 3   # 1 attempt + 2 retries
    assert "HTTP 500" in proc.stderr
    assert not list(run_luigi.data_dir.rglob("*.parquet*"))
    assert month_counts(db, run_luigi.table) == {} and markers(db, run_luigi.table) == []
