"""Protection status and conflicts of the black-soil farmland (保护状态与冲突).

The archive is there to be acted on: all black-soil farmland belongs inside the permanent basic
farmland (永久基本农田), none of it should lie in the urban development boundary (城镇开发边界) or
the ecological red line (生态保护红线) unchecked, construction projects occupying it must be
known, and the year's change parcels (变更图斑) show where it was lost, legally or not, and how
much cultivated land was added in return (占补平衡).

Every analysis works on the archive pieces (``HTGDTB``) with the survey's area rules: a piece's
official figures (TBMJ, KCMJ, TBDLMJ) are shared among its parts inside and outside a zone in
proportion to planar area, to the cent (largest remainder), so that inside plus outside add up to
the piece exactly. Zone layers are cut with the survey's engine (subdivided, indexed, pieces
wholly inside a zone polygon taken without an intersection); where two zone polygons overlap
inside a piece, the shared area goes to the earlier polygon (as for the soil map), resolved on
the small parts inside the pieces only. For the basic farmland only the part outside is kept,
so it is computed by differences alone (:func:`outside_of_zones`); for the zoning conflicts only
the parts inside (:func:`split_by_zones`).

The stage knows nothing of configs or files: :func:`analyse_protection` takes the cleaned layers
in the working CRS and returns fields for the pieces, layers for the archive and county tables.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

from .areas import allocate_cents, ellipsoidal_area
from .codes import LANDUSE_NAMES
from .overlay import (
    OverlayResult,
    covers,
    group_union,
    map_chunks,
    overlay,
    safe_difference,
    safe_intersection,
    subdivide,
)
from .qa import QALog, as_text, polygonal_part
from .survey import BLACK, SoilCover

logger = logging.getLogger(__name__)

#: zone inputs → (field prefix on HTGDTB, Chinese name)
ZONES: dict[str, tuple[str, str]] = {
    "basic_farmland": ("JBNT", "永久基本农田"),
    "urban_boundary": ("CZKF", "城镇开发边界"),
    "ecological_redline": ("STHX", "生态保护红线"),
}
#: change kinds (变更类型)
CONSTRUCTION, DIGGING, ADDED, OTHER_LOSS = "建设占用", "盗挖黑土", "新增耕地", "其他减少"
APPROVED, UNAPPROVED = "已批准", "未批准"
#: protection status of a piece against the basic farmland (BHZT)
STATUS_IN, STATUS_PART, STATUS_OUT = "在永久基本农田内", "部分在永久基本农田内", "在永久基本农田外"

_PIECE_COLUMNS = ("DABH", "BSM", "XZQDM", "XZQMC", "DLBM", "DLMC", "TL")


@dataclass(frozen=True)
class ProtectionInputs:
    """The cleaned protection layers in the working CRS; None where the job has no such input.

    Zone frames carry the optional semantic fields ``id``, ``name`` and ``kind``; construction
    ``name``, ``approval``, ``approval_date``; changes ``id``, ``before``, ``after``, ``area`` and
    ``XZQDM`` (the county code, already resolved).
    """

    basic_farmland: gpd.GeoDataFrame | None = None
    urban_boundary: gpd.GeoDataFrame | None = None
    ecological_redline: gpd.GeoDataFrame | None = None
    construction: gpd.GeoDataFrame | None = None
    changes: gpd.GeoDataFrame | None = None


@dataclass(frozen=True)
class ProtectionRules:
    """The codes and thresholds of the conflict checks (from the job config)."""

    cultivated_codes: Sequence[str] = ("0101", "0102", "0103")
    construction_codes: Sequence[str] = ()
    digging_codes: Sequence[str] = ("1206", "0602", "1104")
    approved_cover_share: float = 0.95
    min_piece_area: float = 0.1


@dataclass
class ProtectionResult:
    """What the stage adds to the archive.

    Attributes
    ----------
    fields : DataFrame
        New HTGDTB columns, row-aligned with the pieces given.
    layers : dict
        Archive layer name → frame (HTGD_DNRHX, HTGD_GHCT, HTGD_JSZY, HTGD_JSZYHZ, HTGD_WFZY,
        HTGD_ZBPH), only for the analyses that ran.
    status : dict
        Analysis → "done" or the reason it was skipped (reported in the run metadata).
    counts : dict
        Row counts and merged slivers, for the run metadata.
    """

    fields: pd.DataFrame
    layers: dict[str, pd.DataFrame] = field(default_factory=dict)
    status: dict[str, str] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class ZoneSplit:
    """Pieces cut by a zone layer; official areas shared to the cent.

    ``inside`` rows are (piece, zone) parts; ``outside`` rows are the remainder of each piece that
    is not wholly inside (one row per such piece). For every piece, the inside rows plus its
    outside row add up to its TBMJ, KCMJ and TBDLMJ exactly. From :func:`outside_of_zones` the
    inside is one row per piece (``zone`` −1, ``geometry`` None); from :func:`split_by_zones`
    with ``outside_geometry=False`` the outside geometries are None.
    """

    piece: np.ndarray
    zone: np.ndarray
    geometry: np.ndarray
    mj: np.ndarray
    tbmj: np.ndarray
    kcmj: np.ndarray
    tbdlmj: np.ndarray
    out_piece: np.ndarray
    out_geometry: np.ndarray
    out_mj: np.ndarray
    out_tbmj: np.ndarray
    out_kcmj: np.ndarray
    out_tbdlmj: np.ndarray
    share: np.ndarray  # per piece: planar share inside, 0..1
    merged_slivers: int
    overlaps: np.ndarray  # (k, 2) zone index pairs (later, earlier) sharing area in a piece


def split_by_zones(
    geoms: np.ndarray,
    tbmj: np.ndarray,
    kcmj: np.ndarray,
    zones: np.ndarray,
    *,
    min_area: float = 0.1,
    max_vertices: int = 256,
    threads: int = 1,
    outside_geometry: bool = True,
) -> ZoneSplit:
    """Cut pieces by zone polygons and share their official areas to the cent.

    Zone polygons may overlap one another (neighbouring red-line polygons digitised twice along
    their common edge): within each piece the shared area goes to the earlier polygon in layer
    order, so the parts of a piece never overlap. This is resolved only where it matters, on the
    small parts inside the pieces, never on the large zone polygons themselves.

    Parameters
    ----------
    geoms : ndarray of Polygon/MultiPolygon
        The pieces.
    tbmj, kcmj : ndarray of float
        The pieces' official area and deduction (m², 2 decimals).
    zones : ndarray of Polygon/MultiPolygon
        Zone polygons, in layer order.
    min_area : float
        An outside remainder smaller than this (m²) is digitising noise along a zone boundary
        that follows the parcel edge: it is given to the inside parts (counted in
        ``merged_slivers``), never dropped.
    max_vertices, threads
        Passed to the overlay engine.
    outside_geometry : bool
        False when only the inside parts' geometry is wanted: the outside rows keep their
        areas, and their geometry is None (no difference computed).

    Returns
    -------
    ZoneSplit
        ``overlaps`` lists the (zone, earlier zone) pairs that shared area inside a piece.

    Examples
    --------
    >>> import shapely
    >>> piece = np.array([shapely.box(0, 0, 10, 10)])
    >>> s = split_by_zones(piece, np.array([100.0]), np.array([0.0]),
    ...                    np.array([shapely.box(5, -5, 20, 20)]))
    >>> s.tbdlmj.tolist(), s.out_tbdlmj.tolist(), s.share.tolist()
    ([50.0], [50.0], [0.5])
    """
    geoms = np.asarray(geoms, dtype=object)
    zones = np.asarray(zones, dtype=object)
    res = overlay(geoms, zones, max_vertices=max_vertices, threads=threads, disjoint=False)
    res, overlaps = _resolve_part_overlaps(res, threads)
    area = shapely.area(geoms)
    part_area = shapely.area(res.geometry)
    inside = np.bincount(res.left, part_area, minlength=len(geoms))
    split = _shared(res.left, part_area, area, inside, tbmj, kcmj, min_area)

    out_geom = np.full(len(split.out_piece), None, dtype=object)
    if outside_geometry:
        # the piece less its inside parts (the piece itself if none)
        out_piece = split.out_piece
        out_geom = geoms[out_piece].copy()
        touched = inside[out_piece] > 0
        if touched.any():
            uniq, unions = group_union(res.geometry, res.left, threads)
            sel = out_piece[touched]
            lookup = np.searchsorted(uniq, sel)
            out_geom[touched] = polygonal_part(
                map_chunks(safe_difference, (geoms[sel], unions[lookup]), threads)
            )
    return dataclasses.replace(
        split, zone=res.right, geometry=res.geometry, out_geometry=out_geom, overlaps=overlaps
    )


def outside_of_zones(
    geoms: np.ndarray,
    tbmj: np.ndarray,
    kcmj: np.ndarray,
    zones: np.ndarray,
    *,
    min_area: float = 0.1,
    max_vertices: int = 256,
    threads: int = 1,
) -> ZoneSplit:
    """The part of each piece outside all zone polygons, with official areas shared to the cent
    between it and the inside (the basic farmland check: the inside parts themselves are not
    wanted, only how much of each piece is inside).

    Faster than :func:`split_by_zones` where the parts are not needed: a piece inside one zone
    polygon or clear of all of them costs no geometry operation, and a piece crossing a zone
    boundary costs one difference per subdivided zone part it meets, with no intersection and
    no union. The result has one inside row per piece with area inside (``zone`` −1,
    ``geometry`` None); overlapping zone polygons count their shared area once, and the pairs
    that share area inside a piece are listed in ``overlaps`` as in :func:`split_by_zones`.

    Examples
    --------
    >>> import shapely
    >>> piece = np.array([shapely.box(0, 0, 10, 10)])
    >>> s = outside_of_zones(piece, np.array([100.0]), np.array([0.0]),
    ...                      np.array([shapely.box(5, -5, 20, 20)]))
    >>> s.tbdlmj.tolist(), s.out_tbdlmj.tolist(), shapely.area(s.out_geometry).tolist()
    ([50.0], [50.0], [50.0])
    """
    geoms = np.asarray(geoms, dtype=object)
    zones = np.asarray(zones, dtype=object)
    n, m = len(geoms), len(zones)
    area = shapely.area(geoms)
    outside = geoms.copy()
    rest = area.copy()
    overlaps = np.empty((0, 2), dtype=np.intp)
    if n and m:
        parts, owner = subdivide(zones, max_vertices, threads)
        li, pi = shapely.STRtree(parts).query(geoms)
        # a piece wholly inside one zone polygon has no outside
        pair = np.unique(li.astype(np.int64) * m + owner[pi])
        cand_piece, cand_zone = pair // m, pair % m
        within = cand_piece[covers(zones, cand_zone, geoms[cand_piece])]
        outside[within] = None
        rest[within] = 0.0
        # the (piece, part) pairs that meet: of pieces not inside a zone, and of pieces that may
        # lie in two zones (for the overlaps)
        inner = np.zeros(n, dtype=bool)
        inner[within] = True
        look = ~inner | (np.bincount(cand_piece, minlength=n) > 1)
        li, pi = li[look[li]], pi[look[li]]
        hit = map_chunks(shapely.intersects, (geoms[li], parts[pi]), threads)
        li, pi = li[hit], pi[hit]
        order = np.lexsort((pi, owner[pi], li))
        li, pi = li[order], pi[order]
        overlaps = _zone_overlaps(geoms, parts, owner, li, pi, threads)
        # the pieces not inside a zone lose every part they meet, one part (of each) at a time
        li, pi = li[~inner[li]], pi[~inner[li]]
        rank = _rank_in_group(li)
        for r in range(int(rank.max()) + 1 if len(rank) else 0):
            at = rank == r
            piece = li[at]
            alive = ~shapely.is_missing(outside[piece])
            piece, part = piece[alive], pi[at][alive]
            cut = map_chunks(safe_difference, (outside[piece], parts[part]), threads)
            cut = polygonal_part(cut)
            cut[shapely.is_empty(cut)] = None
            outside[piece] = cut
        crossed = np.unique(li)
        rest[crossed] = 0.0
        present = crossed[~shapely.is_missing(outside[crossed])]
        rest[present] = shapely.area(outside[present])
    inside = np.maximum(area - rest, 0.0)
    rows = np.flatnonzero(inside > 0)
    split = _shared(rows, inside[rows], area, inside, tbmj, kcmj, min_area)
    return dataclasses.replace(
        split,
        zone=np.full(len(rows), -1, dtype=np.intp),
        geometry=np.full(len(rows), None, dtype=object),
        out_geometry=outside[split.out_piece],
        overlaps=overlaps,
    )


def _rank_in_group(groups: np.ndarray) -> np.ndarray:
    """Position of each element within its run of equal (sorted) group values."""
    if len(groups) == 0:
        return np.empty(0, dtype=np.intp)
    starts = np.flatnonzero(np.r_[True, groups[1:] != groups[:-1]])
    counts = np.diff(np.r_[starts, len(groups)])
    return np.arange(len(groups)) - np.repeat(starts, counts)


def _zone_overlaps(
    geoms: np.ndarray,
    parts: np.ndarray,
    owner: np.ndarray,
    li: np.ndarray,
    pi: np.ndarray,
    threads: int,
) -> np.ndarray:
    """The (later, earlier) zone pairs that share area inside a piece, from the (piece, zone
    part) pairs that meet, sorted by piece: the parts of two zones that a piece meets are
    intersected with each other (once per pair of parts), and the piece with their common area.
    """
    none = np.empty((0, 2), dtype=np.intp)
    zone = owner[pi]
    # every pair of the parts a piece meets, from two different zones
    rank = _rank_in_group(li)
    later = np.bincount(li, minlength=len(geoms))[li] - rank - 1
    a = np.repeat(np.arange(len(li)), later)
    b = a + 1 + _rank_in_group(a)
    a, b = a[zone[a] != zone[b]], b[zone[a] != zone[b]]
    m = np.int64(len(parts))
    code = np.minimum(pi[a], pi[b]) * m + np.maximum(pi[a], pi[b])
    pair = np.unique(code)
    common = map_chunks(safe_intersection, (parts[pair // m], parts[pair % m]), threads)
    common = polygonal_part(common)
    shared = ~shapely.is_missing(common)
    shared[shared] = shapely.area(common[shared]) > 0
    if not shared.any():
        return none
    pair, common = pair[shared], common[shared]
    at = np.isin(code, pair)
    a, b, code = a[at], b[at], code[at]
    inside = polygonal_part(
        map_chunks(safe_intersection, (geoms[li[a]], common[np.searchsorted(pair, code)]), threads)
    )
    tol = 1e-9 * np.maximum(shapely.area(geoms[li[a]]), 1.0)
    hit = ~shapely.is_missing(inside)
    hit[hit] = shapely.area(inside[hit]) > tol[hit]
    za, zb = zone[a[hit]], zone[b[hit]]
    if len(za) == 0:
        return none
    return np.unique(np.stack([np.maximum(za, zb), np.minimum(za, zb)], axis=1), axis=0)


def _shared(
    part_piece: np.ndarray,
    part_area: np.ndarray,
    area: np.ndarray,
    inside: np.ndarray,
    tbmj: np.ndarray,
    kcmj: np.ndarray,
    min_area: float,
) -> ZoneSplit:
    """Share the pieces' official areas among their inside parts and outside remainder, to the
    cent (geometry left to the caller)."""
    rest = np.maximum(area - inside, 0.0)
    has_out = rest > np.maximum(min_area, 1e-9 * area)
    merged = (rest > 0) & ~has_out & (inside > 0)
    # weights: a merged sliver goes to the inside parts in proportion to their areas
    scale = np.where(merged, area / np.where(inside > 0, inside, 1.0), 1.0)
    weights = np.concatenate([part_area * scale[part_piece], rest[has_out]])
    out_piece = np.flatnonzero(has_out)
    groups = np.concatenate([part_piece, out_piece])
    tb = allocate_cents(tbmj, weights, groups)
    kc = allocate_cents(kcmj, weights, groups)
    dl = np.round(tb * 100 - kc * 100) / 100
    k = len(part_piece)
    with np.errstate(invalid="ignore", divide="ignore"):
        share = np.where(area > 0, np.clip(inside / area, 0.0, 1.0), 0.0)
    share = np.where(has_out, share, np.where(inside > 0, 1.0, share))
    empty = np.empty(0, dtype=object)
    return ZoneSplit(
        piece=part_piece,
        zone=np.empty(0, dtype=np.intp),
        geometry=empty,
        mj=part_area,
        tbmj=tb[:k],
        kcmj=kc[:k],
        tbdlmj=dl[:k],
        out_piece=out_piece,
        out_geometry=empty,
        out_mj=rest[has_out],
        out_tbmj=tb[k:],
        out_kcmj=kc[k:],
        out_tbdlmj=dl[k:],
        share=share,
        merged_slivers=int(merged.sum()),
        overlaps=np.empty((0, 2), dtype=np.intp),
    )


def _resolve_part_overlaps(res: OverlayResult, threads: int) -> tuple[OverlayResult, np.ndarray]:
    """Make the (piece, zone) parts of each piece disjoint: a part loses what the parts of
    earlier zones of the same piece cover. Vectorised by rank within the piece (the k-th part
    of every piece at once), for the pieces whose parts overlap at all."""
    k = len(res.left)
    no_pairs = np.empty((0, 2), dtype=np.intp)
    if k == 0:
        return res, no_pairs
    area = shapely.area(res.geometry)
    starts = np.flatnonzero(np.r_[True, res.left[1:] != res.left[:-1]])
    counts = np.diff(np.r_[starts, k])
    multi = np.repeat(counts > 1, counts)
    if not multi.any():
        return res, no_pairs
    idx = np.flatnonzero(multi)
    uniq, unions = group_union(res.geometry[idx], res.left[idx], threads)
    summed = np.bincount(res.left[idx], area[idx], minlength=res.left.max() + 1)[uniq]
    crowded = uniq[summed - shapely.area(unions) > 1e-9 * np.maximum(summed, 1.0)]
    if len(crowded) == 0:
        return res, no_pairs
    sel = np.flatnonzero(np.isin(res.left, crowded))
    first = np.repeat(starts, counts)  # index of the first part of each part's piece
    rank = sel - first[sel]
    geometry = res.geometry.copy()
    acc = np.full(res.left.max() + 1, None, dtype=object)  # union of a piece's earlier parts
    trimmed = []
    for r in range(int(rank.max()) + 1):  # a handful of ranks, each vectorised over pieces
        at = sel[rank == r]
        piece = res.left[at]
        before = acc[piece]
        has = ~shapely.is_missing(before)
        if has.any():
            hit = at[has]
            cut = polygonal_part(safe_difference(geometry[hit], before[has]))
            left_area = np.zeros(len(hit))
            ok = ~shapely.is_missing(cut)
            left_area[ok] = shapely.area(cut[ok])
            trimmed.append(hit[area[hit] - left_area > 1e-9 * np.maximum(area[hit], 1.0)])
            geometry[hit] = cut
        acc[piece] = np.where(has, shapely.union(before, res.geometry[at]), res.geometry[at])
    keep = ~shapely.is_missing(geometry)
    keep[keep] = shapely.area(geometry[keep]) > 0
    # the earlier zones each trimmed part gave way to (for the QA log), vectorised
    part = np.concatenate(trimmed) if trimmed else np.empty(0, np.intp)
    lens = part - first[part]
    later = np.repeat(part, lens)
    earlier = np.repeat(first[part], lens) + (
        np.arange(lens.sum()) - np.repeat(np.cumsum(lens) - lens, lens)
    )
    a, b = res.geometry[later], res.geometry[earlier]
    shared = shapely.intersects(a, b) & ~shapely.touches(a, b)
    overlaps = np.unique(
        np.stack([res.right[later[shared]], res.right[earlier[shared]]], axis=1), axis=0
    )
    out = OverlayResult(res.left[keep], res.right[keep], geometry[keep], res.whole[keep])
    return out, overlaps


def _cents_sum(values: np.ndarray, groups: np.ndarray, n: int) -> np.ndarray:
    return np.bincount(groups, np.round(values * 100), minlength=n) / 100


def _piece_attrs(pieces: gpd.GeoDataFrame, rows: np.ndarray) -> dict[str, np.ndarray]:
    return {c: pieces[c].to_numpy(dtype=object)[rows] for c in _PIECE_COLUMNS if c in pieces}


def _text_field(frame: gpd.GeoDataFrame, col: str) -> np.ndarray:
    if col not in frame:
        return np.full(len(frame), None, dtype=object)
    return as_text(frame[col])


def _zone_ids(frame: gpd.GeoDataFrame) -> gpd.GeoDataFrame:
    """The zone layer with an ``id`` on every row (its own, else its position)."""
    ids = _text_field(frame, "id")
    fallback = (frame.index + 1).astype(str).to_numpy(dtype=object)
    out = frame.copy()
    out["id"] = np.where(pd.isna(ids), fallback, ids)
    return out.reset_index(drop=True)


def _zone_analysis(
    name: str,
    zones: gpd.GeoDataFrame,
    pieces: gpd.GeoDataFrame,
    rules: ProtectionRules,
    qa: QALog,
    threads: int,
    max_vertices: int,
) -> tuple[dict[str, np.ndarray], ZoneSplit, gpd.GeoDataFrame]:
    prefix, _ = ZONES[name]
    zones = _zone_ids(zones)
    args = (
        pieces.geometry.to_numpy(),
        pieces["TBMJ"].to_numpy(float),
        pieces["KCMJ"].to_numpy(float),
        zones.geometry.to_numpy(),
    )
    opts = {"min_area": rules.min_piece_area, "max_vertices": max_vertices, "threads": threads}
    if name == "basic_farmland":  # the part outside is the result, the parts inside are not
        split = outside_of_zones(*args, **opts)
    else:  # the parts inside are the conflicts, the part outside is not wanted
        split = split_by_zones(*args, **opts, outside_geometry=False)
    if len(split.overlaps):
        ids = zones["id"].to_numpy(dtype=object)
        qa.add(
            name,
            ids[split.overlaps[:, 0]],
            "overlap",
            "overlaps an earlier polygon ("
            + ids[split.overlaps[:, 1]]
            + ") in black-soil farmland",
            "shared area counted once, for the earlier polygon",
        )
    n = len(pieces)
    inside_dl = _cents_sum(split.tbdlmj, split.piece, n)
    fields = {
        f"{prefix}_MJ": inside_dl,
        f"{prefix}_ZB": np.round(split.share, 4),
    }
    return fields, split, zones


def _outside_layer(pieces: gpd.GeoDataFrame, split: ZoneSplit) -> gpd.GeoDataFrame:
    """HTGD_DNRHX: the part of each piece outside the basic farmland, as its own geometry."""
    rows = split.out_piece
    area = shapely.area(pieces.geometry.to_numpy()[rows])
    with np.errstate(invalid="ignore", divide="ignore"):
        share = np.where(area > 0, split.out_mj / area, 0.0)
    frame = gpd.GeoDataFrame(
        {
            **_piece_attrs(pieces, rows),
            "MJ": np.round(split.out_mj, 2),
            "TBMJ": split.out_tbmj,
            "KCMJ": split.out_kcmj,
            "TBDLMJ": split.out_tbdlmj,
            "WZB": np.round(share, 4),
        },
        geometry=split.out_geometry,
        crs=pieces.crs,
    )
    return frame.reset_index(drop=True)


def _conflict_rows(
    name: str, pieces: gpd.GeoDataFrame, split: ZoneSplit, zones: gpd.GeoDataFrame
) -> gpd.GeoDataFrame:
    """HTGD_GHCT rows of one zone layer: each (piece, zone polygon) part with the zone's attrs."""
    rows, z = split.piece, split.zone
    return gpd.GeoDataFrame(
        {
            **_piece_attrs(pieces, rows),
            "FQLX": ZONES[name][1],
            "FQBM": _text_field(zones, "id")[z],
            "FQMC": _text_field(zones, "name")[z],
            "FQLB": _text_field(zones, "kind")[z],
            "MJ": np.round(split.mj, 2),
            "TBMJ": split.tbmj,
            "KCMJ": split.kcmj,
            "TBDLMJ": split.tbdlmj,
        },
        geometry=split.geometry,
        crs=pieces.crs,
    )


def _approved(projects: gpd.GeoDataFrame) -> np.ndarray:
    approval = pd.Series(_text_field(projects, "approval"), dtype=object)
    return (approval.notna() & (approval.str.strip() != "")).to_numpy()


def _project_ids(projects: gpd.GeoDataFrame) -> np.ndarray:
    """A project's id as text: its ``id`` field (the runner puts the source feature id there
    when the layer has none), else its 1-based position."""
    ids = _text_field(projects, "id")
    fallback = np.arange(1, len(projects) + 1).astype(str).astype(object)
    return np.where(pd.isna(ids), fallback, ids).astype(object)


def _construction_analysis(
    projects: gpd.GeoDataFrame,
    pieces: gpd.GeoDataFrame,
    threads: int,
    max_vertices: int,
) -> tuple[dict[str, np.ndarray], gpd.GeoDataFrame, pd.DataFrame]:
    """Projects × pieces: each overlap (HTGD_JSZY), per-project totals (HTGD_JSZYHZ), and per
    piece the area occupied by any project (overlapping projects counted once)."""
    n = len(pieces)
    geoms = pieces.geometry.to_numpy()
    res = overlay(
        geoms,
        projects.geometry.to_numpy(),
        max_vertices=max_vertices,
        threads=threads,
        disjoint=False,
    )
    approved = _approved(projects)
    area = shapely.area(geoms)
    part_area = shapely.area(res.geometry)
    with np.errstate(invalid="ignore", divide="ignore"):
        frac = np.where(area[res.left] > 0, part_area / area[res.left], 0.0)
    tbmj = pieces["TBMJ"].to_numpy(float)
    kcmj = pieces["KCMJ"].to_numpy(float)
    row_tb = np.round(tbmj[res.left] * frac * 100) / 100
    row_kc = np.round(kcmj[res.left] * frac * 100) / 100
    ids = _project_ids(projects)
    occupation = gpd.GeoDataFrame(
        {
            "XMBH": ids[res.right],
            "XMMC": _text_field(projects, "name")[res.right],
            "PZWH": _text_field(projects, "approval")[res.right],
            "PZRQ": _text_field(projects, "approval_date")[res.right],
            "PZZT": np.where(approved[res.right], APPROVED, UNAPPROVED),
            **_piece_attrs(pieces, res.left),
            "MJ": np.round(part_area, 2),
            "TBMJ": row_tb,
            "TBDLMJ": np.round(row_tb * 100 - row_kc * 100) / 100,
        },
        geometry=res.geometry,
        crs=pieces.crs,
    )

    # per piece: the union of the projects over it, shared to the cent like a zone
    occupied = np.zeros(n)
    if len(res.left):
        uniq, unions = group_union(res.geometry, res.left, threads)
        occupied[uniq] = shapely.area(unions)
    occupied = np.minimum(occupied, area)
    has = occupied > 0
    weights = np.concatenate([occupied[has], area[has] - occupied[has]])
    rows = np.flatnonzero(has)
    groups = np.concatenate([rows, rows])
    tb = allocate_cents(tbmj, weights, groups)
    kc = allocate_cents(kcmj, weights, groups)
    occ_dl = np.zeros(n)
    occ_dl[rows] = np.round(tb[: len(rows)] * 100 - kc[: len(rows)] * 100) / 100
    unapproved_hit = np.zeros(n, dtype=bool)
    unapproved_hit[res.left[~approved[res.right]]] = True
    with np.errstate(invalid="ignore", divide="ignore"):
        share = np.where(area > 0, np.round(occupied / area, 4), 0.0)
    fields = {
        "JSZY_MJ": occ_dl,
        "JSZY_ZB": share,
        "SFJSZY": has.astype(np.int32),
        "SFWPZY": unapproved_hit.astype(np.int32),
    }

    # the totals add up the overlaps as listed, in cents: the same however the pieces are
    # split between partitions (a sum rounded once would not be)
    per = pd.DataFrame(
        {
            "r": res.right,
            "piece": res.left,
            "MJ_c": np.round(occupation["MJ"].to_numpy() * 100).astype(np.int64),
            "TBDLMJ_c": np.round(occupation["TBDLMJ"].to_numpy() * 100).astype(np.int64),
        }
    )
    agg = per.groupby("r").agg(
        TBGS=("piece", "size"), MJ_c=("MJ_c", "sum"), TBDLMJ_c=("TBDLMJ_c", "sum")
    )
    agg = agg.reindex(np.arange(len(projects)), fill_value=0)
    totals = pd.DataFrame(
        {
            "XMBH": ids,
            "XMMC": _text_field(projects, "name"),
            "PZWH": _text_field(projects, "approval"),
            "PZRQ": _text_field(projects, "approval_date"),
            "PZZT": np.where(approved, APPROVED, UNAPPROVED),
            "XMMJ": np.round(shapely.area(projects.geometry.to_numpy()), 2),
            "TBGS": agg["TBGS"].to_numpy(np.int64),
            "ZYMJ": agg["MJ_c"].to_numpy() / 100,
            "ZYTBDLMJ": agg["TBDLMJ_c"].to_numpy() / 100,
        }
    )
    totals = totals.sort_values(["ZYTBDLMJ", "XMBH"], ascending=[False, True], kind="stable")
    return fields, occupation.reset_index(drop=True), totals.reset_index(drop=True)


def classify_changes(before: np.ndarray, after: np.ndarray, rules: ProtectionRules) -> np.ndarray:
    """The kind of each change parcel: construction occupation, digging-out, added cultivated
    land, other loss of cultivated land, or "" (no change of the cultivated status).

    Digging-out wins over construction where a code is in both lists (采矿用地 0602).

    >>> rules = ProtectionRules(construction_codes=("0702",))
    >>> classify_changes(np.array(["0103", "0103", "0301", "0103"], dtype=object),
    ...                  np.array(["0702", "1206", "0103", "0301"], dtype=object), rules).tolist()
    ['建设占用', '盗挖黑土', '新增耕地', '其他减少']
    """
    cult = list(rules.cultivated_codes)
    was = pd.Series(before, dtype=object).isin(cult).to_numpy()
    now = pd.Series(after, dtype=object).isin(cult).to_numpy()
    dig = pd.Series(after, dtype=object).isin(list(rules.digging_codes)).to_numpy()
    build = pd.Series(after, dtype=object).isin(list(rules.construction_codes)).to_numpy()
    kind = np.full(len(before), "", dtype=object)
    lost = was & ~now
    kind[lost] = OTHER_LOSS
    kind[lost & build] = CONSTRUCTION
    kind[lost & dig] = DIGGING
    kind[~was & now] = ADDED
    return kind


def _joined(pairs_left: np.ndarray, values: np.ndarray, n: int) -> np.ndarray:
    """Distinct non-empty values per left index, joined with '、' (in first-seen order)."""
    out = np.full(n, "", dtype=object)
    if len(pairs_left) == 0:
        return out
    frame = pd.DataFrame({"k": pairs_left, "v": values})
    frame = frame[frame["v"].notna() & (frame["v"].astype(str) != "")].drop_duplicates()
    if len(frame):
        joined = frame.groupby("k", sort=True)["v"].agg(lambda v: "、".join(map(str, v)))
        out[joined.index.to_numpy()] = joined.to_numpy()
    return out


def _change_analysis(
    changes: gpd.GeoDataFrame,
    projects: gpd.GeoDataFrame | None,
    cover: SoilCover,
    region: np.ndarray | None,
    rules: ProtectionRules,
    crs: object,
    names: dict[str, str],
    qa: QALog,
    threads: int,
    max_vertices: int,
) -> tuple[gpd.GeoDataFrame, pd.DataFrame, dict[str, int]]:
    """Suspected illegal occupation and digging-out (HTGD_WFZY) and 占补平衡 per county."""
    n = len(changes)
    geoms = changes.geometry.to_numpy()
    before = _text_field(changes, "before")
    after = _text_field(changes, "after")
    kind = classify_changes(before, after, rules)
    area = shapely.area(geoms)

    # the black-soil part of each change parcel (inside the black-soil region, if one is given)
    soil = overlay(
        geoms,
        cover.frame.geometry.to_numpy(),
        max_vertices=max_vertices,
        threads=threads,
        complete=True,
        ranks=cover.ranks(),
    )
    black = cover.frame["cls"].to_numpy()[soil.right] == BLACK
    parts, owner = soil.geometry[black], soil.left[black]
    groups_of = cover.frame["group"].to_numpy(dtype=object)[soil.right[black]]
    if region is not None and len(parts):
        clipped = polygonal_part(shapely.intersection(parts, shapely.union_all(region)))
        ok = ~shapely.is_missing(clipped)
        ok[ok] = shapely.area(clipped[ok]) > 0
        parts, owner, groups_of = clipped[ok], owner[ok], groups_of[ok]
    black_area = np.minimum(np.bincount(owner, shapely.area(parts), minlength=n), area)
    black_geom = np.full(n, None, dtype=object)
    if len(parts):
        uniq, unions = group_union(parts, owner, threads)
        black_geom[uniq] = unions
    soil_groups = _joined(owner, groups_of, n)

    # official area: BGMJ where given, else the land-survey ellipsoidal area
    official = (changes["area"].to_numpy(float) if "area" in changes else np.full(n, np.nan)).copy()
    missing = ~(official > 0)
    if missing.any():
        official[missing] = np.round(ellipsoidal_area(geoms[missing], crs), 2)
        qa.add(
            "changes",
            _text_field(changes, "id")[missing],
            "field area",
            "change area (BGMJ) missing",
            "ellipsoidal area computed",
        )
    rows = np.arange(n)
    shared = allocate_cents(
        official,
        np.concatenate([black_area, np.maximum(area - black_area, 0.0)]),
        np.concatenate([rows, rows]),
    )
    black_official = shared[:n]

    # approved projects covering each change parcel, and the projects' names as evidence
    covered = np.zeros(n)
    approved_names = np.full(n, "", dtype=object)
    unapproved_names = np.full(n, "", dtype=object)
    if projects is not None and len(projects):
        ok = _approved(projects)
        hits = overlay(
            geoms,
            projects.geometry.to_numpy(),
            max_vertices=max_vertices,
            threads=threads,
            disjoint=False,
        )
        names_of = _text_field(projects, "name")
        label = np.where(pd.isna(names_of), "项目" + _project_ids(projects), names_of).astype(
            object
        )
        on = ok[hits.right]
        approved_names = _joined(hits.left[on], label[hits.right[on]], n)
        unapproved_names = _joined(hits.left[~on], label[hits.right[~on]], n)
        if on.any():
            uniq, unions = group_union(hits.geometry[on], hits.left[on], threads)
            covered[uniq] = shapely.area(unions)
    covered = np.minimum(covered, area)
    with np.errstate(invalid="ignore", divide="ignore"):
        cover_share = np.where(area > 0, covered / area, 0.0)

    lost = np.isin(kind, [CONSTRUCTION, DIGGING])
    suspect = (
        lost & (black_area > rules.min_piece_area) & (cover_share < rules.approved_cover_share)
    )
    county = changes["XZQDM"].to_numpy(dtype=object)
    sel = np.flatnonzero(suspect)
    evidence = [
        f"{b}{LANDUSE_NAMES.get(b, '')}→{a}{LANDUSE_NAMES.get(a, '')}；黑土{h:.2f}㎡；"
        f"已批项目覆盖{s:.1%}（需≥{rules.approved_cover_share:.0%}）"
        for b, a, h, s in zip(
            before[sel], after[sel], black_official[sel], cover_share[sel], strict=True
        )
    ]
    illegal = gpd.GeoDataFrame(
        {
            "LX": kind[sel],
            "BGBSM": _text_field(changes, "id")[sel],
            "XZQDM": county[sel],
            "XZQMC": np.array([names.get(c, "") for c in county[sel]], dtype=object),
            "BGQDLBM": before[sel],
            "BGQDLMC": np.array([LANDUSE_NAMES.get(c) for c in before[sel]], dtype=object),
            "BGHDLBM": after[sel],
            "BGHDLMC": np.array([LANDUSE_NAMES.get(c) for c in after[sel]], dtype=object),
            "TL": soil_groups[sel],
            "BGMJ": official[sel],
            "MJ": np.round(black_area[sel], 2),
            "HTMJ": black_official[sel],
            "PZFGMJ": np.round(covered[sel], 2),
            "PZFGBL": np.round(cover_share[sel], 4),
            "PZXM": approved_names[sel],
            "WPXM": unapproved_names[sel],
            "ZJ": np.array(evidence, dtype=object),
        },
        geometry=black_geom[sel],
        crs=changes.crs,
    )
    order = np.lexsort((illegal["BGBSM"].astype(str).to_numpy(), -illegal["HTMJ"].to_numpy()))
    illegal = illegal.iloc[order].reset_index(drop=True)

    balance = _balance_table(kind, county, official, black_official, suspect, names)
    counts = {
        "changes": n,
        "changes_construction": int((kind == CONSTRUCTION).sum()),
        "changes_digging": int((kind == DIGGING).sum()),
        "changes_added": int((kind == ADDED).sum()),
        "changes_other_loss": int((kind == OTHER_LOSS).sum()),
        "suspected_illegal": int(suspect.sum()),
    }
    return illegal, balance, counts


def _balance_table(
    kind: np.ndarray,
    county: np.ndarray,
    official: np.ndarray,
    black_official: np.ndarray,
    suspect: np.ndarray,
    names: dict[str, str],
) -> pd.DataFrame:
    """占补平衡 per county (HTGD_ZBPH), in integer cents summed, then m²."""
    cents = np.round(official * 100).astype(np.int64)
    black = np.round(black_official * 100).astype(np.int64)
    lost = np.isin(kind, [CONSTRUCTION, DIGGING])
    frame = pd.DataFrame(
        {
            "XZQDM": county,
            "ZYGDMJ": np.where(lost, cents, 0),
            "ZYHTMJ": np.where(lost, black, 0),
            "JSZYHTMJ": np.where(kind == CONSTRUCTION, black, 0),
            "DWHTMJ": np.where(kind == DIGGING, black, 0),
            "WFZYHTMJ": np.where(suspect, black, 0),
            "QTJSGDMJ": np.where(kind == OTHER_LOSS, cents, 0),
            "BCGDMJ": np.where(kind == ADDED, cents, 0),
            "BCHTMJ": np.where(kind == ADDED, black, 0),
        }
    )
    return balance_from_cents(frame[kind != ""], names)


def balance_from_cents(rows: pd.DataFrame, names: dict[str, str]) -> pd.DataFrame:
    """The 占补平衡 table from per-change (or per-county) rows in integer cents: summed per
    county, a 合计 row, the balances, then m² (also used to merge partitions' tables)."""
    table = rows.groupby("XZQDM", sort=True).sum()
    table.loc["合计"] = table.sum()
    table["GDPHMJ"] = table["BCGDMJ"] - table["ZYGDMJ"]
    table["HTPHMJ"] = table["BCHTMJ"] - table["ZYHTMJ"]
    table = table / 100
    table["SFPH"] = np.where(table["HTPHMJ"] >= 0, "是", "否")
    table = table.reset_index()
    table.insert(1, "XZQMC", [names.get(c, "全部" if c == "合计" else "") for c in table["XZQDM"]])
    return table


def analyse_protection(
    pieces: gpd.GeoDataFrame,
    inputs: ProtectionInputs,
    rules: ProtectionRules,
    *,
    cover: SoilCover | None = None,
    region: np.ndarray | None = None,
    names: dict[str, str] | None = None,
    qa: QALog | None = None,
    threads: int = 1,
    max_vertices: int = 256,
) -> ProtectionResult:
    """Protection status of the black-soil pieces and the conflict lists.

    Parameters
    ----------
    pieces : GeoDataFrame
        The archive pieces (HTGDTB) with DABH, BSM, XZQDM, TL, TBMJ, KCMJ, TBDLMJ.
    inputs : ProtectionInputs
        The cleaned layers; an absent one skips its analysis.
    rules : ProtectionRules
        Codes and thresholds.
    cover : SoilCover, optional
        The survey's soil cover (needed for the change parcels: which of them were black soil).
    region : ndarray, optional
        The black-soil region polygons; change parcels count only inside it.
    names : dict, optional
        County code → name.
    qa : QALog, optional
        Where repairs are recorded.

    Returns
    -------
    ProtectionResult
    """
    qa = qa if qa is not None else QALog()
    names = names or {}
    n = len(pieces)
    fields: dict[str, np.ndarray] = {}
    result = ProtectionResult(pd.DataFrame(index=pd.RangeIndex(n)))
    conflicts: list[gpd.GeoDataFrame] = []
    for name, (prefix, _) in ZONES.items():
        zones = getattr(inputs, name)
        if zones is None:
            result.status[name] = f"skipped: no inputs.{name}"
            continue
        zone_fields, split, clean = _zone_analysis(
            name, zones, pieces, rules, qa, threads, max_vertices
        )
        fields.update(zone_fields)
        result.counts[f"{name}_merged_slivers"] = split.merged_slivers
        if name == "basic_farmland":
            whole = np.ones(n, dtype=bool)
            whole[split.out_piece] = False
            any_in = np.zeros(n, dtype=bool)
            any_in[split.piece] = True
            fields["SFWJBNT"] = (~whole).astype(np.int32)
            fields["BHZT"] = np.where(
                whole & any_in, STATUS_IN, np.where(any_in, STATUS_PART, STATUS_OUT)
            ).astype(object)
            outside = _outside_layer(pieces, split)
            result.layers["HTGD_DNRHX"] = outside
            result.counts["outside_basic_farmland"] = len(outside)
        else:
            flag = np.zeros(n, dtype=np.int32)
            flag[split.piece] = 1
            fields[f"SF{prefix}"] = flag
            conflicts.append(_conflict_rows(name, pieces, split, clean))
        result.status[name] = "done"
    if conflicts:
        zoning = pd.concat(conflicts, ignore_index=True)
        zoning = gpd.GeoDataFrame(zoning, geometry="geometry", crs=pieces.crs)
        result.layers["HTGD_GHCT"] = zoning
        result.counts["zoning_conflicts"] = len(zoning)

    projects = inputs.construction
    if projects is None:
        result.status["construction"] = "skipped: no inputs.construction"
    else:
        c_fields, occupation, totals = _construction_analysis(
            projects, pieces, threads, max_vertices
        )
        fields.update(c_fields)
        result.layers["HTGD_JSZY"] = occupation
        result.layers["HTGD_JSZYHZ"] = totals
        result.counts["construction_occupations"] = len(occupation)
        result.status["construction"] = "done"

    if inputs.changes is None:
        result.status["changes"] = "skipped: no inputs.changes"
    elif cover is None:
        result.status["changes"] = "skipped: no soil cover"
    else:
        illegal, balance, counts = _change_analysis(
            inputs.changes,
            projects,
            cover,
            region,
            rules,
            pieces.crs,
            names,
            qa,
            threads,
            max_vertices,
        )
        result.layers["HTGD_WFZY"] = illegal
        result.layers["HTGD_ZBPH"] = balance
        result.counts.update(counts)
        result.status["changes"] = "done"
        if projects is None:
            result.status["changes"] += " (no inputs.construction: no change parcel is covered)"

    for col, values in fields.items():
        result.fields[col] = values
    return result
