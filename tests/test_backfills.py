"""Backfills at scale: files cleaned up once a month is committed, disk space checked before writing, the
bytes kept, a range's own progress, and two "hosts" sharing one data directory and one luigid."""
from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest
from support import RC_TASK_FAILED, ROOT, luigid_api, markers, month_counts, ran, run_on_a_terminal, serve

pytestmark = pytest.mark.slow   # real processes end to end


def files(run) -> set[str]:
    return {str(p.relative_to(run.data_dir)) for p in run.data_dir.rglob("*") if p.is_file()}


@pytest.mark.parametrize("keep, kept", [
    ("all", {"raw/yellow/yellow_tripdata_2022-01.parquet", "csv/yellow/yellow_tripdata_2022-01.csv"}),
    ("raw", {"raw/yellow/yellow_tripdata_2022-01.parquet"}),
    ("none", set()),
])
def test_keep_modes_delete_after_the_commit_and_a_rerun_is_a_no_op(run_luigi, db, keep, kept):
    serve(run_luigi, "2022-01", 2000)
    proc = run_luigi("--month", "2022-01", "--pipeline-keep", keep)
    assert proc.returncode == 0, proc.stderr[-2000:]
    data = {f for f in files(run_luigi) if not f.endswith(".source.json")}
    assert data == kept
    assert month_counts(db, run_luigi.table) == {"2022-01": 2000}
    again = run_luigi("--month", "2022-01", "--pipeline-keep", keep)
    assert again.returncode == 0 and ran(again) == set()                # complete: its marker says so
    if keep == "none":                                                   # --force downloads again
        forced = run_luigi("--month", "2022-01", "--pipeline-keep", keep, "--force")
        assert forced.returncode == 0 and "Download yellow 2022-01" in ran(forced)
        assert month_counts(db, run_luigi.table) == {"2022-01": 2000}


def test_nothing_is_deleted_after_a_failed_load(run_luigi, db):
    serve(run_luigi, "2022-02", 1000)
    assert run_luigi("--month", "2022-02", task="ParquetToCsv").returncode == 0
    sidecar = run_luigi.data_dir / "csv/yellow/yellow_tripdata_2022-02.csv.source.json"
    info = json.loads(sidecar.read_text())
    info["rows"] = 1001
    sidecar.write_text(json.dumps(info))
    proc = run_luigi("--month", "2022-02", "--pipeline-keep", "none", "--LoadMonth-retries", "0")
    assert proc.returncode == RC_TASK_FAILED
    assert {"raw/yellow/yellow_tripdata_2022-02.parquet", "csv/yellow/yellow_tripdata_2022-02.csv"} <= files(run_luigi)


def test_a_download_that_would_fill_the_disk_fails_at_once(run_luigi, db):
    serve(run_luigi, "2022-03", 20_000)
    proc = run_luigi("--month", "2022-03", "--pipeline-disk-reserve", "1000 TB", "--DownloadMonth-retries", "3")
    assert proc.returncode == RC_TASK_FAILED
    line = next(ln for ln in proc.stderr.splitlines() if "not enough disk space" in ln)
    assert f"{run_luigi.data_dir}/raw/yellow" in line and "needs about" in line and "free" in line
    assert "1,000.0 TB kept free ([pipeline] disk_reserve)" in line
    assert "retrying" not in proc.stderr                                 # permanent: one attempt
    assert not [f for f in files(run_luigi) if f.endswith(".parquet") or ".tmp-" in f]


def test_the_conversion_checks_its_space_too(run_luigi, db):
    serve(run_luigi, "2022-04", 20_000)
    assert run_luigi("--month", "2022-04", task="DownloadMonth").returncode == 0
    proc = run_luigi("--month", "2022-04", "--pipeline-disk-reserve", "1000 TB")
    assert proc.returncode == RC_TASK_FAILED
    assert "the CSV file" in proc.stderr and "not enough disk space" in proc.stderr
    assert not [f for f in files(run_luigi) if f.startswith("csv/")]


def test_disk_shows_the_bytes_kept_per_dataset(run_luigi, env):
    serve(run_luigi, "2022-05", 1500)
    serve(run_luigi, "2022-05", 800, dataset="green")
    assert run_luigi("--month", "2022-05", "--pipeline-keep", "all").returncode == 0
    assert run_luigi("--month", "2022-05", "--dataset", "green", "--pipeline-keep", "raw").returncode == 0
    proc = subprocess.run([sys.executable, "-m", "luigi_tasks", "disk", "--json", "--data-dir",
                           str(run_luigi.data_dir)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    usage = json.loads(proc.stdout)["usage"]
    raw = run_luigi.data_dir / "raw/yellow/yellow_tripdata_2022-05.parquet"
    assert usage["raw/yellow"]["bytes"] >= raw.stat().st_size and usage["csv/yellow"]["bytes"] > 0
    assert "csv/green" not in usage or usage["csv/green"]["files"] == 0   # keep = raw removed it


def test_a_range_reports_its_progress_on_a_terminal_and_in_the_log(run_luigi, db):
    months = ["2022-06", "2022-07", "2022-08"]
    for i, month in enumerate(months):
        serve(run_luigi, month, 1000 + i, seed=i)
    piped = run_luigi("--start", "2022-06", "--stop", "2022-09", task="IngestRange")
    assert piped.returncode == 0, piped.stderr[-2000:]
    lines = [ln.split("progress: ", 1)[1] for ln in piped.stderr.splitlines() if "progress: " in ln]
    assert [ln.split(": ", 1)[1].split(" months")[0] for ln in lines] == ["1 of 3", "2 of 3", "3 of 3"]
    assert "3,003 rows" in lines[-1] and "elapsed, about 0:00:00 left" in lines[-1]
    for month in months:                                                # on a terminal: a bar
        serve(run_luigi, month, 500, seed=7)
    cmd = run_luigi.command("--start", "2022-06", "--stop", "2022-09", "--force", task="IngestRange")
    code, screen = run_on_a_terminal(cmd, run_luigi.env)
    assert code == 0
    bars = re.findall(r"Ingest yellow 2022-06\.\.2022-09: +(\d+)%\|[^|]*\| (\d)/3 \[[^]]*, [\d,]+ rows\]", screen)
    assert [n for _, n in bars][-1] == "3" and bars[-1][0] == "100"              # a tqdm bar, redrawn
    assert {"1", "2", "3"} <= {n for _, n in bars}
    assert "1,500 rows]" in screen
    assert "progress: " not in screen


def test_range_progress_shows_on_the_range_task_in_luigid(run_luigi, luigid, db):
    for i, month in enumerate(("2022-10", "2022-11")):
        serve(run_luigi, month, 700 + i, seed=i)
    proc = run_luigi("--start", "2022-10", "--stop", "2022-12", task="IngestRange", scheduler=luigid.url)
    assert proc.returncode == 0, proc.stderr[-2000:]
    ranges = [t for t in luigid_api(luigid.url, "task_list", status="", upstream_status="").values()
              if t["name"] == "IngestRange"]
    assert len(ranges) == 1
    assert ranges[0]["status_message"].startswith("Ingest yellow 2022-10..2022-12: 2 of 2 months, 1,401 rows")
    assert ranges[0]["progress_percentage"] == 100


def test_two_hosts_share_one_data_directory_and_one_luigid(run_luigi, luigid, db, tmp_path):
    months = ["2023-01", "2023-02", "2023-03", "2023-04"]
    for i, month in enumerate(months):
        serve(run_luigi, month, 1500 + i, seed=i)
    hosts = [tmp_path / "host-a", tmp_path / "host-b"]                 # separate working directories...
    procs = []
    for host in hosts:
        host.mkdir()
        cmd = run_luigi.command("--start", "2023-01", "--stop", "2023-05", "--workers", "2", "--no-lock",
                                "--worker-keep-alive", task="IngestRange", scheduler=luigid.url)
        procs.append(subprocess.Popen(cmd, cwd=host, env=run_luigi.env, stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True))   # ...one shared data directory
    errs = [p.communicate(timeout=300)[1] for p in procs]
    assert {p.returncode for p in procs} <= {0, 10, 25}, errs[0][-2000:] + errs[1][-2000:]
    assert month_counts(db, run_luigi.table) == {m: 1500 + i for i, m in enumerate(months)}
    assert len(markers(db, run_luigi.table)) == 4
    for step in ("Download", "Convert", "Load"):                         # each file written once, each month
        assert sum(e.count(f"done      {step} yellow") for e in errs) == 4, step   # loaded once
    assert not [p for p in run_luigi.data_dir.rglob("*") if ".tmp-" in p.name]
    assert all(not any(h.iterdir()) for h in hosts)                      # nothing written where they ran
