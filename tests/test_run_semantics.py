"""Prefect's run-time semantics with real components: notifications to a loopback webhook and a real SMTP
server, hooks, run history with every state (SIGKILL -> Crashed, SIGTERM -> Cancelled)."""
from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time

import pytest
from support import (
    PASSWORD_ROLE,
    RC_MISSING_DATA,
    RC_TASK_FAILED,
    ROLE_PASSWORD,
    ROOT,
    free_port,
    month_counts,
    serve,
    wait_for_line,
)

pytestmark = pytest.mark.slow   # real processes end to end

TOKEN = "tok3n-Webhook-Secret"


@pytest.fixture()
def alerts(tmp_path, run_luigi, webhook, smtp):
    """A block registry: the shipped blocks plus an apprise block to the webhook and the SMTP server."""
    registry = tmp_path / "blocks.yaml"
    registry.write_text((ROOT / "config" / "blocks.yaml").read_text() + f"""
  alerts:
    type: apprise
    urls:
      - json://ops:{TOKEN}@{webhook.url}/hook
      - mailto://127.0.0.1:{smtp.port}?from=luigi@example.com&to=oncall@example.com
""")
    run_luigi.env["LUIGI_TASKS_BLOCKS"] = str(registry)
    return registry


def flaky(http_root, run, failures: int) -> str:
    return f"{http_root.url}/flaky/500/{failures}/{run.serve_dir.name}/{{dataset}}_tripdata_{{month}}.parquet"


def run_id(stderr: str, state: str) -> str:
    return re.search(rf" run ([0-9a-f]{{12}}) {state}: ", stderr).group(1)


def runs_json(run, *args: str) -> list[dict]:
    proc = subprocess.run([sys.executable, "-m", "luigi_tasks", "runs", "--json", "--block", "postgres-connector",
                           "--limit", "200", *args], cwd=ROOT, env=run.env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_a_failed_run_sends_exactly_one_message_without_secrets(run_luigi, http_root, db, alerts, webhook, smtp):
    serve(run_luigi, "2022-01", 500)
    secret_env = {"PGUSER": PASSWORD_ROLE, "PGPASSWORD": ROLE_PASSWORD}
    proc = run_luigi("--month", "2022-01", "--DownloadMonth-retries", "2", "--notify-block", "alerts",
                     url=flaky(http_root, run_luigi, 9), extra_env=secret_env)
    assert proc.returncode == RC_TASK_FAILED, proc.stderr[-2000:]
    assert proc.stderr.count("retrying Download yellow 2022-01") == 2      # three attempts, one message
    rid = run_id(proc.stderr, "Failed")
    assert len(webhook.received) == 1 and len(smtp.messages) == 1
    hook = webhook.received[0]["json"]
    assert hook["title"] == "[luigi_tasks] Failed: Ingest yellow 2022-01"
    for text in (hook["message"], smtp.messages[0]):
        assert f"run {rid}: Ingest yellow 2022-01" in text
        assert "state: Failed, exit code 30" in text
        assert "error: Download yellow 2022-01: download failed: HTTP 500" in text
        assert "log: " in text
    everything = json.dumps(webhook.received) + smtp.messages[0] + proc.stdout + proc.stderr
    assert ROLE_PASSWORD not in everything and TOKEN not in proc.stderr
    assert webhook.received[0]["authorization"]           # the token was used, not shown


def test_retried_then_successful_sends_no_failure_and_success_when_asked(run_luigi, http_root, db, alerts,
                                                                        webhook, smtp):
    serve(run_luigi, "2022-02", 400)
    proc = run_luigi("--month", "2022-02", "--DownloadMonth-retries", "2", "--notify-block", "alerts",
                     url=flaky(http_root, run_luigi, 1))
    assert proc.returncode == 0 and "retrying Download yellow 2022-02" in proc.stderr
    assert webhook.received == [] and smtp.messages == []
    serve(run_luigi, "2022-03", 300)
    ok = run_luigi("--month", "2022-03", "--notify-block", "alerts", "--notify-on", "failure, success")
    assert ok.returncode == 0
    assert [m["json"]["title"] for m in webhook.received] == ["[luigi_tasks] Completed: Ingest yellow 2022-03"]
    assert "loaded: yellow 2022-03 (300 rows)" in webhook.received[0]["json"]["message"]


def test_missing_data_notifies_from_cron_when_asked(run_luigi, db, alerts, webhook):
    cmd = [sys.executable, "-m", "luigi_tasks", "cron", "--lag-months", "2",
           "--pipeline-data-dir", str(run_luigi.data_dir),
           "--DownloadMonth-url-template", f"file://{run_luigi.serve_dir}/{{dataset}}_tripdata_{{month}}.parquet",
           "--LoadMonth-block", "postgres-connector", "--LoadMonth-table", run_luigi.table,
           "--catch-up-months", "1", "--notify-block", "alerts", "--notify-on", "missing_data"]
    proc = subprocess.run(cmd, cwd=ROOT, env=run_luigi.env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == RC_MISSING_DATA, proc.stderr[-2000:]
    assert len(webhook.received) == 1
    message = webhook.received[0]["json"]["message"]
    assert "state: MissingData, exit code 20" in message and "not loaded" in message


def test_an_undeliverable_notification_is_a_warning_and_keeps_the_exit_code(run_luigi, db, tmp_path):
    registry = tmp_path / "blocks.yaml"
    registry.write_text((ROOT / "config" / "blocks.yaml").read_text() +
                        f"\n  nowhere:\n    type: apprise\n    urls: [json://127.0.0.1:{free_port()}/hook]\n")
    serve(run_luigi, "2022-05", 200)
    proc = run_luigi("--month", "2022-05", "--notify-block", "nowhere", "--notify-on", "success",
                     extra_env={"LUIGI_TASKS_BLOCKS": str(registry)})
    assert proc.returncode == 0
    assert "notification to #1 json://********** could not be delivered" in proc.stderr
    assert month_counts(db, run_luigi.table) == {"2022-05": 200}


def test_notify_test_reports_delivery_per_url(run_luigi, alerts, webhook, smtp, tmp_path):
    test = subprocess.run([sys.executable, "-m", "luigi_tasks", "notify", "test", "alerts"], cwd=ROOT,
                          env=run_luigi.env, capture_output=True, text=True, timeout=60)
    assert test.returncode == 0, test.stderr
    assert "delivered  #1 json://**********" in test.stdout and "delivered  #2 mailto://**********" in test.stdout
    assert len(webhook.received) == 1 and len(smtp.messages) == 1 and TOKEN not in test.stdout
    alerts.write_text(alerts.read_text().replace(f"{webhook.url}/hook", f"127.0.0.1:{free_port()}/hook"))
    broken = subprocess.run([sys.executable, "-m", "luigi_tasks", "notify", "test", "alerts"], cwd=ROOT,
                            env=run_luigi.env, capture_output=True, text=True, timeout=60)
    assert broken.returncode == 2
    assert "FAILED     #1 json://**********" in broken.stdout and "delivered  #2 mailto" in broken.stdout
    assert "1 of 2 URL(s) of block 'alerts' did not take the message" in broken.stderr


def test_hooks_are_called_once_per_run_and_a_raising_hook_changes_nothing(run_luigi, db, tmp_path):
    (tmp_path / "myhooks.py").write_text(f'''
import json
def record(summary):
    with open({str(tmp_path / "calls.jsonl")!r}, "a") as fh:
        fh.write(json.dumps(summary) + "\\n")
def boom(summary):
    raise RuntimeError("the hook itself is broken")
''')
    env = {"PYTHONPATH": str(tmp_path)}
    (run_luigi.serve_dir / "yellow_tripdata_2022-06.parquet").write_text("<html>no</html>")
    failed = run_luigi("--month", "2022-06", "--hooks-on-failure", "myhooks:record",
                       "--hooks-on-completion", "myhooks:record", "--hooks-on-success", "myhooks:boom", extra_env=env)
    assert failed.returncode == RC_TASK_FAILED
    calls = [json.loads(line) for line in (tmp_path / "calls.jsonl").read_text().splitlines()]
    assert len(calls) == 2 and {c["run_id"] for c in calls} == {run_id(failed.stderr, "Failed")}
    assert calls[0]["state"] == "Failed" and calls[0]["exit_code"] == 30 and "HTML page" in calls[0]["error"]
    serve(run_luigi, "2022-07", 100)
    ok = run_luigi("--month", "2022-07", "--hooks-on-success", "myhooks:boom", extra_env=env)
    assert ok.returncode == 0                                           # the broken hook changed nothing
    assert "Error in event callback" in ok.stderr and "the hook itself is broken" in ok.stderr
    assert month_counts(db, run_luigi.table) == {"2022-07": 100}


def test_run_history_knows_every_ending(run_luigi, http_root, db):
    serve(run_luigi, "2022-08", 300)
    ok = run_luigi("--month", "2022-08")
    (run_luigi.serve_dir / "yellow_tripdata_2022-09.parquet").write_text("<html>no</html>")
    bad = run_luigi("--month", "2022-09")
    assert ok.returncode == 0 and bad.returncode == RC_TASK_FAILED
    # A run killed outright leaves its record Running; the next look at the history marks it Crashed.
    serve(run_luigi, "2022-10", 100_000)
    trickle = f"{http_root.url}/trickle/0.05/{run_luigi.serve_dir.name}/{{dataset}}_tripdata_{{month}}.parquet"
    killed = subprocess.Popen(run_luigi.command("--month", "2022-10", url=trickle), cwd=ROOT, env=run_luigi.env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    assert wait_for_line(killed, "running   Download yellow 2022-10")
    killed.send_signal(signal.SIGKILL)
    killed.wait(timeout=30)
    # SIGTERM: the current task is rolled back, the run recorded Cancelled, exit code 50.
    serve(run_luigi, "2022-11", 100_000)
    stopped = subprocess.Popen(run_luigi.command("--month", "2022-11", url=trickle), cwd=ROOT, env=run_luigi.env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    assert wait_for_line(stopped, "running   Download yellow 2022-11")
    time.sleep(0.3)
    stopped.send_signal(signal.SIGTERM)
    rest = stopped.stderr.read()
    assert stopped.wait(timeout=60) == 50, rest[-2000:]
    assert " Cancelled: Ingest yellow 2022-11" in rest
    assert not list(run_luigi.data_dir.rglob("*2022-11*")) and not list(run_luigi.data_dir.rglob(".*tmp*"))
    history = {r["what"][-7:]: r for r in runs_json(run_luigi) if run_luigi.table in r["command"]}   # this test's
    assert history["2022-08"]["state"] == "Completed" and history["2022-08"]["exit_code"] == ok.returncode == 0
    assert history["2022-08"]["months"] == ["yellow 2022-08"] and history["2022-08"]["rows"] == 300
    assert history["2022-09"]["state"] == "Failed" and history["2022-09"]["exit_code"] == bad.returncode == 30
    assert "HTML page" in history["2022-09"]["error"]
    assert history["2022-10"]["state"] == "Crashed" and history["2022-10"]["ended_at"]
    assert history["2022-11"]["state"] == "Cancelled" and history["2022-11"]["exit_code"] == 50
    for record in history.values():
        assert {"run_id", "state", "exit_code", "error", "started_at", "ended_at", "months", "rows"} <= set(record)
    failed_only = runs_json(run_luigi, "--failed")
    assert "Completed" not in {r["state"] for r in failed_only}


def test_notification_under_luigid_too(run_luigi, luigid, db, alerts, webhook, smtp):
    (run_luigi.serve_dir / "yellow_tripdata_2022-12.parquet").write_text("<html>no</html>")
    proc = run_luigi("--month", "2022-12", "--notify-block", "alerts", scheduler=luigid.url)
    assert proc.returncode == RC_TASK_FAILED
    assert len(webhook.received) == 1 and len(smtp.messages) == 1
    assert "error: Download yellow 2022-12: " in webhook.received[0]["json"]["message"]
    assert "returned an HTML page" in webhook.received[0]["json"]["message"]
