"""The benchmark runs end to end (small N), so it cannot rot. Its timings are not asserted here."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from support import ROOT

from luigi_tasks.localdb import LocalPostgres

pytestmark = pytest.mark.slow   # the whole benchmark, small


def run_bench(workdir, *args: str) -> str:
    """``bench/bench.py`` with ``args`` in ``workdir``; the report it wrote there (no --out)."""
    try:
        proc = subprocess.run([sys.executable, str(ROOT / "bench" / "bench.py"), "--repeat", "1", *args,
                               "--workdir", str(workdir)], cwd=ROOT, capture_output=True, text=True, timeout=600)
    finally:
        LocalPostgres(workdir / "pg").stop()
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    return (workdir / "RESULTS.md").read_text()


def test_benchmark_runs_every_contender_and_leaves_the_published_figures_alone(server_dir):
    published = (ROOT / "bench" / "RESULTS.md").read_bytes()
    text = run_bench(server_dir / "w", "--rows", "3000", "--sweep", "1000,2000", "--range", "2")
    for contender in ("naive", "handwritten", "ingest_cold", "ingest_cached", "load_only"):
        assert f"| {contender} |" in text
    assert "| handwritten | " in text and "1.00x" in text
    assert "| 1,000 |" in text and "| 2,000 |" in text       # the memory sweep
    assert "naive / ingest_cold" in text
    assert "A range of 2 months of 3,000 rows" in text and "| IngestRange --workers 2 |" in text
    assert (ROOT / "bench" / "RESULTS.md").read_bytes() == published


def test_benchmark_of_the_2009_layout_with_zone_figures(server_dir):
    text = run_bench(server_dir / "w", "--month", "2009-01", "--rows", "3000", "--contenders",
                     "handwritten,ingest_cold", "--sweep", "4000", "--zones", "40000")
    assert "yellow 2009-01 month of 3,000 rows" in text and "| ingest_cold |" in text and "| 4,000 |" in text
    assert "million points/s on 1 thread" in text and "converts in" in text


def test_peak_rss_is_the_commands_own_not_the_benchmarks(tmp_path):
    """Linux carries a parent's RSS into a child's peak across fork and exec: bench/peak.py must not."""
    ballast = bytearray(300 * 2**20)
    ballast[::4096] = b"\1" * len(ballast[::4096])      # touch every page: 300 MB resident here
    command = [sys.executable, "-c", "pass"]
    direct = subprocess.Popen(command)
    _, _, usage = os.wait4(direct.pid, 0)
    assert usage.ru_maxrss / 1024 > 250                 # what the benchmark used to report

    result = tmp_path / "peak.json"
    assert subprocess.run([sys.executable, str(ROOT / "bench" / "peak.py"), str(result), *command]).returncode == 0
    assert json.loads(result.read_text())["maxrss_kb"] / 1024 < 100
    failed = subprocess.run([sys.executable, str(ROOT / "bench" / "peak.py"), str(result), sys.executable, "-c",
                             "raise SystemExit(3)"])
    assert failed.returncode == 3
    # bounded: a command that hangs is killed (and this run's own timeout would fail the test otherwise)
    stuck = subprocess.run([sys.executable, str(ROOT / "bench" / "peak.py"), "--timeout", "1", str(result),
                            "sleep", "60"], capture_output=True, text=True, timeout=30)
    assert stuck.returncode == 124 and "still running after 1 s" in stuck.stderr
    del ballast
