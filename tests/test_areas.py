"""Tests of the area rules: ellipsoidal area, cent-exact apportionment, deductions."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal
from fractions import Fraction

import geopandas as gpd
import numpy as np
import pyproj
import pytest
import shapely
from shapely import affinity
from shapely.geometry import (
    GeometryCollection,
    LineString,
    MultiPolygon,
    Polygon,
    box,
)

from pipeline.areas import allocate_cents, deduction_area, ellipsoidal_area, planar_area
from pipeline.errors import InputError

# The CGCS2000 ellipsoid; pyproj's geodesic area is the reference the method must match.
GEOD = pyproj.Geod(a=6378137.0, f=1 / 298.257222101)

# (label, EPSG, longitude, latitude) of a parcel's south-west corner, across the black-soil
# region; "edge" places lie 1.4° off their zone's central meridian.
PLACES = [
    ("zone40", 4528, 120.3, 40.0),
    ("zone40-edge", 4528, 121.4, 41.5),
    ("zone41-north", 4529, 122.5, 53.5),
    ("zone42", 4530, 126.6, 45.7),
    ("zone44", 4532, 131.5, 47.0),
    ("zone44-edge", 4532, 130.6, 48.0),
    ("cm126-no-prefix", 4551, 125.5, 50.0),
]


def _corner(epsg: int, lon: float, lat: float) -> tuple[float, float]:
    return pyproj.Transformer.from_crs(4490, epsg, always_xy=True).transform(lon, lat)


def _shapes(x: float, y: float) -> dict[str, shapely.Geometry]:
    """Test parcels with their south-west corner at (x, y), from 0.1 ha to 100 km²."""

    def square(side: float) -> Polygon:
        return box(x, y, x + side, y + side)

    l_shape = Polygon(
        [(x, y), (x + 2000, y), (x + 2000, y + 600), (x + 600, y + 600), (x + 600, y + 2000),
         (x, y + 2000)],
        [[(x + 100, y + 100), (x + 400, y + 100), (x + 400, y + 400), (x + 100, y + 400)]],
    )  # fmt: skip
    multi = MultiPolygon(
        [
            box(x, y, x + 500, y + 300),
            Polygon(
                box(x + 1000, y, x + 2000, y + 1000).exterior.coords,
                [box(x + 1200, y + 200, x + 1500, y + 500).exterior.coords],
            ),
        ]
    )
    thin = box(x, y, x + 3000, y + 20)
    return {
        "0.1ha": square(1000**0.5),
        "100m": square(100),
        "1km": square(1000),
        "10km": square(10_000),
        "10km-rotated": affinity.rotate(square(10_000), 23, origin=(x, y)),
        "L-with-hole": l_shape,
        "multipolygon": multi,
        "thin": thin,
        "thin-rotated": affinity.rotate(thin, 37, origin=(x, y)),
    }


def _geodesic_area(geometry: shapely.Geometry, epsg: int) -> float:
    """Geodesic area on CGCS2000 of the parcel's vertices, densified as the method does."""
    to_geographic = pyproj.Transformer.from_crs(epsg, 4490, always_xy=True)
    lonlat = shapely.transform(
        shapely.segmentize(geometry, 70.0),
        lambda xy: np.column_stack(to_geographic.transform(xy[:, 0], xy[:, 1])),
    )
    # Geod subtracts holes by sign, so the rings need the usual orientation.
    return abs(GEOD.geometry_area_perimeter(shapely.orient_polygons(lonlat))[0])


def _gaussian_radius_sq(lat_deg: float) -> float:
    a, f = 6378137.0, 1 / 298.257222101
    e2 = 2 * f - f * f
    w2 = 1 - e2 * np.sin(np.radians(lat_deg)) ** 2
    return a * a * (1 - e2) / w2**2  # M·N


# ---------------------------------------------------------------------------------------------
# ellipsoidal_area


@pytest.mark.parametrize(("label", "epsg", "lon", "lat"), PLACES, ids=[p[0] for p in PLACES])
def test_ellipsoidal_area_matches_geodesic_area(label, epsg, lon, lat):
    shapes = _shapes(*_corner(epsg, lon, lat))
    got = ellipsoidal_area(np.array(list(shapes.values()), dtype=object), f"EPSG:{epsg}")
    for (name, geometry), area in zip(shapes.items(), got, strict=True):
        expected = _geodesic_area(geometry, epsg)
        # Required: 0.01 %. Measured: ~1e-9 before rounding, so allow the 0.005 m² of rounding
        # to the cent plus 1e-8; a method that skipped densification would be ~2e-7 off on the
        # 10 km squares and fail here.
        assert area == pytest.approx(expected, rel=1e-8, abs=0.006), (label, name)
        assert abs(area - expected) <= 1e-4 * expected, (label, name)


@pytest.mark.parametrize(("epsg", "lon"), [(4528, 120.3), (4530, 126.6), (4532, 131.5)])
def test_ellipsoidal_area_of_single_geometries_equals_the_batch(epsg, lon):
    shapes = list(_shapes(*_corner(epsg, lon, 46.0)).values())
    batch = ellipsoidal_area(shapes, epsg)
    singles = [ellipsoidal_area([g], epsg)[0] for g in shapes]
    np.testing.assert_allclose(batch, singles, rtol=0, atol=0.01)


def test_ellipsoidal_area_ignores_ring_orientation():
    x, y = _corner(4530, 126.6, 45.7)
    shapes = _shapes(x, y)
    polygons = [shapes["L-with-hole"], shapes["10km-rotated"], *shapes["multipolygon"].geoms]
    ccw = [shapely.orient_polygons(p) for p in polygons]
    cw = [shapely.orient_polygons(p, exterior_cw=True) for p in polygons]
    # Holes turning the same way as their exterior, as careless data has them.
    same_way = [
        Polygon(p.exterior.coords, [list(i.coords)[::-1] for i in p.interiors]) for p in ccw
    ]
    reference = ellipsoidal_area(ccw, 4530)
    np.testing.assert_allclose(ellipsoidal_area(cw, 4530), reference, rtol=0, atol=0.01)
    np.testing.assert_allclose(ellipsoidal_area(same_way, 4530), reference, rtol=0, atol=0.01)
    assert ellipsoidal_area([shapes["L-with-hole"]], 4530)[0] == pytest.approx(
        ellipsoidal_area([Polygon(shapes["L-with-hole"].exterior)], 4530)[0]
        - ellipsoidal_area([Polygon(shapes["L-with-hole"].interiors[0])], 4530)[0],
        abs=0.02,
    )


@pytest.mark.parametrize("offset_km", [0, 50, 100, 150])
def test_planar_gauss_kruger_area_is_ellipsoidal_area_times_scale_squared(offset_km):
    # EPSG:4551: central meridian 126°E, false easting 500 km, scale 1 on the meridian.
    x0, y0 = 500_000.0 + offset_km * 1000, 5_000_000.0
    square = box(x0 - 500, y0 - 500, x0 + 500, y0 + 500)
    _, lat = pyproj.Transformer.from_crs(4551, 4490, always_xy=True).transform(x0, y0)
    ratio = (offset_km * 1000) ** 2 / _gaussian_radius_sq(lat)
    # Point scale k = 1 + y²/2R² + y⁴/24R⁴, so k² = 1 + y²/R² + y⁴/3R⁴.
    k_squared = 1 + ratio + ratio**2 / 3
    ellipsoidal = ellipsoidal_area([square], 4551)[0]
    assert ellipsoidal == pytest.approx(square.area / k_squared, rel=2e-7)
    if offset_km == 0:
        assert ellipsoidal == pytest.approx(square.area, rel=1e-4)


def test_ellipsoidal_area_null_empty_and_non_areal():
    x, y = _corner(4530, 126.6, 45.7)
    parcel = box(x, y, x + 100, y + 100)
    geometries = [
        None,
        Polygon(),
        MultiPolygon(),
        GeometryCollection(),
        LineString([(x, y), (x + 100, y + 100)]),
        GeometryCollection([MultiPolygon([parcel]), LineString([(x, y), (x + 1, y)])]),
        parcel,
    ]
    got = ellipsoidal_area(geometries, 4530)
    assert got.dtype == np.float64
    assert np.isnan(got[0])
    assert got[1:5].tolist() == [0.0, 0.0, 0.0, 0.0]
    assert got[5] == got[6] == pytest.approx(_geodesic_area(parcel, 4530), abs=0.006)
    assert ellipsoidal_area(np.array([], dtype=object), 4530).shape == (0,)


def test_ellipsoidal_area_results_are_rounded_to_the_cent():
    x, y = _corner(4530, 126.6, 45.7)
    got = ellipsoidal_area([box(x, y, x + 123.4567, y + 89.0123)], 4530)
    np.testing.assert_array_equal(got, np.round(got, 2))


def test_ellipsoidal_area_takes_the_crs_of_a_geoseries():
    x, y = _corner(4530, 126.6, 45.7)
    series = gpd.GeoSeries([box(x, y, x + 100, y + 100), None], crs=4530)
    got = ellipsoidal_area(series)
    assert got[0] == pytest.approx(_geodesic_area(series.iloc[0], 4530), abs=0.006)
    assert np.isnan(got[1])
    np.testing.assert_array_equal(ellipsoidal_area(series, pyproj.CRS(4530)), got)


@pytest.mark.parametrize("crs", [None, 4490, "EPSG:4326", "EPSG:4978", "not a crs"])
def test_ellipsoidal_area_needs_a_projected_crs(crs):
    with pytest.raises(InputError):
        ellipsoidal_area([box(500_000, 5_000_000, 500_100, 5_000_100)], crs)


def test_ellipsoidal_area_of_a_geoseries_without_crs_raises():
    with pytest.raises(InputError, match="no CRS"):
        ellipsoidal_area(gpd.GeoSeries([box(500_000, 5_000_000, 500_100, 5_000_100)]))


def test_ellipsoidal_area_rejects_coordinates_outside_the_projection():
    # Zone-prefixed CRS, coordinates without the prefix: 42,500 km west of the meridian.
    with pytest.raises(InputError, match="position 1"):
        ellipsoidal_area([None, box(500_000, 5_000_000, 500_100, 5_000_100)], 4530)


def test_ellipsoidal_area_rejects_non_finite_coordinates():
    x, y = _corner(4530, 126.6, 45.7)
    with np.errstate(invalid="ignore"):  # shapely warns on building it, as it should
        broken = Polygon([(x, y), (x + 500, y), (np.nan, y + 500), (x, y + 500)])
    with pytest.raises(InputError, match="position 0"):
        ellipsoidal_area([broken, box(x, y, x + 100, y + 100)], 4530)


# ---------------------------------------------------------------------------------------------
# planar_area


def test_planar_area():
    got = planar_area([box(0, 0, 2, 3), None, Polygon(), LineString([(0, 0), (1, 1)])])
    assert got.dtype == np.float64
    assert got[0] == 6.0
    assert np.isnan(got[1])
    assert got[2:].tolist() == [0.0, 0.0]
    series = gpd.GeoSeries([box(0, 0, 2, 3), None], crs=4530)
    np.testing.assert_array_equal(planar_area(series), [6.0, np.nan])


# ---------------------------------------------------------------------------------------------
# allocate_cents


def _reference_allocation(totals, weights, groups):
    """Largest remainder, one parcel at a time, in exact rational arithmetic."""
    result = [None] * len(groups)
    for parcel, total in enumerate(totals):
        pieces = [i for i, g in enumerate(groups) if g == parcel]
        if not pieces:
            continue
        cents = round(Fraction(total) * 100)
        weight_sum = sum(Fraction(weights[i]) for i in pieces)
        if weight_sum == 0:
            shares = {i: Fraction(cents if i == pieces[0] else 0) for i in pieces}
        else:
            shares = {i: cents * Fraction(weights[i]) / weight_sum for i in pieces}
        floors = {i: s.numerator // s.denominator for i, s in shares.items()}
        left = cents - sum(floors.values())
        ranked = sorted(pieces, key=lambda i: (-(shares[i] - floors[i]), i))
        for i in ranked[:left]:
            floors[i] += 1
        for i in pieces:
            result[i] = floors[i] / 100
    return np.array(result, dtype=float)


@pytest.mark.parametrize(
    ("totals", "weights", "groups", "expected"),
    [
        ([100.0], [1.0, 1.0, 1.0], [0, 0, 0], [33.34, 33.33, 33.33]),
        ([0.01], [1.0, 1.0], [0, 0], [0.01, 0.0]),
        ([0.02], [1.0, 1.0, 1.0], [0, 0, 0], [0.01, 0.01, 0.0]),
        ([10.0], [1.0, 2.0, 3.0, 4.0], [0, 0, 0, 0], [1.0, 2.0, 3.0, 4.0]),
        ([1.0], [0.25, 0.25, 0.5], [0, 0, 0], [0.25, 0.25, 0.5]),
        ([123.45], [7.5], [0], [123.45]),
        ([5.0], [0.0, 0.0, 0.0], [0, 0, 0], [5.0, 0.0, 0.0]),
        # Zero weights whose parcel's first piece is not the first piece overall.
        ([1.0, 2.0], [1.0, 0.0, 0.0], [1, 0, 0], [2.0, 1.0, 0.0]),
        # Interleaved parcels; the larger remainder wins over the lower index.
        ([0.1, 1.0], [1.0, 1.0, 2.0, 1.0], [1, 0, 1, 0], [0.33, 0.05, 0.67, 0.05]),
        ([0.05], [1.0, 3.0], [0, 0], [0.01, 0.04]),
    ],
)
def test_allocate_cents_examples(totals, weights, groups, expected):
    got = allocate_cents(np.array(totals), np.array(weights), np.array(groups))
    np.testing.assert_array_equal(got, expected)


def test_allocate_cents_nan_totals_and_parcels_without_pieces():
    got = allocate_cents(np.array([np.nan, 3.0, 7.0]), np.array([1.0, 2.0, 1.0]), [1, 0, 1])
    np.testing.assert_array_equal(got, [1.5, np.nan, 1.5])
    assert allocate_cents(np.array([1.0]), np.array([]), np.array([], dtype=int)).shape == (0,)


def test_allocate_cents_negative_totals_are_symmetric():
    totals = np.array([100.0, 0.05, 7.77])
    weights = np.array([1.0, 1.0, 1.0, 1.0, 3.0, 2.0, 5.0])
    groups = np.array([0, 0, 0, 1, 1, 2, 2])
    np.testing.assert_array_equal(
        allocate_cents(-totals, weights, groups), -allocate_cents(totals, weights, groups)
    )


def test_allocate_cents_when_float_shares_fall_a_hair_below_whole_cents():
    # Both shares come out as x.9999999… in float64, so both floors are one cent short.
    weights = np.array([30.40142339993902, 54.722562119890235])
    got = allocate_cents(np.array([5349.12]), weights, np.array([0, 0]))
    np.testing.assert_array_equal(got, [1910.40, 3438.72])


def test_allocate_cents_matches_exact_reference_on_random_data():
    rng = np.random.default_rng(20240611)
    m, n = 60, 400
    totals = np.round(rng.uniform(0, 5_000, m), 2)
    small = rng.random(m) < 0.2  # a few cents among many pieces
    totals[small] = rng.integers(0, 5, small.sum()) / 100
    weights = rng.integers(0, 6, n).astype(float)  # small integers: many exact ties
    groups = rng.integers(0, m, n)
    np.testing.assert_array_equal(
        allocate_cents(totals, weights, groups), _reference_allocation(totals, weights, groups)
    )


def test_allocate_cents_properties_on_a_million_pieces():
    rng = np.random.default_rng(7)
    m, n = 200_000, 1_000_000
    totals = np.round(rng.uniform(0, 1e6, m), 2)
    weights = rng.uniform(0, 1_000, n) * (rng.random(n) > 0.01)
    groups = rng.integers(0, m, n)
    got = allocate_cents(totals, weights, groups)

    piece_cents = np.round(got * 100).astype(np.int64)
    np.testing.assert_array_equal(got, piece_cents / 100)
    present = np.bincount(groups, minlength=m) > 0
    sums = np.zeros(m, dtype=np.int64)
    np.add.at(sums, groups, piece_cents)
    np.testing.assert_array_equal(sums[present], np.round(totals * 100)[present])

    weight_sum = np.bincount(groups, weights=weights, minlength=m)
    weighted = weight_sum[groups] > 0
    exact = totals[groups] * 100 * weights / np.where(weighted, weight_sum[groups], 1)
    assert np.all(np.abs(piece_cents - exact)[weighted] < 1 + 1e-6)


def test_allocate_cents_is_deterministic_and_independent_of_parcel_order():
    rng = np.random.default_rng(3)
    m, n = 1_000, 5_000
    totals = np.round(rng.uniform(0, 1e4, m), 2)
    weights = rng.integers(1, 4, n).astype(float)
    groups = rng.integers(0, m, n)
    first = allocate_cents(totals, weights, groups)
    np.testing.assert_array_equal(allocate_cents(totals, weights, groups), first)
    relabel = rng.permutation(m)  # old parcel index -> new
    moved_totals = np.empty(m)
    moved_totals[relabel] = totals
    np.testing.assert_array_equal(allocate_cents(moved_totals, weights, relabel[groups]), first)


def test_allocate_cents_large_totals_stay_exact():
    totals = np.array([9e11 + 0.01, 123_456_789.99])
    weights = np.array([1.0, 1.0, 1.0, 2.0, 7.0])
    groups = np.array([0, 0, 0, 1, 1])
    got = np.round(allocate_cents(totals, weights, groups) * 100).astype(np.int64)
    assert got[:3].sum() == 90_000_000_000_001
    assert got[3:].sum() == 12_345_678_999


@pytest.mark.parametrize(
    ("totals", "weights", "groups"),
    [
        ([1.0], [-1.0], [0]),
        ([1.0], [np.nan], [0]),
        ([1.0], [np.inf], [0]),
        ([1.0], [1.0], [1]),
        ([1.0], [1.0], [-1]),
        ([1.0], [1.0], [0.0]),
        ([1.0], [1.0, 1.0], [0]),
        ([np.inf], [1.0], [0]),
        ([1e14], [1.0], [0]),
        ([[1.0]], [1.0], [0]),
    ],
)
def test_allocate_cents_rejects_bad_input(totals, weights, groups):
    with pytest.raises(ValueError):
        allocate_cents(np.array(totals), np.array(weights), np.array(groups))


# ---------------------------------------------------------------------------------------------
# deduction_area


@pytest.mark.parametrize(
    ("tbmj", "kcxs", "expected"),
    [
        (1000.0, 0.0, 0.0),
        (1000.0, np.nan, 0.0),
        (1000.0, 0.1, 100.0),
        (2345.67, 0.0632, 148.25),  # 148.246344
        (1.45, 0.5, 0.73),  # 0.725 exactly; binary float gives 0.72499999…
        (28.5, 0.01, 0.29),  # 0.285 exactly
        (0.01, 0.5, 0.01),  # 0.005 exactly
        (0.01, 0.4999, 0.0),  # 0.004999
        (-1.45, 0.5, -0.73),  # half away from zero
        (1000.0, 0.123456, 123.46),  # more decimals than official KCXS: the float path
        (12_345_678.91, 0.1234, 1_523_456.78),  # 1523456.777494
        (np.nan, 0.1, np.nan),
        (np.inf, 0.1, np.nan),
    ],
)
def test_deduction_area_examples(tbmj, kcxs, expected):
    got = deduction_area(np.array([tbmj]), np.array([kcxs]))
    np.testing.assert_array_equal(got, [expected])


def test_deduction_area_matches_decimal_arithmetic():
    rng = np.random.default_rng(11)
    n = 3_000
    tbmj_cents = rng.integers(0, 10**9, n)
    kcxs_units = rng.integers(0, 10_001, n)
    # Force many products ending in exactly half a cent.
    kcxs_units[: n // 3] = rng.choice([5000, 2500, 1250, 625], n // 3)
    tbmj_cents[: n // 3] = tbmj_cents[: n // 3] | 1
    tbmj = tbmj_cents / 100
    kcxs = kcxs_units / 10_000
    expected = [
        float((Decimal(int(t)) / 100 * Decimal(int(k)) / 10_000).quantize(Decimal("0.01"),
              rounding=ROUND_HALF_UP))
        for t, k in zip(tbmj_cents, kcxs_units, strict=True)
    ]  # fmt: skip
    np.testing.assert_array_equal(deduction_area(tbmj, kcxs), expected)


def test_deduction_area_broadcasts_a_scalar_coefficient():
    np.testing.assert_array_equal(deduction_area([10.0, 20.01], 0.5), [5.0, 10.01])
