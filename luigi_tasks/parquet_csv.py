"""Parquet to CSV: normalise a TLC file to its table's columns and write it as CSV for COPY.

The file is read batch by batch and each batch is cast and written by Arrow's C++
code: memory stays at one batch, and no Python code touches a row. What the files of
different years spell differently is absorbed here (``plan_columns``): names, Arrow types,
timestamps and numbers written as text, payment and vendor labels, 0/1 flags, columns typed
``null`` because a month has no value in them, pandas index columns, and, for 2009-2010
yellow, zones computed from coordinates (``luigi_tasks.zone_index``).

A row that cannot be stored (an unparseable timestamp, text where a number belongs) fails
the month with its row number, column and value, unless ``bad_rows = skip``: then it is left
out and counted in the load report.
"""
from __future__ import annotations

import collections
import concurrent.futures
import contextlib
import dataclasses
import datetime as dt
import io
import itertools
import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from luigi_tasks import labels, schema
from luigi_tasks.errors import PermanentError
from luigi_tasks.files import atomic_file
from luigi_tasks.progress import Progress

BATCH_ROWS = 32_768
# The 2009-2010 layout carries text timestamps and labels and computes zones: a batch of it holds more
# memory than a later one's, so it is read in batches of half the rows (a 15M-row 2009 month: peak RSS of
# the whole ingest 306 -> 280 MB, wall time unchanged at ~46 s; a 2022 month keeps the larger batches).
LEGACY_BATCH_ROWS = 16_384
BAD_ROWS = ("fail", "skip")
TEXT_TIMESTAMP = "%Y-%m-%d %H:%M:%S"
_NUMBER = r"^\s*[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?\s*$"

# jemalloc hands freed batches back to the OS sooner than Arrow's default mimalloc: measured on a
# 2.46M-row month, peak RSS of the whole luigi process 265 MB instead of 301 MB, no slower.
if "ARROW_DEFAULT_MEMORY_POOL" not in os.environ:
    with contextlib.suppress(NotImplementedError):
        pa.set_memory_pool(pa.jemalloc_memory_pool())


@dataclasses.dataclass(frozen=True)
class Source:
    """Where a table column comes from: a file column and how it is converted, or nothing."""

    name: str | None
    kind: str   # cast | timestamp | text_timestamp | text_number | labels | flag | zone | null


def _kind(col: schema.Column, source: pa.DataType) -> str | None:
    """How a file column of type ``source`` becomes ``col`` (None: it cannot)."""
    target = col.arrow_type
    if pa.types.is_null(source):
        return "cast"   # a column with no value in this month: NULL, whatever the table's type
    text = pa.types.is_string(source) or pa.types.is_large_string(source)
    number = pa.types.is_integer(source) or pa.types.is_floating(source)
    if pa.types.is_timestamp(target):
        return "timestamp" if pa.types.is_timestamp(source) else "text_timestamp" if text else None
    if pa.types.is_integer(target) or pa.types.is_floating(target):
        if number:
            return "cast"
        return ("labels" if col.labels else "text_number") if text else None
    if pa.types.is_string(target):
        return "cast" if text else ("flag" if col.flag else "cast") if number else None
    return "cast" if source == target else None


def plan_columns(file_schema: pa.Schema, dataset: str, label: str,
                 drop_unknown: bool = False) -> dict[str, Source]:
    """Map each table column to its source in the file (``Source(None, "null")``: load NULL).

    Names match whatever their case and surrounding spaces; pandas index columns are ignored.
    Raises a one-line error for a missing required column, a column of a type that cannot
    become its column's, or a column the table does not know (unless ``drop_unknown``).
    """
    names = {n.strip().lower(): n for n in file_schema.names if not n.startswith(schema.IGNORED_PREFIX)}
    plan: dict[str, Source] = {}
    used = set()
    for col in schema.columns(dataset):
        if col is schema.SOURCE_MONTH:
            continue
        found = next((names[s.lower()] for s in col.sources if s.lower() in names), None)
        if found is None:
            plan[col.name] = Source(None, "null")
            continue
        source_type = file_schema.field(found).type
        kind = _kind(col, source_type)
        if kind is None:
            raise PermanentError(f"{label}: column {found} has type {source_type}, "
                                 f"expected a type that fits {col.pg_type} ({col.name})")
        plan[col.name] = Source(found, kind)
        used.add(found)
    for col in schema.columns(dataset):   # no zone column, but the coordinates it stands for
        if col.geo and plan[col.name].kind == "null" and all(plan[c].kind != "null" for c in col.geo):
            plan[col.name] = Source(None, "zone")
    for name in schema.REQUIRED.get(dataset, ()):
        if plan[name].kind == "null":
            col = next(c for c in schema.columns(dataset) if c.name == name)
            raise PermanentError(f"{label}: required column {col.sources[0]} is missing")
    unknown = [n for n in file_schema.names if n not in used and not n.startswith(schema.IGNORED_PREFIX)]
    if unknown and not drop_unknown:
        raise PermanentError(f"{label}: unknown column {unknown[0]} (type {file_schema.field(unknown[0]).type}); "
                             "set [ParquetToCsv] drop_unknown_columns = true to ignore it")
    return plan


# CSV bytes per row of each table, measured on generated months (yellow 2022: 119; 2009 with coordinates:
# 160; green 2022: 126; fhv: 70; fhvhv: 178), rounded up: a CSV is 4-8x its Parquet file, so estimating from
# the Parquet file's size would be off by two either way; the row count and the table's width are not.
CSV_BYTES_PER_ROW = {"yellow": 170, "green": 140, "fhv": 80, "fhvhv": 200}


def estimate_csv_bytes(src: Path, dataset: str) -> int:
    """About how large the CSV of ``src`` will be (from its row count), for a free-space check."""
    return pq.ParquetFile(src).metadata.num_rows * CSV_BYTES_PER_ROW[dataset]


def table_schema(dataset: str) -> pa.Schema:
    return pa.schema([(c.name, c.arrow_type) for c in schema.columns(dataset)])


def _timestamp(column: pa.Array) -> pa.Array:
    """Whole seconds when the values allow it (the meters' resolution): the CSV is 14 bytes a row
    shorter and COPY parses less. Finer values keep microseconds; nanoseconds are cut to those."""
    try:
        return pc.cast(column, pa.timestamp("s"), safe=True)
    except pa.ArrowInvalid:
        return pc.cast(column, pa.timestamp("us"), safe=False)


@dataclasses.dataclass
class BatchReport:
    """What one batch adds to the load report."""

    bad: pa.Array | None = None                       # rows to leave out (bad_rows = skip)
    unmapped: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    without_zone: int = 0


def _bad(report: BatchReport, bad: pa.Array, column: pa.Array, source: str, what: str, label: str,
         first_row: int, skip: bool) -> None:
    """Rows whose ``source`` value is not ``what``: fail with the first of them, or mark them to skip."""
    if not pc.any(bad).as_py():
        return
    if not skip:
        i = pc.index(bad, True).as_py()
        raise PermanentError(f"{label}: row {first_row + i + 1}: column {source} has {column[i].as_py()!r}, not "
                             f"{what}; set [ParquetToCsv] bad_rows = skip to load the month without such rows")
    report.bad = bad if report.bad is None else pc.or_(report.bad, bad)


def _convert(column: pa.Array, source: Source, col: schema.Column, target: pa.DataType, report: BatchReport,
             label: str, first_row: int, skip: bool) -> pa.Array:
    if source.kind == "timestamp":
        return _timestamp(column)
    if source.kind == "text_timestamp":
        try:   # Arrow's ISO-8601 cast: 8x faster than strptime (measured: 0.04 s against 0.33 s for 2.5M values)
            return pc.cast(column, pa.timestamp("s"))
        except pa.ArrowInvalid:   # a value it cannot read: find which, with the strict parser
            pass
        parsed = pc.strptime(pc.utf8_trim_whitespace(column), TEXT_TIMESTAMP, "s", error_is_null=True)
        bad = pc.and_(pc.is_valid(column), pc.is_null(parsed))
        _bad(report, pc.fill_null(bad, False), column, source.name, "a timestamp (YYYY-MM-DD HH:MM:SS)", label,
             first_row, skip)
        return parsed
    if source.kind == "text_number":
        trimmed = pc.utf8_trim_whitespace(column)
        number = pc.match_substring_regex(trimmed, _NUMBER)
        bad = pc.and_(pc.not_equal(trimmed, ""), pc.invert(number))
        _bad(report, pc.fill_null(bad, False), column, source.name, "a number", label, first_row, skip)
        return pc.cast(pc.cast(pc.if_else(number, trimmed, None), pa.float64()), target, safe=True)
    if source.kind == "labels":
        mapping = labels.MAPS[col.labels]
        text = pc.utf8_upper(pc.utf8_trim_whitespace(column))
        index = pc.index_in(text, value_set=pa.array(list(mapping)))
        codes = pc.take(pa.array(list(mapping.values()), target), index)
        unseen = pc.fill_null(pc.and_(pc.is_null(index), pc.not_equal(text, "")), False)
        if pc.any(unseen).as_py():
            counts = pc.value_counts(pc.filter(text, unseen)).to_pylist()
            report.unmapped.update({f"{col.name}={c['values']}": c["counts"] for c in counts})
            codes = pc.if_else(unseen, pa.scalar(labels.UNSEEN[col.labels], target), codes)
        return codes
    if source.kind == "flag":
        return pc.if_else(pc.equal(column, 1), "Y", pc.if_else(pc.equal(column, 0), "N", pc.cast(column, pa.string())))
    return pc.cast(column, target, safe=True)


def _normalise(batch: pa.RecordBatch, plan: dict[str, Source], dataset: str, month_value: pa.Scalar, label: str,
               first_row: int = 0, zones=None, skip_bad: bool = False) -> tuple[pa.RecordBatch, BatchReport]:
    """One batch in the table's columns, and what it adds to the load report."""
    n = batch.num_rows
    report = BatchReport()
    columns = {c.name: c for c in schema.columns(dataset)}
    out_schema = table_schema(dataset)
    arrays: dict[str, pa.Array] = {}
    for field in out_schema:
        source = plan.get(field.name)
        if field.name == schema.SOURCE_MONTH.name:
            arrays[field.name] = pa.nulls(n, field.type).fill_null(month_value)
        elif source is None or source.kind in ("null", "zone"):
            arrays[field.name] = pa.nulls(n, field.type)
        else:
            try:
                arrays[field.name] = _convert(batch.column(source.name), source, columns[field.name], field.type,
                                              report, label, first_row, skip_bad)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
                raise PermanentError(f"{label}: column {source.name} cannot be stored as {field.type}: {exc}") \
                    from exc
    for name, source in plan.items():   # zones from coordinates, once the coordinates are numbers
        if source.kind == "zone":
            if zones is None:
                raise PermanentError(f"{label}: the file gives coordinates instead of zones, and no zone "
                                     "shapefile was given (DownloadZoneShapes)")
            lon, lat = (arrays[c].to_numpy(zero_copy_only=False) for c in columns[name].geo)
            found = zones.zones(np.asarray(lon, dtype=np.float64), np.asarray(lat, dtype=np.float64))
            arrays[name] = pa.array(found, mask=found < 0).cast(out_schema.field(name).type)
            if name == "pu_location_id":
                report.without_zone = int((found < 0).sum())
    normalised = pa.RecordBatch.from_arrays([arrays[f.name] for f in out_schema], schema=out_schema)
    if report.bad is not None:
        keep = pc.invert(report.bad)
        if report.without_zone:
            report.without_zone = int(pc.sum(pc.and_(keep, pc.is_null(normalised.column("pu_location_id"))))
                                      .as_py() or 0)
        normalised = normalised.filter(keep)
    return normalised, report


def _ordered_map(fn, items, workers: int):
    """``map(fn, items)`` on ``workers`` threads, in order, with at most ``workers + 1`` items in flight."""
    if workers <= 1:
        yield from map(fn, items)
        return
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        pending: collections.deque = collections.deque()
        for item in items:
            pending.append(pool.submit(fn, item))
            if len(pending) > workers:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


def parquet_to_csv(src: Path, dest: Path, dataset: str, month: dt.date, drop_unknown: bool = False,
                   progress: Progress | None = None, sidecar_info: dict | None = None, threads: int = 2,
                   zones=None, bad_rows: str = "fail") -> int:
    """Convert ``src`` to a header-less CSV in table column order; return the rows written.

    Batches are cast and rendered as CSV on ``threads`` threads (Arrow, shapely and pyproj
    release the GIL) and written in order; the sidecar records where each batch starts, so
    the load can split the file at row boundaries for parallel COPY, and what the load
    report needs (rows, pickups outside the month or without a zone, bad rows, unmapped labels).
    """
    if bad_rows not in BAD_ROWS:
        raise PermanentError(f"invalid bad_rows {bad_rows!r}: choose {' or '.join(BAD_ROWS)}")
    label = f"{dataset} {month:%Y-%m} ({src.name})"
    pf = pq.ParquetFile(src)
    plan = plan_columns(pf.schema_arrow, dataset, label, drop_unknown)
    month_value = pa.scalar(month, pa.date32())
    sources = sorted({s.name for s in plan.values() if s.name is not None})
    start = pa.scalar(dt.datetime.combine(month, dt.time()), pa.timestamp("us"))
    stop = pa.scalar(dt.datetime.combine((month + dt.timedelta(days=32)).replace(day=1), dt.time()),
                     pa.timestamp("us"))
    options = pacsv.WriteOptions(include_header=False)
    legacy = any(s.kind in ("text_timestamp", "zone", "labels") for s in plan.values())
    batch_rows = LEGACY_BATCH_ROWS if legacy else BATCH_ROWS

    def render(item: tuple[int, pa.RecordBatch]) -> tuple[int, int, BatchReport, bytes]:
        first_row, batch = item
        normalised, report = _normalise(batch, plan, dataset, month_value, label, first_row, zones,
                                        bad_rows == "skip")
        when = normalised.column(schema.PICKUP[dataset])
        outside = pc.sum(pc.or_(pc.less(when, start.cast(when.type)),
                                pc.greater_equal(when, stop.cast(when.type)))).as_py() or 0
        buf = io.BytesIO()
        pacsv.write_csv(normalised, buf, options)
        return normalised.num_rows, outside, report, buf.getvalue()

    if progress:
        progress.total = pf.metadata.num_rows
    rows = outside = skipped = without_zone = 0
    unmapped: collections.Counter = collections.Counter()
    offsets: list[int] = []
    csv_info: dict = {}
    with atomic_file(dest, sidecar_info=csv_info) as tmp:   # the sidecar, written after the CSV, commits it
        with open(tmp, "wb") as out:
            # One reader per row group: a single reader over a many-row-group file keeps memory
            # per row group it has passed (measured: 400 MB after 10M rows, 110 MB this way).
            batches = itertools.chain.from_iterable(
                pf.iter_batches(batch_size=batch_rows, columns=sources, row_groups=[i])
                for i in range(pf.metadata.num_row_groups))
            for n, stray, report, data in _ordered_map(render, _numbered(batches), threads):
                offsets.append(out.tell())
                out.write(data)
                rows += n
                outside += stray
                without_zone += report.without_zone
                unmapped.update(report.unmapped)
                skipped += 0 if report.bad is None else pc.sum(report.bad).as_py()
                if progress:
                    progress.update(n)
        if rows + skipped != pf.metadata.num_rows:
            raise PermanentError(f"{label}: read {rows + skipped} rows but the file's metadata says "
                                 f"{pf.metadata.num_rows}")
        source = sidecar_info or {}   # the source version travels with the CSV
        csv_info.update(version=source.get("version"), requested=source.get("requested"), url=source.get("url"),
                        rows=rows, source_rows=pf.metadata.num_rows, pickups_outside_month=outside,
                        bad_rows=skipped, unmapped_labels=dict(unmapped),
                        pickups_without_zone=without_zone if any(s.kind == "zone" for s in plan.values()) else None,
                        offsets=offsets)
    # The batches' memory back to the system before the load starts, not after jemalloc's decay: the peak
    # of the whole process is what a 15-million-row month must keep under 300 MB.
    pa.default_memory_pool().release_unused()
    return rows


def _numbered(batches):
    """(index of the batch's first row in the file, batch)."""
    first = 0
    for batch in batches:
        yield first, batch
        first += batch.num_rows
