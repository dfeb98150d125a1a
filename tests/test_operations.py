"""Operations: a real luigid (API, progress, history), the visualizer in a real browser, exit codes,
cron overlap, status, several worker processes sharing a backfill, progress bars on a terminal."""
from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import urllib.parse
import urllib.request
from pathlib import Path

import psycopg2
import pytest
from support import (
    DATABASE,
    HISTORY_DB,
    PASSWORD_ROLE,
    ROLE_PASSWORD,
    ROOT,
    free_port,
    markers,
    month_counts,
    run_on_a_terminal,
    script_env,
    serve,
)
from support import luigid_api as _api

from luigi_tasks.months import add_months
from luigi_tasks.scheduler import Scheduler

pytestmark = pytest.mark.slow   # real processes end to end
ARTIFACTS = ROOT / "test-artifacts"


def api(sched: Scheduler, method: str, **kwargs):
    return _api(sched.url, method, **kwargs)


def test_ingest_through_luigid_reports_progress_and_history(run_luigi, luigid, pg):
    serve(run_luigi, "2022-01", 4000)
    proc = run_luigi("--month", "2022-01", scheduler=luigid.url)
    assert proc.returncode == 0, proc.stderr[-3000:]
    families = {t["name"]: t for t in api(luigid, "task_list", status="DONE", upstream_status="").values()
                if t["params"].get("month") == "2022-01"}
    assert {"DownloadMonth", "ParquetToCsv", "LoadMonth", "IngestMonth"} <= set(families)
    for name in ("DownloadMonth", "ParquetToCsv", "LoadMonth"):
        assert families[name]["progress_percentage"] == 100
        assert families[name]["status_message"]
    assert "4,000 rows" in families["LoadMonth"]["status_message"]
    conn = psycopg2.connect(**pg.connect_params(HISTORY_DB))
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT count(*) FROM tasks t JOIN task_events e ON e.task_id = t.id "
                        "WHERE t.name = 'LoadMonth' AND e.event_name = 'DONE'")
            assert cur.fetchone()[0] >= 1
    finally:
        conn.close()
    with urllib.request.urlopen(f"{luigid.url}/history", timeout=10) as resp:
        assert resp.status == 200 and b"LoadMonth" in resp.read()


def test_retries_through_luigid(run_luigi, luigid, http_root, db):
    serve(run_luigi, "2022-02", 900)
    url = f"{http_root.url}/flaky/500/1/{run_luigi.serve_dir.name}/{{dataset}}_tripdata_{{month}}.parquet"
    proc = run_luigi("--month", "2022-02", scheduler=luigid.url, url=url)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stderr.count("retrying Download yellow 2022-02: attempt 2 of 4") == 1   # failed once, retried
    assert "failed    Download" not in proc.stderr
    assert "prune_on_get_work = true" in (luigid.dir / "luigid.cfg").read_text()
    assert month_counts(db, run_luigi.table) == {"2022-02": 900}


def test_two_worker_processes_share_a_backfill_exactly_once(run_luigi, luigid, db):
    months = ["2022-01", "2022-02", "2022-03", "2022-04"]
    for i, month in enumerate(months):
        serve(run_luigi, month, 1500 + i, seed=i)
    # --no-lock: on one machine luigi's process lock would turn the second process away (as cron wants);
    # --worker-keep-alive: a worker waits for months the other one runs, then helps finish the range.
    procs = [run_luigi("--start", "2022-01", "--stop", "2022-05", "--workers", "2", "--no-lock", "--worker-keep-alive",
                       task="IngestRange", scheduler=luigid.url, background=True) for _ in range(2)]
    outputs = [p.communicate(timeout=300) for p in procs]
    errors = [line for _, err in outputs for line in err.splitlines() if " ERROR " in line]
    assert errors == []
    # A process some of whose tasks another process ran cannot tell that they finished: luigi says
    # "run by another worker" (10) or "not granted run permission" (25), never a failure.
    assert {p.returncode for p in procs} <= {0, 10, 25}
    assert month_counts(db, run_luigi.table) == {m: 1500 + i for i, m in enumerate(months)}
    assert len(markers(db, run_luigi.table)) == 4
    loads = sum(err.count("done      Load yellow") for _, err in outputs)
    assert loads == 4                                  # each month loaded by exactly one process
    again = run_luigi("--start", "2022-01", "--stop", "2022-05", task="IngestRange", scheduler=luigid.url)
    assert again.returncode == 0 and "Did not run any tasks" in again.stderr


def test_visualizer_shows_the_ingest_graph(run_luigi, luigid):
    chromium = next((p for p in ("/usr/bin/chromium", "/usr/bin/chromium-browser") if Path(p).exists()), None)
    try:
        import playwright.sync_api as playwright
    except ImportError:
        playwright = None
    if not (chromium and playwright):
        missing = "Debian's chromium" if not chromium else "the playwright package"
        if os.environ.get("CI") == "true":      # CI installs both: a missing browser there is a failure
            pytest.fail(f"{missing} is needed for the visualizer test (.ci/run installs it)")
        pytest.skip(f"{missing} is not installed (apt-get install chromium; pip install -r requirements-dev.txt)")
    serve(run_luigi, "2022-06", 500)
    assert run_luigi("--month", "2022-06", scheduler=luigid.url).returncode == 0
    ingest_id = next(tid for tid, t in api(luigid, "task_list", status="DONE", upstream_status="").items()
                     if t["name"] == "IngestMonth" and t["params"]["month"] == "2022-06")
    ARTIFACTS.mkdir(exist_ok=True)
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--no-first-run"])
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        page.goto(f"{luigid.url}/static/visualiser/index.html#tab=graph&taskId={ingest_id}&visType=svg")
        page.wait_for_selector("a.graph-node-a", timeout=20000)
        graph_text = page.inner_text("#graphContainer")
        done_nodes = page.locator('a.graph-node-a[data-task-status="DONE"]').count()
        page.screenshot(path=str(ARTIFACTS / "visualizer-graph.png"), full_page=True)
        page.goto(f"{luigid.url}/static/visualiser/index.html#tab=tasks")
        page.wait_for_selector("text=postgres_loads", timeout=20000)
        tasks_text = page.inner_text("body")
        page.screenshot(path=str(ARTIFACTS / "visualizer-tasks.png"), full_page=True)
        browser.close()
    for family in ("IngestMonth", "LoadMonth", "ParquetToCsv", "DownloadMonth", "PublishedMonth"):
        assert family in graph_text
    assert done_nodes == 5                              # the whole chain, every node DONE (green)
    assert f"table={run_luigi.table}" in tasks_text and "month=2022-06" in tasks_text
    assert '{"postgres_loads":1}' in tasks_text        # the COPY resource shows on LoadMonth


def test_stale_pidfile_does_not_stop_the_scheduler_starting(tmp_path, pg, monkeypatch):
    monkeypatch.setenv("LUIGI_TASKS_BLOCKS", str(ROOT / "config" / "blocks.yaml"))
    for key, value in {"PGHOST": str(pg.socket_dir), "PGPORT": str(pg.port), "PGDATABASE": DATABASE,
                       "PGUSER": "postgres", "PGPASSWORD": "unused"}.items():
        monkeypatch.setenv(key, value)
    sched = Scheduler("127.0.0.1", free_port(), tmp_path, "postgres-connector", HISTORY_DB,
                      config_files=[str(ROOT / "luigi.cfg")])
    dead = subprocess.Popen(["true"])
    dead.wait()
    sched.pidfile.write_text(f"{dead.pid}\n")            # luigid itself would exit silently on this
    try:
        pid = sched.start()
        assert pid != dead.pid and sched.status()["running"]
        assert sched.pidfile.read_text().strip() == str(pid)
    finally:
        sched.stop()
    assert not sched.status()["running"] and not sched.pidfile.exists()


@pytest.mark.parametrize("form", [("luigi_tasks", "scheduler"), ("luigi_tasks.scheduler",)])
def test_scheduler_command_reports_stopped(tmp_path, form):
    proc = subprocess.run([sys.executable, "-m", *form, "status", "--json", "--state-dir", str(tmp_path),
                           "--port", str(free_port())], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 3, proc.stderr
    assert json.loads(proc.stdout)["running"] is False


def _months_back(n: int) -> str:
    return f"{add_months(dt.date.today().replace(day=1), -n):%Y-%m}"


def test_cron_overlap_exits_already_running_and_loads_nothing(run_luigi, http_root, db, env):
    latest, before = _months_back(2), _months_back(3)
    for i, month in enumerate((before, latest)):
        serve(run_luigi, month, 600 + i, seed=i)
    slow = f"{http_root.url}/slow/3/{run_luigi.serve_dir.name}/{{dataset}}_tripdata_{{month}}.parquet"
    cmd = [sys.executable, "-m", "luigi_tasks", "cron", "--lag-months", "2", "--catch-up-months", "2",
           "--pipeline-data-dir", str(run_luigi.data_dir), "--DownloadMonth-url-template", slow,
           "--LoadMonth-block", "postgres-connector", "--LoadMonth-table", run_luigi.table]
    first = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    seen = []
    while not any("running   Download" in line for line in seen[-1:]):   # it holds the lock and is
        line = first.stderr.readline()                                   # waiting on the slow source
        assert line, "".join(seen)[-2000:]
        seen.append(line)
    second = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    out, err = first.communicate(timeout=300)
    err = "".join(seen) + err
    assert second.returncode == 10, second.stderr[-2000:]
    assert "already running" in (second.stdout + second.stderr).lower()
    assert "running   Download" not in second.stderr
    assert first.returncode == 0, err[-3000:]
    assert month_counts(db, run_luigi.table) == {before: 600, latest: 601}

    again = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert again.returncode == 0 and "Did not run any tasks" in again.stderr


def test_cron_wrapper_logs_to_a_file():
    proc = subprocess.run([str(ROOT / "scripts" / "cron-ingest"), "--dry-run"], env=script_env(), capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0 and proc.stdout == ""
    log = ROOT / "data" / "logs" / f"cron-{dt.date.today():%Y-%m}.log"
    assert "RangeMonthly --of IngestMonth --param-name month" in log.read_text().splitlines()[-1]


def test_status_lists_loaded_and_missing_months(run_luigi, env, db):
    for i, month in enumerate(("2022-01", "2022-03")):
        serve(run_luigi, month, 250 + i, seed=i)
        assert run_luigi("--month", month).returncode == 0
    base = [sys.executable, "-m", "luigi_tasks", "status", "--block", "postgres-connector",
            "--table", run_luigi.table, "--start", "2022-01", "--stop", "2022-05"]
    as_json = subprocess.run(base + ["--json"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert as_json.returncode == 0, as_json.stderr
    report = json.loads(as_json.stdout)
    assert [(r["month"], r["rows"]) for r in report["loaded"]] == [("2022-01", 250), ("2022-03", 251)]
    assert report["missing"] == ["2022-02", "2022-04"]
    assert all(r["source_version"] and r["loaded_at"] for r in report["loaded"])
    table = subprocess.run(base, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert "2022-03" in table.stdout and "251" in table.stdout and "missing in 2022-01..2022-04: 2022-02, 2022-04" \
        in table.stdout
    assert "last run: " in table.stdout and " Completed, exit code 0, Ingest yellow 2022-03" in table.stdout
    narrow = subprocess.run(base[:-4] + ["--start", "2022-02", "--stop", "2022-04"], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=60)
    assert "2022-03 " in narrow.stdout and "2022-01 " not in narrow.stdout   # --start/--stop limit the table too
    assert "1 month(s) loaded, 251 rows" in narrow.stdout


def test_progress_bar_on_a_terminal_only(run_luigi, env):
    serve(run_luigi, "2022-01", 3000)
    cmd = [sys.executable, "-m", "luigi", "--module", "luigi_tasks", "IngestMonth", "--month", "2022-01",
           "--local-scheduler", "--pipeline-data-dir", str(run_luigi.data_dir),
           "--DownloadMonth-url-template",
           f"file://{run_luigi.serve_dir}/{{dataset}}_tripdata_{{month}}.parquet",
           "--LoadMonth-block", "postgres-connector", "--LoadMonth-table", run_luigi.table]
    code, screen = run_on_a_terminal(cmd, env)
    assert code == 0
    assert "Convert yellow 2022-01" in screen and "rows/s" in screen     # tqdm drew a bar
    piped = run_luigi("--month", "2022-02")
    assert "rows/s" not in piped.stderr and "\r" not in piped.stderr     # not a terminal: no bar


def test_password_appears_nowhere_in_luigid_or_status(run_luigi, luigid, env, pg):
    secret_env = {"PGUSER": PASSWORD_ROLE, "PGPASSWORD": ROLE_PASSWORD}
    serve(run_luigi, "2022-01", 300)
    ok = run_luigi("--month", "2022-01", scheduler=luigid.url, extra_env=secret_env)
    assert ok.returncode == 0, ok.stderr[-2000:]
    serve(run_luigi, "2022-02", 300)
    bad = run_luigi("--month", "2022-02", "--LoadMonth-retries", "0", scheduler=luigid.url,
                    extra_env={**secret_env, "PGPASSWORD": ROLE_PASSWORD + "-wrong"})
    assert bad.returncode != 0
    seen = [ok.stdout, ok.stderr, bad.stdout, bad.stderr]
    for status in ("", "DONE", "FAILED", "PENDING", "DISABLED"):
        tasks = api(luigid, "task_list", status=status, upstream_status="")
        seen.append(json.dumps(tasks))
        for task_id in tasks:
            seen.append(json.dumps(api(luigid, "fetch_error", task_id=task_id)))
    seen.append(json.dumps(api(luigid, "worker_list")))
    with urllib.request.urlopen(f"{luigid.url}/history", timeout=10) as resp:
        seen.append(resp.read().decode(errors="replace"))
    status = subprocess.run([sys.executable, "-m", "luigi_tasks", "status", "--json", "--block", "postgres-connector",
                             "--table", run_luigi.table], cwd=ROOT, env={**env, **secret_env}, capture_output=True,
                            text=True, timeout=60)
    assert status.returncode == 0 and '"2022-01"' in status.stdout
    seen += [status.stdout, status.stderr]
    for log in (luigid.dir / "log").rglob("*"):                              # luigid's own log files
        if log.is_file():
            seen.append(log.read_text(errors="replace"))
    seen.append((pg.data_dir / "server.log").read_text(errors="replace"))    # PostgreSQL's server log
    assert (luigid.dir / "luigid.cfg").stat().st_mode & 0o777 == 0o600      # luigid's config may hold one...
    history_password = "unused-with-trust-auth"                                # ...(its history block's)
    assert history_password in (luigid.dir / "luigid.cfg").read_text()
    assert any("password authentication failed" in text for text in seen)   # the failure was reported...
    for text in seen:
        assert ROLE_PASSWORD not in text                                      # ...without the password
        assert history_password not in text                                   # nor luigid's, in any log
