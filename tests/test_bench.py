"""The benchmark runs end to end (small N), so it cannot rot. Its timings are not asserted here."""
from __future__ import annotations

import subprocess
import sys

import pytest
from support import ROOT

from luigi_tasks.localdb import LocalPostgres

pytestmark = pytest.mark.slow   # the whole benchmark, small


def test_benchmark_runs_every_contender_and_leaves_the_published_figures_alone(server_dir):
    published = (ROOT / "bench" / "RESULTS.md").read_bytes()
    tmp_path = server_dir
    out = tmp_path / "w" / "RESULTS.md"                    # without --out, the report stays in the workdir
    try:
        proc = subprocess.run([sys.executable, str(ROOT / "bench" / "bench.py"), "--rows", "3000", "--repeat", "1",
                               "--sweep", "1000,2000", "--workdir", str(tmp_path / "w")],
                              cwd=ROOT, capture_output=True, text=True, timeout=600)
    finally:
        LocalPostgres(tmp_path / "w" / "pg").stop()
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    text = out.read_text()
    for contender in ("naive", "handwritten", "ingest_cold", "ingest_cached", "load_only"):
        assert f"| {contender} |" in text
    assert "| handwritten | " in text and "1.00x" in text
    assert "| 1,000 |" in text and "| 2,000 |" in text       # the memory sweep
    assert "naive / ingest_cold" in text
    assert (ROOT / "bench" / "RESULTS.md").read_bytes() == published


def test_benchmark_of_the_2009_layout_with_zone_figures(server_dir):
    out = server_dir / "w" / "RESULTS.md"
    try:
        proc = subprocess.run([sys.executable, str(ROOT / "bench" / "bench.py"), "--month", "2009-01", "--rows", "3000",
                               "--repeat", "1", "--contenders", "handwritten,ingest_cold", "--sweep", "4000",
                               "--zones", "40000", "--workdir", str(server_dir / "w")],
                              cwd=ROOT, capture_output=True, text=True, timeout=600)
    finally:
        LocalPostgres(server_dir / "w" / "pg").stop()
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    text = out.read_text()
    assert "yellow 2009-01 month of 3,000 rows" in text and "| ingest_cold |" in text and "| 4,000 |" in text
    assert "million points/s on 1 thread" in text and "converts in" in text
