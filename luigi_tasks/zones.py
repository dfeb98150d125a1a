"""The taxi zones: the lookup (LocationID -> borough, zone), so trips can be joined to places, and the
shapefile, so 2009-2010 trips, which give coordinates, can be placed in zones.

    luigi --module luigi_tasks LoadZones --local-scheduler
    luigi --module luigi_tasks DownloadZoneShapes --local-scheduler
"""
from __future__ import annotations

import csv
import io
from pathlib import Path

import luigi
import psycopg2
from psycopg2 import sql

from luigi_tasks.base import Fetching, PipelineTask
from luigi_tasks.blocks import SqlAlchemyConnector
from luigi_tasks.config import DEFAULT_BLOCK, data_path
from luigi_tasks.errors import PermanentError
from luigi_tasks.files import SidecarTarget, read_sidecar
from luigi_tasks.pg import database_error, session_timeouts
from luigi_tasks.pg_target import BlockPostgresTarget, parse_table_name
from luigi_tasks.sources import fetch, reject_error_page

DEFAULT_ZONES_URL = "https://d37ci6vzurychx.cloudfront.net/misc/taxi+_zone_lookup.csv"
DEFAULT_SHAPES_URL = "https://d37ci6vzurychx.cloudfront.net/misc/taxi_zones.zip"
HEADER = ["LocationID", "Borough", "Zone", "service_zone"]


def validate_zones(path: Path, source: str) -> int:
    reject_error_page(path, source, "the zone lookup CSV")
    with open(path, newline="", encoding="utf-8") as fh:
        rows = list(csv.reader(fh))
    if not rows or rows[0] != HEADER:
        got = ",".join(rows[0][:6]) if rows else "nothing"
        raise PermanentError(f"{source}: expected the header {','.join(HEADER)}, got {got}")
    bad = next((i for i, r in enumerate(rows[1:], 2) if len(r) != 4 or not r[0].isdigit()), None)
    if bad is not None or len(rows) < 2:
        raise PermanentError(f"{source}: line {bad or 2} is not 'LocationID,Borough,Zone,service_zone'")
    return len(rows) - 1


class MiscDownload(Fetching, PipelineTask):
    """A reference file fetched into ``{data_dir}/raw/misc/{filename}`` and checked by ``validate``
    (path, source) -> count; subclasses set ``url``, ``filename``, ``validate`` and what is ``counted``."""

    filename: str
    counted: str

    @staticmethod
    def validate(path: Path, source: str) -> int:
        raise NotImplementedError

    def output(self) -> SidecarTarget:
        return SidecarTarget(str(data_path("raw", "misc", self.filename)))

    def run(self) -> None:
        info = fetch(self.url, Path(self.output().path), stall_timeout=self.stall_seconds(), validate=self.validate)
        self.set_status_message(f"{info['rows']} {self.counted}, version {info['version']}")


class DownloadZones(MiscDownload):
    """Download the zone lookup CSV into ``{data_dir}/raw/misc/`` and check its header and rows."""

    url = luigi.Parameter(default=DEFAULT_ZONES_URL, description="the TLC's taxi zone lookup CSV")
    name_template = "Download taxi zones"
    filename, counted, validate = "taxi_zone_lookup.csv", "zones", staticmethod(validate_zones)


def validate_shapes(path: Path, source: str) -> int:
    """A readable zone shapefile (zip) with LocationIDs in EPSG:2263; returns its zone count."""
    from luigi_tasks.zone_index import read_zones  # shapely and pyproj: only when shapes are fetched

    reject_error_page(path, source, "the zone shapefile (zip)")
    return len(read_zones(path)[0])


class DownloadZoneShapes(MiscDownload):
    """Download the TLC's taxi zone shapefile (a zip) into ``{data_dir}/raw/misc/``; 2009-2010 yellow
    months need it to place their coordinates in zones."""

    url = luigi.Parameter(default=DEFAULT_SHAPES_URL, description="the TLC's taxi zone shapefile (zip)")
    name_template = "Download taxi zone shapes"
    filename, counted, validate = "taxi_zones.zip", "zone shapes", staticmethod(validate_shapes)


class LoadZones(PipelineTask):
    """Replace table ``taxi_zones`` (location_id, borough, zone, service_zone) in one transaction."""

    block = luigi.Parameter(default=DEFAULT_BLOCK, description="connection block in config/blocks.yaml")
    table = luigi.Parameter(default="taxi_zones")
    name_template = "Load taxi zones"

    def requires(self) -> DownloadZones:
        return DownloadZones()

    def output(self) -> BlockPostgresTarget:
        parse_table_name(self.table)
        version = read_sidecar(Path(self.input().path)).get("version", "")
        return BlockPostgresTarget(SqlAlchemyConnector.load(self.block), self.table, f"zones:{self.table}:{version}")

    def run(self) -> None:
        target = self.output()
        name = sql.Identifier(*parse_table_name(self.table))
        # Bounded waits: a lock on the zones table held elsewhere, or the server stuck, fails the attempt.
        conn = session_timeouts(target.block.psycopg2_connect(), 300, self.time_left())
        try:
            target.create_marker_table()
            # The published file mixes line endings (COPY refuses that): re-render its 265 rows cleanly.
            with open(self.input().path, newline="", encoding="utf-8") as fh:
                clean = io.StringIO()
                csv.writer(clean, lineterminator="\n").writerows(csv.reader(fh))
                clean.seek(0)
            with conn.cursor() as cur:
                cur.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(name))
                cur.execute(sql.SQL("CREATE TABLE {} (location_id integer PRIMARY KEY, borough text, zone text, "
                                    "service_zone text)").format(name))
                cur.copy_expert(sql.SQL("COPY {} FROM STDIN WITH (FORMAT csv, HEADER true)")
                                .format(name).as_string(conn), clean)
                rows = cur.rowcount
            target.replace(conn)
            conn.commit()
        except psycopg2.Error as exc:
            raise database_error(f"loading {self.table} failed", exc) from exc
        finally:
            conn.close()
        print(f"loaded {rows} zones into {self.table}")
