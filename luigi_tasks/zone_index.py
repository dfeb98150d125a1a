"""Taxi zones from coordinates, on a plain PostgreSQL: point-in-polygon in the converter, vectorised.

The 2009-2010 yellow files give WGS84 longitude/latitude instead of zone ids. The TLC's zone
shapefile (``taxi_zones.zip``: 263 polygons in EPSG:2263, New York Long Island State Plane,
US feet) is read with ``pyshp`` (pure Python, no GDAL to install; the file is small), points
are projected with ``pyproj`` and tested with ``shapely`` 2.

Speed: a 2009 month is 13-16 million trips, 26-32 million points. Plain STRtree queries do
about 0.5 million points/s on one core. Here a grid of 250-foot cells over the zones is
classified once: a cell inside one zone answers its points directly, a cell outside every
zone answers "none", and only points in the cells a boundary crosses (about 15% of a
realistic sample) are tested exactly, against the few polygons that cross their cell, with
``shapely.contains_xy`` on prepared polygons. Measured on one core: about 14 million points/s
for the lookup and 8 million/s for the projection; the converter's threads split the batches.
The result is the same as testing every point with ``shapely.contains`` (tested on 100,000
random points): a point on a zone's edge, at 0/0, in the water or outside the city has no zone.

The grid (a few seconds to classify) is kept beside the shapefile, keyed by its content.
"""
from __future__ import annotations

import io
import threading
import zipfile
from pathlib import Path

import numpy as np
import shapefile
import shapely
from pyproj import Transformer
from shapely.geometry import shape

from luigi_tasks.errors import PermanentError
from luigi_tasks.files import atomic_file, file_identity

CELL_FEET = 250.0
EXPECTED_CRS = "NAD_1983_StatePlane_New_York_Long_Island"   # EPSG:2263 as the .prj names it

# One transformer, used by one thread at a time: a PROJ context must not be used by two threads at once,
# and one kept per thread crashes the process when its thread ends (glibc "unaligned tcache chunk" when the
# converter's thread pool shuts down; seen with pyproj 3.7). Projection is the cheap part (8 million
# points/s): serialising it costs the converter's two threads little.
_transformer: Transformer | None = None
_projection_lock = threading.Lock()


def _to_state_plane(lon: np.ndarray, lat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    global _transformer
    with _projection_lock:
        if _transformer is None:
            _transformer = Transformer.from_crs(4326, 2263, always_xy=True)
        return _transformer.transform(lon, lat)


def read_zones(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """The polygons and their LocationIDs from the TLC's zip (or a directory holding the .shp)."""
    label = str(path)
    try:
        if path.is_dir():
            reader = shapefile.Reader(str(next(path.glob("*.shp"))))
            prj = next(path.glob("*.prj")).read_text(errors="replace")
        else:
            with zipfile.ZipFile(path) as zf:
                names = {Path(n).suffix.lower(): n for n in zf.namelist() if not n.startswith("__MACOSX")}
                missing = [s for s in (".shp", ".shx", ".dbf", ".prj") if s not in names]
                if missing:
                    raise PermanentError(f"{label}: the zone shapefile lacks its {', '.join(missing)} file(s)")
                reader = shapefile.Reader(shp=io.BytesIO(zf.read(names[".shp"])),
                                          shx=io.BytesIO(zf.read(names[".shx"])),
                                          dbf=io.BytesIO(zf.read(names[".dbf"])))
                prj = zf.read(names[".prj"]).decode(errors="replace")
        if EXPECTED_CRS not in prj:
            raise PermanentError(f"{label}: the zones are not in EPSG:2263 (its .prj says {prj[:60]!r})")
        fields = [f[0] for f in reader.fields[1:]]
        if "LocationID" not in fields:
            raise PermanentError(f"{label}: the zone shapefile has no LocationID field (fields: {', '.join(fields)})")
        polygons, ids = [], []
        for record in reader.iterShapeRecords():
            if record.shape.shapeType not in (shapefile.POLYGON, shapefile.POLYGONZ, shapefile.POLYGONM):
                raise PermanentError(f"{label}: zone {record.record['LocationID']} is not a polygon")
            polygons.append(shape(record.shape.__geo_interface__))
            ids.append(int(record.record["LocationID"]))
    except (zipfile.BadZipFile, shapefile.ShapefileException, StopIteration, KeyError, ValueError) as exc:
        raise PermanentError(f"{label} is not a readable zone shapefile: {exc}") from exc
    if len(polygons) < 250:
        raise PermanentError(f"{label}: {len(polygons)} zones; the TLC's shapefile has 263")
    return np.array(polygons, dtype=object), np.array(ids, dtype=np.int32)


class ZoneIndex:
    """LocationID of WGS84 points: ``index.zones(lon, lat) -> int32 array`` (-1: no zone)."""

    def __init__(self, polygons: np.ndarray, ids: np.ndarray, grid: dict[str, np.ndarray] | None = None) -> None:
        self.polygons, self.ids = polygons, ids
        shapely.prepare(self.polygons)
        self.grid = grid or self._classify()
        self.x0, self.y0 = float(self.grid["origin"][0]), float(self.grid["origin"][1])
        self.nx, self.ny = int(self.grid["shape"][0]), int(self.grid["shape"][1])

    @classmethod
    def load(cls, path: Path) -> ZoneIndex:
        """The index of the shapefile at ``path``, its grid read from beside it when it was built before."""
        polygons, ids = read_zones(path)
        cache = path.with_name(f".{path.name}.grid-{int(CELL_FEET)}.npz")
        key = np.frombuffer(repr(sorted(file_identity(path).items())).encode(), dtype=np.uint8)
        grid = None
        if cache.exists():
            try:
                with np.load(cache) as saved:
                    if np.array_equal(saved["key"], key):
                        grid = {k: saved[k] for k in saved.files if k != "key"}
            except (OSError, ValueError, KeyError):
                grid = None   # an unreadable cache is rebuilt
        index = cls(polygons, ids, grid)
        if grid is None:
            with atomic_file(cache) as tmp, open(tmp, "wb") as fh:
                np.savez(fh, key=key, **index.grid)
        return index

    def _classify(self) -> dict[str, np.ndarray]:
        """Each cell: inside one polygon (its index), outside all (-1), or crossed by edges (-2, with the
        polygons crossing it, in CSR form: ``starts``/``ends`` into ``candidates``). Classified a column
        of cells at a time: the cell boxes of the whole grid at once would hold about 200 MB."""
        tree = shapely.STRtree(self.polygons)
        xmin, ymin, xmax, ymax = shapely.total_bounds(self.polygons)
        nx, ny = int(np.ceil((xmax - xmin) / CELL_FEET)) + 1, int(np.ceil((ymax - ymin) / CELL_FEET)) + 1
        state = np.full(nx * ny, -1, np.int32)
        edge_cells, edge_polygons = [], []
        gy = np.arange(ny)
        for gx in range(nx):
            boxes = shapely.box(xmin + gx * CELL_FEET, ymin + gy * CELL_FEET,
                                xmin + (gx + 1) * CELL_FEET, ymin + (gy + 1) * CELL_FEET)
            cells, crossing = tree.query(boxes, predicate="intersects")
            inside_cells, inside = tree.query(boxes, predicate="within")
            column = state[gx * ny:(gx + 1) * ny]
            column[np.unique(cells)] = -2
            column[inside_cells] = inside
            edge = column[cells] == -2
            edge_cells.append(cells[edge] + gx * ny)
            edge_polygons.append(crossing[edge])
        cells, crossing = np.concatenate(edge_cells), np.concatenate(edge_polygons)
        order = np.argsort(cells, kind="stable")
        cells, crossing = cells[order], crossing[order]
        everything = np.arange(nx * ny)
        return {"origin": np.array([xmin, ymin]), "shape": np.array([nx, ny]), "state": state,
                "starts": np.searchsorted(cells, everything), "ends": np.searchsorted(cells, everything, "right"),
                "candidates": crossing.astype(np.int32)}

    def polygon_of(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Index of the polygon containing each projected point (-1: none)."""
        grid = self.grid
        out = np.full(len(x), -1, np.int32)
        with np.errstate(invalid="ignore"):
            ix = np.floor((x - self.x0) / CELL_FEET)
            iy = np.floor((y - self.y0) / CELL_FEET)
        ok = np.isfinite(ix) & np.isfinite(iy) & (ix >= 0) & (ix < self.nx) & (iy >= 0) & (iy < self.ny)
        cell = np.where(ok, ix, 0).astype(np.int64) * self.ny + np.where(ok, iy, 0).astype(np.int64)
        state = np.where(ok, grid["state"][cell], -1)
        inner = state >= 0
        out[inner] = state[inner]
        edge = np.nonzero(state == -2)[0]
        if len(edge):
            starts, ends = grid["starts"][cell[edge]], grid["ends"][cell[edge]]
            counts = ends - starts
            point = np.repeat(edge, counts)
            candidate = grid["candidates"][np.repeat(starts, counts) + np.arange(counts.sum())
                                           - np.repeat(np.cumsum(counts) - counts, counts)]
            order = np.argsort(candidate, kind="stable")
            candidate, point = candidate[order], point[order]
            bounds = np.searchsorted(candidate, np.arange(len(self.polygons) + 1))
            for polygon in np.nonzero(np.diff(bounds))[0]:
                points = point[bounds[polygon]:bounds[polygon + 1]]
                out[points[shapely.contains_xy(self.polygons[polygon], x[points], y[points])]] = polygon
        return out

    def zones(self, lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
        """LocationID of each WGS84 point (-1: at 0/0, in the water, outside every zone, or missing)."""
        lon = np.asarray(lon, dtype=np.float64)
        lat = np.asarray(lat, dtype=np.float64)
        sane = np.isfinite(lon) & np.isfinite(lat) & (np.abs(lon) <= 180) & (np.abs(lat) <= 90) & (lon != 0)
        x, y = _to_state_plane(np.where(sane, lon, 0.0), np.where(sane, lat, 0.0))
        x, y = np.where(sane, x, np.nan), np.where(sane, y, np.nan)
        polygon = self.polygon_of(np.asarray(x), np.asarray(y))
        return np.where(polygon >= 0, self.ids[np.maximum(polygon, 0)], -1).astype(np.int32)
