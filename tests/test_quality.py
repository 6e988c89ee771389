"""Quality from rasters: exact zonal statistics, slope, grades and classes, the summary layer.

Known answers on tiny hand-made rasters: every expected value can be worked out by hand (or, for
a raster in another CRS, by exact polygon-cell intersections in shapely).
"""

from __future__ import annotations

from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import rasterio
import shapely
import yaml
from affine import Affine
from pyproj import Geod, Transformer

from conftest import CRS, X0, Y0, box, parcels_frame, run, soil_frame, write_raster
from pipeline import ConfigError, InputError, load_config
from pipeline.config import RasterSpec
from pipeline.demo_rasters import make_demo_rasters
from pipeline.quality import (
    organic_matter_grade,
    quality_summary,
    slope_degrees,
    slope_grade,
    thickness_class,
    zonal_statistics,
)

REPO = Path(__file__).resolve().parent.parent
GEOD = Geod(ellps="GRS80")


def grid(cell: float = 100.0, x: float = 0.0, top: float = 400.0) -> Affine:
    """A north-up grid of ``cell`` m cells whose top-left corner is (X0 + x, Y0 + top)."""
    return Affine(cell, 0, X0 + x, 0, -cell, Y0 + top)


@pytest.fixture
def raster_4x4(tmp_path: Path) -> Path:
    """Values 1..16 in rows of 4 (1 2 3 4 / 5 6 7 8 / ...), 100 m cells, over (0..400, 0..400);
    the bottom-right cell (16) is nodata (-1)."""
    values = np.arange(1, 17, dtype=float).reshape(4, 4)
    values[3, 3] = -1
    return write_raster(tmp_path / "r.tif", values, grid(), nodata=-1)


def stats(geoms: list, raster: Path | RasterSpec, **kw) -> pd.DataFrame:
    return zonal_statistics(np.array(geoms, dtype=object), CRS, raster, **kw)


# --------------------------------------------------------------------------- zonal statistics


def test_piece_covering_exactly_two_cells(raster_4x4):
    # the top row's first two cells: values 1 and 2
    s = stats([box(0, 300, 200, 400)], raster_4x4).iloc[0]
    assert s["mean"] == pytest.approx(1.5)
    assert (s["min"], s["max"]) == (1.0, 2.0)
    assert s["share"] == pytest.approx(1.0)


def test_rasters_on_one_grid_in_one_pass_give_what_each_gives_alone(raster_4x4, tmp_path):
    """Thickness and organic matter on one grid go through exactextract together (with the
    DEM's slope too): each raster's statistics are those it gives on its own."""
    from pipeline.quality import _grid_statistics, raster_grid

    other = np.arange(16, dtype=float).reshape(4, 4) ** 1.5
    other[0, 0] = np.nan
    second = write_raster(tmp_path / "o.tif", other, grid())
    pieces = np.array(
        [box(0, 300, 200, 400), box(190, 240, 230, 260), box(-50, -50, 450, 450), None],
        dtype=object,
    )
    specs = [RasterSpec(path=raster_4x4), RasterSpec(path=second)]
    assert raster_grid(specs[0]) == raster_grid(specs[1])
    together = _grid_statistics(pieces, CRS, [(specs[0], False, "a"), (specs[1], True, "b")])
    alone = [
        zonal_statistics(pieces, CRS, specs[0]),
        zonal_statistics(pieces, CRS, specs[1], slope=True),
    ]
    for got, want in zip(together, alone, strict=True):
        pd.testing.assert_frame_equal(got, want)
    assert list(together[1].columns) == ["mean", "min", "max", "share", "slope_mean"]
    assert together[0]["mean"].iloc[0] == pytest.approx(1.5)


def test_piece_half_a_cell_in_size(raster_4x4):
    # the left half of cell 6 (second row, second column)
    s = stats([box(100, 200, 150, 300)], raster_4x4).iloc[0]
    assert s["mean"] == pytest.approx(6.0)
    assert (s["min"], s["max"]) == (6.0, 6.0)
    assert s["share"] == pytest.approx(1.0)


def test_small_piece_across_two_cells_is_weighted_by_covered_fraction(raster_4x4):
    # 40 m x 20 m straddling cells 6 (10 m of it) and 7 (30 m): no cell centre falls inside,
    # so a centre-sampling tool finds no value; the exact mean is (10·6 + 30·7) / 40
    s = stats([box(190, 240, 230, 260)], raster_4x4).iloc[0]
    assert s["mean"] == pytest.approx((10 * 6 + 30 * 7) / 40)
    assert (s["min"], s["max"]) == (6.0, 7.0)
    assert s["share"] == pytest.approx(1.0)


def test_nodata_cells_are_left_out_and_lower_the_share(raster_4x4):
    # cells 15 and 16 (nodata) of the bottom row
    s = stats([box(200, 0, 400, 100)], raster_4x4).iloc[0]
    assert s["mean"] == pytest.approx(15.0)
    assert (s["min"], s["max"]) == (15.0, 15.0)
    assert s["share"] == pytest.approx(0.5)


def test_piece_over_nodata_only_gets_nulls(raster_4x4):
    s = stats([box(310, 10, 390, 90)], raster_4x4).iloc[0]
    assert np.isnan(s["mean"]) and np.isnan(s["min"]) and np.isnan(s["max"])
    assert s["share"] == 0.0


def test_config_nodata_overrides_the_file_and_nan_is_nodata(tmp_path):
    values = np.array([[0.0, 8.0, np.nan, 4.0]])
    path = write_raster(tmp_path / "n.tif", values, grid(top=100))  # the file sets no nodata
    geoms = [box(0, 0, 200, 100), box(100, 0, 300, 100), box(200, 0, 400, 100)]
    plain = stats(geoms, path)
    assert plain["mean"].tolist() == pytest.approx([4.0, 8.0, 4.0])  # 0 counts, NaN never
    masked = stats(geoms, RasterSpec(path=path, nodata=0.0))
    assert masked["mean"].tolist() == pytest.approx([8.0, 8.0, 4.0])
    assert masked["share"].tolist() == pytest.approx([0.5, 0.5, 0.5])


def test_piece_outside_the_raster_gets_nulls_not_zeros(raster_4x4):
    out = stats(
        [
            box(1000, 1000, 1100, 1100),  # wholly outside
            box(-50, 300, 50, 400),  # half outside, half on cell 1
            None,
            shapely.Polygon(),
        ],
        raster_4x4,
    )
    assert np.isnan(out.loc[0, "mean"]) and out.loc[0, "share"] == 0.0
    assert out.loc[1, "mean"] == pytest.approx(1.0)
    assert out.loc[1, "share"] == pytest.approx(0.5)
    assert out.loc[2:, "mean"].isna().all() and (out.loc[2:, "share"] == 0).all()


def test_results_keep_the_pieces_order_across_tiles(tmp_path):
    rng = np.random.default_rng(5)
    values = rng.uniform(0, 100, (60, 80))
    path = write_raster(tmp_path / "big.tif", values, grid(cell=30, top=1800), dtype="float64")
    x = rng.uniform(0, 2400, 500)
    y = rng.uniform(0, 1800, 500)
    geoms = [
        box(a, b, a + w, b + w / 2) for a, b, w in zip(x, y, rng.uniform(5, 90, 500), strict=True)
    ]
    one = stats(geoms, path)
    tiled = stats(geoms, path, max_window_cells=100)  # forces many tiles
    pd.testing.assert_frame_equal(one, tiled)
    # a piece inside one cell has that cell's value
    inside = box(35, 1735, 40, 1740)  # column 1, row 2 of the 30 m grid
    assert stats([inside], path).loc[0, "mean"] == pytest.approx(values[2, 1])


def test_raster_in_another_crs(tmp_path):
    # a geographic raster (EPSG:4490, 0.001° cells) under pieces in GK zone 42 (EPSG:4530)
    to_geo = Transformer.from_crs(CRS, "EPSG:4490", always_xy=True)
    lon0, lat0 = to_geo.transform(X0, Y0)
    left, top, cell = (
        np.floor(lon0 * 1000) / 1000 - 0.003,
        np.ceil(lat0 * 1000) / 1000 + 0.003,
        0.001,
    )
    values = np.arange(1, 9 * 9 + 1, dtype=float).reshape(9, 9)
    path = write_raster(
        tmp_path / "geo.tif", values, Affine(cell, 0, left, 0, -cell, top), "EPSG:4490"
    )
    pieces = [box(0, 0, 150, 100), box(20, -120, 60, -100)]
    got = stats(pieces, path)
    # expected: the pieces in EPSG:4490 intersected with every cell, weighted by area
    geo = gpd.GeoSeries(pieces, crs=CRS).to_crs("EPSG:4490").to_numpy()
    rows, cols = np.indices(values.shape)
    cells = shapely.box(
        left + cols * cell, top - (rows + 1) * cell, left + (cols + 1) * cell, top - rows * cell
    ).ravel()
    for i, g in enumerate(geo):
        w = shapely.area(shapely.intersection(cells, g))
        assert w.sum() == pytest.approx(g.area)  # the raster covers the piece
        assert got.loc[i, "mean"] == pytest.approx((w * values.ravel()).sum() / w.sum(), rel=1e-9)
        touched = values.ravel()[w > 0]
        assert (got.loc[i, "min"], got.loc[i, "max"]) == (touched.min(), touched.max())
        assert got.loc[i, "share"] == pytest.approx(1.0)


def test_bad_rasters_are_one_line_input_errors(tmp_path, raster_4x4):
    with pytest.raises(InputError, match="raster file not found"):
        stats([box(0, 0, 10, 10)], tmp_path / "missing.tif")
    (tmp_path / "junk.tif").write_text("not a raster")
    with pytest.raises(InputError, match="cannot open the raster"):
        stats([box(0, 0, 10, 10)], tmp_path / "junk.tif")
    with pytest.raises(InputError, match="no band 2"):
        stats([box(0, 0, 10, 10)], RasterSpec(path=raster_4x4, band=2))
    nocrs = write_raster(tmp_path / "nocrs.tif", np.ones((2, 2)), grid(), crs=None)
    with pytest.raises(InputError, match="no coordinate reference system"):
        stats([box(0, 0, 10, 10)], nocrs)
    # ... which the config's crs repairs
    fixed = stats([box(0, 300, 10, 310)], RasterSpec(path=nocrs, crs=CRS))
    assert fixed.loc[0, "mean"] == 1.0


# --------------------------------------------------------------------------- slope


def test_slope_of_a_planar_dem_in_a_projected_crs():
    # z = 0.05·x + 0.02·y on 30 m cells: slope atan(√(0.05² + 0.02²)) everywhere
    cell = 30.0
    rows, cols = np.indices((40, 50))
    x, y = cols * cell, -rows * cell
    z = 200 + 0.05 * x + 0.02 * y
    slope = slope_degrees(z, grid(cell=cell), CRS)
    expected = np.degrees(np.arctan(np.hypot(0.05, 0.02)))
    assert slope[1:-1, 1:-1] == pytest.approx(expected, abs=1e-3)
    assert np.isfinite(slope).all()  # edges use the centre value for missing neighbours


def test_slope_of_a_planar_dem_in_geographic_coordinates():
    # 3 arc-second cells at 44°N: a plane rising 5 m per 100 m northwards, then eastwards,
    # built from geodesic distances; a degree of longitude is ~72 % of one of latitude here
    res, top, lon0, n = 1 / 1200, 44.3, 125.5, 60
    lats = top - (np.arange(n) + 0.5) * res
    lons = lon0 + (np.arange(n) + 0.5) * res
    north = (
        np.sign(lats - 44.0)
        * GEOD.inv(np.full(n, lon0), np.full(n, 44.0), np.full(n, lon0), lats)[2]
    )
    z_north = np.repeat((0.05 * north)[:, None], n, axis=1)
    lat2, lon2 = np.meshgrid(lats, lons, indexing="ij")
    east = GEOD.inv(np.full(lat2.shape, lon0), lat2, lon2, lat2)[2]
    z_east = 0.05 * east
    transform = Affine(res, 0, lon0, 0, -res, top)
    expected = np.degrees(np.arctan(0.05))
    for z in (z_north, z_east):
        slope = slope_degrees(z, transform, "EPSG:4490")
        assert slope[1:-1, 1:-1] == pytest.approx(expected, abs=2e-3)


def test_slope_in_web_mercator_accounts_for_projection_scale():
    # at 44°N a Web-Mercator metre is ~0.72 ground metres: slopes from grid units alone would be
    # far too small; a plane rising 5 % per ground metre northwards
    to_merc = Transformer.from_crs("EPSG:4326", "EPSG:3857", always_xy=True)
    to_geo = Transformer.from_crs("EPSG:3857", "EPSG:4326", always_xy=True)
    x0, y0 = to_merc.transform(125.5, 44.3)
    n, cell = 60, 100.0
    ys = y0 - (np.arange(n) + 0.5) * cell
    lon, lat = to_geo.transform(np.full(n, x0), ys)
    north = np.sign(lat - 44.0) * GEOD.inv(np.full(n, 125.5), np.full(n, 44.0), lon, lat)[2]
    z = np.repeat((0.05 * north)[:, None], n, axis=1)
    slope = slope_degrees(z, Affine(cell, 0, x0, 0, -cell, y0), "EPSG:3857")
    assert slope[1:-1, 1:-1] == pytest.approx(np.degrees(np.arctan(0.05)), abs=5e-3)


def test_zonal_slope_is_the_slope_not_the_elevation(tmp_path):
    # a DEM rising 10 m per 100 m cell southwards: elevation varies, slope is atan(0.1)
    z = np.add.outer(np.arange(6.0) * 10, np.zeros(6))
    path = write_raster(tmp_path / "dem.tif", z, grid(top=600), dtype="float64")
    s = stats([box(150, 150, 350, 350)], path, slope=True).iloc[0]
    assert s["mean"] == pytest.approx(30.0)  # rows 2..4 (20, 30, 40), half of the outer ones
    assert s["slope_mean"] == pytest.approx(np.degrees(np.arctan(0.1)))


# --------------------------------------------------------------------------- grades, classes


def test_slope_grades_follow_gdpdjb():
    degrees = [0.0, 2.0, 2.01, 6.0, 6.5, 15.0, 15.1, 25.0, 25.01, 60.0, np.nan]
    assert slope_grade(degrees).tolist() == [1, 1, 2, 2, 3, 3, 4, 4, 5, 5, pd.NA]


def test_thickness_classes_and_organic_matter_grades():
    assert thickness_class([10.0, 30.0, 30.5, 60.0, 61.0, np.nan]).tolist() == [
        1, 1, 2, 2, 3, pd.NA,
    ]  # fmt: skip
    assert thickness_class([25.0, 45.0], breaks=(20.0, 40.0)).tolist() == [2, 3]
    om = [3.0, 6.0, 8.0, 15.0, 25.0, 35.0, 40.0, 41.0, np.nan]
    assert organic_matter_grade(om).tolist() == [6, 6, 5, 4, 3, 2, 2, 1, pd.NA]


def test_quality_summary_known_answer():
    pieces = pd.DataFrame(
        {
            "XZQDM": ["220122", "220122", "220122", "220183"],
            "TL": ["黑土", "黑土", "黑钙土", "黑土"],
            "TBDLMJ": [100.00, 300.00, 50.25, 1000.00],
            "HTHD_PJ": [20.0, 40.0, np.nan, 70.0],
            "HTHD_FGL": [1.0, 0.5, 0.0, 1.0],
            "HTHDJB": pd.array([1, 2, None, 3], dtype="Int32"),
        }
    )
    out = quality_summary(pieces, ["thickness"], {"220122": "农安县", "220183": "德惠市"})
    assert list(zip(out["XZQDM"], out["TL"], strict=True)) == [
        ("220122", "黑土"), ("220122", "黑钙土"), ("220122", "合计"),
        ("220183", "黑土"), ("220183", "合计"), ("合计", "合计"),
    ]  # fmt: skip
    row = out.iloc[0]  # 220122 黑土: weights 100 × 1 and 300 × 0.5
    assert row["XZQMC"] == "农安县" and row["TBGS"] == 2 and row["TBDLMJ"] == 400.00
    assert row["HTHD_PJ"] == pytest.approx((100 * 20 + 150 * 40) / 250)
    assert row["HTHD_FGMJ"] == pytest.approx(250.0)
    assert (row["HTHDJB1_MJ"], row["HTHDJB2_MJ"], row["HTHDJB3_MJ"]) == (100.0, 300.0, 0.0)
    assert np.isnan(out.iloc[1]["HTHD_PJ"]) and out.iloc[1]["HTHDJB_WSJMJ"] == 50.25
    county = out.iloc[2]
    assert county["TBDLMJ"] == 450.25 and county["TBGS"] == 3
    assert county["HTHD_PJ"] == pytest.approx(32.0)
    grand = out.iloc[5]
    assert grand["XZQMC"] == "全部" and grand["TBDLMJ"] == 1450.25
    assert grand["HTHD_PJ"] == pytest.approx((2000 + 6000 + 70000) / 1250)
    classes = ["HTHDJB1_MJ", "HTHDJB2_MJ", "HTHDJB3_MJ", "HTHDJB_WSJMJ"]
    assert (out[classes].sum(axis=1) == out["TBDLMJ"]).all()


# --------------------------------------------------------------------------- through a survey


def _plane_dem_4490(path: Path, grade: float) -> Path:
    """A DEM in EPSG:4490 around the test area rising ``grade`` m/m northwards."""
    to_geo = Transformer.from_crs(CRS, "EPSG:4490", always_xy=True)
    lon0, lat0 = to_geo.transform(X0 - 500, Y0 + 700)
    res, rows, cols = 1 / 1200, 40, 100  # about 3.7 km × 6.4 km
    lats = lat0 - (np.arange(rows) + 0.5) * res
    north = GEOD.inv(np.full(rows, lon0), np.full(rows, lat0), np.full(rows, lon0), lats)[2]
    z = np.repeat((500 - grade * north)[:, None], cols, axis=1)
    return write_raster(path, z, Affine(res, 0, lon0, 0, -res, lat0), "EPSG:4490", dtype="float64")


def test_survey_with_rasters(job):
    job.layer(
        "parcels",
        parcels_frame(
            [
                {"geometry": box(0, 0, 200, 100), "GDPDJB": "3"},  # the DEM says grade 2
                {"geometry": box(200, 0, 300, 100), "GDPDJB": "2"},
                {"geometry": box(5000, 0, 5100, 100)},  # outside every raster but the DEM's
            ]
        ),
        "DLTB",
    )
    job.layer("soil", soil_frame([("黑土", box(-100, -100, 6000, 200))]), "TRTB")
    t = grid(top=100)
    write_raster(job.folder / "th.tif", [[20.0, 50.0, 70.0]], t, nodata=-9999)
    write_raster(job.folder / "om.tif", [[25.0, -9999.0, 45.0]], t, nodata=-9999)
    write_raster(job.folder / "ph.tif", [[6.5, 7.0, 7.5]], t)
    _plane_dem_4490(job.folder / "dem.tif", 0.05)
    job.config["inputs"]["rasters"] = {
        "thickness": {"path": "th.tif"},
        "organic_matter": {"path": "om.tif"},
        "dem": {"path": "dem.tif"},
        "ph": {"path": "ph.tif", "band": 1},
    }
    outcome, layers = run(job)
    assert outcome.conservation["passed"]
    p = layers["HTGDTB"].set_index("BSM")
    a, b, c = p.index  # pieces in BSM order
    assert p.loc[a, "HTHD_PJ"] == 35.0 and (p.loc[a, "HTHD_MIN"], p.loc[a, "HTHD_MAX"]) == (20, 50)
    assert p.loc[a, "HTHD_FGL"] == 1.0 and p.loc[a, "HTHDJB"] == 2
    assert p.loc[b, "HTHD_PJ"] == 70.0 and p.loc[b, "HTHDJB"] == 3
    assert p.loc[a, "YJZ_PJ"] == 25.0 and p.loc[a, "YJZ_FGL"] == 0.5 and p.loc[a, "YJZJB"] == 3
    assert p.loc[b, "YJZJB"] == 1
    assert p.loc[a, "PH_PJ"] == 6.75 and p.loc[b, "PH_MAX"] == 7.5
    expected_slope = round(np.degrees(np.arctan(0.05)), 2)
    assert p.loc[a, "PD_PJ"] == pytest.approx(expected_slope, abs=0.011)
    assert p.loc[b, "PDJB"] == 2 and p.loc[a, "GC_FGL"] == 1.0
    # the far piece: no thickness, organic matter or pH, but the DEM reaches it
    for col in ("HTHD_PJ", "HTHD_MIN", "HTHD_MAX", "HTHDJB", "YJZ_PJ", "PH_PJ"):
        assert pd.isna(p.loc[c, col]), col
    assert p.loc[c, "HTHD_FGL"] == 0.0 and p.loc[c, "PDJB"] == 2

    qa = layers["HTGD_ZJJL"]
    cover = qa[qa["check"] == "raster coverage"]
    far = f"{c}/{p.loc[c, 'TRBM']}"  # pieces are named BSM/TRBM, whatever the partitioning
    assert set(cover.loc[cover["feature_id"] == far, "layer"]) == {
        "rasters.thickness", "rasters.organic_matter", "rasters.ph",
    }  # fmt: skip
    partly = cover[cover["problem"].str.startswith("piece partly")]
    assert partly[["layer", "feature_id"]].values.tolist() == [
        ["rasters.organic_matter", f"{a}/{p.loc[a, 'TRBM']}"]
    ]
    slope_qa = qa[qa["check"] == "slope grade"]
    assert slope_qa["feature_id"].tolist() == [a]
    assert "GDPDJB 3" in slope_qa["problem"].iloc[0] and "grade 2" in slope_qa["problem"].iloc[0]

    summary = layers["HTGD_ZLHZ"]
    total = summary[summary["XZQDM"] == "合计"].iloc[0]
    assert total["TBGS"] == 3 and total["TBDLMJ"] == 40000.00
    assert total["HTHD_PJ"] == pytest.approx((35 * 20000 + 70 * 10000) / 30000, abs=0.005)
    assert (total["HTHDJB2_MJ"], total["HTHDJB3_MJ"], total["HTHDJB_WSJMJ"]) == (
        20000.0, 10000.0, 10000.0,
    )  # fmt: skip
    assert total["PDJB2_MJ"] == 40000.0 and total["PH_FGMJ"] == 30000.0
    dictionary = layers["HTGD_ZDZD"]
    titled = set(dictionary.loc[dictionary["layer"] == "HTGDTB", "field"])
    assert {"HTHD_PJ", "HTHDJB", "YJZ_FGL", "PD_PJ", "PDJB", "GC_PJ"} <= titled
    assert "HTGD_ZLHZ" in set(dictionary["layer"])


def test_survey_without_rasters_has_no_quality_fields(job):
    job.layer("parcels", parcels_frame([{"geometry": box(0, 0, 100, 100)}]), "DLTB")
    job.layer("soil", soil_frame([("黑土", box(-50, -50, 150, 150))]), "TRTB")
    _, layers = run(job)
    assert "HTGD_ZLHZ" not in layers
    assert not any(c.startswith(("HTHD", "YJZ", "PD_")) for c in layers["HTGDTB"].columns)


def test_missing_raster_stops_the_run_with_its_path(job):
    job.layer("parcels", parcels_frame([{"geometry": box(0, 0, 100, 100)}]), "DLTB")
    job.layer("soil", soil_frame([("黑土", box(-50, -50, 150, 150))]), "TRTB")
    job.config["inputs"]["rasters"] = {"dem": {"path": "nowhere/dem.tif"}}
    with pytest.raises(InputError, match=r"dem\.tif \(inputs\.rasters\.dem\): raster file not"):
        run(job)


# --------------------------------------------------------------------------- config


def _config(tmp_path: Path, **extra) -> Path:
    data = {
        "year": 2024,
        "inputs": {"parcels": {"path": "p.gpkg"}, "soil": {"path": "s.gpkg"}},
        "output": {"path": "out/a.gpkg"},
        **extra,
    }
    rasters = data.pop("rasters", None)
    if rasters is not None:
        data["inputs"]["rasters"] = rasters
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return path


def test_raster_config_is_parsed(tmp_path):
    cfg = load_config(
        _config(
            tmp_path,
            rasters={
                "dem": {"path": "r/dem.tif", "crs": 4490},
                "thickness": {"path": "/abs/t.tif", "band": 2, "nodata": -9999},
            },
            quality={"thickness_breaks": [25, 50]},
        )
    )
    dem = cfg.inputs.rasters["dem"]
    assert dem == RasterSpec(path=tmp_path / "r" / "dem.tif", crs="EPSG:4490")
    assert cfg.inputs.rasters["thickness"] == RasterSpec(
        path=Path("/abs/t.tif"), band=2, nodata=-9999.0
    )
    assert cfg.quality.thickness_breaks == (25.0, 50.0)
    assert cfg.quality.organic_matter_breaks == (6.0, 10.0, 20.0, 30.0, 40.0)
    assert load_config(_config(tmp_path)).inputs.rasters == {}


def _dem(**spec) -> dict:
    return {"rasters": {"dem": {"path": "d.tif", **spec}}}


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (_dem(colour=1), "inputs.rasters.dem.colour: unknown key"),
        ({"rasters": {"dem": {"band": 1}}}, "inputs.rasters.dem.path: missing required key"),
        ({"rasters": {"dem": None}}, "inputs.rasters.dem: expected a mapping"),
        (_dem(band=0), "inputs.rasters.dem.band: expected a band number"),
        (_dem(nodata="x"), "inputs.rasters.dem.nodata: expected an integer or a number"),
        ({"rasters": {"3d": {"path": "d.tif"}}}, "inputs.rasters.3d: a raster name"),
        ({"rasters": {"pd": {"path": "d.tif"}}}, "inputs.rasters.pd: the name 'pd' clashes"),
        ({"rasters": ["d.tif"]}, "inputs.rasters: expected a mapping"),
        ({"quality": {"thickness_breaks": [60, 30]}}, "thickness_breaks: expected 2 ascending"),
        ({"quality": {"organic_matter_breaks": [1, 2]}}, "organic_matter_breaks: expected 5"),
        ({"quality": {"colour": 1}}, "quality.colour: unknown key"),
    ],
)
def test_raster_config_errors_name_the_key(tmp_path, extra, message):
    with pytest.raises(ConfigError) as err:
        load_config(_config(tmp_path, **extra))
    assert message in str(err.value)


# --------------------------------------------------------------------------- demo rasters


def test_make_demo_rasters_small(tmp_path):
    bounds = (X0, Y0, X0 + 6000, Y0 + 4000)
    paths = make_demo_rasters(tmp_path / "a", bounds, seed=7, margin=500)
    again = make_demo_rasters(tmp_path / "b", bounds, seed=7, margin=500)
    ranges = {"thickness": (10, 80), "organic_matter": (15, 60)}
    for name, path in paths.items():
        with rasterio.open(path) as src, rasterio.open(again[name]) as src2:
            data = src.read(1, masked=True)
            assert np.array_equal(data.filled(0), src2.read(1, masked=True).filled(0))
            assert src.dtypes[0] == "float32" and src.nodata == -9999
            assert src.profile["compress"] == "deflate"
            if name in ranges:
                lo, hi = ranges[name]
                assert lo <= data.min() and data.max() <= hi
                assert src.crs.to_epsg() == 4530 and src.res == (100.0, 100.0)
            else:
                assert src.crs.to_epsg() == 4490 and not data.mask.any()
                assert 100 < data.min() < data.max() < 600


def test_shipped_demo_rasters_cover_the_demo_parcels():
    folder = REPO / "data" / "demo" / "rasters"
    parcels = gpd.read_file(REPO / "data" / "demo" / "parcels.gpkg", layer="DLTB")
    total = 0
    for name in ("thickness", "organic_matter", "dem"):
        path = folder / f"{name}.tif"
        total += path.stat().st_size
        with rasterio.open(path) as src:
            xmin, ymin, xmax, ymax = parcels.to_crs(src.crs).total_bounds
            b = src.bounds
            assert b.left < xmin and b.bottom < ymin and b.right > xmax and b.top > ymax
    assert total < 1.5e6
    demo = load_config(REPO / "configs" / "demo.yaml")
    assert set(demo.inputs.rasters) == {"thickness", "organic_matter", "dem"}
