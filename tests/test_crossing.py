"""Parcels of different partitions that overlap, found at the merge (pipeline.crossing)."""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pyarrow as pa
import pytest
import shapely
import shapely.affinity
from pyproj import CRS, Transformer

from pipeline.crossing import (
    BOUNDS,
    KEYS,
    MIN_SHARED,
    crossing_overlaps,
    overlap_problem,
    overlapping,
    parcel_shapes,
    unshared_edges,
)
from pipeline.qa import QALog
from pipeline.runner import _log_overlapping_parcels

GK39 = CRS.from_epsg(4527).to_wkt()  # CGCS2000 3-degree GK zone 39 (117°E)
GK40 = CRS.from_epsg(4528).to_wkt()  # zone 40 (120°E)


def partition(geoms: list, file: int, fids: list[int], ids: list[str]) -> pa.Table:
    frame = parcel_shapes(np.array(geoms, dtype=object), np.full(len(geoms), file), fids, ids)
    return pa.Table.from_pandas(frame, preserve_index=False)


def run(tables: list[pa.Table], crs: list[str]) -> list[list[str]]:
    rows = crossing_overlaps(
        [t.select([*KEYS, *BOUNDS]) for t in tables], crs, lambda k: tables[k].column("wkb")
    )
    return rows[["feature_id", "problem"]].to_numpy().tolist()


def row(x0: float, n: int, y0: float = 0.0) -> list:
    return [shapely.box(x0 + 100 * i, y0, x0 + 100 * (i + 1), y0 + 100) for i in range(n)]


def test_parcels_that_only_touch_across_partitions_are_not_logged():
    west = partition(row(0, 5), 0, [1, 2, 3, 4, 5], list("abcde"))
    east = partition(row(500, 5), 0, [6, 7, 8, 9, 10], list("fghij"))
    assert run([west, east], [GK39, GK39]) == []


def test_an_overlap_is_logged_on_the_later_parcel_in_reading_order():
    # the partition listed first holds the later parcel: file 1 comes after file 0
    east = partition([shapely.box(490, 0, 600, 100), *row(600, 3)], 1, [1, 2, 3, 4], list("fghi"))
    west = partition(row(0, 5), 0, [7, 8, 9, 10, 11], list("abcde"))
    inside = partition([shapely.box(120, 20, 150, 60)], 2, [1], ["z"])  # in b, far from edges
    assert run([east, west, inside], [GK39] * 3) == [
        ["f", "overlaps parcel e by 1000.00 m²"],
        ["z", "overlaps parcel b by 1200.00 m²"],
    ]


def test_a_shared_area_of_a_hundredth_of_a_square_metre_or_less_is_noise():
    west = partition(row(0, 2), 0, [1, 2], ["a", "b"])
    east = partition([shapely.box(199.99995, 0, 300, 100)], 0, [3], ["c"])  # 0.005 m²
    assert run([west, east], [GK39, GK39]) == []
    east = partition([shapely.box(199.99, 0, 300, 100)], 0, [3], ["c"])  # 1 m²
    assert run([west, east], [GK39, GK39]) == [["c", "overlaps parcel b by 1.00 m²"]]


def test_partitions_in_two_zones_are_compared_in_the_later_parcels_zone():
    """Counties on both sides of the 118.5°E zone boundary, each measured in its own zone: the
    boxes are compared in one CRS and the pair in the later parcel's."""
    to39 = Transformer.from_crs(4490, 4527, always_xy=True)
    to40 = Transformer.from_crs(4490, 4528, always_xy=True)
    x39, y39 = to39.transform(118.5, 45.0)
    west = shapely.box(x39 - 200, y39, x39 + 10, y39 + 100)  # 10 m over the meridian
    x40, y40 = to40.transform(118.5, 45.0)
    east = shapely.box(x40, y40, x40 + 200, y40 + 100)
    rows = run([partition([west], 0, [1], ["w"]), partition([east], 0, [2], ["e"])], [GK39, GK40])
    in40 = shapely.transform(west, lambda xy: np.column_stack(
        Transformer.from_crs(4527, 4528, always_xy=True).transform(xy[:, 0], xy[:, 1])
    ))  # fmt: skip
    shared = shapely.intersection(in40, east).area
    assert 500 < shared < 2000  # 10 m over the meridian in zone 39, turned by the zones' angle
    assert rows == [["e", f"overlaps parcel w by {shared:.2f} m²"]]


# ---- overlaps within one partition: unshared edges first, the coverage validator where needed


def grid(n: int, size: float = 100.0, x0: float = 0.0, seed: int | None = None) -> list:
    """An n × n coverage of quadrilaterals on common vertices from (x0, x0); with a seed, the
    inner vertices are moved at random (up to a fifth of a cell), so the cells are not boxes."""
    xs, ys = np.meshgrid(np.arange(n + 1) * size + x0, np.arange(n + 1) * size + x0)
    if seed is not None:
        rng = np.random.default_rng(seed)
        inner = (slice(1, n), slice(1, n))
        xs[inner] += rng.uniform(-0.2, 0.2, (n - 1, n - 1)) * size
        ys[inner] += rng.uniform(-0.2, 0.2, (n - 1, n - 1)) * size
    return [
        shapely.Polygon(
            [
                (xs[j, i], ys[j, i]),
                (xs[j, i + 1], ys[j, i + 1]),
                (xs[j + 1, i + 1], ys[j + 1, i + 1]),
                (xs[j + 1, i], ys[j + 1, i]),
            ]
        )
        for j in range(n)
        for i in range(n)
    ]


def test_unshared_edges_of_a_coverage_are_on_its_outer_edge_and_where_vertices_differ():
    cells = grid(5, seed=1)
    inner = [6, 7, 8, 11, 12, 13, 16, 17, 18]
    outer = sorted(set(range(25)) - set(inner))
    assert np.flatnonzero(unshared_edges(np.array(cells))).tolist() == outer
    # a vertex in the middle of the edge between cells 12 and 13, in 13 only: both are named
    x0, y0, x1, y1 = (*cells[13].exterior.coords[3], *cells[13].exterior.coords[0])
    ring = list(cells[13].exterior.coords)[:-1]
    cells[13] = shapely.Polygon([*ring, ((x0 + x1) / 2, (y0 + y1) / 2)])
    assert cells[13].is_valid
    assert np.flatnonzero(unshared_edges(np.array(cells))).tolist() == sorted([*outer, 12, 13])


def test_unshared_edges_follow_holes_and_the_parts_of_multipolygons():
    cells = grid(7)
    # cell 24 (row 3, column 3) with a hole that an island, the last cell, fills; cells 16
    # and 32 as one MultiPolygon; every edge still shared the other way round
    island = shapely.box(330, 330, 370, 370)
    cells[24] = cells[24].difference(island)
    cells.append(shapely.Polygon(island.exterior.coords[::-1]))  # drawn clockwise
    cells[16] = shapely.MultiPolygon([cells[16], cells[32]])
    del cells[32]
    geoms = np.array(cells)
    assert shapely.is_valid(geoms).all()
    flagged = unshared_edges(geoms)
    assert not flagged[[16, 24, len(cells) - 1]].any()
    assert flagged.sum() == 24  # the outer ring of cells
    assert not unshared_edges(np.array([None, shapely.Polygon()])).any()


def brute_force_overlaps(geoms: list, ids: list[str]) -> list[list[str]]:
    """Every pair of polygons whose interiors meet over more than MIN_SHARED m², on the later
    one: what a single run logs."""
    g = np.array(geoms)
    a, b = shapely.STRtree(g).query(g)
    keep = a < b
    a, b = a[keep], b[keep]
    hit = overlapping(g[a], g[b])
    a, b = a[hit], b[hit]
    shared = shapely.area(shapely.intersection(g[a], g[b]))
    rows = [
        [ids[j], overlap_problem(ids[i], s)]
        for i, j, s in zip(a, b, shared, strict=True)
        if s > MIN_SHARED
    ]
    return sorted(rows)


def logged_overlaps(geoms: list, ids: list[str], others: list | None = None) -> list[list[str]]:
    parcels = gpd.GeoDataFrame({"id": ids}, geometry=list(geoms), crs=GK39)
    qa = QALog()
    _log_overlapping_parcels(parcels, qa, None if others is None else np.array(others))
    return sorted(qa.frame()[["feature_id", "problem"]].to_numpy().tolist())


def test_a_clean_coverage_needs_no_coverage_validator(monkeypatch):
    """Only its outer cells have unshared edges; they overlap nothing, so no parcel does. The
    same for the cultivated parcels among them, with the others (not cultivated, some of them
    invalid or not polygons: those are left out) read beside them."""

    def validator(_):
        raise AssertionError("the coverage validator ran")

    cells = grid(40, seed=2)
    monkeypatch.setattr(shapely, "coverage_invalid_edges", validator)
    assert logged_overlaps(cells, [f"p{k}" for k in range(len(cells))]) == []
    cultivated = np.random.default_rng(2).random(len(cells)) < 0.65
    others = [c for c, k in zip(cells, cultivated, strict=True) if not k]
    others[:3] = [None, shapely.Point(5, 5), shapely.Polygon([(0, 0), (9, 9), (0, 9), (9, 0)])]
    kept = [c for c, k in zip(cells, cultivated, strict=True) if k]
    assert logged_overlaps(kept, [f"p{k}" for k in range(len(kept))], others) == []


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("n", [40, 8])
def test_every_overlapping_pair_is_logged_as_by_pairing_them_all(n, seed):
    """Random overlaps in a coverage of n × n parcels: enlarged and shrunken copies of cells,
    exact duplicates, and a second coverage over the middle half, drawn on other lines, whose
    inner cells, like those under them, have only shared edges. (In the 8 × 8 coverage most
    parcels lie on its outer edge: the coverage validator finds where to start.)"""
    rng = np.random.default_rng(seed)
    cells = grid(n, seed=seed)
    extra = []
    for k in rng.choice(len(cells), 6, replace=False):
        c = cells[k]
        extra.append(shapely.affinity.scale(c, 1.3, 1.3) if k % 2 else c)
        extra.append(shapely.affinity.scale(c, 0.5, 0.5))
    if seed % 2:  # another coverage of the middle half, in 6 × 6 cells
        extra += grid(6, size=50 * n / 6, x0=25.0 * n)
    geoms = cells + extra
    order = rng.permutation(len(geoms))
    geoms = [geoms[k] for k in order]
    ids = [f"p{k:04d}" for k in range(len(geoms))]
    expected = brute_force_overlaps(geoms, ids)
    assert len(expected) >= 6
    assert logged_overlaps(geoms, ids) == expected
    # the cultivated two thirds, the others read beside them
    cultivated = rng.random(len(geoms)) < 0.65
    ids = [ids[k] for k in np.flatnonzero(cultivated)]
    others = [g for g, k in zip(geoms, cultivated, strict=True) if not k]
    geoms = [g for g, k in zip(geoms, cultivated, strict=True) if k]
    assert logged_overlaps(geoms, ids, others) == brute_force_overlaps(geoms, ids)
