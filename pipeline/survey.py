"""逐图斑核查: cultivated parcels × black-soil types, with exact area accounting.

``prepare_soil`` turns the soil map into a *cover*: the soil polygons, made disjoint (overlaps
resolved deterministically) and classified into black-soil groups, plus the gaps of the map as
"unmapped" polygons. ``survey_parcels`` cuts the cultivated parcels by the region and the cover
with the overlay engine, merges slivers, allocates the official areas (TBMJ, KCMJ, TBDLMJ) to the
pieces to the cent, and hands on every piece (black, non-black, unmapped, outside the region) and
the per-parcel balance. It knows nothing of files or executors.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from pyproj import CRS

from .areas import allocate_cents, deduction_area, ellipsoidal_area
from .overlay import group_union, overlay, safe_difference, safe_intersection
from .qa import QALog, as_text, polygonal_part

logger = logging.getLogger(__name__)

#: piece classes
BLACK, NON_BLACK, UNMAPPED, OUTSIDE = "black", "non_black", "unmapped", "outside_region"
#: relative tolerance of the conservation invariant
CONSERVATION_TOLERANCE = 1e-6
#: absolute floor of that tolerance (m²): float noise of an intersection at GK coordinates
#: (~4e7 m, one ulp ≈ 7e-9 m) on a sliver parcel of a few mm² exceeds 1e-6 of its area
CONSERVATION_FLOOR_M2 = 1e-6
#: how far beyond the region's bounds the outside-the-region polygon reaches (m)
REGION_MARGIN_M = 10_000.0


@dataclass(frozen=True)
class SoilCover:
    """The soil map as disjoint polygons covering the survey extent.

    ``frame`` has one row per cover polygon: ``soil_type`` (as mapped), ``group`` (black-soil
    group or None), ``cls`` (black / non_black / unmapped), ``soil_id`` (stable id of the soil
    polygon; gaps get ``GAP-n``) and the geometry.
    """

    frame: gpd.GeoDataFrame
    #: the area the cover tiles (soil polygons plus gaps)
    extent: shapely.Geometry

    def ranks(self) -> np.ndarray:
        """Each cover polygon's rank by soil polygon id, the same in every run; -1 for the
        gaps, whose shapes depend on the extent a run reads (:func:`pipeline.overlay.overlay`)."""
        gap = self.frame["cls"].to_numpy() == UNMAPPED
        return np.where(gap, -1, _rank(self.frame))


def classify_soil(
    soil_type: pd.Series, subtype: pd.Series | None, table: dict[str, str]
) -> pd.Series:
    """Black-soil group of each soil polygon (None where it is not a black soil).

    The soil group name or code (TL) is looked up first, then the sub-type (YL), so that a map
    that records only sub-types such as 草甸黑土 still classifies.
    """

    def lookup(values: pd.Series) -> pd.Series:
        return pd.Series(as_text(values), index=values.index, dtype=object).map(table)

    group = lookup(soil_type)
    if subtype is not None:
        group = group.where(group.notna(), lookup(subtype))
    return group.astype(object).where(group.notna(), None)


def prepare_soil(
    soil: gpd.GeoDataFrame,
    extent: shapely.Geometry,
    table: dict[str, str],
    qa: QALog,
) -> SoilCover:
    """Make the soil map a disjoint cover of ``extent``.

    Parameters
    ----------
    soil : GeoDataFrame
        Clean soil polygons with ``soil_type`` (and optionally ``subtype``, ``id``) columns, in
        source order, which decides overlaps: where two soil polygons overlap, the one that comes
        first in the source keeps the overlap (recorded in ``qa``).
    extent : Polygon
        The area to cover (the parcels' extent); what no soil polygon covers becomes
        ``unmapped`` gap polygons.
    table : dict
        Soil name/code → black-soil group.
    qa : QALog
        Receives overlap repairs and the gap count.
    """
    soil = soil.reset_index(drop=True)
    ids = (
        soil["id"].astype(object).where(soil["id"].notna(), None)
        if "id" in soil
        else pd.Series(soil["_fid"].to_numpy(), dtype=object)
    )
    ids = ids.where(ids.notna(), soil["_fid"].astype(str)).astype(str)
    geoms, keep, gap_parts = disjoint_cover(
        soil.geometry.to_numpy(), ids.to_numpy(), extent, "soil", qa
    )

    group = classify_soil(soil["soil_type"], soil.get("subtype"), table)
    frame = gpd.GeoDataFrame(
        {
            "soil_id": ids[keep].to_numpy(),
            "soil_type": soil["soil_type"][keep].to_numpy(),
            "subtype": soil["subtype"][keep].to_numpy() if "subtype" in soil else None,
            "group": group[keep].to_numpy(),
        },
        geometry=geoms[keep],
        crs=soil.crs,
    )
    frame["cls"] = np.where(frame["group"].notna(), BLACK, NON_BLACK)
    unknown = frame.loc[frame["group"].isna(), "soil_type"].astype(object)
    for name in sorted({str(v) for v in unknown.dropna()}):
        sel = frame["soil_id"][(frame["group"].isna()) & (unknown == name)]
        qa.add(
            "soil",
            sel.to_numpy(),
            "soil type",
            f"soil type {name!r} is not a black-soil group",
            "counted as non-black",
        )
    no_type = frame["soil_type"].isna() & frame["group"].isna()
    qa.add(
        "soil",
        frame["soil_id"][no_type].to_numpy(),
        "soil type",
        "soil type missing",
        "counted as non-black",
    )

    if len(gap_parts):
        # logged per parcel by the survey (a gap's extent depends on the area a run covers)
        gap_ids = [f"GAP-{i + 1}" for i in range(len(gap_parts))]
        gap_frame = gpd.GeoDataFrame(
            {
                "soil_id": gap_ids,
                "soil_type": None,
                "subtype": None,
                "group": None,
                "cls": UNMAPPED,
            },
            geometry=gap_parts,
            crs=soil.crs,
        )
        frame = pd.concat([frame, gap_frame], ignore_index=True)
    return SoilCover(frame, extent)


def disjoint_cover(
    geoms: np.ndarray, ids: np.ndarray, extent: shapely.Geometry, layer: str, qa: QALog
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Make polygons disjoint (earlier ones in source order keep overlaps) and find what of
    ``extent`` they leave uncovered.

    Returns
    -------
    geoms : ndarray
        The polygons with overlaps removed.
    keep : ndarray of bool
        False for polygons wholly covered by earlier ones (rejected, logged).
    gaps : ndarray of Polygon
        The parts of ``extent`` no polygon covers.
    """
    geoms = np.asarray(geoms, dtype=object).copy()
    union = _union(geoms)
    # polygons without overlaps have the area of their union: skip the pairwise search
    if shapely.area(geoms).sum() - union.area > 1e-9 * union.area:
        geoms = _resolve_overlaps(geoms, ids, layer, qa)
    keep = ~shapely.is_missing(geoms)
    keep[keep] = ~shapely.is_empty(geoms[keep])
    qa.add(layer, ids[~keep], "overlap", "wholly covered by earlier polygons", "rejected")
    gaps = polygonal_part(np.array([shapely.difference(extent, union)], dtype=object))
    gap_parts = shapely.get_parts(gaps)
    return geoms, keep, gap_parts[shapely.area(gap_parts) > 0]


def _union(geoms: np.ndarray) -> shapely.Geometry:
    """Union of the soil polygons: the fast coverage union where the map is a clean coverage
    (edge-matched, as digitised soil maps usually are); where a few polygons are not (an
    overlap, a neighbour's vertex missing on a shared edge), the coverage union of the others
    joined with the general union of those few; else the general union."""
    fast = _coverage_union(geoms)
    if fast is not None:
        return fast
    # the coverage validator names the polygons whose edges do not match their neighbours'
    try:
        bad = ~shapely.is_empty(shapely.coverage_invalid_edges(geoms))
    except shapely.errors.GEOSException:
        return shapely.union_all(geoms)
    if bad.all():
        return shapely.union_all(geoms)
    rest = _coverage_union(geoms[~bad])
    if rest is None:
        return shapely.union_all(geoms)
    return shapely.union_all(np.append(geoms[bad], rest))


def _coverage_union(geoms: np.ndarray) -> shapely.Geometry | None:
    """The coverage union of ``geoms``, or None where they are no clean coverage (GEOS raises,
    or gives an invalid result or one whose area is not the polygons' total)."""
    try:
        fast = shapely.coverage_union_all(geoms)
    except shapely.errors.GEOSException:  # overlapping or incorrectly noded polygons
        return None
    if shapely.is_valid(fast) and abs(fast.area - shapely.area(geoms).sum()) <= 1e-9 * fast.area:
        return fast
    return None


def _resolve_overlaps(geoms: np.ndarray, ids: np.ndarray, layer: str, qa: QALog) -> np.ndarray:
    """Remove from each polygon what earlier polygons (in source order) already cover."""
    tree = shapely.STRtree(geoms)
    pairs = [tree.query(geoms, predicate=p) for p in ("overlaps", "within", "contains")]
    a = np.concatenate([p[0] for p in pairs])
    b = np.concatenate([p[1] for p in pairs])
    keep = a > b  # the later polygon a gives the shared area to the earlier b
    a, b = np.unique(np.stack([a[keep], b[keep]]), axis=1)
    if len(a) == 0:
        return geoms
    real = shapely.area(safe_intersection(geoms[a], geoms[b])) > 0
    a, b = a[real], b[real]
    if len(a) == 0:
        return geoms
    losers, earlier = group_union(geoms[b], a)
    geoms = geoms.copy()
    geoms[losers] = polygonal_part(safe_difference(geoms[losers], earlier))
    qa.add(
        layer,
        ids[losers],
        "overlap",
        f"overlaps an earlier {layer} polygon",
        "overlap given to the earlier polygon",
    )
    return geoms


@dataclass(frozen=True)
class SurveyResult:
    """What the survey stage hands on.

    pieces : GeoDataFrame
        One row per (parcel, cover polygon) piece and per outside-region part, with ``parcel``
        (row of the parcels frame), ``cls``, ``group``, ``soil_id``, ``soil_type``, ``subtype``,
        ``MJ`` (planar m²), ``TBMJ``, ``KCMJ``, ``TBDLMJ`` (official m², to the cent) and
        ``sliver_count``.
    balance : DataFrame
        One row per surveyed parcel: planar and official areas by class and the conservation
        residual.
    """

    pieces: gpd.GeoDataFrame
    balance: pd.DataFrame


def survey_parcels(
    parcels: gpd.GeoDataFrame,
    cover: SoilCover,
    *,
    crs: CRS,
    qa: QALog,
    region: np.ndarray | None = None,
    min_piece_area: float = 0.1,
    max_vertices: int = 256,
    threads: int = 1,
) -> SurveyResult:
    """Cut cultivated parcels by the region and the soil cover and account for every m².

    Parameters
    ----------
    parcels : GeoDataFrame
        Clean cultivated parcels with at least ``id`` and optionally ``area`` (TBMJ) and
        ``deduction_rate`` (KCXS); planar CRS ``crs``.
    cover : SoilCover
        From :func:`prepare_soil`.
    crs : pyproj.CRS
        The working projected CRS (for the ellipsoidal area where TBMJ is missing).
    qa : QALog
        Receives computed areas and merged slivers.
    region : ndarray of polygons, optional
        The black-soil region; parcel parts outside it become ``outside_region`` pieces.
    min_piece_area : float
        Pieces smaller than this (m²) are merged into the largest piece of their parcel.
    """
    parcels = parcels.reset_index(drop=True)
    geoms = parcels.geometry.to_numpy()
    ids = parcels["id"].to_numpy()
    planar = shapely.area(geoms)

    official = _official_area(parcels, geoms, crs, qa)
    rate = parcels["deduction_rate"].to_numpy(float) if "deduction_rate" in parcels else None
    if rate is None:
        rate = np.zeros(len(parcels))
    bad_rate = ~np.isnan(rate) & ((rate < 0) | (rate > 1))
    qa.add("parcels", ids[bad_rate], "field deduction_rate", "KCXS outside 0-1", "treated as 0")
    rate = np.where(bad_rate | np.isnan(rate), 0.0, rate)

    # 1. the region cut
    target = geoms
    out_parcel = np.empty(0, np.intp)
    out_geom = np.empty(0, object)
    if region is not None and len(geoms):
        region_union = shapely.union_all(region)
        # the outside of the region within a box that depends on the region alone (plus any
        # parcel reaching further), so that every partition of a job cuts the same polygons
        xmin, ymin, xmax, ymax = shapely.total_bounds(np.append(geoms, region_union))
        rx0, ry0, rx1, ry1 = region_union.bounds
        box = shapely.box(
            min(xmin - 1.0, rx0 - REGION_MARGIN_M),
            min(ymin - 1.0, ry0 - REGION_MARGIN_M),
            max(xmax + 1.0, rx1 + REGION_MARGIN_M),
            max(ymax + 1.0, ry1 + REGION_MARGIN_M),
        )
        outside = shapely.difference(box, region_union)
        cut = overlay(
            geoms,
            np.array([region_union, outside]),
            max_vertices=max_vertices,
            threads=threads,
            complete=True,
            ranks=np.array([0, -1]),  # the outside's box may reach as far as the parcels do
        )
        inside_sel = cut.right == 0
        target = np.full(len(geoms), None, dtype=object)
        target[cut.left[inside_sel]] = cut.geometry[inside_sel]
        out_parcel = cut.left[~inside_sel]
        out_geom = cut.geometry[~inside_sel]

    # 2. the soil cover
    target_area = planar if region is None else shapely.area(target)
    cov = cover.frame
    present = np.flatnonzero(~shapely.is_missing(target))
    surveyed = target[present]
    complete = len(surveyed) > 0 and shapely.covers(
        cover.extent, shapely.box(*shapely.total_bounds(surveyed))
    )
    res = overlay(
        surveyed,
        cov.geometry.to_numpy(),
        max_vertices=max_vertices,
        threads=threads,
        complete=bool(complete),
        ranks=cover.ranks(),
    )
    piece_parcel = np.concatenate([present[res.left], out_parcel])
    piece_cover = np.concatenate([res.right, np.full(len(out_parcel), -1)])
    piece_geom = np.concatenate([res.geometry, out_geom])
    piece_area = np.concatenate(
        [
            np.where(res.whole, target_area[present[res.left]], shapely.area(res.geometry)),
            shapely.area(out_geom),
        ]
    )

    # pieces of a parcel are ordered by soil polygon id, not by row in this run's cover, so
    # that sums, ties and cents come out the same whatever part of the soil map a run read
    cover_rank = np.append(_rank(cov), -1)  # [-1]: outside the region

    # 3. slivers go into the largest piece of their parcel
    piece_parcel, piece_cover, piece_geom, piece_area, slivers = _merge_slivers(
        piece_parcel, piece_cover, piece_geom, piece_area, min_piece_area, ids, cover_rank, qa
    )

    # 4. official areas to the cent
    order = np.lexsort((piece_area, cover_rank[piece_cover], piece_parcel))
    piece_parcel, piece_cover = piece_parcel[order], piece_cover[order]
    piece_geom, piece_area, slivers = piece_geom[order], piece_area[order], slivers[order]
    tbmj = allocate_cents(official, piece_area, piece_parcel)
    kcmj_parcel = deduction_area(official, rate)
    kcmj = allocate_cents(kcmj_parcel, piece_area, piece_parcel)
    tbdlmj = np.round(tbmj * 100 - kcmj * 100) / 100

    sel = np.where(piece_cover >= 0, piece_cover, 0)
    inside_cover = piece_cover >= 0

    def from_cover(col: str, fill: object) -> np.ndarray:
        values = cov[col].to_numpy(dtype=object)[sel]
        return np.where(inside_cover, values, fill)

    pieces = gpd.GeoDataFrame(
        {
            "parcel": piece_parcel,
            "cls": from_cover("cls", OUTSIDE),
            "group": from_cover("group", None),
            "soil_id": from_cover("soil_id", None),
            "soil_type": from_cover("soil_type", None),
            "subtype": from_cover("subtype", None),
            "MJ": piece_area,
            "TBMJ": tbmj,
            "KCMJ": kcmj,
            "TBDLMJ": tbdlmj,
            "sliver_count": slivers,
        },
        geometry=piece_geom,
        crs=crs,
    )
    unmapped = np.unique(piece_parcel[pieces["cls"].to_numpy() == UNMAPPED])
    qa.add("parcels", ids[unmapped], "coverage", "gap in the soil map", "counted as unmapped area")
    balance = _balance(parcels, planar, official, kcmj_parcel, pieces)
    return SurveyResult(pieces, balance)


def _official_area(parcels: gpd.GeoDataFrame, geoms: np.ndarray, crs: CRS, qa: QALog) -> np.ndarray:
    """TBMJ where the parcel carries one, else the land-survey ellipsoidal area."""
    official = parcels["area"].to_numpy(float) if "area" in parcels else np.full(len(geoms), np.nan)
    missing = np.isnan(official) | (official <= 0)
    if missing.any():
        official = official.copy()
        official[missing] = ellipsoidal_area(geoms[missing], crs)
        what = "TBMJ missing or not positive" if "area" in parcels else "no TBMJ field"
        qa.add(
            "parcels",
            parcels["id"].to_numpy()[missing],
            "field area",
            what,
            "computed ellipsoidal area (国土调查办发〔2008〕32号)",
        )
    return official


def _rank(cov: gpd.GeoDataFrame) -> np.ndarray:
    """Each cover polygon's rank by soil polygon id (gaps, named per run, rank first)."""
    key = np.where(cov["cls"].to_numpy() == UNMAPPED, "", cov["soil_id"].astype(str).to_numpy())
    return np.unique(key, return_inverse=True)[1].astype(np.intp)


def _merge_slivers(
    parcel: np.ndarray,
    cover: np.ndarray,
    geom: np.ndarray,
    area: np.ndarray,
    min_area: float,
    ids: np.ndarray,
    cover_rank: np.ndarray,
    qa: QALog,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Merge pieces below ``min_area`` into the largest piece of the same parcel."""
    n = len(parcel)
    slivers = np.zeros(n, dtype=np.int64)
    if min_area <= 0 or n == 0:
        return parcel, cover, geom, area, slivers
    # the largest piece of each parcel (ties: first by soil polygon id)
    order = np.lexsort((cover_rank[cover], -area, parcel))
    first = np.r_[True, parcel[order][1:] != parcel[order][:-1]]
    largest = np.empty(parcel.max() + 1, dtype=np.intp)
    largest[parcel[order][first]] = order[first]
    small = area < min_area
    small &= largest[parcel] != np.arange(n)
    if not small.any():
        return parcel, cover, geom, area, slivers
    idx = np.flatnonzero(small)
    target = largest[parcel[idx]]
    qa.add(
        "parcels",
        ids[parcel[idx]],
        "sliver",
        f"piece smaller than min_piece_area ({min_area:g} m²)",
        "merged into the largest piece of the parcel",
    )
    merged_area = area.copy()
    np.add.at(merged_area, target, area[idx])
    members = np.concatenate([target, idx])
    groups = np.concatenate([target, target])
    uniq, merged_geom = group_union(geom[members], groups)
    geom = geom.copy()
    geom[uniq] = merged_geom
    np.add.at(slivers, target, 1)
    keep = ~small
    return parcel[keep], cover[keep], geom[keep], merged_area[keep], slivers[keep]


def _balance(
    parcels: gpd.GeoDataFrame,
    planar: np.ndarray,
    official: np.ndarray,
    kcmj: np.ndarray,
    pieces: gpd.GeoDataFrame,
) -> pd.DataFrame:
    """Per-parcel conservation: planar and official areas by class, and the residual."""
    n = len(parcels)
    p = pieces["parcel"].to_numpy()
    frame = pd.DataFrame({"parcel": np.arange(n), "MJ": planar, "TBMJ": official, "KCMJ": kcmj})
    frame["TBDLMJ"] = np.round(official * 100 - kcmj * 100) / 100
    for cls, prefix in ((BLACK, "HT"), (NON_BLACK, "FHT"), (UNMAPPED, "WDT"), (OUTSIDE, "QYW")):
        sel = pieces["cls"].to_numpy() == cls
        frame[f"{prefix}_MJ"] = np.bincount(p[sel], pieces["MJ"].to_numpy()[sel], minlength=n)
        frame[f"{prefix}_TBMJ"] = (
            np.bincount(p[sel], np.round(pieces["TBMJ"].to_numpy()[sel] * 100), minlength=n) / 100
        )
        frame[f"{prefix}_TBDLMJ"] = (
            np.bincount(p[sel], np.round(pieces["TBDLMJ"].to_numpy()[sel] * 100), minlength=n) / 100
        )
    total = frame[["HT_MJ", "FHT_MJ", "WDT_MJ", "QYW_MJ"]].sum(axis=1).to_numpy()
    frame["SLIVERS"] = np.bincount(p, pieces["sliver_count"].to_numpy(), minlength=n)
    frame["RESIDUAL"] = planar - total
    with np.errstate(invalid="ignore", divide="ignore"):
        frame["REL_ERR"] = np.abs(frame["RESIDUAL"].to_numpy()) / planar
    allowed = np.maximum(CONSERVATION_TOLERANCE * planar, CONSERVATION_FLOOR_M2)
    frame["BALANCED"] = np.abs(frame["RESIDUAL"].to_numpy()) <= allowed
    return frame
