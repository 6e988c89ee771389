"""Tests of the demo-data generator (pipeline.demo) on small generated data sets."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyogrio
import pytest
import shapely
from pyproj import CRS, Transformer

from pipeline.codes import BLACK_SOIL_SUBTYPES, CULTIVATED_CODES, LANDUSE_NAMES
from pipeline.demo import make_demo_data
from pipeline.errors import InputError, UsageError

COUNTIES = ("220122", "220183", "220113")
LAYERS = {"parcels": "DLTB", "soil": "TRTB", "counties": "XZQ", "region": "HTQY"}
DLTB_FIELDS = [
    "BSM", "YSDM", "TBBH", "DLBM", "DLMC", "QSXZ", "QSDWDM", "QSDWMC", "ZLDWDM", "ZLDWMC",
    "TBMJ", "KCXS", "KCMJ", "TBDLMJ", "GDLX", "GDPDJB", "GDDB", "SJNF",
]  # fmt: skip
TEXT_FIELDS = [
    "BSM", "YSDM", "TBBH", "DLBM", "DLMC", "QSXZ", "QSDWDM", "QSDWMC", "ZLDWDM", "ZLDWMC",
    "GDLX", "GDPDJB",
]  # fmt: skip


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return make_demo_data(tmp_path_factory.mktemp("demo"), parcels=300)


def read(paths: dict[str, Path], key: str) -> pd.DataFrame:
    return pyogrio.read_dataframe(paths[key], layer=LAYERS[key])


def test_files_and_layers(demo: dict[str, Path]) -> None:
    assert set(demo) == set(LAYERS)
    for key, layer in LAYERS.items():
        assert demo[key].name == f"{key}.gpkg"
        assert demo[key].is_file()
        assert [str(name) for name in pyogrio.list_layers(demo[key])[:, 0]] == [layer]
        assert pyogrio.read_info(demo[key], layer=layer)["crs"] == "EPSG:4530"


def test_parcel_fields_are_text_where_survey_data_has_text(demo: dict[str, Path]) -> None:
    info = pyogrio.read_info(demo["parcels"], layer="DLTB")
    types = dict(zip(info["fields"], info["ogr_types"], strict=True))
    assert list(info["fields"]) == DLTB_FIELDS
    assert all(types[f] == "OFTString" for f in TEXT_FIELDS)
    assert types["TBMJ"] == "OFTReal"
    assert types["SJNF"].startswith("OFTInteger")

    df = read(demo, "parcels")
    assert len(df) == 300
    assert df["BSM"].is_unique
    assert (df["BSM"].str.len() == 18).all()
    assert (df["YSDM"] == "2001010100").all()
    assert df["DLBM"].isin(list(LANDUSE_NAMES)).all()
    assert df["DLBM"].str.startswith("0").any()  # leading zeros kept: "0103", not 103
    assert (df["DLMC"] == df["DLBM"].map(LANDUSE_NAMES)).all()
    assert (df["ZLDWDM"].str.len() == 19).all() and (df["QSDWDM"].str.len() == 19).all()
    assert df["ZLDWMC"].str.endswith("村").all()
    assert df["QSXZ"].isin(["10", "20", "30"]).all()
    assert (df["SJNF"] == 2024).all()
    # TBBH numbers the parcels of each village 1, 2, ...
    for _, tbbh in df.groupby("ZLDWDM")["TBBH"]:
        assert sorted(tbbh.astype(int)) == list(range(1, len(tbbh) + 1))


def test_parcels_form_a_valid_partition(demo: dict[str, Path]) -> None:
    geoms = read(demo, "parcels").geometry.values
    assert shapely.is_valid(geoms).all()
    assert (shapely.get_type_id(geoms) == 3).all()
    area = shapely.area(geoms)
    union = shapely.area(shapely.union_all(geoms))
    assert abs(area.sum() - union) <= 1e-6 * union
    assert 1_000.0 < np.median(area) < 30_000.0  # 0.1-3 ha


def test_parcels_lie_in_their_county(demo: dict[str, Path]) -> None:
    parcels = read(demo, "parcels")
    counties = read(demo, "counties").set_index("XZQDM")
    assert list(counties.index) == list(COUNTIES)
    code = parcels["ZLDWDM"].str[:6]
    assert code.isin(COUNTIES).all()
    assert parcels["BSM"].str[:6].equals(code)
    geoms = parcels.geometry.values
    county = counties.geometry.loc[code].values
    outside = shapely.area(shapely.difference(geoms, county))
    assert (outside <= 1e-6 * shapely.area(geoms) + 1e-6).all()


def test_area_fields(demo: dict[str, Path]) -> None:
    df = read(demo, "parcels")
    planar = shapely.area(df.geometry.values)
    tbmj = df["TBMJ"].to_numpy(dtype=float, na_value=np.nan)
    known = ~np.isnan(tbmj)
    assert 0 < (~known).sum() <= 0.05 * len(df)
    assert np.all(np.abs(tbmj[known] / planar[known] - 1.0) < 0.005)
    kcxs = df["KCXS"].to_numpy()
    kcmj = df["KCMJ"].to_numpy(dtype=float, na_value=np.nan)
    tbdlmj = df["TBDLMJ"].to_numpy(dtype=float, na_value=np.nan)
    assert np.array_equal(np.isnan(kcmj), ~known) and np.array_equal(np.isnan(tbdlmj), ~known)
    assert np.allclose(kcmj[known], np.round(tbmj[known] * kcxs[known], 2), rtol=0, atol=1e-9)
    assert np.allclose(tbdlmj[known], np.round(tbmj[known] - kcmj[known], 2), rtol=0, atol=1e-9)
    assert ((kcxs >= 0) & (kcxs < 1) & (kcxs == np.round(kcxs, 4))).all()

    cultivated = df["DLBM"].isin(CULTIVATED_CODES).to_numpy()
    assert cultivated.mean() > 0.5
    assert df.loc[cultivated, "GDLX"].isin(["TT", "PD"]).all()
    assert df.loc[cultivated, "GDPDJB"].isin(["1", "2", "3", "4", "5"]).all()
    assert df.loc[cultivated, "GDDB"].between(1, 15).all()
    assert (df.loc[~cultivated, ["GDLX", "GDPDJB"]] == "").all().all()
    assert df.loc[~cultivated, "GDDB"].isna().all()
    assert (kcxs[~cultivated | (df["GDPDJB"] == "1").to_numpy()] == 0).all()


def test_tbmj_is_the_geodesic_area(demo: dict[str, Path]) -> None:
    df = read(demo, "parcels").dropna(subset=["TBMJ"]).head(100)
    to_geo = Transformer.from_crs(df.crs, "EPSG:4490", always_xy=True)
    geod = CRS.from_epsg(4490).get_geod()
    lonlat = shapely.transform(
        df.geometry.values, lambda c: np.column_stack(to_geo.transform(c[:, 0], c[:, 1]))
    )
    geodesic = np.array([abs(geod.geometry_area_perimeter(g)[0]) for g in lonlat])
    assert np.allclose(df["TBMJ"].to_numpy(dtype=float), geodesic, rtol=1e-7, atol=0.006)


def test_soil_map(demo: dict[str, Path]) -> None:
    soil = read(demo, "soil")
    assert list(soil.columns) == ["TRBM", "TL", "YL", "TS", "TZ", "geometry"]
    assert soil["TRBM"].is_unique
    assert 5 <= len(soil) <= 100
    geoms = soil.geometry.values
    assert shapely.is_valid(geoms).all()
    area = shapely.area(geoms)
    covered = shapely.union_all(geoms)
    assert abs(area.sum() - covered.area) <= 1e-6 * covered.area
    assert shapely.get_num_coordinates(geoms).mean() > 100  # digitised-looking boundaries
    black = soil["YL"].map(BLACK_SOIL_SUBTYPES)
    assert (black.dropna() == soil.loc[black.notna(), "TL"]).all()
    assert black.notna().any()
    # unmapped holes inside the parcel block
    parcels = shapely.union_all(read(demo, "parcels").geometry.values)
    gap = shapely.area(shapely.difference(parcels, covered))
    assert gap > 1_000.0


def test_region(demo: dict[str, Path]) -> None:
    region = read(demo, "region")
    assert len(region) == 1
    assert region["QYMC"].tolist() == ["黑土区"]
    geom = region.geometry.values[0]
    parcels = read(demo, "parcels").geometry.values
    inside = shapely.within(parcels, geom)
    outside = ~shapely.intersects(parcels, geom)
    assert inside.mean() > 0.5
    assert outside.any()
    assert (~inside & ~outside).any()  # some parcels are cut by the boundary


def test_same_seed_same_data_other_seed_other_data(tmp_path: Path) -> None:
    a = make_demo_data(tmp_path / "a", parcels=200, seed=7)
    b = make_demo_data(tmp_path / "b", parcels=200, seed=7)
    c = make_demo_data(tmp_path / "c", parcels=200, seed=8)
    for key in LAYERS:
        da, db, dc = read(a, key), read(b, key), read(c, key)
        pd.testing.assert_frame_equal(da.drop(columns="geometry"), db.drop(columns="geometry"))
        assert np.array_equal(
            shapely.to_wkb(da.geometry.values), shapely.to_wkb(db.geometry.values)
        )
        if key != "counties":
            assert not np.array_equal(
                shapely.to_wkb(da.geometry.values[:1]), shapely.to_wkb(dc.geometry.values[:1])
            )


def test_other_counties_get_their_own_zone(tmp_path: Path) -> None:
    paths = make_demo_data(tmp_path, parcels=40, counties=["222401"])  # 延吉市, 129.5°E
    df = read(paths, "parcels")
    assert df.crs.to_epsg() == 4531
    assert len(df) == 40
    assert (df["ZLDWDM"].str[:6] == "222401").all()


def test_unknown_county_is_an_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="999999"):
        make_demo_data(tmp_path, parcels=100, counties=["220122", "999999"])


def test_too_few_parcels_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="--parcels must be at least 10"):
        make_demo_data(tmp_path, parcels=9)
