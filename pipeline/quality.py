"""Quality of the black-soil pieces from rasters: zonal statistics, slope, grades and classes.

A survey holds rasters of black-soil layer thickness (黑土层厚度, cm), soil organic matter (有机质,
g/kg) and a DEM (m), in any CRS. :func:`add_quality` puts their statistics on every piece of the
``HTGDTB`` layer and :func:`quality_summary` sums them per county and soil group:

- :func:`zonal_statistics` gives the coverage-weighted mean, min and max of each piece and the
  share of the piece with data. Pieces are reprojected to the raster's CRS (the raster is never
  warped: warping resamples the values the survey measured), the window of the raster under the
  pieces is read once, nodata (the file's, or the config's ``nodata``) and NaN are masked, and all
  pieces of a window go to exactextract in one call; rasters on one grid (thickness and organic
  matter, as a rule) share that call.
- :func:`slope_degrees` computes slope on the DEM's own grid by Horn's method, with the ground size
  of a cell in metres: per row (latitude) on the ellipsoid for a DEM in geographic coordinates, and
  from geodesic distances for a projected one (so a Web-Mercator DEM gives true slopes too). The
  slope grade follows GDPDJB (耕地坡度级别): 1 ≤2°, 2 2–6°, 3 6–15°, 4 15–25°, 5 >25°.
- :func:`thickness_class` and :func:`organic_matter_grade` classify the means by the config's
  thresholds (``quality:`` block).

Why exactextract rather than rasterio alone: ``rasterio.features.rasterize`` / ``rasterio.mask``
count a cell wholly or not at all, by its centre or all-touched. A survey piece of a few hundred
m² against 30 m cells (900 m²) covers parts of one to four cells: centre sampling then gives a
value from a cell the piece barely touches, or no value at all when no centre falls inside, and
all-touched weights a sliver of a cell as much as a whole one. exactextract computes the exact
fraction of every cell the polygon covers and weights by it, so a piece half over a cell counts
half of it and the statistics of small pieces are right. It also runs in C++ over all pieces in
one call; the pieces go in as WKB and the results come back into numpy arrays by row number
(:class:`_ArrayWriter`), never through GeoJSON or a Python loop of ours over the pieces.
Behaviour relied on (and tested): NaN cells are nodata; a piece outside the raster or over nodata
only gets no mean/min/max (null here) and a zero count; the coverage count is in cells, and the
results may come back in any order, so every feature carries its row number.
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import rasterio
import shapely
from affine import Affine
from exactextract import exact_extract
from exactextract.feature import Feature, FeatureSource
from exactextract.operation import Operation
from exactextract.raster import NumPyRasterSource
from exactextract.writer import Writer
from pyproj import CRS, Geod, Transformer
from pyproj.exceptions import CRSError
from rasterio.errors import RasterioError
from rasterio.windows import Window

from .config import RASTER_PREFIXES, QualityOptions, RasterSpec
from .errors import InputError
from .qa import QALog, as_text

logger = logging.getLogger(__name__)

__all__ = [
    "SLOPE_BREAKS",
    "add_quality",
    "organic_matter_grade",
    "quality_fields",
    "quality_rows",
    "quality_summary",
    "quality_table",
    "slope_degrees",
    "slope_grade",
    "thickness_class",
    "zonal_statistics",
]

#: GDPDJB slope grades: 1 ≤2°, 2 (2°, 6°], 3 (6°, 15°], 4 (15°, 25°], 5 >25° (三调 standard)
SLOPE_BREAKS = (2.0, 6.0, 15.0, 25.0)
#: field prefix of the slope (坡度) computed from the DEM
SLOPE_PREFIX = "PD"
#: the statistics written per raster: mean (平均), min, max, coverage share (覆盖率)
STAT_SUFFIXES = ("PJ", "MIN", "MAX", "FGL")
#: cells read into memory at once; pieces spread wider are processed in tiles of about this size
MAX_WINDOW_CELLS = 4_000_000
#: a piece covered to less than this share counts as partly covered (logged)
_FULL_SHARE = 1 - 1e-6
_ROW = "row"


def ordered_rasters(names: object) -> list[str]:
    """Raster names in archive order: thickness, organic matter, DEM, then the others as given."""
    names = list(names)
    known = list(RASTER_PREFIXES)
    return sorted(
        names, key=lambda n: (known.index(n) if n in known else len(known), names.index(n))
    )


def raster_prefix(name: str) -> str:
    """The field prefix of a raster named ``name`` in ``inputs.rasters`` (HTHD, YJZ, GC or
    the name in upper case)."""
    return RASTER_PREFIXES.get(name, name.upper())


# --------------------------------------------------------------------------- raster access


@dataclass(frozen=True)
class OpenRaster:
    """An open raster band: dataset, band number, CRS, grid and the nodata rule."""

    ds: rasterio.io.DatasetReader
    band: int
    crs: CRS
    transform: Affine
    nodata: float | None  # the config's override; None: the file's own mask
    where: str

    @property
    def shape(self) -> tuple[int, int]:
        return self.ds.height, self.ds.width

    @property
    def cell_area(self) -> float:
        """Area of one cell in the raster's CRS units (m², or degree² for a geographic one)."""
        return abs(self.transform.a * self.transform.e)


@contextlib.contextmanager
def open_raster(
    path: str | Path,
    *,
    band: int = 1,
    nodata: float | None = None,
    crs: str | None = None,
    what: str = "raster",
) -> Iterator[OpenRaster]:
    """Open one band of a GeoTIFF/COG (or any raster GDAL reads), checking what the survey needs.

    Parameters
    ----------
    path : path
        The raster file.
    band : int
        1-based band number.
    nodata : float, optional
        Value to treat as nodata instead of the file's own (NaN is always nodata).
    crs : str, optional
        The raster's CRS where the file has none or a wrong one (e.g. ``EPSG:4490``).
    what : str
        Names the raster in messages (``inputs.rasters.dem``).

    Raises
    ------
    InputError
        Missing or unreadable file, no such band, no CRS, a rotated or south-up grid.
    """
    path = Path(path)
    where = f"{path} ({what})"
    if not path.exists():
        raise InputError(f"{where}: raster file not found")
    try:
        ds = rasterio.open(path)
    except RasterioError as err:
        raise InputError(f"{where}: cannot open the raster ({_short(err)})") from err
    with ds:
        if not 1 <= band <= ds.count:
            raise InputError(f"{where}: no band {band} (the raster has {ds.count} band(s))")
        if crs is not None:
            try:
                rcrs = CRS.from_user_input(crs)
            except CRSError as err:
                raise InputError(f"{where}: bad crs override {crs!r}") from err
        elif ds.crs is None:
            raise InputError(
                f"{where}: the raster has no coordinate reference system; set its crs in the config"
            )
        else:
            rcrs = CRS.from_user_input(ds.crs.to_wkt())
        t = ds.transform
        if t.b != 0 or t.d != 0 or t.a <= 0 or t.e >= 0:
            raise InputError(
                f"{where}: rotated or south-up grids are not supported "
                f"(geotransform {tuple(t)[:6]})"
            )
        yield OpenRaster(ds, band, rcrs, t, nodata, where)


def read_window(raster: OpenRaster, row0: int, col0: int, rows: int, cols: int) -> np.ndarray:
    """Read a window as float64 with NaN for nodata (file mask or the config's value), scaled
    by the band's scale/offset where the file sets them."""
    ds = raster.ds
    window = Window(col0, row0, cols, rows)
    try:
        if raster.nodata is None:
            data = ds.read(raster.band, window=window, masked=True, out_dtype="float64")
            values = np.ma.filled(data, np.nan)
        else:
            values = ds.read(raster.band, window=window, out_dtype="float64")
            values[values == raster.nodata] = np.nan
    except RasterioError as err:
        raise InputError(f"{raster.where}: cannot read the raster ({_short(err)})") from err
    scale = ds.scales[raster.band - 1]
    offset = ds.offsets[raster.band - 1]
    if scale != 1 or offset != 0:
        values = values * scale + offset
    return values


def _short(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return text[0] if text else type(err).__name__


# --------------------------------------------------------------------------- exactextract glue


class _WkbFeature(Feature):
    """One piece as exactextract sees it: WKB geometry and its row number."""

    def __init__(self, wkb: bytes, row: int) -> None:
        Feature.__init__(self)
        self._wkb = wkb
        self._row = row

    def geometry(self) -> bytes:
        return self._wkb

    def set_geometry_format(self) -> str:
        return "wkb"

    def get(self, name: str) -> int:
        if name != _ROW:
            raise KeyError(name)
        return self._row

    def fields(self) -> list[str]:
        return [_ROW]


class _WkbSource(FeatureSource):
    """Pieces handed to exactextract as WKB (serialised at once by shapely), with row numbers."""

    def __init__(self, wkbs: np.ndarray, rows: np.ndarray, srs_wkt: str) -> None:
        super().__init__()
        self._wkbs = wkbs
        self._rows = rows
        self._srs_wkt = srs_wkt

    def count(self) -> int:
        return len(self._wkbs)

    def __iter__(self) -> Iterator[_WkbFeature]:
        return map(_WkbFeature, self._wkbs, self._rows.tolist())

    def srs_wkt(self) -> str:
        return self._srs_wkt


class _Sink(Feature):
    """Receives one result feature's fields from exactextract."""

    def __init__(self) -> None:
        Feature.__init__(self)
        self.values: dict[str, object] = {}

    def set(self, name: str, value: object) -> None:
        self.values[name] = value

    def get(self, name: str) -> object:
        return self.values[name]

    def fields(self) -> list[str]:
        return list(self.values)

    def set_geometry(self, _: object) -> None:
        pass

    def set_geometry_format(self) -> str:
        return "wkb"


class _ArrayWriter(Writer):
    """Writes exactextract's results into preallocated arrays at each feature's row; a statistic
    exactextract leaves unset (min/max of a piece without data) stays NaN."""

    def __init__(self, arrays: dict[str, np.ndarray]) -> None:
        super().__init__()
        self.arrays = arrays
        self._sink = _Sink()  # one for all features: emptied after each

    def add_operation(self, op: Operation) -> None:
        pass

    def add_column(self, name: str) -> None:
        pass

    def write(self, feature: Feature) -> None:
        values = self._sink.values
        feature.copy_to(self._sink)
        row = values.pop(_ROW)
        arrays = self.arrays
        for key, value in values.items():
            arrays[key][row] = value
        values.clear()

    def features(self) -> dict[str, np.ndarray]:
        return self.arrays


#: statistics of a raster's values, and of the slope computed from a DEM
_VALUE_STATS = ("mean", "min", "max", "count")
_SLOPE_STATS = ("mean",)
#: exactextract processing order; the whole window is in memory, so either reads it once
_STRATEGY = "feature-sequential"


def _extract(
    layers: dict[str, tuple[np.ndarray, tuple[str, ...]]],
    transform: Affine,
    wkbs: np.ndarray,
    rows: np.ndarray,
    arrays: dict[str, np.ndarray],
    srs_wkt: str,
) -> None:
    """Coverage-weighted statistics of each layer (key → values on one grid, statistics) under
    every piece, in one pass over the pieces; results go to ``arrays["<key>_<stat>"]``."""
    h, w = next(iter(layers.values()))[0].shape
    xmin, ymax = transform.c, transform.f
    xmax, ymin = xmin + w * transform.a, ymax + h * transform.e
    # the sources must stay referenced here (the operations hold them only on the C++ side)
    # and need distinct names: exactextract shares reads between sources of the same name
    sources = {
        key: NumPyRasterSource(
            values, xmin, ymin, xmax, ymax, nodata=np.nan, srs_wkt=srs_wkt, name=key
        )
        for key, (values, _) in layers.items()
    }
    ops = [
        Operation(stat, f"{key}_{stat}", sources[key])
        for key, (_, stats) in layers.items()
        for stat in stats
    ]
    exact_extract(
        None,
        _WkbSource(wkbs, rows, srs_wkt),
        ops,
        include_cols=[_ROW],
        strategy=_STRATEGY,
        output=_ArrayWriter(arrays),
    )
    del sources


# --------------------------------------------------------------------------- zonal statistics


def zonal_statistics(
    geoms: np.ndarray | gpd.GeoSeries,
    crs: object,
    raster: RasterSpec | str | Path,
    *,
    slope: bool = False,
    name: str = "raster",
    max_window_cells: int = MAX_WINDOW_CELLS,
) -> pd.DataFrame:
    """Exact coverage-weighted statistics of a raster under each polygon.

    Parameters
    ----------
    geoms : array of polygons or GeoSeries
        The pieces, in ``crs``; null or empty geometries get nulls.
    crs : CRS-like
        The CRS of ``geoms`` (they are reprojected to the raster's CRS).
    raster : RasterSpec or path
        The raster (band, nodata and CRS override from the spec).
    slope : bool
        The raster is a DEM: also compute the mean slope (degrees) under each polygon.
    name : str
        Names the raster in messages.
    max_window_cells : int
        Largest window read at once; pieces spread wider are processed in tiles.

    Returns
    -------
    DataFrame
        One row per polygon, in order: ``mean``, ``min``, ``max`` (NaN where the polygon has no
        cell with data), ``share`` (the share of the polygon's area over cells with data, 0–1)
        and, with ``slope``, ``slope_mean``.

    Raises
    ------
    InputError
        The raster cannot be opened or read (see :func:`open_raster`).

    Examples
    --------
    >>> stats = zonal_statistics(pieces.geometry, pieces.crs, "thickness.tif")  # doctest: +SKIP
    >>> stats[["mean", "share"]].describe()  # doctest: +SKIP
    """
    spec = raster if isinstance(raster, RasterSpec) else RasterSpec(path=Path(raster))
    return _grid_statistics(geoms, crs, [(spec, slope, name)], max_window_cells)[0]


def _grid_statistics(
    geoms: np.ndarray | gpd.GeoSeries,
    crs: object,
    rasters: list[tuple[RasterSpec, bool, str]],
    max_window_cells: int = MAX_WINDOW_CELLS,
) -> list[pd.DataFrame]:
    """:func:`zonal_statistics` of several rasters on one grid (the same CRS, cells and size:
    :func:`raster_grid`), in one exactextract pass: the pieces are reprojected, tiled and
    handed over once for all of them. One frame per raster, in order."""
    if isinstance(geoms, gpd.GeoSeries):
        geoms = geoms.to_numpy()
    geoms = np.asarray(geoms, dtype=object)
    n = len(geoms)
    kinds = [(f"r{i}", slope) for i, (_, slope, _) in enumerate(rasters)]
    arrays = {f"{k}_{s}": np.full(n, np.nan) for k, _ in kinds for s in _VALUE_STATS}
    arrays.update(
        {f"{k}s_{s}": np.full(n, np.nan) for k, slope in kinds if slope for s in _SLOPE_STATS}
    )
    for k, _ in kinds:
        arrays[f"{k}_count"][:] = 0.0
    area = np.zeros(n)
    with contextlib.ExitStack() as stack:
        opened = [
            stack.enter_context(
                open_raster(spec.path, band=spec.band, nodata=spec.nodata, crs=spec.crs, what=what)
            )
            for spec, _, what in rasters
        ]
        r = opened[0]
        present = ~shapely.is_missing(geoms)
        present[present] = ~shapely.is_empty(geoms[present])
        idx = np.flatnonzero(present)
        local = _to_crs(geoms[idx], CRS.from_user_input(crs), r.crs)
        bounds = shapely.bounds(local)
        # a piece that cannot be expressed in the raster's CRS (far outside its area) has no data
        finite = np.isfinite(bounds).all(axis=1)
        idx, local, bounds = idx[finite], local[finite], bounds[finite]
        area[idx] = shapely.area(local)
        wkbs = shapely.to_wkb(local)
        srs_wkt = r.crs.to_wkt()
        inv = ~r.transform
        col0, row0 = inv @ (bounds[:, 0], bounds[:, 3])
        col1, row1 = inv @ (bounds[:, 2], bounds[:, 1])
        for tile in _tiles(col0, row0, col1, row1, max_window_cells):
            win = _window(col0[tile], row0[tile], col1[tile], row1[tile], r.shape)
            if win is None:
                continue  # the raster does not reach these pieces: no data
            top, left, rows, cols = win
            transform = r.transform @ Affine.translation(left, top)
            layers = {}
            for (key, slope), raster in zip(kinds, opened, strict=True):
                values = read_window(raster, top, left, rows, cols)
                layers[key] = (values, _VALUE_STATS)
                if slope:
                    layers[f"{key}s"] = (slope_degrees(values, transform, raster.crs), _SLOPE_STATS)
            _extract(layers, transform, wkbs[tile], idx[tile], arrays, srs_wkt)
        cell_area = r.cell_area
    out = []
    for key, slope in kinds:
        with np.errstate(invalid="ignore", divide="ignore"):
            share = np.clip(arrays[f"{key}_count"] * cell_area / area, 0.0, 1.0)
        share[area <= 0] = 0.0
        frame = pd.DataFrame(
            {
                "mean": arrays[f"{key}_mean"],
                "min": arrays[f"{key}_min"],
                "max": arrays[f"{key}_max"],
                "share": share,
            }
        )
        if slope:
            frame["slope_mean"] = arrays[f"{key}s_mean"]
        # exactextract's mean of a piece without data is NaN already; min/max stay NaN too
        out.append(frame)
    return out


def raster_grid(
    spec: RasterSpec, what: str = "raster"
) -> tuple[str, tuple[float, ...], tuple[int, int]]:
    """What decides whether two rasters can be read together: CRS, geotransform and size."""
    with open_raster(spec.path, band=spec.band, nodata=spec.nodata, crs=spec.crs, what=what) as r:
        return r.crs.to_wkt(), tuple(r.transform)[:6], r.shape


def _to_crs(geoms: np.ndarray, src: CRS, dst: CRS) -> np.ndarray:
    if src.equals(dst):
        return geoms
    return gpd.GeoSeries(geoms, crs=src).to_crs(dst).to_numpy()


def _tiles(
    col0: np.ndarray, row0: np.ndarray, col1: np.ndarray, row1: np.ndarray, budget: int
) -> list[np.ndarray]:
    """Groups of pieces whose window fits in about ``budget`` cells (by the piece's centre)."""
    n = len(col0)
    if n == 0:
        return []
    width = col1.max() - col0.min() + 3
    height = row1.max() - row0.min() + 3
    if width * height <= budget:
        return [np.arange(n)]
    size = max(16.0, math.sqrt(budget) - 2)
    tx = np.floor(((col0 + col1) / 2 - col0.min()) / size).astype(np.int64)
    ty = np.floor(((row0 + row1) / 2 - row0.min()) / size).astype(np.int64)
    key = ty * (int(tx.max()) + 1) + tx
    order = np.argsort(key, kind="stable")
    cuts = np.flatnonzero(np.diff(key[order])) + 1
    return np.split(order, cuts)


def _window(
    col0: np.ndarray, row0: np.ndarray, col1: np.ndarray, row1: np.ndarray, shape: tuple[int, int]
) -> tuple[int, int, int, int] | None:
    """(top, left, rows, cols) of the raster under the pieces, one cell of margin (for the slope's
    neighbours), clipped to the raster; None where the pieces lie wholly outside it."""
    height, width = shape
    left = max(0, math.floor(col0.min()) - 1)
    right = min(width, math.ceil(col1.max()) + 1)
    top = max(0, math.floor(row0.min()) - 1)
    bottom = min(height, math.ceil(row1.max()) + 1)
    if right <= left or bottom <= top:
        return None
    return top, left, bottom - top, right - left


# --------------------------------------------------------------------------- slope


def slope_degrees(dem: np.ndarray, transform: Affine, crs: object) -> np.ndarray:
    """Slope in degrees of a DEM grid by Horn's method, with cell sizes in metres.

    Parameters
    ----------
    dem : 2-D array
        Elevations in metres, NaN for nodata; row 0 is the north edge.
    transform : Affine
        The grid's geotransform (north-up, no rotation).
    crs : CRS-like
        The grid's CRS. Geographic: the ground size of a cell is computed per row from the
        ellipsoid (meridional radius M and N·cos φ); projected: from geodesic distances between
        neighbouring cell centres (sampled every few cells), so projection scale is accounted for.

    Returns
    -------
    ndarray
        Slope in degrees, NaN where the DEM has no data. A neighbour without data takes the
        centre cell's value (as ``gdaldem slope -compute_edges``), so the slope covers the DEM.

    Examples
    --------
    >>> z = np.add.outer(-np.arange(5.0), np.zeros(5)) * 10  # 10 m drop per 100 m cell south
    >>> slope_degrees(z, Affine(100, 0, 0, 0, -100, 500), "EPSG:32651")[2, 2].round(2)
    5.71
    """
    z = np.asarray(dem, dtype=np.float64)
    rows, cols = z.shape
    crs = CRS.from_user_input(crs)
    dx_m, dy_m = cell_size_metres(transform, crs, (rows, cols))
    pad = np.pad(z, 1, constant_values=np.nan)

    def nb(dr: int, dc: int) -> np.ndarray:
        v = pad[1 + dr : 1 + dr + rows, 1 + dc : 1 + dc + cols]
        return np.where(np.isnan(v), z, v)

    a, b, c = nb(-1, -1), nb(-1, 0), nb(-1, 1)
    d, f = nb(0, -1), nb(0, 1)
    g, h, i = nb(1, -1), nb(1, 0), nb(1, 1)
    dzdx = ((c + 2 * f + i) - (a + 2 * d + g)) / (8 * dx_m)
    dzdy = ((g + 2 * h + i) - (a + 2 * b + c)) / (8 * dy_m)
    return np.degrees(np.arctan(np.hypot(dzdx, dzdy)))


def cell_size_metres(
    transform: Affine, crs: CRS, shape: tuple[int, int], *, step: int = 32
) -> tuple[np.ndarray, np.ndarray]:
    """Ground length (m) of one cell step along x and along y, broadcastable to ``shape``.

    Geographic CRS: per row, from the latitude of the row's centre, on the CRS's ellipsoid.
    Projected CRS: geodesic distance between the edges of a cell, sampled every ``step`` cells
    and taken over the block around each sample (projection scale varies slowly).
    """
    rows, cols = shape
    ell = crs.ellipsoid
    a = ell.semi_major_metre if ell is not None else 6378137.0
    rf = ell.inverse_flattening if ell is not None else 298.257222101
    if crs.is_geographic:
        unit = crs.axis_info[0].unit_conversion_factor  # radians per unit (degree)
        f = 1 / rf if rf else 0.0
        e2 = f * (2 - f)
        lat = np.radians(transform.f + transform.e * (np.arange(rows) + 0.5))
        w = np.sqrt(1 - e2 * np.sin(lat) ** 2)
        meridional = a * (1 - e2) / w**3  # metres per radian of latitude
        normal = a / w  # N: metres per radian of longitude is N·cos φ
        dx = normal * np.cos(lat) * abs(transform.a) * unit
        dy = meridional * abs(transform.e) * unit
        return dx[:, None], dy[:, None]
    r_s = np.unique(np.r_[np.arange(0, rows, step), rows - 1])
    c_s = np.unique(np.r_[np.arange(0, cols, step), cols - 1])
    rr, cc = np.meshgrid(r_s + 0.5, c_s + 0.5, indexing="ij")
    x, y = transform @ (cc.ravel(), rr.ravel())
    hx, hy = abs(transform.a) / 2, abs(transform.e) / 2
    to_geo = Transformer.from_crs(crs, crs.geodetic_crs, always_xy=True)
    geod = Geod(a=a, rf=rf) if rf else Geod(a=a, b=a)
    lon_w, lat_w = to_geo.transform(x - hx, y)
    lon_e, lat_e = to_geo.transform(x + hx, y)
    lon_n, lat_n = to_geo.transform(x, y + hy)
    lon_s, lat_s = to_geo.transform(x, y - hy)
    dx_s = geod.inv(lon_w, lat_w, lon_e, lat_e)[2].reshape(rr.shape)
    dy_s = geod.inv(lon_s, lat_s, lon_n, lat_n)[2].reshape(rr.shape)
    ri = np.clip(np.searchsorted(r_s, np.arange(rows) - step / 2), 0, len(r_s) - 1)
    ci = np.clip(np.searchsorted(c_s, np.arange(cols) - step / 2), 0, len(c_s) - 1)
    return dx_s[np.ix_(ri, ci)], dy_s[np.ix_(ri, ci)]


# --------------------------------------------------------------------------- grades and classes


def _classes(values: object, breaks: tuple[float, ...]) -> np.ndarray:
    """0-based class of each value by ascending ``breaks`` (a value on a break belongs to the
    class below it, as in "grade 1 ≤2°"); -1 where the value is missing."""
    v = np.asarray(values, dtype=np.float64)
    out = np.searchsorted(np.asarray(breaks, dtype=np.float64), v, side="left")
    return np.where(np.isnan(v), -1, out)


def _nullable(codes: np.ndarray) -> pd.arrays.IntegerArray:
    return pd.array(np.where(codes < 0, pd.NA, codes), dtype="Int32")


def slope_grade(degrees: object) -> pd.arrays.IntegerArray:
    """GDPDJB slope grade 1–5 (≤2°, 2–6°, 6–15°, 15–25°, >25°); null where the slope is."""
    k = _classes(degrees, SLOPE_BREAKS)
    return _nullable(np.where(k < 0, -1, k + 1))


def thickness_class(cm: object, breaks: tuple[float, ...] = (30.0, 60.0)) -> pd.arrays.IntegerArray:
    """Black-soil layer thickness class: 1 thin (薄层), 2 medium (中层), 3 thick (厚层).

    With the default breaks: ≤30 cm thin, 30–60 cm medium, >60 cm thick; null where missing.
    """
    k = _classes(cm, breaks)
    return _nullable(np.where(k < 0, -1, k + 1))


def organic_matter_grade(
    g_per_kg: object, breaks: tuple[float, ...] = (6.0, 10.0, 20.0, 30.0, 40.0)
) -> pd.arrays.IntegerArray:
    """Organic-matter grade of the second soil census: 1 (>40 g/kg, richest) to 6 (≤6 g/kg).

    ``breaks`` ascend; the grade is ``len(breaks) + 1`` below the first and 1 above the last.
    """
    k = _classes(g_per_kg, breaks)
    return _nullable(np.where(k < 0, -1, len(breaks) + 1 - k))


# --------------------------------------------------------------------------- the quality stage


def add_quality(
    pieces: gpd.GeoDataFrame,
    rasters: dict[str, RasterSpec],
    options: QualityOptions,
    qa: QALog,
    progress: Callable[[str], None] | None = None,
) -> gpd.GeoDataFrame:
    """Add the raster statistics, slope, grades and classes to the ``HTGDTB`` pieces.

    Parameters
    ----------
    pieces : GeoDataFrame
        The archive's pieces (``DABH``, ``BSM``, ``MJ``, ``GDPDJB`` ...), in the working CRS.
    rasters : dict
        ``inputs.rasters``: name → :class:`~pipeline.config.RasterSpec`. ``thickness`` gives
        HTHD_* and HTHDJB, ``organic_matter`` YJZ_* and YJZJB, ``dem`` GC_* plus PD_PJ (mean
        slope, °) and PDJB; any other name ``<NAME>_PJ/_MIN/_MAX/_FGL``.
    options : QualityOptions
        Class thresholds.
    qa : QALog
        Receives pieces the rasters do not (fully) cover and parcels whose GDPDJB disagrees
        with the DEM.
    progress : callable, optional
        Called with a message per raster.

    Returns
    -------
    GeoDataFrame
        ``pieces`` with the quality fields added (same rows, same order).

    Raises
    ------
    InputError
        A raster cannot be opened or read.
    """
    out = pieces.copy()
    geoms = out.geometry.to_numpy()
    ids = piece_keys(out)
    names = ordered_rasters(rasters)
    # rasters on one grid (thickness and organic matter from one soil survey, as a rule) go
    # through exactextract together: the pieces are prepared and handed over once for them
    grids: dict[tuple, list[str]] = {}
    for name in names:
        grids.setdefault(raster_grid(rasters[name], f"inputs.rasters.{name}"), []).append(name)
    all_stats: dict[str, pd.DataFrame] = {}
    for members in grids.values():
        if progress is not None:
            listed = ", ".join(f"{n} ({rasters[n].path.name})" for n in members)
            progress(f"quality: {listed} under {len(out)} pieces")
        jobs = [(rasters[n], n == "dem", f"inputs.rasters.{n}") for n in members]
        all_stats.update(zip(members, _grid_statistics(geoms, out.crs, jobs), strict=True))
    for name in names:
        prefix = raster_prefix(name)
        stats = all_stats[name]
        for suffix, col, digits in zip(
            STAT_SUFFIXES, ("mean", "min", "max", "share"), (2, 2, 2, 4), strict=True
        ):
            out[f"{prefix}_{suffix}"] = stats[col].round(digits).to_numpy()
        _log_coverage(stats["share"].to_numpy(), ids, name, prefix, qa)
        if name == "thickness":
            out["HTHDJB"] = thickness_class(out["HTHD_PJ"], options.thickness_breaks)
        elif name == "organic_matter":
            out["YJZJB"] = organic_matter_grade(out["YJZ_PJ"], options.organic_matter_breaks)
        elif name == "dem":
            out[f"{SLOPE_PREFIX}_PJ"] = stats["slope_mean"].round(2).to_numpy()
            out["PDJB"] = slope_grade(out[f"{SLOPE_PREFIX}_PJ"])
            _check_slope_grades(out, qa)
    return out


def piece_keys(pieces: pd.DataFrame) -> np.ndarray:
    """``BSM/TRBM`` of each piece: names it in the QA log whatever the partitioning (DABH is
    numbered again when partitions are merged)."""
    if "BSM" not in pieces or "TRBM" not in pieces:
        return np.arange(len(pieces)).astype(str).astype(object)
    bsm = pieces["BSM"].astype(str).to_numpy().astype(str)
    trbm = pieces["TRBM"].astype(str).to_numpy().astype(str)
    return np.char.add(np.char.add(bsm, "/"), trbm).astype(object)


def _log_coverage(share: np.ndarray, ids: np.ndarray, name: str, prefix: str, qa: QALog) -> None:
    layer = f"rasters.{name}"
    none = share <= 0
    qa.add(
        layer,
        ids[none],
        "raster coverage",
        "piece outside the raster or over nodata only",
        f"{prefix} statistics left empty",
    )
    part = (share > 0) & (share < _FULL_SHARE)
    qa.add(
        layer,
        ids[part],
        "raster coverage",
        "piece partly outside the raster or over nodata",
        f"statistics from the covered part; share in {prefix}_FGL",
    )


def _check_slope_grades(pieces: gpd.GeoDataFrame, qa: QALog) -> None:
    """Compare each parcel's GDPDJB with the grade of the DEM's mean slope over its pieces
    (weighted by area with data) and log the parcels where they differ."""
    if "GDPDJB" not in pieces or len(pieces) == 0:
        return
    given = pd.to_numeric(pd.Series(as_text(pieces["GDPDJB"]), dtype=object), errors="coerce")
    weight = pieces["MJ"].to_numpy(float) * pieces["GC_FGL"].to_numpy(float)
    slope = pieces[f"{SLOPE_PREFIX}_PJ"].to_numpy(float)
    ok = np.isfinite(slope) & (weight > 0)
    frame = pd.DataFrame(
        {
            "BSM": pieces["BSM"].to_numpy(),
            "given": given.to_numpy(),
            "w": np.where(ok, weight, 0.0),
            "wv": np.where(ok, weight * np.where(ok, slope, 0.0), 0.0),
        }
    )
    per = frame.groupby("BSM", sort=True).agg(
        given=("given", "first"), w=("w", "sum"), wv=("wv", "sum")
    )
    per = per[(per["w"] > 0) & per["given"].isin([1, 2, 3, 4, 5])]
    grade = np.asarray(slope_grade(per["wv"] / per["w"]), dtype=np.float64)
    per = per.assign(grade=grade)
    bad = per[per["grade"] != per["given"]]
    for (g, k), rows in bad.groupby(["given", "grade"], sort=True):
        qa.add(
            "parcels",
            rows.index.to_numpy(),
            "slope grade",
            f"GDPDJB {int(g)}, but the DEM's mean slope over its black-soil pieces is grade "
            f"{int(k)}",
            "GDPDJB kept; PDJB holds the DEM's grade",
        )


# --------------------------------------------------------------------------- summary

_CLASS_FIELDS = {"thickness": ("HTHDJB", 3), "organic_matter": ("YJZJB", 6), "dem": ("PDJB", 5)}


def quality_summary(
    pieces: pd.DataFrame, rasters: dict[str, RasterSpec] | list[str], names: dict[str, str]
) -> pd.DataFrame:
    """Quality per county and soil group (TL), with county totals (TL = 合计) and a grand total.

    Areas are TBDLMJ (图斑地类面积, m², summed to the cent). Per raster: ``<P>_PJ``, the mean
    weighted by the piece's area with data (TBDLMJ × coverage share); ``<P>_FGMJ``, that area;
    for thickness, organic matter and slope the area per class (``HTHDJB1_MJ`` …), a piece
    counting in the class of its mean, and ``…_WSJMJ`` the area of pieces without a class.

    Parameters
    ----------
    pieces : DataFrame
        The pieces after :func:`add_quality`.
    rasters : dict or list
        The raster names (``inputs.rasters``).
    names : dict
        County code → county name.
    """
    return quality_table([quality_rows(pieces, rasters)], names)


def quality_fields(rasters: dict[str, RasterSpec] | list[str]) -> list[str]:
    """The pieces' fields that :func:`quality_rows` reads."""
    fields = ["XZQDM", "TL", "TBDLMJ"]
    for name in ordered_rasters(rasters):
        prefix = raster_prefix(name)
        fields += [f"{prefix}_FGL", f"{prefix}_PJ"]
        if name == "dem":
            fields.append(f"{SLOPE_PREFIX}_PJ")
        if name in _CLASS_FIELDS:
            fields.append(_CLASS_FIELDS[name][0])
    return fields


def quality_rows(pieces: pd.DataFrame, rasters: dict[str, RasterSpec] | list[str]) -> pd.DataFrame:
    """:func:`quality_summary`'s sums over these pieces, per county and soil group and per
    county (TL = 合计), before the grand total: areas in cents, means as their weights and
    weighted sums (``_w_<P>``, ``_wv_<P>``). A province is summed one group of counties at a
    time and finished by :func:`quality_table`."""
    frame = pd.DataFrame({"XZQDM": pieces["XZQDM"].to_numpy(), "TL": pieces["TL"].to_numpy()})
    cents = np.round(pieces["TBDLMJ"].to_numpy(float) * 100).astype(np.int64)
    area = pieces["TBDLMJ"].to_numpy(float)
    frame["TBGS"] = 1
    frame["TBDLMJ"] = cents
    for name in ordered_rasters(rasters):
        prefix = raster_prefix(name)
        share = np.nan_to_num(pieces[f"{prefix}_FGL"].to_numpy(float))
        for out_prefix in (prefix, SLOPE_PREFIX) if name == "dem" else (prefix,):
            value = pieces[f"{out_prefix}_PJ"].to_numpy(float)
            w = np.where(np.isfinite(value), area * share, 0.0)
            frame[f"_w_{out_prefix}"] = w
            frame[f"_wv_{out_prefix}"] = w * np.nan_to_num(value)
        if name in _CLASS_FIELDS:
            field, count = _CLASS_FIELDS[name]
            cls = pieces[field].to_numpy(dtype=np.float64, na_value=np.nan)
            for k in range(1, count + 1):
                frame[f"{field}{k}_MJ"] = np.where(cls == k, cents, 0)
            frame[f"{field}_WSJMJ"] = np.where(np.isnan(cls), cents, 0)
    sums = frame.columns.drop(["XZQDM", "TL"])
    by_group = frame.groupby(["XZQDM", "TL"], sort=True)[sums].sum().reset_index()
    by_county = frame.groupby("XZQDM", sort=True)[sums].sum().reset_index().assign(TL="合计")
    return pd.concat([by_group, by_county], ignore_index=True)


def quality_table(parts: list[pd.DataFrame], names: dict[str, str]) -> pd.DataFrame:
    """The quality summary from :func:`quality_rows` of groups of counties (each county in one):
    the grand total added up from the county totals, means and areas in their units, in county
    order."""
    out = pd.concat(parts, ignore_index=True)
    sums = out.columns.drop(["XZQDM", "TL"])
    county = out[(out["TL"] == "合计").to_numpy()]
    if len(county):
        grand = county[sums].sum().to_frame().T.assign(XZQDM="合计", TL="合计")
        out = pd.concat([out, grand], ignore_index=True)
    out["XZQMC"] = [names.get(c, "全部" if c == "合计" else "") for c in out["XZQDM"]]
    cols = ["XZQDM", "XZQMC", "TL", "TBGS", "TBDLMJ"]
    result = out[cols].copy()
    result["TBGS"] = result["TBGS"].astype(np.int64)
    result["TBDLMJ"] = out["TBDLMJ"].to_numpy(np.int64) / 100
    with np.errstate(invalid="ignore", divide="ignore"):
        for col in [c for c in sums if c.startswith("_w_")]:
            out_prefix = col[len("_w_") :]
            w = out[col].to_numpy(float)
            result[f"{out_prefix}_PJ"] = np.where(
                w > 0, out[f"_wv_{out_prefix}"].to_numpy(float) / w, np.nan
            ).round(2)
            if out_prefix != SLOPE_PREFIX:  # the slope's coverage is the DEM's
                result[f"{out_prefix}_FGMJ"] = w.round(2)
    for col in [c for c in sums if c.endswith("_MJ") or c.endswith("_WSJMJ")]:
        result[col] = out[col].to_numpy(np.int64) / 100
    grand = (result["XZQDM"] == "合计").to_numpy()
    total = (result["TL"] == "合计").to_numpy()
    order = np.lexsort((result["TL"].to_numpy(), total, result["XZQDM"].to_numpy(), grand))
    return result.iloc[order].reset_index(drop=True)
