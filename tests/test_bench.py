"""The benchmark runs end to end (small N), so it cannot rot. Its timings are not asserted here."""
from __future__ import annotations

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
