"""What a new user meets following the README: long backfills, runs that end at once, running from any
directory, flow options, DISABLED tasks under luigid, and the cron command's own output."""
from __future__ import annotations

import datetime as dt
import json
import shlex
import subprocess
import sys

import pytest
from support import (
    HISTORY_DB,
    RC_BAD_ARGS,
    RC_MISSING_DATA,
    RC_NOT_RUN,
    RC_TASK_FAILED,
    ROOT,
    free_port,
    markers,
    month_counts,
    pg_env,
    script_env,
    serve,
)

from luigi_tasks.months import add_months, month_range, parse_month
from luigi_tasks.scheduler import Scheduler

pytestmark = pytest.mark.slow   # real processes end to end


def _cron(run, *args: str, env: dict | None = None, url: str | None = None) -> subprocess.CompletedProcess:
    """``python -m luigi_tasks cron`` against the test's source, table and data dir."""
    cmd = [sys.executable, "-m", "luigi_tasks", "cron", "--lag-months", "2", *args,
           "--pipeline-data-dir", str(run.data_dir),
           "--DownloadMonth-url-template", url or f"file://{run.serve_dir}/{{dataset}}_tripdata_{{month}}.parquet",
           "--LoadMonth-block", "postgres-connector", "--LoadMonth-table", run.table]
    return subprocess.run(cmd, cwd=ROOT, env=env or run.env, capture_output=True, text=True, timeout=600)


def test_cron_catch_up_loads_a_window_longer_than_50_months_in_one_run(run_luigi, db):
    latest = add_months(dt.date.today().replace(day=1), -2)
    months = [f"{m:%Y-%m}" for m in month_range(add_months(latest, -56), add_months(latest, 1))]
    assert len(months) == 57                              # luigi's RangeMonthly takes 50 by default
    for i, month in enumerate(months):
        serve(run_luigi, month, 20 + i, seed=i)
    proc = _cron(run_luigi, "--since", months[0], "--workers", "2")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert month_counts(db, run_luigi.table) == {m: 20 + i for i, m in enumerate(months)}
    assert f"started: cron yellow {months[0]}.." in proc.stderr and "(57 months, stop exclusive)" in proc.stderr
    assert " Completed: cron yellow " in proc.stderr and "exit code 0" in proc.stderr
    status = subprocess.run([sys.executable, "-m", "luigi_tasks", "status", "--json", "--block", "postgres-connector",
                             "--table", run_luigi.table, "--start", months[0]], cwd=ROOT, env=run_luigi.env,
                            capture_output=True, text=True, timeout=60)
    report = json.loads(status.stdout)
    assert report["missing"] == [] and len(report["loaded"]) == 57
    assert report["last_run"]["state"] == "Completed" and len(report["last_run"]["months"]) == 57


def test_cron_names_the_months_a_run_left_missing_and_never_exits_0(run_luigi, db):
    latest = add_months(dt.date.today().replace(day=1), -2)
    window = [f"{m:%Y-%m}" for m in month_range(add_months(latest, -2), add_months(latest, 1))]
    for month in window[:2]:
        serve(run_luigi, month, 30)                       # the newest month is not published yet
    proc = _cron(run_luigi, "--since", window[0])
    assert proc.returncode == RC_MISSING_DATA, proc.stderr[-3000:]
    assert f"1 month(s) of the window not loaded: {window[2]}" in proc.stderr
    assert month_counts(db, run_luigi.table) == {window[0]: 30, window[1]: 30}


@pytest.mark.parametrize("source, code, message", [
    ("missing", RC_MISSING_DATA, "not published"),
    ("html", RC_TASK_FAILED, "returned an HTML page"),
    ("retries", RC_TASK_FAILED, "HTTP 500"),
])
def test_a_run_with_nothing_left_to_run_ends_at_once(run_luigi, http_root, db, source, code, message):
    # A worker kept alive would wait max_keep_alive_idle_duration (set to 10 minutes here) in silence; the
    # subprocess timeout of 60 s would then fail the test.
    url = None
    if source == "html":
        (run_luigi.serve_dir / "yellow_tripdata_2022-05.parquet").write_text("<html>Access Denied</html>")
    elif source == "retries":
        serve(run_luigi, "2022-05", 100)
        url = f"{http_root.url}/flaky/500/9/{run_luigi.serve_dir.name}/{{dataset}}_tripdata_{{month}}.parquet"
    cmd = run_luigi.command("--month", "2022-05", "--DownloadMonth-retries", "1",
                            "--worker-max-keep-alive-idle-duration", "600 seconds", url=url)
    proc = subprocess.run(cmd, cwd=ROOT, env=run_luigi.env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == code, proc.stderr[-2000:]
    assert message in proc.stderr
    assert month_counts(db, run_luigi.table) == {}


def _outside_env(run, **extra) -> dict:
    """The test's environment minus what would point luigi at the repository's files."""
    env = {k: v for k, v in run.env.items() if k not in ("LUIGI_CONFIG_PATH", "LUIGI_TASKS_BLOCKS")}
    env.update(extra)
    return env


def test_luigi_from_another_directory_reads_the_checkouts_config(run_luigi, db, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    missing = subprocess.run(run_luigi.command("--month", "2022-06"), cwd=elsewhere, env=_outside_env(run_luigi),
                             capture_output=True, text=True, timeout=120)
    assert missing.returncode == RC_MISSING_DATA, missing.stderr[-2000:]   # [retcode] read: not 0
    serve(run_luigi, "2022-07", 400)
    ok = subprocess.run(run_luigi.command("--month", "2022-07"), cwd=elsewhere, env=_outside_env(run_luigi),
                        capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0, ok.stderr[-2000:]                  # the block registry was found
    assert month_counts(db, run_luigi.table) == {"2022-07": 400}
    assert " INFO [pid " in ok.stderr                             # config/logging.conf was found too
    assert not list(elsewhere.iterdir())                          # nothing written where it was started


def test_luigi_config_path_from_another_directory(run_luigi, db, tmp_path):
    serve(run_luigi, "2022-08", 300)
    env = _outside_env(run_luigi, LUIGI_CONFIG_PATH=str(ROOT / "luigi.cfg"))
    proc = subprocess.run(run_luigi.command("--month", "2022-08"), cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "Unable to locate specified logging configuration file" not in proc.stderr
    assert month_counts(db, run_luigi.table) == {"2022-08": 300}
    (run_luigi.serve_dir / "yellow_tripdata_2022-09.parquet").write_text("<html>nope</html>")
    bad = subprocess.run(run_luigi.command("--month", "2022-09"), cwd=tmp_path, env=env, capture_output=True,
                         text=True, timeout=120)
    assert bad.returncode == RC_TASK_FAILED                       # a failure exits non-zero from anywhere


@pytest.mark.parametrize("task, args, flag", [
    ("IngestMonth", ("--month", "2022-01", "--retries", "5"), "--retries"),
    ("IngestMonth", ("--month", "2022-01", "--cache-expiration", "1 second"), "--cache-expiration"),
    ("IngestRange", ("--start", "2022-01", "--stop", "2022-03", "--retries", "2"), "--retries"),
])
def test_a_flow_refuses_a_task_option_with_the_form_to_use(run_luigi, db, task, args, flag):
    proc = run_luigi(*args, task=task)
    assert proc.returncode == RC_BAD_ARGS
    assert f"error: {task} does not take {flag}: it is set per task, e.g. --DownloadMonth-{flag[2:]}" in proc.stderr
    assert "Traceback" not in proc.stderr and month_counts(db, run_luigi.table) == {}


@pytest.fixture()
def strict_luigid(pg, tmp_path, monkeypatch):
    """luigid that disables a task after one failed run (the shipped luigi.cfg allows three)."""
    for key, value in pg_env(pg).items():
        monkeypatch.setenv(key, value)
    strict = tmp_path / "strict.cfg"
    strict.write_text("[scheduler]\nretry_count = 1\n")
    sched = Scheduler("127.0.0.1", free_port(), tmp_path / "luigid", "postgres-connector", HISTORY_DB,
                      config_files=[str(ROOT / "luigi.cfg"), str(ROOT / "tests" / "luigi.test.cfg"), str(strict)])
    try:
        sched.start()
        yield sched
    finally:
        sched.stop()


def test_a_disabled_task_is_named_and_the_command_re_enables_it(run_luigi, db, strict_luigid):
    page = run_luigi.serve_dir / "yellow_tripdata_2022-10.parquet"
    page.write_text("<html>Access Denied</html>")
    first = run_luigi("--month", "2022-10", scheduler=strict_luigid.url)
    assert first.returncode == RC_TASK_FAILED, first.stderr[-2000:]
    serve(run_luigi, "2022-10", 250)                              # the source is fixed...
    blocked = run_luigi("--month", "2022-10", scheduler=strict_luigid.url)
    assert blocked.returncode == RC_NOT_RUN                       # ...but luigid still refuses the task
    line = next(ln for ln in blocked.stderr.splitlines() if " Failed: Ingest yellow 2022-10" in ln)
    assert "DISABLED it after repeated failures" in line and "python -m luigi_tasks scheduler enable " in line
    task_id = line.split("scheduler enable ", 1)[1].split("`")[0]
    assert task_id.startswith("DownloadMonth_yellow_") and "2022_10" in task_id
    enable = subprocess.run([sys.executable, "-m", "luigi_tasks", "scheduler", "enable", task_id, "--port",
                             str(strict_luigid.port)], cwd=ROOT, env=run_luigi.env, capture_output=True, text=True,
                            timeout=60)
    assert enable.returncode == 0 and task_id in enable.stdout, enable.stderr
    again = run_luigi("--month", "2022-10", scheduler=strict_luigid.url)
    assert again.returncode == 0, again.stderr[-2000:]
    assert month_counts(db, run_luigi.table) == {"2022-10": 250} and len(markers(db, run_luigi.table)) == 1
    none_left = subprocess.run([sys.executable, "-m", "luigi_tasks", "scheduler", "enable", "--all", "--port",
                                str(strict_luigid.port)], cwd=ROOT, env=run_luigi.env, capture_output=True,
                               text=True, timeout=60)
    assert none_left.returncode == 0 and "re-enabled 0 task(s)" in none_left.stdout


def test_cron_dry_run_prints_a_command_a_shell_can_run(run_luigi):
    proc = _cron(run_luigi, "--since", "2022-01", "--dry-run")
    assert proc.returncode == 0
    argv = shlex.split(proc.stdout)                               # pasted into a shell, it parses back
    assert argv[0] == "luigi" and json.loads(argv[argv.index("--of-params") + 1]) == {"dataset": "yellow"}
    window = month_range(parse_month("2022-01"), add_months(dt.date.today().replace(day=1), -1))
    assert argv[argv.index("--task-limit") + 1] == str(len(window))
    assert argv[argv.index("--LoadMonth-table") + 1] == run_luigi.table


def test_cron_bad_since_is_one_line(run_luigi):
    proc = _cron(run_luigi, "--since", "2022-13")
    assert proc.returncode == RC_BAD_ARGS and "Traceback" not in proc.stderr
    assert proc.stderr.strip() == "error: invalid --since '2022-13': expected YYYY-MM, e.g. 2022-01"


def test_the_cron_wrapper_summarises_a_failed_run_on_stderr(tmp_path):
    env = script_env(LUIGI_TASKS_BLOCKS=str(tmp_path / "no-such-registry.yaml"))
    proc = subprocess.run([str(ROOT / "scripts" / "cron-ingest"), "--since", "2022-01", "--DownloadMonth-url-template",
                           f"file://{tmp_path}/{{dataset}}_tripdata_{{month}}.parquet"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
    assert proc.stderr.startswith(f"cron-ingest: exit code {proc.returncode}: run ")
    assert "block registry" in proc.stderr and "log: " in proc.stderr and ".log" in proc.stderr
