"""The overlay engine against known answers and against geopandas.overlay."""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import shapely

from pipeline.overlay import (
    NOISE_FLOOR_M2,
    NOISE_SHARE,
    _clip,
    group_union,
    overlay,
    subdivide,
)
from pipeline.survey import CONSERVATION_FLOOR_M2, CONSERVATION_TOLERANCE


def _jittered_parcels(n: int, size: float, rng: np.random.Generator) -> np.ndarray:
    """A planar partition of n×n irregular quadrilaterals."""
    xs = np.arange(n + 1) * size
    x, y = np.meshgrid(xs, xs)
    x = x + rng.uniform(-0.3, 0.3, x.shape) * size
    y = y + rng.uniform(-0.3, 0.3, y.shape) * size
    corners = [
        (x[:-1, :-1], y[:-1, :-1]),
        (x[:-1, 1:], y[:-1, 1:]),
        (x[1:, 1:], y[1:, 1:]),
        (x[1:, :-1], y[1:, :-1]),
    ]
    ring = np.stack([np.stack(c, -1) for c in [*corners, corners[0]]], -2)
    return shapely.polygons(ring.reshape(-1, 5, 2))


def _wiggly_soil(k: int, extent: float, rng: np.random.Generator) -> np.ndarray:
    """Voronoi soil polygons with noisy, densified boundaries (thousands of vertices)."""
    pts = shapely.multipoints(rng.uniform(0, extent, (k, 2)))
    frame = shapely.box(-extent, -extent, 2 * extent, 2 * extent)
    cells = shapely.get_parts(shapely.voronoi_polygons(pts, extend_to=frame))
    cells = shapely.intersection(cells, frame)
    cells = shapely.segmentize(cells, extent / 300)
    return cells


def test_subdivide_keeps_area_and_limits_vertices():
    rng = np.random.default_rng(1)
    soil = _wiggly_soil(20, 5000, rng)
    parts, owner = subdivide(soil, 64)
    assert shapely.get_num_coordinates(parts).max() <= 64
    area = np.bincount(owner, shapely.area(parts), minlength=len(soil))
    np.testing.assert_allclose(area, shapely.area(soil), rtol=1e-12)


def test_a_clip_geos_refuses_is_redone_exactly():
    # a sliver (4.5e-8 m2) of a soil part of the 1M demo data crossing a halving line:
    # GEOS's clip_by_rect raised "Invalid number of points in LinearRing found 3"
    sliver = shapely.Polygon(
        [
            (42460477.74309149, 4840594.242729458),
            (42460475.171, 4840584.802),
            (42460482.751, 4840612.624),
        ]
    )
    xmin, ymin, xmax, ymax = 42460459.401, 4840142.889, 42461185.08425, 4841028.804753756
    ymid = 4840585.846876878
    with pytest.raises(shapely.errors.GEOSException):
        shapely.clip_by_rect(sliver, xmin, ymin, xmax, ymid)
    halves = _clip(
        np.array([sliver, sliver]),
        np.array([xmin, xmin]),
        np.array([ymin, ymid]),
        np.array([xmax, xmax]),
        np.array([ymid, ymax]),
        threads=1,
    )
    assert not shapely.is_missing(halves).any()
    # the sliver is a tenth of a micrometre wide, 4.8e6 m from the origin: its halves add up
    # to it as closely as coordinates there can say (GEOS's exact intersection gives the lower
    # half 0 m2, the upper 3.9e-8 m2)
    assert shapely.area(halves).sum() == pytest.approx(sliver.area, abs=1e-8)


def test_known_answer_half_and_half():
    parcel = shapely.box(0, 0, 10, 10)
    soil = np.array([shapely.box(-5, -5, 5, 15), shapely.box(5, -5, 15, 15)])
    res = overlay(np.array([parcel]), soil)
    assert res.right.tolist() == [0, 1]
    assert shapely.area(res.geometry).tolist() == [50.0, 50.0]
    assert not res.whole.any()


def test_whole_parcel_is_not_intersected():
    parcel = shapely.box(0, 0, 10, 10)
    soil = np.array([shapely.box(-50, -50, 50, 50)])
    res = overlay(np.array([parcel]), soil)
    assert res.whole.tolist() == [True]
    assert res.geometry[0] is parcel


def test_parcel_on_the_boundary_of_a_polygon_is_taken_whole():
    # zones are drawn along parcel edges: a parcel inside one, sharing its edges, is covered
    # but not properly contained, and needs no intersection either
    parcels = np.array([shapely.box(0, 0, 10, 10), shapely.box(10, 0, 20, 10)])
    zones = np.array([shapely.box(0, 0, 10, 10), shapely.box(10, -5, 30, 10)])
    for disjoint in (True, False):
        res = overlay(parcels, zones, disjoint=disjoint)
        assert res.left.tolist() == [0, 1] and res.right.tolist() == [0, 1]
        assert res.whole.tolist() == [True, True]
        assert res.geometry[0] is parcels[0] and res.geometry[1] is parcels[1]


def test_parcel_crossing_subdivision_lines_is_merged_back():
    # one big circle split into many parts; a parcel inside it but across cut lines
    circle = shapely.Point(0, 0).buffer(1000, quad_segs=512)
    parcel = shapely.box(-300, -300, 300, 300)
    res = overlay(np.array([parcel]), np.array([circle]), max_vertices=32)
    assert len(res) == 1
    assert res.geometry[0].area == pytest.approx(parcel.area)


def test_group_union():
    geoms = np.array([shapely.box(0, 0, 1, 1), shapely.box(5, 5, 6, 6), shapely.box(1, 0, 2, 1)])
    groups, merged = group_union(geoms, np.array([7, 3, 7]))
    assert groups.tolist() == [3, 7]
    assert merged[1].area == pytest.approx(2.0)
    assert merged[1].geom_type == "Polygon"


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("max_vertices", [32, 256])
def test_agrees_with_geopandas_overlay(threads, max_vertices):
    rng = np.random.default_rng(7)
    parcels = _jittered_parcels(40, 50.0, rng)
    soil = _wiggly_soil(12, 2000.0, rng)
    # holes and a gap make the soil map realistic
    inner = np.flatnonzero(shapely.contains_xy(soil, 1000, 1000))[0]
    soil[inner] = shapely.difference(soil[inner], shapely.Point(1000, 1000).buffer(120))
    res = overlay(parcels, soil, max_vertices=max_vertices, threads=threads)
    ours = pd.Series(
        shapely.area(res.geometry), index=pd.MultiIndex.from_arrays([res.left, res.right])
    )
    left = gpd.GeoDataFrame({"l": np.arange(len(parcels))}, geometry=parcels)
    right = gpd.GeoDataFrame({"r": np.arange(len(soil))}, geometry=soil)
    ref = gpd.overlay(left, right, how="intersection", keep_geom_type=True)
    theirs = ref.assign(a=ref.area).groupby(["l", "r"])["a"].sum()
    theirs = theirs[theirs > 0]
    assert set(ours.index) == set(theirs.index)
    np.testing.assert_allclose(
        ours.sort_index().to_numpy(), theirs.sort_index().to_numpy(), rtol=1e-9, atol=1e-6
    )
    # each parcel's pieces tile what the soil map covers of it
    expected = shapely.area(shapely.intersection(parcels, shapely.union_all(soil)))
    got = np.bincount(res.left, shapely.area(res.geometry), minlength=len(parcels))
    np.testing.assert_allclose(got, expected, rtol=1e-9, atol=1e-6)


def test_empty_inputs():
    res = overlay(np.array([], dtype=object), np.array([shapely.box(0, 0, 1, 1)]))
    assert len(res) == 0
    res = overlay(np.array([shapely.box(10, 10, 11, 11)]), np.array([shapely.box(0, 0, 1, 1)]))
    assert len(res) == 0


def test_topology_errors_fall_back_to_snap_rounding(monkeypatch):
    import sys

    engine = sys.modules["pipeline.overlay"]
    real = shapely.intersection

    def flaky(a, b, grid_size=None, **kwargs):
        if grid_size is None:
            raise shapely.errors.GEOSException("TopologyException: side location conflict")
        return real(a, b, grid_size=grid_size, **kwargs)

    monkeypatch.setattr(engine.shapely, "intersection", flaky)
    parcel = shapely.box(0, 0, 10, 10)
    soil = np.array([shapely.box(-5, -5, 5, 15), shapely.box(5, -5, 15, 15)])
    res = overlay(np.array([parcel]), soil)
    assert shapely.area(res.geometry).tolist() == pytest.approx([50.0, 50.0])


def test_complete_cover_shortcut_gives_the_same_pieces():
    rng = np.random.default_rng(3)
    parcels = _jittered_parcels(30, 50.0, rng)
    soil = _wiggly_soil(10, 1500.0, rng)
    extent = shapely.box(*shapely.total_bounds(parcels)).buffer(10)
    gaps = shapely.get_parts(shapely.difference(extent, shapely.union_all(soil)))
    cover = np.concatenate([soil, gaps])
    a = overlay(parcels, cover, complete=False)
    ranks = np.r_[np.arange(len(soil)), np.full(len(gaps), -1)]
    b = overlay(parcels, cover, complete=True, ranks=ranks)
    assert a.left.tolist() == b.left.tolist() and a.right.tolist() == b.right.tolist()
    # the pieces of the polygon of most parts are a difference there, not intersections
    np.testing.assert_allclose(shapely.area(a.geometry), shapely.area(b.geometry), rtol=1e-9)
    assert b.whole.sum() >= a.whole.sum()


def _counting_intersections(monkeypatch) -> list[int]:
    """Record how many pairs each vectorised intersection of the engine takes."""
    import sys

    engine = sys.modules["pipeline.overlay"]
    real = engine.safe_intersection
    calls: list[int] = []

    def counted(a, b):
        calls.append(len(a))
        return real(a, b)

    monkeypatch.setattr(engine, "safe_intersection", counted)
    return calls


# the polygon of many parts has two near the parcel, the other one
@pytest.mark.parametrize(("ranks", "intersected"), [((0, 1), [1]), ((-1, 0), [2])])
def test_the_polygon_of_most_parts_takes_what_the_others_leave(monkeypatch, ranks, intersected):
    """A parcel cut by a soil polygon of many parts and one of one part: the first gets the
    parcel less the other's piece, no intersection with its parts; one of negative rank (a gap,
    different in each run) never does."""
    calls = _counting_intersections(monkeypatch)
    parcel = shapely.box(0, 0, 10, 10)
    # 6 m of the parcel in a polygon of 200 vertices, split in parts of at most 32
    many = shapely.segmentize(shapely.box(-40, -40, 6, 50), 1.0)
    one = shapely.box(6, -40, 50, 50)
    res = overlay(
        np.array([parcel]), np.array([many, one]), max_vertices=32, complete=True, ranks=ranks
    )
    assert res.right.tolist() == [0, 1]
    assert shapely.area(res.geometry) == pytest.approx([60.0, 40.0])
    assert shapely.union_all(res.geometry).equals(parcel)
    assert calls == intersected  # the parts of the other polygon near the parcel only
    # without ranks every part near the parcel is intersected
    calls.clear()
    plain = overlay(np.array([parcel]), np.array([many, one]), max_vertices=32, complete=True)
    assert shapely.area(plain.geometry) == pytest.approx([60.0, 40.0])
    assert calls == [3]


def test_slivers_of_rounding_are_not_pieces():
    """A soil boundary a nanometre inside the parcel's edge leaves a sliver of rounding, not
    land: no piece; a strip a millimetre wide is land."""
    parcel = shapely.box(0, 0, 100, 100)
    for edge, pieces in ((1e-9, [1]), (1e-3, [0, 1])):
        soil = np.array([shapely.box(-100, -100, edge, 200), shapely.box(edge, -100, 200, 200)])
        for complete, ranks in ((False, None), (True, (0, 1)), (True, (1, 0))):
            res = overlay(np.array([parcel]), soil, complete=complete, ranks=ranks)
            assert res.right.tolist() == pieces
            assert shapely.area(res.geometry).sum() == pytest.approx(1e4, abs=1e-6)


def test_a_parcel_as_thin_as_rounding_keeps_all_its_pieces():
    """A parcel a micrometre wide at one end, tapering to a point (a fuzzed input's), is cut by
    soil boundaries into pieces thinner than rounding slivers on average; they are all the
    land it has and are kept, so its pieces add up to its area. (Left out as rounding, the
    tip's 1.2e-6 m² unbalanced it.) Rounding may take at most a hundredth of what the
    conservation check allows."""
    parcel = shapely.Polygon([(100, 0), (100.000001, 95), (100, 95)])
    soil = np.array(
        [shapely.box(0, -10, 200, 15), shapely.box(0, 15, 200, 50), shapely.box(0, 50, 200, 130)]
    )
    for complete, ranks in ((False, None), (True, (0, 1, 2)), (True, (-1, 1, 2))):
        res = overlay(np.array([parcel]), soil, complete=complete, ranks=ranks)
        assert res.right.tolist() == [0, 1, 2]
        area = shapely.area(res.geometry)
        assert area[0] == pytest.approx(0.5 * 15 * 15 / 95 * 1e-6, rel=1e-3)
        assert area.sum() == pytest.approx(parcel.area, rel=1e-9)
    assert NOISE_SHARE * 100 <= CONSERVATION_TOLERANCE
    assert NOISE_FLOOR_M2 * 100 <= CONSERVATION_FLOOR_M2


def test_overlapping_right_polygons():
    parcel = shapely.box(0, 0, 10, 10)
    projects = np.array([shapely.box(-5, -5, 15, 15), shapely.box(5, -5, 15, 15)])
    res = overlay(np.array([parcel]), projects, disjoint=False)
    assert res.right.tolist() == [0, 1]
    assert shapely.area(res.geometry).tolist() == [100.0, 50.0]
    assert res.whole.tolist() == [True, False]
