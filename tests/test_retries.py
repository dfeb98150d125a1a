"""Retries inside the task, against a loopback source that fails on purpose: transient failures are
retried after the configured delays, permanent ones make exactly one attempt."""
from __future__ import annotations

import pytest
from support import RC_TASK_FAILED, SourceHandler, markers, month_counts, serve

pytestmark = pytest.mark.slow   # real processes end to end


def flaky_url(http_root, run, mode: str, failures: int) -> str:
    return f"{http_root.url}/flaky/{mode}/{failures}/{run.serve_dir.name}/{{dataset}}_tripdata_{{month}}.parquet"


def gaps(path_end: str) -> list[float]:
    times = SourceHandler.get_times(path_end)
    return [b - a for a, b in zip(times, times[1:], strict=False)]


@pytest.mark.parametrize("mode", ["500", "reset", "short"])
def test_transient_failures_below_the_retry_limit_still_load(run_luigi, http_root, db, mode):
    serve(run_luigi, "2022-01", 1500)
    proc = run_luigi("--month", "2022-01", "--DownloadMonth-retries", "3",
                     url=flaky_url(http_root, run_luigi, mode, 2))
    assert proc.returncode == 0, proc.stderr[-3000:]
    retries = [ln for ln in proc.stderr.splitlines() if "retrying Download yellow 2022-01: attempt" in ln]
    assert [ln.split("attempt ")[1][:6] for ln in retries] == ["2 of 4", "3 of 4"]   # two failures, then success
    assert "failed    Download" not in proc.stderr
    assert month_counts(db, run_luigi.table) == {"2022-01": 1500}


def test_failures_at_the_retry_limit_stop_the_run_and_load_nothing(run_luigi, http_root, db):
    serve(run_luigi, "2022-01", 1500)
    proc = run_luigi("--month", "2022-01", "--DownloadMonth-retries", "2",
                     url=flaky_url(http_root, run_luigi, "500", 3))
    assert proc.returncode == RC_TASK_FAILED
    assert proc.stderr.count("retrying Download yellow 2022-01: attempt") == 2   # 1 attempt + 2 retries
    assert proc.stderr.count("failed    Download yellow 2022-01") == 1
    assert "HTTP 500" in proc.stderr
    assert len(SourceHandler.get_times(f"{run_luigi.table}/yellow_tripdata_2022-01.parquet")) == 3
    assert not list(run_luigi.data_dir.rglob("*.parquet*"))
    assert month_counts(db, run_luigi.table) == {} and markers(db, run_luigi.table) == []


def test_observed_delays_follow_the_list_and_the_last_repeats(run_luigi, http_root):
    serve(run_luigi, "2022-02", 500)
    proc = run_luigi("--month", "2022-02", "--DownloadMonth-retries", "3", "--DownloadMonth-retry-delays",
                     "0.3, 0.6", url=flaky_url(http_root, run_luigi, "500", 3))
    assert proc.returncode == 0, proc.stderr[-3000:]
    observed = gaps(f"{run_luigi.table}/yellow_tripdata_2022-02.parquet")
    assert len(observed) == 3
    for taken, configured in zip(observed, (0.3, 0.6, 0.6), strict=True):
        assert configured <= taken < configured + 2.0      # waited at least the delay (bounded above loosely)
    assert "attempt 2 of 4 in 0.3 s: download failed: HTTP 500" in proc.stderr


def test_exponential_backoff_doubles_the_delay(run_luigi, http_root):
    serve(run_luigi, "2022-03", 500)
    proc = run_luigi("--month", "2022-03", "--DownloadMonth-retries", "3", "--DownloadMonth-retry-delays", "0.2",
                     "--DownloadMonth-retry-backoff", "exponential", url=flaky_url(http_root, run_luigi, "500", 3))
    assert proc.returncode == 0, proc.stderr[-3000:]
    observed = gaps(f"{run_luigi.table}/yellow_tripdata_2022-03.parquet")
    assert [round(g, 1) >= c for g, c in zip(observed, (0.2, 0.4, 0.8), strict=True)] == [True] * 3
    assert observed[2] > observed[0] * 2.5                   # 0.8 s against 0.2 s


def test_a_permanent_error_makes_exactly_one_attempt(run_luigi, db):
    (run_luigi.serve_dir / "yellow_tripdata_2022-04.parquet").write_bytes(b"<html><body>Access Denied</body></html>")
    proc = run_luigi("--month", "2022-04", "--DownloadMonth-retries", "5", "--DownloadMonth-retry-delays", "30")
    assert proc.returncode == RC_TASK_FAILED
    assert len(SourceHandler.get_times(f"{run_luigi.table}/yellow_tripdata_2022-04.parquet")) == 1
    assert "retrying" not in proc.stderr and "returned an HTML page" in proc.stderr
    assert month_counts(db, run_luigi.table) == {}
