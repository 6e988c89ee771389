"""Parcels that overlap across partitions: found after the partitions, as a single run finds them.

A single run logs every pair of overlapping cultivated parcels (QA check ``overlap``, on the later
parcel of the pair in reading order). A partition sees only its own parcels, so each one keeps
its parcels' keys, boxes and geometries (:func:`parcel_shapes`, a partial layer), and the merge
pairs the parcels of different partitions (:func:`crossing_overlaps`). Only the parcels in the
cells of a coarse grid that hold parcels of two partitions or more are compared: those along the
partitions' edges, and wherever two partitions' parcels lie on each other.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import geopandas as gpd
import numpy as np
import pandas as pd
import pyarrow as pa
import shapely
from pyproj import CRS, Transformer

from .archive import wkb_array
from .overlay import safe_intersection
from .qa import QA_COLUMNS
from .sources import FID

#: the partial layer of a partition's cultivated parcels: keys, boxes and geometries
SHAPES = "_parcel_shapes"
#: its columns besides the geometry's WKB (``wkb``)
KEYS = ["file", FID, "id"]
BOUNDS = ["xmin", "ymin", "xmax", "ymax"]
#: the smallest shared area logged, m² (below it, digitising noise)
MIN_SHARED = 0.01
ACTION = "kept; the shared area is counted in both parcels"


def overlap_problem(other: str, area: float) -> str:
    """The QA problem of a parcel that overlaps an earlier one."""
    return f"overlaps parcel {other} by {area:.2f} m²"


def overlapping(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Which pairs of polygons share interior (one overlaps, contains or lies within the other:
    their interiors meet), in one relate."""
    return shapely.relate_pattern(a, b, "T********")


def _mix(z: np.ndarray) -> np.ndarray:
    """SplitMix64's finaliser: each bit of the 64-bit words moves about half the bits of the
    result (so do the few high bits of a round coordinate's float)."""
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def unshared_edges(geoms: np.ndarray) -> np.ndarray:
    """Which polygons have an edge (a segment between two vertices) that no other polygon
    shares the other way round, vertex for vertex: in a coverage (parcels that neither overlap
    nor leave gaps, drawn on common vertices) only those on its outer edge and those whose
    neighbours' vertices do not match theirs.

    Where polygons overlap, some of them has such an edge and lies in the overlap: the number of
    polygons over a point changes only across an unshared edge, so the edge of an overlapped
    area is one, and the polygon it bounds on the overlapped side overlaps another. So only the
    polygons this names need be paired to learn whether any overlap at all.

    Rings are taken anticlockwise for shells and clockwise for holes, so that a shared edge runs
    one way in each of its two polygons. Valid polygons; missing and empty ones have no edge.

    Examples
    --------
    >>> import shapely
    >>> grid = [shapely.box(i, j, i + 1, j + 1) for j in range(3) for i in range(3)]
    >>> unshared_edges(np.array(grid)).astype(int).tolist()  # only the middle one is inside
    [1, 1, 1, 1, 0, 1, 1, 1, 1]
    >>> grid[4] = shapely.box(1, 1, 2, 2, ccw=False)  # drawn clockwise: the same
    >>> bool(unshared_edges(np.array(grid))[4])
    False
    >>> unshared_edges(np.array(grid + [grid[4]]))[[4, 9]].tolist()  # there twice
    [True, True]
    """
    geoms = np.asarray(geoms, dtype=object)
    flagged = np.zeros(len(geoms), dtype=bool)
    simple = shapely.get_type_id(geoms) == shapely.GeometryType.POLYGON
    simple[simple] = shapely.get_num_interior_rings(geoms[simple]) == 0
    # rings: each simple polygon is its shell; the others' parts' rings, shell first
    parts, part_of = shapely.get_parts(geoms[~simple], return_index=True)
    rings, ring_part = shapely.get_rings(parts, return_index=True)
    shell = np.ones(len(rings), dtype=bool)
    shell[1:] = ring_part[1:] != ring_part[:-1]
    owner = np.concatenate([np.flatnonzero(simple), np.flatnonzero(~simple)[part_of[ring_part]]])
    shell = np.concatenate([np.ones(int(simple.sum()), dtype=bool), shell])
    rings = np.concatenate([geoms[simple], rings])
    counts = shapely.get_num_coordinates(rings)
    xy = shapely.get_coordinates(rings) + 0.0  # (-0.0 is 0.0, bit for bit)
    if len(xy) == 0:
        return flagged
    ends = np.cumsum(counts)
    x, y = xy[:, 0], xy[:, 1]
    # a segment from each vertex but the ring's closing one
    first = np.ones(len(xy), dtype=bool)
    first[ends[counts > 0] - 1] = False
    seg = np.flatnonzero(first)
    ring = np.repeat(np.arange(len(rings)), counts)[seg]
    # twice the signed area of each ring: positive anticlockwise
    twice = np.bincount(ring, x[seg] * y[seg + 1] - x[seg + 1] * y[seg], minlength=len(rings))
    turn = (twice < 0) == shell  # clockwise shells and anticlockwise holes run the other way
    a = np.where(turn[ring], seg + 1, seg)
    b = np.where(turn[ring], seg, seg + 1)
    # the undirected segment (lower end first) and which way the ring runs along it
    back = (x[a] > x[b]) | ((x[a] == x[b]) & (y[a] > y[b]))
    lo, hi = np.where(back, b, a), np.where(back, a, b)
    key = np.stack([x[lo], y[lo], x[hi], y[hi]], axis=1)
    bits = key.view(np.uint64)
    mixed = _mix(_mix(_mix(_mix(bits[:, 0]) ^ bits[:, 1]) ^ bits[:, 2]) ^ bits[:, 3])
    order = np.argsort(mixed)
    mixed, key = mixed[order], key[order]
    new = np.ones(len(order), dtype=bool)
    new[1:] = mixed[1:] != mixed[:-1]
    group = np.cumsum(new) - 1
    # a group of segments with one key but other coordinates (a collision) is never shared
    other = ~new
    other[1:] &= np.any(key[1:] != key[:-1], axis=1)
    collided = np.bincount(group, other) > 0
    way = np.where(back[order], -1, 1)
    shared = (np.bincount(group) == 2) & (np.bincount(group, way) == 0) & ~collided
    flagged[owner[ring[order[~shared[group]]]]] = True
    return flagged


def parcel_shapes(
    geoms: np.ndarray, files: np.ndarray, fids: np.ndarray, ids: np.ndarray
) -> pd.DataFrame:
    """A partition's parcels for :func:`crossing_overlaps`: the index of their file among the
    input's files, their FID and id (reading order is (file, FID)), their boxes and WKB."""
    bounds = shapely.bounds(geoms)
    frame = pd.DataFrame(
        {
            "file": np.asarray(files, dtype=np.int64),
            FID: np.asarray(fids, dtype=np.int64),
            "id": np.asarray(ids, dtype=object).astype(str),
        }
    )
    for k, name in enumerate(BOUNDS):
        frame[name] = bounds[:, k]
    frame["wkb"] = pd.arrays.ArrowExtensionArray(wkb_array(geoms, multi=False))
    return frame


def crossing_overlaps(
    boxes: Sequence[pa.Table],
    crs: Sequence[str],
    wkb: Callable[[int], pa.ChunkedArray],
) -> pd.DataFrame:
    """QA rows of the pairs of parcels of different partitions that overlap, as a single run
    writes them: on the later parcel in reading order, naming the earlier one and the shared
    area (more than :data:`MIN_SHARED` m²).

    Parameters
    ----------
    boxes : list of pyarrow.Table
        Per partition: its parcels' :data:`KEYS` and :data:`BOUNDS`.
    crs : list of str
        Per partition: its working CRS (WKT); the boxes are compared in the first one's, the
        two parcels of a pair in the later parcel's.
    wkb : callable
        The WKB of a partition's parcels (all of them, in the order of its boxes).
    """
    sizes = [b.num_rows for b in boxes]
    empty = pd.DataFrame({c: pd.Series(dtype=object) for c in QA_COLUMNS})
    if sum(1 for n in sizes if n) < 2:
        return empty
    part = np.repeat(np.arange(len(boxes)), sizes)
    row = np.concatenate([np.arange(n) for n in sizes])
    bounds = np.concatenate(
        [_in_crs(_numbers(b, BOUNDS), crs[k], crs[0]) for k, b in enumerate(boxes)]
    )
    near = _shared_cells(bounds, part)
    if len(near) == 0:
        return empty
    near_boxes = shapely.box(*bounds[near].T)
    a, b = shapely.STRtree(near_boxes).query(near_boxes)  # (the boxes' envelopes meet)
    a, b = near[a], near[b]
    keep = part[a] < part[b]  # each pair once, of two partitions
    a, b = a[keep], b[keep]
    if len(a) == 0:
        return empty
    file, fid = (
        np.concatenate([t.column(c).to_numpy().astype(np.int64) for t in boxes])
        for c in ("file", FID)
    )
    order = file * (1 << 40) + fid  # reading order: file by file, FID by FID
    first = np.where(order[a] < order[b], a, b)  # the earlier parcel of each pair
    later = np.where(order[a] < order[b], b, a)
    geoms = _geometries(np.concatenate([first, later]), part, row, wkb)
    g_first, g_later = geoms[: len(first)], geoms[len(first) :]
    for k in np.unique(part[later]).tolist():  # the earlier parcel in the later one's CRS
        at = (part[later] == k) & (part[first] != k)
        for j in np.unique(part[first][at]).tolist():
            sel = at & (part[first] == j)
            g_first[sel] = _to_crs(g_first[sel], crs[j], crs[k])
    hit = overlapping(g_first, g_later)
    first, later, g_first, g_later = first[hit], later[hit], g_first[hit], g_later[hit]
    shared = shapely.area(safe_intersection(g_first, g_later))
    real = shared > MIN_SHARED
    if not real.any():
        return empty
    wanted = np.unique(np.concatenate([first[real], later[real]]))
    ids = np.empty(len(order), dtype=object)
    ids[wanted] = pa.chunked_array([t.column("id") for t in boxes]).take(wanted).to_pylist()
    return pd.DataFrame(
        {
            "layer": "parcels",
            "feature_id": ids[later[real]].astype(str),
            "check": "overlap",
            "problem": [
                overlap_problem(i, s) for i, s in zip(ids[first[real]], shared[real], strict=True)
            ],
            "action": ACTION,
        },
        columns=QA_COLUMNS,
    )


def _shared_cells(bounds: np.ndarray, part: np.ndarray) -> np.ndarray:
    """The rows whose box lies in a cell of a coarse grid that boxes of two partitions or more
    lie in (cells of four times the 90th percentile of the boxes' sides: most boxes lie in one
    to four of them; a larger one is put in every cell it spans)."""
    sides = np.maximum(bounds[:, 2] - bounds[:, 0], bounds[:, 3] - bounds[:, 1])
    size = max(4.0 * float(np.percentile(sides, 90)), 1.0)
    x0, y0 = bounds[:, 0].min(), bounds[:, 1].min()
    i0 = np.floor((bounds[:, 0] - x0) / size).astype(np.int64)
    i1 = np.floor((bounds[:, 2] - x0) / size).astype(np.int64)
    j0 = np.floor((bounds[:, 1] - y0) / size).astype(np.int64)
    j1 = np.floor((bounds[:, 3] - y0) / size).astype(np.int64)
    nx, ny = i1 - i0 + 1, j1 - j0 + 1
    count = nx * ny
    rows = np.repeat(np.arange(len(bounds)), count)
    step = np.arange(len(rows)) - np.repeat(np.cumsum(count) - count, count)
    ci = i0[rows] + step // ny[rows]
    cj = j0[rows] + step % ny[rows]
    cell = ci * (int(j1.max()) + 1) + cj
    # the cells with boxes of more than one partition
    parts = int(part.max()) + 1
    cells = np.unique(cell * parts + part[rows]) // parts  # sorted, once per partition in it
    shared = np.unique(cells[1:][cells[1:] == cells[:-1]])
    if len(shared) == 0:
        return np.zeros(0, dtype=np.int64)
    at = np.minimum(np.searchsorted(shared, cell), len(shared) - 1)
    mask = np.zeros(len(bounds), dtype=bool)
    mask[rows[shared[at] == cell]] = True
    return np.flatnonzero(mask)


def _numbers(table: pa.Table, columns: list[str]) -> np.ndarray:
    """Columns of floats of an Arrow table as one n × k array."""
    return np.column_stack([table.column(c).to_numpy().astype(np.float64) for c in columns])


def _geometries(
    index: np.ndarray, part: np.ndarray, row: np.ndarray, wkb: Callable[[int], pa.ChunkedArray]
) -> np.ndarray:
    """The geometries of the rows ``index`` (of all partitions' boxes, one after another)."""
    out = np.empty(len(index), dtype=object)
    for k in np.unique(part[index]).tolist():
        at = part[index] == k
        blobs = wkb(k).take(row[index[at]]).to_numpy(zero_copy_only=False)
        out[at] = shapely.from_wkb(blobs)
    return out


def _same(src: str, dst: str) -> bool:
    return src == dst or CRS.from_wkt(src).equals(CRS.from_wkt(dst))


def _in_crs(bounds: np.ndarray, src: str, dst: str) -> np.ndarray:
    """Boxes in another CRS: the boxes of their corners, 1 m wider (a box stays a box's cover)."""
    if _same(src, dst):
        return bounds
    t = Transformer.from_crs(CRS.from_wkt(src), CRS.from_wkt(dst), always_xy=True)
    xs = np.stack([bounds[:, 0], bounds[:, 2], bounds[:, 0], bounds[:, 2]], axis=1)
    ys = np.stack([bounds[:, 1], bounds[:, 1], bounds[:, 3], bounds[:, 3]], axis=1)
    tx, ty = t.transform(xs, ys)
    return np.stack([tx.min(1) - 1, ty.min(1) - 1, tx.max(1) + 1, ty.max(1) + 1], axis=1)


def _to_crs(geoms: np.ndarray, src: str, dst: str) -> np.ndarray:
    """Geometries reprojected as the partitions reproject their layers (GeoSeries.to_crs)."""
    if _same(src, dst):
        return geoms
    return gpd.GeoSeries(geoms, crs=CRS.from_wkt(src)).to_crs(CRS.from_wkt(dst)).to_numpy()
