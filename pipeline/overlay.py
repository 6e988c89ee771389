"""The overlay engine: polygons × a set of disjoint polygons, fast.

``overlay(left, right)`` cuts every left polygon (a land parcel) by the right polygons (soil-map
polygons, a region, a zone) and returns one piece per (left, right) pair that share area. It knows
nothing of configs, files or fields: it takes and gives geometry arrays and indices.

How it is fast (DESIGN.md §6):

1. right polygons are split into small parts of at most ``max_vertices`` vertices (a recursive
   halving of their bounding boxes, like PostGIS ``ST_Subdivide``), so that every test touches few
   vertices, and the parts go into an STRtree;
2. a left polygon that lies wholly inside a right polygon (prepared ``covers``: its boundary
   may run along the right polygon's, as a zone drawn along parcel edges does) is taken whole:
   no intersection at all; in a soil map with its gaps, one whose candidate parts all belong
   to one right polygon needs no test;
3. only the pairs that cross a boundary are intersected, vectorised (shapely releases the GIL, so
   chunks run on threads); where the right polygons tile the left ones (a soil map with its
   gaps), one right polygon, that of most candidate parts, gets no intersection at all: its
   piece is the left polygon less the other pieces, one difference of two small polygons;
4. the parts of one (left, right) pair that a subdivision line cut apart are merged back.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from itertools import pairwise

import numpy as np
import shapely
from shapely import GeometryType

from .qa import polygonal_part

_CHUNK = 20_000


@dataclass(frozen=True)
class OverlayResult:
    """Pieces of an overlay, sorted by (left, right).

    Attributes
    ----------
    left, right : ndarray of intp
        Index of the left and right polygon each piece comes from.
    geometry : ndarray of shapely geometries
        The piece (the left polygon itself where it lies wholly inside the right polygon).
    whole : ndarray of bool
        True where the piece is the whole left polygon (fast path, no intersection computed).
    """

    left: np.ndarray
    right: np.ndarray
    geometry: np.ndarray
    whole: np.ndarray

    def __len__(self) -> int:
        return len(self.left)


def default_threads() -> int:
    """One thread per CPU core, at most 8."""
    return max(1, min(8, os.cpu_count() or 1))


def _map_chunks(
    func: Callable[..., np.ndarray], arrays: tuple[np.ndarray, ...], threads: int
) -> np.ndarray:
    """Apply a vectorised shapely function chunk-wise on threads, keeping the order."""
    n = len(arrays[0])
    if threads <= 1 or n <= _CHUNK:
        return func(*arrays)
    bounds = [*range(0, n, _CHUNK), n]
    with ThreadPoolExecutor(threads) as pool:
        results = list(
            pool.map(lambda ab: func(*(a[ab[0] : ab[1]] for a in arrays)), pairwise(bounds))
        )
    return np.concatenate(results)


#: a piece thinner than this on average (twice its area over its perimeter, m), and no larger
#: than :data:`NOISE_SHARE` of its left polygon, is rounding, not land, and is not kept: where
#: two boundaries run together a sliver of a few ulps of GK coordinates is left (one ulp at
#: 4e7 m is 7e-9 m), and a remainder's polygon that only comes near leaves one. Anything wider,
#: were it a micrometre, is a piece (a sliver, merged and logged)
NOISE_WIDTH_M = 1e-7
#: the most of its left polygon's area (or :data:`NOISE_FLOOR_M2`, if more) that a piece of
#: rounding may have: a hundredth of what the survey's conservation check allows a parcel
#: (``survey.CONSERVATION_TOLERANCE``, ``CONSERVATION_FLOOR_M2``), so that what is left out as
#: rounding never unbalances a parcel, however thin the parcel itself (a parcel a micrometre
#: wide is cut into pieces that thin, and they are land: all of it)
NOISE_SHARE = 1e-8
NOISE_FLOOR_M2 = 1e-8

#: snap-rounding grid (m) for the rare intersections that fail in floating point
_SNAP_GRID = 1e-6


def safe_intersection(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Vectorised intersection; a chunk that hits a GEOS topology error is redone with
    snap-rounding on a micrometre grid, which is robust and moves no boundary measurably."""
    try:
        return shapely.intersection(a, b)
    except shapely.errors.GEOSException:
        return shapely.intersection(a, b, grid_size=_SNAP_GRID)


def safe_difference(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Vectorised difference with the same snap-rounding fallback as :func:`safe_intersection`."""
    try:
        return shapely.difference(a, b)
    except shapely.errors.GEOSException:
        return shapely.difference(a, b, grid_size=_SNAP_GRID)


def map_chunks(
    func: Callable[..., np.ndarray], arrays: tuple[np.ndarray, ...], threads: int
) -> np.ndarray:
    """Public alias of the chunked thread map, for the stages built on this engine."""
    return _map_chunks(func, arrays, threads)


def _union_rows(a: np.ndarray) -> np.ndarray:
    """Union of each row of a padded 2-D geometry array (with the same snap-rounding fallback)."""
    try:
        return shapely.union_all(a, axis=1)
    except shapely.errors.GEOSException:
        return shapely.union_all(a, axis=1, grid_size=_SNAP_GRID)


def _clip(
    geoms: np.ndarray, x0: np.ndarray, y0: np.ndarray, x1: np.ndarray, y1: np.ndarray, threads: int
) -> np.ndarray:
    """Clip each geometry by its own rectangle.

    GEOS's rectangle clipping is an order of magnitude faster than a general intersection, but
    shapely takes one rectangle per call, so this loops over the (few, large) soil parts being
    split, never over parcels. Its result is not guaranteed valid in degenerate cases, and on
    some slivers crossing the rectangle's edge it raises (a ring of three points): those are
    redone with the general intersection.
    """
    out = np.array(
        [_clip_one(g, a, b, c, d) for g, a, b, c, d in zip(geoms, x0, y0, x1, y1, strict=True)],
        dtype=object,
    )
    # the two halves of a polygon must add up to it; anything else is redone exactly
    half = len(geoms) // 2
    area = shapely.area(out)
    parent = shapely.area(geoms[:half])
    bad = ~(np.abs(area[:half] + area[half:] - parent) <= 1e-9 * parent)  # NaN: a refused clip
    bad = np.concatenate([bad, bad]) | ~np.isin(
        shapely.get_type_id(out), (GeometryType.POLYGON, GeometryType.MULTIPOLYGON)
    )
    if bad.any():
        boxes = shapely.box(x0[bad], y0[bad], x1[bad], y1[bad])
        out[bad] = _map_chunks(safe_intersection, (geoms[bad], boxes), threads)
    return out


def _clip_one(geom: object, x0: float, y0: float, x1: float, y1: float) -> object:
    """``clip_by_rect``, or None where GEOS refuses the result (redone by the caller)."""
    try:
        return shapely.clip_by_rect(geom, x0, y0, x1, y1)
    except shapely.errors.GEOSException:
        return None


def subdivide(
    geoms: np.ndarray, max_vertices: int = 256, threads: int = 1
) -> tuple[np.ndarray, np.ndarray]:
    """Split polygons into polygon parts of at most ``max_vertices`` vertices.

    Each polygon with too many vertices is cut in two halves of its bounding box along the longer
    side, recursively; the halves of all polygons at one depth are computed in one vectorised call.

    Parameters
    ----------
    geoms : ndarray of Polygon/MultiPolygon
    max_vertices : int
        Largest number of vertices a part may keep (parts of tiny area may keep more when a
        box can no longer be halved).
    threads : int
        Threads for the intersections.

    Returns
    -------
    parts : ndarray of Polygon
    owner : ndarray of intp
        Index into ``geoms`` of the polygon each part comes from.

    Examples
    --------
    >>> import shapely
    >>> circle = shapely.Point(0, 0).buffer(100, quad_segs=256)
    >>> parts, owner = subdivide(np.array([circle]), 64)
    >>> bool(abs(shapely.area(parts).sum() - circle.area) < 1e-6)
    True
    """
    parts, owner = shapely.get_parts(np.asarray(geoms, dtype=object), return_index=True)
    done_parts: list[np.ndarray] = []
    done_owner: list[np.ndarray] = []
    for _depth in range(40):
        counts = shapely.get_num_coordinates(parts)
        small = counts <= max_vertices
        done_parts.append(parts[small])
        done_owner.append(owner[small])
        big, big_owner = parts[~small], owner[~small]
        if len(big) == 0:
            break
        xmin, ymin, xmax, ymax = shapely.bounds(big).T
        wide = (xmax - xmin) >= (ymax - ymin)
        xmid = np.where(wide, (xmin + xmax) / 2, xmax)
        ymid = np.where(wide, ymax, (ymin + ymax) / 2)
        x0 = np.concatenate([xmin, np.where(wide, xmid, xmin)])
        y0 = np.concatenate([ymin, np.where(wide, ymin, ymid)])
        x1 = np.concatenate([xmid, xmax])
        y1 = np.concatenate([ymid, ymax])
        halves = _clip(np.concatenate([big, big]), x0, y0, x1, y1, threads)
        halves = polygonal_part(halves)
        halves_owner = np.concatenate([big_owner, big_owner])
        present = ~shapely.is_missing(halves)
        halves, halves_owner = halves[present], halves_owner[present]
        parts, sub = shapely.get_parts(halves, return_index=True)
        owner = halves_owner[sub]
        keep = shapely.area(parts) > 0
        parts, owner = parts[keep], owner[keep]
    else:  # pragma: no cover - 40 halvings shrink any box below float resolution
        done_parts.append(parts)
        done_owner.append(owner)
    return np.concatenate(done_parts), np.concatenate(done_owner)


def group_union(
    geoms: np.ndarray, groups: np.ndarray, threads: int = 1
) -> tuple[np.ndarray, np.ndarray]:
    """Union the geometries of each group; return (group ids sorted, merged geometry).

    Groups of one geometry keep it as is; larger groups are unioned with one vectorised
    ``union_all`` over a padded (groups × size) array, per size class so padding stays small.
    """
    order = np.argsort(groups, kind="stable")
    groups_sorted = groups[order]
    geoms_sorted = geoms[order]
    uniq, start, counts = np.unique(groups_sorted, return_index=True, return_counts=True)
    merged = geoms_sorted[start].copy()
    multi = np.flatnonzero(counts > 1)
    if len(multi):
        # size classes 2, 3-4, 5-8, ... keep the padded arrays dense
        size_class = np.ceil(np.log2(counts[multi])).astype(int)
        for cls in np.unique(size_class):
            sel = multi[size_class == cls]
            width = int(counts[sel].max())
            padded = np.full((len(sel), width), None, dtype=object)
            rows = np.repeat(np.arange(len(sel)), counts[sel])
            offsets = np.arange(counts[sel].sum()) - np.repeat(
                np.cumsum(counts[sel]) - counts[sel], counts[sel]
            )
            src = np.repeat(start[sel], counts[sel]) + offsets
            padded[rows, offsets] = geoms_sorted[src]
            merged[sel] = _map_chunks(_union_rows, (padded,), threads)
    return uniq, merged


def covers(right: np.ndarray, which: np.ndarray, left: np.ndarray) -> np.ndarray:
    """``right[which[i]].covers(left[i])`` with prepared right polygons: no point of the left
    polygon lies outside the right one. (A parcel inside a zone drawn along its own edges is
    covered, not properly contained: it needs no overlay operation either.)

    Prepared geometries build their indexes lazily and are not safe to share between threads,
    so this runs on one thread, over private copies that are released afterwards.
    """
    used = np.unique(which)
    prepared = shapely.from_wkb(shapely.to_wkb(right[used]))
    shapely.prepare(prepared)
    try:
        return shapely.covers(prepared[np.searchsorted(used, which)], left)
    finally:
        shapely.destroy_prepared(prepared)


def _polygonal(pieces: np.ndarray, lefts: np.ndarray) -> np.ndarray:
    """The polygonal part of each result of an overlay operation; None where it has no area,
    or none but rounding (:data:`NOISE_WIDTH_M`, of at most :data:`NOISE_SHARE` of its left
    polygon, ``lefts``, one for each piece)."""
    odd = ~np.isin(shapely.get_type_id(pieces), (GeometryType.POLYGON, GeometryType.MULTIPOLYGON))
    if odd.any():
        pieces = pieces.copy()
        pieces[odd] = polygonal_part(pieces[odd])
    area = np.zeros(len(pieces))
    some = ~shapely.is_missing(pieces)
    area[some] = shapely.area(pieces[some])
    small = some & (area < 0.01)  # a sliver of 0.01 m² would be 200 km long
    thin = np.zeros(len(pieces), dtype=bool)
    thin[small] = 2 * area[small] <= NOISE_WIDTH_M * shapely.length(pieces[small])
    if thin.any():  # and small beside its left polygon
        most = np.maximum(NOISE_SHARE * shapely.area(lefts[thin]), NOISE_FLOOR_M2)
        thin[thin] = area[thin] <= most
    return np.where((area > 0) & ~thin, pieces, None)


def _remainders(
    lefts: np.ndarray, rights: np.ndarray, ranks: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """For each left polygon among the (left, right part's owner) candidate pairs, the right
    polygon that takes, by difference, what the others leave: of those of rank 0 or more, the
    one of most candidate parts (ties: the lowest rank). Returns (left polygons, their right
    polygons), sorted by left; a left polygon with no such candidate has none."""
    n_right = len(ranks)
    key, count = np.unique(lefts.astype(np.int64) * n_right + rights, return_counts=True)
    left, right = key // n_right, key % n_right
    able = ranks[right] >= 0
    left, right, count = left[able], right[able], count[able]
    order = np.lexsort((ranks[right], -count, left))
    first = order[np.r_[True, left[order][1:] != left[order][:-1]]] if len(order) else order
    return left[first].astype(np.intp), right[first].astype(np.intp)


def overlay(
    left: np.ndarray,
    right: np.ndarray,
    *,
    max_vertices: int = 256,
    threads: int = 1,
    complete: bool = False,
    disjoint: bool = True,
    ranks: np.ndarray | None = None,
) -> OverlayResult:
    """Cut each left polygon by the (disjoint) right polygons.

    Parameters
    ----------
    left : ndarray of Polygon/MultiPolygon
        Valid polygons (land parcels); None entries are skipped.
    right : ndarray of Polygon/MultiPolygon
        Valid polygons that do not overlap one another (a soil map, a zone layer).
    max_vertices : int
        Subdivision limit for the right polygons.
    threads : int
        Threads for the vectorised predicates and intersections.
    complete : bool
        True when the right polygons tile all of the left polygons' area (a soil map together
        with its gaps). A left polygon whose candidate parts then all come from one right
        polygon lies inside it, and needs no test at all.
    disjoint : bool
        False when right polygons may overlap one another (construction projects): a left
        polygon inside one right polygon is then still cut by the others.
    ranks : ndarray of int, optional
        With ``complete``: each right polygon's rank in an order that does not depend on the
        run (a soil polygon's id), negative for one that may differ from run to run (a gap,
        whose shape depends on the extent read). A left polygon cut by several right polygons
        then takes the piece of one of them, of rank 0 or more, as what the others leave (one
        difference instead of intersections with each of its parts): the one of most
        candidate parts, ties to the lowest rank, so that every run chooses the same one and
        the pieces are the same whatever part of the map a run reads.

    Returns
    -------
    OverlayResult
        One piece per (left, right) pair whose intersection has area, sorted by (left, right).
        Left area outside every right polygon has no piece.

    Examples
    --------
    >>> import shapely
    >>> parcel = shapely.box(0, 0, 10, 10)
    >>> soil = np.array([shapely.box(-5, -5, 5, 15), shapely.box(5, -5, 15, 15)])
    >>> res = overlay(np.array([parcel]), soil)
    >>> res.right.tolist(), shapely.area(res.geometry).tolist()
    ([0, 1], [50.0, 50.0])
    """
    left = np.asarray(left, dtype=object)
    right = np.asarray(right, dtype=object)
    empty = OverlayResult(
        np.empty(0, np.intp), np.empty(0, np.intp), np.empty(0, object), np.empty(0, bool)
    )
    if len(left) == 0 or len(right) == 0:
        return empty
    parts, owner = subdivide(right, max_vertices, threads)
    tree = shapely.STRtree(parts)
    # envelope candidates only: the exact tests below are cheaper on the original polygons
    li, pi = tree.query(left)
    if len(li) == 0:
        return empty
    ri = owner[pi]

    # a left polygon lying wholly inside one right polygon is taken as it is
    pair = np.unique(li.astype(np.int64) * len(right) + ri)
    cand_left, cand_right = pair // len(right), pair % len(right)
    inside = np.zeros(len(pair), dtype=bool)
    test = np.ones(len(pair), dtype=bool)
    if complete and disjoint:
        # every point of a left polygon lies in some right polygon, whose parts are candidates
        counts = np.bincount(cand_left, minlength=len(left))
        inside = counts[cand_left] == 1
        test = ~inside
    inside[test] = covers(right, cand_right[test], left[cand_left[test]])
    whole_left = cand_left[inside]
    whole_right = cand_right[inside]

    # every other pair is cut along the boundary
    if disjoint:
        is_whole = np.zeros(len(left), dtype=bool)
        is_whole[whole_left] = True
        cut = ~is_whole[li]
    else:
        cut = ~np.isin(li.astype(np.int64) * len(right) + ri, pair[inside])
    cli, cpi, cri = li[cut], pi[cut], ri[cut]
    rest_left = rest_right = np.empty(0, np.intp)
    if complete and disjoint and ranks is not None and len(cli):
        # the right polygons tile each cut left polygon: one of them takes what the others
        # leave, and its parts need no intersection (nor their pieces a union)
        rest_left, rest_right = _remainders(cli, cri, np.asarray(ranks, dtype=np.int64))
        rest_of = np.full(len(left), -1, dtype=np.intp)
        rest_of[rest_left] = rest_right
        other = cri != rest_of[cli]
        cli, cpi, cri = cli[other], cpi[other], cri[other]
    lefts = left[cli]
    pieces = _polygonal(_map_chunks(safe_intersection, (lefts, parts[cpi]), threads), lefts)
    keep = ~shapely.is_missing(pieces)
    cli, cri, pieces = cli[keep], cri[keep], pieces[keep]

    # merge parts of one (left, right) pair split by subdivision lines
    key = cli.astype(np.int64) * len(right) + cri
    uniq_key, merged = group_union(pieces, key, threads)
    cut_left = uniq_key // len(right)
    cut_right = uniq_key % len(right)

    if len(rest_left):
        # the remainders: a left polygon less its other pieces (itself where it has none)
        with_others, others = group_union(merged, cut_left, threads)
        alone = ~np.isin(rest_left, with_others)
        cut_rest = rest_left[~alone]
        lefts = left[cut_rest]
        rest = _polygonal(
            _map_chunks(
                safe_difference,
                (lefts, others[np.searchsorted(with_others, cut_rest)]),
                threads,
            ),
            lefts,
        )
        some = ~shapely.is_missing(rest)
        whole_left = np.concatenate([whole_left, rest_left[alone]])
        whole_right = np.concatenate([whole_right, rest_right[alone]])
        cut_left = np.concatenate([cut_left, cut_rest[some]])
        cut_right = np.concatenate([cut_right, rest_right[~alone][some]])
        merged = np.concatenate([merged, rest[some]])

    all_left = np.concatenate([whole_left, cut_left])
    all_right = np.concatenate([whole_right, cut_right])
    geometry = np.concatenate([left[whole_left], merged])
    whole = np.concatenate([np.ones(len(whole_left), bool), np.zeros(len(cut_left), bool)])
    order = np.lexsort((all_right, all_left))
    return OverlayResult(
        all_left[order].astype(np.intp),
        all_right[order].astype(np.intp),
        geometry[order],
        whole[order],
    )
