"""Side-by-side benchmark: one generated month, one embedded PostgreSQL, each contender in its own process.

    python bench/bench.py --out bench/RESULTS.md   # the published run: 2,463,931 rows, median of 3, sweep
    python bench/bench.py --rows 200000 --repeat 3 --sweep 100000,400000   # a quick look
    python bench/bench.py --month 2009-01 --rows 2000000 --sweep 15000000 --zones 4000000   # 2009 layout, zones
    python bench/bench.py --dataset fhvhv --month 2023-06 --rows 20000000 --sweep ""        # the biggest months
    python bench/bench.py --range 6 --contenders handwritten --sweep ""    # 6 months: IngestRange vs 6 x script

The report goes to ``{workdir}/RESULTS.md`` unless ``--out`` names another file: the tracked
``bench/RESULTS.md`` is only ever written on purpose, by a full run.

Contenders:
  naive          pandas read_parquet of the whole file + DataFrame.to_sql(chunksize=100_000)
  handwritten    pyarrow read + pyarrow.csv.write_csv + one COPY FROM STDIN (bench/contenders.py)
  ingest_cold    luigi --module luigi_tasks IngestMonth from a file:// source, empty targets
  ingest_cached  the same command again (everything complete)
  load_only      luigi ... LoadMonth with the CSV already present

Reports wall seconds (median), rows/s, the ratio to `handwritten`, peak RSS of the contender's process
and of the busiest PostgreSQL backend, prints a Markdown table and writes it to --out.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import psycopg2
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from luigi_tasks.localdb import LocalPostgres  # noqa: E402
from luigi_tasks.synth import write_month  # noqa: E402

DATABASE = "bench"
SHAPES = ROOT / "tests" / "data" / "taxi_zones.zip"   # the TLC's zone shapefile (2009-2010 months need it)
CONTENDERS = ("naive", "handwritten", "ingest_cold", "ingest_cached", "load_only")


class Bench:
    def __init__(self, workdir: Path, month: str = "2022-01", dataset: str = "yellow") -> None:
        self.workdir, self.month, self.dataset = workdir, month, dataset
        self.server = LocalPostgres(workdir / "pg")
        self.src_dir = workdir / "src"
        self.data_dir = workdir / "data"
        self.registry = workdir / "blocks.yaml"

    def start(self) -> None:
        self.server.ensure_running(DATABASE)
        self.registry.write_text(f"blocks:\n  bench:\n    type: embedded-postgres\n"
                                 f"    data_dir: {self.server.data_dir}\n    database: {DATABASE}\n")

    @property
    def dsn(self) -> str:
        return self.server.url(DATABASE)

    def sql(self, *statements: str) -> None:
        conn = psycopg2.connect(**self.server.connect_params(DATABASE))
        conn.autocommit = True
        with conn.cursor() as cur:
            for statement in statements:
                cur.execute(statement)
        conn.close()

    def generate(self, rows: int) -> Path:
        path = self.src_dir / f"{self.dataset}_tripdata_{self.month}.parquet"
        stamp = self.src_dir / f"{self.dataset}_{self.month}.rows"
        if not (path.exists() and stamp.exists() and stamp.read_text() == str(rows)):
            print(f"generating {rows:,} rows of {self.dataset} {self.month} ...", flush=True)
            write_month(path, self.month, rows=rows, seed=2022, dataset=self.dataset)
            stamp.write_text(str(rows))
        return path

    @property
    def table(self) -> str:
        return f"{self.dataset}_taxi_trips"

    def luigi(self, task: str) -> list[str]:
        return [sys.executable, "-m", "luigi", "--module", "luigi_tasks", task, "--month", self.month,
                "--dataset", self.dataset, "--local-scheduler", "--pipeline-data-dir", str(self.data_dir),
                "--DownloadMonth-url-template", f"file://{self.src_dir}/{{dataset}}_tripdata_{{month}}.parquet",
                "--DownloadZoneShapes-url", SHAPES.as_uri(),
                "--LoadMonth-block", "bench", "--LoadMonth-table", self.table]

    def reset_table(self) -> None:
        self.sql(f"DROP TABLE IF EXISTS {self.table} CASCADE", "DROP TABLE IF EXISTS bench_naive",
                 "DROP TABLE IF EXISTS bench_handwritten", "DROP TABLE IF EXISTS table_updates",
                 "DROP TABLE IF EXISTS ingest_loads", "CHECKPOINT")

    def command(self, contender: str, src: Path) -> tuple[list[str], callable]:
        """The contender's command line and what must happen before it runs."""
        def fresh():
            # Empty targets for the month. The zone shapefile and its grid (2009-2010) are fetched and built
            # once per data directory, not per month: they are kept, as a backfill keeps them.
            self.reset_table()
            for kind in ("raw", "csv"):
                shutil.rmtree(self.data_dir / kind / self.dataset, ignore_errors=True)

        if contender in ("naive", "handwritten"):
            return ([sys.executable, str(ROOT / "bench" / "contenders.py"), contender, str(src), self.dsn,
                     f"bench_{contender}"], fresh)
        if contender == "ingest_cold":
            return self.luigi("IngestMonth"), fresh
        if contender == "ingest_cached":
            return self.luigi("IngestMonth"), lambda: None
        if contender == "load_only":
            return self.luigi("LoadMonth"), self.reset_table
        raise ValueError(contender)

    def measure(self, cmd: list[str]) -> dict:
        """Run ``cmd``; wall time, the process's peak RSS, the busiest backend's peak RSS."""
        env = {**os.environ, "LUIGI_TASKS_BLOCKS": str(self.registry)}
        env.pop("LUIGI_CONFIG_PATH", None)
        sampler = BackendSampler(self.server)
        sampler.start()
        started = time.perf_counter()
        with open(self.workdir / "last.log", "wb") as log:
            # Through bench/peak.py: a command started directly from this process would report this
            # process's RSS as its own peak (see peak.py).
            peak = self.workdir / "peak.json"
            proc = subprocess.run([sys.executable, str(ROOT / "bench" / "peak.py"), str(peak), *cmd],
                                  cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        wall = time.perf_counter() - started
        sampler.stop()
        if proc.returncode != 0:
            tail = (self.workdir / "last.log").read_text(errors="replace")[-3000:]
            raise SystemExit(f"{' '.join(cmd[:6])} ... exited {proc.returncode}:\n{tail}")
        return {"wall": wall, "rss_mb": json.loads(peak.read_text())["maxrss_kb"] / 1024,
                "server_mb": sampler.peak / 2**20, "log": (self.workdir / "last.log").read_text(errors="replace")}


class BackendSampler(threading.Thread):
    """Peak RSS of the largest PostgreSQL backend while a contender runs (sampled every 50 ms)."""

    def __init__(self, server: LocalPostgres) -> None:
        super().__init__(daemon=True)
        pid = int((server.data_dir / "postmaster.pid").read_text().split()[0])
        self.postmaster = psutil.Process(pid)
        self.peak = 0
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.wait(0.05):
            for child in self.postmaster.children():
                try:
                    self.peak = max(self.peak, child.memory_info().rss)
                except psutil.Error:
                    pass

    def stop(self) -> None:
        self._halt.set()
        self.join()


def stage_seconds(log: str) -> dict[str, float]:
    """Seconds per luigi task, from the 'running'/'done' log lines."""
    stamps: dict[str, dict[str, dt.datetime]] = {}
    for line in log.splitlines():
        m = re.match(r"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) .*: (running|done)\s+(\w+) ", line)
        if m:
            when = dt.datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S,%f")
            stamps.setdefault(m.group(3), {})[m.group(2)] = when
    return {name: (s["done"] - s["running"]).total_seconds() for name, s in stamps.items() if len(s) == 2}


def zone_figures(workdir: Path, points: int) -> dict:
    """Points/s of the zone lookup (projection included) on 1 and 2 threads, and how much longer a 2009
    conversion takes with zones than the same file converted with the lookup replaced by nothing."""
    import concurrent.futures

    import numpy as np

    from luigi_tasks.parquet_csv import parquet_to_csv
    from luigi_tasks.synth import _coordinates
    from luigi_tasks.zone_index import ZoneIndex

    copy = workdir / "taxi_zones.zip"
    copy.write_bytes(SHAPES.read_bytes())
    index = ZoneIndex.load(copy)
    lon, lat = _coordinates(np.random.default_rng(9), points)
    figures = {}
    for threads in (1, 2):
        chunks = np.array_split(np.arange(points), max(1, points // 65536))
        started = time.perf_counter()
        with concurrent.futures.ThreadPoolExecutor(threads) as pool:
            list(pool.map(lambda c: index.zones(lon[c], lat[c]), chunks))
        figures[f"points_per_s_{threads}"] = points / (time.perf_counter() - started)

    class NoZones:   # the same conversion, without the point-in-polygon work
        def zones(self, lon, lat):
            return np.full(len(lon), -1, np.int32)

    src = workdir / "zones_2009-01.parquet"
    write_month(src, "2009-01", rows=points // 2, seed=9)
    timings = {}
    for name, zones in (("with zones", index), ("without", NoZones())):
        started = time.perf_counter()
        parquet_to_csv(src, workdir / "zones.csv", "yellow", dt.date(2009, 1, 1), zones=zones)
        timings[name] = time.perf_counter() - started
    figures["conversion_ratio"] = timings["with zones"] / timings["without"]
    figures["rows"] = points // 2
    return figures


def range_figures(bench: Bench, months: int, rows: int) -> dict:
    """A range of ``months`` months: 6 x the handwritten script (one month after another), then
    ``IngestRange`` with --workers 1 and 2, each from empty targets."""
    from luigi_tasks.months import add_months, parse_month

    first = parse_month(bench.month)
    names = [f"{add_months(first, i):%Y-%m}" for i in range(months)]
    sources = []
    for i, month in enumerate(names):
        path = bench.src_dir / f"{bench.dataset}_tripdata_{month}.parquet"
        if not path.exists() or pq.ParquetFile(path).metadata.num_rows != rows:
            print(f"generating {rows:,} rows of {bench.dataset} {month} ...", flush=True)
            write_month(path, month, rows=rows, seed=100 + i, dataset=bench.dataset)
        sources.append(path)
    figures: dict = {"months": months, "rows": rows}
    bench.reset_table()
    figures["handwritten"] = sum(
        bench.measure([sys.executable, str(ROOT / "bench" / "contenders.py"), "handwritten", str(src), bench.dsn,
                       f"bench_handwritten_{i}"])["wall"] for i, src in enumerate(sources))
    # Dropped before the ranges run, not after, so that each contender starts on a quiet server: with the
    # script's 2.4 GB of fresh tables present (autovacuum then works through them), the ranges measured
    # 36-37 s; without them 30-32 s. The script's own months each start from a server it has left.
    bench.sql(*(f"DROP TABLE IF EXISTS bench_handwritten_{i}" for i in range(months)))
    stop = f"{add_months(first, months):%Y-%m}"
    for workers in (1, 2):
        bench.reset_table()
        for kind in ("raw", "csv"):
            shutil.rmtree(bench.data_dir / kind / bench.dataset, ignore_errors=True)
        command = [c for c in bench.luigi("IngestRange") if c not in ("--month", bench.month)]
        command += ["--start", bench.month, "--stop", stop, "--workers", str(workers)]
        result = bench.measure(command)
        figures[f"workers_{workers}"], figures[f"rss_{workers}"] = result["wall"], result["rss_mb"]
        print(f"range of {months} months, --workers {workers}: {result['wall']:.2f} s", flush=True)
    return figures


def run(args: argparse.Namespace) -> str:
    bench = Bench(Path(args.workdir).absolute(), args.month, args.dataset)
    bench.workdir.mkdir(parents=True, exist_ok=True)
    bench.start()
    src = bench.generate(args.rows)
    results: dict[str, list[dict]] = {}
    for contender in args.contenders:
        cmd, prepare = bench.command(contender, src)
        for i in range(args.repeat):
            if contender == "ingest_cached" and not (bench.data_dir / "csv").exists():
                bench.command("ingest_cold", src)[1]()
                bench.measure(bench.luigi("IngestMonth"))
            prepare()
            result = bench.measure(cmd)
            results.setdefault(contender, []).append(result)
            print(f"{contender:<14} run {i + 1}: {result['wall']:7.2f} s  {result['rss_mb']:6.0f} MB  "
                  f"server {result['server_mb']:5.0f} MB", flush=True)
    sweep = []
    for rows in args.sweep:
        src = bench.generate(rows)
        cmd, prepare = bench.command("ingest_cold", src)
        prepare()
        result = bench.measure(cmd)
        sweep.append((rows, result))
        print(f"sweep {rows:>10,} rows: {result['wall']:7.2f} s  {result['rss_mb']:6.0f} MB", flush=True)
    ranges = range_figures(bench, args.range, args.rows) if args.range else None
    bench.generate(args.rows)
    bench.server.stop()
    zones = zone_figures(bench.workdir, args.zones) if args.zones else None
    return report(args, results, sweep, zones, ranges)


def report(args: argparse.Namespace, results: dict[str, list[dict]], sweep: list, zones: dict | None = None,
           ranges: dict | None = None) -> str:
    med = {c: statistics.median(r["wall"] for r in runs) for c, runs in results.items()}
    base = med.get("handwritten")
    lines = [
        "# Benchmark: one month into PostgreSQL",
        "",
        f"`python bench/bench.py --dataset {args.dataset} --month {args.month} --rows {args.rows} --repeat "
        f"{args.repeat}` on {dt.date.today()}: "
        f"{os.cpu_count()} cores, {psutil.virtual_memory().total / 2**30:.0f} GiB, "
        f"Python {platform.python_version()}, embedded PostgreSQL (data in `{args.workdir}/pg`). "
        f"One generated {args.dataset} {args.month} month of {args.rows:,} rows; every contender in its own "
        f"process, one after another, median of {args.repeat}.",
        "",
        "| contender | wall s (median) | rows/s | vs handwritten | peak RSS MB | busiest backend MB |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for contender in args.contenders:
        runs = results[contender]
        wall = med[contender]
        rows_per_s = f"{args.rows / wall:,.0f}" if contender != "ingest_cached" else "-"   # it loads nothing
        ratio = f"{wall / base:.2f}x" if base else "-"
        lines.append(f"| {contender} | {wall:.2f} | {rows_per_s} | {ratio} | "
                     f"{max(r['rss_mb'] for r in runs):.0f} | {max(r['server_mb'] for r in runs):.0f} |")
    if "naive" in med and "ingest_cold" in med:
        lines += ["", f"naive / ingest_cold = **{med['naive'] / med['ingest_cold']:.1f}x**."]
    if "ingest_cold" in results:
        stages: dict[str, list[float]] = {}
        for r in results["ingest_cold"]:
            for name, secs in stage_seconds(r["log"]).items():
                stages.setdefault(name, []).append(secs)
        lines += ["", "Where `ingest_cold` spends its time (median seconds per task, from the luigi log):", "",
                  "| task | seconds |", "|---|---:|"]
        lines += [f"| {name} | {statistics.median(v):.2f} |" for name, v in stages.items()]
    if sweep:
        lines += ["", "Memory sweep, `ingest_cold` (one run each): peak RSS must not grow with the month.", "",
                  "| rows | wall s | peak RSS MB |", "|---:|---:|---:|"]
        lines += [f"| {rows:,} | {r['wall']:.2f} | {r['rss_mb']:.0f} |" for rows, r in sweep]
    if ranges:
        base = ranges["handwritten"]
        lines += ["", f"A range of {ranges['months']} months of {ranges['rows']:,} rows, from empty targets:", "",
                  "| contender | wall s | vs handwritten x months | peak RSS MB |", "|---|---:|---:|---:|",
                  f"| handwritten, one month after another | {base:.2f} | 1.00x | - |"]
        for w in (1, 2):
            wall = ranges[f"workers_{w}"]
            lines.append(f"| IngestRange --workers {w} | {wall:.2f} | {wall / base:.2f}x | {ranges[f'rss_{w}']:.0f} |")
    if zones:
        lines += ["", f"Zones from coordinates (2009-2010 yellow), in-process: {zones['points_per_s_1'] / 1e6:.1f} "
                  f"million points/s on 1 thread, {zones['points_per_s_2'] / 1e6:.1f} million on 2 (projection "
                  f"included); a {zones['rows']:,}-row 2009 month converts in {zones['conversion_ratio']:.2f}x the "
                  "time it takes without the zone lookup."]
    lines += ["", "What the figures mean, the profile and the alternatives measured: docs/performance.md."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=2_463_931)
    ap.add_argument("--dataset", default="yellow", choices=["yellow", "green", "fhv", "fhvhv"])
    ap.add_argument("--month", default="2022-01", help="YYYY-MM: the layout generated (2009-01: coordinates, zones)")
    ap.add_argument("--zones", type=int, default=0, help="points for the zone lookup figures (0 = none)")
    ap.add_argument("--range", type=int, default=0, help="months for the range figures (0 = none), --rows each")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--contenders", default=",".join(CONTENDERS))
    ap.add_argument("--sweep", default="500000,2500000,10000000", help="row counts for the memory sweep ('' = none)")
    ap.add_argument("--workdir", default="/tmp/luigi_tasks_bench")
    ap.add_argument("--out", help="where to write the report (default: WORKDIR/RESULTS.md; "
                                   "bench/RESULTS.md holds the published full run)")
    args = ap.parse_args(argv)
    args.contenders = [c for c in args.contenders.split(",") if c]
    args.sweep = [int(n) for n in args.sweep.split(",") if n]
    unknown = set(args.contenders) - set(CONTENDERS)
    if unknown:
        ap.error(f"unknown contender(s): {', '.join(sorted(unknown))}")
    text = run(args)
    out = Path(args.out or Path(args.workdir) / "RESULTS.md")
    out.write_text(text)
    print(f"report written to {out}")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
